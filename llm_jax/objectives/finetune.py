"""Fine-tuning losses: the task objective of each head kind, with exact gradient accumulation.

Every batch row carries a `weight` (1 for a real example, 0 for the padding rows that fill the last evaluation
batch), so means are over real rows only. Losses are computed in float32 (DESIGN.md §5.9), normalised by the
global batch's `loss_denominators` (see `llm_jax.objectives.base`), so gradient accumulation gives the full
batch's loss and update.

| kind | loss (as Hugging Face's task models) |
|---|---|
| classification | cross-entropy; optional inverse-frequency class weights for imbalanced labels |
| regression | mean squared error (HF with `num_labels=1`) |
| token_classification | cross-entropy over each word's first piece |
| span | (CE(start) + CE(end)) / 2 over the window's positions (BERT §4.2) |
| multiple_choice | cross-entropy over the N choices (BERT §4.4) |

The auxiliary LM loss (GPT-1 §3.2, eq. 3: `L3(C) = L2(C) + λ · L1(C)`, λ = 0.5 in §4.1; "including language
modeling as an auxiliary objective to the fine-tuning helped learning by (a) improving generalization of the
supervised model, and (b) accelerating convergence"): with `aux_lm_weight` λ > 0, a causal family also predicts
every next token of its task inputs (the transformed sequence, special tokens included, as the original fine-tuning
code's `lm_losses` over `M[:, 1:]`; every choice and both orders of a pair), and the loss is
`task_loss + λ · lm_loss`. `lm_loss` is the mean next-token cross-entropy over the global batch's predicted tokens
(Hugging Face's `OpenAIGPTDoubleHeadsModel` LM loss; the original code averaged per row first), so gradient
accumulation stays exact. The metrics log both terms: `task_loss`, `lm_loss` and their sum `loss`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from llm_jax.models.heads import KINDS
from llm_jax.objectives.base import weighted_cross_entropy


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """`N / (C · n_c)`: inverse class frequency, 1 for every class when balanced (sklearn's 'balanced')."""
    counts = np.bincount(labels.astype(np.int64), minlength=num_classes).astype(np.float64)
    if np.any(counts == 0):
        missing = np.flatnonzero(counts == 0).tolist()
        raise ValueError(f"Classes {missing} have no training example, so no class weight; use "
                         "data.balance=none or a larger data.train_examples.")
    return (counts.sum() / (num_classes * counts)).astype(np.float32)


class TaskObjective:
    """The loss of a `heads.ForTask` model for one task kind (the fine-tuning counterpart of an `Objective`).

    Args:
      kind: one of `KINDS`.
      class_weights_C: per-class loss weights (`class_weights`), or None.
      aux_lm_weight: λ of the auxiliary LM loss (GPT-1 §3.2); 0 = none. The model must be a causal family's.

    Raises:
      ValueError: an unknown kind, or a negative `aux_lm_weight`.
    """

    def __init__(self, kind: str, class_weights_C: np.ndarray | None = None, aux_lm_weight: float = 0.0):
        if kind not in KINDS:
            raise ValueError(f"Unknown task kind {kind!r}; choose one of {KINDS}.")
        if not aux_lm_weight >= 0:
            raise ValueError(f"train.aux_lm_weight={aux_lm_weight} must be ≥ 0 (0 = no auxiliary LM loss).")
        self.kind = kind
        self.cw = None if class_weights_C is None else jnp.asarray(class_weights_C, jnp.float32)
        self.aux_lm_weight = float(aux_lm_weight)

    @staticmethod
    def lm_targets(batch) -> tuple[jax.Array, jax.Array, jax.Array]:
        """`(inputs_RT, targets_RT, weights_RT)` of the auxiliary LM loss: every row of `inputs` (choices and
        orders flattened), its tokens shifted by one, weight 1 where both a position and its next token are real
        (times the example's `weight`). The last position predicts nothing (target 0, weight 0)."""
        inputs, mask = batch["inputs"], batch["mask"].astype(jnp.float32)
        t = inputs.shape[-1]
        w = batch["weight"].astype(jnp.float32).reshape((-1,) + (1,) * (inputs.ndim - 1))
        targets = jnp.concatenate([inputs[..., 1:], jnp.zeros_like(inputs[..., :1])], axis=-1)
        weights = jnp.concatenate([mask[..., :-1] * mask[..., 1:], jnp.zeros_like(mask[..., :1])], axis=-1) * w
        return inputs.reshape(-1, t), targets.reshape(-1, t), weights.reshape(-1, t)

    def init_inputs(self, batch):
        """`(args, kwargs)` of the model contract from a (dummy) batch."""
        return (batch["inputs"],), {"mask_BT": batch["mask"], "segment_ids_BT": batch.get("segment_ids")}

    def init_carry(self, batch_size: int, model_cfg):
        del batch_size, model_cfg
        return {}

    def _token_weights(self, batch):
        return batch["label_weights"].astype(jnp.float32) * batch["weight"].astype(jnp.float32)[:, None]

    def loss_denominators(self, batch) -> dict[str, jax.Array]:
        """`rows` (real rows), and `loss` / `accuracy` where the kind weighs positions or classes."""
        w_B = batch["weight"].astype(jnp.float32)
        out = {"rows": jnp.sum(w_B)}
        if self.kind == "token_classification":
            w_BT = self._token_weights(batch)
            out["accuracy"] = jnp.sum(w_BT)
            out["loss"] = out["accuracy"] if self.cw is None else jnp.sum(w_BT * self.cw[batch["labels"]])
        elif self.kind == "classification":
            out["accuracy"] = out["rows"]
            out["loss"] = out["rows"] if self.cw is None else jnp.sum(w_B * self.cw[batch["labels"]])
        if self.aux_lm_weight > 0:
            out["lm"] = jnp.sum(self.lm_targets(batch)[2])  # the predicted tokens of the auxiliary LM loss
        return out

    def make_loss(self, model):
        """`loss(params, batch, rng, *, carry, frozen, denominators, deterministic) -> (loss, (metrics, carry))`.

        The batch holds `inputs`, `mask`, `segment_ids`, `weight` and the labels of the kind (`labels`,
        `label_weights`, or `start_positions` / `end_positions`).
        """
        kind, cw, lm_weight = self.kind, self.cw, self.aux_lm_weight

        def loss_fn(params, batch: dict[str, Any], rng, *, carry=None, frozen=None, denominators=None,
                    deterministic: bool = False):
            del frozen
            den = self.loss_denominators(batch) if denominators is None else denominators
            args, kwargs = self.init_inputs(batch)
            if lm_weight > 0:
                kwargs["with_lm_logits"] = True
            out = model.apply({"params": params}, *args, **kwargs, deterministic=deterministic,
                              rngs={"dropout": rng})
            w_B = batch["weight"]
            if kind == "classification":
                loss, acc = weighted_cross_entropy(out.logits_BC, batch["labels"], w_B, den["loss"], cw,
                                                   den["accuracy"])
                metrics = {"accuracy": acc}
            elif kind == "regression":
                diff_B = out.logits_BC[:, 0].astype(jnp.float32) - batch["labels"].astype(jnp.float32)
                loss = jnp.sum(diff_B * diff_B * w_B) / jnp.maximum(den["rows"], 1e-6)
                metrics = {}
            elif kind == "token_classification":
                b, t, c = out.logits_BTC.shape
                loss, acc = weighted_cross_entropy(out.logits_BTC.reshape(b * t, c), batch["labels"].reshape(b * t),
                                                   self._token_weights(batch).reshape(b * t), den["loss"], cw,
                                                   den["accuracy"])
                metrics = {"accuracy": acc}
            elif kind == "span":
                # Padding positions cannot be a start or an end: mask them out of the softmax.
                neg = jnp.where(batch["mask"], 0.0, -1e9)
                start_loss, start_acc = weighted_cross_entropy(out.start_logits_BT + neg, batch["start_positions"],
                                                               w_B, den["rows"])
                end_loss, end_acc = weighted_cross_entropy(out.end_logits_BT + neg, batch["end_positions"], w_B,
                                                           den["rows"])
                loss = (start_loss + end_loss) / 2
                metrics = {"start_accuracy": start_acc, "end_accuracy": end_acc}
            else:  # multiple_choice
                loss, acc = weighted_cross_entropy(out.logits_BN, batch["labels"], w_B, den["rows"])
                metrics = {"accuracy": acc}
            if lm_weight > 0:
                _, targets_RT, weights_RT = self.lm_targets(batch)
                lm_loss, _ = weighted_cross_entropy(out.lm_logits_RTV, targets_RT, weights_RT, den["lm"])
                metrics.update(task_loss=loss, lm_loss=lm_loss)
                loss = loss + lm_weight * lm_loss
            metrics["loss"] = loss
            return loss, (metrics, carry)

        return loss_fn


def make_loss(model, kind: str, class_weights_C: np.ndarray | None = None, aux_lm_weight: float = 0.0):
    """The loss of `TaskObjective(kind, class_weights_C, aux_lm_weight)` for `model`."""
    return TaskObjective(kind, class_weights_C, aux_lm_weight).make_loss(model)


__all__ = ["KINDS", "TaskObjective", "class_weights", "make_loss"]
