"""Tokenizers: train, save, load, look up special ids, and encode documents.

Two kinds, each matching the family that introduced it:

* ``"wordpiece"`` — BERT (Devlin et al., 2019, §3 "Input/Output Representations"; Wu et al., 2016):
  BERT normalizer (clean text, CJK spacing, lower case + accent stripping for "uncased"), whitespace and
  punctuation pre-splitting, greedy longest-match WordPiece with ``##`` continuation pieces. The same
  pipeline as ``tokenizers.implementations.BertWordPieceTokenizer``. Special tokens
  ``[PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4``.
* ``"bytelevel_bpe"`` — RoBERTa (Liu et al., 2019, §4.4 "Text Encoding"), after GPT-2: BPE over bytes, so
  no input is ever out of vocabulary; no prefix space (as in RoBERTa's GPT-2 encoder). Special tokens in
  RoBERTa's own order ``<s>=0 <pad>=1 </s>=2 <unk>=3 <mask>=4``.

All training goes through the Hugging Face ``tokenizers`` trainers; this module only fixes the pieces those
trainers leave to chance (see :func:`train_tokenizer`).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
import unicodedata
from collections.abc import Iterable, Iterator

import numpy as np
import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

KINDS = ("wordpiece", "bytelevel_bpe")

# Special tokens in id order for the tokenizers we train.
WORDPIECE_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
BYTELEVEL_BPE_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")

# Token strings that name each role, in lookup order: BERT's, then RoBERTa's. ALBERT-style vocabularies mix
# the two (``[CLS]`` with ``<pad>``), so every role is looked up on its own.
_ROLE_CANDIDATES = {
    "pad": ("[PAD]", "<pad>"),
    "unk": ("[UNK]", "<unk>"),
    "cls": ("[CLS]", "<s>"),
    "sep": ("[SEP]", "</s>"),
    "mask": ("[MASK]", "<mask>"),
}

# BertWordPieceTokenizer's default: the alphabet is capped so rare characters do not eat the vocabulary.
_MAX_WORDPIECE_ALPHABET = 1000
# Number of distinct byte symbols of the byte-level alphabet (GPT-2 §2.2).
_BYTE_ALPHABET_SIZE = 256
# Sentences are encoded in slices of this many so that the Encoding objects of a large corpus never all
# live at once.
_ENCODE_CHUNK = 8192


@dataclasses.dataclass(frozen=True)
class SpecialIds:
    """Ids of the special tokens every objective needs.

    Attributes:
      pad: Padding (ignored by attention and losses).
      unk: Unknown token.
      cls: Sequence start (``[CLS]`` / ``<s>``).
      sep: Segment end and document separator (``[SEP]`` / ``</s>``).
      mask: The MLM mask token (``[MASK]`` / ``<mask>``).
    """

    pad: int
    unk: int
    cls: int
    sep: int
    mask: int

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        """Returns ``(pad, unk, cls, sep, mask)``."""
        return (self.pad, self.unk, self.cls, self.sep, self.mask)


def _sentences(texts: Iterable[str]) -> Iterator[str]:
    """Yields the non-empty lines of every text.

    Training on sentences rather than whole documents keeps the newline out of the vocabulary:
    :func:`tokenize_documents` encodes one sentence at a time, so a newline token would never be used.
    """
    for text in texts:
        for line in text.split("\n"):
            if line.strip():
                yield line


def _is_bert_punctuation(ch: str) -> bool:
    """BERT's punctuation test (google-research/bert tokenization.py ``_is_punctuation``).

    The pre-tokenizer makes every punctuation character a word of its own, so it never appears as a
    ``##`` continuation piece.
    """
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _wordpiece_alphabet(sentences: list[str], normalizer: normalizers.Normalizer, limit: int) -> list[str]:
    """The ``limit`` most frequent non-space characters after normalization, ties broken by code point.

    Raw characters are counted with numpy and only the distinct ones are normalized: BERT's normalizer
    (lower case, NFD accent stripping, control-character removal) acts character by character, and running
    it over the whole corpus in Python would cost more than the training itself.
    """
    raw_counts = np.zeros(0, dtype=np.int64)
    for start in range(0, len(sentences), _ENCODE_CHUNK):
        codepoints = np.frombuffer("".join(sentences[start : start + _ENCODE_CHUNK]).encode("utf-32-le"), np.uint32)
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


def _bert_pipeline(tok: tokenizers.Tokenizer, lowercase: bool) -> None:
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")


def _train_wordpiece(sentences: list[str], vocab_size: int, lowercase: bool) -> tokenizers.Tokenizer:
    n_special = len(WORDPIECE_SPECIALS)
    probe = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
    _bert_pipeline(probe, lowercase)
    alphabet = _wordpiece_alphabet(sentences, probe.normalizer, _MAX_WORDPIECE_ALPHABET)
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
        special_tokens=list(WORDPIECE_SPECIALS) + continuations,
        limit_alphabet=len(alphabet),
        initial_alphabet=alphabet,
        continuing_subword_prefix="##",
        show_progress=False,
    )
    probe.train_from_iterator(sentences, trainer=trainer)
    # The '##c' entries were registered as special tokens only to pin their ids; rebuild the tokenizer
    # from the learned vocabulary so they behave as ordinary pieces (matched inside words, kept by decode).
    vocab = probe.get_vocab(with_added_tokens=False)
    tok = tokenizers.Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", continuing_subword_prefix="##"))
    _bert_pipeline(tok, lowercase)
    tok.add_special_tokens(list(WORDPIECE_SPECIALS))
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    # BERT's input format (BERT §3, Figure 2): [CLS] A [SEP] B [SEP], segment 1 on B and its [SEP].
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return tok


def _train_bytelevel_bpe(sentences: list[str], vocab_size: int, lowercase: bool) -> tokenizers.Tokenizer:
    needed = len(BYTELEVEL_BPE_SPECIALS) + _BYTE_ALPHABET_SIZE + 1
    if vocab_size < needed:
        raise ValueError(
            f"vocab_size={vocab_size} is too small for a byte-level BPE tokenizer: the "
            f"{len(BYTELEVEL_BPE_SPECIALS)} special tokens and the {_BYTE_ALPHABET_SIZE} byte symbols take "
            f"{needed - 1} entries. Use vocab_size >= {needed} (RoBERTa uses 50265)."
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
        special_tokens=list(BYTELEVEL_BPE_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(sentences, trainer=trainer)
    # RoBERTa's format: <s> A </s> for one segment, <s> A </s></s> B </s> for two.
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")),
        ("<s>", tok.token_to_id("<s>")),
        trim_offsets=True,
        add_prefix_space=False,
    )
    return tok


def train_tokenizer(
    kind: str,
    texts: Iterable[str],
    vocab_size: int,
    *,
    lowercase: bool | None = None,
) -> tokenizers.Tokenizer:
    """Trains a tokenizer of the given kind on ``texts``; the same texts always give the same tokenizer.

    Args:
      kind: ``"wordpiece"`` (BERT) or ``"bytelevel_bpe"`` (RoBERTa).
      texts: Documents; sentences inside a document are separated by ``"\\n"`` and trained on one by one.
      vocab_size: Upper bound on the vocabulary size, special tokens included. A small corpus may run out
        of merges and give fewer entries: size the model with ``tok.get_vocab_size()``.
      lowercase: Lower-case (and, for WordPiece, strip accents as BERT-uncased does). Defaults to ``True``
        for WordPiece and ``False`` for byte-level BPE, as in the original models.

    Returns:
      A ``tokenizers.Tokenizer`` whose post-processor adds the family's special tokens when
      ``add_special_tokens=True``.

    Raises:
      ValueError: Unknown ``kind``, no text, or a ``vocab_size`` too small to hold the alphabet.
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown tokenizer kind {kind!r}: choose one of {', '.join(KINDS)}.")
    if isinstance(texts, str):
        raise TypeError("train_tokenizer takes an iterable of documents, not a single string: wrap it in a list.")
    if not isinstance(vocab_size, (int, np.integer)) or isinstance(vocab_size, bool) or vocab_size <= 0:
        raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}.")
    # Materialized because the WordPiece path reads the text twice (alphabet, then training).
    sentences = list(_sentences(texts))
    if not sentences:
        raise ValueError("Cannot train a tokenizer on empty text: every document given was blank.")
    if kind == "wordpiece":
        return _train_wordpiece(sentences, int(vocab_size), True if lowercase is None else lowercase)
    return _train_bytelevel_bpe(sentences, int(vocab_size), False if lowercase is None else lowercase)


