"""Scoring text with a language model: log-likelihoods of continuations, pseudo-log-likelihoods, perplexity.

What each kind of model (`LM_KIND`, `llm_jax.models.family`) can say about a text:

* **causal** — log p(continuation | context) = Σ_t log p(x_t | x_<t) over the continuation's tokens, from one
  forward pass over context + continuation (`causal_loglikelihood`); and the perplexity of a long text with a
  sliding window (`perplexity`): windows of W tokens every S tokens, each scoring only the tokens the previous
  window did not, so each token is predicted from at least W − S tokens of context (the evaluation of Hugging
  Face's "Perplexity of fixed-length models" guide; S = W gives disjoint windows). Token counts follow
  transformers' `labels=input_ids` loss: the first token of the text is never predicted.
* **seq2seq** — log p(target | source) by teacher forcing through the family's `target_logits` member
  (`seq2seq_loglikelihood`); T5 §3.1's text-to-text scoring.
* **masked** — the cloze scorer (`llm_jax.eval.cloze`), and the pseudo-log-likelihood Σ_t log p(x_t | x_\\t) with
  each position masked in turn (Salazar et al. 2020, "Masked Language Model Scoring", §2.1), every masked copy a
  row of one batch (`pseudo_log_likelihood`).
* a **replaced-token detector** (a family with the `replaced_token_logits` member: ELECTRA's discriminator) —
  how "original" it finds the tokens of a text (`original_log_probs`): log σ(−logit) per position (Clark et al.
  2020 §2; used for prompting by Xia et al. 2022, "Prompting ELECTRA").

Every scorer pads its rows to a few bucket lengths and a fixed batch size, so a whole task compiles a handful of
shapes once (per family and Config). Log-probabilities are float32 natural logs.

Segment-recurrent models (Transformer-XL's memory) score long text differently; `perplexity` dispatches them to
their own evaluation by family member (`perplexity_function`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from llm_jax import models
from llm_jax.compression import quantize
from llm_jax.layers import check_ids

# Rows per compiled batch, and the smallest padded length (rows are padded to the next power of two from here).
BATCH = 8
MIN_BUCKET = 16


def bucket(n: int, cap: int | None = None) -> int:
    """The padded length for `n` tokens: the next power of two ≥ max(n, 16), at most `cap` (and ≥ n)."""
    t = max(MIN_BUCKET, 1 << max(0, math.ceil(math.log2(max(n, 1)))))
    return max(n, min(t, cap)) if cap is not None else t


def _kind(family: str) -> str:
    return models.family_module(family).LM_KIND


def _require(family: str, kind: str, what: str) -> None:
    if _kind(family) != kind:
        raise ValueError(f"{what} needs a {kind} LM; {family} is a {_kind(family)} LM.")


def _batches(n: int, batch_size: int):
    for s in range(0, n, batch_size):
        yield s, min(s + batch_size, n)


# -------------------------------------------------------------------------------------------------- causal


@functools.lru_cache(maxsize=8)
def _causal_token_logp(family: str, config):
    """Jitted `(params, inputs [B, T], targets [B, T]) -> (log p(target) [B, T], target is the argmax [B, T])`."""
    model = models.build(family, config)

    @jax.jit
    def fn(params, inputs_BT, targets_BT):
        # Right padding needs no mask in a causal model: no real position attends to a later (padded) one.
        logits_BTV = model.apply({"params": params}, inputs_BT, deterministic=True).logits_BTV
        logp_BTV = jax.nn.log_softmax(logits_BTV.astype(jnp.float32), -1)
        picked_BT = jnp.take_along_axis(logp_BTV, targets_BT[..., None], -1)[..., 0]
        return picked_BT, logits_BTV.argmax(-1) == targets_BT

    return fn


def _run_rows(fn, params, rows: list[tuple[list[int], list[int]]], cap: int, batch_size: int):
    """`fn` over (inputs, targets) rows padded to buckets; each row's per-position outputs cut to its length."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
    out: list = [None] * len(rows)
    for s, e in _batches(len(order), batch_size):
        idx = order[s:e]
        t = bucket(max(len(rows[i][0]) for i in idx), cap)
        x = np.zeros((batch_size, t), np.int32)
        y = np.zeros((batch_size, t), np.int32)
        for r, i in enumerate(idx):
            x[r, :len(rows[i][0])] = rows[i][0]
            y[r, :len(rows[i][1])] = rows[i][1]
        a, b = jax.device_get(fn(params, x, y))
        for r, i in enumerate(idx):
            out[i] = (np.asarray(a[r, :len(rows[i][0])]), np.asarray(b[r, :len(rows[i][0])]))
    return out


