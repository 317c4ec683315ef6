"""Pruning (issue #21): magnitude pruning to a sparsity (global / per matrix) of the stacks' kernels only; a pruned
model's zeros survive fine-tuning (and gradual pruning reaches its schedule); neuron pruning removes FFN units and
equals the masked original exactly, saves, loads and exports to Hugging Face; bad specs are one-line errors."""

import json
import math
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from llm_jax import cli, models
from llm_jax.compression.pruning import (DEFAULT_GROUPS, ffn_units_to_keep, gradual_magnitude_pruning,
                                         keep_masked, layer_axes, masks_for, parse_prune_spec, prune, sparsity_at)
from llm_jax.data import load_documents, special_ids, train_tokenizer
from llm_jax.interop import state_dict
from llm_jax.interop.native import convert_to_hf, load_pretrained, save_model_dir
from llm_jax.train.checkpoint import Checkpointer, abstract_like

ROOT = pathlib.Path(__file__).resolve().parents[2]
KERNELS = re.compile(DEFAULT_GROUPS)


def _flat(params):
    return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(params, sep="/").items()}


def _random_params(family, config, seed=0):
    """Our model's exact tree (shapes from `jax.eval_shape`), every leaf distinct: N(0, 0.05²), norm scales ~ 1."""
    rng = np.random.default_rng(seed)
    flat = {p: (0.05 * rng.standard_normal(s)).astype(np.float32) + (1.0 if p.endswith("scale") else 0.0)
            for p, s in state_dict.param_shapes(family, config).items()}
    return traverse_util.unflatten_dict(flat, sep="/")


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer("wordpiece", load_documents("bundled", "train", max_documents=800), 1000)


@pytest.fixture(scope="module")
def bert(tokenizer):
    cfg = models.make_config("bert", hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                             max_position_embeddings=64, vocab_size=tokenizer.get_vocab_size(),
                             pad_token_id=special_ids(tokenizer).pad)
    return cfg, _random_params("bert", cfg)


def _count_zeros(flat, paths):
    return sum(int(np.sum(flat[p] == 0)) for p in paths)


# ------------------------------------------------------------------------------------------- 1. magnitude


def test_magnitude_pruning_reaches_the_sparsity_globally_and_leaves_the_rest(bert):
    cfg, params = bert
    new_cfg, pruned, report = prune("bert", cfg, params, parse_prune_spec("magnitude:0.6"))
    before, after = _flat(params), _flat(pruned)
    chosen = [p for p in before if KERNELS.search(p)]
    assert sorted(chosen) == sorted(report["params"]) and len(chosen) == 6  # q, k, v, out, wi, wo
    n = sum(before[p].size for p in chosen)
    assert _count_zeros(after, chosen) == round(0.6 * n) and report["sparsity"] == pytest.approx(round(0.6 * n) / n)
    # The smallest magnitudes went: every pruned weight is at most every kept one.
    pruned_abs = np.concatenate([np.abs(before[p][after[p] == 0]) for p in chosen])
    kept_abs = np.concatenate([np.abs(before[p][after[p] != 0]) for p in chosen])
    assert pruned_abs.max() <= kept_abs.min()
    for p in before:  # embeddings, norms, biases, pooler and heads untouched; kept kernel entries unchanged
        if p not in chosen:
            np.testing.assert_array_equal(after[p], before[p], err_msg=p)
        else:
            np.testing.assert_array_equal(after[p][after[p] != 0], before[p][after[p] != 0])
    assert new_cfg == cfg and report["parameters"] == report["parameters_before"]
    assert report["nonzero_before"] - report["nonzero"] == round(0.6 * n)
    json.dumps(report)  # JSON-able, for config.json


