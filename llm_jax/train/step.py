"""TrainState, its sharded creation, and the jitted pure train / eval steps.

`train_step(state, batch, frozen) -> (state, metrics)` is compiled once with explicit in/out shardings and the
state donated. Its RNG is `fold_in(key(seed), step)`, so a resumed run draws the same dropout masks.
A non-finite loss or gradient skips the update (params, optimizer state and carry unchanged) and is counted in
the `skipped` metric; the loop decides when too many skips end the run.

* `state.carry` holds what an objective carries from one step to the next (Transformer-XL memory), batch-major
  and batch-sharded, checkpointed with the rest so that a resumed run stays bitwise identical.
* `frozen` holds parameters the loss reads but never trains (a distillation teacher): a jit argument with its
  own shardings, never donated and never saved in the student's checkpoints.
* Gradient accumulation splits batch and carry alike and normalises every micro-batch by the *global* batch's
  denominators (`objective.loss_denominators`), so it gives the full batch's loss and update.
"""

from __future__ import annotations

import contextlib
import dataclasses
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
    """What a checkpoint holds: the step, the params, the optimizer state, and the objective's carry.

    Attributes:
      step: int32 scalar, updates applied so far.
      params: the model's params (unboxed, sharded by their logical names).
      opt_state: the optax state, sharded like the params.
      carry: state carried across steps (`objective.init_carry`), batch-major leaves `[B, ...]`; `{}` = none.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    carry: Any = dataclasses.field(default_factory=dict)


@contextlib.contextmanager
def mesh_context(mesh: Mesh, rules):
    """Activates the mesh and the logical axis rules (both are needed for activation constraints)."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        yield


def init_variables(model: nn.Module, objective, batch: dict[str, Any], rngs) -> Any:
    """`model.init` on the inputs the objective builds from `batch` (the one init helper every caller uses)."""
    args, kwargs = objective.init_inputs(batch)
    return model.init(rngs, *args, **kwargs)


def abstract_params(model: nn.Module, objective, dummy_batch: dict[str, np.ndarray]):
    """Boxed abstract params (shapes + logical names), without allocating anything."""
    return jax.eval_shape(lambda r: init_variables(model, objective, dummy_batch, {"params": r})["params"],
                          jax.random.key(0))


def count_params(abstract_boxed) -> int:
    """Number of scalars in a (boxed or unboxed, abstract or concrete) params tree."""
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nn.meta.unbox(abstract_boxed))))


def carry_shardings(carry: Any, mesh: Mesh) -> Any:
    """Batch-major carry leaves are split like the batch."""
    return jax.tree.map(lambda x: sharding.batch_sharding(mesh, np.ndim(x)), carry)


def state_shardings(model, objective, tx, dummy_batch, mesh: Mesh, rules):
    """NamedShardings for every leaf of the TrainState, derived from the params' logical names."""
    boxed = abstract_params(model, objective, dummy_batch)
    abstract_state = TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=boxed,
                                opt_state=jax.eval_shape(tx.init, boxed), carry={})
    shardings = sharding.logical_to_shardings(abstract_state, mesh, rules)
    batch_size = next(iter(dummy_batch.values())).shape[0]
    carry = jax.eval_shape(lambda: objective.init_carry(batch_size, model.cfg))
    return shardings.replace(step=sharding.replicated(mesh), carry=carry_shardings(carry, mesh))


def place(tree: Any, shardings: Any) -> Any:
    """Host arrays → global arrays in `shardings`; each process places only its own shards (multi-host too)."""
    return jax.tree.map(lambda x, sh: jax.make_array_from_callback(np.shape(x), sh, lambda i: np.asarray(x)[i]),
                        tree, shardings)


