"""Our params ↔ a Hugging Face state dict, driven by the family file's name map.

A family module declares (see `llm_jax.models.bert` for the reference):

* `HF_NAME_MAP`: our param path (slash-joined keys of the params pytree) → `(hf_name, kind)`. An `hf_name`
  holding `{L}` is a per-layer tensor: our param stacks the L layers on a leading axis (`llm_jax.layers.Stack`).
* `HF_BASE_PREFIX` (optional): `transformers`' `base_model_prefix`. Checkpoints of the bare base model
  (e.g. a `BertModel` such as all-MiniLM-L6-v2) name their tensors without it.
* `HF_TIED_WEIGHTS` (optional): `transformers`' `_tied_weights_keys`, tied name → the name it copies. Tied copies
  are not written (`save_pretrained` drops them too) and, when a checkpoint has them, must equal their source.
* `HF_IGNORED` (optional): regular expressions of buffers that checkpoints may carry and we never need.
* `HF_INIT_IF_MISSING` (optional): prefixes of our param paths that may be absent from a checkpoint (task heads,
  the pooler); they are initialised freshly, and reported. Anything else missing is an error.

Layout kinds, torch (`nn.Linear` weights are `[out, in]`) → ours (projections by einsum, DESIGN.md §5.7):

| kind               | Hugging Face   | ours        |
|--------------------|----------------|-------------|
| `embed`, `vector`  | same layout    | same layout |
| `linear`           | `[out, in]`    | `[in, out]` |
| `linear_in_heads`  | `[H*K, D]`     | `[D, H, K]` |
| `bias_heads`       | `[H*K]`        | `[H, K]`    |
| `linear_out_heads` | `[D, H*K]`     | `[H, K, D]` |
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from llm_jax.models import build, family_module

KINDS = ("embed", "vector", "linear", "linear_in_heads", "bias_heads", "linear_out_heads")
LAYER = "{L}"
# Renames transformers itself applies to every checkpoint on load (its "legacy" conversion mapping): checkpoints
# converted from the original TensorFlow BERT name LayerNorm parameters gamma / beta.
_LEGACY_RENAMES = ((re.compile(r"LayerNorm\.gamma$"), "LayerNorm.weight"),
                   (re.compile(r"LayerNorm\.beta$"), "LayerNorm.bias"))


# ------------------------------------------------------------------------------------------ tensor layouts


def hf_shape(kind: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The Hugging Face shape of one (per-layer) tensor whose shape in our params is `shape`."""
    if kind in ("embed", "vector"):
        return tuple(shape)
    if kind == "linear":
        return tuple(reversed(shape))
    if kind == "linear_in_heads":
        d, h, k = shape
        return (h * k, d)
    if kind == "bias_heads":
        return (math.prod(shape),)
    if kind == "linear_out_heads":
        h, k, d = shape
        return (d, h * k)
    raise ValueError(f"Unknown layout kind {kind!r} in a family's HF_NAME_MAP; known kinds: {KINDS}.")