def test_magnitude_pruning_per_matrix_prunes_each_layer_to_the_sparsity(bert):
    cfg, params = bert
    _, pruned, report = prune("bert", cfg, params, parse_prune_spec("magnitude:0.3,per-matrix"))
    after = _flat(pruned)
    for path, entry in report["params"].items():
        assert after[path].shape[0] == cfg.num_layers  # a scanned stack's [L, ...] kernel: one matrix per layer
        for layer in after[path]:
            assert np.sum(layer == 0) == round(0.3 * layer.size), path
        assert entry["layer_sparsity"] == pytest.approx([round(0.3 * after[path][0].size) / after[path][0].size] * 2)
    # A threshold prunes exactly the weights under it; groups= chooses other params (here only the FFN's).
    _, thr, rep = prune("bert", cfg, params, parse_prune_spec("magnitude-threshold:0.03,groups=mlp/w[io]/kernel$"))
    before, after = _flat(params), _flat(thr)
    assert sorted(rep["params"]) == sorted(p for p in before if re.search("mlp/w[io]/kernel$", p))
    for p in before:
        want = np.where(np.abs(before[p]) < 0.03, 0, before[p]) if p in rep["params"] else before[p]
        np.testing.assert_array_equal(after[p], want)


def test_layer_axes_know_stacked_from_shared():
    bert_axes = layer_axes("bert", models.get_preset("bert-tiny")[1])
    albert_axes = layer_axes("albert", models.get_preset("albert-tiny")[1])
    assert bert_axes["bert/encoder/stack/layers/block/mlp/wi/kernel"] == 0
    assert bert_axes["bert/embeddings/word_embeddings/embedding"] is None
    assert albert_axes["albert/encoder/stack/layers/block/mlp/wi/kernel"] is None  # one layer shared across depth


# --------------------------------------------------------------------------------- 2. zeros through fine-tuning


@pytest.fixture(scope="module")
def pruned_finetune(tmp_path_factory, bert, tokenizer):
    """A magnitude-pruned (50 %) BERT model directory fine-tuned 6 steps on a bundled task through the CLI, with
    gradual pruning to 70 % during the run (mask updates at steps 0, 2, 4)."""
    cfg, params = bert
    _, pruned, report = prune("bert", cfg, params, parse_prune_spec("magnitude:0.5"))
    src = save_model_dir("bert", cfg, pruned, tmp_path_factory.mktemp("pruned") / "model", tokenizer=tokenizer,
                         compression={"prune": report})
    workdir = tmp_path_factory.mktemp("ft")
    assert cli.main(["finetune", "--config", f"{ROOT / 'configs' / 'finetune.py'}:model={src},task=wordnet-supersense",
                     "--workdir", str(workdir), "--config.train.progress=False", "--config.data.seq_len=16",
                     "--config.data.train_examples=64", "--config.train.batch_size=8", "--config.train.steps=6",
                     "--config.train.eval_examples=40", "--config.train.eval_every=6",
                     "--config.optim.learning_rate=1e-2", "--config.train.prune=magnitude:0.7,end=4,every=2"]) == 0
    _, _, tuned, _ = load_pretrained(workdir)  # the final checkpoint's params (the classifier's tree)
    return pruned, tuned, workdir


def test_a_pruned_models_zeros_stay_zero_through_fine_tuning(pruned_finetune):
    pruned, tuned, workdir = pruned_finetune
    src, out = _flat(pruned), _flat(tuned)
    chosen = [p for p in src if KERNELS.search(p)]
    assert chosen and all(p in out for p in chosen)
    for p in chosen:
        assert np.all(out[p][src[p] == 0] == 0), f"{p}: a pruned weight came back"
    # The weights that stayed were trained: nearly all of them moved.
    kept = np.concatenate([(out[p] != src[p])[out[p] != 0] for p in chosen])
    assert kept.mean() > 0.95
    # Non-pruned groups trained too (the embeddings).
    emb = "bert/embeddings/word_embeddings/embedding"
    assert not np.array_equal(out[emb], src[emb])