def create_state(model, objective, tx, dummy_batch, mesh: Mesh, rules, seed: int, params: Any | None = None):
    """A freshly initialised TrainState created directly in its sharded layout (no full copy on one device).

    Args:
      model: a family module (its Config is `model.cfg`, as every family's modules keep it).
      objective: builds the init inputs from `dummy_batch` and the initial carry.
      params: start from these params (e.g. an imported checkpoint) instead of random init.
    """
    shardings = state_shardings(model, objective, tx, dummy_batch, mesh, rules)
    batch_size = next(iter(dummy_batch.values())).shape[0]

    def fresh(p):
        return TrainState(step=jnp.zeros((), jnp.int32), params=p, opt_state=tx.init(p),
                          carry=objective.init_carry(batch_size, model.cfg))

    if params is not None:  # outside the mesh context: an abstract init, nothing placed
        check_params_fit(params, abstract_params(model, objective, dummy_batch))
    with mesh_context(mesh, rules):
        if params is None:
            init = lambda key: fresh(nn.meta.unbox(init_variables(model, objective, dummy_batch,
                                                                  {"params": key})["params"]))
            state = jax.jit(init, out_shardings=shardings)(jax.random.key(seed))
        else:
            # Why an argument, not a closure: closed-over arrays would be baked into the program as constants.
            state = jax.jit(fresh, out_shardings=shardings)(place(params, shardings.params))
    return state, shardings


def check_params_fit(params: Any, like: Any) -> None:
    """Refuses params (imported, converted by a family's `params_from`) whose tree or shapes differ from the model's.

    Raises:
      ValueError: one line naming the first missing, unexpected or mis-shaped parameters.
    """
    from flax import traverse_util

    ours = traverse_util.flatten_dict(nn.meta.unbox(like), sep="/")
    given = traverse_util.flatten_dict(params, sep="/")
    missing, extra = sorted(set(ours) - set(given)), sorted(set(given) - set(ours))
    shapes = [f"{k}: {tuple(np.shape(given[k]))} vs {tuple(ours[k].shape)}" for k in sorted(set(ours) & set(given))
              if tuple(np.shape(given[k])) != tuple(ours[k].shape)]
    if missing or extra or shapes:
        raise ValueError(f"The given params do not fit the model: missing {missing[:4]}, unexpected {extra[:4]}, "
                         f"shapes (given vs model) {shapes[:4]}; convert them for this architecture.")


def frozen_shardings(boxed_frozen: Any, mesh: Mesh, rules) -> Any:
    """Shardings of frozen params (a teacher) from their logical names, like the trained params'."""
    return sharding.logical_to_shardings(boxed_frozen, mesh, rules)


