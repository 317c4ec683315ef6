"""A stack of L identical blocks: `nn.scan` over a logical `layers` axis, optional remat, optional sharing.

The params of a scanned stack have a leading `[L, ...]` axis whether or not the loop is unrolled
(`unroll=True` compiles like a Python loop but keeps the same param layout, so checkpoints and the
Hugging Face name maps do not depend on it). `shared=True` applies one set of params L times (ALBERT).

What goes through the loop:
* params: per layer on axis 0 (logical axis `layers`), or one copy broadcast to every layer when `shared`;
* the `cache` collection (KV caches of `MultiHeadAttention(decode=True)`): always per layer on axis 0, shared
  or not — sharing weights does not share the keys each layer computes;
* call arguments: broadcast to every layer (a mask, T5's position bias computed once), except those named in
  `scanned_args`, which carry a leading `[L, ...]` axis and are sliced per layer (Transformer-XL's memory
  `memory_LBMD`, GPT-3's per-layer flag `is_local_L`). A scan body is traced once, so a per-layer choice is a
  traced value inside the block (e.g. `MultiHeadAttention(..., use_window=is_local)` runs a `lax.cond`);
* per-layer outputs: each layer's output (`collect_hidden`, DistilBERT's hidden-state loss) and/or each layer's
  input (`collect_inputs`: Transformer-XL's next memory is h^{l−1}, Dai et al. 2019 §3.2), as `[L, B, T, D]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import numpy as np

REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
}

# The name of the scanned module inside a Stack: its params live under `.../<stack>/layers/block/...`.
SCOPE = "layers"


class StackOutput(NamedTuple):
    """What `Stack` returns.

    Attributes:
      x: the last layer's output.
      hidden_LBTD: every layer's output `[L, B, T, D]` (`collect_hidden`), else None.
      inputs_LBTD: every layer's input `[L, B, T, D]` (`collect_inputs`; `inputs_LBTD[0]` is the stack's input),
        else None.
    """

    x: Any
    hidden_LBTD: Any = None
    inputs_LBTD: Any = None


class _Carry(nn.Module):
    """Adapts a block `f(x, *args, **kwargs) -> x` to scan's `(carry, xs) -> (carry, ys)` form.

    nn.scan passes positional arguments only, so keyword arguments travel flattened after the positional ones
    and `kw_names` restores them.
    """

    block_cls: Any
    block_kwargs: Any
    collect_hidden: bool
    collect_inputs: bool
    num_positional: int
    kw_names: tuple[str, ...]

    @nn.compact
    def __call__(self, x, *flat):
        args = flat[:self.num_positional]
        kwargs = dict(zip(self.kw_names, flat[self.num_positional:]))
        y = self.block_cls(**dict(self.block_kwargs), name="block")(x, *args, **kwargs)
        return y, (y if self.collect_hidden else None, x if self.collect_inputs else None)


class Stack(nn.Module):
    """Applies `block_cls(**block_kwargs)` `num_layers` times: `x ← block(x, *args, **kwargs)`.

    Attributes:
      block_cls: a Linen module class whose `__call__(x, *args, **kwargs)` returns the new x.
      block_kwargs: constructor arguments, a mapping or a tuple of (name, value) pairs, incl. `deterministic`.
      num_layers: L.
      remat: a key of `REMAT_POLICIES`.
      unroll: unroll the scan (same params, compiled like a Python loop).
      shared: one set of params for all layers (ALBERT cross-layer sharing, Lan et al. 2020 §3.1).
      collect_hidden: also return every layer's output `[L, B, T, D]`.
      collect_inputs: also return every layer's input `[L, B, T, D]`.
      scanned_args: which call arguments carry a leading `[L, ...]` axis sliced per layer: positions in `*args`
        (0 is the first argument after x) or keyword names (a keyword may be left out of a call). All others
        are broadcast.
    """

    block_cls: Any
    block_kwargs: Any = ()
    num_layers: int = 1
    remat: str = "none"
    unroll: bool = False
    shared: bool = False
    collect_hidden: bool = False
    collect_inputs: bool = False
    scanned_args: tuple[int | str, ...] = ()

    @nn.compact
    def __call__(self, x, *args, **kwargs) -> StackOutput:
        """Runs the L blocks; see the class and module docstrings for what each argument does per layer."""
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"remat={self.remat!r} is not a policy; choose one of {sorted(REMAT_POLICIES)}.")
        if not isinstance(self.block_kwargs, Mapping | tuple | list):
            raise TypeError(f"Stack block_kwargs must be a mapping or (name, value) pairs, got {self.block_kwargs!r}.")
        kw_names = tuple(sorted(kwargs))
        flat = tuple(args) + tuple(kwargs[k] for k in kw_names)
        keys = tuple(range(len(args))) + kw_names
        # A keyword that is absent from this call is fine (an optional input such as a first segment's memory).
        unknown = [a for a in self.scanned_args if a not in keys and not isinstance(a, str)]
        if unknown:
            raise ValueError(f"Stack scanned_args {unknown} name no argument of this call (positions 0..{len(args) - 1} "
                             f"after x, keywords {list(kw_names)}); fix scanned_args or pass the argument.")
        for key, value in zip(keys, flat):
            if key in self.scanned_args:
                for leaf in jax.tree.leaves(value):
                    if np.ndim(leaf) == 0 or np.shape(leaf)[0] != self.num_layers:
                        raise ValueError(f"Stack scanned argument {key!r} must have a leading axis of num_layers="
                                         f"{self.num_layers}, got shape {np.shape(leaf)}; stack it per layer or "
                                         "leave it out of scanned_args to broadcast it.")
        body = _Carry
        if self.remat != "none":
            body = nn.remat(_Carry, policy=REMAT_POLICIES[self.remat], prevent_cse=False)
        scan_kwargs = dict(
            in_axes=tuple(0 if k in self.scanned_args else nn.broadcast for k in keys),
            length=self.num_layers,
            unroll=self.num_layers if self.unroll else 1,
        )
        if self.shared:
            scanned = nn.scan(body, variable_broadcast="params", variable_axes={"cache": 0},
                              split_rngs={"params": False, "dropout": True}, **scan_kwargs)
        else:
            scanned = nn.scan(body, variable_axes={"params": 0, "cache": 0},
                              split_rngs={"params": True, "dropout": True},
                              metadata_params={nn.PARTITION_NAME: "layers"}, **scan_kwargs)
        x, (hidden, inputs) = scanned(self.block_cls, self.block_kwargs, self.collect_hidden, self.collect_inputs,
                                      len(args), kw_names, name=SCOPE)(x, *flat)
        return StackOutput(x, hidden, inputs)
