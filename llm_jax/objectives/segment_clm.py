"""Causal language modelling over ordered streams with a memory carried from step to step (Transformer-XL,
Dai et al. 2019 §3.2 and its training scripts).

Host side, as the original `LMOrderedIterator`: the corpus becomes one token stream — every line (sentence) of
every document followed by `<eos>` (the tokenizer's `eos` role; WikiText-103 ends each line so) — cut into B
parallel streams of equal length, B the global batch; segment n of stream r is the stream's tokens
`[nT, nT + T]` (T inputs, the targets shifted by one). The example pool is stream-major, row `nB + r` = segment n
of stream r, which the ordered loader (`data_order = "ordered"`) serves as global batch n; so row r of every batch
continues row r of the previous one, and the memory the model returns for it is the memory of the next. The few
tokens that do not fill a last segment are dropped, as there.

Device side: the model reads the carried memory (`carry["memory"]`, `[B, L, M, D]`, batch-sharded, checkpointed
with the state), returns each position's negative log-likelihood (`nll_BT`, the adaptive softmax's) and the next
memory, which becomes the new carry (no gradient flows into it). The memory starts from zeros
(`Config.init_memory`, a member of the model config that a segment-recurrent family provides), as the original
TensorFlow code and Hugging Face do. Metrics: `loss` (mean next-token cross-entropy in nats; perplexity is its
exponential).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from llm_jax.objectives.base import Objective, ObjectiveConfigBase, check_token_ids, register


@dataclasses.dataclass(frozen=True)
class SegmentClmConfig(ObjectiveConfigBase):
    """Settings of the segment-recurrent causal LM (none beyond the name: T is `data.seq_len`, the memory length
    the model's `mem_len`).

    Attributes:
      name: `segment_clm`.
    """

    name: str = "segment_clm"


def ordered_streams(docs_ids: list[list[np.ndarray]], seq_len: int, num_streams: int, eos: int) -> np.ndarray:
    """Segments of `num_streams` parallel streams, stream-major: `[N·B, T + 1]` int32, row `nB + r` = segment n of
    stream r.

    Args:
      docs_ids: documents, each a list of line id arrays; every line is followed by `eos`.
      seq_len: T.
      num_streams: B.
      eos: the end-of-line id.

    Raises:
      ValueError: T or B < 1, or too few tokens for one segment per stream.
    """
    if seq_len < 1 or num_streams < 1:
        raise ValueError(f"seq_len={seq_len} and the number of streams (batch size) {num_streams} must be ≥ 1.")
    pieces = []
    for doc in docs_ids:
        for line in doc:
            line = np.asarray(line, np.int32).reshape(-1)
            if line.size:
                pieces += [line, np.asarray([eos], np.int32)]
    stream = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
    per_stream = stream.size // num_streams
    segments = (per_stream - 1) // seq_len
    if segments < 1:
        raise ValueError(f"{stream.size} tokens cannot fill one segment of {seq_len + 1} tokens in each of "
                         f"{num_streams} streams; use more documents, a shorter data.seq_len or a smaller batch.")
    streams_BN = stream[:num_streams * per_stream].reshape(num_streams, per_stream)
    index = np.arange(segments)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]  # [N, T + 1]
    return streams_BN[:, index].transpose(1, 0, 2).reshape(segments * num_streams, seq_len + 1)


@register
class SegmentClm(Objective):
    """Next-token prediction over B ordered streams, the memory carried in the train state (Transformer-XL)."""

    name = "segment_clm"
    Config = SegmentClmConfig
    data_order = "ordered"
    required_roles = ("eos",)
    progress_keys = ("loss", "tokens_per_s")
    heads = ("lm",)

    # ------------------------------------------------------------------ host side
    def build_examples(self, docs_ids, seq_len, seed, *, batch_size=None):
        """Stream-major segments (`ordered_streams`) for B = `batch_size` streams (1 without it)."""
        del seed
        tokens = ordered_streams(docs_ids, seq_len, batch_size or 1, self.special.eos)
        check_token_ids(tokens, self.vocab_size)
        return {"tokens": tokens, "mask": np.ones(tokens.shape, bool)}

    def prepare(self, examples, seed):
        """`inputs` = a segment's first T tokens, `targets` its last T, `weights` 1 where the target is real."""
        del seed
        tokens, mask = examples["tokens"], examples["mask"]
        return {"inputs": tokens[:, :-1], "mask": mask[:, :-1], "targets": tokens[:, 1:],
                "weights": mask[:, 1:].astype(np.float32)}

    def dummy_batch(self, batch_size, seq_len):
        return {"inputs": np.zeros((batch_size, seq_len), np.int32), "mask": np.ones((batch_size, seq_len), bool),
                "targets": np.zeros((batch_size, seq_len), np.int32),
                "weights": np.ones((batch_size, seq_len), np.float32)}

    def init_inputs(self, batch):
        return (batch["inputs"],), {"labels_BT": batch["targets"], "mask_BT": batch["mask"]}

    # ------------------------------------------------------------------ device side
    def init_carry(self, batch_size, model_cfg):
        """The model's starting memory (`model_cfg.init_memory(B)`: zeros `[B, L, mem_len, D]`)."""
        return model_cfg.init_memory(batch_size)

    def loss_denominators(self, batch):
        """The number of predicted tokens in the whole batch."""
        return {"clm": jnp.sum(batch["weights"].astype(jnp.float32))}

    def make_loss(self, model, frozen_models=None):
        """`loss(params, batch, rng, *, carry, ...) -> (loss, (metrics, carry))`: the mean NLL of the targets
        given the segment and the carried memory; the new carry is the model's next memory."""

        def loss_fn(params, batch, rng, *, carry=None, frozen=None, denominators=None, deterministic=False):
            del frozen
            denominators = self.loss_denominators(batch) if denominators is None else denominators
            memory = (carry or {}).get("memory")
            out = model.apply({"params": params}, batch["inputs"], labels_BT=batch["targets"], memory=memory,
                              mask_BT=batch["mask"], deterministic=deterministic, rngs={"dropout": rng})
            weights = batch["weights"].astype(jnp.float32)
            loss = jnp.sum(out.nll_BT * weights) / jnp.maximum(denominators["clm"], 1e-5)
            if not carry:  # no memory to carry (mem_len = 0, or a caller without a carry)
                return loss, ({"loss": loss}, carry)
            return loss, ({"loss": loss}, {"memory": out.memory})

        return loss_fn
