"""BERT's next-sentence-prediction examples: ``[CLS] A [SEP] B [SEP]`` with B the true continuation or not.

BERT §3.1 ("Task #2: Next Sentence Prediction") and Appendix A.2: "when choosing the sentences A and B for
each pretraining example, 50 % of the time B is the actual next sentence that follows A, and 50 % of the
time it is a random sentence from the corpus". A and B are spans of whole sentences ("a sentence" in the
paper is "an arbitrary span of contiguous text"), packed to fill the sequence.

The procedure is ``create_instances_from_document`` and ``truncate_seq_pair`` of google-research/bert
``create_pretraining_data.py``, step for step:

* the target length is ``seq_len - 3`` (room for ``[CLS]`` and two ``[SEP]``), except with probability
  ``short_seq_prob`` a random shorter one in ``[2, seq_len - 3]``, drawn once per document, to reduce the
  pretrain/fine-tune mismatch on short inputs;
* sentences are accumulated into a chunk until it reaches the target length or the document ends; A is the
  first ``a_end`` sentences of the chunk (``a_end`` uniform in ``[1, len(chunk) - 1]``);
* with probability 1/2 (always, if the chunk has a single sentence) B is a run of sentences starting at a
  random sentence of another document (up to 10 draws to find one) and the unused sentences of the chunk
  go back to the stream (``i -= num_unused_segments``) so no text is wasted; otherwise B is the rest of the
  chunk;
* the pair is truncated to ``seq_len - 3`` tokens by repeatedly removing one token from the longer side,
  from its front or back with equal probability.

Labels follow Hugging Face's ``next_sentence_label``: 0 = B is the actual next segment, 1 = B is random.

The same builder makes ALBERT's sentence-order-prediction pairs (Lan et al. 2020 §3.2; ``negatives="swapped"``):
A and B are always the two consecutive parts of the chunk, and half of the time they trade places (label 1 =
swapped, HF's ``sentence_order_label``). No B comes from another document: where the chunk holds one sentence
(the reference then falls back to a random-document B), that sentence is cut at a uniform token boundary into
two consecutive parts instead (a one-token chunk yields no pair).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llm_jax.data.tokenizer import SpecialIds

IS_NEXT = 0
IS_RANDOM = 1
# Sentence-order labels (ALBERT §3.2): 0 = A then B as in the document, 1 = swapped.
IN_ORDER = 0
SWAPPED = 1
NEGATIVES = ("random_document", "swapped")
# The reference tries this many times to draw a random document other than the current one.
_RANDOM_DOC_TRIES = 10


def truncate_seq_pair(
    tokens_a: np.ndarray, tokens_b: np.ndarray, max_num_tokens: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Shortens a pair to at most ``max_num_tokens`` tokens, as the reference's ``truncate_seq_pair``.

    The reference removes one token at a time from the longer side (``b`` on ties), from the front or the
    back with probability 1/2 each. Which side loses each token depends only on the lengths, so the count
    removed from each side is computed directly; the front/back coin flips of one side then add up to a
    Binomial(removed, 1/2) number of front removals, which is drawn in one call. The result has the same
    distribution as the token-by-token loop.

    Args:
      tokens_a: First segment.
      tokens_b: Second segment.
      max_num_tokens: Length budget for both together (at least 2, so each side keeps a token).
      rng: Source of randomness.

    Returns:
      The truncated ``(tokens_a, tokens_b)``.
    """
    len_a, len_b = len(tokens_a), len(tokens_b)
    excess = len_a + len_b - max_num_tokens
    if excess <= 0:
        return tokens_a, tokens_b
    # Phase 1: the longer side alone shrinks until the two are equal (or the excess is used up).
    gap = min(abs(len_a - len_b), excess)
    cut_a, cut_b = (gap, 0) if len_a > len_b else (0, gap)
    # Phase 2: at equal length the reference cuts b (the test is `len(a) > len(b)`), then a, alternately.
    rest = excess - gap
    cut_b += (rest + 1) // 2
    cut_a += rest // 2
    front_a = int(rng.binomial(cut_a, 0.5)) if cut_a else 0
    front_b = int(rng.binomial(cut_b, 0.5)) if cut_b else 0
    return (
        tokens_a[front_a : len_a - (cut_a - front_a)],
        tokens_b[front_b : len_b - (cut_b - front_b)],
    )


