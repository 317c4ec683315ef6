"""ELECTRA 15 % (Clark et al. 2020 §3.5, Table 5): replaced-token detection with the discriminator's loss only on
the 15 % of positions that were masked (and so possibly replaced).

Everything else is RTD (`objectives/rtd.py`): the same masking, generator, sampling and λ. The ablation isolates
how much of ELECTRA's gain comes from learning from *all* input tokens: the paper's GLUE score drops from 85.0
(ELECTRA) to 82.4 (ELECTRA 15 %), BERT's being 82.2.

The discriminator's loss and metrics (accuracy, replaced rate, precision, recall) are averages over the masked
positions; `replaced_fraction` is unchanged (the share of masked positions whose sample differs).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from llm_jax.objectives.base import register
from llm_jax.objectives.rtd import Rtd, RtdConfig


@dataclasses.dataclass(frozen=True)
class Electra15Config(RtdConfig):
    """RTD's hyperparameters (`RtdConfig`); name `electra15`."""

    name: str = "electra15"


@register
class Electra15(Rtd):
    """RTD whose discriminator is trained only on the masked positions."""

    name = "electra15"
    Config = Electra15Config
    disc_denominator = "mlm"

    def disc_weights(self, batch) -> jax.Array:
        """`[B, T]` f32: 1 at the masked positions (the prediction slots with weight > 0), 0 elsewhere."""
        inputs_BT = batch["inputs"]
        rows_BP = jnp.broadcast_to(jnp.arange(inputs_BT.shape[0])[:, None], batch["mlm_positions"].shape)
        weights_BP = batch["mlm_weights"].astype(jnp.float32)
        # `.max` rather than `.set`: padding slots point at position 0 with weight 0 and must not clear a real one.
        return jnp.zeros(inputs_BT.shape, jnp.float32).at[rows_BP, batch["mlm_positions"]].max(weights_BP)
