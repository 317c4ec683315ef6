"""Replace MLM (Clark et al. 2020 §3.5, Table 5): a masked LM whose masked positions show a generator's samples
instead of `[MASK]`.

The ablation asks how much of ELECTRA's gain over BERT comes from removing the pretrain/fine-tune mismatch of the
`[MASK]` token (which fine-tuning never shows). One step:

1. mask 15 % of the tokens and run the generator on them exactly as RTD does (`objectives/rtd.py`: its MLM loss,
   Gumbel-max samples at the masked positions, no gradient through the sample);
2. the discriminator tower reads the sequence with the samples written in (a sample that equals the original is
   simply the original) and, through its own MLM head tied to the shared embeddings, predicts the **original**
   token at the masked positions;
3. loss = `gen_weight` · generator MLM + `mlm_weight` · discriminator MLM.

The paper's GLUE score: 82.4 (BERT 82.2, ELECTRA 85.0). Logged: both MLM losses and accuracies
(`gen_mlm_*`, `mlm_*` for the discriminator) and the share of masked positions the sample changed.
Requires the ELECTRA family's joint module (`run_generator`, `run_discriminator(discriminator_mlm=...)`).
"""

from __future__ import annotations

import dataclasses

import jax

from llm_jax.objectives.base import register, weighted_cross_entropy
from llm_jax.objectives.rtd import Rtd, RtdConfig


@dataclasses.dataclass(frozen=True)
class ReplaceMlmConfig(RtdConfig):
    """RTD's masking and generator settings (`RtdConfig`; `disc_weight` is not read), plus:

    Attributes:
      name: `replace_mlm`.
      mlm_weight: weight of the discriminator tower's MLM loss (1).
    """

    name: str = "replace_mlm"
    mlm_weight: float = 1.0

    def validate(self):
        super().validate()
        if not self.mlm_weight > 0:
            raise ValueError(f"objective.mlm_weight={self.mlm_weight} must be > 0 (the ablation's loss).")
        return self


@register
class ReplaceMlm(Rtd):
    """MLM over generator-replaced (not `[MASK]`ed) positions, with a jointly trained generator."""

    name = "replace_mlm"
    Config = ReplaceMlmConfig
    heads = ("mlm", "disc_mlm")
    progress_keys = ("loss", "gen_mlm_accuracy", "mlm_accuracy", "tokens_per_s")

    def init_inputs(self, batch):
        args, kwargs = super().init_inputs(batch)
        return args, {**kwargs, "discriminator_mlm": "positions"}

    def model_inputs(self, batch) -> dict:
        kwargs = super().model_inputs(batch)
        kwargs.pop("discriminator_mlm")
        return kwargs

    def make_loss(self, model, frozen_models=None):
        """`loss(params, batch, rng, ...) -> (loss, (metrics, carry))`: generator pass and samples, then the
        discriminator tower's MLM on the replaced positions."""
        cfg = self.cfg

        def loss_fn(params, batch, rng, *, carry=None, frozen=None, denominators=None, deterministic=False):
            del frozen
            den = self.loss_denominators(batch) if denominators is None else denominators
            gen_rng, disc_rng = jax.random.split(rng)
            gen_loss, gen_acc, corrupted_BT, replaced_BT = self.generate(model, params, batch, gen_rng, den,
                                                                         deterministic)
            out = model.apply({"params": params}, corrupted_BT, **self.model_inputs(batch),
                              discriminator_mlm="positions", discriminator_mlm_positions_BP=batch["mlm_positions"],
                              deterministic=deterministic, rngs={"dropout": disc_rng}, method="run_discriminator")
            mlm_loss, mlm_acc = weighted_cross_entropy(out.mlm_logits_BTV, batch["mlm_ids"], batch["mlm_weights"],
                                                       den["mlm"])
            loss = cfg.gen_weight * gen_loss + cfg.mlm_weight * mlm_loss
            real_BT = batch["mask"].astype(replaced_BT.dtype)
            metrics = {"loss": loss, "gen_mlm_loss": gen_loss, "gen_mlm_accuracy": gen_acc, "mlm_loss": mlm_loss,
                       "mlm_accuracy": mlm_acc,
                       "replaced_fraction": (replaced_BT * real_BT).sum() / jax.numpy.maximum(den["mlm"], 1e-5)}
            return loss, (metrics, carry)

        return loss_fn

    @staticmethod
    def derived_metrics(metrics):
        return {}
