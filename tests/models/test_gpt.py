"""GPT-1/2/3: parameter counts equal Hugging Face's (and GPT-3's paper), HF parity both ways on odd-shaped random
models, the classifier on the last token, KV-cache decoding equal to the full causal pass (dense and banded layers,
left padding), the causal-LM objective, FLOPs with banded layers, the recipe and the CLI."""

import dataclasses
import json
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from llm_jax import cli, flops, models, objectives
from llm_jax.data.tokenizer import SpecialIds
from llm_jax.interop import load_hf, load_hf_with_report, save_hf, state_dict
from llm_jax.interop.native import load_pretrained
from llm_jax.interop.tokenizer import save_hf_tokenizer
from llm_jax.models import gpt, gpt1, heads
from llm_jax.objectives.clm import pack_documents
from llm_jax.train.metrics import read_metrics
from llm_jax.train.step import abstract_params, count_params

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL_TOL = {"rtol": 1e-4, "atol": 1e-4}
T = 17
LENGTHS = (17, 11, 6)  # one full row, two right-padded ones
# Odd shapes: 3 heads of 12, an MLP width that is not 4·D (GPT-2 only: GPT-1 fixes 4·D), 3 / 2 layers.
GPT2_SHAPE = {"vocab_size": 301, "hidden_size": 36, "num_layers": 3, "num_heads": 3, "intermediate_size": 52,
              "max_position_embeddings": 23}
GPT1_SHAPE = {"vocab_size": 293, "hidden_size": 36, "num_layers": 2, "num_heads": 3, "intermediate_size": 144,
              "max_position_embeddings": 19}


def _count(family, cfg) -> int:
    objective = objectives.shape_only_objective("clm", cfg.vocab_size)
    return count_params(abstract_params(models.build(family, cfg), objective, objective.dummy_batch(1, 8)))


# ------------------------------------------------------------------------------------- counts, contract

HF_PRESETS = ("gpt1", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "gpt1-tiny", "gpt2-tiny")


@pytest.mark.parametrize("preset", HF_PRESETS)
def test_parameter_count_equals_hugging_face(preset, require):
    torch, transformers = require("torch"), require("transformers")
    family, cfg = models.get_preset(preset)
    hf_cfg = models.family_module(family).config_to_hf(cfg)
    config = transformers.AutoConfig.for_model(hf_cfg.pop("model_type"), **hf_cfg)
    cls = transformers.OpenAIGPTLMHeadModel if family == "gpt1" else transformers.GPT2LMHeadModel
    with torch.device("meta"):  # the module tree without allocating weights
        hf = cls(config)
    assert _count(family, cfg) == sum(p.numel() for p in hf.parameters())  # the tied head counted once


def test_published_hf_sizes():
    # reference/figures.md §1.4: OpenAIGPTLMHeadModel / GPT2LMHeadModel, tied weights counted once.
    counts = {p: _count(*models.get_preset(p)) for p in HF_PRESETS[:5]}
    assert counts == {"gpt1": 116_534_784, "gpt2": 124_439_808, "gpt2-medium": 354_823_168,
                      "gpt2-large": 774_030_080, "gpt2-xl": 1_557_611_200}


