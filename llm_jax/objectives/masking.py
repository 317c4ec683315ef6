"""BERT's masked-LM input corruption, host side in numpy.

BERT §3.1 ("Task #1: Masked LM") and Appendix A.1: 15 % of the tokens are chosen for prediction; a chosen
token is replaced by ``[MASK]`` 80 % of the time, by a random token 10 % of the time, and kept 10 % of the
time, so the model cannot rely on ``[MASK]`` being present at fine-tuning time. The procedure and the output
layout (sorted positions, ``max_predictions`` slots with zero weights on the padding) follow
``create_masked_lm_predictions`` in google-research/bert ``create_pretraining_data.py``.

One deliberate difference: the reference computes the number of predictions from the whole sequence length
(``len(tokens)``, counting ``[CLS]``/``[SEP]``); here it is computed from the *maskable* tokens, so padding
and special tokens of packed or padded rows do not change the masking rate.

Randomness comes in as explicit seeds, one per row, so the same row always gets the same mask for the same
seed: static masking (BERT, mask once per example copy) and dynamic masking (RoBERTa §4.1, a fresh mask each
epoch from ``(seed, epoch, example_index)``) are the same function called with different seeds, and every
host can mask its own slice of the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llm_jax.data.tokenizer import SpecialIds

# BERT Appendix A.1: of the chosen tokens, 80 % become [MASK], 10 % a random token, 10 % stay unchanged.
MASK_FRACTION = 0.8
RANDOM_FRACTION = 0.1


def _check_args(mask_prob: float, max_predictions: int, mask_id: int, vocab_size: int) -> None:
    if not 0.0 < mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in (0, 1] (BERT uses 0.15), got {mask_prob!r}.")
    if isinstance(max_predictions, bool) or not isinstance(max_predictions, (int, np.integer)) or max_predictions < 1:
        raise ValueError(
            f"max_predictions must be a positive integer (BERT: 20 at length 128, 80 at 512), got {max_predictions!r}."
        )
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}.")
    if not 0 <= mask_id < vocab_size:
        raise ValueError(f"mask_id={mask_id} is outside the vocabulary [0, {vocab_size}); check the tokenizer.")


def maskable(tokens_BT: np.ndarray, special: SpecialIds) -> np.ndarray:
    """Tokens that may be chosen for prediction: everything except pad, cls, sep and mask.

    The reference skips ``[CLS]`` and ``[SEP]``; padding is never part of a training sequence there, and a
    token that already is ``[MASK]`` has nothing to predict.

    Args:
      tokens_BT: Token ids, any shape.
      special: Special-token ids.

    Returns:
      A bool array of the same shape.
    """
    tokens_BT = np.asarray(tokens_BT)
    return ~np.isin(tokens_BT, np.asarray([special.pad, special.cls, special.sep, special.mask]))


def mask_tokens(
    tokens_T: np.ndarray,
    maskable_T: np.ndarray,
    rng: np.random.Generator,
    *,
    mask_prob: float,
    max_predictions: int,
    mask_id: int,
    vocab_size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Masks one sequence with BERT's 80/10/10 rule.

    Args:
      tokens_T: Token ids ``[T]``.
      maskable_T: Bool ``[T]``, True where a token may be chosen (see :func:`maskable`).
      rng: Source of randomness.
      mask_prob: Fraction of maskable tokens to predict (BERT: 0.15).
      max_predictions: ``P``, the number of prediction slots (BERT's ``max_predictions_per_seq``).
      mask_id: Id of the mask token.
      vocab_size: Random replacements are drawn uniformly from ``[0, vocab_size)``, the whole vocabulary as
        in the reference.

    Returns:
      ``(inputs_T, positions_P, ids_P, weights_P)``: the corrupted sequence (int32); the chosen positions in
      increasing order (int32); the original ids there (int32); weights (float32) 1.0 on real predictions
      and 0.0 on padding slots, whose position and id are 0. With no maskable token all weights are 0.
    """
    _check_args(mask_prob, max_predictions, mask_id, vocab_size)
    tokens_T = np.asarray(tokens_T)
    maskable_T = np.asarray(maskable_T, dtype=bool)
    if tokens_T.ndim != 1 or maskable_T.shape != tokens_T.shape:
        raise ValueError(
            f"mask_tokens takes one sequence: tokens_T and maskable_T must be 1-D of equal length, got shapes "
            f"{tokens_T.shape} and {maskable_T.shape}. Use mask_batch for [B, T] arrays."
        )
    inputs_T = tokens_T.astype(np.int32, copy=True)
    positions_P = np.zeros(max_predictions, dtype=np.int32)
    ids_P = np.zeros(max_predictions, dtype=np.int32)
    weights_P = np.zeros(max_predictions, dtype=np.float32)
    _mask_row(inputs_T, positions_P, ids_P, weights_P, maskable_T, rng, mask_prob, mask_id, vocab_size)
    return inputs_T, positions_P, ids_P, weights_P


