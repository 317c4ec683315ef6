"""TrainState, its sharded creation, and the jitted pure train / eval steps.

`train_step(state, batch) -> (state, metrics)` is compiled once with explicit in/out shardings and the
state donated. Its RNG is `fold_in(key(seed), step)`, so a resumed run draws the same dropout masks.
A non-finite loss or gradient skips the update (params and optimizer state unchanged) and is counted in
the `skipped` metric; the loop decides when too many skips end the run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from llm_jax import sharding


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any


@contextlib.contextmanager
def mesh_context(mesh: Mesh, rules):
    """Activates the mesh and the logical axis rules (both are needed for activation constraints)."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        yield


def _model_inputs(batch: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The positional and keyword inputs a model init needs, from a (dummy) batch."""
    kwargs = {"mask_BT": batch["mask"]}
    if "segment_ids" in batch:
        kwargs["segment_ids_BT"] = batch["segment_ids"]
    if "mlm_positions" in batch:
        kwargs["mlm_positions_BP"] = batch["mlm_positions"]
    return batch["inputs"], kwargs


def abstract_params(model: nn.Module, dummy_batch: dict[str, np.ndarray]):
    """Boxed abstract params (shapes + logical names), without allocating anything."""
    tokens, kwargs = _model_inputs(dummy_batch)
    return jax.eval_shape(lambda r: model.init({"params": r}, tokens, **kwargs)["params"], jax.random.key(0))


def count_params(abstract_boxed) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nn.meta.unbox(abstract_boxed))))


def state_shardings(model, tx, dummy_batch, mesh: Mesh, rules):
    """NamedShardings for every leaf of the TrainState, derived from the params' logical names."""
    boxed = abstract_params(model, dummy_batch)
    abstract_state = TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=boxed,
                                opt_state=jax.eval_shape(tx.init, boxed))
    shardings = sharding.logical_to_shardings(abstract_state, mesh, rules)
    return shardings.replace(step=sharding.replicated(mesh))


def create_state(model, tx, dummy_batch, mesh: Mesh, rules, seed: int, params: Any | None = None):
    """A freshly initialised TrainState created directly in its sharded layout (no full copy on one device).

    Args:
      params: start from these params (e.g. an imported checkpoint) instead of random init.
    """
    shardings = state_shardings(model, tx, dummy_batch, mesh, rules)
    tokens, kwargs = _model_inputs(dummy_batch)

    def fresh(p):
        return TrainState(step=jnp.zeros((), jnp.int32), params=p, opt_state=tx.init(p))

    with mesh_context(mesh, rules):
        if params is None:
            init = lambda key: fresh(nn.meta.unbox(model.init({"params": key}, tokens, **kwargs)["params"]))
            state = jax.jit(init, out_shardings=shardings)(jax.random.key(seed))
        else:
            # Why an argument, not a closure: closed-over arrays would be baked into the program as constants.
            # make_array_from_callback: each process places only its own shards (works multi-host too).
            placed = jax.tree.map(lambda x, sh: jax.make_array_from_callback(np.shape(x), sh, lambda i: np.asarray(x)[i]),
                                  params, shardings.params)
            state = jax.jit(fresh, out_shardings=shardings)(placed)
    return state, shardings


def _split_microbatches(batch: dict[str, jax.Array], n: int) -> dict[str, jax.Array]:
    """`[B, …] → [n, B/n, …]` taking rows i ≡ a (mod n) for micro-batch a, so that each device's local rows
    spread evenly over the micro-batches (a contiguous split would leave devices idle)."""

    def split(x):
        b = x.shape[0]
        return jnp.moveaxis(x.reshape((b // n, n) + x.shape[1:]), 1, 0)

    return jax.tree.map(split, batch)


def make_train_step(loss_fn: Callable, tx: optax.GradientTransformation, schedule: optax.Schedule, *, seed: int,
                    grad_accum_steps: int = 1) -> Callable:
    """Builds the pure `train_step(state, batch) -> (state, metrics)`."""

    def grads_and_metrics(params, batch, key):
        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, key)
        return grads, metrics

    def train_step(state: TrainState, batch):
        key = jax.random.fold_in(jax.random.key(seed), state.step)
        if grad_accum_steps == 1:
            grads, metrics = grads_and_metrics(state.params, batch, key)
        else:
            micro = _split_microbatches(batch, grad_accum_steps)

            def body(acc, xs):
                i, mb = xs
                g, m = grads_and_metrics(state.params, mb, jax.random.fold_in(key, i))
                return jax.tree.map(jnp.add, acc, (g, m)), None

            zeros = jax.eval_shape(grads_and_metrics, state.params, jax.tree.map(lambda x: x[0], micro), key)
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zeros)
            (grads, metrics), _ = jax.lax.scan(body, zeros, (jnp.arange(grad_accum_steps), micro))
            grads, metrics = jax.tree.map(lambda x: x / grad_accum_steps, (grads, metrics))
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(grad_norm)

        def apply(params, opt_state):
            updates, new_opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), new_opt_state

        # Skip a non-finite update entirely: params and moments stay as they were.
        if jax.default_backend() == "cpu":
            # Why a conditional on CPU: with `where(finite, new, old)` XLA:CPU reads each old moment in two fusions
            # (the select, and the parameter update that recomputes the new moment), so to write the donated
            # buffers in place it first copies every moment: four extra passes over the optimizer state, ~4 % of
            # a BERT-mini step (benchmarks/NOTES.md). Elsewhere the select stays: a GPU conditional waits on the
            # host for its predicate.
            new_params, new_opt_state = jax.lax.cond(finite, apply, lambda p, o: (p, o), state.params,
                                                     state.opt_state)
        else:
            new_params, new_opt_state = apply(state.params, state.opt_state)
            keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
            new_params, new_opt_state = keep(new_params, state.params), keep(new_opt_state, state.opt_state)
        new_state = TrainState(step=state.step + 1, params=new_params, opt_state=new_opt_state)
        metrics = dict(metrics, grad_norm=grad_norm, learning_rate=schedule(state.step),
                       skipped=1 - finite.astype(jnp.int32))
        return new_state, metrics

    return train_step


def make_eval_step(loss_fn: Callable) -> Callable:
    """`eval_step(params, batch) -> metrics` with dropout off."""

    def eval_step(params, batch):
        _, metrics = loss_fn(params, batch, jax.random.key(0), deterministic=True)
        return metrics

    return eval_step


def jit_train_step(train_step, shardings: TrainState, mesh: Mesh, dummy_batch: dict[str, np.ndarray]):
    """`jax.jit` with explicit shardings and the state donated."""
    batch_shardings = {k: sharding.batch_sharding(mesh, np.ndim(v)) for k, v in dummy_batch.items()}
    return jax.jit(train_step, in_shardings=(shardings, batch_shardings), out_shardings=(shardings, None),
                   donate_argnums=0)


def jit_eval_step(eval_step, shardings: TrainState, mesh: Mesh, dummy_batch: dict[str, np.ndarray]):
    batch_shardings = {k: sharding.batch_sharding(mesh, np.ndim(v)) for k, v in dummy_batch.items()}
    return jax.jit(eval_step, in_shardings=(shardings.params, batch_shardings))
