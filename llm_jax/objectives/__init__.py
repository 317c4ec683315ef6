"""Pretraining objectives: a registry, one file per objective (host-side `prepare`, pure `loss`, own config).

Importing this package registers every objective; `objective.name` in a run config picks one.
"""

from llm_jax.objectives import distill, mlm, mlm_nsp, mlm_sop  # noqa: F401  (registration)
from llm_jax.objectives.base import (OBJECTIVES, Objective, ObjectiveConfigBase, check_token_ids, config_for,
                                     default_config, make_objective, objective_class, register, shape_only_objective,
                                     weighted_cross_entropy)
from llm_jax.objectives.mlm import Mlm, MlmConfig
from llm_jax.objectives.mlm_nsp import MlmNsp, MlmNspConfig

__all__ = ["OBJECTIVES", "Mlm", "MlmConfig", "MlmNsp", "MlmNspConfig", "Objective", "ObjectiveConfigBase",
           "check_token_ids", "config_for", "default_config", "make_objective", "objective_class", "register",
           "shape_only_objective", "weighted_cross_entropy"]
