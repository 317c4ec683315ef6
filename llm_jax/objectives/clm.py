"""Causal language modelling (GPT-1 §3.1, GPT-2 §2, GPT-3 §2): predict every next token of packed documents.

The objective of a left-to-right LM, `L = Σ_i log P(u_i | u_{<i})` (Radford et al. 2018, eq. 1), over a stream
of documents each followed by an end-of-document token (GPT-2's `<|endoftext|>`; GPT-3 trains "always with the
full 2048 token context window, with an end of text delimiter" between documents, Appendix B). The stream is cut
into rows of T inputs; row r holds stream tokens `[rT, rT + T]` (T + 1 of them: its targets are its inputs
shifted by one), so consecutive rows share one token and every token after the first is a target exactly once.
Attention crosses document boundaries within a row, as in GPT-2/3 (the delimiter tells the model where one
ends). Only the stream's last row is padded; padding gets weight 0, every other position weight 1.

Host side (`build_examples`, `prepare`) is numpy; the loss is a pure function of (params, batch, rng). Metrics:
`loss` (mean next-token cross-entropy in nats; perplexity is its exponential) and `accuracy` (top-1).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from llm_jax.objectives.base import (
    Objective,
    ObjectiveConfigBase,
    check_token_ids,
    register,
    token_loss_fn,
)


@dataclasses.dataclass(frozen=True)
class ClmConfig(ObjectiveConfigBase):
    """Causal-LM settings (none beyond the name: the delimiter is the tokenizer's `eod` role).

    Attributes:
      name: `clm`.
    """

    name: str = "clm"


def pack_documents(docs_ids: list[list[np.ndarray]], seq_len: int, eod: int, pad: int) -> dict[str, np.ndarray]:
    """Concatenates documents (each followed by `eod`) and cuts the stream into rows of `seq_len + 1` tokens.

    Args:
      docs_ids: documents, each a list of id arrays (sentences, or one array for a document encoded whole);
        empty documents are skipped.
      seq_len: T, the model's input length; rows hold T + 1 tokens (inputs and the shifted targets).
      eod: the end-of-document id, appended after every document.
      pad: the id that fills the last row (its weight is 0).

    Returns:
      `{"tokens": int32 [N, T + 1], "mask": bool [N, T + 1]}`; row r is stream `[rT, rT + T]`.

    Raises:
      ValueError: `seq_len` < 1, or no tokens at all.
    """
    if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
        raise ValueError(f"seq_len must be an integer ≥ 1, got {seq_len!r}.")
    pieces = []
    for doc in docs_ids:
        body = [np.asarray(s, np.int32).reshape(-1) for s in doc]
        body = [s for s in body if s.size]
        if body:
            pieces += [*body, np.asarray([eod], np.int32)]
    if not pieces:
        raise ValueError("The causal-LM objective got no tokens: every document was empty. Check the corpus and the "
                         "tokenizer.")
    stream = np.concatenate(pieces)
    n = max(1, -(-(stream.size - 1) // seq_len))  # rows needed so that every token after the first is a target
    padded = np.full(n * seq_len + 1, pad, np.int32)
    padded[:stream.size] = stream
    real = np.zeros(n * seq_len + 1, bool)
    real[:stream.size] = True
    index = np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
    return {"tokens": padded[index], "mask": real[index]}


@register
class Clm(Objective):
    """Next-token prediction at every position of packed documents (GPT-1/2/3)."""

    name = "clm"
    Config = ClmConfig
    required_roles = ("eod",)
    progress_keys = ("loss", "accuracy", "tokens_per_s")
    heads = ("lm",)

    # ------------------------------------------------------------------ host side
    def build_examples(self, docs_ids: list[list[np.ndarray]], seq_len: int, seed: int, *,
                       batch_size: int | None = None) -> dict[str, np.ndarray]:
        """Rows of T + 1 stream tokens (`pack_documents`), in corpus order (the loader shuffles them)."""
        del seed, batch_size
        pad = self.special.pad if self.special.pad is not None else self.special.eod
        examples = pack_documents(docs_ids, seq_len, self.special.eod, pad)
        check_token_ids(examples["tokens"], self.vocab_size)
        return examples

    def prepare(self, examples: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
        """`inputs` = a row's first T tokens, `targets` the last T; `weights` 1 where the target is real."""
        del seed
        tokens, mask = examples["tokens"], examples["mask"]
        return {"inputs": tokens[:, :-1], "mask": mask[:, :-1], "targets": tokens[:, 1:],
                "weights": mask[:, 1:].astype(np.float32)}

    def dummy_batch(self, batch_size: int, seq_len: int) -> dict[str, np.ndarray]:
        return {"inputs": np.zeros((batch_size, seq_len), np.int32), "mask": np.ones((batch_size, seq_len), bool),
                "targets": np.zeros((batch_size, seq_len), np.int32),
                "weights": np.ones((batch_size, seq_len), np.float32)}

    # ------------------------------------------------------------------ device side
    def loss_denominators(self, batch):
        """The number of predicted tokens in the whole batch."""
        return {"clm": jnp.sum(batch["weights"].astype(jnp.float32))}

    def make_loss(self, model, frozen_models=None):
        """`loss(params, batch, rng, ...) -> (loss, (metrics, carry))` for a causal LM whose output has
        `logits_BTV`."""

        return token_loss_fn(self, model, targets="targets", weights="weights", denominator="clm")