def _instances_from_document(
    docs: list[list[np.ndarray]],
    doc_index: int,
    max_num_tokens: int,
    short_seq_prob: float,
    rng: np.random.Generator,
    negatives: str = "random_document",
) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """``create_instances_from_document`` for one document: ``(tokens_a, tokens_b, label)`` triples.

    ``negatives``: ``random_document`` (BERT's NSP) or ``swapped`` (ALBERT's SOP; see the module docstring).
    """
    document = docs[doc_index]
    target_seq_length = max_num_tokens
    if rng.random() < short_seq_prob:
        target_seq_length = int(rng.integers(2, max_num_tokens + 1))

    instances: list[tuple[np.ndarray, np.ndarray, int]] = []
    current_chunk: list[np.ndarray] = []
    current_length = 0
    i = 0
    while i < len(document):
        segment = document[i]
        current_chunk.append(segment)
        current_length += len(segment)
        if i == len(document) - 1 or current_length >= target_seq_length:
            if negatives == "swapped":
                pair = _sop_pair(current_chunk, max_num_tokens, rng)
                if pair is not None:
                    instances.append(pair)
                current_chunk = []
                current_length = 0
                i += 1
                continue
            # `a_end` is how many chunk sentences go into A.
            a_end = 1
            if len(current_chunk) >= 2:
                a_end = int(rng.integers(1, len(current_chunk)))
            tokens_a = np.concatenate(current_chunk[:a_end])

            if len(current_chunk) == 1 or rng.random() < 0.5:
                label = IS_RANDOM
                target_b_length = target_seq_length - len(tokens_a)
                # The reference's bounded retry: with many documents a single draw almost always differs.
                for _ in range(_RANDOM_DOC_TRIES):
                    random_index = int(rng.integers(0, len(docs)))
                    if random_index != doc_index:
                        break
                random_document = docs[random_index]
                random_start = int(rng.integers(0, len(random_document)))
                pieces: list[np.ndarray] = []
                b_length = 0
                for j in range(random_start, len(random_document)):
                    pieces.append(random_document[j])
                    b_length += len(random_document[j])
                    if b_length >= target_b_length:
                        break
                tokens_b = np.concatenate(pieces)
                # The sentences after A in this chunk were not used: put them back so they can start the
                # next chunk instead of being lost.
                i -= len(current_chunk) - a_end
            else:
                label = IS_NEXT
                tokens_b = np.concatenate(current_chunk[a_end:])

            tokens_a, tokens_b = truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
            instances.append((tokens_a, tokens_b, label))
            current_chunk = []
            current_length = 0
        i += 1
    return instances


def _sop_pair(chunk: list[np.ndarray], max_num_tokens: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int] | None:
    """ALBERT's ``create_instances_from_document`` branch for SOP: consecutive A, B from one chunk, swapped with
    probability 1/2 (label ``SWAPPED``), then truncated; None for a one-token chunk."""
    if len(chunk) >= 2:
        a_end = int(rng.integers(1, len(chunk)))
        tokens_a, tokens_b = np.concatenate(chunk[:a_end]), np.concatenate(chunk[a_end:])
    else:
        sentence = chunk[0]
        if len(sentence) < 2:
            return None
        cut = int(rng.integers(1, len(sentence)))
        tokens_a, tokens_b = sentence[:cut], sentence[cut:]
    label = IN_ORDER
    if rng.random() < 0.5:
        tokens_a, tokens_b, label = tokens_b, tokens_a, SWAPPED
    tokens_a, tokens_b = truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
    return tokens_a, tokens_b, label


