"""Zero-shot classification by MLM cloze scoring: no training, only the pretraining model's MLM head.

Each example is written into a prompt with a mask, e.g. `"{text_a} It was [MASK]."`, and every label has one
verbalizer word; the predicted label is the one whose word the MLM head finds most probable at the mask
(Schick & Schütze 2021, "PET"; the templates for GLUE are LM-BFF's, Gao et al. 2021). A word that the vocabulary
splits into several pieces gets one mask per piece. This is the K = 0 point of the few-shot curve: what
pretraining alone already knows about the task.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tokenizers

from llm_jax import models
from llm_jax.data.tasks import TaskSpec
from llm_jax.data.tokenizer import special_ids
from llm_jax.layers import check_ids

log = logging.getLogger(__name__)

_FIELD = re.compile(r"(\{[a-z_]+\})")


def _encoder(tok: tokenizers.Tokenizer) -> tokenizers.Tokenizer:
    out = tokenizers.Tokenizer.from_str(tok.to_str())
    out.no_padding()
    out.no_truncation()
    out.encode_special_tokens = True  # the mask is inserted by id, never spelled in the text
    return out


def verbalizer_pieces(tok: tokenizers.Tokenizer, words: tuple[str, ...], after_space: bool = True) -> list[list[int]]:
    """The token ids of each label word (one or more pieces).

    With a byte-level BPE (RoBERTa) the word after a space is a different token (`Ġgreat`) from the word at the
    start of a text, so `after_space` chooses the form that the prompt puts at the mask.

    Raises:
      ValueError: a word that encodes to nothing, or two labels with the same pieces.
    """
    enc = _encoder(tok)
    pieces = []
    for w in words:
        ids = enc.encode((" " if after_space else "") + w, add_special_tokens=False).ids
        if not ids:
            raise ValueError(f"The verbalizer {w!r} encodes to no tokens; choose a real word.")
        pieces.append(ids)
    if len({tuple(p) for p in pieces}) < len(pieces):
        raise ValueError(f"Verbalizers {list(words)} give two labels the same tokens {pieces}; choose distinct words.")
    return pieces


def build_prompts(tok: tokenizers.Tokenizer, prompt: str, records: list[dict[str, Any]], seq_len: int,
                  n_masks: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Token ids of every record's prompt: `[CLS] … [MASK]×n … [SEP]`, padded to `seq_len`.

    `{mask}` becomes `n_masks` consecutive mask tokens, one per piece of the verbalizers being scored. Fields are
    cut (longest first) when the prompt would not fit; the template's own words are kept.

    Returns:
      `(inputs [N, T], mask [N, T], mask_positions [N, n_masks], mask_after_space)`.
    """
    if prompt.count("{mask}") != 1:
        raise ValueError(f"The prompt {prompt!r} must contain exactly one {{mask}}.")
    sp = special_ids(tok)
    enc = _encoder(tok)
    parts = [p for p in _FIELD.split(prompt) if p]
    # A space before a word belongs to that word's token in a byte-level BPE (RoBERTa's "Ġword"): move each
    # literal's trailing space onto the field or mask that follows it (a no-op for WordPiece).
    lead_space = set()
    for j in range(len(parts) - 1):
        if not parts[j].startswith("{") and parts[j + 1].startswith("{") and parts[j].endswith(" "):
            parts[j] = parts[j].rstrip()
            lead_space.add(j + 1)
    mask_at = parts.index("{mask}")
    after_space = mask_at in lead_space
    literal_ids = [enc.encode(p, add_special_tokens=False).ids if not p.startswith("{") and p.strip() else []
                   for p in parts]
    inputs = np.full((len(records), seq_len), sp.pad, np.int32)
    positions = np.zeros((len(records), n_masks), np.int32)
    for i, r in enumerate(records):
        fields = {j: enc.encode((" " if j in lead_space else "") + r[p[1:-1]], add_special_tokens=False).ids
                  for j, p in enumerate(parts) if p.startswith("{") and p != "{mask}"}
        budget = seq_len - (2 + n_masks + sum(len(v) for v in literal_ids))
        if budget < len(fields):
            raise ValueError(f"data.seq_len={seq_len} is too short for the prompt {prompt!r}; raise it.")
        while sum(len(v) for v in fields.values()) > budget:
            longest = max(fields, key=lambda k: len(fields[k]))
            fields[longest] = fields[longest][:-1]
        ids = [sp.cls]
        for j, p in enumerate(parts):
            if p == "{mask}":
                positions[i] = np.arange(len(ids), len(ids) + n_masks)
                ids.extend([sp.mask] * n_masks)
            else:
                ids.extend(fields[j] if j in fields else literal_ids[j])
        ids.append(sp.sep)
        inputs[i, :len(ids)] = ids
    return inputs, inputs != sp.pad, positions, after_space


