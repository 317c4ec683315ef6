"""Task records → fixed-shape model inputs, with the model's own tokenizer.

Text goes through the tokenizer's post-processor, so every family gets its own input format: BERT's
`[CLS] A [SEP] B [SEP]` with token types 0/1 (BERT §3, Figure 2), RoBERTa's `<s> A </s></s> B </s>`, GPT-1's
`_start_ A _delimiter_ B _classify_` (Radford et al. 2018 §3.3; `llm_jax.data.input_format.finetuning_tokenizer`
sets it up). Pairs are truncated longest-first to `seq_len` (the reference implementations' `_truncate_seq_pair`),
and padded to `seq_len` — with the family's padding token (`input_format.pad_id`) — so that every batch has one
shape and the train step compiles once. The family's `InputFormat` says which side to pad, whether the tokenizer
must have a template, and whether a symmetric pair is encoded in both orders.

| kind | arrays (N examples or features) |
|---|---|
| classification / regression | `inputs`, `mask`, `segment_ids` `[N, T]`; `labels` `[N]` (int32 / float32) |
| the same, symmetric pair, `both_orders` | `inputs`, `mask`, `segment_ids` `[N, 2, T]`: (A, B) and (B, A) |
| token_classification | the same, `labels` `[N, T]` and `label_weights` `[N, T]` (1 on each word's first piece) |
| span | one row per *window* of a long context; `start_positions`, `end_positions` `[N]` |
| multiple_choice | `inputs`, `mask`, `segment_ids` `[N, C, T]` (context paired with each choice); `labels` `[N]` |
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import tokenizers

from llm_jax.data.input_format import InputFormat, pad_id
from llm_jax.data.tokenizers import for_split_words

log = logging.getLogger(__name__)

# A family's format when none is given: right padding, a template with a classifier token, one row per pair.
DEFAULT_FORMAT = InputFormat()


def task_tokenizer(tok: tokenizers.Tokenizer, seq_len: int, *, stride: int = 0, strategy: str = "longest_first",
                   roles: Mapping[str, str] | None = None) -> tokenizers.Tokenizer:
    """A copy of `tok` that truncates to and pads to `seq_len` (the caller's tokenizer is left untouched).

    Text that spells a special token ("[MASK]", "</s>") is encoded as text: a real mask or separator inside a
    sentence would change what the model reads.

    Args:
      roles: the family's role map, which names the padding token (`input_format.pad_id`); None = inferred from
        the vocabulary's spellings.
    """
    out = tokenizers.Tokenizer.from_str(tok.to_str())
    pad = pad_id(out, roles)
    out.enable_truncation(max_length=seq_len, stride=stride, strategy=strategy)
    out.enable_padding(length=seq_len, pad_id=pad, pad_token=out.id_to_token(pad))
    out.encode_special_tokens = True
    return out


def _check_template(tok: tokenizers.Tokenizer, fmt: InputFormat) -> None:
    """Raises unless the tokenizer wraps inputs in its family's special tokens (BERT's [CLS] … [SEP], …), where
    the family's classifier reads such a token (`InputFormat.classifier_token`)."""
    if fmt.classifier_token and tok.post_processor is None:
        raise ValueError("The tokenizer has no post-processor template, so no [CLS]/<s>/<cls> token marks the "
                         "input and the classifier would read an ordinary token. Use the tokenizer the model was "
                         "trained with (ours and Hugging Face's add the template).")


def _arrays(encodings: list[tokenizers.Encoding]) -> dict[str, np.ndarray]:
    return {"inputs": np.asarray([e.ids for e in encodings], np.int32),
            "mask": np.asarray([e.attention_mask for e in encodings], bool),
            "segment_ids": np.asarray([e.type_ids for e in encodings], np.int32)}


def encode_texts(tok: tokenizers.Tokenizer, records: list[dict[str, Any]], seq_len: int,
                 fmt: InputFormat = DEFAULT_FORMAT, roles: Mapping[str, str] | None = None, *,
                 swap: bool = False) -> dict[str, np.ndarray]:
    """`text_a` (and `text_b` for pairs) of each record → `inputs`, `mask`, `segment_ids` `[N, T]`.

    Args:
      fmt / roles: the family's `InputFormat` and role map (padding token, template requirement).
      swap: encode pairs as (`text_b`, `text_a`), the second order of a symmetric pair.
    """
    t = task_tokenizer(tok, seq_len, roles=roles)
    pair = "text_b" in records[0]
    batch = [((r["text_b"], r["text_a"]) if swap else (r["text_a"], r["text_b"])) if pair else r["text_a"]
             for r in records]
    _check_template(t, fmt)
    encodings = t.encode_batch(batch, add_special_tokens=True)
    cut = sum(1 for e in encodings if e.overflowing)
    if cut:
        log.info("%d of %d examples were truncated to %d tokens.", cut, len(encodings), seq_len)
    return _arrays(encodings)


