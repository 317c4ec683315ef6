"""Encoding text for training: documents into sentence ids, and words that come pre-split (token tasks)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import tokenizers

# Sentences are encoded in slices of this many so that the Encoding objects of a large corpus never all
# live at once.
_ENCODE_CHUNK = 8192


def tokenize_documents(tok: tokenizers.Tokenizer, docs: list[str], *,
                       keep_newlines: bool = False) -> list[list[np.ndarray]]:
    """Encodes documents sentence by sentence (or whole, with ``keep_newlines``), without special tokens.

    Args:
      tok: The tokenizer.
      docs: Documents with sentences separated by ``"\\n"``.
      keep_newlines: Encode each document as one piece of text, newlines included, as GPT-2 reads text
        (Radford et al., 2019, §2.2); for a byte-level BPE trained with ``keep_newlines=True``. A tokenizer
        that normalizes whitespace would silently turn the newlines into spaces.

    Returns:
      One entry per document that has at least one non-empty sentence, in input order; each is the list of
      its sentences as ``int32`` id arrays (one array per document with ``keep_newlines``). Sentences that
      encode to no ids are dropped. Special tokens are left to the packing / objective code, which knows the
      layout; text that spells one (``"[MASK]"``) is encoded as ordinary text.

    Raises:
      TypeError: ``docs`` is a single string.
    """
    if isinstance(docs, str):
        raise TypeError("tokenize_documents takes a list of documents, not a single string: wrap it in a list.")
    doc_of: list[int] = []
    pieces: list[str] = []
    for d, doc in enumerate(docs):
        for line in [doc] if keep_newlines else doc.split("\n"):
            if line.strip():
                doc_of.append(d)
                pieces.append(line)
    out: list[list[np.ndarray]] = [[] for _ in docs]
    # Text that happens to spell a special token ("[MASK]", "</s>") must stay text: a real mask or separator id
    # inside a sentence would corrupt the objectives' layouts. The flag is restored afterwards.
    previous = tok.encode_special_tokens
    tok.encode_special_tokens = True
    try:
        # One encode_batch call per slice lets the Rust side spread the work over all cores.
        for start in range(0, len(pieces), _ENCODE_CHUNK):
            encodings = tok.encode_batch(pieces[start : start + _ENCODE_CHUNK], add_special_tokens=False)
            for offset, enc in enumerate(encodings):
                if enc.ids:
                    out[doc_of[start + offset]].append(np.asarray(enc.ids, dtype=np.int32))
    finally:
        tok.encode_special_tokens = previous
    return [doc for doc in out if doc]


def _prefix_space_on(component: dict[str, Any] | None) -> bool:
    """Turns ``add_prefix_space`` on in every byte-level part of a tokenizer.json component; True if any."""
    if not component:
        return False
    changed = False
    if component.get("type") in ("ByteLevel", "RobertaProcessing") and "add_prefix_space" in component:
        component["add_prefix_space"] = True
        changed = True
    for key in ("pretokenizers", "processors"):
        for inner in component.get(key) or ():
            changed = _prefix_space_on(inner) or changed
    return changed


def for_split_words(tok: tokenizers.Tokenizer) -> tokenizers.Tokenizer:
    """A copy of ``tok`` for encoding pre-split words (``encode_batch(words, is_pretokenized=True)``).

    Byte-level BPE marks a word-initial piece by its leading space (``Ġmodel``), and a pre-split word has
    none, so the words of ``["The", "model", "reads"]`` would be encoded as word-internal pieces (``model``,
    ``re``, ``ad``, ``s``) the model never saw at the start of a word. As Hugging Face's token-classification
    scripts do (``RobertaTokenizerFast(add_prefix_space=True)`` with ``is_split_into_words=True``), every word,
    the first included, is encoded with a leading space. The other kinds mark word starts themselves
    (WordPiece's ``##`` continuations, GPT-1's ``</w>``, SentencePiece's ``▁`` before each word) and are
    returned unchanged.

    Args:
      tok: The tokenizer.

    Returns:
      ``tok`` itself when nothing needs changing, else a modified copy (``tok`` is left untouched).
    """
    data = json.loads(tok.to_str())
    changed = _prefix_space_on(data.get("pre_tokenizer"))
    if not changed:
        return tok
    # The post-processor's flag only moves offsets over the added space, as transformers sets it.
    _prefix_space_on(data.get("post_processor"))
    out = tokenizers.Tokenizer.from_str(json.dumps(data))
    out.encode_special_tokens = tok.encode_special_tokens
    return out


__all__ = ["for_split_words", "tokenize_documents"]
