"""Bad input is a clear error before anything compiles or is overwritten."""

import json
import pathlib

import numpy as np
import pytest

from llm_jax import cli
from llm_jax.data.tokenizer import SpecialIds
from llm_jax.objectives import config_for, make_objective

ROOT = pathlib.Path(__file__).resolve().parents[2]
SMALL = ["--config.data.max_documents=200", "--config.data.max_eval_documents=20", "--config.data.seq_len=32",
         "--config.data.vocab_size=800", "--config.train.batch_size=8", "--config.train.progress=False",
         "--config.objective.max_predictions=4", "--config.train.eval_every=0", "--config.train.steps=2",
         "--config.optim.warmup_steps=1"]


def _pretrain(workdir, *extra, config="bert.py:size=tiny"):
    return cli.main(["pretrain", "--config", str(ROOT / "configs" / config), "--workdir", str(workdir), *SMALL, *extra])


@pytest.mark.parametrize("override, message", [
    ("--config.model.num_heads=3", "not divisible by model.num_heads"),
    ("--config.data.seq_len=600", "longer than the model's positions"),
    ("--config.mesh.data=3", "devices are available"),
    ("--config.train.batch_size=12", "not divisible by the 8 data-parallel shards"),
    ("--config.data.corpus=/nonexistent/corpus.jsonl", "does not exist"),
    ("--config.mesh.rules=zero3", "not a rule set"),
    ("--config.objective.masking=sometimes", "static' or 'dynamic"),
    ("--config.optim.grad_accum_steps=3", "not divisible by optim.grad_accum_steps"),
])
def test_impossible_configs_fail_before_compiling(tmp_path, capsys, override, message):
    assert _pretrain(tmp_path / "run", override) == 1
    err = capsys.readouterr().err
    assert message in err, err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_token_ids_outside_the_vocabulary_are_refused():
    objective = make_objective(config_for("mlm", masking="dynamic"), SpecialIds(pad=1, unk=3, cls=0, sep=2, mask=4), 100)
    docs = [[np.array([5, 6, 150], np.int32)], [np.array([7, 8], np.int32)]]
    with pytest.raises(ValueError, match=r"token ids \(model.vocab_size\) must be in \[0, 100\)"):
        objective.build_examples(docs, 16, seed=0)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("small")
    assert _pretrain(workdir) == 0
    return workdir


def test_overwrite_sets_the_old_run_aside(small_run, tmp_path, capsys):
    import shutil

    workdir = tmp_path / "run"
    shutil.copytree(small_run, workdir)
    assert _pretrain(workdir, config="roberta.py:size=tiny") == 1
    assert "--overwrite" in capsys.readouterr().err
    assert _pretrain(workdir, "--overwrite", config="roberta.py:size=tiny") == 0
    aside = list(tmp_path.glob("run.replaced-*"))
    assert len(aside) == 1 and (aside[0] / "checkpoints" / "2").is_dir()  # the old run is intact
    assert json.loads((workdir / "config.json").read_text())["family"] == "roberta"


def test_checkpoint_of_another_shape_names_the_differing_params(small_run, tmp_path, capsys):
    import shutil

    workdir = tmp_path / "run"
    shutil.copytree(small_run, workdir)
    (workdir / "config.json").unlink()  # e.g. checkpoints copied into a fresh directory
    assert _pretrain(workdir, "--config.model.intermediate_size=256", "--config.train.steps=4") == 1
    err = capsys.readouterr().err
    assert "does not fit the current config" in err
    assert "['mlp']['wi']['kernel']: checkpoint (2, 128, 512) vs config (2, 128, 256)" in err
