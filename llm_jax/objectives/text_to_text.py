"""The text-to-text fine-tuning loss (T5 §2.4, §3.1.3): teacher forcing on the target text.

"We train with a maximum likelihood objective (using 'teacher forcing') regardless of the task" (§2.4). The model is
the family's `PRETRAINING_MODEL` itself — no new head: a class is a word and a score a number the decoder writes.
The family's `text_to_text_inputs` builds the call (T5: the decoder reads the targets shifted right behind its start
token); the loss is the cross-entropy of every target token (`</s>` included), summed and divided by the global
batch's number of target tokens (`loss_denominators`), so gradient accumulation is exact. Rows carry a `weight`
(0 for padding rows) that multiplies their tokens' weights. Metrics: `loss` (nats per target token) and `accuracy`
(top-1 over target tokens).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from llm_jax import models
from llm_jax.models.family import TEXT_TO_TEXT_MEMBER
from llm_jax.objectives.base import weighted_cross_entropy


class TextToTextObjective:
    """The fine-tuning counterpart of an `Objective` for text-to-text tasks (see the module docstring).

    Args:
      family: a registered family that fine-tunes text to text (it has `text_to_text_inputs`).
      cfg: the model's Config.

    Raises:
      ValueError: a family without text-to-text fine-tuning.
    """

    def __init__(self, family: str, cfg):
        fam = models.family_module(family)
        if not hasattr(fam, TEXT_TO_TEXT_MEMBER):
            raise ValueError(f"The {family} family ({fam.LM_KIND} LM) does not fine-tune text to text (it has no "
                             f"{TEXT_TO_TEXT_MEMBER}); set data.text_to_text=False to fine-tune a task head.")
        self.inputs_fn, self.cfg = getattr(fam, TEXT_TO_TEXT_MEMBER), cfg

    def init_inputs(self, batch):
        """`(args, kwargs)` of the model call from a (dummy) batch with `inputs`, `mask`, `targets`."""
        return self.inputs_fn(self.cfg, batch["inputs"], batch["mask"], batch["targets"])

    def init_carry(self, batch_size: int, model_cfg):
        del batch_size, model_cfg
        return {}

    @staticmethod
    def token_weights(batch) -> jax.Array:
        """`[B, T]` float32: 1 on each real target token of a real row."""
        w = batch["target_weights"].astype(jnp.float32)
        if "weight" in batch:
            w = w * batch["weight"].astype(jnp.float32)[:, None]
        return w

    def loss_denominators(self, batch) -> dict[str, jax.Array]:
        """The number of target tokens in the (global) batch."""
        return {"targets": jnp.sum(self.token_weights(batch))}

    def make_loss(self, model):
        """`loss(params, batch, rng, *, carry, frozen, denominators, deterministic) -> (loss, (metrics, carry))`."""

        def loss_fn(params, batch: dict[str, Any], rng, *, carry=None, frozen=None, denominators=None,
                    deterministic: bool = False):
            del frozen
            den = self.loss_denominators(batch) if denominators is None else denominators
            args, kwargs = self.init_inputs(batch)
            out = model.apply({"params": params}, *args, **kwargs, deterministic=deterministic, rngs={"dropout": rng})
            loss, acc = weighted_cross_entropy(out.logits_BTV, batch["targets"], self.token_weights(batch),
                                               den["targets"])
            return loss, ({"loss": loss, "accuracy": acc}, carry)

        return loss_fn


__all__ = ["TextToTextObjective"]