def save_tokenizer(tok: tokenizers.Tokenizer, directory: str | os.PathLike[str]) -> pathlib.Path:
    """Writes ``tokenizer.json`` into ``directory`` (created if needed), the Hugging Face layout.

    Args:
      tok: The tokenizer to save.
      directory: Target folder.

    Returns:
      The path of the written ``tokenizer.json``.
    """
    directory = pathlib.Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"Cannot save the tokenizer into {directory}: it is a file, not a folder.")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tokenizer.json"
    tok.save(str(path))
    return path


def load_tokenizer(directory_or_file: str | os.PathLike[str]) -> tokenizers.Tokenizer:
    """Loads a ``tokenizer.json`` (ours, or one from a Hugging Face checkpoint folder).

    Args:
      directory_or_file: A folder containing ``tokenizer.json``, or the JSON file itself.

    Returns:
      The tokenizer.

    Raises:
      FileNotFoundError: Nothing at that path, or a folder without ``tokenizer.json``.
      ValueError: The file is not a valid tokenizer description.
    """
    path = pathlib.Path(directory_or_file)
    if path.is_dir():
        path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"No tokenizer.json in {path.parent}. Train and save one with train_tokenizer/save_tokenizer, or "
                "point at a Hugging Face checkpoint folder that has a fast-tokenizer file (tokenizer.json)."
            )
    elif not path.is_file():
        raise FileNotFoundError(
            f"Tokenizer file {path} does not exist. Pass a tokenizer.json or the folder that contains it."
        )
    try:
        return tokenizers.Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises a bare Exception on malformed JSON.
        raise ValueError(f"{path} is not a valid tokenizers JSON file ({err}).") from err