@functools.lru_cache(maxsize=4)
def _mlm_log_probs(family: str, config):
    """The jitted `(params, inputs, mask, positions) -> log p [B, P, V]` of a pretraining model, built once per
    (family, config) so that every split and call reuses its compilations."""
    model = models.build(family, config)

    @jax.jit
    def logp(params, inputs_BT, mask_BT, pos_BP):
        out = model.apply({"params": params}, inputs_BT, mask_BT=mask_BT, mlm_positions_BP=pos_BP, deterministic=True)
        return jax.nn.log_softmax(out.mlm_logits_BTV.astype(jnp.float32), -1)

    return logp


def cloze_scores(family: str, config, params, tok: tokenizers.Tokenizer, spec: TaskSpec,
                 records: list[dict[str, Any]], seq_len: int, batch_size: int = 64) -> np.ndarray:
    """Scores `[N, C]`: the mean log-probability of each label's verbalizer pieces at the masks.

    A verbalizer of n pieces is scored in a prompt with n masks, each piece at its own mask, all predicted at
    once (PET's multi-mask scoring without its left-to-right decoding); the mean over pieces keeps words of
    different lengths comparable.

    Raises:
      ValueError: the task has no prompt / verbalizers, or the params have no MLM head.
    """
    if not spec.prompt or len(spec.verbalizers) != spec.num_labels:
        raise ValueError(f"Task {spec.name!r} has no zero-shot prompt with one verbalizer per label, so K=0 "
                         "(zero-shot) cannot score it; use data.train_examples ≥ 1.")
    if "mlm_head" not in params:
        raise ValueError("Zero-shot cloze scoring needs the pretraining model's MLM head, and these params have "
                         "none (a fine-tuned model?); start from a pretraining run or checkpoint.")
    after_space = build_prompts(tok, spec.prompt, records[:1], seq_len)[3]
    pieces = verbalizer_pieces(tok, spec.verbalizers, after_space)
    split = [w for w, p in zip(spec.verbalizers, pieces) if len(p) > 1]
    if split:
        log.info("Verbalizers %s are several pieces in this vocabulary; they are scored with one mask per piece.",
                 split)

    logp = _mlm_log_probs(family, config)
    n = len(records)
    scores = np.zeros((n, spec.num_labels), np.float32)
    for n_masks in sorted({len(p) for p in pieces}):
        labels = [c for c, p in enumerate(pieces) if len(p) == n_masks]
        ids_CP = np.asarray([pieces[c] for c in labels])
        inputs, mask, positions, _ = build_prompts(tok, spec.prompt, records, seq_len, n_masks)
        # On the host: inside the jitted scorer an id past the table would give NaN scores, not an error.
        check_ids(inputs, config.vocab_size, "token ids (model.vocab_size)")
        check_ids(ids_CP, config.vocab_size, "verbalizer token ids (model.vocab_size)")
        for s in range(0, n, batch_size):
            rows = [inputs[s:s + batch_size], mask[s:s + batch_size], positions[s:s + batch_size]]
            short = batch_size - len(rows[0])
            if short:  # one compiled shape: pad the last batch with copies of its first row
                rows = [np.concatenate([r, np.repeat(r[:1], short, 0)]) for r in rows]
            lp_BPV = np.asarray(logp(params, *rows))[:len(rows[0]) - short]
            # lp[b, i, ids[c, i]] for every label c of this length, averaged over the pieces i.
            picked_BCP = np.take_along_axis(lp_BPV[:, None], ids_CP[None, :, :, None], axis=-1)[..., 0]
            scores[s:s + batch_size, labels] = picked_BCP.mean(-1)
    return scores


__all__ = ["build_prompts", "cloze_scores", "verbalizer_pieces"]
