"""Model families: one file each (Config + presets, modules, heads, HF name map), registered here.

The contract every family module satisfies is `llm_jax.models.family` (checked over this registry by a test).
"""

from __future__ import annotations

import dataclasses
import importlib
import types

import flax.linen as nn

from llm_jax.models.family import RUNTIME_FIELDS, CommonConfig, InputFormat, check_family

# The registry: a family is its module `llm_jax/models/<name>.py`; adding one is one line here.
FAMILY_NAMES = (
    "bert",
    "roberta",
    "albert",
    "distilbert",
    "electra",
    "gpt",
    "gpt1",
    "t5",
    "transfo_xl",
    "xlnet",
)
FAMILIES: dict[str, types.ModuleType] = {name: importlib.import_module(f"llm_jax.models.{name}")
                                         for name in FAMILY_NAMES}


def family_module(family: str) -> types.ModuleType:
    """The family's module (`Config`, `PRESETS`, `PRETRAINING_MODEL`, `HF_NAME_MAP`, ...; see `family.py`)."""
    if family not in FAMILIES:
        raise ValueError(f"Unknown model family {family!r}; known families: {sorted(FAMILIES)}.")
    return FAMILIES[family]


def all_presets() -> dict[str, tuple[str, object]]:
    """Every preset name → (family, Config)."""
    return {name: (fam, cfg) for fam, mod in FAMILIES.items() for name, cfg in mod.PRESETS.items()}


def get_preset(name: str):
    """Returns `(family, Config)` for a preset name such as `bert-base` or `roberta-tiny`."""
    presets = all_presets()
    if name not in presets:
        raise ValueError(f"Unknown preset {name!r}; known presets: {', '.join(sorted(presets))}.")
    return presets[name]


def make_config(family: str, **fields):
    """The family's Config from keyword fields, rejecting unknown names with the list of known ones."""
    cls = family_module(family).Config
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"Unknown model field(s) {unknown} for family {family!r}; known fields: {sorted(known)}.")
    # JSON (config.json, ConfigDict) gives lists where a Config holds tuples (Transformer-XL's cutoffs): a frozen
    # Config stays hashable and compares equal to the one it was saved from.
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    return cls(**fields).validate()


def with_runtime(config, runtime_from) -> object:
    """`config` (e.g. loaded from a checkpoint) with the runtime fields (`RUNTIME_FIELDS`) of `runtime_from`: the
    architecture from one, precision / remat / dropout from the other."""
    return dataclasses.replace(config, **{k: getattr(runtime_from, k) for k in RUNTIME_FIELDS}).validate()


def build(family: str, config, **kwargs) -> nn.Module:
    """The Flax module of the family's pretraining model (e.g. `BertForPreTraining`); for a Config whose
    `quantization` is int8, that module wrapped by qwix (its projections run int8: `llm_jax.compression.quantize`),
    which takes the int8 params tree."""
    module = family_module(family).PRETRAINING_MODEL(config.validate(), **kwargs)
    if config.quantization != "none":
        from llm_jax.compression import quantize  # why lazy: qwix only for quantized models

        module = quantize.wrap(family, config, module)
    return module


__all__ = ["FAMILIES", "RUNTIME_FIELDS", "CommonConfig", "InputFormat", "all_presets", "build", "check_family",
           "family_module", "get_preset", "make_config", "with_runtime"]
