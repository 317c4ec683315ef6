"""Byte-pair encodings: byte-level BPE (GPT-2, RoBERTa) and GPT-1's lower-cased character BPE.

* Byte-level BPE (Radford et al., 2019, §2.2; RoBERTa, Liu et al., 2019, §4.4): BPE over the 256 byte symbols,
  so no input is ever out of vocabulary; no prefix space (as in GPT-2's and RoBERTa's encoders). transformers'
  ``GPT2Tokenizer`` / ``RobertaTokenizer``.
* GPT-1 BPE (Radford et al., 2018, §4.1 "Model specifications": a BPE vocabulary with 40,000 merges): text is
  lower-cased and split into words and punctuation as BERT's basic tokenizer does, and the last symbol of every
  word carries the end-of-word suffix ``</w>``. transformers' ``OpenAIGPTTokenizer`` (BertNormalizer with lower
  case, BertPreTokenizer, BPE with ``end_of_word_suffix="</w>"``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

from llm_jax.data.tokenizers.wordpiece import bert_normalizer, normalized_alphabet

# Number of distinct byte symbols of the byte-level alphabet (GPT-2 §2.2).
_BYTE_ALPHABET_SIZE = 256
# GPT-1's word-final marker (openai/finetune-transformer-lm text_utils.py).
END_OF_WORD = "</w>"
# As for WordPiece: the character alphabet is capped so rare characters do not eat the vocabulary.
_MAX_GPT1_ALPHABET = 1000


def train_bytelevel_bpe(texts: list[str], vocab_size: int, specials: Sequence[str], lowercase: bool,
                        mask: str | None = None) -> tokenizers.Tokenizer:
    """Trains a byte-level BPE; ``specials`` take ids ``0..len(specials)-1`` in order.

    Args:
      texts: Training sentences (or whole documents, when newlines are to be learned as text).
      vocab_size: Upper bound on the vocabulary, specials included.
      specials: Special tokens in id order (RoBERTa: ``<s> <pad> </s> <unk> <mask>``; GPT-2:
        ``<|endoftext|>``).
      lowercase: Lower-case the text first (neither GPT-2 nor RoBERTa does).
      mask: The mask token, if any: it takes the space before it (``"is <mask>."`` asks for ``Ġparis``), as
        in roberta-base's tokenizer, since masked pieces were word-initial ones in pretraining.

    Returns:
      The tokenizer, without post-processor (the caller sets the family's template).

    Raises:
      ValueError: A ``vocab_size`` too small for the specials and the byte alphabet.
    """
    needed = len(specials) + _BYTE_ALPHABET_SIZE + 1
    if vocab_size < needed:
        raise ValueError(
            f"vocab_size={vocab_size} is too small for a byte-level BPE tokenizer: the "
            f"{len(specials)} special tokens and the {_BYTE_ALPHABET_SIZE} byte symbols take "
            f"{needed - 1} entries. Use vocab_size >= {needed} (RoBERTa uses 50265, GPT-2 50257)."
        )
    # BPE without an unknown token: every byte is in the alphabet (RoBERTa §4.4).
    tok = tokenizers.Tokenizer(models.BPE())
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[tokenizers.AddedToken(s, special=True, normalized=False, lstrip=s == mask)
                        for s in specials],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def _gpt1_pipeline(tok: tokenizers.Tokenizer) -> None:
    # OpenAI GPT lower-cases everything and splits as BERT's BasicTokenizer (transformers' OpenAIGPTTokenizer).
    tok.normalizer = bert_normalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.BPEDecoder(suffix=END_OF_WORD)


def train_gpt1_bpe(sentences: list[str], vocab_size: int, specials: Sequence[str], unk: str) -> tokenizers.Tokenizer:
    """Trains GPT-1's BPE; ``specials`` take ids ``0..len(specials)-1`` in order.

    Args:
      sentences: Training sentences.
      vocab_size: Upper bound on the vocabulary, specials included.
      specials: Special tokens in id order (GPT-1: ``<unk>``).
      unk: The unknown token, one of ``specials``: characters outside the alphabet encode to it.

    Returns:
      The tokenizer, without post-processor (GPT-1 adds no special tokens to a plain text).

    Raises:
      ValueError: No non-space character, or a ``vocab_size`` too small for the alphabet.
    """
    probe = tokenizers.Tokenizer(models.BPE(unk_token=unk, end_of_word_suffix=END_OF_WORD))
    _gpt1_pipeline(probe)
    alphabet = normalized_alphabet(sentences, probe.normalizer, _MAX_GPT1_ALPHABET)
    if not alphabet:
        raise ValueError("Cannot train a GPT-1 BPE tokenizer: the texts contain no non-space characters.")
    word_final = [c + END_OF_WORD for c in alphabet]
    needed = len(specials) + 2 * len(alphabet) + 1
    if vocab_size < needed:
        raise ValueError(
            f"vocab_size={vocab_size} is too small for a GPT-1 BPE tokenizer of this text: the {len(specials)} "
            f"special tokens, {len(alphabet)} characters and their {len(alphabet)} '{END_OF_WORD}' forms take "
            f"{needed - 1} entries. Use vocab_size >= {needed} (GPT-1 uses 40478).")
    # Why the word-final characters are declared up front: as WordPiece's '##c' pieces (see wordpiece.py), the
    # trainer numbers 'c</w>' in hash-map order, which changes from run to run and breaks merge ties differently.
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(specials) + word_final,
        limit_alphabet=len(alphabet),
        initial_alphabet=alphabet,
        end_of_word_suffix=END_OF_WORD,
        show_progress=False,
    )
    probe.train_from_iterator(sentences, trainer=trainer)
    # Rebuilt from the learned vocabulary and merges so that the 'c</w>' pieces are ordinary BPE symbols.
    learned = json.loads(probe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    tok = tokenizers.Tokenizer(models.BPE(vocab=learned["vocab"], merges=merges, unk_token=unk,
                                          continuing_subword_prefix="", end_of_word_suffix=END_OF_WORD,
                                          fuse_unk=False, dropout=None))
    _gpt1_pipeline(tok)
    tok.add_special_tokens(list(specials))
    return tok


__all__ = ["END_OF_WORD", "train_bytelevel_bpe", "train_gpt1_bpe"]
