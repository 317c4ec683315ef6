"""Masked-language-model pretraining (RoBERTa's setting by default): FULL-SENTENCES rows, dynamic masking.

Liu et al. 2019 §4.1–4.2: rows packed from whole sentences across document boundaries, no NSP, masks drawn
afresh every time an example is served (*dynamic* masking); `masking="static"` draws them once per example copy
(`duplicate_factor` copies, BERT's `create_pretraining_data.py`). The corruption itself is BERT's 80/10/10 rule
(`llm_jax.objectives.masking`). BERT's MLM + NSP builds on this class (`objectives/mlm_nsp.py`).

Host side (`build_examples`, `prepare`) is numpy; the loss is a pure function of (params, batch, rng).
"""

from __future__ import annotations

import dataclasses
import logging
import math

import jax.numpy as jnp
import numpy as np

from llm_jax.data.packing import pack_full_sentences
from llm_jax.objectives.base import (Objective, ObjectiveConfigBase, check_token_ids, register,
                                     weighted_cross_entropy)
from llm_jax.objectives.masking import mask_batch, maskable

log = logging.getLogger(__name__)

# BERT's cap, 20 predictions at length 128 (80 at 512), as a ratio of the sequence length: 20 / (0.15 · 128) of the
# expected number of masked tokens, so that the cap rarely binds at any length.
BERT_PREDICTION_SLACK = 20 / (0.15 * 128)


@dataclasses.dataclass(frozen=True)
class MlmConfig(ObjectiveConfigBase):
    """Masked-LM hyperparameters.

    Attributes:
      name: `mlm`.
      mask_prob: fraction of maskable tokens predicted (15 %).
      max_predictions: P, masked positions kept per sequence; 0 = derived from the sequence length with BERT's
        ratio (20 at 128, 80 at 512). A set value that caps the masking rate is reported when examples are built.
      masking: `dynamic` (fresh every epoch, RoBERTa §4.1) or `static` (fixed per example copy, BERT).
      duplicate_factor: static masking's number of differently-masked copies (BERT used 10).
    """

    name: str = "mlm"
    mask_prob: float = 0.15
    max_predictions: int = 0
    masking: str = "dynamic"
    duplicate_factor: int = 10

    def validate(self):
        if self.masking not in ("static", "dynamic"):
            raise ValueError(f"objective.masking={self.masking!r}: choose 'static' or 'dynamic'.")
        if not 0.0 < self.mask_prob < 1.0:
            raise ValueError(f"objective.mask_prob={self.mask_prob} must be in (0, 1).")
        if self.max_predictions < 0 or self.duplicate_factor < 1:
            raise ValueError("objective.max_predictions must be ≥ 0 (0 = derived from data.seq_len) and "
                             "objective.duplicate_factor ≥ 1.")
        return self


def derived_max_predictions(seq_len: int, mask_prob: float) -> int:
    """BERT's prediction cap scaled to `seq_len`: 20 at 128 and 80 at 512 for 15 % masking."""
    return max(1, math.ceil(round(seq_len * mask_prob * BERT_PREDICTION_SLACK, 6)))


