"""RoBERTa (Liu et al., 2019, "RoBERTa: A Robustly Optimized BERT Pretraining Approach").

Builds on BERT: the same post-LN encoder and MLM head. What differs (paper §4, Hugging Face `RobertaForMaskedLM`):
* byte-level BPE vocabulary of 50,265 (§4.4) with `<s>`=0, `<pad>`=1, `</s>`=2;
* positions start after the padding index: real tokens get `pad_id + 1, pad_id + 2, …` and padding gets
  `pad_id`, so the table has `max_len + pad_id + 1` = 514 rows;
* a single token type; LayerNorm eps 1e-5;
* no NSP head and no pooler in the pretraining model (§4.2: NSP removed; FULL-SENTENCES inputs);
* trained with dynamic masking (§4.1), see `llm_jax.objectives`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from llm_jax.data.tokenizer import ROBERTA_TOKENIZER
from llm_jax.layers import activation
from llm_jax.models import bert

Output = bert.Output


@dataclasses.dataclass(frozen=True)
class Config(bert.Config):
    """RoBERTa hyperparameters: BERT's fields with RoBERTa's defaults."""

    vocab_size: int = 50265
    max_position_embeddings: int = 514
    type_vocab_size: int = 1
    layer_norm_eps: float = 1e-5
    pad_token_id: int = 1

    @property
    def max_seq_len(self) -> int:
        """Positions left after the padding offset (514 − 1 − 1 = 512 for the published models)."""
        return self.max_position_embeddings - self.pad_token_id - 1

    def validate(self) -> "Config":
        super().validate()
        if self.max_position_embeddings <= self.pad_token_id + 1:
            raise ValueError(f"model.max_position_embeddings={self.max_position_embeddings} leaves no positions after "
                             f"the padding offset {self.pad_token_id + 1}; RoBERTa needs max_len + pad_token_id + 1.")
        return self


# Liu et al. 2019 §4/Appendix (base, large); tiny/mini reuse Turc et al.'s shapes for CPU runs.
PRESETS: dict[str, Config] = {
    "roberta-base": Config(),
    "roberta-large": Config(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096),
    "roberta-mini": Config(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024),
    "roberta-tiny": Config(hidden_size=128, num_layers=2, num_heads=2, intermediate_size=512),
}


def positions_from_tokens(tokens_BT: jax.Array, pad_token_id: int) -> jax.Array:
    """RoBERTa/fairseq positions: `pad_id + 1 + index among real tokens`, and `pad_id` on padding."""
    real_BT = (tokens_BT != pad_token_id).astype(jnp.int32)
    return jnp.cumsum(real_BT, axis=1) * real_BT + pad_token_id


class RobertaModel(bert.BertModel):
    """BERT's trunk with RoBERTa's positions: offset past the padding index, computed from the tokens."""

    def __call__(self, tokens_BT, *, segment_ids_BT=None, positions_BT=None, mask_BT=None, deterministic=True):
        if positions_BT is None:
            positions_BT = positions_from_tokens(tokens_BT, self.cfg.pad_token_id)
        return super().__call__(tokens_BT, segment_ids_BT=segment_ids_BT, positions_BT=positions_BT,
                                mask_BT=mask_BT, deterministic=deterministic)


class RobertaForMaskedLM(nn.Module):
    """RoBERTa trunk without pooler + BERT's MLM head."""

    cfg: Config
    collect_hidden: bool = False

    def setup(self):
        self.roberta = RobertaModel(self.cfg, add_pooler=False, collect_hidden=self.collect_hidden)
        # Why act="gelu": Hugging Face's `RobertaLMHead` applies exact GELU whatever `hidden_act` says (BERT's head
        # follows `hidden_act`); the published checkpoints and the parity oracle compute it that way.
        self.mlm_head = bert.MlmHead(self.cfg, act="gelu")

    def __call__(self, tokens_BT, *, segment_ids_BT=None, positions_BT=None, mask_BT=None,
                 mlm_positions_BP=None, deterministic=True) -> Output:
        out = self.roberta(tokens_BT, segment_ids_BT=segment_ids_BT, positions_BT=positions_BT, mask_BT=mask_BT,
                           deterministic=deterministic)
        h_BTD = out.hidden_BTD
        if mlm_positions_BP is not None:
            h_BTD = bert.gather_positions(h_BTD, mlm_positions_BP)
        return out.replace(mlm_logits_BTV=self.mlm_head(h_BTD, self.roberta.attend))


# ------------------------------------------------------------------------------------- family contract

