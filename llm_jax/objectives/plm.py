"""Permutation language modelling with partial prediction (XLNet, Yang et al. 2019 §2.2–2.4, §3.1).

The objective maximises `E_z [Σ_{t > c} log p(x_{z_t} | x_{z<t})]` over factorization orders z, predicting only the
last tokens of each order (§2.3 "partial prediction", K = |z| / (|z| − c) ≈ 6). The data follow the original
pipeline (zihangdai/xlnet `data_utils.py`: `create_tfrecords`, `_sample_mask`, `_split_a_and_b`, `_local_perm`):

* the corpus is one token stream (every document ends with `<eod>`), cut into B parallel streams (`batch_size`
  rows, stream-major: row `nB + r` is step n of stream r, read in order so that memory carries over); with
  `bi_data` (XLNet-large's pretraining, the reference's `bi_data`) the stream is cut into B/2 streams and the
  other B/2 are the same streams reversed, in the second half of every batch, where the model (`bi_data`) reads
  the relative distances negated;
* each row is `reuse (R tokens of the stream) ++ A <sep> B <sep> <cls>` of T tokens, with token types 0 for the
  reused part and A, 1 for B (and its `<sep>`) and 2 for `<cls>` (§2.5); A is the text after the reused part cut
  at a sentence boundary and B, half of the time, its continuation and otherwise text from elsewhere in the
  stream; the next row's reused part continues the stream R tokens later, so the memory of this row's first R
  positions (`reuse_len`) precedes it (§2.4, Transformer-XL recurrence);
* the predicted tokens (`num_predict` = T / K of them, half in each part) are n-gram spans, n ∝ 1/n up to
  `max_gram`, each starting at a word start and placed in a context of n·K tokens (`mask_alpha` = K,
  `mask_beta` = 1), topped up with random positions;
* the factorization order (host side, numpy): within each part, a random permutation of the positions (blocks of
  `perm_size` share one), the unpredicted tokens first — every position sees them, they see no predicted one —
  then the predicted ones in permuted order; `<sep>` / `<cls>` are never predicted. The first part never sees
  the second. `perm_mask[i, j]` = True where i may not see j (the query stream also never sees itself, the
  content stream does); `target_mapping` places the P predictions, each targeting its own token.

Metrics: `loss` (mean cross-entropy in nats over predicted tokens) and `accuracy`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np

from llm_jax.objectives.base import (
    Objective,
    ObjectiveConfigBase,
    check_token_ids,
    register,
    weighted_cross_entropy,
)

# Why a stream constant: `prepare`'s draws are seeded from (seed, stream, epoch, example), apart from other objectives'.
_STREAM = 17
# Pieces that start a word besides those with SentencePiece's "▁" (the reference's `_is_start_piece`).
_PUNCTUATION = frozenset('!"#$%&\"()*+,-./:;?@[\\]^_`{|}~')


@dataclasses.dataclass(frozen=True)
class PlmConfig(ObjectiveConfigBase):
    """Permutation-LM settings (the reference's flags; XLNet-large: T 512, reuse 256, perm 256, mem 384, K 6, 85).

    Attributes:
      partial_prediction_k: K; 1/K of the tokens are predicted (`mask_alpha` / `mask_beta` = K / 1; §3.1: 6, or 7).
      max_gram: the longest predicted span (5).
      reuse_len: R, the stream tokens at the front of each row whose states become the next row's memory;
        0 = T / 2.
      perm_size: positions per block of the permutation (≤ R and ≤ T − R); 0 = R.
      mem_len: M, memory slots carried from one step to the next (0 = no memory).
      num_predict: predictions per row; 0 = T // K.
      bi_data: the second half of every batch is the first half's streams reversed (the reference's `bi_data`;
        an even batch, and the model's `bi_data` on so that it reads those rows' distances negated).
    """

    name: str = "plm"
    partial_prediction_k: int = 6
    max_gram: int = 5
    reuse_len: int = 0
    perm_size: int = 0
    mem_len: int = 0
    num_predict: int = 0
    bi_data: bool = False

    def validate(self):
        if self.partial_prediction_k < 2:
            raise ValueError(f"objective.partial_prediction_k={self.partial_prediction_k} must be ≥ 2 (XLNet: 6 or 7).")
        if self.max_gram < 1:
            raise ValueError(f"objective.max_gram={self.max_gram} must be ≥ 1 (XLNet: 5).")
        for name in ("reuse_len", "perm_size", "mem_len", "num_predict"):
            if getattr(self, name) < 0:
                raise ValueError(f"objective.{name}={getattr(self, name)} must be ≥ 0 (0 = the default).")
        return self

    def predictions(self, seq_len: int) -> int:
        """P, the predicted positions of a row of `seq_len` tokens: `num_predict`, or T // K."""
        return self.num_predict or max(1, seq_len // self.partial_prediction_k)

    def lengths(self, seq_len: int) -> tuple[int, int, int]:
        """`(reuse_len, perm_size, num_predict)` for rows of `seq_len` tokens.

        Raises:
          ValueError: a row too short for `A <sep> B <sep> <cls>` after the reused part, or a permutation block
            that does not divide both parts.
        """
        reuse = self.reuse_len or seq_len // 2
        perm = self.perm_size or reuse
        predict = self.predictions(seq_len)
        rest = seq_len - reuse
        if reuse < 1 or rest < 5:
            raise ValueError(f"data.seq_len={seq_len} with objective.reuse_len={reuse} leaves {rest} tokens for "
                             "`A <sep> B <sep> <cls>`; it needs ≥ 5: lengthen the rows or shorten reuse_len.")
        if perm > min(reuse, rest) or reuse % perm or rest % perm:
            raise ValueError(f"objective.perm_size={perm} must divide both parts of a row ({reuse} reused and {rest} "
                             "new tokens) and be no longer than either (XLNet: perm_size = reuse_len = T/2).")
        if predict > seq_len - 3:
            raise ValueError(f"objective.num_predict={predict} exceeds the {seq_len - 3} predictable tokens of a row.")
        return reuse, perm, predict


# ----------------------------------------------------------------------------------- host side: layout


def split_a_and_b(data: np.ndarray, sent_ids: np.ndarray, begin: int, tot_len: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
    """A and B of at most `tot_len` tokens together from one stream, starting at `begin` (the reference's
    `_split_a_and_b`): A ends at a sentence boundary; with probability ½ (or when A has no boundary) B is a random
    span of whole sentences elsewhere in the stream, else the sentences that follow A; the longer of the two is
    shortened from its end until both fit. None when the stream ends first."""
    n = data.shape[0]
    if begin + tot_len >= n:
        return None
    end = begin + 1
    cuts = []
    while end < n:
        if sent_ids[end] != sent_ids[end - 1]:
            if end - begin >= tot_len:
                break
            cuts.append(end)
        end += 1
    if not cuts or rng.random() < 0.5:
        a_end = end if not cuts else int(rng.choice(cuts))
        b_len = max(1, tot_len - (a_end - begin))
        b_begin = int(rng.integers(0, n - 1 - b_len + 1))
        b_end = b_begin + b_len
        while b_begin > 0 and sent_ids[b_begin - 1] == sent_ids[b_begin]:
            b_begin -= 1
        while b_end < n - 1 and sent_ids[b_end - 1] == sent_ids[b_end]:
            b_end += 1
    else:
        a_end = int(rng.choice(cuts))
        b_begin, b_end = a_end, end
    while a_end - begin + b_end - b_begin > tot_len:
        if a_end - begin > b_end - b_begin:
            a_end -= 1
        else:
            b_end -= 1
    return data[begin:a_end], data[b_begin:b_end]


def sample_mask(word_start: np.ndarray, goal: int, k: int, max_gram: int, rng: np.random.Generator) -> np.ndarray:
    """`goal` positions of one part to predict (the reference's `_sample_mask`, mask_alpha = K, mask_beta = 1).

    Spans of n ∈ 1..max_gram positions (P(n) ∝ 1/n) start at a word start after a left context drawn from the
    n·K-token window each span sits in; positions are then added at random until `goal` are chosen. (The
    reference's loop counts n *pieces* from the span's first word start — its test reads the first piece — so a
    span is n pieces, which this follows.)

    Args:
      word_start: bool `[n]`, True where a piece starts a word (or is a special / punctuation piece).
      goal: how many positions to choose (≤ n).
      k: K (mask_alpha / mask_beta).
      max_gram: the longest span.

    Returns:
      bool `[n]`.
    """
    n = word_start.shape[0]
    mask = np.zeros(n, bool)
    grams = np.arange(1, max_gram + 1)
    p = 1.0 / grams
    p /= p.sum()
    chosen, cur = 0, 0
    while cur < n and chosen < goal:
        g = min(int(rng.choice(grams, p=p)), goal - chosen)
        ctx = g * k
        left = int(rng.integers(ctx))
        beg = cur + left
        while beg < n and not word_start[beg]:
            beg += 1
        if beg >= n:
            break
        end = beg + g
        if end >= n:
            break
        mask[beg:end] = True
        chosen += g
        cur = end + ctx - left
    free = np.flatnonzero(~mask)
    if chosen < goal:
        mask[rng.choice(free, goal - chosen, replace=False)] = True
    return mask


def local_perm(inputs: np.ndarray, is_masked: np.ndarray, perm_size: int, functional: np.ndarray,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One part's factorization order as masks (the reference's `_local_perm`).

    Args:
      inputs: `[n]` ids.
      is_masked: `[n]` bool, the positions chosen for prediction.
      perm_size: positions per permutation block (the same permutation in every block; blocks in order).
      functional: `[n]` bool, `<sep>` / `<cls>` (never predicted, seen only by later positions of the order).

    Returns:
      `(perm_mask [n, n] bool, True = i may not see j; target [n] bool, the predicted positions)`.
    """
    n = inputs.shape[0]
    order = rng.permutation(perm_size)
    rank = (np.arange(n) // perm_size) * perm_size + order[np.arange(n) % perm_size]
    plain = ~is_masked & ~functional  # seen by everyone, see no predicted token
    rank = np.where(plain, -1, rank)
    target = is_masked & ~functional
    self_rank = np.where(target, rank, rank + 1)  # a target does not see itself; a functional token does
    perm_mask = (self_rank[:, None] <= rank[None, :]) & ~plain[None, :]
    return perm_mask, target


@register
class Plm(Objective):
    """XLNet's permutation LM with partial prediction (see the module docstring)."""

    name = "plm"
    Config = PlmConfig
    data_order = "ordered"
    required_roles = ("sep", "cls", "eod")
    progress_keys = ("loss", "accuracy", "tokens_per_s")
    heads = ("lm",)

    def __init__(self, cfg, special, vocab_size):
        super().__init__(cfg, special, vocab_size)
        self._word_start_V: np.ndarray | None = None

    @classmethod
    def predicted_positions_for(cls, cfg, seq_len: int) -> int:
        """The query stream runs at the `num_predict` positions of each row."""
        return cfg.predictions(seq_len)

    @classmethod
    def memory_positions_for(cls, cfg) -> int:
        """XLNet pretraining's memory (`mem_len`, Yang et al. 2019 §2.5): M more keys and relative distances in
        both streams."""
        return cfg.mem_len

    def bind_tokenizer(self, tokenizer) -> None:
        """Which pieces start a word: `▁…`, special pieces `<…>` and punctuation (the reference's
        `_is_start_piece`); an id the vocabulary does not name counts as one."""
        vocab = tokenizer.get_vocab()
        starts = np.ones(max(self.vocab_size, max(vocab.values(), default=-1) + 1), bool)  # unknown ids: starts
        for piece, i in vocab.items():
            starts[i] = piece.startswith(("\u2581", "<")) or piece in _PUNCTUATION
        self._word_start_V = starts

    # ------------------------------------------------------------------ host side
    def build_examples(self, docs_ids: list[list[np.ndarray]], seq_len: int, seed: int, *,
                       batch_size: int | None = None) -> dict[str, np.ndarray]:
        """Rows `reuse ++ A <sep> B <sep> <cls>` of B parallel streams, stream-major (see the module docstring).

        Returns:
          `{"tokens": int32 [N, T], "segment_ids": int32 [N, T]}`, N a multiple of `batch_size`.

        Raises:
          ValueError: no tokens, ids outside the vocabulary, or a corpus too short for one batch of rows.
        """
        b = batch_size or 1
        reuse, _, _ = self.cfg.lengths(seq_len)
        pieces, sent = [], []
        flip = 0
        for doc in docs_ids:
            body = [np.asarray(s, np.int32).reshape(-1) for s in doc]
            body = [s for s in body if s.size]
            if not body:
                continue
            for s in [*body, np.asarray([self.special.eod], np.int32)]:
                pieces.append(s)
                sent.append(np.full(s.size, flip, bool))
                flip ^= 1
        if not pieces:
            raise ValueError("The plm objective got no tokens: every document was empty. Check the corpus and the "
                             "tokenizer.")
        stream, sent_ids = np.concatenate(pieces), np.concatenate(sent)
        check_token_ids(stream, self.vocab_size)
        if self.cfg.bi_data and b % 2:
            raise ValueError(f"objective.bi_data=True puts each forward stream's reversed copy in the second half of "
                             f"the batch: train.batch_size={b} must be even.")
        forward = b // 2 if self.cfg.bi_data else b
        steps = stream.size // forward
        data = stream[:forward * steps].reshape(forward, steps)
        sent_ids = sent_ids[:forward * steps].reshape(forward, steps)
        if self.cfg.bi_data:  # the reference's `bwd_data = fwd_data[..., ::-1]` (sentence ids reversed alike)
            data = np.concatenate([data, data[:, ::-1]])
            sent_ids = np.concatenate([sent_ids, sent_ids[:, ::-1]])
        rng = np.random.default_rng((seed, _STREAM))
        tail = np.asarray([self.special.sep, self.special.cls], np.int32)
        rows, segs = [], []
        i = 0
        while i + seq_len <= steps:
            batch_rows, batch_segs = [], []
            for r in range(b):
                ab = split_a_and_b(data[r], sent_ids[r], i + reuse, seq_len - reuse - 3, rng)
                if ab is None:
                    break
                a, bb = ab
                batch_rows.append(np.concatenate([data[r, i:i + reuse], a, tail[:1], bb, tail]))
                batch_segs.append(np.asarray([0] * (reuse + a.size + 1) + [1] * (bb.size + 1) + [2], np.int32))
            if len(batch_rows) < b:
                break
            rows += batch_rows
            segs += batch_segs
            i += reuse
        if not rows:
            raise ValueError(f"The corpus ({stream.size} tokens) is too short for one batch of {b} streams of rows of "
                             f"{seq_len} tokens (each stream needs more than {seq_len}); use a larger corpus, a "
                             "smaller batch or shorter rows.")
        return {"tokens": np.stack(rows).astype(np.int32), "segment_ids": np.stack(segs)}

    def prepare(self, examples: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
        """Draws each row's predicted spans and factorization order (from (seed, epoch, example index)).

        Returns:
          `inputs`, `segment_ids`, `mask` `[B, T]`; `perm_mask` bool `[B, T, T]` (True = may not attend);
          `target_mapping` float32 `[B, P, T]`; `targets` int32 and `weights` float32 `[B, P]` (0 on padding rows
          of the mapping, where fewer than P positions were predictable).
        """
        inputs = np.asarray(examples["tokens"], np.int32)
        b, t = inputs.shape
        reuse, perm, predict = self.cfg.lengths(t)
        n1 = predict * (t - reuse) // t
        goals = (predict - n1, n1)
        perm_mask = np.zeros((b, t, t), bool)
        mapping = np.zeros((b, predict, t), np.float32)
        targets = np.zeros((b, predict), np.int32)
        weights = np.zeros((b, predict), np.float32)
        functional = (inputs == self.special.sep) | (inputs == self.special.cls)
        starts = (np.ones_like(inputs, bool) if self._word_start_V is None
                  else self._word_start_V[np.clip(inputs, 0, self._word_start_V.size - 1)])
        for r in range(b):
            rng = np.random.default_rng((seed, _STREAM, int(examples["epoch"][r]), int(examples["example_index"][r])))
            target = np.zeros(t, bool)
            for (lo, hi), goal in zip(((0, reuse), (reuse, t)), goals):
                masked = sample_mask(starts[r, lo:hi], goal, self.cfg.partial_prediction_k, self.cfg.max_gram, rng)
                pm, tg = local_perm(inputs[r, lo:hi], masked, perm, functional[r, lo:hi], rng)
                perm_mask[r, lo:hi, lo:hi] = pm
                target[lo:hi] = tg
            perm_mask[r, :reuse, reuse:] = True  # the reused part never sees the new one
            where = np.flatnonzero(target)[:predict]
            mapping[r, np.arange(where.size), where] = 1.0
            targets[r, :where.size] = inputs[r, where]
            weights[r, :where.size] = 1.0
        return {"inputs": inputs, "segment_ids": np.asarray(examples["segment_ids"], np.int32),
                "mask": np.ones((b, t), bool), "perm_mask": perm_mask, "target_mapping": mapping,
                "targets": targets, "weights": weights}

    def dummy_batch(self, batch_size: int, seq_len: int) -> dict[str, np.ndarray]:
        p = self.predicted_positions(seq_len)
        mapping = np.zeros((batch_size, p, seq_len), np.float32)
        mapping[:, np.arange(p), np.arange(p)] = 1.0
        return {"inputs": np.zeros((batch_size, seq_len), np.int32),
                "segment_ids": np.zeros((batch_size, seq_len), np.int32), "mask": np.ones((batch_size, seq_len), bool),
                "perm_mask": np.zeros((batch_size, seq_len, seq_len), bool), "target_mapping": mapping,
                "targets": np.zeros((batch_size, p), np.int32), "weights": np.ones((batch_size, p), np.float32)}

    def init_inputs(self, batch: Mapping[str, np.ndarray]):
        """Tokens, token types, the permutation mask and the target mapping (the query stream)."""
        return (batch["inputs"],), {"segment_ids_BT": batch["segment_ids"], "mask_BT": batch["mask"],
                                    "perm_mask_BTT": batch["perm_mask"], "target_mapping_BPT": batch["target_mapping"]}

    # ------------------------------------------------------------------ device side
    def init_carry(self, batch_size: int, model_cfg):
        """The memory `{"mems": [B, L, M, D]}` (zeros, as the reference starts) when `mem_len` > 0, else none."""
        if not self.cfg.mem_len:
            return {}
        return {"mems": jnp.zeros((batch_size, *model_cfg.memory_shape(self.cfg.mem_len)), jnp.float32)}

    def loss_denominators(self, batch):
        """The number of predicted tokens in the whole batch."""
        return {"plm": jnp.sum(batch["weights"].astype(jnp.float32))}

    def make_loss(self, model, frozen_models=None):
        """`loss(params, batch, rng, ...) -> (loss, (metrics, carry))`: cross-entropy of the query stream's
        `logits_BPV` against each predicted position's own token; the carry's memory goes in and the new one
        (this row's first `reuse_len` content states appended, the last `mem_len` kept) comes out."""
        mem_len = self.cfg.mem_len
        model_bi_data = getattr(getattr(model, "cfg", None), "bi_data", self.cfg.bi_data)
        if model_bi_data != self.cfg.bi_data:
            raise ValueError(f"objective.bi_data={self.cfg.bi_data} but model.bi_data={model_bi_data}: the reversed "
                             "streams of the second half of each batch need the model to negate their relative "
                             "distances; set both to the same value.")

        def loss_fn(params, batch, rng, *, carry=None, frozen=None, denominators=None, deterministic=False):
            del frozen
            denominators = self.loss_denominators(batch) if denominators is None else denominators
            args, kwargs = self.init_inputs(batch)
            if mem_len:
                reuse = self.cfg.lengths(batch["inputs"].shape[1])[0]
                mems = jnp.swapaxes(carry["mems"], 0, 1)
                kwargs.update(mems_LBMD=mems, return_mems=True, mem_len=mem_len, reuse_len=reuse)
            out = model.apply({"params": params}, *args, **kwargs, deterministic=deterministic,
                              rngs={"dropout": rng})
            loss, acc = weighted_cross_entropy(out.logits_BPV, batch["targets"], batch["weights"],
                                               denominators["plm"])
            if mem_len:
                carry = {"mems": jnp.swapaxes(out.mems_LBMD, 0, 1).astype(carry["mems"].dtype)}
            return loss, ({"loss": loss, "accuracy": acc}, carry)

        return loss_fn


__all__ = ["Plm", "PlmConfig", "local_perm", "sample_mask", "split_a_and_b"]
