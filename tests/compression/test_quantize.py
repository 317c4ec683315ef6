"""Quantization (issue #21): int8 weight-only and dynamic through qwix, fp16/bf16 casts, `llm-jax compress`.

Bounds used (per projection `y = x · W`, symmetric per-output-channel int8 as qwix does it: `s_j = max_i |W_ij| /
127.5`, `q = round(W / s)` saturated to [-128, 127], so the largest magnitude sits on a half-step tie):
* weight-only: every dequantized weight is within half a step of the float one, `|W_ij − s_j q_ij| ≤ s_j / 2` (plus
  float32 rounding of the tie: 128 ulp of s_j), so `|y_j − ŷ_j| ≤ ‖x‖₁ · s_j / 2` (a worst case: the rounding
  errors all lined up with the signs of x); and the whole int8-weight model is the float model run on the
  dequantized weights (same f32 products).
* dynamic: the same quantization of the activations per token (`s_t = max_i |x_ti| / 127.5`), integer products
  summed in int32 (exact), rescaled `(acc · s_t) · s_j`: an independent NumPy implementation agrees at 1e-5.
"""

import dataclasses
import json
import pathlib
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import qwix
from flax import traverse_util

from llm_jax import cli, models
from llm_jax.compression import quantize
from llm_jax.interop import state_dict
from llm_jax.interop.native import load_pretrained, save_model_dir
from llm_jax.layers import Einsum
from llm_jax.layers.linear import _as_matmul

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Projections dominate (as in a real model), so the int8 size ratio is visible: ~427k kernel weights, 13k others.
TINY = {"vocab_size": 64, "hidden_size": 128, "num_layers": 2, "num_heads": 2, "intermediate_size": 512,
        "max_position_embeddings": 32}
B, T = 2, 16
EPS = np.finfo(np.float32).eps


@pytest.fixture(scope="module")
def model():
    """(config, float params, tokens): a tiny BERT with N(0, 0.05²) weights (norm scales 1 + noise)."""
    config = models.make_config("bert", **TINY)
    rng = np.random.default_rng(0)
    flat = {p: (1 if p.endswith("norm/scale") else 0) + 0.05 * rng.standard_normal(s).astype(np.float32)
            for p, s in state_dict.param_shapes("bert", config).items()}
    tokens = rng.integers(0, config.vocab_size, (B, T))
    return config, traverse_util.unflatten_dict(flat, sep="/"), tokens


@pytest.fixture(scope="module")
def compressed(model):
    config, params, _ = model
    return {mode: quantize.compress("bert", config, params, mode) for mode in ("int8-weight", "int8-dynamic")}


def _logits(config, params, tokens):
    return np.asarray(jax.jit(lambda p, x: models.build("bert", config).apply({"params": p}, x).mlm_logits_BTV)(
        params, tokens))


def _kernels(qparams):
    flat = traverse_util.flatten_dict(qparams, is_leaf=lambda _, x: isinstance(x, quantize.WithAux))
    return {"/".join(k): v for k, v in flat.items() if isinstance(v, quantize.WithAux)}


# ------------------------------------------------------------------------------------------- weight-only


def test_int8_weight_is_within_half_a_step_and_is_the_float_model_on_the_dequantized_weights(model, compressed):
    config, params, tokens = model
    qconfig, qparams, record = compressed["int8-weight"]
    assert qconfig.quantization == "int8-weight" and record == {"quantize": "int8-weight"}
    kernels = _kernels(qparams)
    assert len(kernels) == len(quantize.projection_paths("bert", config))  # every projection, nothing else
    flat = traverse_util.flatten_dict(params, sep="/")
    for path, leaf in kernels.items():
        q, s = np.asarray(leaf.array.qvalue), np.asarray(leaf.array.scale)
        assert q.dtype == np.int8 and q.shape == flat[path].shape
        assert np.all(np.abs(flat[path] - q * s) <= s * (0.5 + 128 * EPS))  # half a step, per channel
    dequantized = quantize.dequantize_params(qparams)
    want = _logits(config, dequantized, tokens)
    got = _logits(qconfig, qparams, tokens)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    rel = np.abs(got - _logits(config, params, tokens)).max() / np.abs(want).max()
    assert 0 < rel < 0.02  # measured 0.0076 (max |Δlogit| / max |logit|); the exact checks are the ones above


