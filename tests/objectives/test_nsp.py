"""BERT next-sentence examples: layout, label balance, true continuations, random segments, no lost text."""

import numpy as np
import pytest

from llm_jax.data.tokenizer import SpecialIds
from llm_jax.objectives.nsp import IS_NEXT, IS_RANDOM, make_nsp_examples, truncate_seq_pair

SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)
# Synthetic ids say where a token came from: id = BASE + sentence_number * STRIDE + position.
BASE, STRIDE = 10, 100
SEQ_LEN = 64


def _corpus(seed, n_docs=60, sentences=(3, 25), length=None, max_len=30):
    """Documents of globally numbered sentences; constant sentence length if `length` is given."""
    rng = np.random.default_rng(seed)
    docs, doc_of = [], []
    for d in range(n_docs):
        doc = []
        for _ in range(int(rng.integers(*sentences))):
            n = length or int(rng.integers(1, max_len))
            doc.append(BASE + len(doc_of) * STRIDE + np.arange(n, dtype=np.int32))
            doc_of.append(d)
        docs.append(doc)
    return docs, np.asarray(doc_of)


def _split(row_tokens):
    """(A, B) content of one `[CLS] A [SEP] B [SEP] pad...` row."""
    seps = np.flatnonzero(row_tokens == SPECIAL.sep)
    assert len(seps) == 2 and row_tokens[0] == SPECIAL.cls
    return row_tokens[1 : seps[0]], row_tokens[seps[0] + 1 : seps[1]]


def _sentence(tokens):
    return (tokens - BASE) // STRIDE


@pytest.fixture(scope="module")
def constant_length():
    docs, doc_of = _corpus(seed=0, length=9)
    return docs, doc_of, make_nsp_examples(docs, SEQ_LEN, SPECIAL, np.random.default_rng(0))


@pytest.fixture(scope="module")
def variable_length():
    docs, doc_of = _corpus(seed=1)
    return docs, doc_of, make_nsp_examples(docs, SEQ_LEN, SPECIAL, np.random.default_rng(1))


def test_layout(variable_length):
    _, _, out = variable_length
    tokens, segments, mask, labels = out["tokens"], out["segment_ids"], out["mask"], out["nsp_label"]
    n = len(labels)
    assert n > 200
    assert tokens.shape == segments.shape == mask.shape == (n, SEQ_LEN)
    assert tokens.dtype == np.int32 and segments.dtype == np.int32 and mask.dtype == bool
    assert labels.dtype == np.int32 and set(np.unique(labels)) <= {IS_NEXT, IS_RANDOM}
    for t, s, m in zip(tokens, segments, mask):
        a, b = _split(t)
        assert len(a) >= 1 and len(b) >= 1
        end = len(a) + len(b) + 3
        assert end <= SEQ_LEN
        assert m[:end].all() and not m[end:].any() and (t[end:] == SPECIAL.pad).all()
        # Segment 0: [CLS] A [SEP]; segment 1: B [SEP]; padding 0.
        np.testing.assert_array_equal(s, np.r_[np.zeros(len(a) + 2), np.ones(len(b) + 1), np.zeros(SEQ_LEN - end)])


def test_label_balance():
    # Short sentences, long documents, full-length targets: a chunk then has one sentence only when it is the
    # last sentence of its document, and the reference always pairs such a chunk with a random B. Every other
    # chunk flips a fair coin.
    docs, doc_of = _corpus(seed=4, n_docs=1000, sentences=(40, 41), max_len=9)
    out = make_nsp_examples(docs, SEQ_LEN, SPECIAL, np.random.default_rng(4), short_seq_prob=0.0)
    last_sentence = {len(doc_of) - 1} | set(np.flatnonzero(np.diff(doc_of)))
    forced = np.asarray([set(_sentence(_split(t)[0])) <= last_sentence for t in out["tokens"]])
    labels = out["nsp_label"]
    assert (labels[forced] == IS_RANDOM).all()
    coin = labels[~forced]
    assert len(coin) > 4000
    # 4 standard deviations of a fair coin over the rows.
    assert abs(coin.mean() - 0.5) < 4 * 0.5 / np.sqrt(len(coin))
    # Overall the random share is slightly above 1/2, as in create_pretraining_data.py.
    assert 0.5 < labels.mean() < 0.6


def test_true_next_segments_are_consecutive_sentences(constant_length, variable_length):
    # With constant sentence lengths, truncation (less than one sentence) never removes a whole sentence,
    # so A and B are exactly consecutive runs of sentences.
    _, doc_of, out = constant_length
    n_next = 0
    for t, label in zip(out["tokens"], out["nsp_label"]):
        if label != IS_NEXT:
            continue
        n_next += 1
        a, b = map(_sentence, _split(t))
        sentences = np.unique(np.r_[a, b])
        np.testing.assert_array_equal(sentences, np.arange(sentences[0], sentences[-1] + 1))
        assert a.max() + 1 == b.min()
        assert len(set(doc_of[sentences])) == 1
    assert n_next > 100
    # With any lengths: same document, B after A, tokens in text order.
    _, doc_of, out = variable_length
    for t, label in zip(out["tokens"], out["nsp_label"]):
        if label == IS_NEXT:
            a, b = _split(t)
            both = np.r_[a, b]
            assert (np.diff(both) > 0).all()
            assert len(set(doc_of[_sentence(both)])) == 1