def encode_classification(tok, records, seq_len: int, regression: bool = False, fmt: InputFormat = DEFAULT_FORMAT,
                          roles: Mapping[str, str] | None = None, symmetric: bool = False) -> dict[str, np.ndarray]:
    """Sequence classification / regression arrays (see the module docstring).

    A symmetric pair (`symmetric`, a similarity task) under a format with `both_orders` (GPT-1 §3.3) gives
    `[N, 2, T]` rows: the pair in its order and swapped.
    """
    if symmetric and fmt.both_orders and "text_b" in records[0]:
        orders = [encode_texts(tok, records, seq_len, fmt, roles, swap=swap) for swap in (False, True)]
        out = {k: np.stack([o[k] for o in orders], axis=1) for k in orders[0]}
    else:
        out = encode_texts(tok, records, seq_len, fmt, roles)
    # A hidden label (None: GLUE's test split) gets a placeholder; `eval.predict.has_labels` keeps it out of metrics.
    out["labels"] = np.asarray([0 if r["label"] is None else r["label"] for r in records],
                               np.float32 if regression else np.int32)
    return out


def encode_token_classification(tok, records, seq_len: int, fmt: InputFormat = DEFAULT_FORMAT,
                                roles: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
    """Words with one tag each → pieces; the tag sits on each word's first piece (BERT §5.3, CoNLL NER).

    Byte-level BPE encodes every word with its leading space (`for_split_words`), as Hugging Face's
    token-classification scripts do with `add_prefix_space=True`: otherwise each word after the first would be
    read as a word-internal piece (`model` instead of `Ġmodel`).
    """
    t = for_split_words(task_tokenizer(tok, seq_len, roles=roles))
    _check_template(t, fmt)
    encodings = t.encode_batch([r["tokens"] for r in records], is_pretokenized=True, add_special_tokens=True)
    out = _arrays(encodings)
    labels = np.zeros(out["inputs"].shape, np.int32)
    weights = np.zeros(out["inputs"].shape, np.float32)
    for i, (enc, r) in enumerate(zip(encodings, records)):
        previous = None
        for j, w in enumerate(enc.word_ids):
            if w is not None and w != previous:
                labels[i, j], weights[i, j] = 0 if r["label"] is None else r["label"][w], 1.0  # None: hidden
            previous = w
    out.update(labels=labels, label_weights=weights)
    return out


def encode_multiple_choice(tok, records, seq_len: int, fmt: InputFormat = DEFAULT_FORMAT,
                           roles: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
    """Each (context, choice) pair encoded; `[N, C, T]` (BERT §4.4: SWAG; GPT-1 §3.3: `start context delim
    answer extract` per choice)."""
    n_choices = {len(r["choices"]) for r in records}
    if len(n_choices) != 1:
        raise ValueError(f"Multiple-choice examples have different numbers of choices ({sorted(n_choices)}); every "
                         "example needs the same number.")
    c = n_choices.pop()
    flat = [{"text_a": r["context"], "text_b": choice} if r["context"] else {"text_a": choice}
            for r in records for choice in r["choices"]]
    if any("text_b" in f for f in flat) and not all("text_b" in f for f in flat):
        raise ValueError("Some multiple-choice examples have a context and some do not; give all or none one.")
    arrays = encode_texts(tok, flat, seq_len, fmt, roles)
    out = {k: v.reshape(len(records), c, seq_len) for k, v in arrays.items()}
    out["labels"] = np.asarray([0 if r["label"] is None else r["label"] for r in records], np.int32)  # None: hidden
    return out


@dataclasses.dataclass
class SpanFeatures:
    """Windows of SQuAD-style examples and what post-processing needs to map answers back to text.

    Attributes:
      arrays: model inputs + `start_positions`, `end_positions` (token indices; 0 = [CLS] = no answer here).
      example_index: for each window, the record it came from.
      offsets: for each window, `(start, end)` character offsets into the context of every token (None
        outside the context).
    """

    arrays: dict[str, np.ndarray]
    example_index: np.ndarray
    offsets: list[list[tuple[int, int] | None]]


def encode_spans(tok, records, seq_len: int, doc_stride: int = 128, max_query_length: int = 64,
                 fmt: InputFormat = DEFAULT_FORMAT, roles: Mapping[str, str] | None = None) -> SpanFeatures:
    """Question + context → windows over long contexts (BERT §4.2; the reference `run_squad.py`).

    A context longer than the window is cut into overlapping windows (`doc_stride` tokens of overlap, as Hugging
    Face counts it); each window is a training example. Its label is the answer's token span when the window
    holds all of it, else `(0, 0)`: the [CLS] position, which stands for "no answer here" (and, in SQuAD 2.0,
    for "unanswerable", Devlin et al. §4.3).
    """
    if doc_stride >= seq_len // 2:
        raise ValueError(f"data.doc_stride={doc_stride} must be well under half of data.seq_len={seq_len}.")
    # Long questions are cut to max_query_length pieces first, so the context keeps most of the window.
    qtok = tokenizers.Tokenizer.from_str(tok.to_str())
    qtok.no_padding()
    qtok.no_truncation()
    questions = []
    for r, enc in zip(records, qtok.encode_batch([r["question"] for r in records], add_special_tokens=False)):
        q = r["question"]
        if len(enc.ids) > max_query_length:
            q = q[:enc.offsets[max_query_length - 1][1]]
        questions.append(q)
    t = task_tokenizer(tok, seq_len, stride=doc_stride, strategy="only_second", roles=roles)
    _check_template(t, fmt)
    encodings = t.encode_batch(list(zip(questions, [r["context"] for r in records])), add_special_tokens=True)
    windows, example_index, offsets, starts, ends = [], [], [], [], []
    for i, (r, enc) in enumerate(zip(records, encodings)):
        for w in [enc, *enc.overflowing]:
            seq = w.sequence_ids
            ctx = [j for j, s in enumerate(seq) if s == 1]
            if not ctx:
                raise ValueError(f"data.seq_len={seq_len} leaves no room for the context after the question of "
                                 f"example {r['id']!r}; raise data.seq_len or lower max_query_length.")
            off = [tuple(w.offsets[j]) if seq[j] == 1 else None for j in range(len(seq))]
            start = end = 0
            if r["answers"]:
                a_start = r["answer_starts"][0]
                a_end = a_start + len(r["answers"][0])
                lo, hi = ctx[0], ctx[-1]
                if off[lo][0] <= a_start and off[hi][1] >= a_end:
                    start = next(j for j in range(lo, hi + 1) if off[j][1] > a_start)
                    end = next(j for j in range(hi, lo - 1, -1) if off[j][0] < a_end)
            windows.append(w)
            example_index.append(i)
            offsets.append(off)
            starts.append(start)
            ends.append(end)
    arrays = _arrays(windows)
    arrays.update(start_positions=np.asarray(starts, np.int32), end_positions=np.asarray(ends, np.int32))
    return SpanFeatures(arrays, np.asarray(example_index, np.int64), offsets)


def best_spans(features: SpanFeatures, start_logits_NT: np.ndarray, end_logits_NT: np.ndarray,
               contexts: list[str], *, n_best: int = 20, max_answer_length: int = 30,
               allow_null: bool = False, null_threshold: float = 0.0) -> list[str]:
    """The answer text of every example from its windows' start/end logits (BERT §4.2, and §4.3 for SQuAD 2.0).

    A span `(i, j)` inside one window's context, `i ≤ j < i + max_answer_length`, scores `S·T_i + E·T_j`
    (start + end logits); the best over all windows wins. With `allow_null` (SQuAD 2.0) the null score is
    `s_null = S·C + E·C` at [CLS], the least over windows, and "" is predicted when `s_null > best + threshold`.
    """
    best: dict[int, tuple[float, str]] = {}
    null: dict[int, float] = {}
    for f, i in enumerate(features.example_index.tolist()):
        s, e, off = start_logits_NT[f], end_logits_NT[f], features.offsets[f]
        null[i] = min(null.get(i, np.inf), float(s[0] + e[0]))
        top_s = [j for j in np.argsort(-s)[:n_best] if off[j] is not None]
        top_e = [j for j in np.argsort(-e)[:n_best] if off[j] is not None]
        for a in top_s:
            for b in top_e:
                if b < a or b - a + 1 > max_answer_length:
                    continue
                score = float(s[a] + e[b])
                if i not in best or score > best[i][0]:
                    best[i] = (score, contexts[i][off[a][0]:off[b][1]])
    answers = []
    for i in range(len(contexts)):
        score, text = best.get(i, (-np.inf, ""))
        if allow_null and null.get(i, -np.inf) > score + null_threshold:
            text = ""
        answers.append(text)
    return answers


@dataclasses.dataclass
class Encoded:
    """One split of a task as model inputs.

    Attributes:
      arrays: the model-ready arrays (see the module docstring), all with the same leading dimension.
      spans: the window bookkeeping of a span task (None for the other kinds).
    """

    arrays: dict[str, np.ndarray]
    spans: SpanFeatures | None = None

    def __len__(self) -> int:
        return len(self.arrays["inputs"])


def pad_left(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Right-padded rows → left-padded rows (XLNet's layout, so that its `<cls>` stays the last position).

    Every array shaped like `mask` (`[..., T]`: inputs, segment ids, token labels and their weights) is rotated
    so that each row's padding comes first; the others (row labels, weights) stay.
    """
    mask = arrays["mask"]
    t = mask.shape[-1]
    n_pad = t - mask.sum(-1)
    index = (np.arange(t) - n_pad[..., None]) % t
    out = {}
    for key, value in arrays.items():
        if value.shape[:mask.ndim] == mask.shape:
            index_full = index.reshape(index.shape + (1,) * (value.ndim - mask.ndim))
            out[key] = np.take_along_axis(value, np.broadcast_to(index_full, value.shape), axis=mask.ndim - 1)
        else:
            out[key] = value
    return out


def encode(kind: str, tok: tokenizers.Tokenizer, records: list[dict[str, Any]], seq_len: int, *,
           doc_stride: int = 128, max_query_length: int = 64, type_vocab_size: int = 2,
           fmt: InputFormat = DEFAULT_FORMAT, roles: Mapping[str, str] | None = None,
           symmetric: bool = False) -> Encoded:
    """Encodes one split of a task of `kind` (see the module docstring).

    Token types beyond the model's `type_vocab_size` are folded to 0: RoBERTa has one token type (its pair
    format separates segments with `</s></s>` instead).

    Args:
      tok: the model's tokenizer, made ready for task inputs (`input_format.finetuning_tokenizer`) where the
        family's format adds task tokens.
      fmt: the family's `INPUT_FORMAT` (pad side, template requirement, both orders of symmetric pairs).
      roles: the family's role map (with its task tokens), which names the padding token; None = inferred from
        the vocabulary's spellings.
      symmetric: the task's pairs have no inherent order (`TaskSpec.symmetric`).

    Raises:
      ValueError: an empty split, an unknown kind, a tokenizer without the template the family's classifier
        needs, or a vocabulary without a padding token.
    """
    if not records:
        raise ValueError("The split has no examples to encode.")
    if kind in ("classification", "regression"):
        enc = Encoded(encode_classification(tok, records, seq_len, kind == "regression", fmt, roles, symmetric))
    elif kind == "token_classification":
        enc = Encoded(encode_token_classification(tok, records, seq_len, fmt, roles))
    elif kind == "multiple_choice":
        enc = Encoded(encode_multiple_choice(tok, records, seq_len, fmt, roles))
    elif kind == "span":
        spans = encode_spans(tok, records, seq_len, doc_stride, max_query_length, fmt, roles)
        enc = Encoded(spans.arrays, spans)
    else:
        raise ValueError(f"Unknown task kind {kind!r}.")
    if type_vocab_size < 2:
        enc.arrays["segment_ids"] = np.zeros_like(enc.arrays["segment_ids"])
    if fmt.pad_side == "left":
        if enc.spans is not None:
            raise ValueError("Span tasks keep right padding: their answer windows map token positions back to the "
                             "context by index.")
        enc = Encoded(pad_left(enc.arrays), enc.spans)
    return enc


__all__ = ["Encoded", "SpanFeatures", "best_spans", "encode", "pad_left", "encode_classification", "encode_multiple_choice",
           "encode_spans", "encode_texts", "encode_token_classification", "task_tokenizer"]
