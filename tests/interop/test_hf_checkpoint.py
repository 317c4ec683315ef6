"""Reading and writing Hugging Face directories without the oracle: round trips, checkpoint variants, errors.

The checkpoints here are written from our own random params through `to_hf_state_dict` (whose names and
layouts `test_hf_parity.py` pins against transformers), then edited into the variants found on the Hub.
"""

import json
import logging
import re
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.flax
import safetensors.numpy

from llm_jax import models
from llm_jax.interop import (load_hf, load_hf_with_report, read_hf_config, save_hf, state_dict, to_hf_state_dict,
                             weights_io)
from llm_jax.models import bert

CONFIGS = {family: models.make_config(family, vocab_size=50, hidden_size=32, num_layers=2, num_heads=2,
                                      intermediate_size=64, max_position_embeddings=16)
           for family in ("bert", "roberta")}
CONFIG = CONFIGS["bert"]
HEADS = ("mlm_head/transform/kernel", "mlm_head/transform/bias", "mlm_head/layer_norm/scale",
         "mlm_head/layer_norm/bias", "mlm_head/bias", "nsp_head/kernel", "nsp_head/bias")


@pytest.fixture(scope="module")
def params(random_params):
    return random_params("bert", CONFIG, seed=0)


@pytest.fixture(scope="module")
def hf_tensors(params):
    return to_hf_state_dict("bert", CONFIG, params)


