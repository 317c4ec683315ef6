"""Quantization of a model's weights: fp16 / bf16 casts, and int8 weight-only or dynamic (weights and activations)
post-training quantization through Google's qwix (`qwix.quantize_model` + `qwix.PtqProvider`).

Modes (`MODES`, what `llm-jax compress --quantize` takes):

* `fp16`, `bf16` — every floating param is cast to float16 / bfloat16 (stored at 16 bits) and the model's runtime
  `dtype` is set to it, so activations run at 16 bits too. Not qwix: a cast (qwix has no float "qtype").
* `int8-weight` — weight-only: every projection kernel (an `llm_jax.layers.Einsum`) is stored as int8 with one
  float32 scale per output channel (symmetric absmax: `scale = max|w| / 127` over the contracted axes, `q =
  round(w / scale)`); the matmul dequantizes it (`q * scale`) and runs a float32 dot. Saves memory and disk, not
  time.
* `int8-dynamic` — dynamic-range w8a8: the kernels as above, and the activation entering each projection is
  quantized at run time with one absmax scale per token (per row of the contraction); the product is an
  s8 × s8 → s32 dot, rescaled by both scales (`y = (q_x · q_w) * s_x * s_w`).

What is quantized, and why:

* **Only the projections** (`Einsum` modules: q/k/v/output, FFN, pooler, head transforms). A qwix rule matches by
  module path, so the rules list the exact paths of the model's `Einsum` modules (found by tracing its init). The
  attention score and value products (`q·k`, `p·v`) are activation × activation einsums in the attention module
  itself: they stay float32. With a weight they have no fixed range to calibrate, their per-token scale would
  have to cover the softmax's full [0, 1] range (p·v) and the logits' outliers (q·k), and they are a small part of
  the FLOPs at our sequence lengths; quantizing them costs accuracy for little speed.
* **Embedding lookups** are gathers, not products: nothing to quantize in the dot sense; the tables stay float32
  (they are often the largest single tensors — the measured size ratio says so).
* **Tied output projections** (masked / causal LM logits = `x @ E^T` with the embedding table `E`) stay float32:
  the table is the gather table too (an int8 copy would cost its size again), and the vocabulary logits are the
  most quantization-sensitive product of the model.

The model directory records the mode in the Config's `quantization` field ("none", "int8-weight",
"int8-dynamic"): `llm_jax.models.build` then returns the qwix-wrapped module, and `llm_jax.interop.native`
restores the int8 tree (`abstract_quantized_params`). Paths that cannot run the int8 layout (fine-tuning,
exporting to Hugging Face, the families' own decoder steps, the bias tests' trunk) take `as_float`: the
dequantized float32 weights, with one logged line saying so.

Scanned layer stacks (`llm_jax.layers.Stack`, `[L, …]` params): qwix 0.1.8's `quantize_params` applies a layer's
quantization recipe to the whole stack and gets the scale shapes wrong; here each leaf under a stack is quantized
layer by layer (`jax.vmap` over the stacked axes), giving `[L, 1, …, out]` scales.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import pathlib
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import qwix
from flax import traverse_util
from qwix._src.core import qarray as _qarray
from qwix._src.providers.ptq import WithAux

from llm_jax.layers.linear import Einsum
from llm_jax.models.family import QUANTIZATIONS

log = logging.getLogger(__name__)
# qwix 0.1.8's own modules: `_qarray.quantize` applies the `how` an abstract leaf carries (the per-layer quantizer
# the scanned-stack workaround maps), `WithAux` is an int8 kernel's leaf in the params tree.

MODES = ("fp16", "bf16", "int8-weight", "int8-dynamic")
# QUANTIZATIONS (from the family contract): the values of a Config's `quantization` field.
CAST_DTYPES = {"fp16": "float16", "bf16": "bfloat16"}
# The dummy input length the quantized tree is traced with (shapes of params do not depend on it).
_TRACE_LEN = 8


class _ProjectionPtqProvider(qwix.PtqProvider):
    """qwix's PTQ provider that also makes `Einsum` contract the kernel at its own shape (see
    `llm_jax.layers.linear.matmul_layout`): the 2-D reshape of the float path would change the kernel's rank, which
    qwix cannot carry through the kernel's logical-axis metadata."""

    def get_intercept_map(self):
        intercepts = super().get_intercept_map()
        intercepts["llm_jax.layers.linear.matmul_layout"] = lambda: False
        return intercepts


