"""Tensor layouts: how one Hugging Face tensor maps onto one of our params, as an open registry.

A family's name map (`HF_NAME_MAP`, or each view's `name_map`, see `HfView`) names a layout per tensor:

    "encoder/stack/layers/block/attention/query/kernel": ("encoder.layer.{L}.attention.self.query.weight",
                                                          "linear_in_heads"),
    "decoder/stack/layers/block/attention/query/kernel": ("h.{L}.attn.c_attn.weight", "conv1d_in_heads", (0, 3)),

The optional third element `part=(i, n)` says that our param is part `i` of `n` equal parts of a fused HF tensor,
cut along HF's *output* axis (`Layout.hf_out_axis`): GPT-2's `c_attn` holds q|k|v as one Conv1D weight
`[D, 3D]`, Transformer-XL's `qkv_net` as one Linear weight `[3·H·K, D]`.

Shapes below are of one layer (per-layer tensors are stacked on leading axes of ours, see `state_dict`). torch's
`nn.Linear` keeps `[out, in]`; transformers' `Conv1D` (GPT-1/2) keeps `[in, out]`; ours are einsum kernels with a
real heads axis (DESIGN.md §5.8):

| layout             | Hugging Face   | ours        | where                                             |
|--------------------|----------------|-------------|---------------------------------------------------|
| `embed`, `vector`  | same layout    | same layout | embeddings, biases, norms                         |
| `linear`           | `[out, in]`    | `[in, out]` | `nn.Linear` weights                               |
| `linear_in_heads`  | `[H*K, D]`     | `[D, H, K]` | BERT q/k/v, TXL `qkv_net` (part of 3)             |
| `bias_heads`       | `[H*K]`        | `[H, K]`    | BERT q/k/v biases, GPT-2 `c_attn.bias` (part of 3)|
| `linear_out_heads` | `[D, H*K]`     | `[H, K, D]` | BERT attention output, TXL `o_net`                |
| `conv1d`           | `[in, out]`    | `[in, out]` | GPT-1/2 `c_fc`, `c_proj` of the MLP               |
| `conv1d_in_heads`  | `[D, H*K]`     | `[D, H, K]` | GPT-1/2 `c_attn` (part i of 3)                    |
| `conv1d_out_heads` | `[H*K, D]`     | `[H, K, D]` | GPT-1/2 `attn.c_proj`                             |
| `heads_dhk`        | `[D, H, K]`    | `[D, H, K]` | XLNet `q`, `k`, `v`, `r`                          |
| `out_heads_dhk`    | `[D, H, K]`    | `[H, K, D]` | XLNet `o` (`einsum("ibnd,hnd->ibh", ·, o)`)       |

Head `h` of a fused `[H*K, …]` axis is the slice `h*K … (h+1)*K − 1`, which is how transformers splits heads
(`view(B, T, H, K)`), so every reshape here is row-major.

The registry is open: a family with a layout of its own calls `register_layout(name, Layout(...))` at import.
This module depends on numpy only, so a family file may import it without an import cycle.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

Shape = tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Layout:
    """How one Hugging Face tensor and one of our (per-layer) params correspond.

    Attributes:
      hf_shape: our shape → the Hugging Face shape; raises ValueError for a shape the layout cannot take (wrong
        rank), which is how a name map that pairs a param with the wrong layout is caught.
      to_ours: `(hf_array, our_shape) -> array` in our layout; `hf_array` already has `hf_shape(our_shape)`.
      to_hf: `our_array -> array` in the Hugging Face layout; the inverse of `to_ours`.
      hf_out_axis: the axis of the Hugging Face tensor that indexes the layer's outputs, along which fused
        tensors are cut into parts (`part=(i, n)` in a name map); None if the layout cannot be a part.
    """

    hf_shape: Callable[[Shape], Shape]
    to_ours: Callable[[np.ndarray, Shape], np.ndarray]
    to_hf: Callable[[np.ndarray], np.ndarray]
    hf_out_axis: int | None = None


def _rank(name: str, n: int, shape: Shape) -> Shape:
    if len(shape) != n:
        raise ValueError(f"Layout {name!r} takes a rank-{n} param (one layer), but got shape {tuple(shape)}; the "
                         f"family's name map pairs this param with the wrong layout.")
    return tuple(shape)


def _same(shape: Shape) -> Shape:
    return tuple(shape)


def _identity(array: np.ndarray, shape: Shape = ()) -> np.ndarray:
    return array


def _linear_hf_shape(shape: Shape) -> Shape:
    i, o = _rank("linear", 2, shape)
    return (o, i)


def _linear_in_heads_hf_shape(shape: Shape) -> Shape:
    d, h, k = _rank("linear_in_heads", 3, shape)
    return (h * k, d)


def _bias_heads_hf_shape(shape: Shape) -> Shape:
    return (math.prod(_rank("bias_heads", 2, shape)),)


def _linear_out_heads_hf_shape(shape: Shape) -> Shape:
    h, k, d = _rank("linear_out_heads", 3, shape)
    return (d, h * k)


def _conv1d_in_heads_hf_shape(shape: Shape) -> Shape:
    d, h, k = _rank("conv1d_in_heads", 3, shape)
    return (d, h * k)


def _conv1d_out_heads_hf_shape(shape: Shape) -> Shape:
    h, k, d = _rank("conv1d_out_heads", 3, shape)
    return (h * k, d)


def _out_heads_dhk_hf_shape(shape: Shape) -> Shape:
    h, k, d = _rank("out_heads_dhk", 3, shape)
    return (d, h, k)


LAYOUTS: dict[str, Layout] = {
    # Same layout both sides. A 1-D vector's only axis is its output axis (a fused bias is cut along it).
    "embed": Layout(_same, _identity, _identity),
    "vector": Layout(_same, _identity, _identity, hf_out_axis=0),
    # torch [out, in] → ours [in, out].
    "linear": Layout(_linear_hf_shape, lambda a, s: a.T, lambda a: a.T, hf_out_axis=0),
    # [H*K, D] → transpose → [D, H*K] → our multi-axis kernel [D, H, K].
    "linear_in_heads": Layout(_linear_in_heads_hf_shape, lambda a, s: a.T.reshape(s),
                              lambda a: a.reshape(a.shape[0], -1).T, hf_out_axis=0),
    "bias_heads": Layout(_bias_heads_hf_shape, lambda a, s: a.reshape(s), lambda a: a.reshape(-1), hf_out_axis=0),
    # [D, H*K] → transpose → [H*K, D] → [H, K, D].
    "linear_out_heads": Layout(_linear_out_heads_hf_shape, lambda a, s: a.T.reshape(s),
                               lambda a: a.reshape(-1, a.shape[-1]).T, hf_out_axis=0),
    # transformers' Conv1D computes x @ W + b with W [in, out]: already our orientation, no transpose.
    "conv1d": Layout(lambda s: _rank("conv1d", 2, s), _identity, _identity, hf_out_axis=1),
    "conv1d_in_heads": Layout(_conv1d_in_heads_hf_shape, lambda a, s: a.reshape(s),
                              lambda a: a.reshape(a.shape[0], -1), hf_out_axis=1),
    "conv1d_out_heads": Layout(_conv1d_out_heads_hf_shape, lambda a, s: a.reshape(s),
                               lambda a: a.reshape(-1, a.shape[-1]), hf_out_axis=1),
    # XLNet keeps its projections as einsum kernels already ([D, H, K]); its fused-q|k|v form does not exist.
    "heads_dhk": Layout(lambda s: _rank("heads_dhk", 3, s), _identity, _identity),
    # XLNet's o is [D, H, K] (`einsum("ibnd,hnd->ibh", attn_vec, o)`); ours is [H, K, D]: o_ours[h,k,d] = o[d,h,k].
    "out_heads_dhk": Layout(_out_heads_dhk_hf_shape, lambda a, s: a.transpose(1, 2, 0),
                            lambda a: a.transpose(2, 0, 1)),
}


def register_layout(name: str, layout: Layout) -> None:
    """Adds a layout that name maps can then use (e.g. one family's own storage quirk).

    Registering the same object twice is a no-op (a module imported again); another layout under a taken name is
    refused, since it would silently change how every family using that name reads checkpoints.

    Raises:
      ValueError: `name` is already registered with another layout.
    """
    existing = LAYOUTS.get(name)
    if existing is not None and existing is not layout:
        raise ValueError(f"Layout {name!r} is already registered (built-in or by another family); register yours "
                         f"under a new name.")
    LAYOUTS[name] = layout


def get_layout(name: str) -> Layout:
    """The registered layout `name`.

    Raises:
      ValueError: unknown name, with the known ones.
    """
    if name not in LAYOUTS:
        raise ValueError(f"Unknown layout kind {name!r} in a family's HF name map; known kinds: {sorted(LAYOUTS)} "
                         f"(or register one with llm_jax.interop.layouts.register_layout).")
    return LAYOUTS[name]


# --------------------------------------------------------------------------------------- fused parts


def part_hf_shape(layout: Layout, kind: str, shape: Shape, part: tuple[int, int] | None) -> Shape:
    """The Hugging Face shape of the whole (fused) tensor holding our one-layer `shape` as part `part`.

    Raises:
      ValueError: a layout that cannot be fused, or a malformed `part`.
    """
    own = tuple(layout.hf_shape(tuple(shape)))
    if part is None:
        return own
    _, n = _check_part(kind, layout, part)
    axis = layout.hf_out_axis % len(own)
    return own[:axis] + (own[axis] * n,) + own[axis + 1:]


def _check_part(kind: str, layout: Layout, part: Any) -> tuple[int, int]:
    if layout.hf_out_axis is None:
        raise ValueError(f"Layout {kind!r} has no output axis to cut a fused tensor along, so it cannot take "
                         f"part={part!r}; use a layout with one (e.g. 'linear_in_heads', 'conv1d_in_heads').")
    if (not isinstance(part, tuple) or len(part) != 2 or not all(isinstance(x, int) for x in part)
            or not 0 <= part[0] < part[1]):
        raise ValueError(f"part={part!r} must be (i, n) with 0 <= i < n: our tensor is part i of n equal parts.")
    return part


def slice_part(layout: Layout, kind: str, array: np.ndarray, part: tuple[int, int]) -> np.ndarray:
    """Part `i` of `n` of a fused Hugging Face tensor, cut along the layout's output axis."""
    i, n = _check_part(kind, layout, part)
    axis = layout.hf_out_axis % array.ndim
    size = array.shape[axis] // n
    return np.take(array, np.arange(i * size, (i + 1) * size), axis=axis)


def join_parts(layout: Layout, kind: str, parts: list[np.ndarray]) -> np.ndarray:
    """The fused Hugging Face tensor from its parts, in order; the inverse of `slice_part`."""
    axis = layout.hf_out_axis % parts[0].ndim
    return np.concatenate(parts, axis=axis)


# ----------------------------------------------------------------------------------------------- views


@dataclasses.dataclass(frozen=True)
class HfView:
    """One Hugging Face checkpoint that (part of) a family's params are published as.

    Most families have one (built from their module attributes, see `state_dict.hf_views`). ELECTRA has two: its
    generator (`ElectraForMaskedLM`) and its discriminator (`ElectraForPreTraining`), stored as separate Hub
    checkpoints, while our model is one joint module with one params tree (DESIGN.md §5.6).

    Attributes:
      subtree_prefix: the part of our params tree this checkpoint holds in full (a path prefix such as
        `"discriminator/"`; `""` for the whole tree): every param under it must be in `name_map`. The map may also
        name params outside it (embeddings shared by generator and discriminator).
      name_map: our full param path → `(hf_name, kind)` or `(hf_name, kind, (i, n))`, as `HF_NAME_MAP`.
      architecture: the class `transformers` loads the checkpoint with (`config.json` `architectures[0]`), which
        also picks this view when reading a checkpoint.
      config_to_hf: our family Config → this checkpoint's `config.json` dict.
      config_from_hf: `config.json` dict → our family Config; None: the family's `config_from_hf`.
      architectures: further `architectures` values that pick this view when reading (e.g. task variants).
      conditional: prefixes of our param paths that only some configs have (ELECTRA's `embeddings_project`, absent
        when the embedding width equals the hidden width, as in HF); their entries apply when the param exists.
      base_prefix, tied_weights, ignored, init_if_missing: as the family attributes `HF_BASE_PREFIX`,
        `HF_TIED_WEIGHTS`, `HF_IGNORED`, `HF_INIT_IF_MISSING` (see `state_dict`), for this checkpoint; None: the
        family's attribute.
    """

    subtree_prefix: str
    name_map: Mapping[str, tuple]
    architecture: str
    config_to_hf: Callable[[Any], dict]
    config_from_hf: Callable[[dict], Any] | None = None
    architectures: tuple[str, ...] = ()
    base_prefix: str | None = None
    tied_weights: Mapping[str, str] | None = None
    ignored: tuple[str, ...] | None = None
    init_if_missing: tuple[str, ...] | None = None
    conditional: tuple[str, ...] | None = None


__all__ = ["LAYOUTS", "HfView", "Layout", "get_layout", "join_parts", "part_hf_shape", "register_layout",
           "slice_part"]
