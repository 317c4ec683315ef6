"""The train step's update: applied when finite, skipped entirely when not, the same on both code paths."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from llm_jax.train import step as step_lib


def _loss_fn(params, batch, rng, *, carry=None, frozen=None, denominators=None, deterministic=False):
    del rng, frozen, denominators, deterministic
    loss = jnp.sum((params["w"] * batch["x"] - 1.0) ** 2) * batch["scale"]
    return loss, ({"loss": loss}, carry)


def _run(backend: str, scale: float, monkeypatch):
    """One step from a fixed state; `backend` picks the update's code path (the step traces per backend)."""
    tx = optax.adamw(1e-2)
    params = {"w": jnp.arange(1.0, 7.0).reshape(2, 3)}
    state = step_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))
    # One finite step first, so the moments are non-zero and a skipped step has something to keep.
    batch = {"x": jnp.full((2, 3), 0.5), "scale": jnp.float32(1.0)}
    with monkeypatch.context() as m:
        m.setattr(jax, "default_backend", lambda: backend)
        train_step = jax.jit(step_lib.make_train_step(_loss_fn, tx, lambda s: 1e-2, seed=0), donate_argnums=0)
        state, _ = train_step(state, batch)
        before = jax.tree.map(np.asarray, state)
        state, metrics = train_step(state, dict(batch, scale=jnp.float32(scale)))
    return before, jax.tree.map(np.asarray, state), jax.tree.map(np.asarray, metrics)


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_non_finite_step_keeps_params_and_moments(backend, monkeypatch):
    before, after, metrics = _run(backend, np.nan, monkeypatch)
    assert metrics["skipped"] == 1
    assert after.step == before.step + 1
    for a, b in zip(jax.tree.leaves((after.params, after.opt_state)), jax.tree.leaves((before.params, before.opt_state))):
        np.testing.assert_array_equal(a, b)


def test_finite_step_is_the_same_on_both_paths(monkeypatch):
    # The conditional (XLA:CPU) and the select (elsewhere) compute the same AdamW update; XLA fuses the two
    # programs differently, so the last bit may differ (measured: one element, 1 ulp of f32).
    _, cond_state, cond_metrics = _run("cpu", 1.0, monkeypatch)
    _, select_state, select_metrics = _run("gpu", 1.0, monkeypatch)
    assert cond_metrics["skipped"] == select_metrics["skipped"] == 0
    for a, b in zip(jax.tree.leaves(cond_state), jax.tree.leaves(select_state)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=0)
    assert not np.array_equal(cond_state.params["w"], np.arange(1.0, 7.0).reshape(2, 3))
