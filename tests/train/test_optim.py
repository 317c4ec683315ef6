"""The optimizer choices: schedules (linear, cosine, T5's rsqrt and constant), Adafactor, the extra-transforms hook, errors."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from llm_jax.train.optim import OptimConfig, learning_rate_schedule, make_optimizer

PEAK, WARMUP, TOTAL, END = 1e-2, 4, 12, 1e-3


def _lr(schedule, step, **kw):
    cfg = OptimConfig(learning_rate=PEAK, warmup_steps=WARMUP, end_learning_rate=END, schedule=schedule, **kw)
    return float(learning_rate_schedule(cfg, TOTAL)(step))


def test_linear_schedule_is_the_bert_default():
    assert OptimConfig().schedule == "linear" and OptimConfig().name == "adamw"
    assert [_lr("linear", s) for s in (0, 2, 4)] == pytest.approx([0.0, PEAK / 2, PEAK])
    assert _lr("linear", 8) == pytest.approx(PEAK + (END - PEAK) * 4 / 8)
    assert _lr("linear", TOTAL) == pytest.approx(END)


def test_cosine_schedule():
    assert [_lr("cosine", s) for s in (0, 2, 4)] == pytest.approx([0.0, PEAK / 2, PEAK])
    # Halfway through the decay the cosine is at the midpoint between peak and end.
    assert _lr("cosine", 8) == pytest.approx((PEAK + END) / 2, rel=1e-5)
    assert _lr("cosine", 6) == pytest.approx(END + (PEAK - END) * (1 + math.cos(math.pi / 4)) / 2, rel=1e-5)
    assert _lr("cosine", TOTAL) == pytest.approx(END, rel=1e-5)


def test_constant_schedule_is_t5s_fine_tuning():
    assert [_lr("constant", s) for s in (0, 2, 4, 8, TOTAL, 10 * TOTAL)] == pytest.approx(
        [0.0, PEAK / 2, PEAK, PEAK, PEAK, PEAK])
    no_warmup = OptimConfig(learning_rate=PEAK, warmup_steps=0, schedule="constant")
    assert float(learning_rate_schedule(no_warmup, TOTAL)(0)) == pytest.approx(PEAK)


def test_rsqrt_schedule_is_t5s():
    # T5 (Raffel et al. §3.1.2): 1 / sqrt(max(step, k)) — constant for k steps, then ∝ 1/sqrt(step).
    for step in (0, 1, WARMUP, 9, 100):
        assert _lr("rsqrt", step) == pytest.approx(PEAK * math.sqrt(WARMUP / max(step, WARMUP)), rel=1e-6)
    t5 = OptimConfig(learning_rate=0.01, warmup_steps=10_000, schedule="rsqrt")
    assert float(learning_rate_schedule(t5, 10**6)(40_000)) == pytest.approx(1 / math.sqrt(40_000), rel=1e-6)


def _params():
    return {"dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones((3,))}, "norm": {"scale": jnp.ones((3,))}}


def test_adafactor_builds_updates_and_decays_only_weights():
    params = _params()
    grads = jax.tree.map(lambda p: 0.1 * jnp.ones_like(p), params)
    cfg = OptimConfig(name="adafactor", learning_rate=1e-2, warmup_steps=0, clip_norm=0.0, weight_decay=0.0)
    tx, _ = make_optimizer(cfg, 10)
    state = tx.init(params)
    updates, state = jax.jit(tx.update)(grads, state, params)
    assert all(bool(jnp.all(u < 0)) for u in jax.tree.leaves(updates))  # descent on a positive gradient
    # Weight decay is decoupled (lr × weight_decay × param), on kernels only, as with AdamW.
    decayed, _ = make_optimizer(dataclasses.replace(cfg, weight_decay=0.5), 10)
    up_decayed, _ = decayed.update(grads, decayed.init(params), params)
    diff = jax.tree.map(lambda a, b: np.asarray(a - b), up_decayed, updates)
    np.testing.assert_allclose(diff["dense"]["kernel"], -1e-2 * 0.5, rtol=1e-5)
    np.testing.assert_allclose(diff["dense"]["bias"], 0.0)
    np.testing.assert_allclose(diff["norm"]["scale"], 0.0)


def test_adamw_decays_neither_biases_nor_relative_attention_biases():
    # XLNet / Transformer-XL u, v, s biases and T5's relative bias table are biases: no decay, as in the original
    # code and Hugging Face's scripts (`"bias" in name`); kernels and embeddings are decayed.
    params = {"layer": {"rel_attn": {"r_w_bias": jnp.ones((2, 3)), "r_s_bias": jnp.ones((2, 3)),
                                     "q": {"kernel": jnp.ones((4, 3))}},
                        "relative_attention_bias": {"embedding": jnp.ones((8, 2))}},
              "word_embeddings": {"embedding": jnp.ones((5, 4))}, "norm": {"scale": jnp.ones((3,))}}
    zero_grads = jax.tree.map(jnp.zeros_like, params)
    cfg = OptimConfig(learning_rate=1e-2, warmup_steps=0, clip_norm=0.0, weight_decay=0.5, schedule="linear", end_learning_rate=1e-2)
    tx, _ = make_optimizer(cfg, 10)
    updates, _ = tx.update(zero_grads, tx.init(params), params)
    got = {"/".join(str(k.key) for k in path): float(jnp.max(jnp.abs(u)))
           for path, u in jax.tree_util.tree_leaves_with_path(updates)}
    assert got == {"layer/rel_attn/r_w_bias": 0.0, "layer/rel_attn/r_s_bias": 0.0,
                   "layer/rel_attn/q/kernel": pytest.approx(1e-2 * 0.5),
                   "layer/relative_attention_bias/embedding": 0.0,
                   "word_embeddings/embedding": pytest.approx(1e-2 * 0.5), "norm/scale": 0.0}


def test_extra_transforms_run_last():
    params = _params()
    keep = {"dense": {"kernel": jnp.zeros((4, 3)).at[0].set(1.0), "bias": jnp.ones((3,))},
            "norm": {"scale": jnp.ones((3,))}}
    prune = optax.GradientTransformation(lambda p: optax.EmptyState(),
                                         lambda u, s, p=None: (jax.tree.map(jnp.multiply, u, keep), s))
    cfg = OptimConfig(learning_rate=1e-2, warmup_steps=0)
    tx, _ = make_optimizer(cfg, 10, extra_transforms=[prune])
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    assert bool(jnp.all(updates["dense"]["kernel"][1:] == 0)) and bool(jnp.all(updates["dense"]["kernel"][0] != 0))


@pytest.mark.parametrize("field,value", [("name", "lamb"), ("schedule", "exponential")])
def test_unknown_optimizer_or_schedule_is_one_line_error(field, value):
    with pytest.raises(ValueError, match=rf"optim.{field}='{value}' is not .* choose one of"):
        make_optimizer(dataclasses.replace(OptimConfig(), **{field: value}), 10)


def test_clip_by_global_norm_is_optax_rule_and_state():
    """Our clipping (a multiply by max_norm / max(‖g‖, max_norm)) equals optax's (a divide) to an ulp when it clips,
    exactly when it does not, and keeps optax's state, so checkpoints written with either restore into the other."""
    from llm_jax.train.optim import clip_by_global_norm

    rng = np.random.default_rng(0)
    grads = {"w": jnp.asarray(rng.normal(size=(7, 5)), jnp.float32),
             "b": jnp.asarray(rng.normal(size=(5,)), jnp.float32)}
    norm = float(optax.global_norm(grads))
    for max_norm in (0.25 * norm, 4.0 * norm):  # clipping, and not
        ours, theirs = clip_by_global_norm(max_norm), optax.clip_by_global_norm(max_norm)
        ours_state, theirs_state = ours.init(grads), theirs.init(grads)
        assert jax.tree.structure(ours_state) == jax.tree.structure(theirs_state)
        got, _ = ours.update(grads, ours_state)
        want, _ = theirs.update(grads, theirs_state)
        for k in grads:
            if max_norm > norm:
                np.testing.assert_array_equal(got[k], grads[k])
            np.testing.assert_allclose(got[k], want[k], rtol=3e-7, atol=0)
    assert float(optax.global_norm(got)) <= 4.0 * norm
    clipped, _ = clip_by_global_norm(0.25 * norm).update(grads, optax.EmptyState())
    np.testing.assert_allclose(float(optax.global_norm(clipped)), 0.25 * norm, rtol=1e-6)
