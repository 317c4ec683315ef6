"""Pretraining objectives: host-side batch preparation + pure `loss(params, batch, rng)`."""

from llm_jax.objectives.mlm import OBJECTIVES, Mlm, MlmNsp, ObjectiveConfig, make_objective, weighted_cross_entropy

__all__ = ["OBJECTIVES", "Mlm", "MlmNsp", "ObjectiveConfig", "make_objective", "weighted_cross_entropy"]
