"""Hugging Face model directories in and out: `load_hf` and `save_hf`.

A directory is what `transformers`' `save_pretrained` writes and the Hub serves: `config.json` (whose
`model_type` and `architectures` pick our family and which of its checkpoints this is) plus the weights
(`weights_io`), optionally with the tokenizer files (`llm_jax.interop.tokenizer`). Names and layouts come from the
family file's name map(s) (`state_dict`), so this module knows nothing about any one family.

A family published as several checkpoints (`HF_VIEWS`: ELECTRA's generator and discriminator) is written as one
sub-directory per view (`out/generator`, `out/discriminator`), each a complete Hugging Face directory; `load_hf`
reads one of them, or the parent directory (all views, merged into one params tree).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import tempfile
from collections.abc import Mapping
from typing import Any

import tokenizers

from llm_jax.interop import state_dict, weights_io
from llm_jax.interop.state_dict import LoadReport
from llm_jax.interop.tokenizer import save_hf_tokenizer
from llm_jax.models import FAMILIES, family_module

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
_REEXPORT_HINT = "re-download it, or re-export the checkpoint (transformers' `save_pretrained`, `llm-jax convert --to-hf`)"


@dataclasses.dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint read by `load_hf_with_report`.

    Attributes:
      family: our family name (`bert`, `roberta`, ...).
      config: the family's Config.
      params: nested dict of float32 numpy arrays, for `model.apply({'params': params}, ...)`.
      report: which params were initialised freshly and which tensors were unexpected or ignored.
      views: the family's checkpoints (`HF_VIEWS` names, `state_dict.DEFAULT_VIEW` for a family with one) that
        were read.
    """

    family: str
    config: Any
    params: dict
    report: LoadReport
    views: tuple[str, ...] = (state_dict.DEFAULT_VIEW,)


def _directory(path: str | os.PathLike) -> pathlib.Path:
    directory = pathlib.Path(path).expanduser()
    if not directory.exists():
        raise FileNotFoundError(f"Hugging Face checkpoint directory {directory} does not exist; pass the folder that "
                                f"holds config.json and model.safetensors (e.g. the path returned by "
                                f"`huggingface_hub.snapshot_download`).")
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory} is a file; pass the folder that holds it together with config.json "
                                 f"({directory.parent}).")
    return directory


# ------------------------------------------------------------------------------------- family and view


def _accepted(view) -> tuple[str, ...]:
    return tuple(a for a in (view.architecture, *view.architectures) if a)


def _known_checkpoints() -> str:
    """`bert (BertForPreTraining), electra (ElectraForPreTraining | ElectraForMaskedLM), …` for error messages."""
    parts = []
    for family, mod in FAMILIES.items():
        if hasattr(mod, "HF_MODEL_TYPE"):
            archs = [" | ".join(_accepted(v)) for v in state_dict.hf_views(family).values()]
            parts.append(f"{mod.HF_MODEL_TYPE} ({' | '.join(a for a in archs if a)})")
    return ", ".join(sorted(parts))


def family_for_hf_config(hf: Mapping[str, Any], *, view: str | None = None) -> tuple[str, str]:
    """`(family, view)` for a `config.json` dict, from its `model_type` and `architectures`.

    `model_type` picks the families that read it; `architectures` then picks the view (ELECTRA: `electra` +
    `ElectraForMaskedLM` is the generator) or, when families share a model type, the family. A checkpoint whose
    architectures no view lists (a task variant such as `BertForSequenceClassification`, or a bare `BertModel`)
    is read with the family's first view, if only one family reads its model type.

    Args:
      hf: the parsed `config.json`.
      view: the view wanted; an error if `architectures` says the checkpoint is another one.

    Raises:
      ValueError: an unknown model type, or one several families read that `architectures` does not settle, or a
        `view` the family lacks or the checkpoint is not (each message lists the known ones).
    """
    model_type = hf.get("model_type")
    archs = list(hf.get("architectures") or [])
    candidates = [(family, name, v) for family, mod in FAMILIES.items()
                  if getattr(mod, "HF_MODEL_TYPE", None) == model_type
                  for name, v in state_dict.hf_views(family).items()]
    if not candidates:
        known = sorted(m.HF_MODEL_TYPE for m in FAMILIES.values() if hasattr(m, "HF_MODEL_TYPE"))
        raise ValueError(f"config.json has model_type {model_type!r}, which no llm_jax family reads; supported model "
                         f"types: {known} (architectures: {_known_checkpoints()}). Pick a checkpoint of one of those "
                         f"architectures.")
    matched = [(f, n) for f, n, v in candidates if set(archs) & set(_accepted(v))]
    families = list(dict.fromkeys(f for f, _, _ in candidates))
    if len(matched) > 1:
        raise ValueError(f"config.json (model_type {model_type!r}, architectures {archs}) fits several llm_jax "
                         f"checkpoints {matched}; their family files must list distinct architectures.")
    if view is not None:
        if matched and matched[0][1] != view:
            raise ValueError(f"config.json says architectures {archs}: the {matched[0][1]!r} checkpoint of "
                             f"{matched[0][0]!r}, not the {view!r} one asked for; pass view={matched[0][1]!r} or the "
                             f"other checkpoint.")
        with_view = [(f, n) for f, n, _ in candidates if n == view]
        if len(with_view) == 1:
            return with_view[0]
        if not with_view:
            views = sorted({n for _, n, _ in candidates})
            raise ValueError(f"No llm_jax family reading model_type {model_type!r} has the view {view!r}; views: "
                             f"{views}.")
    if matched:
        return matched[0]
    if len(families) == 1:
        first = next(n for f, n, _ in candidates if f == families[0])
        return families[0], first
    raise ValueError(f"config.json has model_type {model_type!r} with architectures {archs}, which the families "
                     f"{families} share and none of them lists; known: {_known_checkpoints()}. Set "
                     f"`architectures` in config.json to one of those.")


