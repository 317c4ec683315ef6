"""Word-level vocabulary, as Transformer-XL reads WikiText-103 (Dai et al., 2019, §4; Merity et al., 2016).

Whitespace-separated words, optionally lower-cased (transformers 4.37's ``TransfoXLTokenizer``: ``lower_case``,
``delimiter=None``), the most frequent words up to the vocabulary size (ties in alphabetical order, as the
``tokenizers`` trainer breaks them), every other word ``<unk>``. ``<eos>`` ends each line of the corpus; that
is the stream builder's job (:attr:`SpecialIds.eos`), not the tokenizer's, as in ``TransfoXLTokenizer.__call__``.
"""

from __future__ import annotations

from collections.abc import Sequence

import tokenizers
from tokenizers import models, normalizers, pre_tokenizers, trainers


def train_wordlevel(sentences: list[str], vocab_size: int, specials: Sequence[str], unk: str,
                    lowercase: bool) -> tokenizers.Tokenizer:
    """Trains a word-level vocabulary; ``specials`` take ids ``0..len(specials)-1`` in order.

    Args:
      sentences: Training lines.
      vocab_size: Upper bound on the vocabulary, specials included.
      specials: Special tokens in id order (Transformer-XL: ``<eos> <unk>``).
      unk: The token for words outside the vocabulary, one of ``specials``.
      lowercase: Lower-case the words first.

    Returns:
      The tokenizer; decoding joins words with single spaces.

    Raises:
      ValueError: A ``vocab_size`` that leaves no room for a word.
    """
    if vocab_size <= len(specials):
        raise ValueError(f"vocab_size={vocab_size} leaves no room for words after the {len(specials)} special "
                         f"tokens; use a larger vocab_size (Transformer-XL on WikiText-103 uses 267735).")
    tok = tokenizers.Tokenizer(models.WordLevel(unk_token=unk))
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=1, special_tokens=list(specials),
                                        show_progress=False)
    tok.train_from_iterator(sentences, trainer=trainer)
    return tok


__all__ = ["train_wordlevel"]
