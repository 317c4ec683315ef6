"""Knowledge distillation of a masked LM (Sanh et al. 2019, DistilBERT §2–3; Hinton et al. 2015).

The student is trained on the teacher's soft targets plus the usual MLM loss plus a cosine loss that aligns the
directions of the two models' last hidden states:

    L = α_ce · T² · KL(softmax(t / T) ‖ softmax(s / T)) + α_mlm · L_mlm + α_cos · (1 − cos(h_t, h_s))

* the KL (the paper's `L_ce = Σ t_i log s_i`, up to the teacher's entropy, which has no gradient) is taken over the
  masked positions, where the MLM head is evaluated; T² keeps its gradient scale independent of T (Hinton §2);
* `L_mlm` is `Mlm`'s loss over the same positions;
* the cosine term is PyTorch's `CosineEmbeddingLoss(target=1)` over every non-padding position.

Defaults are the reference recipe's (`transformers/examples/research_projects/distillation`: α_ce 5, α_mlm 2,
α_cos 1, T = 2). Rows are FULL-SENTENCES with dynamic masking and no NSP ("very large batches … with dynamic
masking and without the next sentence prediction objective", §3): this class is `Mlm` with a teacher.

The teacher is a `required_models` entry: the loop loads it from `objective.teacher` with `load_pretrained` and
passes its params as a frozen, non-donated argument of the step; it runs forward only, deterministically. The
student must read the teacher's token ids: the DistilBERT recipe (`configs/distilbert.py`) sets
`model.init_from` to the teacher too, which brings the teacher's tokenizer and starts the student from one layer
out of two (`llm_jax.models.distilbert.params_from`); `make_loss` refuses a teacher of another vocabulary or width.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from llm_jax.objectives.base import register
from llm_jax.objectives.mlm import Mlm, MlmConfig


@dataclasses.dataclass(frozen=True)
class DistillConfig(MlmConfig):
    """Distillation hyperparameters (the MLM ones of `MlmConfig`, plus the teacher and the loss weights).

    Attributes:
      name: `distill`.
      teacher: the teacher: a run, checkpoint, model or Hugging Face directory (`load_pretrained`).
      alpha_ce: weight of the soft-target loss `T² · KL(teacher_T ‖ student_T)`.
      alpha_mlm: weight of the MLM loss on the true tokens.
      alpha_cos: weight of the hidden-state cosine loss.
      temperature: T of the softened distributions (Hinton et al. 2015 §2).
    """

    name: str = "distill"
    teacher: str = ""
    alpha_ce: float = 5.0
    alpha_mlm: float = 2.0
    alpha_cos: float = 1.0
    temperature: float = 2.0

    def validate(self):
        super().validate()
        if self.temperature <= 0:
            raise ValueError(f"objective.temperature={self.temperature} must be > 0.")
        weights = (self.alpha_ce, self.alpha_mlm, self.alpha_cos)
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"objective.alpha_ce/alpha_mlm/alpha_cos={weights} must be ≥ 0 with a positive sum.")
        return self


def soft_target_kl(teacher_logits_BPV: jax.Array, student_logits_BPV: jax.Array, temperature: float) -> jax.Array:
    """`KL(softmax(t / T) ‖ softmax(s / T))` per position, in float32 (PyTorch's `KLDivLoss` summed over V).

    Args:
      teacher_logits_BPV / student_logits_BPV: logits over V at the same positions.
      temperature: T.

    Returns:
      `[B, P]` KL divergences (nats, ≥ 0).
    """
    t_logp_BPV = jax.nn.log_softmax(teacher_logits_BPV.astype(jnp.float32) / temperature, axis=-1)
    s_logp_BPV = jax.nn.log_softmax(student_logits_BPV.astype(jnp.float32) / temperature, axis=-1)
    return jnp.sum(jnp.exp(t_logp_BPV) * (t_logp_BPV - s_logp_BPV), axis=-1)


def cosine_distance(a_BTD: jax.Array, b_BTD: jax.Array, eps: float = 1e-8) -> jax.Array:
    """`1 − cos(a, b)` per position (PyTorch's `CosineEmbeddingLoss` with target 1), in float32: `[B, T]`."""
    a_BTD, b_BTD = a_BTD.astype(jnp.float32), b_BTD.astype(jnp.float32)
    dot_BT = jnp.sum(a_BTD * b_BTD, axis=-1)
    # Why the product of squared norms under one sqrt, clamped: PyTorch's `cosine_similarity` form, finite at 0.
    norms_BT = jnp.sqrt(jnp.maximum(jnp.sum(a_BTD ** 2, -1) * jnp.sum(b_BTD ** 2, -1), eps ** 2))
    return 1.0 - dot_BT / norms_BT


@register
class Distill(Mlm):
    """Soft-target CE + MLM + hidden cosine against a frozen teacher (DistilBERT)."""

    name = "distill"
    Config = DistillConfig
    required_models = {"teacher": "a teacher masked LM of the student's vocabulary and width (e.g. a BERT run)"}
    progress_keys = ("loss", "ce_loss", "mlm_loss", "cos_loss", "tokens_per_s")
    frozen_heads = {"teacher": ("mlm",)}  # the teacher's MLM logits at the predicted positions (and its hidden)

    def loss_denominators(self, batch):
        """Predicted positions (`mlm`, for the CE and MLM terms) and non-padding tokens (`tokens`, for the cosine)."""
        return {**super().loss_denominators(batch), "tokens": jnp.sum(batch["mask"].astype(jnp.float32))}

    def make_loss(self, model, frozen_models=None):
        """`loss(params, batch, rng, *, carry, frozen, denominators, deterministic) -> (loss, (metrics, carry))`.

        Raises:
          ValueError: no teacher module, or a teacher whose vocabulary or width differs from the student's.
        """
        if not frozen_models or "teacher" not in frozen_models:
            raise ValueError("The distill objective needs its teacher: set --config.objective.teacher=DIR.")
        teacher = frozen_models["teacher"]
        t_cfg, s_cfg = teacher.cfg, model.cfg
        if t_cfg.vocab_size != self.vocab_size or t_cfg.width != s_cfg.width:
            raise ValueError(f"The teacher (vocabulary {t_cfg.vocab_size}, width {t_cfg.width}) and the student "
                             f"(vocabulary {self.vocab_size}, width {s_cfg.width}) must share vocabulary and width; "
                             "start the student from the teacher: --config.model.init_from=TEACHER_DIR.")
        c = self.cfg
        t2 = c.temperature ** 2

        def loss_fn(params, batch, rng, *, carry=None, frozen=None, denominators=None, deterministic=False):
            den = self.loss_denominators(batch) if denominators is None else denominators
            args, kwargs = self.init_inputs(batch)
            # The teacher runs forward only: frozen params, no dropout, no gradient.
            t_out = jax.lax.stop_gradient(teacher.apply({"params": frozen["teacher"]}, *args, **kwargs,
                                                        deterministic=True))
            s_out = self._apply(model, params, batch, rng, deterministic)
            mlm_loss, metrics = self._mlm_terms(s_out, batch, den)
            weights_BP = batch["mlm_weights"].astype(jnp.float32)
            kl_BP = soft_target_kl(t_out.mlm_logits_BTV, s_out.mlm_logits_BTV, c.temperature)
            ce_loss = t2 * jnp.sum(kl_BP * weights_BP) / jnp.maximum(den["mlm"], 1e-5)
            mask_BT = batch["mask"].astype(jnp.float32)
            cos_BT = cosine_distance(t_out.hidden_BTD, s_out.hidden_BTD)
            cos_loss = jnp.sum(cos_BT * mask_BT) / jnp.maximum(den["tokens"], 1e-5)
            loss = c.alpha_ce * ce_loss + c.alpha_mlm * mlm_loss + c.alpha_cos * cos_loss
            metrics.update(ce_loss=ce_loss, cos_loss=cos_loss, loss=loss)
            return loss, (metrics, carry)

        return loss_fn