def family_for_model_type(model_type: str) -> str:
    """Our family name for a `config.json` `model_type` (each family module declares its `HF_MODEL_TYPE`)."""
    return family_for_hf_config({"model_type": model_type})[0]


# ------------------------------------------------------------------------------------------- config.json


def _read_config_file(config_path: pathlib.Path) -> dict[str, Any]:
    try:
        hf = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise weights_io.UnreadableFileError(f"{config_path} is not valid JSON ({weights_io.first_line(e)}); "
                                             f"{_REEXPORT_HINT}.") from e
    except OSError as e:  # permissions, a directory under that name, an unmounted path
        raise weights_io.UnreadableFileError(f"{config_path} cannot be read ({e.strerror or e}); check the path and "
                                             f"its permissions.") from e
    if not isinstance(hf, dict) or "model_type" not in hf:
        raise ValueError(f"{config_path} has no 'model_type', so the architecture is unknown; add e.g. "
                         f"\"model_type\": \"bert\" matching the checkpoint.")
    return hf


def _config_from_hf(family: str, view_name: str, hf: dict[str, Any], config_path: pathlib.Path):
    view = state_dict.hf_views(family)[view_name]
    convert = view.config_from_hf or family_module(family).config_from_hf
    try:
        return convert(hf)
    except KeyError as e:
        raise ValueError(f"{config_path} lacks the field {e.args[0]!r}, which a {hf['model_type']} config needs; "
                         f"{_REEXPORT_HINT}.") from e
    except (TypeError, AttributeError) as e:  # e.g. "hidden_size": null, or a list where a number belongs
        raise ValueError(f"{config_path} has a field of the wrong type ({weights_io.first_line(e)}); "
                         f"{_REEXPORT_HINT}.") from e
    except ValueError as e:
        raise ValueError(f"{config_path}: {e}") from e


def view_directories(path: str | os.PathLike) -> dict[str, pathlib.Path]:
    """The per-view sub-directories (`out/generator`, `out/discriminator`) that `save_hf` writes for a family with
    several views, by name; empty when `path` is not such a parent directory (it has a config.json, or no
    sub-directory with one)."""
    directory = pathlib.Path(path).expanduser()
    if not directory.is_dir() or (directory / CONFIG_FILE).exists():
        return {}
    return {d.name: d for d in sorted(directory.iterdir()) if d.is_dir() and (d / CONFIG_FILE).is_file()}


@dataclasses.dataclass(frozen=True)
class _Source:
    """What a directory holds: the family, its Config, and each view's directory."""

    family: str
    config: Any
    views: dict[str, pathlib.Path]


def _source(path: str | os.PathLike, view: str | None) -> _Source:
    directory = _directory(path)
    config_path = directory / CONFIG_FILE
    if config_path.is_file():
        hf = _read_config_file(config_path)
        family, view_name = family_for_hf_config(hf, view=view)
        return _Source(family, _config_from_hf(family, view_name, hf, config_path), {view_name: directory})
    subdirs = view_directories(directory)
    if view is not None and view in subdirs:
        return _source(subdirs[view], view)
    if not subdirs:
        raise FileNotFoundError(f"{directory} has no {CONFIG_FILE}; a Hugging Face model directory needs one next to "
                                f"the weights. Download it with the weights (or write it with "
                                f"`model.config.save_pretrained(dir)`).")
    if view is not None:
        raise FileNotFoundError(f"{directory} has no {view!r} checkpoint; it holds {sorted(subdirs)}.")
    return _merged_source(directory, subdirs)


