"""Tokenizers: deterministic training of every kind, save/load, special-token roles, encoding."""

import numpy as np
import pytest
import sentencepiece
import tokenizers
from tokenizers import models, normalizers

from llm_jax.data import (
    SpecialIds,
    load_tokenizer,
    save_tokenizer,
    special_ids,
    tokenize_documents,
    train_tokenizer,
)
from llm_jax.data import tokenizer as tokenizer_module
from llm_jax.data.tokenizers import (
    ALBERT_TOKENIZER,
    BERT_ROLES,
    BERT_TOKENIZER,
    GPT1_TOKENIZER,
    GPT2_ROLES,
    GPT2_TOKENIZER,
    KINDS,
    ROBERTA_ROLES,
    ROBERTA_TOKENIZER,
    SPIECE_MODEL,
    T5_ROLES,
    T5_TOKENIZER,
    TRANSFO_XL_TOKENIZER,
    XLNET_ROLES,
    XLNET_TOKENIZER,
    auto_template,
    tokenizer_kind,
)

STYLES = {"bert": BERT_TOKENIZER, "roberta": ROBERTA_TOKENIZER, "gpt1": GPT1_TOKENIZER, "gpt2": GPT2_TOKENIZER,
          "albert": ALBERT_TOKENIZER, "xlnet": XLNET_TOKENIZER, "t5": T5_TOKENIZER,
          "transfo_xl": TRANSFO_XL_TOKENIZER}
STYLE_VOCAB = 800
T5_EXTRA_IDS = 20
TEXT = "In the beginning God created the heaven and the earth."


@pytest.fixture(scope="session")
def lines(validation_docs):
    return [line for doc in validation_docs for line in doc.split("\n") if line.strip()]


@pytest.fixture(scope="session")
def few_docs(lines):
    """A few hundred lines as documents of 20 lines: every kind trains on them in well under a second.

    The last line puts the characters that special tokens are spelled with into every alphabet.
    """
    head = lines[:600]
    return ["\n".join(head[i:i + 20]) for i in range(0, len(head), 20)] + ["Markup: <b>, [1], a_b, c/d and |x|."]


@pytest.fixture(scope="session")
def held_out(lines):
    """Sentences none of the style tokenizers trained on, plus a few awkward ones."""
    return lines[2000:2060] + ["The quick brown fox jumps over the lazy dog.", "Héllo, wörld! Ça va? Naïve café.",
                               "  extra   spaces\tand\ttabs  ", "It's ``quoted'' — 2024...", "東京は日本の首都です。"]


@pytest.fixture(scope="session")
def styled(few_docs):
    """Every family style trained once: name → tokenizer."""
    cache = {}

    def get(name):
        if name not in cache:
            extra = {"extra_ids": T5_EXTRA_IDS} if name == "t5" else {}
            cache[name] = STYLES[name].train(few_docs, STYLE_VOCAB, **extra)
        return cache[name]

    return get


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


@pytest.mark.parametrize("name", sorted(STYLES))
def test_every_style_trains_deterministically_and_round_trips(tmp_path, name, styled, few_docs, held_out):
    spec, tok = STYLES[name], styled(name)
    assert tokenizer_kind(tok) == spec.kind
    assert 0.8 * STYLE_VOCAB < tok.get_vocab_size() <= STYLE_VOCAB
    extra = {"extra_ids": T5_EXTRA_IDS} if name == "t5" else {}
    assert spec.train(few_docs, STYLE_VOCAB, **extra).to_str() == tok.to_str()
    path = save_tokenizer(tok, tmp_path)
    assert path == tmp_path / "tokenizer.json"
    assert (tmp_path / SPIECE_MODEL).is_file() == (spec.kind == "unigram")
    loaded = load_tokenizer(tmp_path)
    assert loaded.to_str() == tok.to_str()
    assert [e.ids for e in loaded.encode_batch(held_out)] == [e.ids for e in tok.encode_batch(held_out)]
    assert special_ids(loaded, spec.roles) == special_ids(tok, spec.roles)
    if spec.kind == "unigram":
        # The reloaded tokenizer writes the same SentencePiece model again.
        first = (tmp_path / SPIECE_MODEL).read_bytes()
        save_tokenizer(loaded, tmp_path / "again")
        assert (tmp_path / "again" / SPIECE_MODEL).read_bytes() == first