def make_nsp_examples(
    docs_ids: Sequence[Sequence[np.ndarray]],
    seq_len: int,
    special: SpecialIds,
    rng: np.random.Generator,
    *,
    short_seq_prob: float = 0.1,
    negatives: str = "random_document",
) -> dict[str, np.ndarray]:
    """Builds BERT sentence-pair examples with next-sentence labels (or ALBERT's sentence-order labels).

    Documents are visited in the order given (the reference shuffles documents and instances; here the
    loader shuffles examples). One call is one pass of the reference's ``dupe_factor`` loop: call again with
    another ``rng`` for more, differently cut copies.

    Args:
      docs_ids: Documents as lists of sentences (integer id arrays without special tokens), e.g. from
        :func:`llm_jax.data.tokenizer.tokenize_documents`. Empty sentences and documents are ignored; at
        least two non-empty documents are needed so that random B segments can come from another document.
      seq_len: Example length with ``[CLS]`` and both ``[SEP]``; at least 5.
      special: Special-token ids (``cls``, ``sep``, ``pad``).
      rng: Source of all randomness.
      short_seq_prob: Probability of a shorter target length for a document (BERT: 0.1).
      negatives: ``random_document`` (NSP: B from another document) or ``swapped`` (SOP: A and B consecutive,
        their order swapped half of the time; one non-empty document is then enough).

    Returns:
      ``tokens`` int32 ``[N, seq_len]`` (``[CLS] A [SEP] B [SEP]`` then padding), ``segment_ids`` int32
      ``[N, seq_len]`` (0 on ``[CLS]``, A and the first ``[SEP]``; 1 on B and the last ``[SEP]``; 0 on
      padding), ``mask`` bool ``[N, seq_len]`` (True on real tokens), ``nsp_label`` int32 ``[N]``
      (0 = B follows A in the document, 1 = B is random, or with ``negatives="swapped"`` 1 = A and B swapped).

    Raises:
      ValueError: Fewer than two non-empty documents for NSP (one for SOP), ``seq_len`` below 5,
        ``short_seq_prob`` outside ``[0, 1]``, or an unknown ``negatives``.
    """
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives={negatives!r} is not one of {NEGATIVES}.")
    if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 5:
        raise ValueError(
            f"seq_len must be an integer >= 5 ([CLS] A [SEP] B [SEP] with one token each), got {seq_len!r}."
        )
    if not 0.0 <= short_seq_prob <= 1.0:
        raise ValueError(f"short_seq_prob must be in [0, 1] (BERT uses 0.1), got {short_seq_prob!r}.")
    # The reference drops empty documents too (`all_documents = [x for x in all_documents if x]`).
    docs = [
        [np.asarray(s, dtype=np.int32).reshape(-1) for s in doc if len(s)]
        for doc in docs_ids
    ]
    docs = [doc for doc in docs if doc]
    if not docs and negatives == "swapped":
        raise ValueError("Sentence-order prediction needs at least 1 non-empty document; got none.")
    if len(docs) < 2 and negatives == "random_document":
        raise ValueError(
            f"Next-sentence prediction needs at least 2 non-empty documents (random B segments come from a "
            f"different document); got {len(docs)}. Use a larger corpus or max_documents, or an objective "
            "without NSP (RoBERTa's mlm)."
        )
    max_num_tokens = int(seq_len) - 3  # [CLS], [SEP], [SEP]

    instances: list[tuple[np.ndarray, np.ndarray, int]] = []
    for doc_index in range(len(docs)):
        instances.extend(_instances_from_document(docs, doc_index, max_num_tokens, short_seq_prob, rng,
                                                  negatives))

    n = len(instances)
    tokens = np.full((n, seq_len), special.pad, dtype=np.int32)
    segment_ids = np.zeros((n, seq_len), dtype=np.int32)
    mask = np.zeros((n, seq_len), dtype=bool)
    labels = np.empty(n, dtype=np.int32)
    for row, (tokens_a, tokens_b, label) in enumerate(instances):
        len_a, len_b = len(tokens_a), len(tokens_b)
        b_start = len_a + 2
        end = b_start + len_b + 1
        tokens[row, 0] = special.cls
        tokens[row, 1 : len_a + 1] = tokens_a
        tokens[row, len_a + 1] = special.sep
        tokens[row, b_start : end - 1] = tokens_b
        tokens[row, end - 1] = special.sep
        segment_ids[row, b_start:end] = 1
        mask[row, :end] = True
        labels[row] = label
    return {"tokens": tokens, "segment_ids": segment_ids, "mask": mask, "nsp_label": labels}
