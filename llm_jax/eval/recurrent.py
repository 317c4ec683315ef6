"""Perplexity of a segment-recurrent language model over a long text, with memory (Transformer-XL, Dai et al. 2019
§3.2 and §4.4), and the fixed-context baseline it is compared with.

* `recurrent_perplexity`: the text is read segment by segment (T tokens each) and every segment attends to the
  memory of the previous ones (at most `mem_len` positions per layer), optionally with `clamp_len` and
  `same_length` (the paper's evaluation setting); `mem_len = 0` reads the segments independently. The memory
  starts empty and grows to `mem_len` (one compilation per memory length reached, all cached by `jax.jit`).
* `sliding_window_perplexity`: the vanilla model's evaluation (Al-Rfou et al. 2018, as Dai et al. §3.1 describe
  it): for every position a window of the T tokens ending there is processed from scratch and only its last
  prediction is kept, so every prediction sees T tokens of context at the cost of T× the computation.

Both score every next-token prediction of the text (the first token is context only) and report the mean negative
log-likelihood in nats, its exponential (perplexity), the number of predictions and the wall time. The model is any
family whose Config provides `with_memory(mem_len=…, clamp_len=…, same_length=…)` and whose pretraining module
follows the model contract `apply({"params": p}, tokens_BT, labels_BT=…, memory=…, mask_BT=…)` →
`(nll_BT, memory)`. What `llm-jax evaluate --task perplexity` wires in.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from llm_jax import models


@dataclasses.dataclass(frozen=True)
class PerplexityResult:
    """One evaluation.

    Attributes:
      nll: mean negative log-likelihood per prediction (nats).
      perplexity: `exp(nll)`.
      predictions: next-token predictions scored.
      seconds: wall time of the evaluation (compilation included on the first call with a shape).
      method: `"recurrent"` or `"sliding_window"`.
      seg_len: T, tokens per segment (recurrent) or per window (sliding).
      mem_len: memory positions per layer (recurrent; 0 for the sliding window).
      clamp_len, same_length: the relative-position settings it ran with.
    """

    nll: float
    perplexity: float
    predictions: int
    seconds: float
    method: str
    seg_len: int
    mem_len: int
    clamp_len: int
    same_length: bool

    @property
    def predictions_per_s(self) -> float:
        return self.predictions / max(self.seconds, 1e-9)


def _streams(ids: np.ndarray, seg_len: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets `[B, N·T]` of B parallel streams cut from `ids` (the tail that fills no segment dropped).

    Raises:
      ValueError: too short a text for one segment per stream.
    """
    ids = np.asarray(ids, np.int32).reshape(-1)
    per_stream = (ids.size - 1) // batch_size
    n = per_stream // seg_len * seg_len
    if n < 1:
        raise ValueError(f"A text of {ids.size} tokens has no full segment of {seg_len} predictions per stream for "
                         f"{batch_size} stream(s); use a longer text, a shorter segment or fewer streams.")
    starts = np.arange(batch_size)[:, None] * per_stream
    index = starts + np.arange(n)[None, :]
    return ids[index], ids[index + 1]


def _memory_config(family: str, cfg: Any, mem_len: int, clamp_len: int | None, same_length: bool | None):
    if not hasattr(cfg, "with_memory"):
        raise ValueError(f"The {family} model has no memory (its Config has no with_memory): evaluate it with the "
                         "sliding window, or use a segment-recurrent family such as transfo_xl.")
    return cfg.with_memory(mem_len=mem_len, clamp_len=clamp_len, same_length=same_length)


# Why cached per (family, Config): a repeated evaluation (a benchmark's timed second run, several memory lengths
# sharing one) reuses the compiled steps.
@functools.lru_cache(maxsize=16)
def _segment_step(family: str, cfg: Any):
    model = models.build(family, cfg)

    @jax.jit
    def step(p, memory, x_BT, y_BT):
        out = model.apply({"params": p}, x_BT, labels_BT=y_BT, memory=memory)
        return jnp.sum(out.nll_BT), out.memory

    return step


