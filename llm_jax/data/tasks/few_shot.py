"""K-shot training subsets: class-balanced and determined by a seed (Gao et al. 2021, §3)."""

from __future__ import annotations

from typing import Any

import numpy as np


def labels_of(records: list[dict[str, Any]]) -> np.ndarray | None:
    """The per-example labels of a classification-like split (None for span and token tasks, or hidden labels)."""
    if not records or "label" not in records[0] or isinstance(records[0]["label"], list):
        return None
    if any(r["label"] is None for r in records):
        return None
    return np.asarray([r["label"] for r in records])


def few_shot_subset(labels: np.ndarray | None, num_examples: int, k: int, seed: int) -> np.ndarray:
    """Indices of a seed-determined training subset of `k` examples, class-balanced when labels are given.

    Classes get `k // C` examples each; the `k mod C` left over go to classes drawn by the seed (so counts differ
    by at most one). A class with fewer examples than its share gives all it has, and the shortfall is drawn from
    the other classes. As in the few-shot protocol of Gao et al. (2021, §3) the subset is balanced and resampled
    per seed, but `k` counts all classes together. Without labels (span, token tasks, regression) the subset is
    a uniform draw.

    Args:
      labels: integer labels of the `num_examples` training examples, or None.
      num_examples: size of the training split.
      k: subset size (`k ≥ num_examples` returns everything).
      seed: determines the subset.

    Returns:
      Sorted int64 indices into the training split.
    """
    if k < 1:
        raise ValueError(f"A training subset needs k ≥ 1 examples (got {k}).")
    rng = np.random.default_rng([seed, 104_729])
    if k >= num_examples:
        return np.arange(num_examples, dtype=np.int64)
    if labels is None or labels.dtype.kind == "f":
        return np.sort(rng.choice(num_examples, size=k, replace=False)).astype(np.int64)
    classes = np.unique(labels)
    share = np.full(len(classes), k // len(classes))
    share[rng.choice(len(classes), size=k % len(classes), replace=False)] += 1
    chosen = []
    for c, n in zip(classes, share):
        pool = np.flatnonzero(labels == c)
        chosen.append(rng.permutation(pool)[:n])
    picked = np.concatenate(chosen)
    if len(picked) < k:  # some classes were smaller than their share: fill up from the rest, uniformly
        rest = np.setdiff1d(np.arange(num_examples), picked)
        picked = np.concatenate([picked, rng.choice(rest, size=k - len(picked), replace=False)])
    return np.sort(picked).astype(np.int64)


__all__ = ["few_shot_subset", "labels_of"]