def test_int8_weight_layer_error_is_within_the_per_channel_bound():
    rng = np.random.default_rng(1)
    layer = Einsum("BTD,DHK->BTHK", (32, 4, 8), ("embed", "heads", "kv"))
    x = rng.standard_normal((B, T, 32)).astype(np.float32)
    params = nn.meta.unbox(layer.init(jax.random.key(0), x)["params"])
    qlayer = qwix.quantize_model(layer, quantize._ProjectionPtqProvider(
        [qwix.QuantizationRule(module_path=".*", weight_qtype=jnp.int8)]))
    abstract = nn.meta.unbox(jax.eval_shape(qlayer.init, jax.random.key(0), x)["params"])
    qparams = {"kernel": quantize._quantize_leaf(params["kernel"], abstract["kernel"]), "bias": params["bias"]}
    y = np.asarray(jax.jit(layer.apply)({"params": params}, x), np.float64)
    yq = np.asarray(jax.jit(qlayer.apply)({"params": qparams}, x), np.float64)
    bound = np.abs(x).sum(-1)[..., None, None] * np.asarray(qparams["kernel"].array.scale)[0] / 2
    assert np.all(np.abs(y - yq) <= bound * (1 + 1e-4))
    assert np.abs(y - yq).max() > 0  # the weights really were rounded


def test_int8_kernels_are_int8_in_the_saved_files_and_the_dir_is_about_a_quarter(model, compressed, tmp_path):
    config, params, _ = model
    qconfig, qparams, record = compressed["int8-weight"]
    f32_dir = save_model_dir("bert", config, params, tmp_path / "f32")
    q_dir = save_model_dir("bert", qconfig, qparams, tmp_path / "q", compression=record)
    saved = json.loads((q_dir / "config.json").read_text())
    assert saved["compression"] == {"quantize": "int8-weight"} and saved["model"]["quantization"] == "int8-weight"
    with ocp.StandardCheckpointer() as ckptr:  # the files as they are, without any target structure
        raw = traverse_util.flatten_dict(ckptr.restore(q_dir / "params"), sep="/")
    qvalues = {k: v for k, v in raw.items() if k.endswith("qvalue")}
    assert len(qvalues) == len(_kernels(qparams)) and all(v.dtype == np.int8 for v in qvalues.values())
    assert all(v.dtype == np.float32 for k, v in raw.items() if not k.endswith("qvalue") and v is not None)
    ratio_disk = quantize.dir_bytes(q_dir / "params") / quantize.dir_bytes(f32_dir / "params")
    ratio_memory = quantize.param_stats(qparams)["bytes"] / quantize.param_stats(params)["bytes"]
    n_kernel = sum(int(np.prod(k.array.qvalue.shape)) for k in _kernels(qparams).values())
    n_rest = quantize.param_stats(params)["parameters"] - n_kernel + quantize.param_stats(qparams)["scales"]
    assert ratio_memory == pytest.approx((n_kernel + 4 * n_rest) / (4 * quantize.param_stats(params)["parameters"]))
    assert ratio_memory < 0.3  # 1 byte per kernel weight; float32 scales, embeddings, norms and biases
    # On disk: the int8 dir holds its arrays (int8 barely compresses) plus Orbax's metadata (20-45 KiB: its data
    # files split differently from save to save), the f32 dir is ~6% under its array bytes (Orbax's zstd squeezes
    # float32 exponents): 0.284 in memory → 0.31-0.33 on disk for this 1.7 MB model (0.27 for one 4× larger).
    assert quantize.dir_bytes(q_dir / "params") <= quantize.param_stats(qparams)["bytes"] + 64 * 1024
    assert 0.25 < ratio_disk < 0.35
    # the round trip through load_pretrained is exact
    _, loaded_cfg, loaded, _ = load_pretrained(q_dir)
    assert loaded_cfg == qconfig
    assert jax.tree.structure(loaded) == jax.tree.structure(qparams)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(qparams)):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------------ dynamic