@functools.lru_cache(maxsize=16)
def _window_step(family: str, cfg: Any):
    model = models.build(family, cfg)

    @jax.jit
    def score(p, x_BT, m_BT, y_B):
        labels_BT = jnp.zeros_like(x_BT).at[:, -1].set(y_B)
        out = model.apply({"params": p}, x_BT, labels_BT=labels_BT, mask_BT=m_BT)
        return out.nll_BT[:, -1]

    return score


def recurrent_perplexity(family: str, cfg: Any, params: Any, ids: np.ndarray, *, seg_len: int, mem_len: int,
                         clamp_len: int | None = None, same_length: bool | None = None,
                         batch_size: int = 1) -> PerplexityResult:
    """Perplexity of `ids` read segment by segment with memory carried (Dai et al. §3.2).

    Args:
      family / cfg / params: the model (e.g. from `llm_jax.interop.native.load_pretrained`).
      ids: the token ids of the text, 1-D.
      seg_len: T, predictions per segment.
      mem_len: memory positions per layer (0 = segments read independently).
      clamp_len / same_length: override the Config's (None keeps it).
      batch_size: B parallel streams the text is cut into (1 reads it as one stream).

    Returns:
      A `PerplexityResult` over `B · N · T` predictions.

    Raises:
      ValueError: a family without memory, or too short a text.
    """
    cfg = _memory_config(family, cfg, mem_len, clamp_len, same_length)
    step = _segment_step(family, cfg)
    inputs, targets = _streams(ids, seg_len, batch_size)
    t0 = time.perf_counter()
    memory, total = None, 0.0
    for start in range(0, inputs.shape[1], seg_len):
        nll, memory = step(params, memory, inputs[:, start:start + seg_len], targets[:, start:start + seg_len])
        total += float(nll)
    seconds = time.perf_counter() - t0
    n = int(targets.size)
    return PerplexityResult(nll=total / n, perplexity=float(np.exp(total / n)), predictions=n, seconds=seconds,
                            method="recurrent", seg_len=seg_len, mem_len=mem_len, clamp_len=cfg.clamp_len,
                            same_length=cfg.same_length)


def sliding_window_perplexity(family: str, cfg: Any, params: Any, ids: np.ndarray, *, seg_len: int,
                              batch_size: int = 64, max_predictions: int | None = None) -> PerplexityResult:
    """Perplexity of `ids` by the vanilla model's evaluation: each prediction from its own window of the `seg_len`
    tokens ending at it, recomputed from scratch without memory (the first windows left-padded and masked).

    Args:
      family / cfg / params: the model.
      ids: the token ids, 1-D.
      seg_len: the window length (the context of every prediction).
      batch_size: windows per model call.
      max_predictions: score only the first this many predictions (the method costs `seg_len`× the recurrent one).

    Returns:
      A `PerplexityResult` (`mem_len` 0).
    """
    cfg = _memory_config(family, cfg, 0, None, False)
    score = _window_step(family, cfg)
    ids = np.asarray(ids, np.int32).reshape(-1)
    n = ids.size - 1 if max_predictions is None else min(ids.size - 1, max_predictions)
    padded = np.concatenate([np.zeros(seg_len - 1, np.int32), ids])
    real = np.concatenate([np.zeros(seg_len - 1, bool), np.ones(ids.size, bool)])
    t0 = time.perf_counter()
    total = 0.0
    for start in range(0, n, batch_size):
        rows = np.arange(start, start + batch_size)
        valid = rows < n
        rows = np.minimum(rows, n - 1)  # a full batch every call (one compilation); the extra rows are not counted
        index = rows[:, None] + np.arange(seg_len)[None, :]  # window ending at input position `row`
        nll = np.asarray(score(params, padded[index], real[index], ids[rows + 1]))
        total += float(nll[valid].sum())
    seconds = time.perf_counter() - t0
    return PerplexityResult(nll=total / n, perplexity=float(np.exp(total / n)), predictions=n, seconds=seconds,
                            method="sliding_window", seg_len=seg_len, mem_len=0, clamp_len=cfg.clamp_len,
                            same_length=cfg.same_length)


__all__ = ["PerplexityResult", "recurrent_perplexity", "sliding_window_perplexity"]