def test_gpt3_sizes_match_the_paper_to_its_rounding():
    # Brown et al. 2020: Table 2.1 names (125M … 175.0B) and Appendix Table D.1's counts in millions (3-4 digits).
    table_2_1 = {"small": 125e6, "medium": 350e6, "large": 760e6, "xl": 1.3e9, "2.7b": 2.7e9, "6.7b": 6.7e9,
                 "13b": 13.0e9, "175b": 175.0e9}
    table_d_1 = {"small": 125, "medium": 356, "large": 760, "xl": 1320, "2.7b": 2650, "6.7b": 6660, "13b": 12850,
                 "175b": 174600}
    for size, millions in table_d_1.items():
        cfg = gpt.PRESETS[f"gpt3-{size}"]
        n = _count("gpt", cfg)
        digits = len(str(millions).rstrip("0"))  # the table's significant figures
        assert float(f"{n / 1e6:.{digits}g}") == millions, (size, n)
        assert abs(n - table_2_1[size]) / table_2_1[size] < 0.02, (size, n)  # "350M" is 355.9M
        assert cfg.num_heads * cfg.head_dim == cfg.hidden_size and cfg.max_position_embeddings == 2048
        assert cfg.has_banded_layers and cfg.attention_window == gpt.GPT3_WINDOW
    # The two inconsistent rows: XL keeps 128-wide heads (16 of them), 13B's width is 40 × 128.
    assert (gpt.PRESETS["gpt3-xl"].num_heads, gpt.PRESETS["gpt3-xl"].head_dim) == (16, 128)
    assert gpt.PRESETS["gpt3-13b"].hidden_size == 5120


def test_family_contract_and_registry():
    for module in (gpt, gpt1):
        assert models.check_family(module) == []
        assert models.family_module(module.NAME) is module
        assert module.LM_KIND == "causal" and module.INPUT_FORMAT.pad_side == "right"
    assert "clm" in objectives.OBJECTIVES
    assert gpt1.TOKENIZER.roles["eod"] == "<|endoftext|>" and gpt1.TOKENIZER.kind == "gpt1_bpe"
    assert gpt.TOKENIZER.roles["eod"] == "<|endoftext|>" and gpt.TOKENIZER.kind == "bytelevel_bpe"
    local = gpt.PRESETS["gpt3-tiny"].local_layers()
    assert local.tolist() == [False, True]  # layer 0 dense, layer 1 banded
    assert gpt.PRESETS["gpt2"].local_layers() is None
    with pytest.raises(ValueError, match="GPT-1 attends densely"):
        models.make_config("gpt1", attention_window=8)
    with pytest.raises(ValueError, match="attention_window=-1 must be ≥ 0"):
        models.make_config("gpt", attention_window=-1)


def test_hf_config_conversions_refuse_what_they_cannot_represent():
    with pytest.raises(ValueError, match="GPT-3's locally banded layers cannot be written"):
        gpt.config_to_hf(gpt.PRESETS["gpt3-small"])
    dense = gpt.config_to_hf(dataclasses.replace(gpt.PRESETS["gpt3-small"], attention_window=0))
    assert (dense["model_type"], dense["n_positions"], dense["n_embd"]) == ("gpt2", 2048, 768)
    assert gpt.config_from_hf(dense) == dataclasses.replace(gpt.PRESETS["gpt3-small"], attention_window=0)
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx=True is not supported"):
        gpt.config_from_hf({**dense, "scale_attn_by_inverse_layer_idx": True})
    with pytest.raises(ValueError, match="fixes the MLP at 4 × hidden_size"):
        gpt1.config_to_hf(dataclasses.replace(gpt1.PRESETS["gpt1"], intermediate_size=100))
    with pytest.raises(ValueError, match="has no OpenAIGPT `afn`"):
        gpt1.config_to_hf(dataclasses.replace(gpt1.PRESETS["gpt1"], hidden_act="gelu"))
    # OpenAIGPT's afn "gelu" is the tanh form.
    assert gpt1.config_from_hf(gpt1.config_to_hf(gpt1.PRESETS["gpt1"])) == gpt1.PRESETS["gpt1"]
    assert gpt1.config_to_hf(gpt1.PRESETS["gpt1"])["afn"] == "gelu"


# -------------------------------------------------------------------------------------- HF parity