def _mask_row(
    inputs_T: np.ndarray,
    positions_P: np.ndarray,
    ids_P: np.ndarray,
    weights_P: np.ndarray,
    maskable_T: np.ndarray,
    rng: np.random.Generator,
    mask_prob: float,
    mask_id: int,
    vocab_size: int,
    mask_fraction: float = MASK_FRACTION,
    random_fraction: float = RANDOM_FRACTION,
) -> None:
    """Masks ``inputs_T`` in place and fills the zero-initialized prediction slots; arguments are checked.

    Kept free of validation and allocation because static masking calls it for every example copy.
    """
    candidates = maskable_T.nonzero()[0]
    if candidates.size == 0:
        return
    # create_masked_lm_predictions: num_to_predict = min(max_predictions, max(1, int(round(n * prob)))),
    # with Python's round (half to even) as in the reference.
    num = min(positions_P.size, max(1, int(round(candidates.size * mask_prob))), candidates.size)
    # The reference shuffles the candidates and takes the first `num`: a uniform subset, in sorted order.
    chosen = candidates[rng.permutation(candidates.size)[:num]]
    chosen.sort()
    originals = inputs_T[chosen]
    u = rng.random(num)
    random_ids = rng.integers(0, vocab_size, size=num, dtype=np.int32)
    inputs_T[chosen] = np.where(
        u < mask_fraction,
        np.int32(mask_id),
        np.where(u < mask_fraction + random_fraction, random_ids, originals),
    )
    positions_P[:num] = chosen
    ids_P[:num] = originals
    weights_P[:num] = 1.0


def mask_batch(
    tokens_BT: np.ndarray,
    maskable_BT: np.ndarray,
    seeds: Sequence[int | Sequence[int]],
    *,
    mask_prob: float,
    max_predictions: int,
    mask_id: int,
    vocab_size: int,
    mask_fraction: float = MASK_FRACTION,
    random_fraction: float = RANDOM_FRACTION,
) -> dict[str, np.ndarray]:
    """Masks every row of a batch, row ``b`` with ``np.random.default_rng(seeds[b])``.

    Args:
      tokens_BT: Token ids ``[B, T]``.
      maskable_BT: Bool ``[B, T]``.
      seeds: One seed per row (an int or a tuple of non-negative ints, e.g. ``(seed, epoch, example_index)``).
      mask_prob: See :func:`mask_tokens`.
      max_predictions: See :func:`mask_tokens`.
      mask_id: See :func:`mask_tokens`.
      vocab_size: See :func:`mask_tokens`.
      mask_fraction / random_fraction: of the chosen tokens, the share that becomes ``[MASK]`` and the share that
        becomes a random token (the rest stay): BERT's 0.8 / 0.1; ELECTRA's ``pretrain_helpers.mask`` uses
        0.85 / 0.0.

    Returns:
      ``{"inputs": int32 [B, T], "mlm_positions": int32 [B, P], "mlm_ids": int32 [B, P],
      "mlm_weights": float32 [B, P]}``.
    """
    tokens_BT = np.asarray(tokens_BT)
    maskable_BT = np.asarray(maskable_BT, dtype=bool)
    if tokens_BT.ndim != 2 or maskable_BT.shape != tokens_BT.shape:
        raise ValueError(
            f"mask_batch takes [B, T] arrays of equal shape, got tokens {tokens_BT.shape} and maskable "
            f"{maskable_BT.shape}."
        )
    if len(seeds) != tokens_BT.shape[0]:
        raise ValueError(f"mask_batch needs one seed per row: got {len(seeds)} seeds for {tokens_BT.shape[0]} rows.")
    _check_args(mask_prob, max_predictions, mask_id, vocab_size)
    if not (0.0 <= mask_fraction and 0.0 <= random_fraction and mask_fraction + random_fraction <= 1.0):
        raise ValueError(f"mask_fraction={mask_fraction} and random_fraction={random_fraction} must be ≥ 0 with a sum "
                         "≤ 1 (BERT: 0.8 and 0.1).")
    batch = tokens_BT.shape[0]
    out = {
        "inputs": tokens_BT.astype(np.int32, copy=True),
        "mlm_positions": np.zeros((batch, max_predictions), dtype=np.int32),
        "mlm_ids": np.zeros((batch, max_predictions), dtype=np.int32),
        "mlm_weights": np.zeros((batch, max_predictions), dtype=np.float32),
    }
    for b in range(batch):
        _mask_row(
            out["inputs"][b],
            out["mlm_positions"][b],
            out["mlm_ids"][b],
            out["mlm_weights"][b],
            maskable_BT[b],
            np.random.default_rng(seeds[b]),
            mask_prob,
            mask_id,
            vocab_size,
            mask_fraction,
            random_fraction,
        )
    return out


