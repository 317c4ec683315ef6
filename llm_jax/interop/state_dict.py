"""Our params ↔ a Hugging Face state dict, driven by the family file's name map(s).

A family module declares (see `llm_jax.models.bert` for the reference):

* `HF_NAME_MAP`: our param path (slash-joined keys of the params pytree) → `(hf_name, kind)` or
  `(hf_name, kind, (i, n))`. `kind` names a tensor layout of `llm_jax.interop.layouts` (`linear`,
  `linear_in_heads`, `conv1d`, `heads_dhk`, ... or one the family registered). `(i, n)` marks our param as part `i`
  of `n` of a fused HF tensor (GPT-2's `c_attn`): the reader slices it, the writer concatenates the parts.
* Index placeholders in `hf_name`: `{L}` (or any `{name}`, e.g. `{i}` for adaptive-embedding clusters) is filled
  with an index over a leading axis of our param, in the order the placeholders appear: `layer.{L}.q.weight` reads
  layers 0 … N−1 into our `[N, ...]` param (`llm_jax.layers.Stack`), N being that param's own leading axis, so an
  encoder of 6 layers and a decoder of 8 (T5) each count their own.
* `HF_BASE_PREFIX` (optional): `transformers`' `base_model_prefix`. Checkpoints of the bare base model
  (e.g. a `BertModel` such as all-MiniLM-L6-v2) name their tensors without it; where the name map's names lack it
  (T5's), checkpoints of the task models that hold the trunk under it (`transformer.shared.weight`) are read too.
* `HF_TIED_WEIGHTS` (optional): `transformers`' `_tied_weights_keys`, tied name → the name it copies. Tied copies
  are not written (`save_pretrained` drops them too) and, when a checkpoint has them, must equal their source.
* `HF_IGNORED` (optional): regular expressions of buffers that checkpoints may carry and we never need.
* `HF_INIT_IF_MISSING` (optional): prefixes of our param paths that may be absent from a checkpoint (task heads,
  the pooler); they are initialised freshly, and reported. Anything else missing is an error.
* `HF_CONDITIONAL_PARAMS` (optional): prefixes of our param paths that only some configs have (ELECTRA's
  `embeddings_project` exists only when E ≠ D); their entries apply when the model has the param.
* `HF_VIEWS` (optional): view name → `layouts.HfView`, for a family whose params are published as several
  checkpoints (ELECTRA's generator and discriminator). Without it the family has one view, `DEFAULT_VIEW`, built
  from the attributes above and `HF_ARCHITECTURE`, `config_to_hf`, `config_from_hf`.

A family may be a module or any object with these attributes.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from llm_jax.interop import layouts
from llm_jax.interop.layouts import HfView, Layout
from llm_jax.models import build, family_module

KINDS = tuple(layouts.LAYOUTS)  # the built-in layouts; `layouts.LAYOUTS` also holds those families registered
LAYER = "{L}"
DEFAULT_VIEW = "default"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Renames transformers itself applies to every checkpoint on load (its "legacy" conversion mapping): checkpoints
# converted from the original TensorFlow BERT name LayerNorm parameters gamma / beta.
_LEGACY_RENAMES = ((re.compile(r"LayerNorm\.gamma$"), "LayerNorm.weight"),
                   (re.compile(r"LayerNorm\.beta$"), "LayerNorm.bias"))


# ------------------------------------------------------------------------------- one layout, by kind name


def hf_shape(kind: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The Hugging Face shape of one (per-layer) tensor whose shape in our params is `shape`."""
    return tuple(layouts.get_layout(kind).hf_shape(tuple(shape)))


