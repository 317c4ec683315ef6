"""WordPiece, as BERT tokenizes (Devlin et al., 2019, §3 "Input/Output Representations"; Wu et al., 2016).

BERT normalizer (clean text, CJK spacing, lower case + accent stripping for "uncased"), whitespace and
punctuation pre-splitting, greedy longest-match WordPiece with ``##`` continuation pieces: the pipeline of
``tokenizers.implementations.BertWordPieceTokenizer`` and of transformers' ``BertTokenizer``.
"""

from __future__ import annotations

import collections
import unicodedata
from collections.abc import Sequence

import numpy as np
import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

# BertWordPieceTokenizer's default: the alphabet is capped so rare characters do not eat the vocabulary.
_MAX_WORDPIECE_ALPHABET = 1000
# Characters are counted over slices of this many sentences, so that no single string holds the corpus.
_COUNT_CHUNK = 8192


def _is_bert_punctuation(ch: str) -> bool:
    """BERT's punctuation test (google-research/bert tokenization.py ``_is_punctuation``).

    The pre-tokenizer makes every punctuation character a word of its own, so it never appears as a
    ``##`` continuation piece.
    """
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def normalized_alphabet(sentences: list[str], normalizer: normalizers.Normalizer, limit: int) -> list[str]:
    """The ``limit`` most frequent non-space characters after normalization (ties by code point), sorted.

    Raw characters are counted with numpy and only the distinct ones are normalized: BERT's normalizer
    (lower case, NFD accent stripping, control-character removal) acts character by character, and running
    it over the whole corpus in Python would cost more than the training itself.
    """
    raw_counts = np.zeros(0, dtype=np.int64)
    for start in range(0, len(sentences), _COUNT_CHUNK):
        codepoints = np.frombuffer("".join(sentences[start : start + _COUNT_CHUNK]).encode("utf-32-le"), np.uint32)
        chunk = np.bincount(codepoints)
        if chunk.size > raw_counts.size:
            chunk[: raw_counts.size] += raw_counts
            raw_counts = chunk
        else:
            raw_counts[: chunk.size] += chunk
    counts: collections.Counter[str] = collections.Counter()
    for cp in np.flatnonzero(raw_counts):
        for ch in normalizer.normalize_str(chr(cp)):
            counts[ch] += int(raw_counts[cp])
    chars = [c for c in counts if not c.isspace()]
    chars.sort(key=lambda c: (-counts[c], c))
    return sorted(chars[:limit])


def bert_normalizer(lowercase: bool) -> normalizers.Normalizer:
    """BERT's normalizer; ``strip_accents=None`` strips accents exactly when lower-casing (BERT-uncased)."""
    return normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                      lowercase=lowercase)


def _bert_pipeline(tok: tokenizers.Tokenizer, lowercase: bool) -> None:
    tok.normalizer = bert_normalizer(lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")


def train_wordpiece(sentences: list[str], vocab_size: int, specials: Sequence[str], unk: str,
                    lowercase: bool) -> tokenizers.Tokenizer:
    """Trains BERT's WordPiece; ``specials`` take ids ``0..len(specials)-1`` in order.

    Args:
      sentences: Training sentences.
      vocab_size: Upper bound on the vocabulary, specials included.
      specials: Special tokens in id order (BERT: ``[PAD] [UNK] [CLS] [SEP] [MASK]``).
      unk: The unknown token, one of ``specials``.
      lowercase: BERT-uncased normalization.

    Returns:
      The tokenizer, without post-processor (the caller sets the family's template).

    Raises:
      ValueError: No non-space character, or a ``vocab_size`` too small for the alphabet.
    """
    n_special = len(specials)
    probe = tokenizers.Tokenizer(models.WordPiece(unk_token=unk))
    _bert_pipeline(probe, lowercase)
    alphabet = normalized_alphabet(sentences, probe.normalizer, _MAX_WORDPIECE_ALPHABET)
    if not alphabet:
        raise ValueError("Cannot train a WordPiece tokenizer: the texts contain no non-space characters.")
    continuations = ["##" + c for c in alphabet if not _is_bert_punctuation(c)]
    needed = n_special + len(alphabet) + len(continuations) + 1
    if vocab_size < needed:
        raise ValueError(
            f"vocab_size={vocab_size} is too small for a WordPiece tokenizer of this text: the "
            f"{n_special} special tokens, {len(alphabet)} characters and {len(continuations)} '##' "
            f"continuations alone take {needed - 1} entries. Use vocab_size >= {needed} (BERT uses 30522)."
        )
    # Why the continuation pieces are declared up front: the trainer gives '##c' its id in the order it
    # meets words in a hash map, which changes from run to run, and equal-count merges are then ranked by
    # those ids, so two trainings on the same text gave different vocabularies. Declared in sorted order,
    # every id and therefore every tie-break is fixed. The initial alphabet (with limit_alphabet equal to
    # its size) likewise removes the trainer's unstable cut among equally frequent characters.
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(specials) + continuations,
        limit_alphabet=len(alphabet),
        initial_alphabet=alphabet,
        continuing_subword_prefix="##",
        show_progress=False,
    )
    probe.train_from_iterator(sentences, trainer=trainer)
    # The '##c' entries were registered as special tokens only to pin their ids; rebuild the tokenizer
    # from the learned vocabulary so they behave as ordinary pieces (matched inside words, kept by decode).
    vocab = probe.get_vocab(with_added_tokens=False)
    tok = tokenizers.Tokenizer(models.WordPiece(vocab=vocab, unk_token=unk, continuing_subword_prefix="##"))
    _bert_pipeline(tok, lowercase)
    tok.add_special_tokens(list(specials))
    return tok


__all__ = ["bert_normalizer", "normalized_alphabet", "train_wordpiece"]