def _quantize_np(a, axis):
    """Symmetric int8 with absmax scales over `axis`, in float32 as XLA:CPU evaluates qwix's ops: it turns
    `absmax / 127.5` into `absmax · (1/127.5)` and `a / s` into `a · (1/s)`, and the largest magnitude sits on the
    ±127.5 tie, so only the same float steps round alike (round half to even, saturate to [-128, 127])."""
    s = np.abs(a).max(axis, keepdims=True) * np.float32(1 / 127.5)
    return np.clip(np.round(a * (np.float32(1) / s)), -128, 127).astype(np.int32), s


def _numpy_dynamic(x, w, bias, n_contract=1):
    """The reference: per-token activation scale, per-output-channel weight scale, int32 products, rescale.
    `x` `[..., C…]` contracts its `n_contract` trailing axes with the leading axes of `w` `[C…, O…]`."""
    c = int(np.prod(w.shape[:n_contract]))
    q_x, s_x = _quantize_np(x.reshape(-1, c), 1)  # one scale per token (row)
    q_w, s_w = _quantize_np(w.reshape(c, -1), 0)  # one scale per output channel (column)
    acc = q_x @ q_w  # int32: exact
    y = (acc.astype(np.float32) * s_w) * s_x  # the weight's scale, then the token's (qwix's order)
    return (y.reshape(*x.shape[:x.ndim - n_contract], *w.shape[n_contract:]) + bias).astype(np.float32)


