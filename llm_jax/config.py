"""Run configuration: `ml_collections` config files → frozen dataclasses (library code never sees a ConfigDict).

A recipe `configs/X.py` defines `get_config(arg) -> ConfigDict` with sections `model`, `objective`,
`data`, `optim`, `mesh`, `train`. Each section becomes the dataclass of the module that uses it; a key the
dataclass does not have is an error naming the known keys.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from llm_jax import models, objectives
from llm_jax.sharding import MeshConfig
from llm_jax.train.loop import TrainConfig
from llm_jax.train.optim import OptimConfig
from llm_jax.train.pipeline import DataConfig

# The objective section's class depends on `objective.name` (each objective has its own config).
SECTIONS = {"objective": None, "data": DataConfig, "optim": OptimConfig, "mesh": MeshConfig,
            "train": TrainConfig}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a pretraining run needs."""

    family: str
    model: Any  # the family's Config
    init_from: str
    objective: Any  # the objective's own Config
    data: DataConfig
    optim: OptimConfig
    mesh: MeshConfig
    train: TrainConfig

    def to_dict(self) -> dict[str, Any]:
        out = {"family": self.family, "init_from": self.init_from, "model": dataclasses.asdict(self.model)}
        for name in SECTIONS:
            out[name] = dataclasses.asdict(getattr(self, name))
        return out


def section(cls, values: dict[str, Any], name: str):
    """`cls(**values)`, with unknown keys reported by name."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"Unknown key(s) {unknown} in config section '{name}'; known keys: {sorted(known)}.")
    obj = cls(**values)
    return obj.validate() if hasattr(obj, "validate") else obj


def from_dict(d: dict[str, Any]) -> RunConfig:
    """Builds and validates a RunConfig from a plain nested dict (e.g. `ConfigDict.to_dict()`)."""
    missing = [s for s in ("model", *SECTIONS) if s not in d]
    if missing:
        raise ValueError(f"The config lacks section(s) {missing}; a config needs model, {', '.join(SECTIONS)}.")
    extra = sorted(set(d) - {"model", *SECTIONS})
    if extra:
        raise ValueError(f"Unknown config section(s) {extra}; known: model, {', '.join(SECTIONS)}.")
    model = dict(d["model"])
    family = model.pop("family", None)
    if family is None:
        raise ValueError(f"config.model.family is missing; choose one of {sorted(models.FAMILIES)}.")
    init_from = model.pop("init_from", "") or ""
    model_cfg = models.make_config(family, **model)
    objective = dict(d["objective"])
    if "name" not in objective:
        raise ValueError(f"config.objective.name is missing; choose one of {sorted(objectives.OBJECTIVES)}.")
    return RunConfig(family=family, model=model_cfg, init_from=init_from,
                     objective=objectives.config_for(objective.pop("name"), **objective),
                     **{name: section(cls, dict(d[name]), name) for name, cls in SECTIONS.items() if cls})


def load_config_file(spec: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """A recipe's `get_config(arg)` as a plain nested dict, after `section.key` overrides.

    The programmatic twin of `--config bert:ARG --config.section.key=value`: `spec` is `NAME[:ARG]` (a recipe in
    `configs/`, found in a checkout or the installed package; `llm_jax.recipe_files`) or `PATH[:ARG]` (any recipe
    file), and each override must name an existing key (the ConfigDict is locked) with a value of its type.

    Raises:
      FileNotFoundError: no file at PATH and no recipe of that name.
      ValueError: an override of an unknown key or of the wrong type.
    """
    import importlib.machinery
    import importlib.util
    import pathlib

    from llm_jax.recipe_files import resolve

    path, _, arg = resolve(spec).partition(":")
    file = pathlib.Path(path)
    name = f"_llm_jax_config_{file.stem}"
    # Why an explicit loader: like `--config`, any file name loads as Python source, `.py` or not.
    module_spec = importlib.util.spec_from_file_location(name, file,
                                                         loader=importlib.machinery.SourceFileLoader(name, path))
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    cfg = module.get_config(arg) if arg else module.get_config()
    cfg.lock()
    for key, value in (overrides or {}).items():
        section_name, _, field = key.partition(".")
        try:
            getattr(cfg, section_name)[field] = value
        except (AttributeError, KeyError, TypeError) as e:
            raise ValueError(f"Override {key}={value!r} does not fit {spec}: {e}") from e
    return cfg.to_dict()
