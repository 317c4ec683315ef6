"""BERT's pretraining objective: masked LM + next-sentence prediction (Devlin et al. 2019 §3.1, Appendix A.2).

`[CLS] A [SEP] B [SEP]` pairs, B the true next segment half of the time (`objectives/nsp.py` builds them the way
`create_pretraining_data.py` does); masks drawn once per example copy (*static* masking with a duplication
factor) by default; loss = MLM cross-entropy over the masked positions + NSP cross-entropy.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from llm_jax.objectives.base import register
from llm_jax.objectives.mlm import Mlm, MlmConfig
from llm_jax.objectives.nsp import make_nsp_examples


@dataclasses.dataclass(frozen=True)
class MlmNspConfig(MlmConfig):
    """MLM fields (BERT's static masking by default) plus NSP's.

    Attributes:
      short_seq_prob: probability of a shorter target length for a pair (BERT 0.1).
    """

    name: str = "mlm_nsp"
    masking: str = "static"
    short_seq_prob: float = 0.1

    def validate(self):
        super().validate()
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise ValueError(f"objective.short_seq_prob={self.short_seq_prob} must be in [0, 1].")
        return self


@register
class MlmNsp(Mlm):
    """BERT's MLM + next-sentence prediction over sentence-pair rows."""

    name = "mlm_nsp"
    Config = MlmNspConfig
    heads = ("mlm", "nsp")
    pair_head = "nsp"

    def _rows(self, docs_ids, seq_len, seed, copy):
        rng = np.random.default_rng((seed, 3_000_017, copy))
        return make_nsp_examples(docs_ids, seq_len, self.special, rng, short_seq_prob=self.cfg.short_seq_prob)
