"""Our own model directories and run directories, and one loader for every kind of pretrained source.

* a **model directory** (what `llm-jax convert --from-hf` writes): `config.json` = `{"family", "model"}`,
  `params/` (an Orbax checkpoint of the params) and `tokenizer.json`;
* a **run directory** (what `llm-jax pretrain` writes): `config.json` (the resolved run config),
  `checkpoints/<step>/` and `tokenizer.json`; the newest step that restores is used;
* a **checkpoint step directory** `<run>/checkpoints/<step>`;
* a **Hugging Face directory** (`config.json` with `model_type`): see `llm_jax.interop.hf`.

`load_pretrained(path)` accepts all four. Orbax reads straight from the files here (no train-state needed), so
this module does not depend on the training code.
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
from llm_jax.interop.hf import CONFIG_FILE, load_hf, read_hf_config
from llm_jax.interop.tokenizer import TOKENIZER_FILE, load_hf_tokenizer

log = logging.getLogger(__name__)


def _read_json(path: pathlib.Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); the directory is damaged.") from e


def _config_from_dict(family: str, fields: dict[str, Any]):
    return models.make_config(family, **fields)


def save_model_dir(family: str, config, params, path: str | os.PathLike, *, tokenizer=None) -> pathlib.Path:
    """Writes a model directory (`config.json`, `params/`, optional `tokenizer.json`)."""
    import dataclasses

    out = pathlib.Path(path).absolute()
    if (out / "params").exists():
        raise FileExistsError(f"{out} already holds a model (params/); choose a new --out directory.")
    out.mkdir(parents=True, exist_ok=True)
    params = jax.tree.map(np.asarray, params)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(out / "params", params)
    (out / CONFIG_FILE).write_text(json.dumps({"family": family, "model": dataclasses.asdict(config)}, indent=2))
    if tokenizer is not None:
        tokenizer.save(str(out / TOKENIZER_FILE))
    return out


def _restore_params(state_dir: pathlib.Path, key: str | None) -> dict:
    with ocp.StandardCheckpointer() as ckptr:
        tree = ckptr.restore(state_dir.absolute())
    tree = tree[key] if key else tree
    return jax.tree.map(lambda x: np.asarray(x, dtype=np.float32), tree)


def _newest_good_step(run: pathlib.Path) -> pathlib.Path:
    steps = sorted((int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit()), reverse=True)
    errors = []
    for step in steps:
        candidate = run / "checkpoints" / str(step)
        if (candidate / "state").is_dir():
            return candidate
        errors.append(step)
    raise FileNotFoundError(f"{run / 'checkpoints'} holds no complete checkpoint (looked at steps {errors}); "
                            "train longer or point at a run that wrote one.")


def _tokenizer_near(*dirs: pathlib.Path) -> tokenizers.Tokenizer | None:
    for d in dirs:
        if (d / TOKENIZER_FILE).exists():
            return tokenizers.Tokenizer.from_file(str(d / TOKENIZER_FILE))
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
    if (p / "state").is_dir() and p.parent.name == "checkpoints":  # <run>/checkpoints/<step>
        run = p.parent.parent
        cfg = _read_json(run / CONFIG_FILE)
        params = _restore_params(p / "state", "params")
        return cfg["family"], _config_from_dict(cfg["family"], cfg["model"]), params, _tokenizer_near(run)
    if not (p / CONFIG_FILE).exists():
        raise FileNotFoundError(f"{p} has no {CONFIG_FILE}: it is not a run, model or Hugging Face directory.")
    cfg = _read_json(p / CONFIG_FILE)
    if "model_type" in cfg:  # Hugging Face
        family, config, params = load_hf(p)
        return family, config, params, load_hf_tokenizer(p)
    if "family" not in cfg or "model" not in cfg:
        raise ValueError(f"{p / CONFIG_FILE} has neither `model_type` (Hugging Face) nor `family` + `model` (ours).")
    family, config = cfg["family"], _config_from_dict(cfg["family"], cfg["model"])
    if (p / "params").is_dir():
        return family, config, _restore_params(p / "params", None), _tokenizer_near(p)
    if (p / "checkpoints").is_dir():
        step_dir = _newest_good_step(p)
        log.info("Loading params from %s", step_dir)
        return family, config, _restore_params(step_dir / "state", "params"), _tokenizer_near(p)
    raise FileNotFoundError(f"{p} has a config but no params/ or checkpoints/; it holds no weights.")


def convert_from_hf(src: str | os.PathLike, out: str | os.PathLike) -> pathlib.Path:
    """Hugging Face directory → our model directory."""
    read_hf_config(src)  # a clear error early if src is not a Hugging Face directory
    family, config, params = load_hf(src)
    return save_model_dir(family, config, params, out, tokenizer=load_hf_tokenizer(src))


def convert_to_hf(src: str | os.PathLike, out: str | os.PathLike) -> pathlib.Path:
    """Run / checkpoint / model directory → Hugging Face directory (`transformers` loads it)."""
    from llm_jax.interop.hf import save_hf

    family, config, params, tokenizer = load_pretrained(src)
    save_hf(family, config, params, out, tokenizer=tokenizer)
    return pathlib.Path(out)