def test_gradual_pruning_in_fine_tuning_reaches_its_target(pruned_finetune):
    _, tuned, workdir = pruned_finetune
    out = _flat(tuned)
    chosen = [p for p in out if KERNELS.search(p)]
    n = sum(out[p].size for p in chosen)
    assert _count_zeros(out, chosen) == math.floor(0.7 * n)
    summary = json.loads((workdir / "summary.json").read_text())["pruning"]
    assert summary["masked"] == "magnitude:0.5" and summary["gradual"] == "magnitude:0.7,end=4,every=2"
    assert summary["final_sparsity"][DEFAULT_GROUPS] == pytest.approx(math.floor(0.7 * n) / n)


# ------------------------------------------------------------------------------------------ 3. gradual (optax)


def test_gradual_pruning_follows_the_cubic_schedule_and_keeps_zeros(tmp_path):
    rng = np.random.default_rng(1)
    params = {"enc": {"stack": {"layers": {"block": {"mlp": {"wi": {"kernel": rng.standard_normal((2, 8, 16)),
                                                                    "bias": rng.standard_normal((2, 16))}}}}}},
              "emb": {"embedding": rng.standard_normal((10, 8))}}
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
    kernel = ("enc", "stack", "layers", "block", "mlp", "wi", "kernel")
    begin, end, every, target = 2, 10, 3, 0.8
    for per_matrix in (False, True):
        tx = optax.chain(optax.sgd(0.05), gradual_magnitude_pruning(
            target, begin, end, every, per_matrix=per_matrix,
            layer_axes={"enc/stack/layers/block/mlp/wi/kernel": 0}))
        state = tx.init(params)
        p = params
        step = jax.jit(lambda p, s, g: tx.update(g, s, p))
        zeros_so_far = np.zeros((2, 8, 16), bool)
        for t in range(14):
            grads = jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape), jnp.float32), p)
            updates, state = step(p, state, grads)
            p = optax.apply_updates(p, updates)
            w = np.asarray(traverse_util.flatten_dict(p)[kernel])
            last = max([u for u in range(begin, min(t, end) + 1) if (u - begin) % every == 0 or u == end],
                       default=None)
            s = 0.0 if last is None else float(sparsity_at(last, target, begin, end))
            if per_matrix:
                assert [int(np.sum(layer == 0)) for layer in w] == [math.floor(s * 128)] * 2, t
            else:
                assert int(np.sum(w == 0)) == math.floor(s * 256), t
            assert np.all(w[zeros_so_far] == 0), f"step {t}: a pruned weight came back"
            zeros_so_far |= w == 0
            assert np.all(np.asarray(p["emb"]["embedding"]) != 0)  # not a chosen group
        assert s == pytest.approx(target)
        # The masks are optimizer state: checkpointed and restored with it.
        masks = state[1].masks
        assert np.array_equal(np.asarray(traverse_util.flatten_dict(masks)[kernel]), w != 0)
        ckpt = Checkpointer(tmp_path / f"ckpt{per_matrix}")
        ckpt.save(14, {"params": p, "opt_state": state}, {"step": 14}, force=True)
        _, restored, _ = ckpt.restore_latest(abstract_like({"params": p, "opt_state": state}))
        ckpt.close()
        jax.tree.map(np.testing.assert_array_equal, restored["opt_state"], state)


def test_keep_masked_zeroes_updates_of_pruned_weights(bert):
    cfg, params = bert
    _, pruned, _ = prune("bert", cfg, params, parse_prune_spec("magnitude:0.5"))
    masks = masks_for(pruned)
    flat = _flat(pruned)
    tx = keep_masked(masks)
    ones = jax.tree.map(jnp.ones_like, pruned)
    out, _ = tx.update(ones, tx.init(pruned))
    for path, u in _flat(out).items():
        want = (flat[path] != 0).astype(np.float32) if KERNELS.search(path) else np.ones_like(flat[path])
        np.testing.assert_array_equal(u, want, err_msg=path)


# -------------------------------------------------------------------------------------------- 4. neurons


_FORWARDS = {}


