"""Task features with pre-split words (#10.5): byte-level BPE words keep their word-initial space marker."""

import numpy as np
import pytest

from llm_jax.data import features
from llm_jax.data.tokenizers import (
    ALBERT_TOKENIZER,
    BERT_TOKENIZER,
    ROBERTA_TOKENIZER,
    T5_TOKENIZER,
    for_split_words,
)
from llm_jax.interop.tokenizer import save_hf_tokenizer

WORDS = ["The", "model", "reads", "every", "word", ",", "then", "predicts", "their", "tags", "."]
SEQ_LEN = 40


@pytest.fixture(scope="module")
def docs(validation_docs):
    lines = [line for doc in validation_docs for line in doc.split("\n") if line.strip()][:600]
    return ["\n".join(lines[i:i + 20]) for i in range(0, len(lines), 20)]


@pytest.fixture(scope="module")
def transformers(require):
    module = require("transformers")
    module.logging.set_verbosity_error()
    return module


def _token_features(tok):
    records = [{"tokens": WORDS, "label": list(range(len(WORDS)))}]
    return features.encode("token_classification", tok, records, SEQ_LEN).arrays


@pytest.mark.parametrize("spec", [ROBERTA_TOKENIZER, BERT_TOKENIZER, ALBERT_TOKENIZER, T5_TOKENIZER],
                         ids=["roberta", "bert", "albert", "t5"])
def test_split_words_match_transformers(tmp_path, spec, docs, transformers):
    tok = spec.train(docs, 800, **({"extra_ids": 10} if spec is T5_TOKENIZER else {}))
    save_hf_tokenizer(tok, tmp_path, model_max_length=SEQ_LEN, tokenizer_class=spec.hf_class, roles=spec.roles)
    # What Hugging Face's run_ner.py does: byte-level BPE needs add_prefix_space=True for split words.
    extra = {"add_prefix_space": True} if spec.kind == "bytelevel_bpe" else {}
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path, **extra)(WORDS, is_split_into_words=True)
    out = _token_features(tok)
    n = int(out["mask"][0].sum())
    assert out["inputs"][0, :n].tolist() == theirs["input_ids"]
    # Each word's tag sits on its first piece, where transformers' word_ids() starts a new word.
    firsts = [j for j, w in enumerate(theirs.word_ids()) if w is not None and w != theirs.word_ids()[j - 1]]
    assert np.flatnonzero(out["label_weights"][0]).tolist() == firsts
    assert out["labels"][0, firsts].tolist() == list(range(len(WORDS)))


def test_bytelevel_words_start_with_the_space_marker(docs):
    tok = ROBERTA_TOKENIZER.train(docs, 800)
    out = _token_features(tok)
    pieces = [tok.id_to_token(int(i)) for i in out["inputs"][0][out["label_weights"][0] > 0]]
    # Every word's first piece is word-initial: "Ġ" alone, or a piece starting with it.
    assert all(p.startswith("Ġ") for p in pieces), pieces
    # The tokenizer the caller passed is left as it was: encoding split words with it directly (the bug) gives
    # no word-initial piece at all.
    plain = tok.encode(WORDS, is_pretokenized=True, add_special_tokens=False).tokens
    assert not any(t.startswith("Ġ") for t in plain), plain


def test_wordpiece_is_unchanged(docs):
    tok = BERT_TOKENIZER.train(docs, 800)
    assert for_split_words(tok) is tok
    out = _token_features(tok)
    n = int(out["mask"][0].sum())
    assert out["inputs"][0, :n].tolist() == tok.encode(WORDS, is_pretokenized=True).ids


def test_left_padding_moves_each_rows_padding_first():
    """XLNet's layout (`INPUT_FORMAT.pad_side="left"`): the same tokens, the padding first, the last real token last."""
    from llm_jax.data.features import pad_left

    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    arrays = {"inputs": np.array([[5, 6, 7, 0, 0], [1, 2, 3, 4, 5]]), "mask": mask,
              "labels": np.array([[1, 2, 3, -1, -1], [1, 1, 1, 1, 1]]), "weight": np.array([1.0, 0.5])}
    out = pad_left(arrays)
    np.testing.assert_array_equal(out["inputs"], [[0, 0, 5, 6, 7], [1, 2, 3, 4, 5]])
    np.testing.assert_array_equal(out["mask"], [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(out["labels"], [[-1, -1, 1, 2, 3], [1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(out["weight"], arrays["weight"])
    # Multiple-choice rows [N, C, T] rotate per choice.
    mc = {"inputs": np.array([[[5, 0], [6, 7]]]), "mask": np.array([[[1, 0], [1, 1]]], bool)}
    np.testing.assert_array_equal(pad_left(mc)["inputs"], [[[0, 5], [6, 7]]])
