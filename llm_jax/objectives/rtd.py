"""Replaced-token detection (Clark et al. 2020, ELECTRA §2): a generator's MLM plus a discriminator that tells,
for every token, whether the generator replaced it.

One step, as google-research/electra's `run_pretraining.py` computes it:

1. mask 15 % of the tokens (`pretrain_helpers.mask`: of the chosen ones 85 % become `[MASK]`, 15 % stay; none
   become random tokens) — host side, dynamic, with the MLM objective's packing and prediction slots;
2. the generator predicts the masked tokens: its MLM loss over the masked positions (`mlm_loss`);
3. at every masked position a replacement is **sampled** from the generator's softmax (Gumbel-max with the step's
   RNG, temperature 1; no gradient flows through the sample, §2: "we do not back-propagate the discriminator loss
   through the generator");
4. a position counts as *replaced* only where the sample differs from the original token (§2: "if the generator
   happens to generate the correct token, that token is considered real");
5. the discriminator reads the corrupted sequence; binary cross-entropy over all non-padding tokens
   (`disc_loss`);
6. loss = `gen_weight` · MLM + `disc_weight` · disc, with λ = `disc_weight` = 50 (§2, Appendix A).

Logged besides the losses: the generator's MLM accuracy, the discriminator's accuracy over tokens, the share of
masked positions the sample actually changed (`replaced_fraction`), and precision/recall of the "replaced" class
(`disc_precision`, `disc_recall`, computed from normalised counts after accumulation; see `derived_metrics`).

The packing is the MLM objective's (FULL-SENTENCES rows); ELECTRA's own data builder splits each row into two
segments of one document at a random sentence boundary, which changes nothing the loss reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from llm_jax.objectives.base import register, weighted_cross_entropy
from llm_jax.objectives.masking import mask_batch, maskable
from llm_jax.objectives.mlm import Mlm, MlmConfig


@dataclasses.dataclass(frozen=True)
class RtdConfig(MlmConfig):
    """Replaced-token-detection hyperparameters (google-research/electra `configure_pretraining.py` names).

    Attributes:
      name: `rtd`.
      mask_prob: fraction of tokens masked for the generator (15 %; the paper's large model used 25 %).
      mask_fraction / random_fraction: of the masked tokens, the share shown as `[MASK]` and the share replaced by
        a random token before the generator sees them (ELECTRA: 0.85 / 0.0).
      gen_weight / disc_weight: weights of the generator's MLM loss and the discriminator's loss (1 and λ = 50).
      temperature: the generator's softmax temperature when sampling replacements (1.0).
    """

    name: str = "rtd"
    mask_fraction: float = 0.85
    random_fraction: float = 0.0
    gen_weight: float = 1.0
    disc_weight: float = 50.0
    temperature: float = 1.0

    def validate(self):
        super().validate()
        if self.masking != "dynamic":
            raise ValueError("objective.masking must be 'dynamic' for rtd: ELECTRA masks afresh every step "
                             "(pretrain_helpers.mask runs inside the model).")
        if not (0.0 <= self.mask_fraction and 0.0 <= self.random_fraction
                and self.mask_fraction + self.random_fraction <= 1.0):
            raise ValueError(f"objective.mask_fraction={self.mask_fraction} and objective.random_fraction="
                             f"{self.random_fraction} must be ≥ 0 with a sum ≤ 1 (ELECTRA: 0.85 and 0.0).")
        if self.gen_weight < 0 or self.disc_weight < 0 or self.gen_weight + self.disc_weight == 0:
            raise ValueError(f"objective.gen_weight={self.gen_weight} and objective.disc_weight={self.disc_weight} "
                             "must be ≥ 0 and not both 0 (ELECTRA: 1 and 50).")
        if not self.temperature > 0:
            raise ValueError(f"objective.temperature={self.temperature} must be > 0 (ELECTRA: 1.0).")
        return self


def gumbel_max_sample(logits_BPV: jax.Array, rng: jax.Array, temperature: float = 1.0) -> jax.Array:
    """One sample per row of `softmax(logits / temperature)` by the Gumbel-max trick: `argmax(logits / τ + g)`,
    `g ~ Gumbel(0, 1)`; no gradient flows through it.

    Returns:
      int32 ids `[B, P]`.
    """
    logits_BPV = jax.lax.stop_gradient(logits_BPV.astype(jnp.float32)) / temperature
    gumbel_BPV = jax.random.gumbel(rng, logits_BPV.shape, jnp.float32)
    return jnp.argmax(logits_BPV + gumbel_BPV, axis=-1).astype(jnp.int32)


def corrupt(inputs_BT: jax.Array, positions_BP: jax.Array, ids_BP: jax.Array, weights_BP: jax.Array,
            sampled_BP: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The discriminator's input and labels (ELECTRA's `_get_fake_data`).

    Args:
      inputs_BT: the generator's (masked) input ids.
      positions_BP / ids_BP / weights_BP: the masked positions, their original ids, 1.0 on real slots.
      sampled_BP: the generator's samples at those positions.

    Returns:
      `(corrupted_BT, replaced_BT)`: the original sequence with the samples written at the masked positions, and
      1 where the written sample differs from the original token (a correct sample counts as real).
    """
    rows_BP = jnp.broadcast_to(jnp.arange(inputs_BT.shape[0])[:, None], positions_BP.shape)
    real_BP = weights_BP > 0
    # Padding slots point at position 0 with weight 0: they write back what is there, so they change nothing.
    originals_BT = inputs_BT.at[rows_BP, positions_BP].set(
        jnp.where(real_BP, ids_BP, inputs_BT[rows_BP, positions_BP]).astype(inputs_BT.dtype))
    corrupted_BT = originals_BT.at[rows_BP, positions_BP].set(
        jnp.where(real_BP, sampled_BP, originals_BT[rows_BP, positions_BP]).astype(inputs_BT.dtype))
    return corrupted_BT, (corrupted_BT != originals_BT).astype(jnp.int32)


@register
class Rtd(Mlm):
    """Replaced-token detection over FULL-SENTENCES rows (ELECTRA's pretraining)."""

    name = "rtd"
    Config = RtdConfig
    heads = ("mlm", "rtd")
    progress_keys = ("loss", "mlm_accuracy", "disc_accuracy", "tokens_per_s")
    # The denominator of the discriminator's loss and metrics (`loss_denominators` key): every real token.
    disc_denominator = "tokens"

    def _mask(self, tokens_BT: np.ndarray, seeds) -> dict[str, np.ndarray]:
        return mask_batch(tokens_BT, maskable(tokens_BT, self.special), seeds, mask_prob=self.cfg.mask_prob,
                          max_predictions=self.num_predictions(tokens_BT.shape[1]), mask_id=self.special.mask,
                          vocab_size=self.vocab_size, mask_fraction=self.cfg.mask_fraction,
                          random_fraction=self.cfg.random_fraction)

    # ------------------------------------------------------------------ device side
    def disc_weights(self, batch) -> jax.Array:
        """`[B, T]` f32: the positions whose replaced/original label the discriminator is trained on (RTD: every
        non-padding token)."""
        return batch["mask"].astype(jnp.float32)

    def model_inputs(self, batch) -> dict:
        """The model's keyword inputs besides the ids (mask, segments): what both towers read."""
        _, kwargs = self.init_inputs(batch)
        kwargs.pop("mlm_positions_BP")
        return kwargs

    def generate(self, model, params, batch, rng, den, deterministic):
        """Steps 2–4 of the module docstring: the generator on the masked ids, its MLM loss and accuracy over the
        masked positions, and the sequence the discriminator reads.

        Returns:
          `(mlm_loss, mlm_accuracy, corrupted_BT, replaced_BT)`: scalars, the original ids with the generator's
          samples at the masked positions, and 1 where a sample differs from the original.
        """
        gen_rng, sample_rng = jax.random.split(rng)
        gen = model.apply({"params": params}, batch["inputs"], mlm_positions_BP=batch["mlm_positions"],
                          **self.model_inputs(batch), deterministic=deterministic, rngs={"dropout": gen_rng},
                          method="run_generator")
        mlm_loss, mlm_acc = weighted_cross_entropy(gen.mlm_logits_BTV, batch["mlm_ids"], batch["mlm_weights"],
                                                   den["mlm"])
        sampled_BP = gumbel_max_sample(gen.mlm_logits_BTV, sample_rng, self.cfg.temperature)
        corrupted_BT, replaced_BT = corrupt(batch["inputs"], batch["mlm_positions"], batch["mlm_ids"],
                                            batch["mlm_weights"], sampled_BP)
        return mlm_loss, mlm_acc, corrupted_BT, replaced_BT

    def loss_denominators(self, batch):
        return {"mlm": jnp.sum(batch["mlm_weights"].astype(jnp.float32)),
                "tokens": jnp.sum(batch["mask"].astype(jnp.float32))}

    def make_loss(self, model, frozen_models=None):
        """`loss(params, batch, rng, ...) -> (loss, (metrics, carry))`: generator pass, sampling, discriminator
        pass, as the module docstring describes."""
        cfg = self.cfg

        def loss_fn(params, batch, rng, *, carry=None, frozen=None, denominators=None, deterministic=False):
            del frozen
            den = self.loss_denominators(batch) if denominators is None else denominators
            gen_rng, disc_rng = jax.random.split(rng)
            mlm_loss, mlm_acc, corrupted_BT, replaced_BT = self.generate(model, params, batch, gen_rng, den,
                                                                         deterministic)
            disc = model.apply({"params": params}, corrupted_BT, **self.model_inputs(batch),
                               deterministic=deterministic, rngs={"dropout": disc_rng}, method="run_discriminator")
            weights_BT = self.disc_weights(batch)
            labels_BT = replaced_BT.astype(jnp.float32)
            logits_BT = disc.rtd_logits_BT
            # Binary cross-entropy with logits, the stable form: max(x, 0) − x·y + log(1 + e^−|x|).
            bce_BT = jnp.maximum(logits_BT, 0) - logits_BT * labels_BT + jnp.log1p(jnp.exp(-jnp.abs(logits_BT)))
            tokens = jnp.maximum(den[self.disc_denominator], 1e-5)
            disc_loss = jnp.sum(bce_BT * weights_BT) / tokens
            predicted_BT = (logits_BT > 0).astype(jnp.float32)
            loss = cfg.gen_weight * mlm_loss + cfg.disc_weight * disc_loss
            metrics = {
                "loss": loss, "mlm_loss": mlm_loss, "mlm_accuracy": mlm_acc, "disc_loss": disc_loss,
                "disc_accuracy": jnp.sum((predicted_BT == labels_BT) * weights_BT) / tokens,
                # Shares of all real tokens; precision and recall are their ratios (`derived_metrics`).
                "replaced_rate": jnp.sum(labels_BT * weights_BT) / tokens,
                "disc_predicted_rate": jnp.sum(predicted_BT * weights_BT) / tokens,
                "disc_true_positive_rate": jnp.sum(predicted_BT * labels_BT * weights_BT) / tokens,
                "replaced_fraction": jnp.sum(labels_BT * weights_BT) / jnp.maximum(den["mlm"], 1e-5),
            }
            return loss, (metrics, carry)

        return loss_fn

    @staticmethod
    def derived_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
        """Precision and recall of the "replaced" class, from the normalised counts a step logs (ELECTRA's
        `disc_precision` / `disc_recall`); NaN-free: 0 when nothing was predicted / replaced."""
        tp, predicted, replaced = (metrics.get(k) for k in ("disc_true_positive_rate", "disc_predicted_rate",
                                                            "replaced_rate"))
        if tp is None or predicted is None or replaced is None:
            return {}
        return {"disc_precision": tp / predicted if predicted > 0 else 0.0,
                "disc_recall": tp / replaced if replaced > 0 else 0.0}
