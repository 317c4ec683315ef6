"""ALBERT's pretraining objective: n-gram masked LM + sentence-order prediction (Lan et al. 2020 §3.2, §4.1).

* **SOP** (§3.2): "as positive examples, two consecutive segments from the same document; as negative examples,
  the same two consecutive segments but with their order swapped", half of the time; label 1 = swapped (HF
  `sentence_order_label`). The pairs come from BERT's builder (`objectives/nsp.py`, `negatives="swapped"`): the same
  chunking, short-sequence probability and truncation, B never from another document.
* **n-gram masking** (§4.1, after Joshi et al. 2020): 15 % of the tokens, in spans of 1–3 whole *words* with
  p(n) ∝ 1/n (6/11, 3/11, 2/11), each span `[MASK]`ed / randomised / kept 80/10/10
  (`llm_jax.objectives.masking.ngram_mask_batch`). A word is a SentencePiece piece starting with "▁" (or "<", or a
  lone ASCII punctuation mark: the reference's `_is_start_piece`) plus the continuation pieces after it, so the
  objective reads the vocabulary through `bind_tokenizer`.
* Static masking with `duplicate_factor` differently cut and masked copies, as the reference's
  `create_pretraining_data.py` (`dupe_factor=40`).

Loss = MLM cross-entropy over the predicted positions + SOP cross-entropy, each normalised by the whole global
batch (`loss_denominators`), so gradient accumulation is exact.
"""

from __future__ import annotations

import dataclasses
import string

import numpy as np

from llm_jax.objectives.base import register
from llm_jax.objectives.masking import maskable, ngram_mask_batch, ngram_probabilities
from llm_jax.objectives.mlm import Mlm, MlmConfig
from llm_jax.objectives.nsp import make_nsp_examples

# SentencePiece's word-boundary mark (U+2581).
WORD_MARK = "\u2581"


@dataclasses.dataclass(frozen=True)
class MlmSopConfig(MlmConfig):
    """MLM fields (static masking) plus SOP's and the n-gram length.

    Attributes:
      name: `mlm_sop`.
      masking: `static` (the reference masks once per copy) or `dynamic`.
      duplicate_factor: copies of the corpus, each cut and masked differently (reference `dupe_factor=40`).
      short_seq_prob: probability of a shorter target length for a document's pairs (0.1).
      max_ngram: N, the longest masked span in words (3; p(n) ∝ 1/n).
    """

    name: str = "mlm_sop"
    masking: str = "static"
    duplicate_factor: int = 40
    short_seq_prob: float = 0.1
    max_ngram: int = 3

    def validate(self):
        super().validate()
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise ValueError(f"objective.short_seq_prob={self.short_seq_prob} must be in [0, 1].")
        if self.max_ngram < 1:
            raise ValueError(f"objective.max_ngram={self.max_ngram} must be ≥ 1 (ALBERT uses 3).")
        return self


def is_word_start(piece: str) -> bool:
    """ALBERT's `_is_start_piece`: a piece opens a word when it starts with "▁" or "<" or is one ASCII punctuation
    mark; any other piece continues the word before it."""
    return piece.startswith((WORD_MARK, "<")) or (len(piece) == 1 and piece in string.punctuation)


def word_start_table(tokenizer, vocab_size: int) -> np.ndarray:
    """Bool `[vocab_size]`: True for ids whose piece starts a word (`is_word_start`); ids the tokenizer does not
    know (a model vocabulary padded past it) count as word starts."""
    table_V = np.ones(vocab_size, bool)
    for piece, i in tokenizer.get_vocab().items():
        if 0 <= i < vocab_size:
            table_V[i] = is_word_start(piece)
    return table_V


@register
class MlmSop(Mlm):
    """ALBERT's n-gram MLM + sentence-order prediction over consecutive-segment pairs."""

    name = "mlm_sop"
    Config = MlmSopConfig
    heads = ("mlm", "sop")
    pair_head = "sop"
    progress_keys = ("loss", "mlm_accuracy", "sop_accuracy", "tokens_per_s")

    word_start_V: np.ndarray | None = None

    def bind_tokenizer(self, tokenizer) -> None:
        """Reads which pieces start a word (the n-gram masking's unit)."""
        self.word_start_V = word_start_table(tokenizer, self.vocab_size)

    # ------------------------------------------------------------------ host side
    def _rows(self, docs_ids, seq_len, seed, copy):
        rng = np.random.default_rng((seed, 3_000_019, copy))
        rows = make_nsp_examples(docs_ids, seq_len, self.special, rng, short_seq_prob=self.cfg.short_seq_prob,
                                 negatives="swapped")
        rows["sop_label"] = rows.pop("nsp_label")
        return rows

    def _mask(self, tokens_BT: np.ndarray, seeds) -> dict[str, np.ndarray]:
        if self.word_start_V is None:
            raise ValueError("objective mlm_sop masks whole words and needs the tokenizer's pieces: create it with "
                             "make_objective(..., tokenizer=...) or call bind_tokenizer(tokenizer) first.")
        self.check_ids(tokens_BT)
        return ngram_mask_batch(tokens_BT, maskable(tokens_BT, self.special), self.word_start_V[tokens_BT], seeds,
                                mask_prob=self.cfg.mask_prob, max_predictions=self.num_predictions(tokens_BT.shape[1]),
                                mask_id=self.special.mask, vocab_size=self.vocab_size, max_ngram=self.cfg.max_ngram)

    @staticmethod
    def span_probabilities(max_ngram: int = 3) -> np.ndarray:
        """p(n) of the span lengths in words, n = 1 … max_ngram."""
        return ngram_probabilities(max_ngram)
