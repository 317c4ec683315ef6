"""Masks that keep pruned weights at 0 while a model trains: fixed keep-masks (`masks_for` + `keep_masked`) and
gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune", §3) with its masks in the optimizer state.

Both are optax transformations placed last in the chain (`llm_jax.train.optim.make_optimizer(...,
extra_transforms=[...])`): optax's own `masked` chooses whole arrays, these zero single entries. Params are
matched by their '/'-joined paths (`bert/encoder/stack/layers/block/mlp/wi/kernel`), so any mapping type with
the same names fits. `llm_jax.compression.pruning` prunes saved models and re-exports these names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from llm_jax.layers.stack import SCOPE as STACK_SCOPE

# The projection kernels of the blocks inside every `llm_jax.layers.Stack` (whose params live under
# `.../<stack>/layers/block/...`): attention (`query`, `key`, `value`, `out`) and the FFN (`llm_jax.layers.Mlp`'s
# `wi` or gated `wi_0`/`wi_1`, and `wo`). Relative-position projections (`pos`), segment tables, biases and norms
# are left out.
DEFAULT_GROUPS = rf"(^|/){STACK_SCOPE}/block/(.*/)?(query|key|value|out|wi|wi_0|wi_1|wo)/kernel$"


# ------------------------------------------------------------------------------------------- tree helpers


def _path_str(path) -> str:
    return "/".join(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))


def _flat(params) -> dict[str, Any]:
    return {"/".join(k): v for k, v in traverse_util.flatten_dict(dict(params)).items()}


def _unflat(flat: Mapping[str, Any]) -> dict:
    return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})


def _chosen(flat: Mapping[str, Any], regex: str, text: str = "") -> list[str]:
    pattern = re.compile(regex)
    chosen = [p for p in flat if pattern.search(p) and np.ndim(flat[p]) >= 1]
    if not chosen:
        example = next(iter(flat), "")
        raise ValueError(f"Prune groups {regex!r}{f' (of {text!r})' if text else ''} match no parameter (paths look "
                         f"like {example!r}); fix the groups= regex.")
    return chosen


def layer_axes_of(boxed_params) -> dict[str, int | None]:
    """'/'-joined param path → the index of its logical `layers` axis (a scanned stack's `[L, …]` axis), or None.

    Args:
      boxed_params: boxed params (leaves `nn.LogicallyPartitioned`, e.g. `jax.eval_shape(model.init, ...)`'s before
        `nn.meta.unbox`); a shared stack (ALBERT) has no `layers` axis: one matrix serves every depth.
    """
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(
            boxed_params, is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata))[0]:
        names = getattr(leaf, "names", None) or ()
        out[_path_str(path)] = names.index("layers") if "layers" in names else None
    return out


# --------------------------------------------------------------------------------------- masks in training


def masks_for(params, groups: str | None = None) -> dict:
    """Keep-masks of a pruned model: a tree shaped like `params` whose leaves are bool arrays (True where the weight
    is non-zero, i.e. kept) for the params `groups` chooses (None: `DEFAULT_GROUPS`) and None for the rest.

    Raises:
      ValueError: groups that match no parameter.
    """
    flat = _flat(params)
    chosen = set(_chosen(flat, groups or DEFAULT_GROUPS))
    return _unflat({p: (np.asarray(v) != 0 if p in chosen else None) for p, v in flat.items()})


def keep_masked(masks) -> optax.GradientTransformation:
    """Multiplies the updates by fixed keep-masks (from `masks_for`), so pruned weights stay exactly 0.

    Append it LAST to the chain (`make_optimizer(..., extra_transforms=[keep_masked(m)])`): after the optimizer's
    update and weight decay, a pruned entry's update is 0, so a 0 stays 0. The masks are closed over: constants of
    the jitted step. Params are matched by path, so any mapping type holding the same names fits.
    """
    flat = {p: jnp.asarray(m) for p, m in _flat(masks).items() if m is not None}

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params

        def mask(path, u):
            m = flat.get(_path_str(path))
            return u if m is None else jnp.where(m, u, jnp.zeros_like(u))

        return jax.tree_util.tree_map_with_path(mask, updates), state

    return optax.GradientTransformation(init_fn, update_fn)


class GradualPruningState(NamedTuple):
    """`count`: optimizer steps taken; `masks`: keep-masks of the pruned params (bool, shaped like them), an
    `optax.MaskedNode` for the rest."""

    count: jax.Array
    masks: Any


def sparsity_at(step, target_sparsity: float, begin_step: int, end_step: int, initial_sparsity: float = 0.0):
    """Zhu & Gupta (2017) §3: `s_t = s_f + (s_i − s_f)(1 − (t − t0)/(n Δt))³` for t0 ≤ t ≤ t0 + nΔt (= end_step);
    `s_i` before, `s_f` after. Traceable in `step`."""
    progress = jnp.clip((jnp.asarray(step, jnp.float32) - begin_step) / (end_step - begin_step), 0.0, 1.0)
    return target_sparsity + (initial_sparsity - target_sparsity) * (1.0 - progress) ** 3


def _keep_ranks(abs_rows: jax.Array, k) -> jax.Array:
    """`[M, N]` → bool, False at the k smallest entries of each row (ties by position); k traced.

    Why a sort and a running count rather than argsort ranks: no scatter, which compiles several times faster.
    """
    kth = jnp.take(jnp.sort(abs_rows, axis=-1), jnp.clip(k - 1, 0, abs_rows.shape[1] - 1), axis=-1)[:, None]
    below = abs_rows < kth
    ties = abs_rows == kth
    # Of the entries equal to the k-th value, the first (k − #below) by position are pruned too.
    room = k - below.sum(-1, keepdims=True)
    prune = below | (ties & (jnp.cumsum(ties, axis=-1) <= room))
    return jnp.where(k > 0, ~prune, True)


def gradual_magnitude_pruning(target_sparsity: float, begin_step: int, end_step: int, every: int,
                              groups: str | None = None, *, initial_sparsity: float = 0.0, per_matrix: bool = False,
                              layer_axes: Mapping[str, int | None] | None = None) -> optax.GradientTransformation:
    """Gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune", §3) as an optax transformation.

    At optimizer step t (0-based; the state counts calls) with begin_step ≤ t ≤ end_step and
    `(t − begin_step) % every == 0` (and at t = end_step), the masks are recomputed: the ⌊s_t·N⌋ chosen weights of
    smallest |w| (current params, before this update; ties by position) are pruned, with s_t from `sparsity_at`
    (one ranking over all chosen weights, or per layer's matrix with `per_matrix`). Pruned weights, once 0, rank
    lowest, so a non-decreasing schedule never revives them. Every step, each pruned entry's update is `−param`
    (it becomes exactly 0, and a 0 stays 0) and the others pass unchanged. Place it last in the chain (after
    weight decay). The masks live in the state (`GradualPruningState`): they are checkpointed and resumed with it.

    Args:
      target_sparsity: s_f in [0, 1). begin_step / end_step: t0 and t0 + nΔt (end > begin). every: Δt ≥ 1.
      groups: the params to prune (regex on '/'-joined paths; None: `DEFAULT_GROUPS`).
      initial_sparsity: s_i (Zhu & Gupta start at 0).
      per_matrix: one sparsity per layer's matrix (the paper's per-layer pruning) instead of one global ranking.
      layer_axes: `layer_axes_of(boxed params)` of the trained model: where each param's `layers` axis is, for
        per-matrix pruning of scanned stacks (None: every param is one matrix).

    Raises:
      ValueError: an out-of-range sparsity or schedule (one line).
    """
    if not (0.0 <= initial_sparsity <= target_sparsity < 1.0):
        raise ValueError(f"gradual pruning needs 0 ≤ initial_sparsity ({initial_sparsity}) ≤ target_sparsity "
                         f"({target_sparsity}) < 1.")
    if not (0 <= begin_step < end_step) or every < 1:
        raise ValueError(f"gradual pruning needs 0 ≤ begin ({begin_step}) < end ({end_step}) and every ({every}) ≥ 1.")
    regex = re.compile(groups or DEFAULT_GROUPS)
    axes = dict(layer_axes or {})
    is_box = lambda x: isinstance(x, nn.meta.AxisMetadata)

    def chosen(path, x) -> bool:
        return bool(regex.search(_path_str(path))) and np.ndim(x.value if is_box(x) else x) >= 1

    def init_fn(params):
        def ones(path, x):
            if not chosen(path, x):
                return optax.MaskedNode()
            if is_box(x):  # the abstract init that derives shardings: keep the logical names
                return x.replace_boxed(jnp.ones(x.value.shape, jnp.bool_))
            return jnp.ones(jnp.shape(x), jnp.bool_)

        masks = jax.tree_util.tree_map_with_path(ones, params, is_leaf=is_box)
        if not any(True for _ in jax.tree.leaves(masks)):
            raise ValueError(f"gradual pruning: groups {regex.pattern!r} match no parameter; fix the regex.")
        return GradualPruningState(jnp.zeros((), jnp.int32), masks)

    def recompute(params, masks, step):
        s = sparsity_at(step, target_sparsity, begin_step, end_step, initial_sparsity)
        items = [(path, x) for path, x in jax.tree_util.tree_flatten_with_path(params)[0] if chosen(path, x)]
        new = {}
        if per_matrix:
            for path, x in items:
                axis = axes.get(_path_str(path))
                rows = jnp.abs(x).reshape(1, -1) if axis is None else jnp.moveaxis(jnp.abs(x), axis, 0).reshape(
                    x.shape[axis], -1)
                keep = _keep_ranks(rows, jnp.floor(s * rows.shape[1]).astype(jnp.int32))
                keep = keep.reshape(x.shape) if axis is None else jnp.moveaxis(
                    keep.reshape(jnp.moveaxis(x, axis, 0).shape), 0, axis)
                new[_path_str(path)] = keep
        else:
            everything = jnp.concatenate([jnp.abs(x).ravel() for _, x in items])[None, :]
            keep = _keep_ranks(everything, jnp.floor(s * everything.shape[1]).astype(jnp.int32))[0]
            pieces = jnp.split(keep, np.cumsum([x.size for _, x in items])[:-1])
            new = {_path_str(path): piece.reshape(x.shape) for (path, x), piece in zip(items, pieces)}
        return jax.tree_util.tree_map_with_path(
            lambda path, m: new[_path_str(path)] if not isinstance(m, optax.MaskedNode) else m, masks,
            is_leaf=lambda m: isinstance(m, optax.MaskedNode))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("gradual_magnitude_pruning needs the params in update(); pass them (optax.apply_updates "
                             "loops do).")
        t = state.count
        on_grid = (t >= begin_step) & (t <= end_step) & (((t - begin_step) % every == 0) | (t == end_step))
        masks = jax.lax.cond(on_grid, lambda: recompute(params, state.masks, t), lambda: state.masks)
        flat = {_path_str(p): m for p, m in jax.tree_util.tree_flatten_with_path(masks)[0]}

        def apply(path, u, p):
            m = flat.get(_path_str(path))
            return u if m is None else jnp.where(m, u, -p.astype(u.dtype))

        updates = jax.tree_util.tree_map_with_path(apply, updates, params)
        return updates, GradualPruningState(t + 1, masks)

    return optax.GradientTransformation(init_fn, update_fn)


def measured_sparsity(params, groups: str | None = None) -> float:
    """The fraction of zeros among the params `groups` chooses (None: `DEFAULT_GROUPS`)."""
    flat = _flat(params)
    chosen = _chosen(flat, groups or DEFAULT_GROUPS)
    size = sum(int(np.size(flat[p])) for p in chosen)
    return 1.0 - sum(int(np.count_nonzero(np.asarray(flat[p]))) for p in chosen) / size


__all__ = ["DEFAULT_GROUPS", "GradualPruningState", "gradual_magnitude_pruning", "keep_masked", "layer_axes_of",
           "masks_for", "measured_sparsity", "sparsity_at"]