def test_special_ids_of_trained_tokenizers(wordpiece_tok, bpe_tok):
    assert special_ids(wordpiece_tok) == SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)
    assert special_ids(wordpiece_tok, BERT_ROLES) == special_ids(wordpiece_tok)
    # RoBERTa's own order: <s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=4; <s>/</s> are also bos/eos.
    assert special_ids(bpe_tok) == SpecialIds(pad=1, unk=3, cls=0, sep=2, mask=4, bos=0, eos=2)
    assert special_ids(bpe_tok, ROBERTA_ROLES) == special_ids(bpe_tok)


def test_special_ids_of_the_family_styles(styled):
    assert special_ids(styled("xlnet"), XLNET_ROLES) == SpecialIds(
        unk=0, bos=1, eos=2, cls=3, sep=4, pad=5, mask=6, eod=7)
    # Without a role map the XLNet vocabulary is still read right: <cls>/<sep>, not <s>/</s>.
    assert special_ids(styled("xlnet")) == special_ids(styled("xlnet"), XLNET_ROLES)
    gpt2 = special_ids(styled("gpt2"), GPT2_ROLES)
    assert gpt2 == SpecialIds(unk=0, bos=0, eos=0, eod=0) and gpt2.pad is None
    assert special_ids(styled("albert"), ALBERT_TOKENIZER.roles) == SpecialIds(
        pad=0, unk=1, cls=2, sep=3, mask=4, bos=2, eos=3)
    assert special_ids(styled("gpt1"), GPT1_TOKENIZER.roles) == SpecialIds(unk=0)
    assert special_ids(styled("transfo_xl"), TRANSFO_XL_TOKENIZER.roles) == SpecialIds(eos=0, unk=1)


def test_t5_sentinels_end_the_vocabulary_in_descending_order(styled):
    tok = styled("t5")
    size = tok.get_vocab_size()
    ids = special_ids(tok, T5_ROLES)
    assert (ids.pad, ids.eos, ids.unk, ids.cls, ids.mask) == (0, 1, 2, None, None)
    assert ids.sentinels == tuple(range(size - 1, size - 1 - T5_EXTRA_IDS, -1))
    assert tok.token_to_id("<extra_id_0>") == size - 1
    assert tok.token_to_id(f"<extra_id_{T5_EXTRA_IDS - 1}>") == size - T5_EXTRA_IDS
    assert tok.encode("<extra_id_0> and", add_special_tokens=False).ids[0] == size - 1
    assert tok.encode("hello").tokens[-1] == "</s>"  # T5 closes every input with EOS


def test_require_names_what_is_missing(styled):
    gpt2 = special_ids(styled("gpt2"), GPT2_ROLES)
    with pytest.raises(ValueError, match=r"the MLM objective needs the special token role\(s\) pad, mask"):
        gpt2.require("pad", "mask", purpose="the MLM objective")
    assert gpt2.require("eod", "bos", purpose="causal LM packing") is gpt2
    with pytest.raises(ValueError, match="Unknown special-token role"):
        gpt2.require("padding", purpose="x")


def test_declared_role_tokens_must_exist(wordpiece_tok):
    with pytest.raises(ValueError, match=r"gives 'cls' the token '<cls>', which is not in the tokenizer's vocab"):
        special_ids(wordpiece_tok, {**BERT_ROLES, "cls": "<cls>"})
    with pytest.raises(ValueError, match="declares sentinels"):
        special_ids(wordpiece_tok, {**BERT_ROLES, "sentinels": "<extra_id_{i}>"})
    with pytest.raises(ValueError, match=r"no '\{i\}'"):
        special_ids(wordpiece_tok, {"sentinels": "<extra_id>"})
    with pytest.raises(ValueError, match="Unknown special-token role 'start'"):
        special_ids(wordpiece_tok, {"start": "[CLS]"})


