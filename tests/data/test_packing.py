"""RoBERTa FULL-SENTENCES packing: layout, no token lost or reordered, separators exactly at documents."""

import numpy as np
import pytest

from llm_jax.data import SpecialIds, pack_full_sentences, special_ids, tokenize_documents

SPECIAL = SpecialIds(pad=1, unk=3, cls=0, sep=2, mask=4)
# Synthetic token ids encode where they came from: id = BASE + sentence_number * STRIDE + position.
BASE, STRIDE = 10, 1000


def _synthetic_corpus(seed=0, n_docs=30, max_sentences=8, max_len=40):
    """Documents with globally numbered sentences; returns (docs, sentence -> document)."""
    rng = np.random.default_rng(seed)
    docs, doc_of = [], []
    for d in range(n_docs):
        doc = []
        for _ in range(int(rng.integers(1, max_sentences + 1))):
            s = len(doc_of)
            doc.append(BASE + s * STRIDE + np.arange(int(rng.integers(1, max_len + 1)), dtype=np.int32))
            doc_of.append(d)
        docs.append(doc)
    return docs, np.asarray(doc_of)


def _content(row_tokens, row_mask):
    """The tokens between the leading cls and the final sep of a row."""
    n = int(row_mask.sum())
    assert row_tokens[0] == SPECIAL.cls and row_tokens[n - 1] == SPECIAL.sep
    assert (row_tokens[n:] == SPECIAL.pad).all() and not row_mask[n:].any() and row_mask[:n].all()
    return row_tokens[1 : n - 1]


@pytest.mark.parametrize("seq_len", [16, 64, 128])
def test_rows_keep_every_token_once_in_order(seq_len):
    docs, _ = _synthetic_corpus()
    out = pack_full_sentences(docs, seq_len, SPECIAL)
    tokens, mask = out["tokens"], out["mask"]
    assert tokens.dtype == np.int32 and mask.dtype == bool and tokens.shape == mask.shape
    assert tokens.shape[1] == seq_len
    contents = [_content(t, m) for t, m in zip(tokens, mask)]
    stream = np.concatenate([c[c != SPECIAL.sep] for c in contents])
    expected = np.concatenate([s for doc in docs for s in doc])
    np.testing.assert_array_equal(stream, expected)


@pytest.mark.parametrize("seq_len", [16, 64, 128])
def test_separators_exactly_between_documents(seq_len):
    docs, doc_of = _synthetic_corpus(seed=1)
    out = pack_full_sentences(docs, seq_len, SPECIAL)
    inner_seps = 0
    for t, m in zip(out["tokens"], out["mask"]):
        content = _content(t, m)
        # Walk the row: a sep must sit between tokens of different documents, and documents may change
        # only across a sep.
        prev_doc, after_sep = None, False
        for i, tok in enumerate(content):
            if tok == SPECIAL.sep:
                assert 0 < i < len(content) - 1 and not after_sep
                after_sep = True
                inner_seps += 1
                continue
            doc = doc_of[(tok - BASE) // STRIDE]
            if prev_doc is not None:
                assert (doc != prev_doc) == after_sep
            prev_doc, after_sep = doc, False
    assert inner_seps > 0


def test_full_sentences_and_greedy_fill():
    seq_len = 64
    capacity = seq_len - 2
    docs, doc_of = _synthetic_corpus(seed=2, max_len=30)  # every sentence fits in a row
    lengths = {BASE + s * STRIDE: 0 for s in range(len(doc_of))}
    for doc in docs:
        for s in doc:
            lengths[int(s[0])] = len(s)
    out = pack_full_sentences(docs, seq_len, SPECIAL)
    contents = [_content(t, m) for t, m in zip(out["tokens"], out["mask"])]
    for r, content in enumerate(contents):
        body = content[content != SPECIAL.sep]
        sentence_ids = (body - BASE) // STRIDE
        # Whole sentences only: each sentence in a row is there with all of its tokens.
        for s in np.unique(sentence_ids):
            assert (sentence_ids == s).sum() == lengths[BASE + int(s) * STRIDE]
        if r + 1 < len(contents):
            # Greedy: the next row's first sentence (plus a separator if it starts a new document) did not fit.
            nxt = contents[r + 1]
            first = (int(nxt[0]) - BASE) // STRIDE
            extra = int(doc_of[first] != doc_of[(int(body[-1]) - BASE) // STRIDE])
            assert len(content) + lengths[BASE + first * STRIDE] + extra > capacity


def test_long_sentences_are_chunked_without_loss():
    seq_len = 10  # capacity 8
    long_sentence = np.arange(100, 125, dtype=np.int32)  # 25 tokens -> 8 + 8 + 8 + 1
    docs = [[np.asarray([10, 11], np.int32)], [long_sentence, np.asarray([50], np.int32)]]
    out = pack_full_sentences(docs, seq_len, SPECIAL)
    contents = [_content(t, m).tolist() for t, m in zip(out["tokens"], out["mask"])]
    assert contents == [
        [10, 11],
        list(range(100, 108)),
        list(range(108, 116)),
        list(range(116, 124)),
        [124, 50],
    ]


def test_document_separator_inside_a_row():
    docs = [[np.asarray([10, 11], np.int32)], [np.asarray([20], np.int32), np.asarray([21, 22], np.int32)]]
    out = pack_full_sentences(docs, 16, SPECIAL)
    assert out["tokens"].tolist() == [[0, 10, 11, 2, 20, 21, 22, 2] + [1] * 8]
    assert out["mask"].sum() == 8


def test_deterministic_and_real_corpus(validation_docs, bpe_tok):
    ids = tokenize_documents(bpe_tok, validation_docs[:60])
    special = special_ids(bpe_tok)
    a = pack_full_sentences(ids, 128, special)
    b = pack_full_sentences(ids, 128, special)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    n_tokens = sum(len(s) for d in ids for s in d)
    n_real = int(a["mask"].sum())
    # Real tokens = sentence tokens + cls/sep per row + one separator per in-row document boundary.
    assert n_tokens + 2 * len(a["tokens"]) <= n_real < n_tokens + 2 * len(a["tokens"]) + len(ids)
    # Packing is dense: rows are mostly full.
    assert a["mask"].mean() > 0.8


def test_errors():
    with pytest.raises(ValueError, match="seq_len"):
        pack_full_sentences([[np.asarray([10])]], 2, SPECIAL)
    with pytest.raises(ValueError, match="no tokens"):
        pack_full_sentences([[], [np.asarray([], np.int32)]], 16, SPECIAL)
