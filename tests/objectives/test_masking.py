"""BERT masking: the count rule, the 80/10/10 split, uniform positions, specials untouched, slot padding."""

import numpy as np
import pytest

from llm_jax.data.tokenizer import SpecialIds
from llm_jax.objectives.masking import mask_batch, mask_tokens, maskable

SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)
VOCAB = 1000
KW = dict(mask_prob=0.15, max_predictions=20, mask_id=SPECIAL.mask, vocab_size=VOCAB)


def _rows(n_rows, seed=0, length=128, real=100):
    """[CLS] a [SEP] b [SEP] + padding, content ids in [5, VOCAB)."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(5, VOCAB, size=(n_rows, length)).astype(np.int32)
    tokens[:, 0] = SPECIAL.cls
    tokens[:, 60] = SPECIAL.sep
    tokens[:, real - 1] = SPECIAL.sep
    tokens[:, real:] = SPECIAL.pad
    return tokens


@pytest.fixture(scope="module")
def masked():
    tokens = _rows(4000)
    out = mask_batch(tokens, maskable(tokens, SPECIAL), [(7, i) for i in range(len(tokens))], **KW)
    return tokens, out


def test_maskable_excludes_specials():
    tokens = np.asarray([[2, 10, 4, 11, 3, 0, 0]])
    np.testing.assert_array_equal(maskable(tokens, SPECIAL), [[False, True, False, True, False, False, False]])


def test_shapes_dtypes_and_padding_slots(masked):
    tokens, out = masked
    b, t = tokens.shape
    assert out["inputs"].shape == (b, t) and out["inputs"].dtype == np.int32
    for key, dtype in (("mlm_positions", np.int32), ("mlm_ids", np.int32), ("mlm_weights", np.float32)):
        assert out[key].shape == (b, KW["max_predictions"]) and out[key].dtype == dtype
    # 97 maskable tokens (100 real minus [CLS] and two [SEP]): round(97 * 0.15) = 15 predictions.
    assert (out["mlm_weights"].sum(1) == 15).all()
    real = out["mlm_weights"] > 0
    assert (real[:, :15]).all() and not real[:, 15:].any()
    assert (out["mlm_positions"][:, 15:] == 0).all() and (out["mlm_ids"][:, 15:] == 0).all()
    # Positions strictly increasing, the ids are the original tokens there.
    assert (np.diff(out["mlm_positions"][:, :15], axis=1) > 0).all()
    np.testing.assert_array_equal(np.take_along_axis(tokens, out["mlm_positions"], 1)[real], out["mlm_ids"][real])


def test_specials_and_unchosen_tokens_untouched(masked):
    tokens, out = masked
    chosen = np.zeros(tokens.shape, bool)
    rows = np.repeat(np.arange(len(tokens)), 15)
    chosen[rows, out["mlm_positions"][:, :15].ravel()] = True
    assert not (chosen & ~maskable(tokens, SPECIAL)).any()
    np.testing.assert_array_equal(out["inputs"][~chosen], tokens[~chosen])


def test_80_10_10_split(masked):
    tokens, out = masked
    real = out["mlm_weights"] > 0
    new = np.take_along_axis(out["inputs"], out["mlm_positions"], 1)[real]
    original = out["mlm_ids"][real]
    n = new.size  # 60,000 choices: 1 % tolerances are over 6 standard deviations
    # A random replacement lands on [MASK] or on the original token with probability 1/VOCAB each.
    assert abs((new == SPECIAL.mask).mean() - (0.8 + 0.1 / VOCAB)) < 0.01
    assert abs((new == original).mean() - (0.1 + 0.1 / VOCAB)) < 0.01
    random = (new != SPECIAL.mask) & (new != original)
    assert abs(random.mean() - 0.1 * (1 - 2 / VOCAB)) < 0.01
    # Random replacements cover the whole vocabulary, specials included, as in the reference.
    assert new[random].min() >= 0 and new[random].max() < VOCAB
    assert new[random].min() < 30 and new[random].max() > VOCAB - 30
    assert n == 60_000


def test_positions_are_uniform_over_maskable(masked):
    tokens, out = masked
    counts = np.bincount(out["mlm_positions"][out["mlm_weights"] > 0], minlength=tokens.shape[1])
    can = maskable(tokens[:1], SPECIAL)[0]
    freq = counts[can] / len(tokens)
    # Each maskable position is chosen with probability 15/97 (standard deviation 0.0057 over 4000 rows).
    assert np.abs(freq - 15 / 97).max() < 0.03
    assert (counts[~can] == 0).all()


@pytest.mark.parametrize("mask_prob,n_maskable,expected", [
    (0.15, 1, 1),      # max(1, ...): a short sequence still predicts one token
    (0.15, 6, 1),      # round(0.9) = 1
    (0.15, 10, 2),     # round(1.5) = 2 (half to even)
    (0.25, 10, 2),     # round(2.5) = 2 (half to even)
    (0.25, 14, 4),     # round(3.5) = 4
    (0.15, 97, 15),
    (0.15, 500, 20),   # capped by max_predictions
    (1.0, 7, 7),
])
def test_count_rule(mask_prob, n_maskable, expected):
    tokens = np.full(n_maskable + 2, 9, np.int32)
    tokens[0], tokens[-1] = SPECIAL.cls, SPECIAL.sep
    inputs, positions, ids, weights = mask_tokens(
        tokens, maskable(tokens, SPECIAL), np.random.default_rng(0),
        mask_prob=mask_prob, max_predictions=20, mask_id=SPECIAL.mask, vocab_size=VOCAB,
    )
    assert weights.sum() == expected
    assert positions.shape == ids.shape == weights.shape == (20,)
    assert (inputs != tokens).sum() <= expected


def test_no_maskable_tokens():
    tokens = np.asarray([SPECIAL.cls, SPECIAL.sep, SPECIAL.pad, SPECIAL.pad], np.int32)
    inputs, positions, ids, weights = mask_tokens(tokens, maskable(tokens, SPECIAL), np.random.default_rng(0), **KW)
    np.testing.assert_array_equal(inputs, tokens)
    assert not weights.any() and not positions.any() and not ids.any()


def test_mask_batch_rows_follow_their_seeds():
    tokens = _rows(6, seed=3)
    can = maskable(tokens, SPECIAL)
    seeds = [(11, 0, i) for i in range(6)]
    out = mask_batch(tokens, can, seeds, **KW)
    for b in range(6):
        row = mask_tokens(tokens[b], can[b], np.random.default_rng(seeds[b]), **KW)
        for got, key in zip(row, ("inputs", "mlm_positions", "mlm_ids", "mlm_weights")):
            np.testing.assert_array_equal(out[key][b], got)
    # Same seeds, same masks (static masking / resumption); a new epoch in the seed, new masks (dynamic).
    again = mask_batch(tokens, can, seeds, **KW)
    np.testing.assert_array_equal(again["inputs"], out["inputs"])
    next_epoch = mask_batch(tokens, can, [(11, 1, i) for i in range(6)], **KW)
    assert (next_epoch["mlm_positions"] != out["mlm_positions"]).any(axis=1).all()
    # Inputs are not modified in place.
    np.testing.assert_array_equal(tokens, _rows(6, seed=3))


def test_argument_errors():
    tokens = _rows(2)
    can = maskable(tokens, SPECIAL)
    with pytest.raises(ValueError, match="one seed per row"):
        mask_batch(tokens, can, [(0,)], **KW)
    with pytest.raises(ValueError, match="mask_prob"):
        mask_batch(tokens, can, [0, 1], **{**KW, "mask_prob": 0.0})
    with pytest.raises(ValueError, match="max_predictions"):
        mask_batch(tokens, can, [0, 1], **{**KW, "max_predictions": 0})
    with pytest.raises(ValueError, match="mask_id=1000 is outside"):
        mask_batch(tokens, can, [0, 1], **{**KW, "mask_id": VOCAB})
    with pytest.raises(ValueError, match="equal shape"):
        mask_batch(tokens, can[:, :5], [0, 1], **KW)
    with pytest.raises(ValueError, match="one sequence"):
        mask_tokens(tokens, can, np.random.default_rng(0), **KW)