def to_ours(kind: str, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """One Hugging Face tensor (already checked to have `hf_shape(kind, shape)`) in our layout `shape`."""
    if kind in ("embed", "vector"):
        return array
    if kind == "bias_heads":
        return array.reshape(shape)
    # linear kinds: torch keeps [out, in]; transposing gives [in, out], which reshapes to our multi-axis kernel.
    return array.T.reshape(shape)


def to_hf(kind: str, array: np.ndarray) -> np.ndarray:
    """One of our (per-layer) params in the Hugging Face layout; the inverse of `to_ours`."""
    if kind in ("embed", "vector"):
        return array
    if kind == "linear":
        return array.T
    if kind == "linear_in_heads":  # [D, H, K] → [D, H*K] → [H*K, D]
        return array.reshape(array.shape[0], -1).T
    if kind == "bias_heads":
        return array.reshape(-1)
    if kind == "linear_out_heads":  # [H, K, D] → [H*K, D] → [D, H*K]
        return array.reshape(-1, array.shape[-1]).T
    raise ValueError(f"Unknown layout kind {kind!r} in a family's HF_NAME_MAP; known kinds: {KINDS}.")


# ------------------------------------------------------------------------------------- our params' shapes


def _init_inputs():
    # The smallest input every family accepts; params do not depend on the sequence length.
    return jnp.zeros((1, 1), jnp.int32)


def param_shapes(family: str, config) -> dict[str, tuple[int, ...]]:
    """Our param path → shape, from `jax.eval_shape` of the model's init (nothing is computed).

    Also checks that the family's `HF_NAME_MAP` covers exactly these params, so a model change that the map
    missed fails here with the names rather than as a confusing shape error later.
    """
    model = build(family, config)
    abstract = nn.meta.unbox(jax.eval_shape(model.init, jax.random.key(0), _init_inputs()))["params"]
    shapes = {path: tuple(s.shape) for path, s in traverse_util.flatten_dict(abstract, sep="/").items()}
    name_map = family_module(family).HF_NAME_MAP
    unmapped, stale = sorted(set(shapes) - set(name_map)), sorted(set(name_map) - set(shapes))
    if unmapped or stale:
        raise RuntimeError(f"HF_NAME_MAP of family {family!r} is out of date with its model: params without an "
                           f"entry {unmapped}, entries without a param {stale}. Update the map in the family file.")
    for path, (hf_name, kind) in name_map.items():
        hf_shape(kind, shapes[path][1:] if LAYER in hf_name else shapes[path])  # rejects unknown kinds
        if LAYER in hf_name and shapes[path][:1] != (config.num_layers,):
            raise RuntimeError(f"HF_NAME_MAP of family {family!r} marks {path} as per-layer ({hf_name}), but its "
                               f"shape {shapes[path]} has no leading axis of num_layers={config.num_layers}.")
    return shapes


def fresh_params(family: str, config, paths: list[str], seed: int) -> dict[str, np.ndarray]:
    """Our initialisation of just `paths`, deterministic in `seed`.

    Only the requested leaves leave the jitted init, so XLA drops the work (and memory) of all the others.
    """
    model = build(family, config)

    def init(key):
        params = nn.meta.unbox(model.init(key, _init_inputs()))["params"]
        flat = traverse_util.flatten_dict(params, sep="/")
        return {p: flat[p] for p in paths}

    return {p: np.asarray(v, dtype=np.float32) for p, v in jax.jit(init)(jax.random.key(seed)).items()}


# ----------------------------------------------------------------------------------- Hugging Face → ours


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """What happened to each tensor when a checkpoint was read.

    Attributes:
      initialized: our param paths the checkpoint lacked, initialised freshly (e.g. the MLM / NSP heads of a
        bare `BertModel` checkpoint). Like `transformers`' "newly initialized" weights: train before use.
      unexpected: checkpoint tensors that map to nothing in our model (e.g. a fine-tuned classifier head).
      ignored: checkpoint tensors skipped by design: tied copies and buffers.
    """

    initialized: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()


def _legacy_renamed(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, array in tensors.items():
        for pattern, replacement in _LEGACY_RENAMES:
            name = pattern.sub(replacement, name)
        if name in out:
            raise ValueError(f"The checkpoint holds both the legacy and the current name of {name} "
                             f"(LayerNorm gamma/beta vs weight/bias); keep one of them.")
        out[name] = array
    return out


def _resolver(tensors: Mapping[str, np.ndarray], base_prefix: str | None):
    """`resolve(hf_name)` → the name under which the checkpoint holds that tensor, or None.

    A bare base-model checkpoint stores `embeddings.…` where the full model stores `bert.embeddings.…`.
    """
    strip = f"{base_prefix}." if base_prefix else None

    def resolve(name: str) -> str | None:
        if name in tensors:
            return name
        if strip and name.startswith(strip) and name[len(strip):] in tensors:
            return name[len(strip):]
        return None

    return resolve


def from_hf_state_dict(family: str, config, tensors: Mapping[str, np.ndarray], *,
                       seed: int = 0) -> tuple[dict, LoadReport]:
    """Our params (nested dict of float32 numpy arrays) from a Hugging Face state dict.

    Args:
      family: our family name (`bert`, `roberta`, ...).
      config: the family's Config, matching the checkpoint.
      tensors: Hugging Face name → array (see `weights_io.read_weights`).
      seed: seeds the fresh initialisation of params the checkpoint lacks.

    Returns:
      `(params, report)`; `model.apply({'params': params}, ...)` runs the model.

    Raises:
      ValueError: a tensor with the wrong shape, a missing trunk tensor, or a tied copy that differs from its
        source (each message names the tensors).
    """
    mod = family_module(family)
    shapes = param_shapes(family, config)
    tensors = _legacy_renamed(tensors)
    resolve = _resolver(tensors, getattr(mod, "HF_BASE_PREFIX", None))
    used: set[str] = set()

    # A checkpoint that keeps only the tied copy (e.g. `cls.predictions.decoder.bias` of old BERT exports) still
    # provides the source tensor; when both are there they must agree, or our tied model would compute something
    # other than the checkpoint's.
    tied_copies: list[str] = []
    for copy_name, source_name in getattr(mod, "HF_TIED_WEIGHTS", {}).items():
        copy_key, source_key = resolve(copy_name), resolve(source_name)
        if copy_key is None:
            continue
        tied_copies.append(copy_key)
        if source_key is None:
            tensors[source_name] = tensors[copy_key]
        elif not np.array_equal(tensors[copy_key], tensors[source_key]):
            diff = float(np.max(np.abs(tensors[copy_key] - tensors[source_key])))
            raise ValueError(
                f"The checkpoint's {copy_key} differs from {source_key} (max |diff| = {diff:.3g}), but our {family} "
                f"model ties them as transformers does with tie_word_embeddings=true; loading would silently change "
                f"the outputs. Use a checkpoint with tied weights.")

    flat: dict[str, np.ndarray] = {}
    missing: list[str] = []
    for path, (hf_name, kind) in mod.HF_NAME_MAP.items():
        shape = shapes[path]
        per_layer = LAYER in hf_name
        names = [hf_name.replace(LAYER, str(i)) for i in range(shape[0])] if per_layer else [hf_name]
        keys = [resolve(n) for n in names]
        absent = [n for n, k in zip(names, keys) if k is None]
        if len(absent) == len(names):
            missing.append(path)
            continue
        if absent:
            raise ValueError(f"The checkpoint has only {len(names) - len(absent)} of the {len(names)} layers of "
                             f"{hf_name} (missing e.g. {absent[:3]}); config.json's num_hidden_layers does not match "
                             f"the weights.")
        layer_shape = shape[1:] if per_layer else shape
        want = hf_shape(kind, layer_shape)
        arrays = []
        for key in keys:
            array = tensors[key]
            if tuple(array.shape) != want:
                raise ValueError(f"Tensor {key} has shape {tuple(array.shape)}, but config.json implies {want} "
                                 f"(our {path}, layout {kind!r}); the weights and config.json disagree.")
            arrays.append(to_ours(kind, array, layer_shape).astype(np.float32))
        flat[path] = np.stack(arrays) if per_layer else arrays[0]
        used.update(keys)

    optional = tuple(getattr(mod, "HF_INIT_IF_MISSING", ()))
    required = [p for p in missing if not p.startswith(optional)]
    if required:
        names = [mod.HF_NAME_MAP[p][0] for p in required]
        raise ValueError(f"The checkpoint lacks {len(required)} tensor(s) our {family} model cannot do without, "
                         f"e.g. {names[:5]}. Is it a {family} checkpoint (config.json model_type), and complete?")
    if missing:
        flat.update(fresh_params(family, config, missing, seed))

    ignored_patterns = [re.compile(p) for p in getattr(mod, "HF_IGNORED", ())]
    rest = sorted(set(tensors) - used - set(tied_copies))
    buffers = [n for n in rest if any(p.search(n) for p in ignored_patterns)]
    unexpected = [n for n in rest if n not in buffers]
    ignored = sorted(buffers + tied_copies)
    report = LoadReport(initialized=tuple(missing), unexpected=tuple(unexpected), ignored=tuple(ignored))
    return traverse_util.unflatten_dict(flat, sep="/"), report


# ----------------------------------------------------------------------------------- ours → Hugging Face


def _flat_params(params) -> dict[str, np.ndarray]:
    params = nn.meta.unbox(params)
    # A whole variables dict (`{'params': …}`) is accepted as well as the params inside it.
    if isinstance(params, Mapping) and set(params) == {"params"}:
        params = params["params"]
    flat = traverse_util.flatten_dict(params, sep="/")
    return {path: np.asarray(jax.device_get(v)) for path, v in flat.items()}


def to_hf_state_dict(family: str, config, params) -> dict[str, np.ndarray]:
    """Our params as a Hugging Face state dict (float32, C-contiguous, without tied copies, as `save_pretrained`
    writes).

    Raises:
      ValueError: params that do not match `config` (missing, extra or misshapen; all named), checked before
        anything is converted.
    """
    mod = family_module(family)
    shapes = param_shapes(family, config)
    flat = _flat_params(params)
    missing, extra = sorted(set(shapes) - set(flat)), sorted(set(flat) - set(shapes))
    misshapen = [f"{p}: {tuple(flat[p].shape)} ≠ {shapes[p]}" for p in sorted(set(flat) & set(shapes))
                 if tuple(flat[p].shape) != shapes[p]]
    if missing or extra or misshapen:
        raise ValueError(f"The params do not fit this {family} config: missing {missing}, unexpected {extra}, "
                         f"wrong shape {misshapen}. Pass the config the params were made with.")
    out: dict[str, np.ndarray] = {}
    for path, (hf_name, kind) in mod.HF_NAME_MAP.items():
        array = flat[path].astype(np.float32)
        layers = [(hf_name.replace(LAYER, str(i)), array[i]) for i in range(array.shape[0])] \
            if LAYER in hf_name else [(hf_name, array)]
        for name, layer in layers:
            # Why contiguous: transposes are strided views, and `safetensors.numpy` writes an array's raw
            # buffer, so a view would be saved scrambled, silently.
            out[name] = np.ascontiguousarray(to_hf(kind, layer))
    return out