NAME = "roberta"
PRETRAINING_MODEL = RobertaForMaskedLM
DEFAULT_OBJECTIVE = "mlm"
LM_KIND = "masked"
# Cased byte-level BPE with <s>=0 <pad>=1 </s>=2 <unk>=3 <mask>=4 and `<s> A </s></s> B </s>` inputs (§4.4).
TOKENIZER = ROBERTA_TOKENIZER
INPUT_FORMAT = bert.INPUT_FORMAT
TRUNK_NAME = "roberta"
# Neuron pruning (`llm_jax.compression.pruning`): FFN width field → the FFN (`Mlp`) modules of that width.
FFN_BLOCKS = {"intermediate_size": ("roberta/encoder/stack/layers/block/mlp",)}
# Bias tests (`llm_jax.eval.embeddings`): the token table, and `<s>`'s state (the classification head is all new).
TOKEN_EMBEDDING = bert.TOKEN_EMBEDDING
pooled_features = bert.first_token_features
towers = bert.towers


def build_trunk(cfg: Config, kind: str, **kwargs) -> RobertaModel:
    """No pretrained pooler (no NSP, §4.2): only the multiple-choice head reads one (HF `RobertaForMultipleChoice`)."""
    return RobertaModel(cfg, add_pooler=kind == "multiple_choice", **kwargs)


class ClassificationHead(nn.Module):
    """dropout → dense D → activation → dropout → out_proj on the first token (HF `RobertaClassificationHead`:
    tanh; ELECTRA's `ElectraClassificationHead`: GELU), all new."""

    cfg: Config
    num_labels: int
    dropout: float
    act: str = "tanh"

    @nn.compact
    def __call__(self, hidden_BTD, deterministic: bool):
        d = self.cfg.hidden_size
        x_BD = nn.Dropout(self.dropout)(hidden_BTD[:, 0], deterministic=deterministic)
        x_BD = activation(self.act)(bert.dense(self.cfg, "BD,DE->BE", d, d, "dense")(x_BD))
        x_BD = nn.Dropout(self.dropout)(x_BD, deterministic=deterministic)
        return bert.dense(self.cfg, "BD,DC->BC", d, self.num_labels, "out_proj")(x_BD)


def sequence_head(cfg: Config, trunk_out: Output, *, kind: str, num_outputs: int, dropout: float,
                  deterministic: bool) -> jax.Array:
    """Classification/regression: `ClassificationHead`; multiple choice: BERT's pooled head (as HF does)."""
    if kind == "multiple_choice":
        return bert.sequence_head(cfg, trunk_out, kind=kind, num_outputs=num_outputs, dropout=dropout,
                                  deterministic=deterministic)
    return ClassificationHead(cfg, num_outputs, dropout, name="classifier")(trunk_out.hidden_BTD, deterministic)


# ---------------------------------------------------------------------------------------- HF name map

HF_NAME_MAP: dict[str, tuple[str, str]] = {
    **{f"roberta/{k}": (f"roberta.{v}", kind) for k, (v, kind) in bert.HF_ENCODER_MAP.items()},
    "mlm_head/transform/kernel": ("lm_head.dense.weight", "linear"),
    "mlm_head/transform/bias": ("lm_head.dense.bias", "vector"),
    "mlm_head/layer_norm/scale": ("lm_head.layer_norm.weight", "vector"),
    "mlm_head/layer_norm/bias": ("lm_head.layer_norm.bias", "vector"),
    "mlm_head/bias": ("lm_head.bias", "vector"),
}
HF_ARCHITECTURE = "RobertaForMaskedLM"
HF_MODEL_TYPE = "roberta"
HF_BASE_PREFIX = "roberta"
HF_TIED_WEIGHTS: dict[str, str] = {
    "lm_head.decoder.weight": "roberta.embeddings.word_embeddings.weight",
    "lm_head.decoder.bias": "lm_head.bias",
}
# The published checkpoints also carry a pooler, which the MLM model has no use for (no NSP, §4.2).
HF_IGNORED: tuple[str, ...] = (*bert.HF_IGNORED, r"(^|\.)pooler\.dense\.(weight|bias)$")
# What a checkpoint may lack (a bare `RobertaModel`): initialised freshly and reported.
HF_INIT_IF_MISSING: tuple[str, ...] = ("mlm_head/",)


def config_from_hf(hf: dict[str, Any]) -> Config:
    base = bert.config_from_hf({**hf, "pad_token_id": hf.get("pad_token_id", 1)})
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(bert.Config)}
    return Config(**fields).validate()


def config_to_hf(cfg: Config) -> dict[str, Any]:
    return {**bert.config_to_hf(cfg), "model_type": HF_MODEL_TYPE, "architectures": [HF_ARCHITECTURE],
            "bos_token_id": 0, "eos_token_id": 2}
