"""Masked-language-model pretraining: BERT's MLM + NSP and RoBERTa's dynamic-masking MLM.

* `MlmNsp` (Devlin et al. 2019 §3.1, Appendix A.2): `[CLS] A [SEP] B [SEP]` pairs, B the true next segment
  half of the time; masks drawn once per example copy (*static* masking with a duplication factor, as
  `create_pretraining_data.py` does); loss = MLM cross-entropy over masked positions + NSP cross-entropy.
* `Mlm` (Liu et al. 2019 §4.1–4.2): FULL-SENTENCES packing without NSP; masks drawn afresh every time an
  example is served (*dynamic* masking). Either objective can be switched to the other masking mode.

Host side (`build_examples`, `prepare`) is numpy; the loss is a pure function of (params, batch, rng).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from llm_jax.data.packing import pack_full_sentences
from llm_jax.data.tokenizer import SpecialIds
from llm_jax.objectives.masking import mask_batch, maskable
from llm_jax.objectives.nsp import make_nsp_examples

LossFn = Callable[[Any, dict[str, jax.Array], jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
    """Objective hyperparameters.

    Attributes:
      name: `mlm_nsp` (BERT) or `mlm` (RoBERTa).
      mask_prob: fraction of maskable tokens predicted (15 %).
      max_predictions: P, masked positions kept per sequence (BERT: 20 at length 128, 80 at 512).
      masking: `static` (fixed per example copy) or `dynamic` (fresh every epoch).
      duplicate_factor: static masking's number of differently-masked copies (BERT used 10).
      short_seq_prob: NSP's probability of a shorter target length (BERT 0.1).
    """

    name: str = "mlm_nsp"
    mask_prob: float = 0.15
    max_predictions: int = 20
    masking: str = "static"
    duplicate_factor: int = 10
    short_seq_prob: float = 0.1

    def validate(self) -> "ObjectiveConfig":
        if self.name not in ("mlm", "mlm_nsp"):
            raise ValueError(f"objective.name={self.name!r} is not a known objective; choose 'mlm' or 'mlm_nsp'.")
        if self.masking not in ("static", "dynamic"):
            raise ValueError(f"objective.masking={self.masking!r}: choose 'static' or 'dynamic'.")
        if not 0.0 < self.mask_prob < 1.0:
            raise ValueError(f"objective.mask_prob={self.mask_prob} must be in (0, 1).")
        if self.max_predictions < 1 or self.duplicate_factor < 1:
            raise ValueError("objective.max_predictions and objective.duplicate_factor must be ≥ 1.")
        return self


def weighted_cross_entropy(logits_BPV: jax.Array, ids_BP: jax.Array, weights_BP: jax.Array):
    """Mean cross-entropy and accuracy over the positions with weight > 0 (in float32)."""
    logits_BPV = logits_BPV.astype(jnp.float32)
    logp_BPV = jax.nn.log_softmax(logits_BPV, axis=-1)
    nll_BP = -jnp.take_along_axis(logp_BPV, ids_BP[..., None].astype(jnp.int32), axis=-1)[..., 0]
    weights_BP = weights_BP.astype(jnp.float32)
    denom = jnp.maximum(jnp.sum(weights_BP), 1e-5)
    loss = jnp.sum(nll_BP * weights_BP) / denom
    accuracy = jnp.sum((jnp.argmax(logits_BPV, -1) == ids_BP) * weights_BP) / denom
    return loss, accuracy


class Mlm:
    """Masked-LM over FULL-SENTENCES packed rows (RoBERTa's setting by default)."""

    uses_nsp = False

    def __init__(self, cfg: ObjectiveConfig, special: SpecialIds, vocab_size: int):
        self.cfg = cfg.validate()
        self.special = special
        self.vocab_size = vocab_size

    # ------------------------------------------------------------------ host side
    def _rows(self, docs_ids: list[list[np.ndarray]], seq_len: int, seed: int, copy: int) -> dict[str, np.ndarray]:
        """One copy of the unmasked example rows (`tokens`, `mask`, optional `segment_ids`/`nsp_label`)."""
        del seed, copy  # FULL-SENTENCES packing is deterministic: document order as given
        return pack_full_sentences(docs_ids, seq_len, self.special)

    def build_examples(self, docs_ids: list[list[np.ndarray]], seq_len: int, seed: int) -> dict[str, np.ndarray]:
        """The example pool: rows (masked now when masking is static)."""
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

    def check_ids(self, tokens: np.ndarray) -> None:
        """Token ids outside the vocabulary are a data/tokenizer mismatch: say so before anything compiles."""
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise ValueError(f"Token ids span [{tokens.min()}, {tokens.max()}] but the model's vocabulary has "
                             f"{self.vocab_size} entries; use the tokenizer the model was built for or set "
                             "model.vocab_size to the tokenizer's size.")

    def _mask(self, tokens_BT: np.ndarray, seeds) -> dict[str, np.ndarray]:
        return mask_batch(tokens_BT, maskable(tokens_BT, self.special), seeds, mask_prob=self.cfg.mask_prob,
                          max_predictions=self.cfg.max_predictions, mask_id=self.special.mask,
                          vocab_size=self.vocab_size)

    def prepare(self, examples: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
        """The model-ready batch from loader rows; draws dynamic masks from (seed, epoch, example index)."""
        batch = {"mask": examples["mask"]}
        if "segment_ids" in examples:
            batch["segment_ids"] = examples["segment_ids"]
        if "nsp_label" in examples:
            batch["nsp_label"] = examples["nsp_label"]
        if self.cfg.masking == "dynamic":
            seeds = [(seed, 2_000_003, int(e), int(i)) for e, i in zip(examples["epoch"], examples["example_index"])]
            masked = self._mask(examples["tokens"], seeds)
        else:
            masked = {k: examples[k] for k in ("inputs", "mlm_positions", "mlm_ids", "mlm_weights")}
        batch.update(masked)
        return batch

    # ------------------------------------------------------------------ device side
    def make_loss(self, model) -> LossFn:
        """`loss(params, batch, rng) -> (loss, metrics)` for `model` (a pretraining model of any MLM family)."""

        def loss_fn(params, batch, rng, deterministic: bool = False):
            out = model.apply({"params": params}, batch["inputs"], segment_ids_BT=batch.get("segment_ids"),
                              mask_BT=batch["mask"], mlm_positions_BP=batch["mlm_positions"],
                              deterministic=deterministic, rngs={"dropout": rng})
            mlm_loss, mlm_acc = weighted_cross_entropy(out.mlm_logits_BTV, batch["mlm_ids"], batch["mlm_weights"])
            metrics = {"mlm_loss": mlm_loss, "mlm_accuracy": mlm_acc}
            loss = mlm_loss
            if self.uses_nsp:
                nsp_loss, nsp_acc = weighted_cross_entropy(out.nsp_logits_B2[:, None], batch["nsp_label"][:, None],
                                                           jnp.ones_like(batch["nsp_label"][:, None], jnp.float32))
                metrics.update(nsp_loss=nsp_loss, nsp_accuracy=nsp_acc)
                loss = loss + nsp_loss
            metrics["loss"] = loss
            return loss, metrics

        return loss_fn

    def dummy_batch(self, batch_size: int, seq_len: int) -> dict[str, np.ndarray]:
        """A batch of the right shapes and dtypes (for abstract init and compilation)."""
        p = self.cfg.max_predictions
        batch = {
            "inputs": np.zeros((batch_size, seq_len), np.int32),
            "mask": np.ones((batch_size, seq_len), bool),
            "mlm_positions": np.zeros((batch_size, p), np.int32),
            "mlm_ids": np.zeros((batch_size, p), np.int32),
            "mlm_weights": np.zeros((batch_size, p), np.float32),
        }
        if self.uses_nsp:
            batch["segment_ids"] = np.zeros((batch_size, seq_len), np.int32)
            batch["nsp_label"] = np.zeros((batch_size,), np.int32)
        return batch


class MlmNsp(Mlm):
    """BERT's MLM + next-sentence prediction over sentence-pair rows."""

    uses_nsp = True

    def _rows(self, docs_ids, seq_len, seed, copy):
        rng = np.random.default_rng((seed, 3_000_017, copy))
        return make_nsp_examples(docs_ids, seq_len, self.special, rng, short_seq_prob=self.cfg.short_seq_prob)


OBJECTIVES = {"mlm": Mlm, "mlm_nsp": MlmNsp}


def make_objective(cfg: ObjectiveConfig, special: SpecialIds, vocab_size: int) -> Mlm:
    """The objective named by `cfg.name`."""
    cfg.validate()
    return OBJECTIVES[cfg.name](cfg, special, vocab_size)