def test_random_segments_come_from_another_document(variable_length):
    _, doc_of, out = variable_length
    for t, label in zip(out["tokens"], out["nsp_label"]):
        if label == IS_RANDOM:
            a, b = _split(t)
            b_docs = set(doc_of[_sentence(b)])
            assert len(b_docs) == 1 and b_docs != set(doc_of[_sentence(a)])
            assert (np.diff(b) > 0).all()


def test_no_sentence_lost_or_repeated(constant_length):
    # Every sentence is used once, as part of A or of a true-next B: the A-side sentences left over when B
    # is random go back to the document (the reference's `i -= num_unused_segments`).
    docs, _, out = constant_length
    used = []
    for t, label in zip(out["tokens"], out["nsp_label"]):
        a, b = _split(t)
        used.extend(np.unique(_sentence(a)))
        if label == IS_NEXT:
            used.extend(np.unique(_sentence(b)))
    np.testing.assert_array_equal(np.sort(used), np.arange(sum(len(d) for d in docs)))


def test_short_seq_prob_shortens_examples():
    docs, _ = _corpus(seed=2)
    full = make_nsp_examples(docs, SEQ_LEN, SPECIAL, np.random.default_rng(0), short_seq_prob=0.0)
    short = make_nsp_examples(docs, SEQ_LEN, SPECIAL, np.random.default_rng(0), short_seq_prob=1.0)
    assert full["mask"].sum(1).mean() > SEQ_LEN * 0.8
    assert short["mask"].sum(1).mean() < full["mask"].sum(1).mean() - 10
    assert len(short["nsp_label"]) > len(full["nsp_label"])


def test_deterministic_given_rng(variable_length):
    docs, _, out = variable_length
    again = make_nsp_examples(docs, SEQ_LEN, SPECIAL, np.random.default_rng(1))
    for key in out:
        np.testing.assert_array_equal(again[key], out[key])
    other = make_nsp_examples(docs, SEQ_LEN, SPECIAL, np.random.default_rng(2))
    assert other["tokens"].shape != out["tokens"].shape or (other["tokens"] != out["tokens"]).any()


def _reference_truncate(tokens_a, tokens_b, max_num_tokens, coin):
    """google-research/bert truncate_seq_pair, with the coin flips supplied."""
    a, b = list(tokens_a), list(tokens_b)
    while len(a) + len(b) > max_num_tokens:
        trunc = a if len(a) > len(b) else b
        if coin():
            del trunc[0]
        else:
            trunc.pop()
    return a, b


@pytest.mark.parametrize(
    "len_a,len_b,budget", [(5, 3, 10), (30, 4, 20), (4, 30, 20), (12, 12, 9), (40, 7, 2), (3, 3, 2)]
)
def test_truncate_matches_the_reference(len_a, len_b, budget):
    a, b = np.arange(len_a), 100 + np.arange(len_b)
    ref_a, ref_b = _reference_truncate(a, b, budget, lambda: True)
    rng = np.random.default_rng(0)
    fronts_a = []
    for _ in range(300):
        got_a, got_b = truncate_seq_pair(a, b, budget, rng)
        # Same lengths as the reference loop, and each side stays a contiguous slice of itself.
        assert (len(got_a), len(got_b)) == (len(ref_a), len(ref_b))
        assert len(got_a) >= 1 and len(got_b) >= 1
        for got, orig in ((got_a, a), (got_b, b)):
            if len(got):
                np.testing.assert_array_equal(got, orig[got[0] - orig[0] :][: len(got)])
        fronts_a.append(got_a[0] - a[0])
    removed_a = len_a - len(ref_a)
    if removed_a >= 2:
        # Front removals are Binomial(removed, 1/2): mean removed/2.
        assert abs(np.mean(fronts_a) - removed_a / 2) < 0.25 * removed_a


def test_errors():
    docs, _ = _corpus(seed=3, n_docs=3)
    with pytest.raises(ValueError, match="at least 2 non-empty documents"):
        make_nsp_examples(docs[:1] + [[]], SEQ_LEN, SPECIAL, np.random.default_rng(0))
    with pytest.raises(ValueError, match="seq_len"):
        make_nsp_examples(docs, 4, SPECIAL, np.random.default_rng(0))
    with pytest.raises(ValueError, match="short_seq_prob"):
        make_nsp_examples(docs, SEQ_LEN, SPECIAL, np.random.default_rng(0), short_seq_prob=1.5)