@dataclasses.dataclass(frozen=True)
class Score:
    """The log-likelihood of one continuation.

    Attributes:
      logprobs: `[n]` float32 natural-log probabilities of the continuation's n tokens.
      greedy: whether every continuation token is the model's most likely next token (lm-eval's `is_greedy`).
      truncated: tokens of the context dropped from its start to fit the model's positions.
    """

    logprobs: np.ndarray
    greedy: bool
    truncated: int = 0

    @property
    def total(self) -> float:
        """Σ log p over the continuation (nats)."""
        return float(np.sum(self.logprobs, dtype=np.float64))

    @property
    def mean(self) -> float:
        """The per-token mean (nats / token)."""
        return self.total / max(len(self.logprobs), 1)


def causal_loglikelihood(family: str, config, params, requests: Sequence[tuple[Sequence[int], Sequence[int]]], *,
                         max_len: int | None = None, batch_size: int = BATCH) -> list[Score]:
    """log p(continuation | context) for each `(context_ids, continuation_ids)` under a causal LM.

    The model reads context + continuation minus its last token and predicts each next token; the continuation's
    tokens are scored. Past `max_len` (default the model's positions) the context is cut from its start (as
    lm-eval's Hugging Face model does).

    Raises:
      ValueError: a non-causal family, an empty context or continuation, a continuation longer than the
        model's positions, or ids outside the vocabulary.
    """
    _require(family, "causal", "Causal log-likelihood")
    cap = min(max_len or config.max_seq_len, config.max_seq_len)
    rows, cut = [], []
    for context, cont in requests:
        context, cont = list(context), list(cont)
        if not context or not cont:
            raise ValueError("A causal log-likelihood needs ≥ 1 context token and ≥ 1 continuation token; start an "
                             "empty context with the model's end-of-text token.")
        if len(cont) > cap:
            raise ValueError(f"A continuation of {len(cont)} tokens does not fit the model's {cap} positions.")
        full = (context + cont)[-(cap + 1):]
        cut.append(len(context) + len(cont) - len(full))
        rows.append((full[:-1], full[1:]))
    check_ids(np.concatenate([np.asarray(r[0] + r[1][-1:]) for r in rows]), config.vocab_size,
              "token ids (model.vocab_size)")
    outs = _run_rows(_causal_token_logp(family, config), params, rows, cap, batch_size)
    scores = []
    for (_, cont), (lp, greedy), c in zip(requests, outs, cut):
        n = len(cont)
        scores.append(Score(lp[-n:], bool(np.all(greedy[-n:])), c))
    return scores


@dataclasses.dataclass(frozen=True)
class Perplexity:
    """A text's perplexity.

    Attributes:
      nll: Σ −log p over the predicted tokens (nats).
      tokens: how many tokens were predicted (transformers' `labels=input_ids` count: all but the first).
      windows: forward passes run.
    """

    nll: float
    tokens: int
    windows: int

    @property
    def nll_per_token(self) -> float:
        return self.nll / self.tokens

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll_per_token)

    def as_dict(self) -> dict:
        return {"perplexity": self.perplexity, "nll_per_token": self.nll_per_token, "tokens": self.tokens,
                "windows": self.windows}


