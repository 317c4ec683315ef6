"""Fine-tuning losses: pure `loss(params, batch, rng) -> (loss, metrics)` for each head kind.

Every batch row carries a `weight` (1 for a real example, 0 for the padding rows that fill the last evaluation
batch), so means are over real rows only. Losses are computed in float32 (DESIGN.md §5.8).

| kind | loss (as Hugging Face's task models) |
|---|---|
| classification | cross-entropy; optional inverse-frequency class weights for imbalanced labels |
| regression | mean squared error (HF with `num_labels=1`) |
| token_classification | cross-entropy over each word's first piece |
| span | (CE(start) + CE(end)) / 2 over the window's positions (BERT §4.2) |
| multiple_choice | cross-entropy over the N choices (BERT §4.4) |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

LossFn = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


def _weighted_mean(x: jax.Array, w: jax.Array) -> jax.Array:
    return jnp.sum(x * w) / jnp.maximum(jnp.sum(w), 1e-6)


def cross_entropy(logits_BC: jax.Array, labels_B: jax.Array, weights_B: jax.Array,
                  class_weights_C: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy and accuracy over rows with weight > 0.

    With `class_weights_C`, each row's loss is scaled by its class's weight and the mean is taken over the summed
    weights (PyTorch's `CrossEntropyLoss(weight=...)` convention), so the loss stays on the same scale.
    """
    logits_BC = logits_BC.astype(jnp.float32)
    labels_B = labels_B.astype(jnp.int32)
    nll_B = -jnp.take_along_axis(jax.nn.log_softmax(logits_BC, -1), labels_B[..., None], -1)[..., 0]
    row_w = weights_B.astype(jnp.float32)
    loss_w = row_w if class_weights_C is None else row_w * class_weights_C[labels_B]
    accuracy = _weighted_mean((jnp.argmax(logits_BC, -1) == labels_B).astype(jnp.float32), row_w)
    return _weighted_mean(nll_B, loss_w), accuracy


def squared_error(pred_B: jax.Array, targets_B: jax.Array, weights_B: jax.Array) -> jax.Array:
    diff = pred_B.astype(jnp.float32) - targets_B.astype(jnp.float32)
    return _weighted_mean(diff * diff, weights_B.astype(jnp.float32))


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """`N / (C · n_c)`: inverse class frequency, 1 for every class when balanced (sklearn's 'balanced')."""
    counts = np.bincount(labels.astype(np.int64), minlength=num_classes).astype(np.float64)
    if np.any(counts == 0):
        missing = np.flatnonzero(counts == 0).tolist()
        raise ValueError(f"Classes {missing} have no training example, so no class weight; use "
                         "data.balance=none or a larger data.train_examples.")
    return (counts.sum() / (num_classes * counts)).astype(np.float32)


def make_loss(model, kind: str, class_weights_C: np.ndarray | None = None) -> LossFn:
    """`loss_fn(params, batch, rng, deterministic=False) -> (loss, metrics)` for a `heads.ForTask` model.

    The batch holds `inputs`, `mask`, `segment_ids`, `weight` and the labels of the kind (`labels`,
    `label_weights`, or `start_positions` / `end_positions`).
    """
    cw = None if class_weights_C is None else jnp.asarray(class_weights_C, jnp.float32)

    def loss_fn(params, batch: dict[str, Any], rng, deterministic: bool = False):
        out = model.apply({"params": params}, batch["inputs"], segment_ids_BT=batch.get("segment_ids"),
                          mask_BT=batch["mask"], deterministic=deterministic, rngs={"dropout": rng})
        w_B = batch["weight"]
        if kind == "classification":
            loss, acc = cross_entropy(out.logits_BC, batch["labels"], w_B, cw)
            metrics = {"accuracy": acc}
        elif kind == "regression":
            loss = squared_error(out.logits_BC[:, 0], batch["labels"], w_B)
            metrics = {}
        elif kind == "token_classification":
            b, t, c = out.logits_BTC.shape
            w_BT = batch["label_weights"] * w_B[:, None]
            loss, acc = cross_entropy(out.logits_BTC.reshape(b * t, c), batch["labels"].reshape(b * t),
                                      w_BT.reshape(b * t), cw)
            metrics = {"accuracy": acc}
        elif kind == "span":
            # Padding positions cannot be a start or an end: mask them out of the softmax.
            neg = jnp.where(batch["mask"], 0.0, -1e9)
            start_loss, start_acc = cross_entropy(out.start_logits_BT + neg, batch["start_positions"], w_B)
            end_loss, end_acc = cross_entropy(out.end_logits_BT + neg, batch["end_positions"], w_B)
            loss = (start_loss + end_loss) / 2
            metrics = {"start_accuracy": start_acc, "end_accuracy": end_acc}
        elif kind == "multiple_choice":
            loss, acc = cross_entropy(out.logits_BN, batch["labels"], w_B)
            metrics = {"accuracy": acc}
        else:
            raise ValueError(f"Unknown task kind {kind!r}.")
        metrics["loss"] = loss
        return loss, metrics

    return loss_fn


__all__ = ["class_weights", "cross_entropy", "make_loss", "squared_error"]
