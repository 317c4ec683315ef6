"""Our own model directories and run directories, and one loader for every kind of pretrained source.

* a **model directory** (what `llm-jax convert --from-hf` writes): `config.json` = `{"family", "model"}`,
  `params/` (an Orbax checkpoint of the params) and `tokenizer.json`;
* a **run directory** (what `llm-jax pretrain` writes): `config.json` (the resolved run config),
  `checkpoints/<step>/` and `tokenizer.json`; the newest step that restores is used;
* a **checkpoint step directory** `<run>/checkpoints/<step>`;
* a **Hugging Face directory** (`config.json` with `model_type`): see `llm_jax.interop.hf`.

`load_pretrained(path)` accepts all four. Orbax reads straight from the files here (no train-state needed), so
this module does not depend on the training code. A run directory whose newest step does not restore (an
interrupted save, a damaged file) falls back to the newest one that does, with a warning: Orbax itself raises
instead (DESIGN.md §4). Every unreadable input raises a ValueError / FileNotFoundError whose one-line message
names the file and says what to do.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
import tokenizers

from llm_jax import models
from llm_jax.interop.hf import CONFIG_FILE, load_hf, read_hf_config, view_directories
from llm_jax.data.tokenizer import save_tokenizer
from llm_jax.interop.tokenizer import TOKENIZER_FILE, load_hf_tokenizer
from llm_jax.interop.weights_io import UnreadableFileError, first_line

log = logging.getLogger(__name__)


def _read_json(path: pathlib.Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; a run or model directory of llm_jax keeps its config there. "
                                f"Point at the directory `llm-jax pretrain` or `llm-jax convert` wrote.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UnreadableFileError(f"{path} is not valid JSON ({first_line(e)}); the directory is damaged: restore the "
                                  f"file from the run's launch config, or re-run `llm-jax convert`.") from e
    except OSError as e:  # permissions, an unmounted path
        raise UnreadableFileError(f"{path} cannot be read ({e.strerror or e}); check the path and its "
                                  f"permissions.") from e
    if not isinstance(data, dict):
        raise UnreadableFileError(f"{path} should hold a JSON object, not a {type(data).__name__}; the directory is "
                                  f"damaged.")
    return data


def _family_and_config(cfg: dict[str, Any], path: pathlib.Path):
    """`(family, Config)` from one of our config.json dicts (`{"family", "model", ...}`)."""
    if "family" not in cfg or not isinstance(cfg.get("model"), dict):
        raise ValueError(f"{path} has no `family` and `model` object, which llm_jax run and model directories "
                         f"write; is it the config.json of another program?")
    try:
        return cfg["family"], models.make_config(cfg["family"], **cfg["model"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {first_line(e)}") from e


def save_model_dir(family: str, config, params, path: str | os.PathLike, *, tokenizer=None,
                   compression: dict | None = None) -> pathlib.Path:
    """Writes a model directory (`config.json`, `params/`, optional `tokenizer.json`).

    `compression` (JSON-able: what `llm-jax compress` did, e.g. `{"prune": report, "quantize": "int8-weight"}`) is
    recorded as config.json's top-level `"compression"` key; `load_pretrained` reads the model from the Config (an
    int8 model's `quantization` field) and fine-tuning reads `compression.prune` (a magnitude-pruned model keeps its
    zeros)."""
    import dataclasses

    out = pathlib.Path(path).absolute()
    if (out / "params").exists():
        raise FileExistsError(f"{out} already holds a model (params/); choose a new --out directory.")
    out.mkdir(parents=True, exist_ok=True)
    params = jax.tree.map(np.asarray, params)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(out / "params", params)
    record = {"family": family, "model": dataclasses.asdict(config)}
    if compression is not None:
        record["compression"] = compression
    (out / CONFIG_FILE).write_text(json.dumps(record, indent=2))
    if tokenizer is not None:
        save_tokenizer(tokenizer, out)  # tokenizer.json, and spiece.model for a SentencePiece vocabulary
    return out


class DamagedCheckpointError(UnreadableFileError):
    """An Orbax checkpoint directory of ours that exists but does not restore."""


def _restore_params(state_dir: pathlib.Path, key: str | None, target=None, keep_dtype: str | None = None) -> dict:
    """The params saved in an Orbax checkpoint directory (`key`: their entry in a saved TrainState), as float32
    numpy arrays; with `target` (an abstract tree: an int8 model's, `llm_jax.compression.quantize`) restored into
    its structure and dtypes as saved; floating leaves stored as `keep_dtype` (a 16-bit model's dtype) keep it.

    Raises:
      DamagedCheckpointError: the checkpoint does not restore (one line, naming the directory).
    """
    # Why catch broadly: Orbax and tensorstore raise many types for a damaged checkpoint (ValueError,
    # FileNotFoundError, KeyError, their own errors), and none of them says which directory or what to do.
    try:
        with ocp.StandardCheckpointer() as ckptr:
            if target is not None:
                return jax.tree.map(np.asarray, ckptr.restore(state_dir.absolute(), target))
            tree = ckptr.restore(state_dir.absolute())
        tree = tree[key] if key else tree
        return jax.tree.map(lambda x: np.asarray(x) if keep_dtype and np.asarray(x).dtype == keep_dtype
                            else np.asarray(x, dtype=np.float32), tree)
    except Exception as e:
        raise DamagedCheckpointError(f"{state_dir} does not restore ({type(e).__name__}: {first_line(e)}): the "
                                     f"checkpoint is damaged or incomplete (an interrupted save?); use an earlier "
                                     f"step, or the run directory, which falls back to the newest step that "
                                     f"restores.") from e


def _steps(run: pathlib.Path) -> list[int]:
    """The step numbers under `run/checkpoints`, newest first."""
    return sorted((int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit() and p.is_dir()),
                  reverse=True)


def _restore_newest(run: pathlib.Path) -> tuple[int, dict]:
    """`(step, params)` of the newest step under `run/checkpoints` that restores; older steps are tried when newer
    ones are damaged, with a warning.

    Raises:
      FileNotFoundError: no checkpoint steps at all.
      DamagedCheckpointError: none of them restores.
    """
    steps = _steps(run)
    if not steps:
        raise FileNotFoundError(f"{run / 'checkpoints'} holds no checkpoint steps: the run saved none yet. Train "
                                f"until a checkpoint is written (train.checkpoint_every), or point at another run.")
    failed = []
    for step in steps:
        state_dir = run / "checkpoints" / str(step) / "state"
        try:
            return step, _restore_params(state_dir, "params")
        except DamagedCheckpointError as e:
            log.warning("%s; trying an older step.", e)
            failed.append(step)
    raise DamagedCheckpointError(f"No checkpoint under {run / 'checkpoints'} restores (tried steps {failed}, all "
                                 f"damaged or incomplete); the run's weights are lost: train again, or restore the "
                                 f"checkpoints from a backup.")


def _tokenizer_near(*dirs: pathlib.Path) -> tokenizers.Tokenizer | None:
    for d in dirs:
        if (d / TOKENIZER_FILE).exists():
            try:
                return tokenizers.Tokenizer.from_file(str(d / TOKENIZER_FILE))
            except Exception as e:  # the Rust library raises a bare Exception for a malformed file
                raise UnreadableFileError(f"{d / TOKENIZER_FILE} is not a readable tokenizer ({first_line(e)}); "
                                          f"restore it (it was saved next to the weights), or delete it and pass "
                                          f"the tokenizer the model was trained with.") from e
    return None


def load_pretrained(path: str | os.PathLike) -> tuple[str, Any, dict, tokenizers.Tokenizer | None]:
    """Loads `(family, config, params, tokenizer)` from any supported source (see the module docstring).

    Raises:
      FileNotFoundError / ValueError: with what was expected at `path` and how to get it.
    """
    p = pathlib.Path(path).expanduser().absolute()
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist; pass a run directory, a checkpoint step directory, a model "
                                "directory from `llm-jax convert`, or a Hugging Face checkpoint directory.")
    if p.parent.name == "checkpoints" and p.name.isdigit():  # <run>/checkpoints/<step>
        run = p.parent.parent
        family, config = _family_and_config(_read_json(run / CONFIG_FILE), run / CONFIG_FILE)
        if not (p / "state").is_dir():
            raise FileNotFoundError(f"{p} has no state/: the checkpoint step is incomplete (an interrupted save?); "
                                    f"use an earlier step, or the run directory {run}, which falls back to the "
                                    f"newest step that restores.")
        return family, config, _restore_params(p / "state", "params"), _tokenizer_near(run)
    if not (p / CONFIG_FILE).exists():
        if view_directories(p):  # one sub-directory per checkpoint of a multi-checkpoint family (ELECTRA)
            family, config, params = load_hf(p)
            first = next(iter(view_directories(p).values()))
            return family, config, params, load_hf_tokenizer(first)
        raise FileNotFoundError(f"{p} has no {CONFIG_FILE}: it is not a run, model or Hugging Face directory.")
    cfg = _read_json(p / CONFIG_FILE)
    if "model_type" in cfg:  # Hugging Face
        family, config, params = load_hf(p)
        return family, config, params, load_hf_tokenizer(p)
    family, config = _family_and_config(cfg, p / CONFIG_FILE)
    if (p / "params").is_dir():
        target = None
        if config.quantization != "none":  # int8: restored into the quantized tree (`llm-jax compress`)
            from llm_jax.compression import quantize  # why lazy: qwix only for quantized models

            target = quantize.abstract_quantized_params(family, config)
        # A 16-bit model (`llm-jax compress --quantize fp16|bf16`) keeps its 16-bit params.
        keep = config.dtype if config.dtype in ("float16", "bfloat16") else None
        return family, config, _restore_params(p / "params", None, target, keep), _tokenizer_near(p)
    if (p / "checkpoints").is_dir():
        step, params = _restore_newest(p)
        log.info("Loaded params from %s", p / "checkpoints" / str(step))
        return family, config, params, _tokenizer_near(p)
    raise FileNotFoundError(f"{p} has a config but no params/ or checkpoints/; it holds no weights. Point at the "
                            f"directory `llm-jax pretrain` or `llm-jax convert` wrote.")


def convert_from_hf(src: str | os.PathLike, out: str | os.PathLike) -> pathlib.Path:
    """Hugging Face directory → our model directory."""
    read_hf_config(src)  # a clear error early if src is not a Hugging Face directory
    family, config, params = load_hf(src)
    views = view_directories(src)  # a multi-checkpoint family's views share one tokenizer; read the first's
    tokenizer = load_hf_tokenizer(next(iter(views.values())) if views else src)
    return save_model_dir(family, config, params, out, tokenizer=tokenizer)


def convert_to_hf(src: str | os.PathLike, out: str | os.PathLike) -> pathlib.Path:
    """Run / checkpoint / model directory → Hugging Face directory (`transformers` loads it).

    Raises:
      FileExistsError: `out` is a run or model directory of ours (its config.json would be replaced).
    """
    from llm_jax.interop.hf import save_hf

    target = pathlib.Path(out).expanduser() / CONFIG_FILE
    if target.is_file():
        try:
            ours = "family" in json.loads(target.read_text())
        except (ValueError, OSError):
            ours = False
        if ours:
            raise FileExistsError(f"--out {out} holds a run or model of ours; writing a Hugging Face config.json there "
                                  "would replace its own. Choose another --out directory.")
    family, config, params, tokenizer = load_pretrained(src)
    if config.quantization != "none":
        from llm_jax.compression import quantize

        log.warning("%s is an %s model: Hugging Face checkpoints cannot hold its int8 kernels and scales; exporting "
                    "its dequantized float32 weights.", src, config.quantization)
        config, params = quantize.as_float(family, config, params, "convert --to-hf")
    save_hf(family, config, params, out, tokenizer=tokenizer)
    return pathlib.Path(out)
