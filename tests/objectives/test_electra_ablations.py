"""The ELECTRA paper's efficiency ablations (Clark et al. 2020 §3.5, Table 5) as objectives: ELECTRA 15 %,
Replace MLM, All-Tokens MLM — loss terms, what each trains on, and the FLOPs heads."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import traverse_util

from llm_jax import flops, models, objectives
from llm_jax.data.tokenizer import SpecialIds
from llm_jax.models import electra
from llm_jax.objectives.all_tokens_mlm import copy_mixture_nll

SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)
V = 64


def _setup(name):
    cfg = dataclasses.replace(electra.PRESETS["electra-tiny"], vocab_size=V)
    objective = objectives.make_objective(objectives.config_for(name, max_predictions=4), SPECIAL, V)
    model = models.build("electra", cfg)
    rng = np.random.default_rng(1)
    rows = np.r_[[np.r_[2, rng.integers(10, V, 14), 3] for _ in range(4)]].astype(np.int32)
    rows[3, 12:] = 0  # padding at the end of one row
    mask = rows != 0
    batch = objective.prepare({"tokens": rows, "mask": mask, "epoch": np.zeros(4, int),
                               "example_index": np.arange(4)}, seed=0)
    args, kwargs = objective.init_inputs(batch)
    params = jax.jit(lambda k: model.init(k, *args, **kwargs))(jax.random.key(0))["params"]  # one compilation
    loss_fn = objective.make_loss(model)
    run = jax.jit(lambda p, b, k: loss_fn(p, b, k, deterministic=True))
    return objective, params, batch, run, loss_fn


def test_registered_with_their_own_configs():
    for name in ("electra15", "replace_mlm", "all_tokens_mlm"):
        assert name in objectives.OBJECTIVES
        assert objectives.config_for(name).name == name
    with pytest.raises(ValueError, match="mlm_weight"):
        objectives.config_for("replace_mlm", mlm_weight=0.0)


def test_electra15_trains_the_discriminator_on_masked_positions_only():
    objective, params, batch, run, _ = _setup("electra15")
    weights = np.asarray(objective.disc_weights(batch))
    expected = np.zeros_like(weights)
    for b, (pos, w) in enumerate(zip(batch["mlm_positions"], batch["mlm_weights"])):
        expected[b, pos[w > 0]] = 1.0
    np.testing.assert_array_equal(weights, expected)
    loss, (m, _) = run(params, batch, jax.random.key(3))
    np.testing.assert_allclose(loss, m["mlm_loss"] + 50 * m["disc_loss"], rtol=1e-6)
    # Normalised by the masked positions: the replaced share of them is the replaced rate itself.
    np.testing.assert_allclose(m["replaced_rate"], m["replaced_fraction"], rtol=1e-6)
    # Same params, batch and key: RTD samples the same replacements but averages its loss over every token.
    rtd = objectives.make_objective(objectives.config_for("rtd", max_predictions=4), SPECIAL, V)
    _, (m_rtd, _) = jax.jit(lambda p, b, k: rtd.make_loss(models.build("electra", dataclasses.replace(
        electra.PRESETS["electra-tiny"], vocab_size=V)))(p, b, k, deterministic=True))(params, batch, jax.random.key(3))
    np.testing.assert_allclose(m_rtd["replaced_fraction"], m["replaced_fraction"], rtol=1e-6)
    assert m_rtd["replaced_rate"] < m["replaced_rate"]


def test_replace_mlm_predicts_originals_from_generator_samples():
    _, params, batch, _, loss_fn = _setup("replace_mlm")
    flat = traverse_util.flatten_dict(params, sep="/")
    assert any(k.startswith("discriminator_mlm_head/") for k in flat)
    assert not any(k.startswith("discriminator_predictions/") for k in flat)  # no RTD head: nothing trains it
    # The loss, its terms and its gradient from one compiled program.
    (loss, (m, _)), grads = jax.jit(jax.value_and_grad(
        lambda p, b: loss_fn(p, b, jax.random.key(3), deterministic=True), has_aux=True))(params, batch)
    np.testing.assert_allclose(loss, m["gen_mlm_loss"] + m["mlm_loss"], rtol=1e-6)
    assert 0.5 < m["replaced_fraction"] <= 1.0  # untrained generator: nearly every sample is wrong
    # Both towers learn: the discriminator's MLM head and the generator receive gradients.
    g = traverse_util.flatten_dict(nn.unbox(grads), sep="/")
    assert np.abs(np.asarray(g["discriminator_mlm_head/transform/kernel"])).sum() > 0
    assert any(np.abs(np.asarray(v)).sum() > 0 for k, v in g.items() if k.startswith("generator/"))
    # RTD's parameter tree (and so HF export) is untouched by the ablation's head.
    rtd = objectives.shape_only_objective("rtd", V)
    args, kwargs = rtd.init_inputs(rtd.dummy_batch(1, 8))
    rtd_model = models.build("electra", dataclasses.replace(electra.PRESETS["electra-tiny"], vocab_size=V))
    rtd_params = jax.eval_shape(lambda k: rtd_model.init(k, *args, **kwargs), jax.random.key(0))["params"]  # the tree
    assert "discriminator_mlm_head" not in rtd_params


def test_copy_mixture_nll_matches_the_mixture():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 7)).astype(np.float32)
    copy = rng.normal(size=(2, 5)).astype(np.float32)
    inputs = rng.integers(0, 7, (2, 5))
    targets = np.where(rng.random((2, 5)) < 0.5, inputs, rng.integers(0, 7, (2, 5)))
    nll, correct = copy_mixture_nll(jnp.asarray(logits), jnp.asarray(copy), jnp.asarray(inputs), jnp.asarray(targets))
    soft = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    d = 1 / (1 + np.exp(-copy))
    mix = (1 - d)[..., None] * soft + d[..., None] * np.eye(7)[inputs]
    np.testing.assert_allclose(nll, -np.log(np.take_along_axis(mix, targets[..., None], -1)[..., 0]), rtol=1e-5)
    np.testing.assert_array_equal(correct, (mix.argmax(-1) == targets).astype(np.float32))


def test_all_tokens_mlm_has_a_loss_at_every_token():
    objective, params, batch, run, _ = _setup("all_tokens_mlm")
    loss, (m, _) = run(params, batch, jax.random.key(3))
    np.testing.assert_allclose(loss, m["gen_mlm_loss"] + m["mlm_loss"], rtol=1e-6)
    assert np.isfinite(float(loss)) and 0 < m["copy_probability"] < 1
    # Untrained: the copy gate is ~½, so the unreplaced tokens cost about log 2 and the replaced ones log(2V).
    rate = float(m["replaced_rate"])
    assert abs(float(m["mlm_loss"]) - ((1 - rate) * np.log(2) + rate * np.log(2 * V))) < 0.5
    derived = objective.derived_metrics({k: float(v) for k, v in m.items()})
    assert 0 <= derived["replaced_accuracy"] <= 1


def test_flops_count_the_discriminator_mlm_heads():
    cfg = dataclasses.replace(electra.PRESETS["electra-tiny"], vocab_size=1000)
    names = ("rtd", "electra15", "replace_mlm", "all_tokens_mlm")
    towers = {n: flops.towers_for("electra", cfg, objectives.config_for(n, max_predictions=10), 64) for n in names}
    # (the discriminator's vocabulary positions, its per-token classes): RTD's head; Replace MLM's MLM head at the
    # 10 masked positions only; All-Tokens MLM's at all 64 positions plus the copy gate.
    heads = {n: (t[1].lm_positions, t[1].token_classes) for n, t in towers.items()}
    assert heads == {"rtd": (0, 1), "electra15": (0, 1), "replace_mlm": (10, 0), "all_tokens_mlm": (64, 1)}
    assert all(t[0] == towers["rtd"][0] for t in towers.values())  # the same generator everywhere
    counts = {n: flops.step_flops("electra", cfg, objectives.config_for(n, max_predictions=10), 8, 64).total
              for n in names}
    assert counts["electra15"] == counts["rtd"]
    assert counts["all_tokens_mlm"] > max(counts["rtd"], counts["replace_mlm"])