def _apply(family, cfg, params, tokens):
    """`(hidden_BTD, logits_BTV)`, jitted once per Config (the original and the masked original share it)."""
    if (family, cfg) not in _FORWARDS:
        model = models.build(family, cfg)

        def forward(params, tokens):
            out = model.apply({"params": params}, tokens, **({"decoder_tokens_BT": tokens} if family == "t5" else {}))
            return out.hidden_BTD, (out.mlm_logits_BTV if family == "bert" else out.logits_BTV)

        _FORWARDS[family, cfg] = jax.jit(forward)
    return tuple(np.asarray(x) for x in _FORWARDS[family, cfg](params, tokens))


def _masked_original(params, keep):
    """The original params with the removed units' `wi` columns and biases and `wo` rows zeroed."""
    flat = _flat(params)
    for block, (_, idx) in keep.items():
        width = flat[f"{block}/wo/kernel"].shape[-2]
        kept = np.zeros(idx.shape[:-1] + (width,), bool)
        np.put_along_axis(kept, idx, True, axis=-1)
        for path in list(flat):
            if path.startswith(block + "/wi") and path.endswith("kernel"):
                flat[path] = flat[path] * kept[..., None, :]
            elif path.startswith(block + "/wi") and path.endswith("bias"):
                flat[path] = flat[path] * kept
            elif path == f"{block}/wo/kernel":
                flat[path] = flat[path] * kept[..., :, None]
    return traverse_util.unflatten_dict(flat, sep="/")


TOKENS = np.random.default_rng(0).integers(5, 300, (2, 10)).astype(np.int32)


_NEURONS = {}


def _neurons(family, bert):
    """`neurons:0.25` of a BERT, or of a gated (v1.1) T5 whose `wi_0` and `wi_1` lose the same units (made once)."""
    if family not in _NEURONS:
        if family == "bert":
            cfg, params = bert
        else:
            cfg = models.make_config("t5", vocab_size=300, d_model=32, d_kv=8, num_heads=2, d_ff=48, num_layers=2,
                                     num_decoder_layers=1, feed_forward_proj="gated-gelu", tie_word_embeddings=False)
            params = _random_params("t5", cfg, seed=3)
        spec = parse_prune_spec("neurons:0.25")
        new_cfg, small, report = prune(family, cfg, params, spec)
        _NEURONS[family] = family, cfg, params, ffn_units_to_keep(family, cfg, params, spec), new_cfg, small, report
    return _NEURONS[family]


@pytest.fixture(params=["bert", "t5"])
def neurons(request, bert):
    return _neurons(request.param, bert)


def test_neuron_pruned_model_equals_the_masked_original(neurons):
    family, cfg, params, keep, new_cfg, small, report = neurons
    field, = models.family_module(family).FFN_BLOCKS
    width = getattr(cfg, field)
    assert getattr(new_cfg, field) == width - round(0.25 * width) and report["width"] == {
        field: [width, getattr(new_cfg, field)]}
    for block, (_, idx) in keep.items():
        assert np.all(np.diff(idx, axis=-1) > 0)
        for path, x in _flat(small).items():  # every FFN matrix of the block is smaller
            if path.startswith(block + "/w") and not path.endswith("wo/bias"):
                assert getattr(new_cfg, field) in x.shape and width not in x.shape, path
    assert report["parameters"] < report["parameters_before"]
    got = _apply(family, new_cfg, small, TOKENS)
    want = _apply(family, cfg, _masked_original(params, keep), TOKENS)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-5, rtol=1e-5)
    # ... and it differs from the unpruned model (the removed units were real).
    assert not np.allclose(_apply(family, cfg, params, TOKENS)[1], want[1], atol=1e-5)