@register
class Mlm(Objective):
    """Masked-LM over FULL-SENTENCES packed rows (RoBERTa)."""

    name = "mlm"
    Config = MlmConfig
    required_roles = ("pad", "cls", "sep", "mask")
    progress_keys = ("loss", "mlm_accuracy", "tokens_per_s")

    heads = ("mlm",)
    # A sentence-pair classification head trained beside the MLM: "nsp" (BERT) or "sop" (ALBERT); its logits are
    # the model output's `<pair_head>_logits_B2` and its labels the batch's `<pair_head>_label`.
    pair_head: str | None = None

    def num_predictions(self, seq_len: int) -> int:
        """P: the configured cap, or BERT's ratio of `seq_len` when it is 0; never more than `seq_len`."""
        return self.predicted_positions_for(self.cfg, seq_len)

    @classmethod
    def predicted_positions_for(cls, cfg, seq_len: int) -> int:
        return min(cfg.max_predictions or derived_max_predictions(seq_len, cfg.mask_prob), seq_len)

    # ------------------------------------------------------------------ host side
    def _rows(self, docs_ids: list[list[np.ndarray]], seq_len: int, seed: int, copy: int) -> dict[str, np.ndarray]:
        """One copy of the unmasked example rows (`tokens`, `mask`, optional `segment_ids`/`nsp_label`)."""
        del seed, copy  # FULL-SENTENCES packing is deterministic: document order as given
        return pack_full_sentences(docs_ids, seq_len, self.special)

    def build_examples(self, docs_ids: list[list[np.ndarray]], seq_len: int, seed: int, *,
                       batch_size: int | None = None) -> dict[str, np.ndarray]:
        """The example pool: rows (masked now when masking is static); shuffled by the loader, so `batch_size`
        plays no part."""
        self._report_cap(seq_len)
        copies = self.cfg.duplicate_factor if self.cfg.masking == "static" else 1
        parts = []
        for copy in range(copies):
            rows = self._rows(docs_ids, seq_len, seed, copy)
            if self.cfg.masking == "static":
                n = len(rows["tokens"])
                rows.update(self._mask(rows["tokens"], [(seed, 1_000_003, copy, i) for i in range(n)]))
            parts.append(rows)
        examples = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        self.check_ids(examples["tokens"])
        return examples

    def _report_cap(self, seq_len: int) -> None:
        derived = derived_max_predictions(seq_len, self.cfg.mask_prob)
        if self.cfg.max_predictions and self.cfg.max_predictions < derived:
            log.warning("objective.max_predictions=%d caps masking at %.1f %% of %d positions (mask_prob=%.2f asks "
                        "for about %d); set objective.max_predictions=0 to derive the cap from data.seq_len.",
                        self.cfg.max_predictions, 100 * self.cfg.max_predictions / seq_len, seq_len,
                        self.cfg.mask_prob, derived)

    def check_ids(self, tokens: np.ndarray) -> None:
        """Token ids outside the vocabulary are a data/tokenizer mismatch: say so before anything compiles."""
        check_token_ids(tokens, self.vocab_size)

    def _mask(self, tokens_BT: np.ndarray, seeds) -> dict[str, np.ndarray]:
        return mask_batch(tokens_BT, maskable(tokens_BT, self.special), seeds, mask_prob=self.cfg.mask_prob,
                          max_predictions=self.num_predictions(tokens_BT.shape[1]), mask_id=self.special.mask,
                          vocab_size=self.vocab_size)

    def prepare(self, examples: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
        """The model-ready batch from loader rows; draws dynamic masks from (seed, epoch, example index)."""
        batch = {"mask": examples["mask"]}
        for key in ("segment_ids", f"{self.pair_head}_label"):
            if key in examples:
                batch[key] = examples[key]
        if self.cfg.masking == "dynamic":
            seeds = [(seed, 2_000_003, int(e), int(i)) for e, i in zip(examples["epoch"], examples["example_index"])]
            masked = self._mask(examples["tokens"], seeds)
        else:
            masked = {k: examples[k] for k in ("inputs", "mlm_positions", "mlm_ids", "mlm_weights")}
        batch.update(masked)
        return batch

    def dummy_batch(self, batch_size: int, seq_len: int) -> dict[str, np.ndarray]:
        p = self.num_predictions(seq_len)
        batch = {
            "inputs": np.zeros((batch_size, seq_len), np.int32),
            "mask": np.ones((batch_size, seq_len), bool),
            "mlm_positions": np.zeros((batch_size, p), np.int32),
            "mlm_ids": np.zeros((batch_size, p), np.int32),
            "mlm_weights": np.zeros((batch_size, p), np.float32),
        }
        if self.pair_head:  # sentence pairs: segment ids and one label per row
            batch.update(segment_ids=np.zeros((batch_size, seq_len), np.int32),
                         **{f"{self.pair_head}_label": np.zeros((batch_size,), np.int32)})
        return batch

    def init_inputs(self, batch):
        args, kwargs = super().init_inputs(batch)
        return args, {**kwargs, "mlm_positions_BP": batch["mlm_positions"]}

    # ------------------------------------------------------------------ device side
    def loss_denominators(self, batch):
        out = {"mlm": jnp.sum(batch["mlm_weights"].astype(jnp.float32))}
        if self.pair_head:  # one pair label per row
            out[self.pair_head] = jnp.asarray(batch["mask"].shape[0], jnp.float32)
        return out

    def _apply(self, model, params, batch, rng, deterministic):
        args, kwargs = self.init_inputs(batch)
        return model.apply({"params": params}, *args, **kwargs, deterministic=deterministic, rngs={"dropout": rng})

    def _mlm_terms(self, out, batch, denominators):
        loss, acc = weighted_cross_entropy(out.mlm_logits_BTV, batch["mlm_ids"], batch["mlm_weights"],
                                           denominators["mlm"])
        return loss, {"mlm_loss": loss, "mlm_accuracy": acc}

    def _pair_terms(self, out, batch, denominators):
        """Cross-entropy and accuracy of the sentence-pair head (NSP or SOP) over the rows."""
        head = self.pair_head
        labels_B1 = batch[f"{head}_label"][:, None]
        loss, acc = weighted_cross_entropy(getattr(out, f"{head}_logits_B2")[:, None], labels_B1,
                                           jnp.ones(labels_B1.shape, jnp.float32), denominators[head])
        return loss, {f"{head}_loss": loss, f"{head}_accuracy": acc}

    def make_loss(self, model, frozen_models=None):
        """`loss(params, batch, rng, ...) -> (loss, (metrics, carry))` for a pretraining model of any MLM family."""

        def loss_fn(params, batch, rng, *, carry=None, frozen=None, denominators=None, deterministic=False):
            del frozen
            denominators = self.loss_denominators(batch) if denominators is None else denominators
            out = self._apply(model, params, batch, rng, deterministic)
            loss, metrics = self._mlm_terms(out, batch, denominators)
            if self.pair_head:
                pair_loss, pair_metrics = self._pair_terms(out, batch, denominators)
                loss = loss + pair_loss
                metrics.update(pair_metrics)
            metrics["loss"] = loss
            return loss, (metrics, carry)

        return loss_fn
