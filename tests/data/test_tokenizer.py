"""Tokenizers: deterministic training, save/load, special ids (ours and HF-checkpoint layouts), encoding."""

import numpy as np
import pytest
import tokenizers
from tokenizers import models

from llm_jax.data import SpecialIds, load_tokenizer, save_tokenizer, special_ids, tokenize_documents, train_tokenizer


def test_wordpiece_training_is_deterministic(validation_docs, wordpiece_tok, small_vocab):
    again = train_tokenizer("wordpiece", validation_docs, small_vocab)
    assert again.to_str() == wordpiece_tok.to_str()
    assert wordpiece_tok.get_vocab_size() <= small_vocab
    # The corpus is big enough that the budget is used, not cut short by a lack of merges.
    assert wordpiece_tok.get_vocab_size() > 0.9 * small_vocab


def test_bpe_training_is_deterministic(validation_docs, bpe_tok, small_vocab):
    again = train_tokenizer("bytelevel_bpe", validation_docs, small_vocab)
    assert again.to_str() == bpe_tok.to_str()
    assert 0.9 * small_vocab < bpe_tok.get_vocab_size() <= small_vocab


def test_special_ids_of_trained_tokenizers(wordpiece_tok, bpe_tok):
    assert special_ids(wordpiece_tok) == SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)
    # RoBERTa's own order: <s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=4.
    assert special_ids(bpe_tok) == SpecialIds(pad=1, unk=3, cls=0, sep=2, mask=4)


def test_post_processors_give_the_family_layouts(wordpiece_tok, bpe_tok):
    enc = wordpiece_tok.encode("The Lord said.", "It was good.")
    assert enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]" and enc.tokens.count("[SEP]") == 2
    first_sep = enc.tokens.index("[SEP]")
    assert set(enc.type_ids[: first_sep + 1]) == {0} and set(enc.type_ids[first_sep + 1 :]) == {1}
    assert "the" in enc.tokens  # BERT-uncased lower-cases

    enc = bpe_tok.encode("The Lord said.", "It was good.")
    assert enc.tokens[0] == "<s>" and enc.tokens[-1] == "</s>"
    # RoBERTa puts a double separator between the segments: <s> A </s></s> B </s>.
    assert enc.tokens.count("</s>") == 3
    first = enc.tokens.index("</s>")
    assert enc.tokens[first + 1] == "</s>"
    assert bpe_tok.decode(bpe_tok.encode("The Lord said.", add_special_tokens=False).ids) == "The Lord said."


def test_wordpiece_vocab_shape(wordpiece_tok):
    vocab = wordpiece_tok.get_vocab()
    # Every letter of the alphabet and its continuation piece is there; punctuation never continues a word.
    for ch in "abcdefghijklmnopqrstuvwxyz":
        assert ch in vocab and "##" + ch in vocab
    assert "##." not in vocab and "##," not in vocab
    # The '##' pieces are ordinary vocabulary, not special tokens (which would be skipped when decoding).
    ids = wordpiece_tok.encode("unbelievably", add_special_tokens=False).ids
    assert len(ids) > 1
    assert wordpiece_tok.decode(ids) == "unbelievably"


def test_save_load_round_trip(tmp_path, wordpiece_tok, bpe_tok):
    for name, tok in (("wp", wordpiece_tok), ("bpe", bpe_tok)):
        path = save_tokenizer(tok, tmp_path / name)
        assert path == tmp_path / name / "tokenizer.json"
        for source in (tmp_path / name, path, str(path)):
            loaded = load_tokenizer(source)
            assert loaded.to_str() == tok.to_str()
            text = "In the beginning God created the heaven and the earth."
            assert loaded.encode(text).ids == tok.encode(text).ids
            assert special_ids(loaded) == special_ids(tok)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No tokenizer.json"):
        load_tokenizer(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tokenizer(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a valid tokenizers JSON"):
        load_tokenizer(bad)


def _vocab_tokenizer(tokens: list[str]) -> tokenizers.Tokenizer:
    return tokenizers.Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token=tokens[0]))


def test_special_ids_of_checkpoint_layouts():
    # bert-base-uncased: [PAD]=0, [unused0..98], [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103.
    bert = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]", "the"]
    assert special_ids(_vocab_tokenizer(bert)) == SpecialIds(pad=0, unk=100, cls=101, sep=102, mask=103)
    # roberta-base keeps <mask> last (50264); the rest are 0..3.
    roberta = ["<s>", "<pad>", "</s>", "<unk>", "the", "a", "<mask>"]
    assert special_ids(_vocab_tokenizer(roberta)) == SpecialIds(pad=1, unk=3, cls=0, sep=2, mask=6)
    with pytest.raises(ValueError, match=r"mask \(\[MASK\] or <mask>\)"):
        special_ids(_vocab_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the"]))


def test_tokenize_documents(wordpiece_tok, bpe_tok):
    docs = ["Hello world.\n\nSecond sentence here.", "  \n", "One more."]
    for tok in (wordpiece_tok, bpe_tok):
        out = tokenize_documents(tok, docs)
        # The blank document is dropped; the blank line inside the first is skipped.
        assert [len(d) for d in out] == [2, 1]
        specials = set(special_ids(tok).as_tuple())
        for doc in out:
            for sentence in doc:
                assert sentence.dtype == np.int32 and sentence.size > 0
                assert not specials & set(sentence.tolist())
        assert out[0][1].tolist() == tok.encode("Second sentence here.", add_special_tokens=False).ids
    assert wordpiece_tok.decode(tokenize_documents(wordpiece_tok, docs)[1][0].tolist()) == "one more."


def test_text_that_spells_special_tokens_stays_text(wordpiece_tok, bpe_tok):
    for tok in (wordpiece_tok, bpe_tok):
        (sentence,), = tokenize_documents(tok, ["Use [MASK] and [SEP] or <mask> and </s> here."])
        ids = special_ids(tok)
        # [UNK] may appear (characters outside this small alphabet); the structural tokens may not.
        assert not {ids.pad, ids.cls, ids.sep, ids.mask} & set(sentence.tolist())
        # The tokenizer itself is left as it was.
        assert not tok.encode_special_tokens


def test_tokenize_documents_keeps_document_order(validation_docs, wordpiece_tok):
    docs = validation_docs[:40]
    out = tokenize_documents(wordpiece_tok, docs)
    assert len(out) == len(docs)
    assert [len(d) for d in out] == [len(doc.split("\n")) for doc in docs]


def test_training_errors(validation_docs):
    with pytest.raises(ValueError, match="Unknown tokenizer kind"):
        train_tokenizer("sentencepiece", validation_docs[:5], 500)
    with pytest.raises(ValueError, match="too small for a byte-level BPE"):
        train_tokenizer("bytelevel_bpe", validation_docs[:5], 200)
    with pytest.raises(ValueError, match="too small for a WordPiece"):
        train_tokenizer("wordpiece", validation_docs[:5], 40)
    with pytest.raises(ValueError, match="empty text"):
        train_tokenizer("wordpiece", ["", " \n "], 500)
    with pytest.raises(ValueError, match="positive integer"):
        train_tokenizer("wordpiece", validation_docs[:5], 0)
    with pytest.raises(TypeError, match="not a single string"):
        train_tokenizer("wordpiece", "some text", 500)
