"""The same training steps on 1 device and on 8 fake CPU devices under dp, fsdp and fsdp_tp."""

import dataclasses

import jax
import numpy as np
import pytest

from llm_jax import models, sharding
from llm_jax.data.tokenizer import SpecialIds
from llm_jax.objectives import config_for, make_objective
from llm_jax.train import step as step_lib
from llm_jax.train.optim import OptimConfig, make_optimizer

SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)
VOCAB = 128
B, T = 8, 32


def _batch(objective, seed):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(5, VOCAB, (B, T)).astype(np.int32)
    tokens[:, 0] = SPECIAL.cls
    tokens[:, T // 2] = SPECIAL.sep
    tokens[:, -1] = SPECIAL.sep
    tokens[1, 20:] = SPECIAL.pad
    rows = {"tokens": tokens, "mask": tokens != SPECIAL.pad,
            "segment_ids": (np.arange(T) > T // 2).astype(np.int32)[None].repeat(B, 0),
            "nsp_label": rng.integers(0, 2, B).astype(np.int32),
            "epoch": np.zeros(B, np.int64), "example_index": np.arange(B) + seed * B}
    return objective.prepare(rows, seed)


def _losses(mesh_cfg, devices, accum=1, steps=2):
    cfg = dataclasses.replace(models.get_preset("bert-tiny")[1], vocab_size=VOCAB)
    model = models.build("bert", cfg)
    objective = make_objective(config_for("mlm_nsp", masking="dynamic", max_predictions=6),
                               SPECIAL, VOCAB)
    tx, schedule = make_optimizer(OptimConfig(learning_rate=1e-3, warmup_steps=1, grad_accum_steps=accum), 10)
    mesh = sharding.make_mesh(mesh_cfg, devices)
    rules = sharding.rules_for(mesh_cfg.rules)
    dummy = objective.dummy_batch(B, T)
    state, shardings = step_lib.create_state(model, objective, tx, dummy, mesh, rules, seed=0)
    train_step = step_lib.jit_train_step(
        step_lib.make_train_step(objective.make_loss(model), tx, schedule, seed=0, grad_accum_steps=accum,
                                 denominators_fn=objective.loss_denominators),
        shardings, mesh, dummy)
    losses = []
    with step_lib.mesh_context(mesh, rules):
        for s in range(steps):
            state, metrics = train_step(state, sharding.global_batch_from_local(_batch(objective, s), mesh))
            losses.append(float(metrics["loss"]))
    return np.array(losses), state


@pytest.fixture(scope="module")
def reference():
    return _losses(sharding.MeshConfig(data=1), jax.devices()[:1])[0]


@pytest.mark.parametrize("mesh_cfg", [
    sharding.MeshConfig(data=8, rules="dp"),
    sharding.MeshConfig(data=2, fsdp=4, rules="fsdp"),
    sharding.MeshConfig(data=2, fsdp=2, tensor=2, rules="fsdp_tp"),
], ids=["dp", "fsdp", "fsdp_tp"])
def test_same_loss_on_one_and_eight_devices(reference, mesh_cfg):
    assert len(jax.devices()) == 8
    losses, state = _losses(mesh_cfg, jax.devices())
    np.testing.assert_allclose(losses, reference, rtol=1e-5)
    kernel = state.params["bert"]["encoder"]["stack"]["layers"]["block"]["mlp"]["wi"]["kernel"]
    spec = kernel.sharding.spec
    if mesh_cfg.rules == "dp":
        assert all(a is None for a in spec)
    else:  # created sharded: the layer axis whole, width over fsdp (and FFN hidden over tensor)
        assert spec[1] == "fsdp"
        assert (spec[2] == "tensor") == (mesh_cfg.rules == "fsdp_tp")
        mu = state.opt_state[1][0].mu["bert"]["encoder"]["stack"]["layers"]["block"]["mlp"]["wi"]["kernel"]
        assert mu.sharding.spec == spec  # optimizer state sharded like its param


def test_gradient_accumulation_sums_micro_batches_over_global_denominators():
    tp = sharding.MeshConfig(data=2, fsdp=2, tensor=2, rules="fsdp_tp")
    losses_8, _ = _losses(tp, jax.devices(), accum=2)
    losses_1, _ = _losses(sharding.MeshConfig(data=1), jax.devices()[:1], accum=2)
    np.testing.assert_allclose(losses_8, losses_1, rtol=1e-5)
    # Step 0's reported loss is the sum of the two micro-batch losses, each with its own dropout key and each
    # normalised by the whole batch's number of predicted tokens.
    cfg = dataclasses.replace(models.get_preset("bert-tiny")[1], vocab_size=VOCAB)
    model = models.build("bert", cfg)
    objective = make_objective(config_for("mlm_nsp", masking="dynamic", max_predictions=6),
                               SPECIAL, VOCAB)
    tx, _ = make_optimizer(OptimConfig(learning_rate=1e-3, warmup_steps=1, grad_accum_steps=2), 10)
    mesh = sharding.make_mesh(sharding.MeshConfig(data=1), jax.devices()[:1])
    state, _ = step_lib.create_state(model, objective, tx, objective.dummy_batch(B, T), mesh,
                                     sharding.rules_for("dp"), seed=0)
    batch = _batch(objective, 0)
    micro = step_lib._split_microbatches(batch, 2)
    denominators = objective.loss_denominators(batch)
    key = jax.random.fold_in(jax.random.key(0), 0)
    loss_fn = objective.make_loss(model)
    expected = sum(float(loss_fn(state.params, jax.tree.map(lambda x: x[i], micro), jax.random.fold_in(key, i),
                                 denominators=denominators)[0]) for i in range(2))
    np.testing.assert_allclose(losses_1[0], expected, rtol=1e-5)


def test_mesh_errors_are_clear():
    with pytest.raises(ValueError, match="devices are available"):
        sharding.make_mesh(sharding.MeshConfig(data=3, fsdp=1, tensor=1))
    with pytest.raises(ValueError, match="rule set"):
        sharding.make_mesh(sharding.MeshConfig(rules="zero3"))