def _merged_source(directory: pathlib.Path, subdirs: dict[str, pathlib.Path]) -> _Source:
    """One family's several checkpoints side by side, as `save_hf` writes them."""
    read: dict[str, tuple[pathlib.Path, dict[str, Any]]] = {}
    families = set()
    for name, subdir in subdirs.items():
        hf = _read_config_file(subdir / CONFIG_FILE)
        # The sub-directory's name settles the view when config.json's architectures do not (a bare base model).
        family, _ = family_for_hf_config(hf)
        hint = name if name in state_dict.hf_views(family) else None
        family, view_name = family_for_hf_config(hf, view=hint)
        if view_name in read:
            raise ValueError(f"{directory} holds two {family} {view_name!r} checkpoints ({read[view_name][0].name}, "
                             f"{name}); keep one, or load one with view=.")
        read[view_name] = (subdir, hf)
        families.add(family)
    if len(families) != 1:
        raise ValueError(f"{directory} holds checkpoints of several families {sorted(families)}; load one "
                         f"sub-directory at a time.")
    family = families.pop()
    mod = family_module(family)
    if hasattr(mod, "config_from_hf_views"):
        try:
            config = mod.config_from_hf_views({v: hf for v, (_, hf) in read.items()})
        except KeyError as e:
            raise ValueError(f"A config.json in {directory} lacks the field {e.args[0]!r}, which a {family} config "
                             f"needs; {_REEXPORT_HINT}.") from e
    else:
        configs = {v: _config_from_hf(family, v, hf, d / CONFIG_FILE) for v, (d, hf) in read.items()}
        config = next(iter(configs.values()))
        if any(c != config for c in configs.values()):
            raise ValueError(f"The {sorted(configs)} checkpoints in {directory} describe different {family} models "
                             f"and the family defines no config_from_hf_views to combine them; load one with view=.")
    return _Source(family, config, {v: d for v, (d, _) in read.items()})


def read_hf_config(path: str | os.PathLike, *, view: str | None = None) -> tuple[str, Any]:
    """`(family, config)` from the `config.json` of a Hugging Face model directory (or of each view's
    sub-directory, for a family published as several checkpoints).

    Args:
      path: the directory.
      view: for a multi-checkpoint family, the one to read (default: `architectures` decides, or all of them).

    Raises:
      FileNotFoundError: no such directory, or no config.json in it.
      ValueError: unreadable JSON, no or an unknown `model_type`, a missing or ill-typed field (named), or settings
        our family cannot reproduce.
    """
    source = _source(path, view)
    return source.family, source.config


# --------------------------------------------------------------------------------------------- loading


def load_hf_with_report(path: str | os.PathLike, *, seed: int = 0, view: str | None = None) -> LoadedCheckpoint:
    """Reads a Hugging Face model directory into our family, Config and params, reporting what did not map.

    Params the checkpoint lacks but the family allows to be absent (the pretraining heads of a bare
    `BertModel` checkpoint) are initialised with `seed`; unexpected tensors are skipped. Both are logged as
    warnings and listed in the report.

    Args:
      path: the directory (`config.json` + `model.safetensors` or `pytorch_model.bin`, possibly sharded), or the
        parent of one sub-directory per view that `save_hf` writes for a family with several checkpoints.
      seed: seeds the initialisation of missing params, so a load is deterministic.
      view: for a family with several checkpoints, the one to read (see `family_for_hf_config`); params of the
        other views are then initialised freshly and reported.

    Raises:
      FileNotFoundError, ValueError: a missing or unreadable file (named, with what to do), or weights that do
        not fit config.json.
    """
    source = _source(path, view)
    tensors = {v: weights_io.read_weights(d) for v, d in source.views.items()}
    if len(tensors) == 1:
        (view_name, one), = tensors.items()
        params, report = state_dict.from_hf_state_dict(source.family, source.config, one, seed=seed, view=view_name)
    else:
        params, report = state_dict.from_hf_views(source.family, source.config, tensors, seed=seed)
    where = pathlib.Path(path).expanduser()
    if report.initialized:
        log.warning("%s has no weights for %s of our %s model; they were newly initialised (seed %d). Train them "
                    "before using their outputs.", where, list(report.initialized), source.family, seed)
    if report.unexpected:
        log.warning("%s holds tensors our %s model does not use, skipped: %s", where, source.family,
                    list(report.unexpected))
    return LoadedCheckpoint(family=source.family, config=source.config, params=params, report=report,
                            views=tuple(source.views))