def to_ours(kind: str, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """One Hugging Face tensor (already checked to have `hf_shape(kind, shape)`) in our layout `shape`."""
    return layouts.get_layout(kind).to_ours(array, tuple(shape))


def to_hf(kind: str, array: np.ndarray) -> np.ndarray:
    """One of our (per-layer) params in the Hugging Face layout; the inverse of `to_ours`."""
    return layouts.get_layout(kind).to_hf(array)


# ----------------------------------------------------------------------------------- name-map entries


@dataclasses.dataclass(frozen=True)
class Entry:
    """One name-map entry, parsed.

    Attributes:
      path: our param path.
      hf_name: the Hugging Face name, placeholders (`{L}`) unfilled.
      kind: the layout's name; `layout` the layout itself.
      part: `(i, n)` for part i of n of a fused tensor, else None.
      placeholders: the distinct placeholder names of `hf_name` in order; each indexes one leading axis of ours.
    """

    path: str
    hf_name: str
    kind: str
    layout: Layout
    part: tuple[int, int] | None
    placeholders: tuple[str, ...]

    def names(self, shape: tuple[int, ...]) -> list[tuple[tuple[int, ...], str]]:
        """`(index, hf_name)` for every per-index tensor of our param of `shape`, in row-major index order."""
        ranges = [range(n) for n in shape[:len(self.placeholders)]]
        out = []
        for index in itertools.product(*ranges):
            values = dict(zip(self.placeholders, index))
            out.append((index, _PLACEHOLDER.sub(lambda m, values=values: str(values[m.group(1)]), self.hf_name)))
        return out

    def hf_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The Hugging Face shape of one per-index tensor (the whole fused tensor for a part)."""
        return layouts.part_hf_shape(self.layout, self.kind, shape[len(self.placeholders):], self.part)


def parse_entry(path: str, value) -> Entry:
    """An `Entry` from one name-map item `path: (hf_name, kind[, (i, n)])`.

    Raises:
      ValueError: a malformed value, an unknown layout or a malformed part.
    """
    if not isinstance(value, tuple) or len(value) not in (2, 3):
        raise ValueError(f"HF name map entry {path!r}: {value!r} must be (hf_name, kind) or (hf_name, kind, (i, n)).")
    hf_name, kind, part = (*value, None) if len(value) == 2 else value
    layout = layouts.get_layout(kind)
    if part is not None:
        layouts._check_part(kind, layout, part)  # same rules as the reader and writer apply
    placeholders = tuple(dict.fromkeys(_PLACEHOLDER.findall(hf_name)))
    return Entry(path, hf_name, kind, layout, part, placeholders)


# -------------------------------------------------------------------------------------------------- views


def _family(family) -> tuple[str, object]:
    """`(name, module)` for a family name, or for a family object itself (tests use small fake ones)."""
    if isinstance(family, str):
        return family, family_module(family)
    return getattr(family, "__name__", type(family).__name__), family


def hf_views(family) -> dict[str, HfView]:
    """The family's Hugging Face checkpoints: `HF_VIEWS` with inherited fields filled in, or the one view built
    from `HF_NAME_MAP`, `HF_ARCHITECTURE`, `config_to_hf`, `config_from_hf` and the optional `HF_*` attributes, or
    none for a family that declares neither `HF_VIEWS` nor `HF_NAME_MAP`.

    Args:
      family: a family name, or a family module (object).
    """
    name, mod = _family(family)
    inherited = {
        "config_from_hf": getattr(mod, "config_from_hf", None),
        "base_prefix": getattr(mod, "HF_BASE_PREFIX", None) or "",
        "tied_weights": dict(getattr(mod, "HF_TIED_WEIGHTS", {})),
        "ignored": tuple(getattr(mod, "HF_IGNORED", ())),
        "init_if_missing": tuple(getattr(mod, "HF_INIT_IF_MISSING", ())),
        "conditional": tuple(getattr(mod, "HF_CONDITIONAL_PARAMS", ())),
    }
    declared = getattr(mod, "HF_VIEWS", None)
    if declared is None and not hasattr(mod, "HF_NAME_MAP"):
        return {}  # a family never published in transformers' format (GPT-3)
    if declared is None:
        return {DEFAULT_VIEW: HfView(subtree_prefix="", name_map=mod.HF_NAME_MAP,
                                     architecture=getattr(mod, "HF_ARCHITECTURE", ""),
                                     config_to_hf=getattr(mod, "config_to_hf", None), **inherited)}
    if not declared:
        raise RuntimeError(f"HF_VIEWS of family {name!r} is empty; declare at least one view or drop the attribute.")
    views = {}
    for view_name, view in declared.items():
        # Duck-typed, so a family may describe a view with any object carrying HfView's field names.
        fields = {f.name: getattr(view, f.name, None) for f in dataclasses.fields(HfView)}
        fields["architectures"] = tuple(fields["architectures"] or ())
        for key, value in inherited.items():
            if fields[key] is None:
                fields[key] = value
        views[view_name] = HfView(**fields)
    return views


def _pick_view(family, views: Mapping[str, HfView], view: str | None) -> tuple[str, HfView]:
    if not views:
        raise ValueError(f"Family {_family(family)[0]!r} has no Hugging Face checkpoint format (its file declares no "
                         f"HF_NAME_MAP or HF_VIEWS), so its params cannot be read from or written to one.")
    if view is None:
        if len(views) == 1:
            return next(iter(views.items()))
        raise ValueError(f"Family {_family(family)[0]!r} is published as several Hugging Face checkpoints "
                         f"{sorted(views)}; pass view= one of them.")
    if view not in views:
        raise ValueError(f"Family {_family(family)[0]!r} has no Hugging Face view {view!r}; its views: "
                         f"{sorted(views)}.")
    return view, views[view]


def _entries(view: HfView, shapes: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, Entry]:
    """The view's parsed entries; with `shapes`, without the conditional ones whose param the model lacks."""
    return {path: parse_entry(path, value) for path, value in view.name_map.items()
            if shapes is None or path in shapes or not path.startswith(tuple(view.conditional or ()))}


# ------------------------------------------------------------------------------------- our params' shapes


def _init_args(mod, config) -> tuple[tuple, dict]:
    """Model-init inputs from the family's own pretraining objective (an encoder-decoder needs decoder inputs);
    params do not depend on the sequence length."""
    from llm_jax import objectives  # why lazy: objectives sit above models; only init needs them

    if not hasattr(mod, "DEFAULT_OBJECTIVE"):  # a bare module of name maps (tests): token ids are enough
        return (jnp.zeros((1, 1), jnp.int32),), {}
    objective = objectives.shape_only_objective(mod.DEFAULT_OBJECTIVE, config.vocab_size)
    return objective.init_inputs(objective.dummy_batch(1, 8))


def _model_shapes(family, config) -> dict[str, tuple[int, ...]]:
    _, mod = _family(family)
    model = mod.PRETRAINING_MODEL(config.validate()) if not isinstance(family, str) else build(family, config)
    args, kwargs = _init_args(mod, config)
    abstract = nn.meta.unbox(jax.eval_shape(lambda k: model.init(k, *args, **kwargs), jax.random.key(0)))["params"]
    return {path: tuple(s.shape) for path, s in traverse_util.flatten_dict(abstract, sep="/").items()}


def check_name_maps(family, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Checks the family's name map(s) against our params' shapes, so that a model change the map missed fails
    here with the names rather than as a confusing shape error later.

    Every param must be mapped by some view, and every param under a view's `subtree_prefix` by that view; every
    entry must name a param, a known layout that takes its shape, and no more placeholders than it has leading
    axes; within a view no HF name may be written twice, and a fused tensor must have all of its parts.

    Raises:
      RuntimeError: the family file is out of date with its model (the message names the entries).
    """
    name, _ = _family(family)
    views = hf_views(family)
    if not views:
        return  # nothing to check: the family has no Hugging Face checkpoint format
    mapped: set[str] = set()
    for view_name, view in views.items():
        where = f"HF name map of family {name!r}" + (f", view {view_name!r}," if view_name != DEFAULT_VIEW else "")
        try:
            entries = _entries(view, shapes)
        except ValueError as e:
            raise RuntimeError(f"{where}: {e}") from e
        stale = sorted(set(entries) - set(shapes))
        uncovered = sorted(p for p in shapes if p.startswith(view.subtree_prefix) and p not in entries)
        if stale or uncovered:
            raise RuntimeError(f"{where} is out of date with its model: params without an entry {uncovered}, "
                               f"entries without a param {stale}. Update the map in the family file.")
        writers: dict[str, list[Entry]] = {}
        for path, entry in entries.items():
            shape = shapes[path]
            if len(entry.placeholders) > len(shape):
                raise RuntimeError(f"{where} gives {path} (shape {shape}) the index placeholders "
                                   f"{list(entry.placeholders)} in {entry.hf_name}, but it has only {len(shape)} "
                                   f"axes to index.")
            try:
                entry.hf_shape(shape)
            except ValueError as e:
                raise RuntimeError(f"{where}, entry {path}: {e}") from e
            writers.setdefault(entry.hf_name, []).append(entry)
        for hf_name, group in writers.items():
            _check_parts(where, hf_name, group)
        mapped.update(entries)
    unmapped = sorted(set(shapes) - mapped)
    if unmapped:
        raise RuntimeError(f"HF name map of family {name!r} is out of date with its model: params without an entry "
                           f"{unmapped}. Update the map in the family file.")


def _check_parts(where: str, hf_name: str, group: list[Entry]) -> None:
    """One HF name is written by one entry, or by the n parts of a fused tensor, each exactly once."""
    if len(group) == 1 and group[0].part is None:
        return
    paths = [e.path for e in group]
    if any(e.part is None for e in group):
        raise RuntimeError(f"{where} maps {paths} all to {hf_name}; one HF tensor takes one param, or several "
                           f"marked as parts (hf_name, kind, (i, n)).")
    counts = {e.part[1] for e in group}
    if len(counts) != 1:
        raise RuntimeError(f"{where} cuts {hf_name} into different numbers of parts {sorted(counts)} ({paths}); "
                           f"give every part the same n.")
    n = counts.pop()
    have = sorted(e.part[0] for e in group)
    if have != list(range(n)):
        absent = sorted(set(range(n)) - set(have))
        doubled = sorted({i for i in have if have.count(i) > 1})
        raise RuntimeError(f"{where} maps parts {have} of the {n} parts of the fused tensor {hf_name} (missing "
                           f"{absent}, repeated {doubled}), so it cannot be written whole; map every part exactly "
                           f"once as our_path: ({hf_name!r}, kind, (i, {n})).")


def param_shapes(family, config) -> dict[str, tuple[int, ...]]:
    """Our param path → shape, from `jax.eval_shape` of the model's init (nothing is computed).

    Also checks the family's name map(s) against these shapes (`check_name_maps`).
    """
    shapes = _model_shapes(family, config)
    check_name_maps(family, shapes)
    return shapes


def fresh_params(family, config, paths: list[str], seed: int) -> dict[str, np.ndarray]:
    """Our initialisation of just `paths`, deterministic in `seed`.

    Only the requested leaves leave the jitted init, so XLA drops the work (and memory) of all the others.
    """
    _, mod = _family(family)
    model = mod.PRETRAINING_MODEL(config.validate()) if not isinstance(family, str) else build(family, config)
    args, kwargs = _init_args(mod, config)

    def init(key):
        params = nn.meta.unbox(model.init(key, *args, **kwargs))["params"]
        flat = traverse_util.flatten_dict(params, sep="/")
        return {p: flat[p] for p in paths}

    return {p: np.asarray(v, dtype=np.float32) for p, v in jax.jit(init)(jax.random.key(seed)).items()}


# ----------------------------------------------------------------------------------- Hugging Face → ours


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """What happened to each tensor when a checkpoint was read.

    Attributes:
      initialized: our param paths the checkpoint lacked, initialised freshly (e.g. the MLM / NSP heads of a
        bare `BertModel` checkpoint, or the generator when only ELECTRA's discriminator view is read). Like
        `transformers`' "newly initialized" weights: train before use.
      unexpected: checkpoint tensors that map to nothing in our model (e.g. a fine-tuned classifier head).
      ignored: checkpoint tensors skipped by design: tied copies and buffers.

    With several views read at once, the tensor names carry the view as a prefix (`generator/…`).
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

    A bare base-model checkpoint stores `embeddings.…` where the full model stores `bert.embeddings.…`; and where
    our names carry no prefix (T5's are `T5ForConditionalGeneration`'s), a checkpoint of a model that keeps the trunk
    under the prefix (`T5ForSequenceClassification`, `T5ForQuestionAnswering`: `transformer.encoder.…`) is read
    with it.
    """
    prefix = f"{base_prefix}." if base_prefix else None

    def resolve(name: str) -> str | None:
        if name in tensors:
            return name
        if prefix and name.startswith(prefix) and name[len(prefix):] in tensors:
            return name[len(prefix):]
        if prefix and not name.startswith(prefix) and prefix + name in tensors:
            return prefix + name
        return None

    return resolve


@dataclasses.dataclass
class _ViewRead:
    flat: dict[str, np.ndarray]
    missing: list[str]
    unexpected: list[str]
    ignored: list[str]


def _read_view(family_name: str, view: HfView, shapes, tensors: Mapping[str, np.ndarray]) -> _ViewRead:
    """The params one checkpoint provides for one view, and what it lacked, had extra or skipped."""
    tensors = _legacy_renamed(tensors)
    resolve = _resolver(tensors, view.base_prefix)

    # A checkpoint that keeps only the tied copy (e.g. `cls.predictions.decoder.bias` of old BERT exports) still
    # provides the source tensor; when both are there they must agree, or our tied model would compute something
    # other than the checkpoint's.
    # A tied name that this config maps to a param of its own (T5 v1.1's untied `lm_head`, absent from v1.0 configs:
    # `HF_CONDITIONAL_PARAMS`) is read as that param; a checkpoint without it gets the source's values, which is what
    # transformers' tying does.
    entries = _entries(view, shapes)
    own = {e.hf_name for e in entries.values() if not e.placeholders}
    tied_copies: list[str] = []
    for copy_name, source_name in view.tied_weights.items():
        copy_key, source_key = resolve(copy_name), resolve(source_name)
        if copy_name in own:
            if copy_key is None and source_key is not None:
                tensors[copy_name] = tensors[source_key]
            continue
        if copy_key is None:
            continue
        tied_copies.append(copy_key)
        if source_key is None:
            tensors[source_name] = tensors[copy_key]
        elif not np.array_equal(tensors[copy_key], tensors[source_key]):
            diff = float(np.max(np.abs(tensors[copy_key] - tensors[source_key])))
            raise ValueError(
                f"The checkpoint's {copy_key} differs from {source_key} (max |diff| = {diff:.3g}), but our "
                f"{family_name} model ties them as transformers does with tie_word_embeddings=true; loading would "
                f"silently change the outputs. Use a checkpoint with tied weights.")

    flat: dict[str, np.ndarray] = {}
    missing: list[str] = []
    used: set[str] = set()
    for path, entry in entries.items():
        array = _read_entry(entry, shapes[path], tensors, resolve, used)
        if array is None:
            missing.append(path)
        else:
            flat[path] = array

    ignored_patterns = [re.compile(p) for p in view.ignored]
    rest = sorted(set(tensors) - used - set(tied_copies))
    buffers = [n for n in rest if any(p.search(n) for p in ignored_patterns)]
    unexpected = [n for n in rest if n not in buffers]
    return _ViewRead(flat, missing, unexpected, sorted(buffers + tied_copies))


def _read_entry(entry: Entry, shape, tensors, resolve, used: set[str]) -> np.ndarray | None:
    """Our param for one entry (stacked over its placeholders), or None when the checkpoint has none of it."""
    names = entry.names(shape)
    keys = [resolve(n) for _, n in names]
    absent = [n for (_, n), k in zip(names, keys) if k is None]
    if len(absent) == len(names):
        return None
    if absent:
        what = "layers" if entry.placeholders == ("L",) else f"{'/'.join(entry.placeholders)} indices"
        raise ValueError(f"The checkpoint has only {len(names) - len(absent)} of the {len(names)} {what} of "
                         f"{entry.hf_name} (missing e.g. {absent[:3]}); config.json's layer count (e.g. "
                         f"num_hidden_layers) does not match the weights.")
    n_index = len(entry.placeholders)
    layer_shape = shape[n_index:]
    want = entry.hf_shape(shape)
    arrays = []
    for key in keys:
        array = tensors[key]
        if tuple(array.shape) != want:
            part = f", part {entry.part[0]} of {entry.part[1]}" if entry.part else ""
            raise ValueError(f"Tensor {key} has shape {tuple(array.shape)}, but config.json implies {want} "
                             f"(our {entry.path}, layout {entry.kind!r}{part}); the weights and config.json disagree.")
        if entry.part is not None:
            array = layouts.slice_part(entry.layout, entry.kind, array, entry.part)
        arrays.append(entry.layout.to_ours(array, layer_shape).astype(np.float32))
    used.update(keys)
    if not n_index:
        return arrays[0]
    return np.stack(arrays).reshape(shape)


def _finish(family, config, shapes, flat: dict[str, np.ndarray], missing: list[str], seed: int) -> dict:
    if missing:
        flat.update(fresh_params(family, config, missing, seed))
    # Our tree's order, so that the result has exactly the structure `model.init` gives.
    return traverse_util.unflatten_dict({p: flat[p] for p in shapes}, sep="/")


def _required(view: HfView, paths: list[str]) -> list[str]:
    optional = tuple(view.init_if_missing)
    return [p for p in paths if not p.startswith(optional)] if optional else list(paths)


def from_hf_state_dict(family, config, tensors: Mapping[str, np.ndarray], *, seed: int = 0,
                       view: str | None = None) -> tuple[dict, LoadReport]:
    """Our params (nested dict of float32 numpy arrays) from a Hugging Face state dict.

    Args:
      family: our family name (`bert`, `roberta`, ...), or a family module.
      config: the family's Config, matching the checkpoint.
      tensors: Hugging Face name → array (see `weights_io.read_weights`).
      seed: seeds the fresh initialisation of params the checkpoint lacks.
      view: which of the family's checkpoints `tensors` is (`HF_VIEWS`); optional for a family with one.
        Params outside that view's name map are initialised freshly and reported.

    Returns:
      `(params, report)`; `model.apply({'params': params}, ...)` runs the model.

    Raises:
      ValueError: a tensor with the wrong shape, a missing trunk tensor, or a tied copy that differs from its
        source (each message names the tensors); an unknown view.
    """
    name, _ = _family(family)
    _, chosen = _pick_view(family, hf_views(family), view)
    shapes = param_shapes(family, config)
    read = _read_view(name, chosen, shapes, tensors)
    required = _required(chosen, read.missing)
    if required:
        names = [chosen.name_map[p][0] for p in required]
        raise ValueError(f"The checkpoint lacks {len(required)} tensor(s) our {name} model cannot do without, "
                         f"e.g. {names[:5]}. Is it a {name} checkpoint (config.json model_type), and complete?")
    outside = [p for p in shapes if p not in chosen.name_map]  # other views' params (empty with one view)
    missing = read.missing + outside
    params = _finish(family, config, shapes, read.flat, missing, seed)
    report = LoadReport(initialized=tuple(missing), unexpected=tuple(read.unexpected), ignored=tuple(read.ignored))
    return params, report


def from_hf_views(family, config, tensors_by_view: Mapping[str, Mapping[str, np.ndarray]], *,
                  seed: int = 0) -> tuple[dict, LoadReport]:
    """Our params from several of a family's checkpoints at once (ELECTRA's generator and discriminator).

    A param that several views hold (embeddings the two share) must be identical in each; a param none holds is
    initialised freshly if every view that maps it allows that (`init_if_missing`), else it is an error.

    Args:
      family: our family name, or a family module.
      config: the family's Config.
      tensors_by_view: view name → that checkpoint's state dict.
      seed: seeds the fresh initialisation of params no checkpoint has.

    Raises:
      ValueError: an unknown view, views that disagree on a shared param, or a required param none of them has.
    """
    name, _ = _family(family)
    views = hf_views(family)
    for view_name in tensors_by_view:
        _pick_view(family, views, view_name)
    shapes = param_shapes(family, config)
    flat: dict[str, np.ndarray] = {}
    source: dict[str, str] = {}
    unexpected, ignored = [], []
    for view_name, tensors in tensors_by_view.items():
        read = _read_view(name, views[view_name], shapes, tensors)
        for path, array in read.flat.items():
            if path in flat and not np.array_equal(flat[path], array):
                diff = float(np.max(np.abs(flat[path] - array)))
                raise ValueError(f"Our {path} is in both the {source[path]!r} and the {view_name!r} checkpoint, with "
                                 f"different values (max |diff| = {diff:.3g}); our {name} model shares it. Use "
                                 f"checkpoints saved together, or load one view.")
            flat.setdefault(path, array)
            source.setdefault(path, view_name)
        unexpected += [f"{view_name}/{n}" for n in read.unexpected]
        ignored += [f"{view_name}/{n}" for n in read.ignored]
    missing = [p for p in shapes if p not in flat]
    mapping_views = {p: [views[v] for v in tensors_by_view if p in views[v].name_map] for p in missing}
    required = [p for p in missing if not mapping_views[p] or any(_required(v, [p]) for v in mapping_views[p])]
    if required:
        raise ValueError(f"The {sorted(tensors_by_view)} checkpoint(s) lack {len(required)} param(s) our {name} "
                         f"model cannot do without, e.g. {required[:5]}. Are they complete {name} checkpoints?")
    params = _finish(family, config, shapes, flat, missing, seed)
    return params, LoadReport(initialized=tuple(missing), unexpected=tuple(unexpected), ignored=tuple(ignored))


# ----------------------------------------------------------------------------------- ours → Hugging Face


def _flat_params(params) -> dict[str, np.ndarray]:
    params = nn.meta.unbox(params)
    # A whole variables dict (`{'params': …}`) is accepted as well as the params inside it.
    if isinstance(params, Mapping) and set(params) == {"params"}:
        params = params["params"]
    flat = traverse_util.flatten_dict(params, sep="/")
    return {path: np.asarray(jax.device_get(v)) for path, v in flat.items()}


def checked_flat_params(family, config, params) -> dict[str, np.ndarray]:
    """Our params flattened (`path → array`) after checking that they fit `config`.

    Raises:
      ValueError: params that do not match `config` (missing, extra or misshapen; all named).
    """
    name, _ = _family(family)
    shapes = param_shapes(family, config)
    flat = _flat_params(params)
    missing, extra = sorted(set(shapes) - set(flat)), sorted(set(flat) - set(shapes))
    misshapen = [f"{p}: {tuple(flat[p].shape)} ≠ {shapes[p]}" for p in sorted(set(flat) & set(shapes))
                 if tuple(flat[p].shape) != shapes[p]]
    if missing or extra or misshapen:
        raise ValueError(f"The params do not fit this {name} config: missing {missing}, unexpected {extra}, "
                         f"wrong shape {misshapen}. Pass the config the params were made with.")
    return flat


def to_hf_state_dict(family, config, params, *, view: str | None = None) -> dict[str, np.ndarray]:
    """Our params as a Hugging Face state dict (float32, C-contiguous, without tied copies, as `save_pretrained`
    writes).

    Args:
      family: our family name, or a family module.
      config: the Config the params were made with.
      params: the params pytree (boxed or not), or `{'params': params}`.
      view: which of the family's checkpoints to write (`HF_VIEWS`); optional for a family with one.

    Raises:
      ValueError: params that do not match `config` (missing, extra or misshapen; all named), checked before
        anything is converted; an unknown view.
      RuntimeError: a name map out of date with the model, e.g. a fused tensor with a part unmapped.
    """
    _, chosen = _pick_view(family, hf_views(family), view)
    flat = checked_flat_params(family, config, params)
    out: dict[str, np.ndarray] = {}
    fused: dict[str, dict[int, np.ndarray]] = {}
    fused_entry: dict[str, Entry] = {}
    for path, entry in _entries(chosen, flat).items():
        array = flat[path].astype(np.float32)
        for index, name in entry.names(array.shape):
            layer = entry.layout.to_hf(array[index] if index else array)
            if entry.part is None:
                out[name] = layer
            else:
                fused.setdefault(name, {})[entry.part[0]] = layer
                fused_entry[name] = entry
    for name, parts in fused.items():
        # `check_name_maps` (in param_shapes above) has proven every part is mapped once, so parts[0..n-1] exist.
        entry = fused_entry[name]
        out[name] = layouts.join_parts(entry.layout, entry.kind, [parts[i] for i in range(entry.part[1])])
    # Why contiguous: transposes are strided views, and `safetensors.numpy` writes an array's raw buffer, so a
    # view would be saved scrambled, silently.
    return {name: np.ascontiguousarray(a) for name, a in out.items()}


__all__ = ["DEFAULT_VIEW", "KINDS", "LAYER", "Entry", "LoadReport", "check_name_maps", "checked_flat_params",
           "fresh_params", "from_hf_state_dict", "from_hf_views", "hf_shape", "hf_views", "param_shapes",
           "parse_entry", "to_hf", "to_hf_state_dict", "to_ours"]
