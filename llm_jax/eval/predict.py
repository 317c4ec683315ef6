"""Predictions of a fine-tuning model over a task split, their metrics, and the majority-class baseline.

`Predictor` runs the model (dropout off) over fixed-size batches — the last one padded, so one compiled shape
serves every split — and returns host arrays. `score` turns those outputs into per-example predictions and the
task's metrics; `majority_baseline` is what always answering the training set's most frequent label scores,
the floor any fine-tuned model must clear.
"""

from __future__ import annotations

import collections
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from llm_jax import sharding
from llm_jax.data.features import Encoded, best_spans
from llm_jax.data.tasks import TaskSpec
from llm_jax.eval import metrics as metrics_lib
from llm_jax.layers import check_ids

# The arrays a model call reads (labels stay on the host).
MODEL_KEYS = ("inputs", "mask", "segment_ids")


class Predictor:
    """Jitted, batched, deterministic forward passes of a `heads.ForTask` model.

    Args:
      model: the `ForTask` module.
      kind: its task kind.
      mesh: the device mesh; batches are split over its data axes, outputs gathered to every process.
      batch_size: global rows per forward pass (a multiple of the mesh's data-parallel ways).
    """

    def __init__(self, model, kind: str, mesh: Mesh, batch_size: int):
        ways = sharding.batch_axis_size(mesh)
        if batch_size % ways or batch_size % jax.process_count():
            raise ValueError(f"data.eval_batch_size={batch_size} must be divisible by the {ways} data-parallel "
                             f"shards and the {jax.process_count()} processes.")
        self.mesh, self.kind, self.batch_size, self.cfg = mesh, kind, batch_size, model.cfg

        def forward(params, batch):
            out = model.apply({"params": params}, batch["inputs"], segment_ids_BT=batch["segment_ids"],
                              mask_BT=batch["mask"], deterministic=True)
            if kind in ("classification", "regression"):
                return {"logits": out.logits_BC}
            if kind == "token_classification":
                return {"tags": out.logits_BTC.argmax(-1)}
            if kind == "span":
                return {"start": out.start_logits_BT, "end": out.end_logits_BT}
            return {"logits": out.logits_BN}

        self._forward = jax.jit(forward, out_shardings=sharding.replicated(mesh))

    def __call__(self, params, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs for every row of `arrays` (`inputs`, `mask`, `segment_ids`, `[N, T]` or `[N, C, T]`).

        Raises:
          ValueError: token or segment ids outside the model's tables (checked here, on the host: inside the
            jitted forward an out-of-range id would silently give NaN).
        """
        check_ids(arrays["inputs"], self.cfg.vocab_size, "token ids (model.vocab_size)")
        check_ids(arrays["segment_ids"], self.cfg.num_token_types, "token type (segment) ids")
        n = len(arrays["inputs"])
        b = self.batch_size
        p, n_proc = jax.process_index(), jax.process_count()
        per = b // n_proc
        outs = []
        for start in range(0, n, b):
            rows = {k: arrays[k][start:start + b] for k in MODEL_KEYS}
            short = b - len(rows["inputs"])
            if short:  # pad the last batch with copies of its first row (their outputs are dropped)
                rows = {k: np.concatenate([v, np.repeat(v[:1], short, 0)]) for k, v in rows.items()}
            local = {k: v[p * per:(p + 1) * per] for k, v in rows.items()}
            outs.append(jax.device_get(self._forward(params, sharding.global_batch_from_local(local, self.mesh))))
        return {k: np.concatenate([o[k] for o in outs])[:n] for k in outs[0]}


def has_labels(spec: TaskSpec, split: str, records: list[dict[str, Any]]) -> bool:
    """Whether `split` can be scored: its labels are known.

    Hidden labels are marked where the task is loaded — `spec.test_labels=False` for a test split whose labels are
    not public, and `label: None` on each such record — so no label value (e.g. -1, a valid regression score)
    means "hidden" here.

    Raises:
      ValueError: a split where some records have labels and some do not.
    """
    if split == "test" and not spec.test_labels:
        return False
    if spec.kind == "span":
        return True
    if not records:
        return False
    unlabelled = sum(r.get("label") is None for r in records)
    if unlabelled and unlabelled < len(records):
        raise ValueError(f"{unlabelled} of the {len(records)} {split} records of {spec.name} have no label; a split "
                         "is labelled throughout (metrics) or not at all (predictions only).")
    return not unlabelled


def score(spec: TaskSpec, split: str, records: list[dict[str, Any]], encoded: Encoded,
          outputs: dict[str, np.ndarray], *, max_answer_length: int = 30) -> tuple[dict[str, float], list[dict]]:
    """Per-example predictions and the task's metrics (empty when the split has no labels, e.g. GLUE test).

    Returns:
      `(metrics, rows)`: metric name → value, and one JSON-able prediction row per example.
    """
    kind = spec.kind
    labelled = has_labels(spec, split, records)
    rows: list[dict[str, Any]] = []
    if kind == "span":
        unknown = [m for m in spec.metrics if m not in metrics_lib.SPAN_METRICS]
        if unknown:  # why refuse: dropping them would leave early stopping without its metric (a KeyError later)
            raise ValueError(f"Span tasks are scored by {list(metrics_lib.SPAN_METRICS)}, not {unknown}; fix "
                             "task.metrics.")
        contexts = [r["context"] for r in records]
        answers = best_spans(encoded.spans, outputs["start"], outputs["end"], contexts,
                             max_answer_length=max_answer_length, allow_null=spec.unanswerable)
        rows = [{"id": r["id"], "prediction": a, "answers": r["answers"]} for r, a in zip(records, answers)]
        scores = metrics_lib.squad_scores(answers, [r["answers"] for r in records])
        return {m: scores[m] for m in spec.metrics}, rows
    if kind == "token_classification":
        tags = outputs["tags"]
        w = encoded.arrays["label_weights"] > 0
        for i, r in enumerate(records):
            pred = tags[i][w[i]].tolist()
            row = {"idx": r["idx"], "prediction": pred}
            if labelled:
                row["label"] = r["label"][:len(pred)]
            rows.append(row)
        if not labelled:
            return {}, rows
        return metrics_lib.compute(spec.metrics, encoded.arrays["labels"][w], tags[w]), rows
    if kind == "regression":
        pred = outputs["logits"][:, 0]
        rows = [{"idx": r["idx"], "prediction": float(v), **({"label": r["label"]} if labelled else {})}
                for r, v in zip(records, pred)]
        labels = np.asarray([r["label"] for r in records], np.float64) if labelled else None
    else:  # classification, multiple_choice
        logits = outputs["logits"]
        pred = logits.argmax(-1)
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs = probs / probs.sum(-1, keepdims=True)
        for r, k, pr in zip(records, pred.tolist(), probs):
            row = {"idx": r["idx"], "prediction": k}
            if spec.label_names and kind == "classification":
                row["prediction_name"] = spec.label_names[k]
            row["probabilities"] = [round(float(x), 6) for x in pr]
            if labelled:
                row["label"] = r["label"]
            rows.append(row)
        labels = np.asarray([r["label"] for r in records]) if labelled else None
    if labels is None:
        return {}, rows
    return metrics_lib.compute(spec.metrics, labels, pred), rows


def majority_baseline(spec: TaskSpec, train_records: list[dict[str, Any]], split: str,
                      records: list[dict[str, Any]], encoded: Encoded | None = None) -> float | None:
    """The task's main metric for a constant prediction fitted on the training split.

    Classification / multiple choice: the most frequent training label (ties: the smallest id). Token
    classification: the most frequent training tag on every word. Regression: the training mean (a constant has
    no correlation: 0). Span: always the empty answer. None when the split has no labels.
    """
    if not has_labels(spec, split, records):
        return None
    main = spec.main_metric
    if spec.kind == "span":
        return metrics_lib.squad_scores([""] * len(records), [r["answers"] for r in records])[main]
    if spec.kind == "token_classification":
        counts = collections.Counter(t for r in train_records for t in r["label"])
        top = min(counts, key=lambda t: (-counts[t], t))
        gold = np.asarray([t for r in records for t in r["label"]])
        return metrics_lib.compute([main], gold, np.full_like(gold, top))[main]
    gold = np.asarray([r["label"] for r in records])
    if spec.kind == "regression":
        const = float(np.mean([r["label"] for r in train_records]))
        return metrics_lib.compute([main], gold, np.full(len(gold), const))[main]
    counts = collections.Counter(int(r["label"]) for r in train_records)
    top = min(counts, key=lambda c: (-counts[c], c))
    return metrics_lib.compute([main], gold, np.full_like(gold, top))[main]


__all__ = ["MODEL_KEYS", "Predictor", "has_labels", "majority_baseline", "score"]
