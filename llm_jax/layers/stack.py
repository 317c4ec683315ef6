"""A stack of L identical blocks: `nn.scan` over a logical `layers` axis, optional remat, optional sharing.

The params of a scanned stack have a leading `[L, ...]` axis whether or not the loop is unrolled
(`unroll=True` compiles like a Python loop but keeps the same param layout, so checkpoints and the
Hugging Face name maps do not depend on it). `shared=True` applies one set of params L times (ALBERT).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
}


class _Carry(nn.Module):
    """Adapts a block `f(x, *args) -> x` to scan's `(carry, xs) -> (carry, ys)` form."""

    block_cls: Any
    block_kwargs: Any
    collect_hidden: bool

    @nn.compact
    def __call__(self, x, *args):
        y = self.block_cls(**dict(self.block_kwargs), name="block")(x, *args)
        return y, (y if self.collect_hidden else None)


class Stack(nn.Module):
    """Applies `block_cls(**block_kwargs)` `num_layers` times.

    Attributes:
      block_cls: a Linen module class whose `__call__(x, *args)` returns the new x.
      block_kwargs: constructor arguments (a tuple of (name, value) pairs, hashable), incl. `deterministic`.
      num_layers: L.
      remat: a key of `REMAT_POLICIES`.
      unroll: unroll the scan (same params, compiled like a Python loop).
      shared: one set of params for all layers (ALBERT cross-layer sharing, Lan et al. 2020 §3.1).
      collect_hidden: also return every layer's output `[L, B, T, D]`.
    """

    block_cls: Any
    block_kwargs: tuple
    num_layers: int
    remat: str = "none"
    unroll: bool = False
    shared: bool = False
    collect_hidden: bool = False

    @nn.compact
    def __call__(self, x, *args):
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"remat={self.remat!r} is not a policy; choose one of {sorted(REMAT_POLICIES)}.")
        body = _Carry
        if self.remat != "none":
            body = nn.remat(_Carry, policy=REMAT_POLICIES[self.remat], prevent_cse=False)
        scan_kwargs = dict(
            in_axes=(nn.broadcast,) * len(args),
            length=self.num_layers,
            unroll=self.num_layers if self.unroll else 1,
        )
        if self.shared:
            scanned = nn.scan(body, variable_broadcast="params", split_rngs={"params": False, "dropout": True},
                              **scan_kwargs)
        else:
            scanned = nn.scan(body, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
                              metadata_params={nn.PARTITION_NAME: "layers"}, **scan_kwargs)
        x, hidden = scanned(self.block_cls, self.block_kwargs, self.collect_hidden, name="layers")(x, *args)
        return x, hidden
