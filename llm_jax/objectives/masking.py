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
        u < MASK_FRACTION,
        np.int32(mask_id),
        np.where(u < MASK_FRACTION + RANDOM_FRACTION, random_ids, originals),
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
        )
    return out