def test_int8_dynamic_layer_matches_a_numpy_reference():
    rng = np.random.default_rng(2)
    layer = Einsum("BTD,DHK->BTHK", (32, 4, 8), ("embed", "heads", "kv"))
    x = rng.standard_normal((B, T, 32)).astype(np.float32)
    params = nn.meta.unbox(layer.init(jax.random.key(0), x)["params"])
    params["bias"] = rng.standard_normal(params["bias"].shape).astype(np.float32) * 0.1
    qlayer = qwix.quantize_model(layer, quantize._ProjectionPtqProvider(
        [qwix.QuantizationRule(module_path=".*", weight_qtype=jnp.int8, act_qtype=jnp.int8)]))
    abstract = nn.meta.unbox(jax.eval_shape(qlayer.init, jax.random.key(0), x)["params"])
    qparams = {"kernel": quantize._quantize_leaf(params["kernel"], abstract["kernel"]), "bias": params["bias"]}
    got = np.asarray(jax.jit(qlayer.apply)({"params": qparams}, x))
    want = _numpy_dynamic(x, np.asarray(params["kernel"]), params["bias"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_int8_dynamic_model_matches_the_numpy_reference_in_every_projection(model, compressed):
    """Every projection of the whole int8-dynamic model, on the activations it was given, equals the NumPy
    reference of the same quantization (from its stored int8 weights and scales, checked against the float weights
    above). Whole-model logits are not compared to a float program with NumPy projections: a 1-ulp difference in
    any fused float op upstream moves an activation across a rounding tie, a full int8 step."""
    config, _, tokens = model
    qconfig, qparams, _ = compressed["int8-dynamic"]
    for path, leaf in _kernels(compressed["int8-weight"][1]).items():  # the same int8 weights as weight-only
        np.testing.assert_array_equal(_kernels(qparams)[path].array.qvalue, leaf.array.qvalue)
        np.testing.assert_array_equal(_kernels(qparams)[path].array.scale, leaf.array.scale)
    records = []

    def record(next_fun, args, kwargs, context):
        y = next_fun(*args, **kwargs)
        m = context.module
        if isinstance(m, Einsum) and context.method_name == "__call__":
            kernel, bias = m.variables["params"]["kernel"].array, m.variables["params"]["bias"]
            jax.debug.callback(lambda *a, eqn=m.eqn: records.append((eqn, *map(np.asarray, a))), args[0],
                               kernel.qvalue, kernel.scale, bias, y)
        return y

    def run(p, x):
        with nn.intercept_methods(record):
            return models.build("bert", qconfig).apply({"params": p}, x).mlm_logits_BTV

    jax.block_until_ready(jax.jit(run)(qparams, tokens))
    jax.effects_barrier()
    per_layer = [p for p in quantize.projection_paths("bert", config) if "/layers/" in p]
    assert len(records) == config.num_layers * len(per_layer) + 3  # + pooler, MLM transform, NSP head
    for eqn, x, q_w, s_w, bias, y in records:
        n_contract, _ = _as_matmul(eqn)
        c = int(np.prod(q_w.shape[:n_contract]))
        q_x, s_x = _quantize_np(x.reshape(-1, c), 1)
        acc = q_x @ q_w.reshape(c, -1).astype(np.int32)  # int32: exact
        want = ((acc.astype(np.float32) * s_w.reshape(1, -1)) * s_x).reshape(y.shape) + bias
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5 * np.abs(want).max(), err_msg=eqn)


def _dots(hlo: str) -> list[tuple[str, tuple[str, ...]]]:
    """`(result type, operand types)` of every dot in a compiled HLO module."""
    types = dict(re.findall(r"(%[\w.\-]+) = (\w+)\[", hlo))
    dots = []
    for result, operands in re.findall(r"= (\w+)\[[^\]]*\]\S* dot\(([^)]*)\)", hlo):
        names = re.findall(r"%[\w.\-]+", operands)
        dots.append((result, tuple(types.get(n, "?") for n in names)))
    return dots


def test_int8_dynamic_compiles_to_s8_dots_with_s32_results_and_float_attention(model, compressed):
    config, _, tokens = model
    per_layer = [p for p in quantize.projection_paths("bert", config) if "/layers/" in p]
    other = len(quantize.projection_paths("bert", config)) - len(per_layer)
    dots = {}
    for mode in ("int8-weight", "int8-dynamic"):
        qconfig, qparams, _ = compressed[mode]
        qmodel = models.build("bert", qconfig)
        def outputs(p, x, qmodel=qmodel):
            out = qmodel.apply({"params": p}, x)
            return out.mlm_logits_BTV, out.nsp_logits_B2

        fn = jax.jit(outputs)
        dots[mode] = _dots(fn.lower(qparams, tokens).compile().as_text())
    s8 = [d for d in dots["int8-dynamic"] if d[1] == ("s8", "s8")]
    assert s8 and all(result == "s32" for result, _ in s8)
    integer = [d for d in dots["int8-dynamic"] if d[0] == "s32"]
    # every projection of every layer (the layer loop is unrolled), the pooler, MLM transform and NSP head
    assert len(integer) == config.num_layers * len(per_layer) + other
    # XLA:CPU widens the operands of the 2-row pooler / NSP products to s32 (integer products all the same);
    # the token-wise projections run s8 x s8
    assert len(s8) >= config.num_layers * len(per_layer) + 1
    assert all(ops in (("s8", "s8"), ("s32", "s32")) for _, ops in integer)
    floats = [d for d in dots["int8-dynamic"] if d[0] == "f32"]
    assert all(ops == ("f32", "f32") for _, ops in floats)
    # what stays float: attention scores and context per layer, and the tied output projection (x @ E^T)
    assert len(floats) == 2 * config.num_layers + 1
    assert not any("s8" in ops for _, ops in dots["int8-weight"])  # weight-only: dequantized, f32 dots


# ------------------------------------------------------------------------------------------ scanned stacks


def test_scanned_stacks_get_one_scale_per_layer(model, compressed):
    config, params, _ = model
    _, qparams, _ = compressed["int8-dynamic"]
    flat = traverse_util.flatten_dict(params, sep="/")
    stacked = {k: v for k, v in _kernels(qparams).items() if "/layers/" in k}
    assert stacked
    for path, leaf in stacked.items():
        w, s = flat[path], np.asarray(leaf.array.scale)
        assert w.shape[0] == config.num_layers and s.shape[0] == config.num_layers
        for layer in range(config.num_layers):  # each layer's own per-channel absmax
            contracted = tuple(i for i, n in enumerate(s.shape[1:]) if n == 1 and w.shape[1 + i] > 1)
            assert len(contracted) >= 1 and s.shape[1:] != w.shape[1:]
            np.testing.assert_allclose(s[layer], np.abs(w[layer]).max(contracted, keepdims=True) / 127.5,
                                       rtol=1e-6)


# ---------------------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """A tiny BERT model directory with a tokenizer (as `llm-jax convert` or a run leaves it)."""
    from llm_jax import objectives
    from llm_jax.data.corpus import load_documents
    from llm_jax.data.tokenizer import special_ids

    fam = models.family_module("bert")
    tok = fam.TOKENIZER.train(load_documents("bundled", "train", max_documents=100), 300)
    special = special_ids(tok, fam.TOKENIZER.roles)
    config = models.make_config("bert", **{**TINY, "hidden_size": 64, "intermediate_size": 128}).with_vocabulary(
        tok.get_vocab_size(), special)
    objective = objectives.make_objective(objectives.config_for(fam.DEFAULT_OBJECTIVE), special, config.vocab_size)
    args, kwargs = objective.init_inputs(objective.dummy_batch(1, 8))
    params = nn.meta.unbox(jax.jit(lambda k: models.build("bert", config).init(k, *args, **kwargs))(
        jax.random.key(0))["params"])
    return save_model_dir("bert", config, params, tmp_path_factory.mktemp("cli") / "f32", tokenizer=tok)


def test_compress_cli_then_evaluate_and_finetune(bert_dir, tmp_path, capsys, caplog):
    out = tmp_path / "int8"
    assert cli.main(["compress", "--model", str(bert_dir), "--out", str(out), "--quantize", "int8-dynamic"]) == 0
    printed = capsys.readouterr().out
    assert "quantize int8-dynamic" in printed and "params on disk" in printed and "ratio" in printed
    assert json.loads((out / "config.json").read_text())["compression"] == {"quantize": "int8-dynamic"}
    assert cli.main(["evaluate", "--model", str(out), "--task", "wordnet-wic", "--limit", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["scorer"] == "cloze"
    rows = [{"text": f"word {i} " * (1 + i % 3), "label": i % 2} for i in range(16)]
    data = tmp_path / "task.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    with caplog.at_level("INFO"):
        rc = cli.main(["finetune", "--config", f"{ROOT / 'configs' / 'finetune.py'}:model={out},task=local",
                       "--workdir", str(tmp_path / "ft"), "--config.train.progress=False",
                       f"--config.task.train_file={data}", f"--config.task.validation_file={data}",
                       "--config.data.seq_len=16", "--config.train.steps=2", "--config.train.batch_size=8"])
    assert rc == 0 and (tmp_path / "ft" / "results.json").exists()
    assert "fine-tuning: the int8-dynamic model runs as its dequantized float32 weights" in caplog.text
    # Hugging Face cannot hold the int8 layout: the export is the dequantized float32 weights, with a warning
    with caplog.at_level("WARNING"):
        assert cli.main(["convert", "--to-hf", str(out), "--out", str(tmp_path / "hf")]) == 0
    assert "exporting its dequantized float32 weights" in caplog.text
    _, _, int8_params, _ = load_pretrained(out)
    _, hf_cfg, hf_params, _ = load_pretrained(tmp_path / "hf")
    assert hf_cfg.quantization == "none"
    flat_hf = traverse_util.flatten_dict(hf_params, sep="/")
    for path, want in traverse_util.flatten_dict(quantize.dequantize_params(int8_params), sep="/").items():
        np.testing.assert_array_equal(flat_hf[path], want, err_msg=path)


def test_compress_fp16_then_evaluate(bert_dir, tmp_path, capsys):
    out = tmp_path / "fp16"
    assert cli.main(["compress", "--model", str(bert_dir), "--out", str(out), "--quantize", "fp16"]) == 0
    _, config, params, _ = load_pretrained(out)
    assert config.dtype == "float16" and config.quantization == "none"
    assert {a.dtype for a in jax.tree.leaves(params)} == {np.dtype("float16")}
    assert cli.main(["evaluate", "--model", str(out), "--task", "wordnet-wic", "--limit", "4", "--json"]) == 0
    # A 16-bit model quantized to int8: its weights from float32, computing in float32 (not a scan dtype clash).
    int8 = tmp_path / "fp16-int8"
    assert cli.main(["compress", "--model", str(out), "--out", str(int8), "--quantize", "int8-weight"]) == 0
    _, config, _, _ = load_pretrained(int8)
    assert (config.dtype, config.quantization) == ("float32", "int8-weight")


def test_compress_cli_prunes_then_quantizes_and_records_both(bert_dir, tmp_path, capsys):
    out = tmp_path / "sparse-int8"
    capsys.readouterr()
    assert cli.main(["compress", "--model", str(bert_dir), "--out", str(out), "--prune", "magnitude:0.5",
                     "--quantize", "int8-weight"]) == 0
    printed = capsys.readouterr().out
    assert "pruned (magnitude:0.5): sparsity 0.500" in printed and "prune magnitude:0.5, quantize int8-weight" in printed
    record = json.loads((out / "config.json").read_text())["compression"]
    assert record["quantize"] == "int8-weight" and record["prune"]["method"] == "magnitude"
    family, config, params, _ = load_pretrained(out)
    assert config.quantization == "int8-weight"
    # A pruned weight quantizes to an int8 zero: half of the stack kernels' int8 values are 0.
    is_q = lambda x: isinstance(x, quantize.WithAux)  # noqa: E731
    kernels = [leaf.array.qvalue for leaf in jax.tree.leaves(params, is_leaf=is_q)
               if is_q(leaf) and leaf.array.qvalue.ndim >= 3]  # the stacks' [L, …] kernels (the default groups)
    assert kernels
    zeros = sum(int(np.sum(np.asarray(k) == 0)) for k in kernels)
    assert zeros >= 0.5 * sum(int(np.asarray(k).size) for k in kernels)


def test_compressing_a_compressed_model_keeps_what_was_done_before(bert_dir, tmp_path):
    from llm_jax.compression.pruning import prune_record

    record = lambda d: json.loads((d / "config.json").read_text())["compression"]  # noqa: E731
    sparse, half, neurons = tmp_path / "sparse", tmp_path / "sparse-fp16", tmp_path / "sparse-neurons"
    assert cli.main(["compress", "--model", str(bert_dir), "--out", str(sparse), "--prune", "magnitude:0.5"]) == 0
    assert cli.main(["compress", "--model", str(sparse), "--out", str(half), "--quantize", "fp16"]) == 0
    # Quantizing a pruned model: both steps recorded, so fine-tuning it still keeps the zeros.
    assert record(half)["quantize"] == "fp16" and record(half)["prune"]["spec"] == "magnitude:0.5"
    assert "history" not in record(half)
    # Pruning again: the newest report is `prune`, the earlier one moves to `history`; fine-tuning keeps the
    # zeros of the magnitude step even though the newest step removed neurons.
    assert cli.main(["compress", "--model", str(sparse), "--out", str(neurons), "--prune", "neurons:0.25"]) == 0
    assert record(neurons)["prune"]["method"] == "neurons"
    assert [h["prune"]["spec"] for h in record(neurons)["history"]] == ["magnitude:0.5"]
    assert prune_record(neurons)["spec"] == "magnitude:0.5" and prune_record(bert_dir) is None


def test_compress_cli_errors_are_one_line(bert_dir, tmp_path, capsys):
    out = tmp_path / "exists"
    out.mkdir()
    capsys.readouterr()
    assert cli.main(["compress", "--model", str(bert_dir), "--out", str(out), "--quantize", "int8-weight"]) == 1
    err = capsys.readouterr().err.strip()
    assert "already exists" in err and len(err.splitlines()) == 1
    assert cli.main(["compress", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o"),
                     "--quantize", "bf16"]) == 1
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()
    assert cli.main(["compress", "--model", str(bert_dir), "--out", str(tmp_path / "p"), "--prune",
                     "magnitude:2"]) == 1  # a bad spec: refused before anything is loaded or written
    err = capsys.readouterr().err.strip()
    assert "magnitude:2" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as e:  # nothing to do: a usage error
        cli.main(["compress", "--model", str(bert_dir), "--out", str(tmp_path / "n")])
    assert e.value.code == 2
    assert not (tmp_path / "p").exists() and not (tmp_path / "n").exists()
    with pytest.raises(ValueError, match="quantization='int4'"):
        dataclasses.replace(models.make_config("bert", **TINY), quantization="int4").validate()


def test_a_run_saved_before_the_quantization_field_still_resumes(tmp_path):
    from llm_jax.train.loop import check_workdir

    model = dataclasses.asdict(models.make_config("bert", **TINY))
    old = {k: v for k, v in model.items() if k != "quantization"}
    (tmp_path / "checkpoints" / "1").mkdir(parents=True)
    (tmp_path / "config.json").write_text(json.dumps({"family": "bert", "model": old}))
    check_workdir(tmp_path, {"family": "bert", "model": model}, keys=("family", "model"))  # the default: same
    with pytest.raises(ValueError, match="quantization"):
        check_workdir(tmp_path, {"family": "bert", "model": {**model, "quantization": "int8-weight"}},
                      keys=("family", "model"))