# ------------------------------------------------------------------------------------------- n-gram masking
# ALBERT §4.1 (after Joshi et al. 2020, SpanBERT): "we use n-gram masking ... with the length of each n-gram mask
# selected randomly. The probability for the length n is given by p(n) = (1/n) / Σ_{k=1}^{N} 1/k", N = 3, over
# whole *words*: 6/11, 3/11, 2/11 for 1, 2, 3 words.


def ngram_probabilities(max_ngram: int) -> np.ndarray:
    """``p(n) ∝ 1/n`` for ``n = 1 … max_ngram`` (ALBERT §4.1): ``[6/11, 3/11, 2/11]`` for 3."""
    if isinstance(max_ngram, bool) or not isinstance(max_ngram, (int, np.integer)) or max_ngram < 1:
        raise ValueError(f"max_ngram must be a positive integer (ALBERT uses 3), got {max_ngram!r}.")
    p = 1.0 / np.arange(1, max_ngram + 1)
    return p / p.sum()


def _words(maskable_T: np.ndarray, word_start_T: np.ndarray) -> list[np.ndarray]:
    """Maskable positions grouped into whole words: a word starts at a word-start piece or after a position that
    is not maskable (a special token), and takes the continuation pieces that follow it (``cand_indexes``)."""
    positions = maskable_T.nonzero()[0]
    if positions.size == 0:
        return []
    starts = word_start_T[positions] | np.r_[True, np.diff(positions) != 1]
    return np.split(positions, starts.nonzero()[0][1:])


def _ngram_mask_row(
    inputs_T: np.ndarray,
    positions_P: np.ndarray,
    ids_P: np.ndarray,
    weights_P: np.ndarray,
    maskable_T: np.ndarray,
    word_start_T: np.ndarray,
    rng: np.random.Generator,
    mask_prob: float,
    mask_id: int,
    vocab_size: int,
    pvals: np.ndarray,
) -> list[int]:
    """Masks ``inputs_T`` in place with whole-word n-grams; returns each span's length in words.

    Until the number to predict is reached: draw n from ``pvals``; place the span at a uniform start among those
    whose n words are all unchosen and fit in the remaining budget, shortening n while there is none (as the
    reference shortens a span that would exceed the budget); stop when not even one word fits. The 80/10/10
    replacement is drawn once per span (SpanBERT §3.1: "at the span level"); the number to predict counts the
    maskable tokens, as :func:`mask_tokens` does.

    Why not the reference's loop (google-research/albert ``create_masked_lm_predictions``: visit word starts in a
    random order, draw n at each, *skip* a span that overlaps a chosen one): the skip rejects long spans more
    often, so at 15 % the realized lengths come out near 0.60 / 0.25 / 0.15 rather than the 6/11, 3/11, 2/11 of
    §4.1; drawing the length first keeps the realized distribution at p(n) (up to the last, budget-bound span).
    """
    words = _words(maskable_T, word_start_T)
    if not words:
        return []
    n_maskable = int(maskable_T.sum())
    num = min(positions_P.size, max(1, int(round(n_maskable * mask_prob))), n_maskable)
    sizes_W = np.array([w.size for w in words])
    size_cum = np.r_[0, np.cumsum(sizes_W)]
    taken_W = np.zeros(len(words), bool)
    originals_T = inputs_T.copy()
    chosen: list[np.ndarray] = []
    spans: list[int] = []
    remaining = num
    while remaining > 0:
        taken_cum = np.r_[0, np.cumsum(taken_W)]
        n = int(rng.choice(len(pvals), p=pvals)) + 1
        starts = np.zeros(0, int)
        while n >= 1:
            if n <= len(words):
                s = np.arange(len(words) - n + 1)
                fits = (taken_cum[s + n] == taken_cum[s]) & (size_cum[s + n] - size_cum[s] <= remaining)
                starts = s[fits]
            if starts.size:
                break
            n -= 1
        if not starts.size:
            break
        start = int(starts[rng.integers(starts.size)])
        taken_W[start:start + n] = True
        span = np.concatenate(words[start:start + n])
        u = rng.random()
        if u < MASK_FRACTION:
            inputs_T[span] = mask_id
        elif u < MASK_FRACTION + RANDOM_FRACTION:
            inputs_T[span] = rng.integers(0, vocab_size, size=span.size, dtype=np.int32)
        chosen.append(span)
        spans.append(n)
        remaining -= span.size
    if chosen:
        picked = np.sort(np.concatenate(chosen))
        positions_P[:picked.size] = picked
        ids_P[:picked.size] = originals_T[picked]
        weights_P[:picked.size] = 1.0
    return spans


