"""RoBERTa FULL-SENTENCES packing of tokenized documents into fixed-length rows.

RoBERTa §4.2 ("Model Input Format and Next Sentence Prediction"): "Each input is packed with full
sentences sampled contiguously from one or more documents, such that the total length is at most 512
tokens. Inputs may cross document boundaries. When we reach the end of one document, we begin sampling
sentences from the next document and add an extra separator token between documents." Dropping NSP and
packing this way was found to match or beat BERT's segment-pair input (RoBERTa Table 2).

Each row is ``<s> s1 s2 ... </s>`` where ``s1 s2 ...`` are whole sentences in corpus order and a ``</s>``
sits between the last sentence of one document and the first of the next when both share a row. A sentence
that alone exceeds the row's capacity (``seq_len - 2``) is cut into capacity-sized chunks, each starting a
row, so no token is ever dropped. Rows are padded with ``pad``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llm_jax.data.tokenizer import SpecialIds


def pack_full_sentences(
    docs_ids: Sequence[Sequence[np.ndarray]],
    seq_len: int,
    special: SpecialIds,
) -> dict[str, np.ndarray]:
    """Packs sentences into rows of at most ``seq_len`` tokens, RoBERTa FULL-SENTENCES style.

    Deterministic: documents and sentences are taken in the order given (shuffling is the loader's job).

    Args:
      docs_ids: Documents, each a list of sentences as integer id arrays without special tokens (the output
        of :func:`llm_jax.data.tokenizer.tokenize_documents`). Empty sentences are skipped.
      seq_len: Row length including ``cls`` and the final ``sep``; at least 3.
      special: Special-token ids; ``cls`` starts a row, ``sep`` ends it and separates documents, ``pad``
        fills it.

    Returns:
      ``{"tokens": int32 [N, seq_len], "mask": bool [N, seq_len]}``; ``mask`` is True on real tokens
      (``cls``, sentence tokens, separators), False on padding.

    Raises:
      ValueError: ``seq_len`` below 3, or no tokens at all to pack.
    """
    if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 3:
        raise ValueError(f"seq_len must be an integer >= 3 (<s>, one token, </s>), got {seq_len!r}.")
    capacity = int(seq_len) - 2
    sep_piece = np.asarray([special.sep], dtype=np.int32)

    rows: list[list[np.ndarray]] = []
    current: list[np.ndarray] = []
    current_len = 0
    current_doc = -1
    for doc_index, doc in enumerate(docs_ids):
        for sentence in doc:
            sentence = np.asarray(sentence, dtype=np.int32).reshape(-1)
            for start in range(0, sentence.size, capacity):
                piece = sentence[start : start + capacity]
                # RoBERTa's "extra separator token between documents", only when the boundary falls inside
                # a row: a row start already marks it.
                crosses = bool(current) and current_doc != doc_index
                if current and current_len + piece.size + crosses > capacity:
                    rows.append(current)
                    current, current_len, crosses = [], 0, False
                if crosses:
                    current.append(sep_piece)
                    current_len += 1
                current.append(piece)
                current_len += piece.size
                current_doc = doc_index
    if current:
        rows.append(current)
    if not rows:
        raise ValueError(
            "pack_full_sentences got no tokens: every document was empty. Check the corpus and the tokenizer "
            "(tokenize_documents drops sentences that encode to nothing)."
        )

    tokens = np.full((len(rows), seq_len), special.pad, dtype=np.int32)
    mask = np.zeros((len(rows), seq_len), dtype=bool)
    for r, pieces in enumerate(rows):
        body = np.concatenate(pieces)
        n = body.size + 2
        tokens[r, 0] = special.cls
        tokens[r, 1 : n - 1] = body
        tokens[r, n - 1] = special.sep
        mask[r, :n] = True
    return {"tokens": tokens, "mask": mask}
