"""Hugging Face model directories in and out: `load_hf` and `save_hf`.

A directory is what `transformers`' `save_pretrained` writes and the Hub serves: `config.json` (whose
`model_type` picks our family) plus the weights (`weights_io`), optionally with the tokenizer files
(`llm_jax.interop.tokenizer`). Names and layouts come from the family file's name map (`state_dict`), so this
module knows nothing about any one family.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import tempfile
from typing import Any

import tokenizers

from llm_jax.interop import state_dict, weights_io
from llm_jax.interop.state_dict import LoadReport
from llm_jax.interop.tokenizer import TOKENIZER_FILE
from llm_jax.models import FAMILIES, family_module

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"


@dataclasses.dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint read by `load_hf_with_report`.

    Attributes:
      family: our family name (`bert`, `roberta`, ...).
      config: the family's Config.
      params: nested dict of float32 numpy arrays, for `model.apply({'params': params}, ...)`.
      report: which params were initialised freshly and which tensors were unexpected or ignored.
    """

    family: str
    config: Any
    params: dict
    report: LoadReport


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


def family_for_model_type(model_type: str) -> str:
    """Our family name for a `config.json` `model_type` (each family module declares its `HF_MODEL_TYPE`)."""
    for family, mod in FAMILIES.items():
        if getattr(mod, "HF_MODEL_TYPE", None) == model_type:
            return family
    known = sorted(m.HF_MODEL_TYPE for m in FAMILIES.values() if hasattr(m, "HF_MODEL_TYPE"))
    raise ValueError(f"config.json has model_type {model_type!r}, which no llm_jax family reads; supported model "
                     f"types: {known}. Pick a checkpoint of one of those architectures.")


def read_hf_config(path: str | os.PathLike) -> tuple[str, Any]:
    """`(family, config)` from the `config.json` of a Hugging Face model directory.

    Raises:
      FileNotFoundError: no such directory, or no config.json in it.
      ValueError: unreadable JSON, no or an unknown `model_type`, or settings our family cannot reproduce.
    """
    directory = _directory(path)
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{directory} has no {CONFIG_FILE}; a Hugging Face model directory needs one next to "
                                f"the weights. Download it with the weights (or write it with "
                                f"`model.config.save_pretrained(dir)`).")
    try:
        hf = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{config_path} is not valid JSON ({e}); re-download it.") from e
    if not isinstance(hf, dict) or "model_type" not in hf:
        raise ValueError(f"{config_path} has no 'model_type', so the architecture is unknown; add e.g. "
                         f"\"model_type\": \"bert\" matching the checkpoint.")
    family = family_for_model_type(hf["model_type"])
    try:
        config = family_module(family).config_from_hf(hf)
    except KeyError as e:
        raise ValueError(f"{config_path} lacks the field {e.args[0]!r}, which a {hf['model_type']} config "
                         f"needs.") from e
    except ValueError as e:
        raise ValueError(f"{config_path}: {e}") from e
    return family, config


def load_hf_with_report(path: str | os.PathLike, *, seed: int = 0) -> LoadedCheckpoint:
    """Reads a Hugging Face model directory into our family, Config and params, reporting what did not map.

    Params the checkpoint lacks but the family allows to be absent (the pretraining heads of a bare
    `BertModel` checkpoint) are initialised with `seed`; unexpected tensors are skipped. Both are logged as
    warnings and listed in the report.

    Args:
      path: the directory (`config.json` + `model.safetensors` or `pytorch_model.bin`, possibly sharded).
      seed: seeds the initialisation of missing heads, so a load is deterministic.
    """
    directory = _directory(path)
    family, config = read_hf_config(directory)
    tensors = weights_io.read_weights(directory)
    params, report = state_dict.from_hf_state_dict(family, config, tensors, seed=seed)
    if report.initialized:
        log.warning("%s has no weights for %s of our %s model; they were newly initialised (seed %d). Train them "
                    "before using their outputs.", directory, list(report.initialized), family, seed)
    if report.unexpected:
        log.warning("%s holds tensors our %s model does not use, skipped: %s", directory, family,
                    list(report.unexpected))
    return LoadedCheckpoint(family=family, config=config, params=params, report=report)


def load_hf(path: str | os.PathLike, *, seed: int = 0) -> tuple[str, Any, dict]:
    """Reads a Hugging Face model directory: `(family, config, params)`.

    Loading safetensors needs no torch. See `load_hf_with_report` for how missing and unexpected tensors
    are handled.

    Example:
      family, config, params = load_hf(path)
      out = llm_jax.models.build(family, config).apply({'params': params}, tokens_BT, mask_BT=mask_BT)
    """
    loaded = load_hf_with_report(path, seed=seed)
    return loaded.family, loaded.config, loaded.params


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
    """Writes our params as a Hugging Face model directory that `transformers` loads without missing keys.

    Writes `config.json` and `model.safetensors` (float32; tied copies left out as `save_pretrained` does),
    and `tokenizer.json` when a tokenizer is given. Existing files of those names are replaced.

    Args:
      family: our family name.
      config: the family's Config the params were made with.
      params: params pytree (boxed or not; numpy arrays or fully addressable jax arrays), or
        `{'params': params}`.
      path: target directory, created if absent.
      tokenizer: optional `tokenizers.Tokenizer` saved alongside.

    Returns:
      The directory.

    Raises:
      ValueError: params that do not fit the config, or a tokenizer with ids past the vocabulary; nothing is
        written then.
    """
    mod = family_module(family)
    config = config.validate()
    tensors = state_dict.to_hf_state_dict(family, config, params)  # validates before anything is written
    if tokenizer is not None and tokenizer.get_vocab_size() > config.vocab_size:
        raise ValueError(f"The tokenizer has {tokenizer.get_vocab_size()} tokens but the model's vocab_size is "
                         f"{config.vocab_size}: its largest ids have no embedding. Save the tokenizer the model was "
                         f"trained with.")
    directory = pathlib.Path(path).expanduser()
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} is a file; save_hf writes a directory. Pick another path.")
    directory.mkdir(parents=True, exist_ok=True)
    # A stale shard index or .bin would not be loaded over model.safetensors by transformers, but would
    # confuse anyone reading the folder: say so rather than delete a user's files.
    stale = [n for n in weights_io.WEIGHT_FILES[1:] if (directory / n).exists()]
    if stale:
        log.warning("%s also holds %s from an earlier checkpoint; transformers reads model.safetensors first, "
                    "but remove them to avoid confusion.", directory, stale)
    weights_io.write_safetensors(tensors, directory / weights_io.SAFETENSORS_FILE)
    # `dtype` is what transformers 5 reads (`torch_dtype` before it): the weights are float32.
    hf_config = {**mod.config_to_hf(config), "dtype": "float32"}
    _write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n", directory / CONFIG_FILE)
    if tokenizer is not None:
        _write_text(tokenizer.to_str(pretty=True), directory / TOKENIZER_FILE)
    return directory


__all__ = ["CONFIG_FILE", "LoadedCheckpoint", "family_for_model_type", "load_hf", "load_hf_with_report",
           "read_hf_config", "save_hf"]