def ngram_mask_tokens(
    tokens_T: np.ndarray,
    maskable_T: np.ndarray,
    word_start_T: np.ndarray,
    rng: np.random.Generator,
    *,
    mask_prob: float,
    max_predictions: int,
    mask_id: int,
    vocab_size: int,
    max_ngram: int = 3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Masks one sequence with whole-word n-gram spans (ALBERT §4.1) and the 80/10/10 rule per span.

    Args:
      tokens_T: Token ids ``[T]``.
      maskable_T: Bool ``[T]`` (see :func:`maskable`).
      word_start_T: Bool ``[T]``, True where a token begins a word (SentencePiece: a piece starting with "▁";
        WordPiece: one not starting with "##"). Continuation pieces join the word before them.
      rng: Source of randomness.
      mask_prob: Fraction of maskable tokens to predict (0.15).
      max_predictions: ``P`` prediction slots.
      mask_id: Id of the mask token.
      vocab_size: Random replacements come from ``[0, vocab_size)``.
      max_ngram: N, the longest span in words (ALBERT: 3).

    Returns:
      ``(inputs_T, positions_P, ids_P, weights_P, span_words)`` as :func:`mask_tokens`, plus each chosen span's
      length in words (in the order chosen).
    """
    _check_args(mask_prob, max_predictions, mask_id, vocab_size)
    pvals = ngram_probabilities(max_ngram)
    tokens_T = np.asarray(tokens_T)
    maskable_T = np.asarray(maskable_T, dtype=bool)
    word_start_T = np.asarray(word_start_T, dtype=bool)
    if tokens_T.ndim != 1 or maskable_T.shape != tokens_T.shape or word_start_T.shape != tokens_T.shape:
        raise ValueError(f"ngram_mask_tokens takes one sequence: tokens_T, maskable_T and word_start_T must be 1-D of "
                         f"equal length, got {tokens_T.shape}, {maskable_T.shape} and {word_start_T.shape}.")
    inputs_T = tokens_T.astype(np.int32, copy=True)
    positions_P = np.zeros(max_predictions, dtype=np.int32)
    ids_P = np.zeros(max_predictions, dtype=np.int32)
    weights_P = np.zeros(max_predictions, dtype=np.float32)
    spans = _ngram_mask_row(inputs_T, positions_P, ids_P, weights_P, maskable_T, word_start_T, rng, mask_prob,
                            mask_id, vocab_size, pvals)
    return inputs_T, positions_P, ids_P, weights_P, spans


def ngram_mask_batch(
    tokens_BT: np.ndarray,
    maskable_BT: np.ndarray,
    word_start_BT: np.ndarray,
    seeds: Sequence[int | Sequence[int]],
    *,
    mask_prob: float,
    max_predictions: int,
    mask_id: int,
    vocab_size: int,
    max_ngram: int = 3,
) -> dict[str, np.ndarray]:
    """:func:`ngram_mask_tokens` for every row of a batch, row ``b`` with ``np.random.default_rng(seeds[b])``.

    Returns:
      The layout of :func:`mask_batch`: ``inputs`` int32 ``[B, T]``, ``mlm_positions`` / ``mlm_ids`` int32 ``[B, P]``,
      ``mlm_weights`` float32 ``[B, P]``.
    """
    tokens_BT = np.asarray(tokens_BT)
    maskable_BT = np.asarray(maskable_BT, dtype=bool)
    word_start_BT = np.asarray(word_start_BT, dtype=bool)
    if tokens_BT.ndim != 2 or maskable_BT.shape != tokens_BT.shape or word_start_BT.shape != tokens_BT.shape:
        raise ValueError(f"ngram_mask_batch takes [B, T] arrays of equal shape, got tokens {tokens_BT.shape}, maskable "
                         f"{maskable_BT.shape} and word starts {word_start_BT.shape}.")
    if len(seeds) != tokens_BT.shape[0]:
        raise ValueError(f"ngram_mask_batch needs one seed per row: got {len(seeds)} seeds for {tokens_BT.shape[0]} "
                         "rows.")
    _check_args(mask_prob, max_predictions, mask_id, vocab_size)
    pvals = ngram_probabilities(max_ngram)
    batch = tokens_BT.shape[0]
    out = {
        "inputs": tokens_BT.astype(np.int32, copy=True),
        "mlm_positions": np.zeros((batch, max_predictions), dtype=np.int32),
        "mlm_ids": np.zeros((batch, max_predictions), dtype=np.int32),
        "mlm_weights": np.zeros((batch, max_predictions), dtype=np.float32),
    }
    for b in range(batch):
        _ngram_mask_row(out["inputs"][b], out["mlm_positions"][b], out["mlm_ids"][b], out["mlm_weights"][b],
                        maskable_BT[b], word_start_BT[b], np.random.default_rng(seeds[b]), mask_prob, mask_id,
                        vocab_size, pvals)
    return out