def _float_config(config):
    return dataclasses.replace(config, quantization="none")


def _init_inputs(family: str, config):
    """The positional and keyword inputs of the pretraining model's init (shape-only objective, dummy batch)."""
    from llm_jax import models, objectives

    objective = objectives.shape_only_objective(models.family_module(family).DEFAULT_OBJECTIVE, config.vocab_size)
    return objective.init_inputs(objective.dummy_batch(1, min(_TRACE_LEN, config.max_seq_len)))


def _abstract_init(module: nn.Module, family: str, config) -> Any:
    args, kwargs = _init_inputs(family, config)
    return jax.eval_shape(lambda r: module.init({"params": r}, *args, **kwargs)["params"], jax.random.key(0))


@functools.lru_cache(maxsize=64)
def projection_paths(family: str, config) -> tuple[str, ...]:
    """The module paths (`a/b/c`, as qwix matches them) of every `Einsum` the family's pretraining model calls."""
    from llm_jax import models

    model = models.family_module(family).PRETRAINING_MODEL(_float_config(config))
    paths: set[str] = set()

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, Einsum) and context.method_name == "__call__":
            paths.add("/".join(map(str, context.module.path)))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        _abstract_init(model, family, _float_config(config))
    return tuple(sorted(paths))


def rules(quantization: str, paths: tuple[str, ...]) -> list[qwix.QuantizationRule]:
    """The qwix rules of a Config's `quantization`: int8 weights (and int8 activations for "int8-dynamic") on the
    projection modules at `paths` only; every other product (attention scores, tied logits) stays float."""
    if quantization not in QUANTIZATIONS[1:]:
        raise ValueError(f"quantization={quantization!r} has no int8 rules; choose one of {QUANTIZATIONS[1:]}.")
    if not paths:
        raise ValueError("the model has no Einsum projections to quantize.")
    pattern = "|".join(re.escape(p) for p in paths)
    act = jnp.int8 if quantization == "int8-dynamic" else None
    return [qwix.QuantizationRule(module_path=pattern, weight_qtype=jnp.int8, act_qtype=act)]


def _methods(cls: type) -> tuple[str, ...]:
    """`__call__` and every public method a module class defines (what callers run through `method=`)."""
    fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    names = {"__call__"}
    for klass in cls.__mro__:
        if not issubclass(klass, nn.Module) or klass is nn.Module:
            continue
        for name, value in vars(klass).items():
            if (inspect.isfunction(value) and not name.startswith("_") and name not in fields
                    and name not in ("setup", "init", "apply")):
                names.add(name)
    return tuple(sorted(names))


def wrap(family: str, config, module: nn.Module) -> nn.Module:
    """`module` (of `config`, whose `quantization` is int8) wrapped by qwix: its projections run in int8.

    Every public method of the module is intercepted (qwix only patches the methods it is told).
    """
    provider = _ProjectionPtqProvider(rules(config.quantization, projection_paths(family, _float_config(config))))
    return qwix.quantize_model(module, provider, methods=_methods(type(module)))


def abstract_quantized_params(family: str, config) -> Any:
    """The unboxed abstract params of the quantized model (`WithAux(QArray)` leaves for the int8 kernels, with the
    recipe (`how`) each one is quantized by; `jax.ShapeDtypeStruct` leaves)."""
    from llm_jax import models

    return nn.meta.unbox(_abstract_init(models.build(family, config), family, config))


def _is_aux(x) -> bool:
    return isinstance(x, WithAux)


def _quantize_leaf(w: jax.Array, abstract: WithAux) -> WithAux:
    """Quantizes `w` by `abstract.how`, layer by layer over the leading axes a scanned stack adds (qwix's
    `quantize_params` would give one scale for the whole stack: the `[L, …]` bug)."""
    target = abstract.array.scale.shape
    fn = functools.partial(_qarray.quantize, how=abstract.how)
    for _ in range(w.ndim):
        if jax.eval_shape(fn, jax.ShapeDtypeStruct(w.shape, w.dtype)).scale.shape == tuple(target):
            return abstract.replace(array=fn(w))
        fn = jax.vmap(fn)
    raise ValueError(f"cannot quantize a {w.shape} kernel to scales of shape {target}.")