def _vocab_tokenizer(tokens: list[str]) -> tokenizers.Tokenizer:
    return tokenizers.Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token=tokens[0]))


def test_special_ids_of_checkpoint_layouts():
    # bert-base-uncased: [PAD]=0, [unused0..98], [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103.
    bert = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]", "the"]
    assert special_ids(_vocab_tokenizer(bert)) == SpecialIds(pad=0, unk=100, cls=101, sep=102, mask=103)
    # roberta-base keeps <mask> last (50264); the rest are 0..3.
    roberta = ["<s>", "<pad>", "</s>", "<unk>", "the", "a", "<mask>"]
    assert special_ids(_vocab_tokenizer(roberta)) == SpecialIds(pad=1, unk=3, cls=0, sep=2, mask=6, bos=0, eos=2)
    # xlnet-base-cased: <unk>=0 <s>=1 </s>=2 <cls>=3 <sep>=4 <pad>=5 <mask>=6; cls/sep are <cls>/<sep>.
    xlnet = ["<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>", "the"]
    assert special_ids(_vocab_tokenizer(xlnet)) == SpecialIds(
        unk=0, bos=1, eos=2, cls=3, sep=4, pad=5, mask=6, eod=7)
    # A role the vocabulary has no token for is None, not an error: the objective that needs it says so.
    no_mask = special_ids(_vocab_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the"]))
    assert no_mask.mask is None and no_mask.cls == 2
    gpt2 = special_ids(_vocab_tokenizer(["the", "a", "<|endoftext|>"]))
    assert gpt2 == special_ids(_vocab_tokenizer(["the", "a", "<|endoftext|>"]), GPT2_ROLES)


def test_unigram_ids_equal_sentencepiece(tmp_path, styled, held_out):
    for name in ("t5", "xlnet", "albert"):
        tok = styled(name)
        save_tokenizer(tok, tmp_path / name)
        sp = sentencepiece.SentencePieceProcessor(model_file=str(tmp_path / name / SPIECE_MODEL))
        # The sentinels are not SentencePiece pieces (T5's spiece.model has none either).
        assert sp.get_piece_size() == tok.get_vocab_size() - (T5_EXTRA_IDS if name == "t5" else 0)
        texts = held_out
        if name in ("albert", "xlnet"):
            # ALBERT/XLNet's preprocess_text (and ALBERT's lower case) runs before SentencePiece.
            steps = [normalizers.Replace("``", '"'), normalizers.Replace("''", '"'), normalizers.NFKD(),
                     normalizers.StripAccents()] + ([normalizers.Lowercase()] if name == "albert" else [])
            texts = [normalizers.Sequence(steps).normalize_str(t) for t in held_out]
        ours = [e.ids for e in tok.encode_batch(held_out, add_special_tokens=False)]
        assert ours == sp.encode(texts), name


def test_unigram_defaults_to_plain_sentencepiece(few_docs, styled):
    # Cased and accents kept (T5's SentencePiece); ALBERT's lower-casing comes with its spec only.
    plain = train_tokenizer("unigram", few_docs, STYLE_VOCAB)
    assert plain.normalizer.normalize_str("Café") == "Café"
    assert styled("albert").normalizer.normalize_str("Café") == "cafe"
    assert special_ids(plain) == SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)


def test_special_tokens_in_role_map_order(few_docs, bpe_tok, validation_docs, small_vocab):
    # A family may give just its role map's tokens: each takes the next id, and the roles are read back.
    specials = list(dict.fromkeys(ROBERTA_ROLES.values()))
    tok = train_tokenizer("bytelevel_bpe", validation_docs, small_vocab, special_tokens=specials)
    assert tok.to_str() == bpe_tok.to_str()