def _randomize(torch, module, seed):
    """Every parameter ~ N(0, 0.1²), LayerNorm scales ~ N(1, 0.1²): no constant can hide a mis-mapped tensor."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = 0.1 * torch.randn(p.shape, generator=g)
            p.copy_(1 + noise if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")) else noise)
    return module


def _inputs(vocab):
    rng = np.random.default_rng(0)
    mask = np.arange(T)[None, :] < np.array(LENGTHS)[:, None]
    return np.where(mask, rng.integers(1, vocab, (len(LENGTHS), T)), 0).astype(np.int64), mask


def _hf_model(transformers, family):
    if family == "gpt":
        s = GPT2_SHAPE
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(
            vocab_size=s["vocab_size"], n_embd=s["hidden_size"], n_layer=s["num_layers"], n_head=s["num_heads"],
            n_inner=s["intermediate_size"], n_positions=s["max_position_embeddings"], attn_implementation="eager"))
    s = GPT1_SHAPE
    return transformers.OpenAIGPTLMHeadModel(transformers.OpenAIGPTConfig(
        vocab_size=s["vocab_size"], n_embd=s["hidden_size"], n_layer=s["num_layers"], n_head=s["num_heads"],
        n_positions=s["max_position_embeddings"], attn_implementation="eager"))


def _ours(family, config, params, tokens, mask):
    model = models.build(family, config)
    out = jax.jit(lambda p, x, m: model.apply({"params": p}, x, mask_BT=m))(
        params, jnp.asarray(tokens, jnp.int32), jnp.asarray(mask))
    return jax.tree.map(np.asarray, out)


def _theirs(torch, hf_model, tokens, mask):
    with torch.no_grad():
        out = hf_model(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask.astype(np.int64)),
                       output_hidden_states=True)
    return out.hidden_states[-1].numpy(), out.logits.numpy()


@pytest.fixture(scope="session")
def hf_models(require, tmp_path_factory):
    """A random GPT2LMHeadModel and OpenAIGPTLMHeadModel of odd shapes, saved with a tokenizer of their family."""
    torch, transformers = require("torch"), require("transformers")
    from llm_jax.data.corpus import load_documents

    texts = load_documents("bundled", "train", max_documents=200)
    out = {}
    for seed, family in enumerate(("gpt", "gpt1")):
        torch.manual_seed(seed)
        model = _randomize(torch, _hf_model(transformers, family), seed=seed + 1).eval()
        path = tmp_path_factory.mktemp(f"hf_{family}")
        model.save_pretrained(path)
        fam = models.family_module(family)
        tok = fam.TOKENIZER.train(texts, model.config.vocab_size - 20)
        save_hf_tokenizer(tok, path, model_max_length=model.config.n_positions, tokenizer_class=fam.TOKENIZER.hf_class,
                          roles=fam.TOKENIZER.roles)
        out[family] = (model, path)
    return out


@pytest.mark.parametrize("family", ["gpt", "gpt1"])
def test_from_transformers_matches(require, hf_models, family):
    torch = require("torch")
    hf_model, path = hf_models[family]
    loaded = load_hf_with_report(path)
    assert loaded.family == family and loaded.report.initialized == () and loaded.report.unexpected == ()
    assert loaded.config.hidden_act == "gelu_new" and loaded.config.num_layers == hf_model.config.n_layer
    tokens, mask = _inputs(hf_model.config.vocab_size)
    ours = _ours(family, loaded.config, loaded.params, tokens, mask)
    hidden, logits = _theirs(torch, hf_model, tokens, mask)
    np.testing.assert_allclose(ours.hidden_BTD, hidden, **MODEL_TOL)
    np.testing.assert_allclose(ours.logits_BTV, logits, **MODEL_TOL)


def _random_params(family, config, seed):
    rng = np.random.default_rng(seed)
    flat = {}
    for path, shape in state_dict.param_shapes(family, config).items():
        noise = 0.1 * rng.standard_normal(shape).astype(np.float32)
        flat[path] = 1 + noise if path.endswith(("ln_1/scale", "ln_2/scale", "ln_f/scale")) else noise
    return traverse_util.unflatten_dict(flat, sep="/")


@pytest.mark.parametrize("family", ["gpt", "gpt1"])
def test_ours_to_transformers_loads_cleanly_and_matches(require, tmp_path, family):
    torch, transformers = require("torch"), require("transformers")
    config = models.make_config(family, **(GPT2_SHAPE if family == "gpt" else GPT1_SHAPE))
    params = _random_params(family, config, seed=4)
    save_hf(family, config, params, tmp_path)
    cls = transformers.GPT2LMHeadModel if family == "gpt" else transformers.OpenAIGPTLMHeadModel
    hf_model, info = cls.from_pretrained(tmp_path, output_loading_info=True, attn_implementation="eager")
    assert {k: v for k, v in info.items() if v} == {}, info  # no missing / unexpected / mismatched keys
    hf_model.eval()
    assert hf_model.get_output_embeddings().weight.data_ptr() == hf_model.get_input_embeddings().weight.data_ptr()
    tokens, mask = _inputs(config.vocab_size)
    ours = _ours(family, config, params, tokens, mask)
    hidden, logits = _theirs(torch, hf_model, tokens, mask)
    np.testing.assert_allclose(ours.hidden_BTD, hidden, **MODEL_TOL)
    np.testing.assert_allclose(ours.logits_BTV, logits, **MODEL_TOL)


def test_sequence_head_reads_the_last_real_token_as_gpt2_for_sequence_classification(require, hf_models):
    torch, transformers = require("torch"), require("transformers")
    _, path = hf_models["gpt"]
    hf = transformers.GPT2ForSequenceClassification.from_pretrained(path, num_labels=3, pad_token_id=0,
                                                                    attn_implementation="eager").eval()
    loaded = load_hf_with_report(path)
    params = {"transformer": loaded.params["transformer"], "score": {"kernel": hf.score.weight.detach().numpy().T}}
    model = heads.build("gpt", loaded.config, "classification", num_labels=3)
    tokens, mask = _inputs(loaded.config.vocab_size)  # pad id 0 only on padding, as HF's pooling needs
    ours = model.apply({"params": params}, jnp.asarray(tokens, jnp.int32), mask_BT=jnp.asarray(mask))
    with torch.no_grad():
        theirs = hf(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask.astype(np.int64))).logits
    np.testing.assert_allclose(np.asarray(ours.logits_BC), theirs.numpy(), **MODEL_TOL)


def test_convert_cli_both_ways(require, hf_models, tmp_path):
    transformers = require("transformers")
    _, path = hf_models["gpt1"]
    assert cli.main(["convert", "--from-hf", str(path), "--out", str(tmp_path / "ours")]) == 0
    family, _, params, tokenizer = load_pretrained(tmp_path / "ours")
    _, _, hf_params = load_hf(path)
    assert family == "gpt1" and tokenizer.token_to_id("<|endoftext|>") is not None
    for (pa, a), (pb, b) in zip(jax.tree.leaves_with_path(params), jax.tree.leaves_with_path(hf_params)):
        assert pa == pb
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert cli.main(["convert", "--to-hf", str(tmp_path / "ours"), "--out", str(tmp_path / "hf")]) == 0
    _, info = transformers.OpenAIGPTLMHeadModel.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not any(info.values()), info


def test_banded_gpt3_refuses_export_before_writing(tmp_path):
    config = models.make_config("gpt", **{**GPT2_SHAPE, "attention_window": 4})
    with pytest.raises(ValueError, match="locally banded layers cannot be written"):
        save_hf("gpt", config, _random_params("gpt", config, 0), tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------- KV cache, banded layers, left padding

B, S = 3, 10
# GPT-3-shaped: 4 layers, the odd ones banded with a window of 3 (narrower than S, so the band matters); a rolled
# scan (the cache goes through it per layer), which also compiles faster than the unrolled loop.
DECODE_CFG = {"vocab_size": 97, "hidden_size": 32, "num_layers": 4, "num_heads": 2, "intermediate_size": 64,
              "max_position_embeddings": 16, "attention_window": 3, "scan_unroll": False}


@pytest.fixture(scope="session")
def decoding():
    cfg = models.make_config("gpt", **DECODE_CFG)
    params = _random_params("gpt", cfg, seed=11)
    model = gpt.GptLMHeadModel(cfg)
    full = jax.jit(lambda x, pos, m: model.apply({"params": params}, x, positions_BT=pos, mask_BT=m).logits_BTV)
    dec = gpt.GptLMHeadModel(cfg, decode=True)
    tokens = jnp.asarray(np.random.default_rng(5).integers(0, cfg.vocab_size, (B, S)), jnp.int32)
    cache = jax.jit(dec.init)(jax.random.key(0), tokens)["cache"]

    @jax.jit
    def step(cache, x, pos, m):
        out, mut = dec.apply({"params": params, "cache": cache}, x, positions_BT=pos, mask_BT=m, mutable=["cache"])
        return out.logits_BTV, mut["cache"]

    return cfg, params, full, step, cache, tokens


def _decode(step, cache, tokens, positions=None, mask=None, prefill=4):
    """A `prefill`-token prompt, then one token at a time; the logits of every position."""
    outs, start = [], 0
    for stop in [prefill, *range(prefill + 1, tokens.shape[1] + 1)]:
        pos = None if positions is None else positions[:, start:stop]
        logits, cache = step(cache, tokens[:, start:stop], pos, mask)
        outs.append(logits)
        start = stop
    return jnp.concatenate(outs, axis=1), cache


def test_decoding_with_the_cache_equals_the_full_causal_pass(decoding):
    cfg, _, full, step, cache, tokens = decoding
    assert cfg.local_layers().tolist() == [False, True, False, True]
    assert cache["transformer"]["decoder"]["stack"]["layers"]["block"]["attn"]["cached_key"].shape == (4, B, S, 2, 16)
    ref = full(tokens, None, None)
    got, cache = _decode(step, cache, tokens)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5)
    assert int(cache["transformer"]["positions_fed"]) == S  # default positions continue from the fed count


def test_left_padded_rows_equal_the_unpadded_ones(decoding):
    _, _, full, step, cache, tokens = decoding
    pads = np.array([0, 2, 5])
    mask = jnp.asarray(np.arange(S)[None, :] >= pads[:, None])
    padded = jnp.stack([jnp.roll(tokens[b], pads[b]) for b in range(B)])  # real tokens pushed right
    positions = gpt.positions_from_mask(mask)
    ref = full(tokens, None, None)
    want = [ref[b, :S - pads[b]] for b in range(B)]
    left = full(padded, positions, mask)
    got, _ = _decode(step, cache, padded, positions, mask)
    for b in range(B):
        np.testing.assert_allclose(left[b, pads[b]:], want[b], atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(got[b, pads[b]:], want[b], atol=1e-5, rtol=1e-5)


def test_causality_and_the_band(decoding):
    cfg, params, full, _, _, tokens = decoding
    ref = full(tokens, None, None)
    changed = full(tokens.at[:, 6].set((tokens[:, 6] + 1) % cfg.vocab_size), None, None)
    np.testing.assert_array_equal(changed[:, :6], ref[:, :6])  # nothing before position 6 sees it
    assert not np.allclose(changed[:, 6:], ref[:, 6:])
    # The same weights attending densely in every layer agree while the band holds every key, then differ.
    dense = gpt.GptLMHeadModel(dataclasses.replace(cfg, attention_window=0))
    out = jax.jit(lambda p, x: dense.apply({"params": p}, x).logits_BTV)(params, tokens)
    w = cfg.attention_window
    np.testing.assert_allclose(out[:, :w], ref[:, :w], atol=1e-5, rtol=1e-5)
    assert not np.allclose(out[:, w:], ref[:, w:], atol=1e-3)


# ------------------------------------------------------------------------------------ causal-LM objective

SPECIAL = SpecialIds(unk=0, eod=1, eos=1)


def test_pack_documents_puts_eod_between_documents_and_targets_every_token():
    docs = [[np.array([5, 6]), np.array([7])], [], [np.array([8, 9, 10, 11, 12])]]
    rows = pack_documents(docs, 4, eod=1, pad=0)
    stream = [5, 6, 7, 1, 8, 9, 10, 11, 12, 1]
    assert rows["tokens"].tolist() == [[5, 6, 7, 1, 8], [8, 9, 10, 11, 12], [12, 1, 0, 0, 0]]
    assert rows["mask"].sum(1).tolist() == [5, 5, 2]
    objective = objectives.make_objective(objectives.config_for("clm"), SPECIAL, 20)
    batch = objective.prepare({**rows, "epoch": np.zeros(3), "example_index": np.arange(3)}, seed=0)
    targets = batch["targets"][batch["weights"] > 0].tolist()
    assert targets == stream[1:]  # every token after the first is predicted exactly once
    assert batch["inputs"].shape == batch["targets"].shape == (3, 4)
    np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])
    np.testing.assert_array_equal(batch["weights"], rows["mask"][:, 1:])
    # Without a padding token the objective pads with the end-of-document id (weight 0 either way).
    assert objective.build_examples(docs, 4, 0)["tokens"].tolist() == pack_documents(docs, 4, 1, 1)["tokens"].tolist()
    with pytest.raises(ValueError, match="needs the special token role"):
        objectives.make_objective(objectives.config_for("clm"), SpecialIds(unk=0), 20)
    with pytest.raises(ValueError, match="no tokens"):
        pack_documents([[], [np.array([], np.int32)]], 4, eod=1, pad=0)


def test_clm_loss_accumulates_exactly_and_starts_near_chance():
    cfg = models.make_config("gpt", **DECODE_CFG)
    model = models.build("gpt", cfg)
    objective = objectives.make_objective(objectives.config_for("clm"), SPECIAL, cfg.vocab_size)
    rng = np.random.default_rng(0)
    docs = [[rng.integers(2, cfg.vocab_size, n)] for n in (20, 7, 9)]
    rows = objective.build_examples(docs, 12, 0)
    batch = jax.tree.map(jnp.asarray, objective.prepare(rows, 0))
    # 39 stream tokens → 38 targets in 4 rows of 12, the last one padded (and the halves below unevenly so).
    assert batch["inputs"].shape == (4, 12) and float(batch["weights"].sum()) == 20 + 7 + 9 + 3 - 1
    params = jax.jit(model.init)(jax.random.key(0), batch["inputs"])["params"]
    # GPT-2 §2.3: the two projections into the residual stream start at 0.02 / √(2L), every other weight at 0.02.
    layer = jax.tree.map(np.asarray, nn.meta.unbox(params)["transformer"]["decoder"]["stack"]["layers"]["block"])
    for kernel, std in ((layer["attn"]["out"]["kernel"], 0.02 / np.sqrt(8)), (layer["mlp"]["wo"]["kernel"],
                        0.02 / np.sqrt(8)), (layer["attn"]["query"]["kernel"], 0.02), (layer["mlp"]["wi"]["kernel"], 0.02)):
        assert abs(float(np.std(kernel)) / std - 1) < 0.1
    loss_fn = objective.make_loss(model)
    grad = jax.jit(jax.value_and_grad(lambda p, b, d=None: loss_fn(p, b, jax.random.key(1), denominators=d,
                                                                   deterministic=True), has_aux=True))
    (full, (m, _)), g_full = grad(params, batch)
    assert abs(float(full) - np.log(cfg.vocab_size)) < 0.1  # near-uniform predictions at init
    den = objective.loss_denominators(batch)
    parts = [grad(params, {k: v[i:i + 2] for k, v in batch.items()}, den) for i in (0, 2)]
    np.testing.assert_allclose(sum(float(p[0][0]) for p in parts), float(full), rtol=1e-5)
    np.testing.assert_allclose(sum(float(p[0][1][0]["accuracy"]) for p in parts), float(m["accuracy"]), rtol=1e-5)
    summed = jax.tree.map(lambda a, b: a + b, parts[0][1], parts[1][1])
    for a, b in zip(jax.tree.leaves(summed), jax.tree.leaves(g_full)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------------------------------------- FLOPs


def test_flops_of_a_dense_gpt2_forward_equal_xla_dots():
    cfg = models.make_config("gpt", hidden_size=128, num_layers=2, num_heads=2, intermediate_size=512,
                             vocab_size=1000, max_position_embeddings=64, scan_unroll=True)
    ocfg = objectives.config_for("clm")
    objective = objectives.make_objective(ocfg, SPECIAL, cfg.vocab_size)
    model, batch = models.build("gpt", cfg), objective.dummy_batch(2, 64)
    loss_fn = objective.make_loss(model)
    params = nn.meta.unbox(abstract_params(model, objective, batch))
    forward = jax.jit(lambda p, b: loss_fn(p, b, jax.random.key(0), deterministic=True)[0]).lower(
        params, batch).compile()
    ours = flops.step_flops("gpt", cfg, ocfg, 2, 64, train=False)
    # Every matmul (q/k/v/out, both attention products, the MLP, the tied head at all 64 positions) is a dot.
    assert flops.hlo_dot_flops(forward) == ours.matmul
    assert "lm_head/vocab_bias" not in ours.terms and "final_norm" in ours.terms


def test_banded_layers_count_their_window():
    cfg = dataclasses.replace(gpt.PRESETS["gpt3-small"])
    ocfg = objectives.config_for("clm")
    (tower,) = flops.towers_for("gpt", cfg, ocfg, 2048)
    (dense,) = flops.towers_for("gpt", dataclasses.replace(cfg, attention_window=0), ocfg, 2048)
    assert (tower.attention_window, tower.windowed_layers, dense.windowed_layers) == (256, 6, 0)
    banded, full = flops.forward_flops([tower], 1), flops.forward_flops([dense], 1)
    hk, t, w = cfg.hidden_size, 2048, 256
    # Scores and context of the 6 banded layers cover 256 keys instead of 2048: 2 products of 2·T·(T − w)·H·K less.
    assert full.matmul - banded.matmul == 6 * 2 * 2 * t * (t - w) * hk
    assert banded.terms["matmul/layers/self_attn/kv"] == full.terms["matmul/layers/self_attn/kv"]  # projections: all T
    assert flops.model_flops_per_token([tower]) == pytest.approx(
        flops.model_flops_per_token([dense]) - 12 * 6 * hk * (t - w))
    with pytest.raises(ValueError, match="set both"):
        dataclasses.replace(tower, windowed_layers=0)
    # PaLM's N is the non-embedding parameter count (ln_f included, no output bias), for both generations.
    for family, preset in (("gpt", "gpt2"), ("gpt1", "gpt1"), ("gpt", "gpt3-xl")):
        cfg = models.get_preset(preset)[1]
        (tw,) = flops.towers_for(family, cfg, ocfg, 128)
        embeddings = (cfg.vocab_size + cfg.max_position_embeddings) * cfg.hidden_size
        assert flops.non_embedding_params(tw) == _count(family, cfg) - embeddings


# ----------------------------------------------------------------------------------------- recipe, CLI

SMALL = ["--config.data.max_documents=400", "--config.data.max_eval_documents=40", "--config.data.seq_len=64",
         "--config.data.vocab_size=1000", "--config.train.batch_size=16", "--config.train.progress=False",
         "--config.train.log_every=5", "--config.optim.warmup_steps=5", "--config.optim.learning_rate=3e-3"]


def test_recipe_sizes_and_versions():
    from llm_jax import config as config_lib

    def load(arg):
        return config_lib.from_dict(config_lib.load_config_file(f"{ROOT / 'configs' / 'gpt.py'}:{arg}"))

    tiny1, tiny3, big = load("version=1,size=tiny"), load("version=3,size=tiny"), load("version=3,size=175b")
    assert (tiny1.family, tiny3.family, tiny3.model.attention_window) == ("gpt1", "gpt", 32)
    assert big.model == gpt.PRESETS["gpt3-175b"] and big.data.seq_len == 2048
    assert big.optim.schedule == "cosine" and big.optim.end_learning_rate == pytest.approx(0.1 * 0.6e-4)
    assert (big.optim.b2, big.optim.weight_decay, big.optim.learning_rate) == (0.95, 0.1, 0.6e-4)
    assert big.train.batch_size * 2048 == pytest.approx(3.2e6, rel=1e-3)
    with pytest.raises(ValueError, match="has no size 'xl'"):
        load("version=1,size=xl")


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("gpt2")
    assert cli.main(["pretrain", "--config", f"{ROOT / 'configs' / 'gpt.py'}:version=2,size=tiny",
                     "--workdir", str(workdir), *SMALL, "--config.train.steps=60", "--config.train.eval_every=60",
                     "--config.train.checkpoint_every=60", "--config.train.eval_batches=2"]) == 0
    return workdir


def test_cli_pretraining_lowers_the_loss(gpt_run):
    rows = [r for r in read_metrics(gpt_run) if "loss" in r]
    assert rows[0]["step"] == 1 and rows[-1]["step"] == 60
    # Chance is ln(1000) ≈ 6.9 nats; 60 steps of a 2-layer model take it more than 1 nat (2.7× in perplexity) below,
    # on training and on held-out text.
    assert rows[0]["loss"] > 6.0
    assert rows[-1]["loss"] < rows[0]["loss"] - 1.0
    assert {"accuracy", "learning_rate", "tokens_per_s"} <= set(rows[-1])
    evals = [r for r in read_metrics(gpt_run) if "eval_loss" in r]
    assert evals[-1]["eval_loss"] < rows[0]["loss"] - 1.0
    config = json.loads((gpt_run / "config.json").read_text())
    assert config["family"] == "gpt" and config["model"]["eos_token_id"] == 0  # <|endoftext|> is id 0


def test_cli_run_exports_to_gpt2(require, gpt_run, tmp_path):
    torch, transformers = require("torch"), require("transformers")
    assert cli.main(["convert", "--to-hf", str(gpt_run), "--out", str(tmp_path)]) == 0
    hf, info = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, output_loading_info=True,
                                                           attn_implementation="eager")
    assert not any(info.values()), info
    family, config, params, tokenizer = load_pretrained(gpt_run)
    ids = np.asarray([tokenizer.encode("The cat sat on the mat.\nIt was happy.").ids])
    ours = _ours(family, config, params, ids, np.ones_like(ids, bool))
    with torch.no_grad():
        theirs = hf.eval()(input_ids=torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(ours.logits_BTV, theirs, **MODEL_TOL)
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert hf_tok("The cat sat.")["input_ids"] == tokenizer.encode("The cat sat.").ids


def test_finetune_from_the_gpt2_run(gpt_run, tmp_path):
    """`llm-jax finetune` from a GPT-2 run: rows padded with <|endoftext|> (the family's role map: GPT-2 has no
    padding token), plain text without a classifier token, the classifier on the last real token; the vocabulary
    unchanged and no auxiliary LM loss by default (`tests/models/test_gpt1_finetune.py` has GPT-1's)."""
    recipe = f"{ROOT / 'configs' / 'finetune.py'}:model={gpt_run},task=wordnet-supersense"
    assert cli.main(["finetune", "--config", recipe,
                     "--workdir", str(tmp_path), "--config.train.progress=False", "--config.data.seq_len=32",
                     "--config.data.train_examples=32", "--config.train.batch_size=8", "--config.train.steps=4",
                     "--config.train.eval_every=4", "--config.train.eval_examples=16"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["test"]) == {"accuracy", "macro_f1", "majority_baseline"}
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"]["vocab_size"] == json.loads((gpt_run / "config.json").read_text())["model"]["vocab_size"]
    assert config["train"]["aux_lm_weight"] == 0.0
    assert not any("lm_loss" in r for r in read_metrics(tmp_path))
