"""Pretraining objectives: a registry, one file per objective (host-side `prepare`, pure `loss`, own config).

Importing this package registers every objective; `objective.name` in a run config picks one.
"""

import importlib

from llm_jax.objectives.base import (OBJECTIVES, Objective, ObjectiveConfigBase, check_token_ids, config_for,
                                     default_config, make_objective, objective_class, register, shape_only_objective,
                                     weighted_cross_entropy)
from llm_jax.objectives.mlm import Mlm, MlmConfig
from llm_jax.objectives.mlm_nsp import MlmNsp, MlmNspConfig

# Every objective file registers itself on import; adding one is one line here.
OBJECTIVE_MODULES = (
    "mlm",
    "mlm_nsp",
    "mlm_sop",
    "distill",
    "rtd",
    "electra15",
    "replace_mlm",
    "all_tokens_mlm",
    "clm",
    "span_corruption",
    "segment_clm",
)
for _module in OBJECTIVE_MODULES:
    importlib.import_module(f"llm_jax.objectives.{_module}")

__all__ = ["OBJECTIVES", "Mlm", "MlmConfig", "MlmNsp", "MlmNspConfig", "Objective", "ObjectiveConfigBase",
           "check_token_ids", "config_for", "default_config", "make_objective", "objective_class", "register",
           "shape_only_objective", "weighted_cross_entropy"]