@pytest.mark.parametrize("name", sorted(STYLES))
def test_auto_template_is_the_family_template(name):
    # A family that gives only its kind and role tokens still gets its own input layout.
    assert auto_template(STYLES[name].kind, STYLES[name].roles) == STYLES[name].template


def test_unigram_templates(styled):
    assert styled("albert").encode("a b", "c").tokens[0] == "[CLS]"
    enc = styled("xlnet").encode("a b", "c")
    # XLNet puts its classifier token last, with its own token type 2.
    assert enc.tokens[-2:] == ["<sep>", "<cls>"] and enc.type_ids[-1] == 2 and enc.tokens.count("<sep>") == 2


def test_gpt1_pieces_end_words_with_the_suffix(styled):
    tok = styled("gpt1")
    enc = tok.encode("The Quick brown foxes, unbelievably!")
    assert enc.tokens[0] == "the</w>"  # lower-cased, word-final piece
    # Exactly the last piece of every word (punctuation marks are words of their own) carries the suffix.
    assert max(enc.word_ids) + 1 == 7
    for j, (token, word) in enumerate(zip(enc.tokens, enc.word_ids)):
        last = j + 1 == len(enc.tokens) or enc.word_ids[j + 1] != word
        assert token.endswith("</w>") == last, (j, token)
    assert tok.decode(enc.ids) == "the quick brown foxes , unbelievably !"
    vocab = tok.get_vocab()
    assert "e</w>" in vocab and "e" in vocab


def test_keep_newlines_keeps_newline_tokens_for_bytelevel_bpe(styled, bpe_tok):
    doc = "First line of it.\nSecond line.\n\nA new paragraph."
    tok = styled("gpt2")
    (ids,), = tokenize_documents(tok, [doc], keep_newlines=True)
    assert tok.decode(ids.tolist()) == doc
    assert any("Ċ" in t for t in tok.encode(doc).tokens)
    # Sentence by sentence (the default), the newline is never encoded.
    lines = tokenize_documents(tok, [doc])[0]
    assert len(lines) == 3 and not any("Ċ" in tok.id_to_token(i) for s in lines for i in s.tolist())


def test_wordlevel_vocabulary(styled, few_docs):
    tok = styled("transfo_xl")
    vocab = tok.get_vocab()
    assert vocab["<eos>"] == 0 and vocab["<unk>"] == 1 and vocab["the"] == 2  # most frequent word first
    assert tok.encode("the zyzzyva").tokens == ["the", "<unk>"]
    lower = train_tokenizer("wordlevel", few_docs, 500, lowercase=True)
    assert lower.encode("THE").tokens == ["the"]


def test_save_load_round_trip(tmp_path, wordpiece_tok, bpe_tok):
    for name, tok in (("wp", wordpiece_tok), ("bpe", bpe_tok)):
        path = save_tokenizer(tok, tmp_path / name)
        assert path == tmp_path / name / "tokenizer.json"
        for source in (tmp_path / name, path, str(path)):
            loaded = load_tokenizer(source)
            assert loaded.to_str() == tok.to_str()
            assert loaded.encode(TEXT).ids == tok.encode(TEXT).ids
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


def test_tokenize_documents(wordpiece_tok, bpe_tok):
    docs = ["Hello world.\n\nSecond sentence here.", "  \n", "One more."]
    for tok in (wordpiece_tok, bpe_tok):
        out = tokenize_documents(tok, docs)
        # The blank document is dropped; the blank line inside the first is skipped.
        assert [len(d) for d in out] == [2, 1]
        specials = special_ids(tok).ids()
        for doc in out:
            for sentence in doc:
                assert sentence.dtype == np.int32 and sentence.size > 0
                assert not specials & set(sentence.tolist())
        assert out[0][1].tolist() == tok.encode("Second sentence here.", add_special_tokens=False).ids
    assert wordpiece_tok.decode(tokenize_documents(wordpiece_tok, docs)[1][0].tolist()) == "one more."


