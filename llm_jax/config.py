"""Run configuration: `ml_collections` config files → frozen dataclasses (library code never sees a ConfigDict).

A config file `configs/X.py` defines `get_config(arg) -> ConfigDict` with sections `model`, `objective`,
`data`, `optim`, `mesh`, `train`. Each section becomes the dataclass of the module that uses it; a key the
dataclass does not have is an error naming the known keys.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from llm_jax import models
from llm_jax.objectives import ObjectiveConfig
from llm_jax.sharding import MeshConfig
from llm_jax.train.loop import TrainConfig
from llm_jax.train.optim import OptimConfig
from llm_jax.train.pipeline import DataConfig

SECTIONS = {"objective": ObjectiveConfig, "data": DataConfig, "optim": OptimConfig, "mesh": MeshConfig,
            "train": TrainConfig}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a pretraining run needs."""

    family: str
    model: Any  # the family's Config
    init_from: str
    objective: ObjectiveConfig
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
        raise ValueError("config.model.family is missing (e.g. 'bert' or 'roberta').")
    init_from = model.pop("init_from", "") or ""
    model_cfg = models.make_config(family, **model)
    return RunConfig(family=family, model=model_cfg, init_from=init_from,
                     **{name: section(cls, dict(d[name]), name) for name, cls in SECTIONS.items()})
