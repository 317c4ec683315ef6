"""Fine-tuning from a pretrained model directory (RoBERTa, byte-level BPE): the trunk is transplanted, the head is
new; K = 0 scores zero-shot by MLM cloze; a K-shot run trains on K examples."""

import json
import pathlib

import flax.linen as nn
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from llm_jax import cli, models
from llm_jax.data import special_ids, train_tokenizer
from llm_jax.interop.native import save_model_dir

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory, small_docs):
    """A model directory of a RoBERTa-tiny with random weights (every leaf distinct) and its BPE tokenizer."""
    tok = train_tokenizer("bytelevel_bpe", small_docs, 1000)
    cfg = models.make_config("roberta", **{**vars(models.get_preset("roberta-tiny")[1]),
                                           "vocab_size": tok.get_vocab_size(), "pad_token_id": special_ids(tok).pad})
    model = models.build("roberta", cfg)
    abstract = nn.meta.unbox(jax.eval_shape(lambda: model.init(jax.random.key(0), np.ones((1, 8), np.int32))["params"]))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda a: (0.05 * rng.standard_normal(a.shape)).astype(np.float32), abstract)
    path = tmp_path_factory.mktemp("roberta") / "model"
    save_model_dir("roberta", cfg, params, path, tokenizer=tok)
    return path, params


def _finetune(workdir, model, *overrides):
    return cli.main(["finetune", "--config", f"{ROOT / 'configs' / 'finetune.py'}:model={model},task=wordnet-supersense",
                     "--workdir", str(workdir), "--config.train.progress=False", "--config.data.seq_len=32", *overrides])


def test_zero_shot_cloze_writes_results(roberta_dir, tmp_path):
    path, _ = roberta_dir
    assert _finetune(tmp_path, path, "--config.data.train_examples=0") == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"validation", "test"}
    assert set(results["test"]) == {"accuracy", "macro_f1", "majority_baseline"}
    rows = [json.loads(line) for line in (tmp_path / "predictions" / "test.jsonl").open()]
    assert len(rows) == 2000 and len(rows[0]["probabilities"]) == 10
    assert json.loads((tmp_path / "summary.json").read_text())["mode"] == "zero-shot cloze"
    assert not (tmp_path / "checkpoints").exists()  # nothing was trained


def test_k_shot_run_transplants_the_pretrained_trunk(roberta_dir, tmp_path):
    path, pretrained = roberta_dir
    # A learning rate so small that the trunk cannot move: what the best params hold is what was transplanted.
    assert _finetune(tmp_path, path, "--config.data.train_examples=20", "--config.train.steps=2",
                     "--config.train.batch_size=8", "--config.optim.learning_rate=1e-12",
                     "--config.train.eval_examples=100") == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["train_examples"] == 20 and summary["family"] == "roberta" and summary["end_step"] == 2
    with ocp.StandardCheckpointer() as ckptr:
        best = ckptr.restore((tmp_path / "best" / "params").absolute())
    for name in ("word_embeddings", "position_embeddings"):
        np.testing.assert_allclose(best["roberta"]["embeddings"][name]["embedding"],
                                   pretrained["roberta"]["embeddings"][name]["embedding"], atol=1e-6)
    np.testing.assert_allclose(best["roberta"]["encoder"]["stack"]["layers"]["block"]["mlp"]["wi"]["kernel"],
                               pretrained["roberta"]["encoder"]["stack"]["layers"]["block"]["mlp"]["wi"]["kernel"],
                               atol=1e-6)
    assert set(best) == {"roberta", "classifier"} and "mlm_head" not in best  # RoBERTa's dense-tanh head is new
    assert set(best["classifier"]) == {"dense", "out_proj"}


def test_errors_for_people(roberta_dir, tmp_path, capsys):
    path, _ = roberta_dir
    assert _finetune(tmp_path / "a", "no-such-model") == 1
    assert "neither a preset" in capsys.readouterr().err
    assert _finetune(tmp_path / "b", path, "--config.data.seq_len=1000") == 1
    assert "longer than the model's" in capsys.readouterr().err
    assert _finetune(tmp_path / "c", path, "--config.data.balance=smote") == 1
    assert "data.balance" in capsys.readouterr().err
    assert _finetune(tmp_path / "d", path, "--config.train.no_such_key=1") == 2