def special_ids(tok: tokenizers.Tokenizer) -> SpecialIds:
    """Looks up the special-token ids of a tokenizer by their strings.

    Works for the tokenizers trained here and for BERT (``[PAD] [UNK] [CLS] [SEP] [MASK]``) and RoBERTa
    (``<pad> <unk> <s> </s> <mask>``) tokenizers from Hugging Face checkpoints; each role takes the first
    of its BERT / RoBERTa spellings that the vocabulary has.

    Args:
      tok: The tokenizer.

    Returns:
      The ids.

    Raises:
      ValueError: A role has none of its spellings in the vocabulary; the message names them.
    """
    found: dict[str, int] = {}
    missing: list[str] = []
    for role, candidates in _ROLE_CANDIDATES.items():
        ids = [tok.token_to_id(c) for c in candidates]
        hit = next((i for i in ids if i is not None), None)
        if hit is None:
            missing.append(f"{role} ({' or '.join(candidates)})")
        else:
            found[role] = hit
    if missing:
        raise ValueError(
            "The tokenizer lacks special tokens that BERT-style objectives need: missing "
            + ", ".join(missing)
            + ". Train it with train_tokenizer, or add them with tok.add_special_tokens([...])."
        )
    return SpecialIds(**found)


def tokenize_documents(tok: tokenizers.Tokenizer, docs: list[str]) -> list[list[np.ndarray]]:
    """Encodes documents sentence by sentence, without special tokens.

    Args:
      tok: The tokenizer.
      docs: Documents with sentences separated by ``"\\n"``.

    Returns:
      One entry per document that has at least one non-empty sentence, in input order; each is the list of
      its sentences as ``int32`` id arrays. Sentences that encode to no ids are dropped. Special tokens are
      left to the packing / objective code, which knows the layout; text that spells one (``"[MASK]"``) is
      encoded as ordinary text.
    """
    if isinstance(docs, str):
        raise TypeError("tokenize_documents takes a list of documents, not a single string: wrap it in a list.")
    doc_of: list[int] = []
    sentences: list[str] = []
    for d, doc in enumerate(docs):
        for line in doc.split("\n"):
            if line.strip():
                doc_of.append(d)
                sentences.append(line)
    out: list[list[np.ndarray]] = [[] for _ in docs]
    # Text that happens to spell a special token ("[MASK]", "</s>") must stay text: a real mask or separator
    # id inside a sentence would corrupt the objectives' layouts. The flag is restored afterwards.
    previous = tok.encode_special_tokens
    tok.encode_special_tokens = True
    try:
        # One encode_batch call per slice lets the Rust side spread the work over all cores.
        for start in range(0, len(sentences), _ENCODE_CHUNK):
            encodings = tok.encode_batch(sentences[start : start + _ENCODE_CHUNK], add_special_tokens=False)
            for offset, enc in enumerate(encodings):
                if enc.ids:
                    out[doc_of[start + offset]].append(np.asarray(enc.ids, dtype=np.int32))
    finally:
        tok.encode_special_tokens = previous
    return [doc for doc in out if doc]