def quantize_params(family: str, config, params: Any) -> Any:
    """Float params → the int8 tree of `config` (its `quantization` is "int8-weight" or "int8-dynamic"):
    projection kernels become `WithAux(QArray(qvalue=int8[kernel shape], scale=float32[1 or L, …, 1, out…]))`,
    everything else is unchanged."""
    abstract = abstract_quantized_params(family, config)
    flat_abs = traverse_util.flatten_dict(abstract, is_leaf=lambda _, x: _is_aux(x))
    out = {}
    for path, w in traverse_util.flatten_dict(params).items():
        if path not in flat_abs:
            raise ValueError(f"param {'/'.join(path)} is not in the {family} model's quantized tree; the params do "
                             "not belong to this config.")
        a = flat_abs[path]
        out[path] = _quantize_leaf(jnp.asarray(w, jnp.float32), a) if _is_aux(a) else w
    return traverse_util.unflatten_dict(out)


def dequantize_params(params: Any) -> Any:
    """The int8 tree → float32 params of the float model (`q * scale`, the weights the int8 matmul uses)."""
    return jax.tree.map(lambda x: np.asarray(qwix.dequantize(x.array), np.float32) if _is_aux(x) else x, params,
                        is_leaf=_is_aux)


def cast_params(params: Any, dtype: str) -> Any:
    """Every floating leaf cast to `dtype` (float16 / bfloat16 / float32); integer leaves unchanged."""
    return jax.tree.map(lambda x: np.asarray(x).astype(jnp.dtype(dtype))
                        if jnp.issubdtype(np.asarray(x).dtype, jnp.floating) else x, params)


def compress(family: str, config, params: Any, mode: str) -> tuple[Any, Any, dict]:
    """`(config, params, record)` of `mode` (`MODES`) applied to a float model; `record` goes into config.json's
    `compression`.

    Raises:
      ValueError: an unknown mode, or a model that is already int8.
    """
    if mode not in MODES:
        raise ValueError(f"--quantize {mode!r} is not one of {MODES}.")
    if config.quantization != "none":
        raise ValueError(f"the model is already quantized ({config.quantization}); quantize its float original.")
    if mode in CAST_DTYPES:
        dtype = CAST_DTYPES[mode]
        return dataclasses.replace(config, dtype=dtype).validate(), cast_params(params, dtype), {"quantize": mode}
    if config.dtype != "float32":  # a 16-bit model: its weights quantized from float32, the rest computed in it
        log.info("--quantize %s: the %s model's weights are quantized from float32 and it computes in float32.",
                 mode, config.dtype)
    qconfig = dataclasses.replace(config, quantization=mode, dtype="float32").validate()
    return qconfig, quantize_params(family, qconfig, cast_params(params, "float32")), {"quantize": mode}


def as_float(family: str, config, params: Any, purpose: str) -> tuple[Any, Any]:
    """`(config, params)` a float-only path runs: an int8 model's dequantized float32 weights with
    `quantization="none"` (one logged line naming `purpose`); any other model unchanged."""
    if config.quantization == "none":
        return config, params
    log.info("%s: the %s model runs as its dequantized float32 weights (this path has no int8 kernels).",
             purpose, config.quantization)
    return _float_config(config), dequantize_params(params)


def param_stats(params: Any) -> dict[str, int]:
    """Scalars and bytes of a params tree: `parameters` (weights, int8 values counted once), `scales` (the
    quantization scales), `bytes` (in memory)."""
    n = scales = nbytes = 0
    for leaf in jax.tree.leaves(params, is_leaf=_is_aux):
        if _is_aux(leaf):
            n += int(np.prod(leaf.array.qvalue.shape))
            scales += int(np.prod(leaf.array.scale.shape))
            nbytes += sum(int(np.asarray(x).nbytes) for x in jax.tree.leaves(leaf))
        else:
            n += int(np.prod(np.shape(leaf)))
            nbytes += int(np.asarray(leaf).nbytes)
    return {"parameters": n, "scales": scales, "bytes": nbytes}


def dir_bytes(path: str | pathlib.Path) -> int:
    """Bytes of the files under `path` (a params directory on disk)."""
    return sum(f.stat().st_size for f in pathlib.Path(path).rglob("*") if f.is_file())


__all__ = ["CAST_DTYPES", "MODES", "QUANTIZATIONS", "WithAux", "abstract_quantized_params", "as_float", "cast_params",
           "compress", "dequantize_params", "dir_bytes", "param_stats", "projection_paths", "quantize_params",
           "rules", "wrap"]