def _write(directory, tensors, hf_config=None):
    """A model directory holding `tensors` as model.safetensors and `hf_config` (default: CONFIG's)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(hf_config or bert.config_to_hf(CONFIG)))
    safetensors.numpy.save_file(dict(tensors), str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory


def _assert_tree_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ----------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_save_then_load_is_exact(tmp_path, random_params, family):
    params = random_params(family, CONFIGS[family], seed=1)
    save_hf(family, CONFIGS[family], params, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_hf_with_report(tmp_path / "out")
    assert (loaded.family, loaded.config) == (family, CONFIGS[family])
    assert loaded.report == state_dict.LoadReport()
    _assert_tree_equal(loaded.params, params)


def test_safetensors_round_trip_needs_no_torch(tmp_path, params, monkeypatch):
    for name in ("torch", "transformers"):
        monkeypatch.setitem(sys.modules, name, None)  # any `import torch` now raises ImportError
    save_hf("bert", CONFIG, params, tmp_path)
    _assert_tree_equal(load_hf(tmp_path)[2], params)


def test_save_accepts_boxed_jax_params_in_a_variables_dict(tmp_path, params):
    # What `model.init` returns: jax arrays boxed with their logical axis names.
    boxed = jax.tree.map(lambda x: nn.LogicallyPartitioned(jnp.asarray(x), (None,) * x.ndim), params)
    save_hf("bert", CONFIG, {"params": boxed}, tmp_path)
    _assert_tree_equal(load_hf(tmp_path)[2], params)


def test_layout_kinds_invert_each_other():
    rng = np.random.default_rng(0)
    for kind, ours_shape in [("embed", (5, 4)), ("vector", (4,)), ("linear", (4, 6)), ("linear_in_heads", (4, 2, 3)),
                             ("bias_heads", (2, 3)), ("linear_out_heads", (2, 3, 4))]:
        hf = rng.standard_normal(state_dict.hf_shape(kind, ours_shape))
        ours = state_dict.to_ours(kind, hf, ours_shape)
        assert ours.shape == ours_shape
        np.testing.assert_array_equal(state_dict.to_hf(kind, ours), hf)
    # Head h of a [H*K, D] torch weight is rows h*K … (h+1)*K − 1 (how transformers splits heads).
    w = np.arange(6 * 4).reshape(6, 4)
    np.testing.assert_array_equal(state_dict.to_ours("linear_in_heads", w, (4, 2, 3))[:, 1, :], w[3:6].T)
    with pytest.raises(ValueError, match="Unknown layout kind 'conv'"):
        state_dict.hf_shape("conv", (1,))


@pytest.mark.parametrize("preset", ["bert-base", "roberta-base"])
def test_name_map_covers_every_param(preset):
    family, config = models.get_preset(preset)
    shapes = state_dict.param_shapes(family, config)  # raises if the map and the model disagree
    assert set(shapes) == set(models.family_module(family).HF_NAME_MAP)


# ------------------------------------------------------------------------------------ checkpoint variants


def test_bare_base_model_checkpoint_initialises_the_heads(tmp_path, hf_tensors, params, caplog):
    # What all-MiniLM-L6-v2 looks like: a `BertModel`, no "bert." prefix, no cls.* heads, an old index buffer.
    bare = {k.removeprefix("bert."): v for k, v in hf_tensors.items() if k.startswith("bert.")}
    bare["embeddings.position_ids"] = np.arange(16, dtype=np.int64)[None]
    _write(tmp_path, bare)
    with caplog.at_level(logging.WARNING, logger="llm_jax.interop"):
        loaded = load_hf_with_report(tmp_path)
    assert loaded.report.initialized == HEADS
    assert loaded.report.ignored == ("embeddings.position_ids",) and loaded.report.unexpected == ()
    assert "newly initialised" in caplog.text and "nsp_head/kernel" in caplog.text
    _assert_tree_equal(loaded.params["bert"], params["bert"])
    assert loaded.params["nsp_head"]["kernel"].shape == (32, 2)
    np.testing.assert_array_equal(loaded.params["mlm_head"]["layer_norm"]["scale"], np.ones(32, np.float32))
    # Deterministic: the same seed gives the same heads, another seed others.
    _assert_tree_equal(load_hf(tmp_path)[2]["mlm_head"], loaded.params["mlm_head"])
    other = load_hf(tmp_path, seed=1)[2]["mlm_head"]["transform"]["kernel"]
    assert not np.array_equal(other, loaded.params["mlm_head"]["transform"]["kernel"])


def test_roberta_pooler_of_published_checkpoints_is_ignored(tmp_path, random_params):
    config = CONFIGS["roberta"]
    params = random_params("roberta", config, seed=2)
    pooler = {"roberta.pooler.dense.weight": np.zeros((32, 32), np.float32),
              "roberta.pooler.dense.bias": np.zeros(32, np.float32)}
    _write(tmp_path, {**to_hf_state_dict("roberta", config, params), **pooler},
           models.roberta.config_to_hf(config))
    loaded = load_hf_with_report(tmp_path)
    assert loaded.report.ignored == tuple(sorted(pooler)) and loaded.report.unexpected == ()
    _assert_tree_equal(loaded.params, params)


def test_legacy_layernorm_gamma_beta_names(tmp_path, hf_tensors, params):
    legacy = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
              for k, v in hf_tensors.items()}
    assert sum(k.endswith("gamma") for k in legacy) == 6  # embeddings, 2 per layer × 2 layers, MLM transform
    _write(tmp_path, legacy)
    _assert_tree_equal(load_hf(tmp_path)[2], params)


def test_tied_decoder_copies_are_checked_then_ignored(tmp_path, hf_tensors, params):
    tied = {**hf_tensors, "cls.predictions.decoder.weight": hf_tensors["bert.embeddings.word_embeddings.weight"],
            "cls.predictions.decoder.bias": hf_tensors["cls.predictions.bias"]}
    loaded = load_hf_with_report(_write(tmp_path / "tied", tied))
    assert loaded.report.ignored == ("cls.predictions.decoder.bias", "cls.predictions.decoder.weight")
    assert loaded.report.unexpected == ()
    _assert_tree_equal(loaded.params, params)

    # An old export that kept only the decoder's copy of the output bias.
    only_copy = {k: v for k, v in tied.items() if k != "cls.predictions.bias"}
    _assert_tree_equal(load_hf(_write(tmp_path / "copy", only_copy))[2], params)

    untied = {**tied, "cls.predictions.decoder.weight": tied["cls.predictions.decoder.weight"] + 1.0}
    with pytest.raises(ValueError, match=r"cls\.predictions\.decoder\.weight differs from .*word_embeddings"):
        load_hf(_write(tmp_path / "untied", untied))


def test_unexpected_tensors_are_skipped_and_reported(tmp_path, hf_tensors, caplog):
    _write(tmp_path, {**hf_tensors, "classifier.weight": np.zeros((3, 32), np.float32)})
    with caplog.at_level(logging.WARNING, logger="llm_jax.interop"):
        loaded = load_hf_with_report(tmp_path)
    assert loaded.report.unexpected == ("classifier.weight",)
    assert "classifier.weight" in caplog.text


def test_half_precision_checkpoints_are_widened_to_float32(tmp_path, hf_tensors):
    safetensors.numpy.save_file({k: v.astype(np.float16) for k, v in hf_tensors.items()},
                                str(_write(tmp_path / "fp16", {}) / "model.safetensors"))
    safetensors.flax.save_file({k: jnp.asarray(v, jnp.bfloat16) for k, v in hf_tensors.items()},
                               str(_write(tmp_path / "bf16", {}) / "model.safetensors"))
    for name, dtype in [("fp16", np.float16), ("bf16", jnp.bfloat16)]:
        loaded = load_hf(tmp_path / name)[2]
        assert all(x.dtype == np.float32 for x in jax.tree.leaves(loaded))
        want = hf_tensors["bert.embeddings.word_embeddings.weight"].astype(dtype).astype(np.float32)
        np.testing.assert_array_equal(loaded["bert"]["embeddings"]["word_embeddings"]["embedding"], want)


def _sharded(directory, hf_tensors):
    """`directory` with the tensors in two safetensors shards and their index; returns the shard paths."""
    _write(directory, {})
    (directory / "model.safetensors").unlink()
    names = sorted(hf_tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in shards.items():
        safetensors.numpy.save_file({k: hf_tensors[k] for k in keys}, str(directory / shard))
    weight_map = {k: shard for shard, keys in shards.items() for k in keys}
    (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return [directory / s for s in shards]


def test_sharded_safetensors(tmp_path, hf_tensors, params):
    _, second = _sharded(tmp_path, hf_tensors)
    _assert_tree_equal(load_hf(tmp_path)[2], params)

    second.unlink()
    with pytest.raises(FileNotFoundError, match="lists the shard model-00002-of-00002.safetensors"):
        load_hf(tmp_path)


def test_pytorch_bin_checkpoint(tmp_path, hf_tensors, params, torch):
    _write(tmp_path, {})
    (tmp_path / "model.safetensors").unlink()
    torch.save({k: torch.from_numpy(v) for k, v in hf_tensors.items()}, tmp_path / "pytorch_model.bin")
    _assert_tree_equal(load_hf(tmp_path)[2], params)


def test_pytorch_bin_without_torch_says_how_to_install(tmp_path, monkeypatch):
    _write(tmp_path, {})
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read: torch is missing")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(ImportError, match="only torch can read; install a CPU build of torch"):
        load_hf(tmp_path)


# ------------------------------------------------------------------------------------------------ errors


def test_missing_layer_or_trunk_tensors_are_errors(tmp_path, hf_tensors):
    one_layer = {k: v for k, v in hf_tensors.items() if k != "bert.encoder.layer.1.output.dense.weight"}
    with pytest.raises(ValueError, match=r"only 1 of the 2 layers of bert\.encoder\.layer\.\{L\}\.output\.dense"):
        load_hf(_write(tmp_path / "layer", one_layer))
    no_embeddings = {k: v for k, v in hf_tensors.items() if "word_embeddings" not in k}
    with pytest.raises(ValueError, match=r"lacks 1 tensor.*bert\.embeddings\.word_embeddings\.weight"):
        load_hf(_write(tmp_path / "trunk", no_embeddings))


def test_shape_mismatch_names_the_tensor(tmp_path, hf_tensors):
    _write(tmp_path, hf_tensors, {**bert.config_to_hf(CONFIG), "vocab_size": 60})
    with pytest.raises(ValueError, match=r"bert\.embeddings\.word_embeddings\.weight has shape \(50, 32\), but "
                                         r"config\.json implies \(60, 32\)"):
        load_hf(tmp_path)


def _dir_with_config(tmp_path, hf_config):
    (tmp_path / "config.json").write_text(hf_config if isinstance(hf_config, str) else json.dumps(hf_config))
    return tmp_path


@pytest.mark.parametrize("make, error, message", [
    (lambda d: d / "absent", FileNotFoundError, r"absent does not exist; pass the folder that holds config\.json"),
    (lambda d: _write(d, {}) / "model.safetensors", NotADirectoryError, "is a file; pass the folder"),
    (lambda d: d, FileNotFoundError, r"has no config\.json"),
    (lambda d: _dir_with_config(d, "{not json"), ValueError, "is not valid JSON"),
    (lambda d: _dir_with_config(d, {"hidden_size": 8}), ValueError, "has no 'model_type'"),
    (lambda d: _dir_with_config(d, {"model_type": "gpt_neox"}), ValueError,
     r"model_type 'gpt_neox', which no llm_jax family reads; supported model types: " + re.escape(str(sorted(
         m.HF_MODEL_TYPE for m in models.FAMILIES.values() if hasattr(m, "HF_MODEL_TYPE"))))),
    (lambda d: _dir_with_config(d, {"model_type": "bert"}), ValueError, "lacks the field 'vocab_size'"),
    (lambda d: _dir_with_config(d, {**bert.config_to_hf(CONFIG), "position_embedding_type": "relative_key"}),
     ValueError, "position_embedding_type='relative_key' is not supported"),
    (lambda d: _dir_with_config(d, {**bert.config_to_hf(CONFIG), "tie_word_embeddings": False}),
     ValueError, "tie_word_embeddings=false"),
    (lambda d: _dir_with_config(d, bert.config_to_hf(CONFIG)), FileNotFoundError,
     r"No weights file in .*: looked for model\.safetensors, model\.safetensors\.index\.json, pytorch_model\.bin"),
])
def test_bad_directories_are_clear_errors(tmp_path, make, error, message):
    with pytest.raises(error, match=message):
        load_hf(make(tmp_path))


def test_missing_weights_names_the_formats_found(tmp_path):
    _dir_with_config(tmp_path, bert.config_to_hf(CONFIG))
    (tmp_path / "tf_model.h5").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="It holds tf_model.h5, which we do not read"):
        load_hf(tmp_path)


def test_read_hf_config_maps_model_type_to_family(tmp_path):
    _dir_with_config(tmp_path, models.roberta.config_to_hf(CONFIGS["roberta"]))
    assert read_hf_config(tmp_path) == ("roberta", CONFIGS["roberta"])


def test_save_rejects_params_that_do_not_fit_before_writing(tmp_path, params):
    wrong = {**params, "nsp_head": {"kernel": np.zeros((32, 3), np.float32)}}
    with pytest.raises(ValueError, match=r"missing \['nsp_head/bias'\].*wrong shape \['nsp_head/kernel: \(32, 3\)"):
        save_hf("bert", CONFIG, wrong, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ unreadable input files (fault #10.9)


def _assert_one_line_naming(error, path):
    text = str(error.value)
    assert "\n" not in text and str(path) in text, text


@pytest.fixture
def saved(tmp_path, params):
    """A checkpoint directory written by our exporter."""
    return save_hf("bert", CONFIG, params, tmp_path / "saved")


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


@pytest.mark.parametrize("damage, detail", [
    (lambda p: _truncate(p), "incomplete metadata, file not fully covered"),  # an interrupted download
    (lambda p: _truncate(p, keep=0.999), "incomplete metadata"),  # a few bytes short
    (lambda p: p.write_bytes(b"<html><body>404 Not Found</body></html>"), "header too large"),  # an error page
    (lambda p: p.write_bytes(b""), "header too small"),
])
def test_unreadable_safetensors_is_a_one_line_error(saved, damage, detail):
    weights = saved / "model.safetensors"
    damage(weights)
    with pytest.raises(weights_io.UnreadableFileError, match=rf"is not a readable safetensors file \(.*{detail}.*\): "
                                                             rf"it is truncated, damaged .*; re-download it") as error:
        load_hf(saved)
    _assert_one_line_naming(error, weights)
    assert isinstance(error.value, ValueError)  # what callers and the CLI catch


@pytest.mark.parametrize("damage", [_truncate, lambda p: p.write_bytes(b""), lambda p: p.write_bytes(b"<html>")])
def test_unreadable_pytorch_bin_is_a_one_line_error(tmp_path, hf_tensors, torch, damage):
    _write(tmp_path, {})
    (tmp_path / "model.safetensors").unlink()
    weights = tmp_path / "pytorch_model.bin"
    torch.save({k: torch.from_numpy(v) for k, v in hf_tensors.items()}, weights)
    damage(weights)
    with pytest.raises(weights_io.UnreadableFileError, match="is not a readable PyTorch state dict .*re-download it") \
            as error:
        load_hf(tmp_path)
    _assert_one_line_naming(error, weights)


def test_pytorch_bin_of_something_else_than_tensors(tmp_path, torch):
    _write(tmp_path, {})
    (tmp_path / "model.safetensors").unlink()
    torch.save({"step": 3}, tmp_path / "pytorch_model.bin")
    with pytest.raises(weights_io.UnreadableFileError, match="holds a dict with values other than tensors"):
        load_hf(tmp_path)


def test_unreadable_shards_and_indexes_are_one_line_errors(tmp_path, hf_tensors):
    _, second = _sharded(tmp_path, hf_tensors)
    index = tmp_path / "model.safetensors.index.json"
    _truncate(second)
    with pytest.raises(weights_io.UnreadableFileError, match="not a readable safetensors file") as error:
        load_hf(tmp_path)
    _assert_one_line_naming(error, second)

    second.unlink()
    with pytest.raises(FileNotFoundError, match="lists the shard model-00002-of-00002.safetensors, which is not in") \
            as error:
        load_hf(tmp_path)
    _assert_one_line_naming(error, index)

    _truncate(index)
    with pytest.raises(weights_io.UnreadableFileError, match=r"is not a shard index \(not valid JSON") as error:
        load_hf(tmp_path)
    _assert_one_line_naming(error, index)

    index.write_text(json.dumps({"weight_map": ["not", "a", "map"]}))
    with pytest.raises(weights_io.UnreadableFileError, match="expected JSON with a 'weight_map' object") as error:
        load_hf(tmp_path)
    _assert_one_line_naming(error, index)


@pytest.mark.parametrize("edit, message", [
    (lambda c: {k: v for k, v in c.items() if k != "hidden_size"},
     r"lacks the field 'hidden_size', which a bert config needs; re-download it"),
    (lambda c: {**c, "hidden_size": None}, r"has a field of the wrong type \(unsupported operand"),
])
def test_config_json_missing_or_ill_typed_fields_are_named(saved, edit, message):
    config_path = saved / "config.json"
    config_path.write_text(json.dumps(edit(json.loads(config_path.read_text()))))
    with pytest.raises(ValueError, match=message) as error:
        load_hf(saved)
    _assert_one_line_naming(error, config_path)


def test_truncated_config_json_is_a_one_line_error(saved):
    config_path = saved / "config.json"
    _truncate(config_path)
    with pytest.raises(weights_io.UnreadableFileError, match=r"is not valid JSON \(.*\); re-download it") as error:
        read_hf_config(saved)
    _assert_one_line_naming(error, config_path)
