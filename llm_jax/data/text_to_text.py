"""Task records → text-to-text arrays (T5 §2.4): the task-prefixed input and the target text, each tokenized.

The input is `TaskSpec.text`'s rendering of a record (`cola sentence: …`), the target its label word or rounded
score (`llm_jax.data.tasks.text`). Both go through the model's tokenizer with its template (T5's appends `</s>`):
the targets are the target text's pieces followed by `</s>` — what the decoder learns to write, and where decoding
stops. Inputs are truncated and padded to `seq_len`, targets to `target_len` (by default the longest target of the
task, so no target is ever cut).

| array | shape | |
|---|---|---|
| `inputs`, `mask` | `[N, S]` int32 / bool | the input text + `</s>`, right-padded |
| `targets`, `target_weights` | `[N, T]` int32 / float32 | the target text + `</s>`; 1 on its real tokens |
| `labels` | `[N]` int32 / float32 | the label (class id, or score) the target writes; 0 when hidden |
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import tokenizers

from llm_jax.data.features import Encoded, task_tokenizer
from llm_jax.data.tasks import TaskSpec, TextLabels

log = logging.getLogger(__name__)


def normalizer(tok: tokenizers.Tokenizer):
    """`text → text` as the tokenizer writes it back: encode (no special tokens), then decode without them — how a
    generated label word comes back from the decoder."""

    def normalize(text: str) -> str:
        return tok.decode(tok.encode(text, add_special_tokens=False).ids, skip_special_tokens=True).strip()

    return normalize


def text_labels(spec: TaskSpec, tok: tokenizers.Tokenizer) -> TextLabels:
    """The task's target words under this tokenizer (`TextLabels.build`)."""
    return TextLabels.build(spec, normalizer(tok))


def target_texts(labels: TextLabels, records: list[dict[str, Any]]) -> list[str]:
    """The target text of every record (a placeholder word for a hidden label, never trained on)."""
    fallback = "0.0" if labels.kind == "regression" else labels.words[0]
    return [fallback if r["label"] is None else labels.target(r["label"]) for r in records]


def longest_target(tok: tokenizers.Tokenizer, labels: TextLabels, records: list[dict[str, Any]]) -> int:
    """Tokens of the longest target (with `</s>`) among the records' targets and every label word."""
    texts = target_texts(labels, records) + list(labels.words)
    if labels.kind == "regression":
        texts += ["-0.0", "10.0"]
    plain = tokenizers.Tokenizer.from_str(tok.to_str())
    plain.no_padding()
    plain.no_truncation()
    return max(len(e.ids) for e in plain.encode_batch(texts, add_special_tokens=True))


def encode_text_to_text(tok: tokenizers.Tokenizer, spec: TaskSpec, labels: TextLabels, records: list[dict[str, Any]],
                        seq_len: int, target_len: int, roles: Mapping[str, str] | None = None) -> Encoded:
    """One split as text-to-text arrays (see the module docstring).

    Args:
      tok: the model's tokenizer (its template ends a text with `</s>`).
      spec: the task (its `text` template renders the inputs).
      labels: its target words (`text_labels`).
      seq_len / target_len: input and target lengths (tokens, `</s>` included).
      roles: the family's role map (the padding token).

    Raises:
      ValueError: an empty split, or a tokenizer whose template does not end a text with a token of its own (the
        decoder would never learn where a target ends).
    """
    if not records:
        raise ValueError("The split has no examples to encode.")
    inputs_tok = task_tokenizer(tok, seq_len, roles=roles)
    if inputs_tok.post_processor is None:
        raise ValueError("The tokenizer has no template, so no end-of-sequence token closes a target and decoding "
                         "would never stop; use the tokenizer the model was trained with.")
    inputs = inputs_tok.encode_batch([spec.text.render_input(r) for r in records], add_special_tokens=True)
    cut = sum(1 for e in inputs if e.overflowing)
    if cut:
        log.info("%d of %d inputs were truncated to %d tokens.", cut, len(inputs), seq_len)
    targets = task_tokenizer(tok, target_len, roles=roles).encode_batch(target_texts(labels, records),
                                                                         add_special_tokens=True)
    cut = sum(1 for e in targets if e.overflowing)
    if cut:
        log.warning("%d of %d targets were cut to data.target_len=%d tokens; raise it (0 = the longest target).",
                    cut, len(targets), target_len)
    regression = labels.kind == "regression"
    return Encoded({
        "inputs": np.asarray([e.ids for e in inputs], np.int32),
        "mask": np.asarray([e.attention_mask for e in inputs], bool),
        "targets": np.asarray([e.ids for e in targets], np.int32),
        "target_weights": np.asarray([e.attention_mask for e in targets], np.float32),
        "labels": np.asarray([0 if r["label"] is None else r["label"] for r in records],
                             np.float32 if regression else np.int32),
    })


__all__ = ["encode_text_to_text", "longest_target", "normalizer", "target_texts", "text_labels"]
