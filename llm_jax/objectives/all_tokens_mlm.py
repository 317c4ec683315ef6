"""All-Tokens MLM (Clark et al. 2020 §3.5, Table 5): the masked positions show a generator's samples, and the model
predicts the identity of **every** token, with a copy mechanism.

The ablation moves BERT towards ELECTRA by giving every token a loss. As in the paper, the output distribution at
each position mixes copying the input token with the MLM softmax, the copy probability `D` coming from a sigmoid
layer — here the discriminator's own replaced-token head (`D = σ(−rtd_logit)`, "original" ⇒ copy):

    p(x_t | corrupted) = D_t · 1[x_t = input_t] + (1 − D_t) · softmax(MLM logits_t)[x_t]

trained by the negative log-likelihood of the original token over all non-padding positions. Generator, masking
and sampling are RTD's (`objectives/rtd.py`); loss = `gen_weight` · generator MLM + `mlm_weight` · all-tokens NLL.
The paper's GLUE score: 84.3 (BERT 82.2, ELECTRA 85.0).

Logged: both losses, the generator's accuracy, the all-tokens accuracy (the mixture's most likely token against
the original), the accuracy on the replaced tokens alone, and the mean copy probability.
Requires the ELECTRA family's joint module (`run_discriminator(discriminator_mlm="all")`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from llm_jax.objectives.base import register
from llm_jax.objectives.replace_mlm import ReplaceMlm, ReplaceMlmConfig


@dataclasses.dataclass(frozen=True)
class AllTokensMlmConfig(ReplaceMlmConfig):
    """Replace MLM's settings (`ReplaceMlmConfig`); name `all_tokens_mlm`."""

    name: str = "all_tokens_mlm"


def copy_mixture_nll(mlm_logits_BTV: jax.Array, copy_logits_BT: jax.Array, inputs_BT: jax.Array,
                     targets_BT: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`−log p(target)` under `D · 1[target = input] + (1 − D) · softmax(logits)`, `D = σ(copy_logits)`, and
    whether the mixture's most likely token is the target.

    Returns:
      `(nll_BT, correct_BT)`, f32.
    """
    logp_BTV = jax.nn.log_softmax(mlm_logits_BTV.astype(jnp.float32), axis=-1)
    logp_target_BT = jnp.take_along_axis(logp_BTV, targets_BT[..., None].astype(jnp.int32), axis=-1)[..., 0]
    log_copy_BT = jax.nn.log_sigmoid(copy_logits_BT)
    log_gen_BT = jax.nn.log_sigmoid(-copy_logits_BT)
    same_BT = inputs_BT == targets_BT
    # Where the input is the target both parts carry mass: log(D + (1 − D) q); elsewhere only the softmax does.
    logp_BT = jnp.where(same_BT, jnp.logaddexp(log_copy_BT, log_gen_BT + logp_target_BT), log_gen_BT + logp_target_BT)
    # The mixture's argmax: the input token (with mass D + (1 − D) q_input) against the softmax's best other token.
    logp_input_BT = jnp.take_along_axis(logp_BTV, inputs_BT[..., None].astype(jnp.int32), axis=-1)[..., 0]
    mass_input_BT = jnp.logaddexp(log_copy_BT, log_gen_BT + logp_input_BT)
    other_BTV = jnp.where(jax.nn.one_hot(inputs_BT, logp_BTV.shape[-1], dtype=bool), -jnp.inf, logp_BTV)
    best_other_BT = jnp.argmax(other_BTV, axis=-1)
    mass_other_BT = log_gen_BT + jnp.max(other_BTV, axis=-1)
    predicted_BT = jnp.where(mass_input_BT >= mass_other_BT, inputs_BT, best_other_BT)
    return -logp_BT, (predicted_BT == targets_BT).astype(jnp.float32)


@register
class AllTokensMlm(ReplaceMlm):
    """MLM of every token over generator-replaced inputs, with a copy mechanism."""

    name = "all_tokens_mlm"
    Config = AllTokensMlmConfig
    heads = ("mlm", "disc_mlm_all")

    def init_inputs(self, batch):
        args, kwargs = super().init_inputs(batch)
        return args, {**kwargs, "discriminator_mlm": "all"}

    def make_loss(self, model, frozen_models=None):
        """`loss(params, batch, rng, ...) -> (loss, (metrics, carry))`: generator pass and samples, then the
        discriminator tower's copy-or-generate prediction of every token."""
        cfg = self.cfg

        def loss_fn(params, batch, rng, *, carry=None, frozen=None, denominators=None, deterministic=False):
            del frozen
            den = self.loss_denominators(batch) if denominators is None else denominators
            gen_rng, disc_rng = jax.random.split(rng)
            gen_loss, gen_acc, corrupted_BT, replaced_BT = self.generate(model, params, batch, gen_rng, den,
                                                                         deterministic)
            out = model.apply({"params": params}, corrupted_BT, **self.model_inputs(batch), discriminator_mlm="all",
                              deterministic=deterministic, rngs={"dropout": disc_rng}, method="run_discriminator")
            originals_BT = _originals(batch)
            # rtd logit > 0 means "replaced": the copy gate is its negation.
            nll_BT, correct_BT = copy_mixture_nll(out.mlm_logits_BTV, -out.rtd_logits_BT, corrupted_BT, originals_BT)
            weights_BT = batch["mask"].astype(jnp.float32)
            tokens = jnp.maximum(den["tokens"], 1e-5)
            mlm_loss = jnp.sum(nll_BT * weights_BT) / tokens
            replaced_w_BT = replaced_BT.astype(jnp.float32) * weights_BT
            loss = cfg.gen_weight * gen_loss + cfg.mlm_weight * mlm_loss
            metrics = {"loss": loss, "gen_mlm_loss": gen_loss, "gen_mlm_accuracy": gen_acc, "mlm_loss": mlm_loss,
                       "mlm_accuracy": jnp.sum(correct_BT * weights_BT) / tokens,
                       "replaced_rate": jnp.sum(replaced_w_BT) / tokens,
                       "replaced_correct_rate": jnp.sum(correct_BT * replaced_w_BT) / tokens,
                       "copy_probability": jnp.sum(jax.nn.sigmoid(-out.rtd_logits_BT) * weights_BT) / tokens,
                       "replaced_fraction": jnp.sum(replaced_w_BT) / jnp.maximum(den["mlm"], 1e-5)}
            return loss, (metrics, carry)

        return loss_fn

    @staticmethod
    def derived_metrics(metrics):
        """Accuracy on the replaced tokens alone (from the normalised counts)."""
        rate, correct = metrics.get("replaced_rate"), metrics.get("replaced_correct_rate")
        if rate is None or correct is None:
            return {}
        return {"replaced_accuracy": correct / rate if rate > 0 else 0.0}


def _originals(batch) -> jax.Array:
    """The uncorrupted ids `[B, T]`: the masked input with the original ids written back at the masked slots."""
    inputs_BT = batch["inputs"]
    rows_BP = jnp.broadcast_to(jnp.arange(inputs_BT.shape[0])[:, None], batch["mlm_positions"].shape)
    real_BP = batch["mlm_weights"] > 0
    return inputs_BT.at[rows_BP, batch["mlm_positions"]].set(
        jnp.where(real_BP, batch["mlm_ids"], inputs_BT[rows_BP, batch["mlm_positions"]]).astype(inputs_BT.dtype))