@pytest.mark.parametrize("name", ["bert", "roberta", "xlnet", "t5", "albert"])
def test_text_that_spells_special_tokens_stays_text(name, styled):
    tok = styled(name)
    text = "Use [MASK] [SEP] <mask> </s> <cls> <sep> <pad> <unk> <extra_id_0> here."
    (sentence,), = tokenize_documents(tok, [text])
    assert not special_ids(tok).ids() & set(sentence.tolist())
    assert tok.decode(sentence.tolist()).replace(" ", "").lower() == text.replace(" ", "").lower()
    # The tokenizer itself is left as it was.
    assert not tok.encode_special_tokens


def test_tokenize_documents_keeps_document_order(validation_docs, wordpiece_tok):
    docs = validation_docs[:40]
    out = tokenize_documents(wordpiece_tok, docs)
    assert len(out) == len(docs)
    assert [len(d) for d in out] == [len(doc.split("\n")) for doc in docs]


def test_training_errors(validation_docs):
    docs = validation_docs[:5]
    with pytest.raises(ValueError, match="Unknown tokenizer kind"):
        train_tokenizer("sentencepiece", docs, 500)
    with pytest.raises(ValueError, match="too small for a byte-level BPE"):
        train_tokenizer("bytelevel_bpe", docs, 200)
    with pytest.raises(ValueError, match="too small for a WordPiece"):
        train_tokenizer("wordpiece", docs, 40)
    with pytest.raises(ValueError, match="too small for a GPT-1 BPE"):
        train_tokenizer("gpt1_bpe", docs, 40)
    with pytest.raises(ValueError, match="empty text"):
        train_tokenizer("wordpiece", ["", " \n "], 500)
    with pytest.raises(ValueError, match="positive integer"):
        train_tokenizer("wordpiece", docs, 0)
    with pytest.raises(TypeError, match="not a single string"):
        train_tokenizer("wordpiece", "some text", 500)
    with pytest.raises(ValueError, match="keep_newlines=True needs a byte-level BPE"):
        train_tokenizer("wordpiece", docs, 500, keep_newlines=True)
    with pytest.raises(ValueError, match="extra_ids .* is for the unigram kind"):
        train_tokenizer("wordpiece", docs, 500, extra_ids=10)
    with pytest.raises(ValueError, match=r"names \['<cls>'\] but special_tokens"):
        train_tokenizer("wordpiece", docs, 500, special_tokens=["[PAD]", "[UNK]"],
                        roles={"unk": "[UNK]", "cls": "<cls>"})
    with pytest.raises(ValueError, match="needs an unknown token"):
        train_tokenizer("unigram", docs, 500, special_tokens=["<pad>"], roles={"pad": "<pad>"})
    with pytest.raises(ValueError, match="Unknown template"):
        train_tokenizer("wordpiece", docs, 500, template="gpt")
    with pytest.raises(ValueError, match="always lower-cases"):
        train_tokenizer("gpt1_bpe", docs, 500, lowercase=False)
    with pytest.raises(ValueError, match="contains the sentinel pattern"):
        train_tokenizer("unigram", docs, 500, special_tokens=["<pad>", "</s>", "<unk>", "<extra_id_{i}>"],
                        roles=T5_ROLES, extra_ids=10)
    with pytest.raises(ValueError, match="declares sentinels but extra_ids=0"):
        T5_TOKENIZER.train(docs, 500, extra_ids=0)


def test_legacy_module_exports_the_same_names():
    assert set(KINDS) == {"wordpiece", "bytelevel_bpe", "gpt1_bpe", "unigram", "wordlevel"}
    assert tokenizer_module.train_tokenizer is train_tokenizer and tokenizer_module.KINDS == KINDS
    assert tokenizer_module.SpecialIds is SpecialIds and tokenizer_module.BERT_TOKENIZER is BERT_TOKENIZER