def load_hf(path: str | os.PathLike, *, seed: int = 0, view: str | None = None) -> tuple[str, Any, dict]:
    """Reads a Hugging Face model directory: `(family, config, params)`.

    Loading safetensors needs no torch. See `load_hf_with_report` for how missing and unexpected tensors
    are handled, and for `view`.

    Example:
      family, config, params = load_hf(path)
      out = llm_jax.models.build(family, config).apply({'params': params}, tokens_BT, mask_BT=mask_BT)
    """
    loaded = load_hf_with_report(path, seed=seed, view=view)
    return loaded.family, loaded.config, loaded.params


# --------------------------------------------------------------------------------------------- writing


def _write_text(text: str, path: pathlib.Path) -> None:
    """Atomic write: a crash leaves either the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def save_hf(family: str, config, params, path: str | os.PathLike, *,
            tokenizer: tokenizers.Tokenizer | None = None) -> pathlib.Path:
    """Writes our params as Hugging Face model directory(ies) that `transformers` loads without missing keys.

    Writes `config.json` and `model.safetensors` (float32; tied copies left out as `save_pretrained` does),
    and `tokenizer.json` when a tokenizer is given. Existing files of those names are replaced. A family published
    as several checkpoints (`HF_VIEWS`) gets one such directory per view, `path/<view>`.

    Args:
      family: our family name.
      config: the family's Config the params were made with.
      params: params pytree (boxed or not; numpy arrays or fully addressable jax arrays), or
        `{'params': params}`.
      path: target directory, created if absent.
      tokenizer: optional `tokenizers.Tokenizer` saved alongside (into each view's directory).

    Returns:
      The directory (the parent of the views' directories, for several views).

    Raises:
      ValueError: params that do not fit the config, or a tokenizer with ids past the vocabulary; nothing is
        written then.
    """
    config = config.validate()
    views = state_dict.hf_views(family)
    if not views:
        raise ValueError(f"Family {family!r} has no Hugging Face checkpoint format (no HF_NAME_MAP or HF_VIEWS in its "
                         "family file), so there is nothing transformers could load; keep our model directory.")
    # Everything is converted (and so validated) before anything is written.
    tensors = {name: state_dict.to_hf_state_dict(family, config, params, view=name) for name in views}
    hf_configs = {}
    for name, view in views.items():
        if view.config_to_hf is None:
            raise ValueError(f"Family {family!r} declares no config_to_hf for its {name!r} checkpoint, so its "
                             f"config.json cannot be written; add it to the family file.")
        # `dtype` is what transformers 5 reads (`torch_dtype` before it): the weights are float32.
        hf_configs[name] = {**view.config_to_hf(config), "dtype": "float32"}
    if tokenizer is not None and tokenizer.get_vocab_size() > config.vocab_size:
        raise ValueError(f"The tokenizer has {tokenizer.get_vocab_size()} tokens but the model's vocab_size is "
                         f"{config.vocab_size}: its largest ids have no embedding. Save the tokenizer the model was "
                         f"trained with.")
    root = pathlib.Path(path).expanduser()
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"{root} is a file; save_hf writes a directory. Pick another path.")
    for name in views:
        directory = root if len(views) == 1 else root / name
        directory.mkdir(parents=True, exist_ok=True)
        # A stale shard index or .bin would not be loaded over model.safetensors by transformers, but would
        # confuse anyone reading the folder: say so rather than delete a user's files.
        stale = [n for n in weights_io.WEIGHT_FILES[1:] if (directory / n).exists()]
        if stale:
            log.warning("%s also holds %s from an earlier checkpoint; transformers reads model.safetensors first, "
                        "but remove them to avoid confusion.", directory, stale)
        weights_io.write_safetensors(tensors[name], directory / weights_io.SAFETENSORS_FILE)
        _write_text(json.dumps(hf_configs[name], indent=2, sort_keys=True) + "\n", directory / CONFIG_FILE)
        if tokenizer is not None:
            # tokenizer.json plus tokenizer_config.json (model_max_length, the special-token roles, the class
            # transformers loads it with) and special_tokens_map.json: the directory loads as the source did.
            spec = family_module(family).TOKENIZER
            save_hf_tokenizer(tokenizer, directory, model_max_length=config.max_seq_len, tokenizer_class=spec.hf_class,
                              roles=spec.roles)
    return root


__all__ = ["CONFIG_FILE", "LoadedCheckpoint", "family_for_hf_config", "family_for_model_type", "load_hf",
           "load_hf_with_report", "read_hf_config", "save_hf", "view_directories"]