def test_neuron_pruned_bert_saves_loads_and_exports_to_hf(bert, tokenizer, tmp_path, require):
    _, cfg, _, _, new_cfg, small, report = _neurons("bert", bert)
    torch, transformers = require("torch"), require("transformers")
    src = save_model_dir("bert", new_cfg, small, tmp_path / "model", tokenizer=tokenizer,
                         compression={"prune": report})
    assert json.loads((src / "config.json").read_text())["compression"]["prune"]["method"] == "neurons"
    loaded_family, loaded_cfg, loaded, _ = load_pretrained(src)
    assert loaded_family == "bert" and loaded_cfg == new_cfg and loaded_cfg.intermediate_size == 48
    jax.tree.map(np.testing.assert_array_equal, loaded, small)
    convert_to_hf(src, tmp_path / "hf")
    hf_config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert hf_config["intermediate_size"] == 48 and hf_config["hidden_size"] == 32
    hf = transformers.BertForPreTraining.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        out = hf(torch.tensor(TOKENS, dtype=torch.long), output_hidden_states=True)
    hidden, logits = _apply("bert", new_cfg, small, TOKENS)
    np.testing.assert_allclose(hidden, out.hidden_states[-1].numpy(), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(logits, out.prediction_logits.numpy(), atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------------------ 5. errors


@pytest.mark.parametrize("text", ["", "magnitude", "magnitude:1.0", "magnitude:-0.1", "magnitude:abc",
                                  "random:0.5", "neurons:0.2,per-matrix", "magnitude:0.5,bogus",
                                  "magnitude:0.5,groups=(", "neurons:0.2,begin=3", "magnitude:0.5,begin=5,end=5",
                                  "magnitude:0.5,every=0", "neurons:1"])
def test_bad_specs_are_one_line_errors(text):
    with pytest.raises(ValueError, match="accepted:") as e:
        parse_prune_spec(text)
    assert "\n" not in str(e.value)


def test_unsupported_family_groups_and_schedule_are_one_line_errors(bert):
    cfg, params = bert
    xlnet_cfg = models.get_preset("xlnet-tiny")[1]
    with pytest.raises(ValueError, match="'xlnet' declares no FFN_BLOCKS.*neuron pruning needs it") as e:
        prune("xlnet", xlnet_cfg, {}, parse_prune_spec("neurons:0.5"))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="hold none of bert's FFN blocks"):
        prune("bert", cfg, {"other": {"kernel": np.ones((2, 2))}}, parse_prune_spec("neurons:0.5"))
    with pytest.raises(ValueError, match="match no parameter"):
        prune("bert", cfg, params, parse_prune_spec("magnitude:0.5,groups=no_such_param"))
    with pytest.raises(ValueError, match="during fine-tuning"):
        prune("bert", cfg, params, parse_prune_spec("magnitude:0.5,end=10"))
    from llm_jax.train.finetune import FinetuneTrain
    with pytest.raises(ValueError, match="train.prune='neurons:0.5'"):
        FinetuneTrain(prune="neurons:0.5").validate()


def test_declared_ffn_blocks_exist_in_the_models():
    for name, module in models.FAMILIES.items():
        if not hasattr(module, "FFN_BLOCKS"):
            continue
        preset = next(p for p in module.PRESETS if p.endswith("tiny"))
        shapes = state_dict.param_shapes(name, module.PRESETS[preset])
        for field, paths in module.FFN_BLOCKS.items():
            width = getattr(module.PRESETS[preset], field)
            for path in paths:
                assert shapes[f"{path}/wo/kernel"][-2] == width, (name, path)
    assert {"bert", "roberta", "distilbert", "electra", "gpt", "albert", "t5"} <= {
        n for n, m in models.FAMILIES.items() if hasattr(m, "FFN_BLOCKS")}


def test_check_family_refuses_a_bad_ffn_blocks():
    import types

    from llm_jax.models import bert
    from llm_jax.models.family import check_family

    for bad, why in (({"hidden_act": ("bert/encoder/stack/layers/block/mlp",)}, "no int field"),
                     ({"intermediate_size": "bert/encoder/stack/layers/block/mlp"}, "non-empty tuples")):
        fake = types.ModuleType("fake_bert")
        fake.__dict__.update({k: v for k, v in vars(bert).items() if not k.startswith("__")}, FFN_BLOCKS=bad)
        assert any(why in problem for problem in check_family(fake)), bad
    assert check_family(bert) == []