def sliding_windows(n: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """`(begin, end, first_scored)` of each window over n tokens: the HF stride evaluation.

    Windows start every `stride` tokens and hold up to `window`; a window scores the targets at positions
    `[max(first_scored, begin + 1), end)`, those the previous window did not reach (the first token, which has no
    context, is never scored).

    Raises:
      ValueError: `stride` outside [1, window], or fewer than 2 tokens.
    """
    if not 1 <= stride <= window:
        raise ValueError(f"--stride={stride} must be in [1, window={window}].")
    if n < 2:
        raise ValueError(f"The text has {n} token(s); perplexity needs ≥ 2 (the first is never predicted).")
    out, prev_end = [], 0
    for begin in range(0, n, stride):
        end = min(begin + window, n)
        out.append((begin, end, max(prev_end, begin + 1)))
        prev_end = end
        if end == n:
            break
    return out


def causal_perplexity(family: str, config, params, ids: Sequence[int], *, window: int | None = None,
                      stride: int | None = None, batch_size: int = BATCH) -> Perplexity:
    """Perplexity of a token sequence under a causal LM, sliding a window of `window` tokens by `stride`.

    Args:
      ids: the text's token ids (prepend an end-of-text token yourself to score the first word).
      window: tokens per forward pass (default the model's positions).
      stride: tokens between window starts (default = window: disjoint windows).

    Raises:
      ValueError: a non-causal family, bad window / stride, fewer than 2 tokens, ids outside the vocabulary.
    """
    _require(family, "causal", "Sliding-window perplexity")
    window = window or config.max_seq_len
    if not 2 <= window <= config.max_seq_len:
        raise ValueError(f"window={window} must be in [2, {config.max_seq_len}] (the model's positions).")
    stride = stride or window
    ids = np.asarray(ids, np.int32)
    check_ids(ids, config.vocab_size, "token ids (model.vocab_size)")
    spans = sliding_windows(len(ids), window, stride)
    rows = [(ids[b:e - 1].tolist(), ids[b + 1:e].tolist()) for b, e, _ in spans]
    outs = _run_rows(_causal_token_logp(family, config), params, rows, window, batch_size)
    nll, count = 0.0, 0
    for (b, e, first), (lp, _) in zip(spans, outs):
        # lp[j] is log p(ids[b + 1 + j]); score targets at positions first … e − 1.
        picked = lp[first - b - 1:]
        nll -= float(np.sum(picked, dtype=np.float64))
        count += len(picked)
    return Perplexity(nll, count, len(spans))


# A segment-recurrent model's segment when `--window` is not given (its positions are unbounded).
DEFAULT_SEGMENT = 128


def memory_perplexity(family: str, config, params, ids: Sequence[int], *, window: int | None = None,
                      stride: int | None = None, batch_size: int = BATCH, mem_len: int | None = None,
                      clamp_len: int | None = None) -> Perplexity:
    """Perplexity of a token sequence under a segment-recurrent LM (Transformer-XL, Dai et al. §3.2): the text read
    as one stream in segments of `window` tokens, each attending to the memory of the previous `mem_len` positions
    (`llm_jax.eval.recurrent.recurrent_perplexity`).

    Args:
      ids: the text's token ids.
      window: tokens per segment (default `DEFAULT_SEGMENT`).
      stride: must be None or `window`: segments follow each other, the memory carries the context.
      batch_size: unused (one stream, so the memory holds the text that precedes every segment).
      mem_len / clamp_len: memory positions per layer and the distance clamp (None: the model's Config).

    Returns:
      A `Perplexity` over the predictions of the full segments (`windows` = segments); a last part shorter than
      a segment is not scored.

    Raises:
      ValueError: a stride that is not the window, a text shorter than one segment, ids outside the vocabulary.
    """
    del batch_size
    from llm_jax.eval.recurrent import recurrent_perplexity

    window = window or DEFAULT_SEGMENT
    if stride not in (None, window):
        raise ValueError(f"--stride {stride}: a segment-recurrent model reads segments one after the other "
                         "(stride = window); set how much it remembers with --mem-len instead.")
    ids = np.asarray(ids, np.int32)
    check_ids(ids, config.vocab_size, "token ids (model.vocab_size)")
    result = recurrent_perplexity(family, config, params, ids, seg_len=window,
                                  mem_len=config.mem_len if mem_len is None else mem_len, clamp_len=clamp_len)
    return Perplexity(result.nll * result.predictions, result.predictions, result.predictions // window)


def perplexity_function(family: str):
    """The perplexity evaluation of a family: the sliding window for a causal LM, segments with memory for a
    segment-recurrent one (its Config has the memory members, models/family.py).

    Chosen by the family's members and kind, never its name.

    Raises:
      ValueError: a family with no perplexity (masked or seq2seq LMs).
    """
    if hasattr(models.family_module(family).Config, "init_memory"):
        return memory_perplexity
    if _kind(family) == "causal":
        return causal_perplexity
    raise ValueError(f"Perplexity needs a causal LM; {family} is a {_kind(family)} LM (score it with "
                     "`pseudo_log_likelihood` or a task instead).")


# ------------------------------------------------------------------------------------------------- seq2seq


@functools.lru_cache(maxsize=8)
def _seq2seq_token_logp(family: str, config):
    target_logits = models.family_module(family).target_logits

    @jax.jit
    def fn(params, src_BS, mask_BS, tgt_BT):
        logits_BTV = target_logits(config, params, src_BS, mask_BS, tgt_BT)
        logp_BTV = jax.nn.log_softmax(logits_BTV.astype(jnp.float32), -1)
        return (jnp.take_along_axis(logp_BTV, tgt_BT[..., None], -1)[..., 0],
                logits_BTV.argmax(-1) == tgt_BT)

    return fn


def seq2seq_loglikelihood(family: str, config, params, requests: Sequence[tuple[Sequence[int], Sequence[int]]], *,
                          max_len: int | None = None, batch_size: int = BATCH) -> list[Score]:
    """log p(target | source) for each `(source_ids, target_ids)` under an encoder-decoder, by teacher forcing.

    Sources longer than `max_len` (default the model's `max_seq_len`) are cut from the start.

    Raises:
      ValueError: a family without `target_logits`, an empty source or target, ids outside the vocabulary.
    """
    module = models.family_module(family)
    if not hasattr(module, "target_logits"):
        raise ValueError(f"Target log-likelihoods need an encoder-decoder with teacher forcing (`target_logits`); "
                         f"{family} is a {module.LM_KIND} LM.")
    cap = min(max_len or config.max_seq_len, config.max_seq_len)
    reqs, cut = [], []
    for src, tgt in requests:
        src, tgt = list(src), list(tgt)
        if not src or not tgt:
            raise ValueError("A target log-likelihood needs ≥ 1 source token and ≥ 1 target token.")
        cut.append(max(0, len(src) - cap))
        reqs.append((src[-cap:], tgt))
    check_ids(np.concatenate([np.asarray(s + t) for s, t in reqs]), config.vocab_size, "token ids (model.vocab_size)")
    # The family's teacher-forcing member builds its own modules: an int8 model runs dequantized here.
    config, params = quantize.as_float(family, config, params, "target log-likelihoods")
    fn = _seq2seq_token_logp(family, config)
    order = sorted(range(len(reqs)), key=lambda i: (len(reqs[i][0]), len(reqs[i][1])))
    out: list = [None] * len(reqs)
    for s, e in _batches(len(order), batch_size):
        idx = order[s:e]
        ts = bucket(max(len(reqs[i][0]) for i in idx), cap)
        tt = bucket(max(len(reqs[i][1]) for i in idx))
        src = np.zeros((batch_size, ts), np.int32)
        mask = np.zeros((batch_size, ts), bool)
        mask[:, 0] = True  # padding rows: one real token, so no row is fully masked
        tgt = np.zeros((batch_size, tt), np.int32)
        for r, i in enumerate(idx):
            src[r, :len(reqs[i][0])] = reqs[i][0]
            mask[r, :len(reqs[i][0])] = True
            tgt[r, :len(reqs[i][1])] = reqs[i][1]
        lp, greedy = jax.device_get(fn(params, src, mask, tgt))
        for r, i in enumerate(idx):
            n = len(reqs[i][1])
            out[i] = Score(np.asarray(lp[r, :n]), bool(np.all(greedy[r, :n])), cut[i])
    return out


# -------------------------------------------------------------------------------------------------- masked


@functools.lru_cache(maxsize=8)
def _masked_position_logp(family: str, config):
    """Jitted `(params, inputs [B, T], mask [B, T], positions [B], targets [B]) -> log p(target at position) [B]`."""
    model = models.build(family, config)

    @jax.jit
    def fn(params, inputs_BT, mask_BT, pos_B, tgt_B):
        out = model.apply({"params": params}, inputs_BT, mask_BT=mask_BT, mlm_positions_BP=pos_B[:, None],
                          deterministic=True)
        logp_BV = jax.nn.log_softmax(out.mlm_logits_BTV[:, 0].astype(jnp.float32), -1)
        return jnp.take_along_axis(logp_BV, tgt_B[:, None], -1)[:, 0]

    return fn


def pseudo_log_likelihood(family: str, config, params, sequences: Sequence[Sequence[int]], mask_id: int, *,
                          skip_ids: Sequence[int] = (), batch_size: int = 32) -> list[np.ndarray]:
    """Per-token pseudo-log-likelihoods log p(x_t | x_\\t) of a masked LM (Salazar et al. 2020, §2.1).

    Every scored position t of every sequence becomes one row — the sequence with x_t replaced by `mask_id` —
    and all rows run in fixed-size batches; the MLM head's log-probability of the original x_t at t is the score.

    Args:
      sequences: token ids as the model reads them (with their special tokens, e.g. `[CLS] … [SEP]`).
      mask_id: the mask token's id.
      skip_ids: ids that are not scored (the special tokens: their PLL says nothing about the text).

    Returns:
      One float32 array per sequence, the scores of its scored positions in order (PLL = their sum).

    Raises:
      ValueError: a family that is not a masked LM, a sequence longer than the model's positions, or ids
        outside the vocabulary.
    """
    _require(family, "masked", "A pseudo-log-likelihood")
    skip = {int(i) for i in skip_ids}
    rows = []  # (sequence index, position)
    for s, seq in enumerate(sequences):
        if len(seq) > config.max_seq_len:
            raise ValueError(f"Sequence {s} has {len(seq)} tokens; the model reads at most {config.max_seq_len}.")
        rows += [(s, t) for t, tok in enumerate(seq) if int(tok) not in skip]
    if sequences:
        check_ids(np.concatenate([np.asarray(q, np.int64) for q in sequences]), config.vocab_size,
                  "token ids (model.vocab_size)")
    fn = _masked_position_logp(family, config)
    rows.sort(key=lambda r: len(sequences[r[0]]))
    scores = {r: 0.0 for r in rows}
    for s, e in _batches(len(rows), batch_size):
        part = rows[s:e]
        t = bucket(max(len(sequences[q]) for q, _ in part), config.max_seq_len)
        x = np.zeros((batch_size, t), np.int32)
        m = np.zeros((batch_size, t), bool)
        m[:, 0] = True
        pos = np.zeros(batch_size, np.int32)
        tgt = np.zeros(batch_size, np.int32)
        for r, (q, p) in enumerate(part):
            seq = np.asarray(sequences[q], np.int32)
            x[r, :len(seq)], m[r, :len(seq)] = seq, True
            x[r, p], pos[r], tgt[r] = mask_id, p, seq[p]
        lp = np.asarray(jax.device_get(fn(params, x, m, pos, tgt)))
        for r, key in enumerate(part):
            scores[key] = lp[r]
    out = []
    for q, seq in enumerate(sequences):
        out.append(np.asarray([scores[(q, t)] for t, tok in enumerate(seq) if int(tok) not in skip], np.float32))
    return out


# ------------------------------------------------------------------------------- replaced-token detection


@functools.lru_cache(maxsize=8)
def _original_logp(family: str, config):
    replaced_token_logits = models.family_module(family).replaced_token_logits

    @jax.jit
    def fn(params, inputs_BT, mask_BT):
        # log P(original) = log σ(−logit) = −softplus(logit): the discriminator's logit > 0 means "replaced".
        return -jax.nn.softplus(replaced_token_logits(config, params, inputs_BT, mask_BT).astype(jnp.float32))

    return fn


def original_log_probs(family: str, config, params, inputs: np.ndarray, mask: np.ndarray, *,
                       batch_size: int = 32) -> np.ndarray:
    """`[N, T]` log P("original") of every position under a replaced-token detector (ELECTRA's discriminator).

    Raises:
      ValueError: a family without the `replaced_token_logits` member, or ids outside the vocabulary.
    """
    module = models.family_module(family)
    if not hasattr(module, "replaced_token_logits"):
        raise ValueError(f"The discriminator scorer needs a replaced-token detector (`replaced_token_logits`, e.g. "
                         f"ELECTRA); {family} has none. Use the cloze scorer.")
    check_ids(inputs, config.vocab_size, "token ids (model.vocab_size)")
    # The family's detector member builds its own modules: an int8 model runs dequantized here.
    config, params = quantize.as_float(family, config, params, "the discriminator scorer")
    fn = _original_logp(family, config)
    n = len(inputs)
    out = np.zeros(inputs.shape, np.float32)
    for s, e in _batches(n, batch_size):
        x, m = inputs[s:e], mask[s:e]
        short = batch_size - len(x)
        if short:
            x, m = np.concatenate([x, np.repeat(x[:1], short, 0)]), np.concatenate([m, np.repeat(m[:1], short, 0)])
        out[s:e] = np.asarray(jax.device_get(fn(params, x, m)))[:e - s]
    return out


__all__ = ["BATCH", "Perplexity", "Score", "bucket", "causal_loglikelihood", "causal_perplexity",
           "original_log_probs", "perplexity_function", "pseudo_log_likelihood", "seq2seq_loglikelihood",
           "sliding_windows"]