def _split_microbatches(tree: Any, n: int) -> Any:
    """`[B, …] → [n, B/n, …]` taking rows i ≡ a (mod n) for micro-batch a, so that each device's local rows
    spread evenly over the micro-batches (a contiguous split would leave devices idle)."""

    def split(x):
        b = x.shape[0]
        return jnp.moveaxis(x.reshape((b // n, n) + x.shape[1:]), 1, 0)

    return jax.tree.map(split, tree)


def _merge_microbatches(tree: Any) -> Any:
    """The inverse of `_split_microbatches`: `[n, B/n, …] → [B, …]` in the original row order."""

    def merge(x):
        n, m = x.shape[:2]
        return jnp.moveaxis(x, 0, 1).reshape((n * m,) + x.shape[2:])

    return jax.tree.map(merge, tree)


def make_train_step(loss_fn: Callable, tx: optax.GradientTransformation, schedule: optax.Schedule, *, seed: int,
                    grad_accum_steps: int = 1, denominators_fn: Callable | None = None) -> Callable:
    """Builds the pure `train_step(state, batch, frozen=None) -> (state, metrics)`.

    Args:
      loss_fn: `loss(params, batch, rng, *, carry, frozen, denominators, deterministic) -> (loss, (metrics,
        carry))`, every loss and metric normalised by `denominators` (see `llm_jax.objectives.base`).
      denominators_fn: the objective's `loss_denominators(batch)`; computed once on the global batch.
      grad_accum_steps: micro-batches per update; the result equals the full batch's (same loss, same update).
    """

    def grads_and_metrics(params, batch, key, carry, frozen, denominators):
        def f(p):
            return loss_fn(p, batch, key, carry=carry, frozen=frozen, denominators=denominators)

        (_, (metrics, new_carry)), grads = jax.value_and_grad(f, has_aux=True)(params)
        return grads, metrics, new_carry

    def train_step(state: TrainState, batch, frozen=None):
        key = jax.random.fold_in(jax.random.key(seed), state.step)
        denominators = None if denominators_fn is None else denominators_fn(batch)
        if grad_accum_steps == 1:
            grads, metrics, new_carry = grads_and_metrics(state.params, batch, key, state.carry, frozen, denominators)
        else:
            micro = _split_microbatches(batch, grad_accum_steps)
            micro_carry = _split_microbatches(state.carry, grad_accum_steps)

            def body(acc, xs):
                i, mb, mc = xs
                g, m, c = grads_and_metrics(state.params, mb, jax.random.fold_in(key, i), mc, frozen, denominators)
                return jax.tree.map(jnp.add, acc, (g, m)), c

            first = jax.tree.map(lambda x: x[0], (micro, micro_carry))
            shapes = jax.eval_shape(lambda mb, mc: grads_and_metrics(state.params, mb, key, mc, frozen,
                                                                     denominators)[:2], *first)
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
            (grads, metrics), carries = jax.lax.scan(body, zeros, (jnp.arange(grad_accum_steps), micro, micro_carry))
            new_carry = _merge_microbatches(carries)
            if denominators_fn is None:
                # Without global denominators each micro-batch loss is its own mean: average them.
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
            new_params, new_opt_state = _keep_if(finite, (new_params, new_opt_state), (state.params, state.opt_state))
        new_carry = _keep_if(finite, new_carry, state.carry)
        new_state = TrainState(step=state.step + 1, params=new_params, opt_state=new_opt_state, carry=new_carry)
        metrics = dict(metrics, grad_norm=grad_norm, learning_rate=schedule(state.step),
                       skipped=1 - finite.astype(jnp.int32))
        return new_state, metrics

    return train_step


def _keep_if(finite, new, old):
    return jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)


def make_eval_step(loss_fn: Callable, *, grad_accum_steps: int = 1, denominators_fn: Callable | None = None
                   ) -> Callable:
    """`eval_step(params, batch, carry=None, frozen=None) -> (metrics, carry)` with dropout off.

    With `grad_accum_steps > 1` the batch runs in that many micro-batches, as training does (a batch that needs
    accumulation to fit in memory does for evaluation too), normalised by the global denominators.
    """

    def run(params, mb, carry, frozen, denominators):
        _, (metrics, carry) = loss_fn(params, mb, jax.random.key(0), carry=carry, frozen=frozen,
                                      denominators=denominators, deterministic=True)
        return metrics, carry

    def eval_step(params, batch, carry=None, frozen=None):
        if grad_accum_steps == 1 or denominators_fn is None:
            return run(params, batch, carry, frozen, None if denominators_fn is None else denominators_fn(batch))
        denominators = denominators_fn(batch)

        def body(acc, xs):
            mb, mc = xs
            m, c = run(params, mb, mc, frozen, denominators)
            return jax.tree.map(jnp.add, acc, m), c

        micro = _split_microbatches(batch, grad_accum_steps)
        micro_carry = _split_microbatches(carry, grad_accum_steps)
        first = jax.tree.map(lambda x: x[0], (micro, micro_carry))
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(
            lambda mb, mc: run(params, mb, mc, frozen, denominators)[0], *first))
        metrics, carries = jax.lax.scan(body, zeros, (micro, micro_carry))
        return metrics, _merge_microbatches(carries)

    return eval_step


def _batch_shardings(mesh: Mesh, dummy_batch: dict[str, np.ndarray]) -> dict[str, Any]:
    return {k: sharding.batch_sharding(mesh, np.ndim(v)) for k, v in dummy_batch.items()}


def jit_train_step(train_step, shardings: TrainState, mesh: Mesh, dummy_batch: dict[str, np.ndarray],
                   frozen_sharding: Any = None):
    """`jax.jit` with explicit shardings, the state donated, frozen params (if any) a non-donated argument.

    Without `frozen_sharding` the jitted step takes `(state, batch)`; with it, `(state, batch, frozen)`.
    """
    in_shardings = (shardings, _batch_shardings(mesh, dummy_batch))
    if frozen_sharding is not None:
        in_shardings += (frozen_sharding,)
    return jax.jit(train_step, in_shardings=in_shardings, out_shardings=(shardings, None), donate_argnums=0)


def jit_eval_step(eval_step, shardings: TrainState, mesh: Mesh, dummy_batch: dict[str, np.ndarray],
                  frozen_sharding: Any = None):
    """`jax.jit` of the eval step `(params, batch, carry[, frozen]) -> (metrics, carry)`; the carry it threads is
    sharded like the train state's."""
    in_shardings = (shardings.params, _batch_shardings(mesh, dummy_batch), shardings.carry)
    if frozen_sharding is not None:
        in_shardings += (frozen_sharding,)
    return jax.jit(eval_step, in_shardings=in_shardings, out_shardings=(None, shardings.carry))
