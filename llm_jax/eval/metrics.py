"""Task metrics in numpy: accuracy, F1 (binary / macro), Matthews correlation, Pearson / Spearman, SQuAD EM / F1.

Definitions follow the references the GLUE and SQuAD leaderboards use (scikit-learn's `f1_score` /
`matthews_corrcoef`, scipy's `pearsonr` / `spearmanr`, the official SQuAD evaluation scripts) and are checked
against them in the tests. Degenerate inputs give what those references give (e.g. an F1 with no predicted and
no true positives is 0; a correlation with a constant side is 0 here, where scipy warns and returns NaN, because
a constant predictor has no linear relation to the target and a NaN would poison early stopping).
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Callable, Sequence

import numpy as np

# ---------------------------------------------------------------------------------------- classification


def accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Fraction of exact matches."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    return float(np.mean(labels == predictions)) if labels.size else 0.0


def _f1_per_class(labels: np.ndarray, predictions: np.ndarray, classes: np.ndarray) -> np.ndarray:
    tp = np.array([np.sum((predictions == c) & (labels == c)) for c in classes], np.float64)
    fp = np.array([np.sum((predictions == c) & (labels != c)) for c in classes], np.float64)
    fn = np.array([np.sum((predictions != c) & (labels == c)) for c in classes], np.float64)
    denom = 2 * tp + fp + fn
    # 2TP / (2TP + FP + FN) is F1; with no TP, FP or FN the class is absent everywhere and scores 0 (sklearn).
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def f1_binary(labels: np.ndarray, predictions: np.ndarray, positive: int = 1) -> float:
    """F1 of the positive class (GLUE's MRPC / QQP F1)."""
    return float(_f1_per_class(np.asarray(labels), np.asarray(predictions), np.array([positive]))[0])


def f1_macro(labels: np.ndarray, predictions: np.ndarray, num_classes: int | None = None) -> float:
    """Unweighted mean of the per-class F1 over the classes present in labels or predictions (sklearn's
    `average='macro'`), or over `range(num_classes)` when given."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    classes = (np.arange(num_classes) if num_classes is not None
               else np.union1d(np.unique(labels), np.unique(predictions)))
    return float(np.mean(_f1_per_class(labels, predictions, classes))) if classes.size else 0.0


def matthews_corrcoef(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Multi-class Matthews correlation (Gorodkin 2004), as sklearn computes it: CoLA's metric."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    classes = np.union1d(np.unique(labels), np.unique(predictions))
    index = {c: i for i, c in enumerate(classes.tolist())}
    confusion = np.zeros((len(classes), len(classes)), np.float64)
    for y, p in zip(labels.tolist(), predictions.tolist()):
        confusion[index[y], index[p]] += 1
    t_k, p_k = confusion.sum(1), confusion.sum(0)
    c, s = np.trace(confusion), confusion.sum()
    cov_yp = c * s - t_k @ p_k
    cov_yy, cov_pp = s * s - t_k @ t_k, s * s - p_k @ p_k
    if cov_yy * cov_pp == 0:
        return 0.0
    return float(cov_yp / np.sqrt(cov_yy * cov_pp))


# -------------------------------------------------------------------------------------------- regression


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r (STS-B); 0 when either side is constant."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    xc, yc = x - x.mean(), y - y.mean()
    denom = np.sqrt(np.sum(xc * xc) * np.sum(yc * yc))
    return float(np.sum(xc * yc) / denom) if denom > 0 else 0.0


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (scipy's `rankdata(method='average')`)."""
    x = np.asarray(x)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # Start of each run of equal values, and each run's average rank.
    starts = np.concatenate([[True], sorted_x[1:] != sorted_x[:-1]])
    run_id = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.concatenate([first[1:], [len(x)]]) - 1
    ranks = np.empty(len(x), np.float64)
    ranks[order] = ((first + last) / 2.0 + 1.0)[run_id]
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's ρ: Pearson's r of the average ranks."""
    return pearson(rankdata(x), rankdata(y))


def mean_squared_error(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(np.mean((x - y) ** 2)) if x.size else 0.0


# ----------------------------------------------------------------------------------------------- spans


def normalize_answer(text: str) -> str:
    """The official SQuAD normalisation: lower case, drop punctuation, drop the articles a/an/the, and collapse
    white space (in that order, as `evaluate-v2.0.py` does)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """Bag-of-tokens F1 after normalisation. SQuAD 2.0 rule: if either side is empty, 1 when both are, else 0."""
    pred_toks, gold_toks = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred_toks or not gold_toks:
        return float(pred_toks == gold_toks)
    common = collections.Counter(pred_toks) & collections.Counter(gold_toks)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_toks), same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean EM and F1 (in %, as the official scripts print) over examples, each the max over its gold answers.

    An example with no gold answer is unanswerable (SQuAD 2.0): its only gold is the empty string.
    """
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} examples; give one per example.")
    em, f1 = [], []
    for pred, answers in zip(predictions, golds):
        answers = [a for a in answers if normalize_answer(a)] or [""]
        em.append(max(exact_match(pred, a) for a in answers))
        f1.append(max(token_f1(pred, a) for a in answers))
    n = max(len(em), 1)
    return {"exact_match": 100.0 * sum(em) / n, "f1": 100.0 * sum(f1) / n}


# --------------------------------------------------------------------------------------------- registry

# name → (fn(labels, predictions) -> float, what `predictions` are)
METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": accuracy,
    "f1": f1_binary,
    "macro_f1": f1_macro,
    "mcc": matthews_corrcoef,
    "pearson": pearson,
    "spearman": spearman,
    "mse": mean_squared_error,
}
SPAN_METRICS = ("exact_match", "f1")
# Metrics where lower is better (early stopping needs the direction).
LOWER_IS_BETTER = frozenset({"mse"})


def compute(names: Sequence[str], labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """The named metrics of `predictions` against `labels` (classification / regression / token tags)."""
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"Unknown metric(s) {unknown}; known: {sorted(METRICS)} (and {SPAN_METRICS} for span tasks).")
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.shape != predictions.shape:
        raise ValueError(f"Labels of shape {labels.shape} and predictions of shape {predictions.shape}; give one "
                         "prediction per label.")
    # Why refuse: a hidden label (None) or a NaN would make every metric NaN and poison early stopping silently.
    if labels.dtype.kind not in "biuf" or (labels.dtype.kind == "f" and not np.isfinite(labels).all()):
        raise ValueError("Some labels are not numbers (None for a hidden label, or NaN); score only splits whose "
                         "labels are all known.")
    return {n: METRICS[n](labels, predictions) for n in names}


__all__ = ["LOWER_IS_BETTER", "METRICS", "SPAN_METRICS", "accuracy", "compute", "exact_match", "f1_binary",
           "f1_macro", "matthews_corrcoef", "mean_squared_error", "normalize_answer", "pearson", "rankdata",
           "spearman", "squad_scores", "token_f1"]
