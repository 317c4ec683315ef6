"""DistilBERT (Sanh et al., 2019, "DistilBERT, a distilled version of BERT: smaller, faster, cheaper and lighter").

Builds on BERT: the same post-LN encoder layer, MLM head and WordPiece vocabulary. What differs (paper §3, Hugging
Face `DistilBertForMaskedLM`):
* half the layers (6 for the base model, "the number of layers is reduced by a factor of 2", §3);
* no token-type embeddings and no pooler ("token-type embeddings and the pooler are removed", §3): the embeddings
  are word + learned position (HF `sinusoidal_pos_embds=False`) → LayerNorm → dropout;
* the MLM head is BERT's (dense + activation + LayerNorm + decoder tied to the word embeddings, with a bias), under
  HF's names `vocab_transform`, `vocab_layer_norm`, `vocab_projector`;
* sequence classifiers read `pre_classifier` (dense D + ReLU + dropout) + `classifier` on the first token (HF
  `DistilBertForSequenceClassification`), not a pretrained pooler;
* the student starts from one layer out of two of a BERT teacher (§3 "Student initialization"): `params_from`;
* trained by distillation (`llm_jax.objectives.distill`: soft-target CE + MLM + hidden-state cosine, §2–3).

Parameter layout and numerics follow Hugging Face `DistilBertForMaskedLM`; `HF_NAME_MAP` maps the names. Our field
names are BERT's (`hidden_size`, `num_layers`, ...); `config_from_hf` / `config_to_hf` translate HF's (`dim`,
`n_layers`, ...).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from llm_jax.flops import Tower
from llm_jax.layers import ATTENTION_IMPLEMENTATIONS, Embed, LayerNorm, activation
from llm_jax.layers.embeddings import check_ids
from llm_jax.models import bert
from llm_jax.models.family import CommonConfig
from llm_jax.sharding import BATCH, EMBED, P_EMBED, P_VOCAB, SEQ, shard

Output = bert.Output

# --------------------------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class Config(CommonConfig):
    """DistilBERT hyperparameters: BERT's fields (and names) without `type_vocab_size`.

    HF `DistilBertConfig` calls them `dim` (hidden_size), `n_layers`, `n_heads`, `hidden_dim` (intermediate_size),
    `activation` (hidden_act), `dropout` (hidden_dropout); its LayerNorm eps is fixed at 1e-12.
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 6
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0

    head_dim = bert.Config.head_dim
    width = bert.Config.width
    max_seq_len = bert.Config.max_seq_len

    @property
    def num_token_types(self) -> int:
        """One: DistilBERT has no token-type embeddings (§3); pair inputs carry only `[SEP]` between segments."""
        return 1

    def with_vocabulary(self, vocab_size: int, special) -> "Config":
        """This Config sized for a tokenizer: its vocabulary and padding id (`special`: `SpecialIds`)."""
        return dataclasses.replace(self, vocab_size=vocab_size, pad_token_id=special.pad).validate()

    def validate(self) -> "Config":
        if self.hidden_size % self.num_heads:
            raise ValueError(f"model.hidden_size={self.hidden_size} is not divisible by model.num_heads="
                             f"{self.num_heads}; pick a head count that divides the width.")
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                     "max_position_embeddings"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be ≥ 1 (got {getattr(self, name)}).")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"model.pad_token_id={self.pad_token_id} is outside the vocabulary [0, {self.vocab_size}).")
        activation(self.hidden_act)
        jnp.dtype(self.dtype)
        if self.attention_impl not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(f"model.attention_impl={self.attention_impl!r} is not one of "
                             f"{ATTENTION_IMPLEMENTATIONS}.")
        return self


# Sanh et al. 2019 §3 (base: BERT-base halved, 6 × 768, 66M parameters); tiny halves BERT-tiny (Turc et al. 2019:
# 2 × 128) so that `configs/distilbert.py:size=tiny,teacher=runs/bert-tiny` starts from its teacher's layer 0.
PRESETS: dict[str, Config] = {
    "distilbert-base": Config(),
    "distilbert-tiny": Config(hidden_size=128, num_layers=1, num_heads=2, intermediate_size=512),
}

# ---------------------------------------------------------------------------------------------- modules


def _init(cfg: Config):
    return nn.initializers.normal(cfg.initializer_range)


class Embeddings(nn.Module):
    """word + learned position embeddings → LayerNorm → dropout; no token types (§3, HF `Embeddings`)."""

    cfg: Config

    def setup(self):
        cfg = self.cfg
        dtype = jnp.dtype(cfg.dtype)
        self.word_embeddings = Embed(cfg.vocab_size, cfg.hidden_size, (P_VOCAB, P_EMBED), _init(cfg), dtype,
                                     field="token ids (model.vocab_size)")
        self.position_embeddings = Embed(cfg.max_position_embeddings, cfg.hidden_size, (None, P_EMBED), _init(cfg),
                                         dtype, field="position ids (model.max_position_embeddings)")
        self.layer_norm = LayerNorm(cfg.layer_norm_eps, dtype=dtype)
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def __call__(self, tokens_BT, segment_ids_BT, positions_BT, deterministic: bool):
        """`[B, T]` ids → `[B, T, D]`. Segment ids must be 0 (no token types, §3); concrete ones are checked."""
        if segment_ids_BT is not None and not isinstance(segment_ids_BT, jax.core.Tracer):
            check_ids(segment_ids_BT, 1, "token type (segment) ids (DistilBERT has no token types)")
        x_BTD = self.word_embeddings(tokens_BT) + self.position_embeddings(positions_BT)
        x_BTD = self.dropout(self.layer_norm(x_BTD), deterministic=deterministic)
        return shard(x_BTD, BATCH, SEQ, EMBED)


class DistilBertModel(bert.BertModel):
    """Embeddings (no token types) → BERT's encoder; never a pooler (HF `DistilBertModel`).

    `__call__` is `BertModel`'s (the model contract); `segment_ids_BT`, when given, must be all 0.
    """

    add_pooler: bool = False

    def setup(self):
        if self.add_pooler:
            raise ValueError("DistilBERT has no pooler (Sanh et al. §3); build DistilBertModel with add_pooler=False.")
        self.embeddings = Embeddings(self.cfg)
        self.encoder = bert.Encoder(self.cfg, collect_hidden=self.collect_hidden)


class DistilBertForMaskedLM(nn.Module):
    """DistilBERT trunk + BERT's MLM head (tied decoder with its own bias): HF `DistilBertForMaskedLM`."""

    cfg: Config
    collect_hidden: bool = False

    def setup(self):
        self.distilbert = DistilBertModel(self.cfg, collect_hidden=self.collect_hidden)
        # HF's head applies `get_activation(config.activation)`, as BERT's follows `hidden_act`.
        self.mlm_head = bert.MlmHead(self.cfg)

    def __call__(self, tokens_BT, *, segment_ids_BT=None, positions_BT=None, mask_BT=None,
                 mlm_positions_BP=None, deterministic=True) -> Output:
        """Hidden states `[B, T, D]` and MLM logits `[B, T, V]` (or `[B, P, V]` at `mlm_positions_BP`)."""
        out = self.distilbert(tokens_BT, segment_ids_BT=segment_ids_BT, positions_BT=positions_BT, mask_BT=mask_BT,
                              deterministic=deterministic)
        h_BTD = out.hidden_BTD
        if mlm_positions_BP is not None:
            h_BTD = bert.gather_positions(h_BTD, mlm_positions_BP)
        return out.replace(mlm_logits_BTV=self.mlm_head(h_BTD, self.distilbert.attend))


# ------------------------------------------------------------------------------------- family contract

NAME = "distilbert"
PRETRAINING_MODEL = DistilBertForMaskedLM
DEFAULT_OBJECTIVE = "distill"
LM_KIND = "masked"
TOKENIZER = bert.TOKENIZER  # the teacher's WordPiece vocabulary (§3: the student shares it)
INPUT_FORMAT = bert.INPUT_FORMAT
TRUNK_NAME = "distilbert"
# Neuron pruning (`llm_jax.compression.pruning`): FFN width field → the FFN (`Mlp`) modules of that width.
FFN_BLOCKS = {"intermediate_size": ("distilbert/encoder/stack/layers/block/mlp",)}
# Bias tests (`llm_jax.eval.embeddings`): the token table, and `[CLS]`'s state (`pre_classifier` is new).
TOKEN_EMBEDDING = bert.TOKEN_EMBEDDING
pooled_features = bert.first_token_features


def build_trunk(cfg: Config, kind: str, **kwargs) -> DistilBertModel:
    """The encoder every fine-tuning head sits on (no pooler for any kind)."""
    del kind
    return DistilBertModel(cfg, **kwargs)


def sequence_head(cfg: Config, trunk_out: Output, *, kind: str, num_outputs: int, dropout: float,
                  deterministic: bool) -> jax.Array:
    """First token → `pre_classifier` (dense D) → ReLU → dropout → `classifier` (HF
    `DistilBertForSequenceClassification` and `…ForMultipleChoice`). Called inside the parent's compact method.

    `dropout` is HF's `seq_classif_dropout` (the fine-tuning config's `model.classifier_dropout`).

    Returns:
      `[B, num_outputs]` logits.
    """
    del kind  # every sequence kind uses the same head
    d = cfg.hidden_size
    x_BD = bert.dense(cfg, "BD,DE->BE", d, d, "pre_classifier")(trunk_out.hidden_BTD[:, 0])
    x_BD = nn.Dropout(dropout)(jax.nn.relu(x_BD), deterministic=deterministic)
    return bert.dense(cfg, "BD,DC->BC", d, num_outputs, "classifier")(x_BD)


def towers(cfg: Config, seq_len: int, *, predicted_positions: int, heads: tuple[str, ...]) -> tuple[Tower, ...]:
    """BERT's encoder tower with two embedding tables (word, position) and no pooler classifier."""
    (tower,) = bert.towers(cfg, seq_len, predicted_positions=predicted_positions, heads=heads)
    return (dataclasses.replace(tower, embedding_tables=2, pooler_classes=0),)


# ------------------------------------------------------------------------------ start from a BERT teacher


def params_from(parent: str, parent_cfg: bert.Config, params: dict, cfg: Config) -> tuple[Config, dict]:
    """A student initialised from a BERT teacher (Sanh et al. §3 "Student initialization": "taking one layer out
    of two"): layers 0, 2, 4, … of the teacher become the student's `cfg.num_layers` layers.

    The word and position embeddings, the embedding LayerNorm and the MLM head are copied (as the reference
    `extract_distilbert.py` does). The token-type table is dropped; its row 0, which BERT adds to every token of
    a single-segment input, is folded into the position table, so that on segment-0 inputs the student's
    embedding output equals the teacher's exactly.

    Args:
      parent: the teacher's family (must be `bert`).
      parent_cfg: the teacher's `bert.Config`.
      params: the teacher's `BertForPreTraining` params (per-layer params stacked on a leading `[L, …]` axis).
      cfg: the requested student Config; only its `num_layers` (and runtime fields) are used: width, heads,
        vocabulary and positions are the teacher's.

    Returns:
      `(student Config, student params)` with `DistilBertForMaskedLM`'s tree.

    Raises:
      ValueError: a teacher of another family, or one with fewer than `2·num_layers − 1` layers.
    """
    if parent != "bert":
        raise ValueError(f"model.init_from holds a {parent!r} model; a DistilBERT student starts from a BERT teacher "
                         f"(Sanh et al. §3): pass a BERT run or checkpoint.")
    n = cfg.num_layers
    if 2 * (n - 1) >= parent_cfg.num_layers:
        raise ValueError(f"model.num_layers={n} needs a teacher of at least {2 * n - 1} layers (one layer out of two, "
                         f"§3) but the BERT teacher has {parent_cfg.num_layers}; use model.num_layers="
                         f"{(parent_cfg.num_layers + 1) // 2} or a deeper teacher.")
    fields = {f.name: getattr(parent_cfg, f.name) for f in dataclasses.fields(Config)}
    student_cfg = dataclasses.replace(Config(**fields), num_layers=n, **cfg.runtime()).validate()

    teacher = params["bert"]
    emb = teacher["embeddings"]
    every_other = np.arange(0, 2 * n, 2)
    student = {
        "distilbert": {
            "embeddings": {
                "word_embeddings": emb["word_embeddings"],
                "position_embeddings": {"embedding": np.asarray(emb["position_embeddings"]["embedding"])
                                        + np.asarray(emb["token_type_embeddings"]["embedding"])[0]},
                "layer_norm": emb["layer_norm"],
            },
            "encoder": jax.tree.map(lambda x: np.asarray(x)[every_other], teacher["encoder"]),
        },
        "mlm_head": params["mlm_head"],
    }
    return student_cfg, student


# ---------------------------------------------------------------------------------------- HF name map
# Layouts as in bert.py: "linear" ([out, in] → [in, out]), "linear_in_heads" ([H*K, D] → [D, H, K]), "bias_heads"
# ([H*K] → [H, K]), "linear_out_heads" ([D, H*K] → [H, K, D]).

_LAYER = "encoder/stack/layers/block"
HF_ENCODER_MAP: dict[str, tuple[str, str]] = {
    "embeddings/word_embeddings/embedding": ("embeddings.word_embeddings.weight", "embed"),
    "embeddings/position_embeddings/embedding": ("embeddings.position_embeddings.weight", "embed"),
    "embeddings/layer_norm/scale": ("embeddings.LayerNorm.weight", "vector"),
    "embeddings/layer_norm/bias": ("embeddings.LayerNorm.bias", "vector"),
    f"{_LAYER}/attention/query/kernel": ("transformer.layer.{L}.attention.q_lin.weight", "linear_in_heads"),
    f"{_LAYER}/attention/query/bias": ("transformer.layer.{L}.attention.q_lin.bias", "bias_heads"),
    f"{_LAYER}/attention/key/kernel": ("transformer.layer.{L}.attention.k_lin.weight", "linear_in_heads"),
    f"{_LAYER}/attention/key/bias": ("transformer.layer.{L}.attention.k_lin.bias", "bias_heads"),
    f"{_LAYER}/attention/value/kernel": ("transformer.layer.{L}.attention.v_lin.weight", "linear_in_heads"),
    f"{_LAYER}/attention/value/bias": ("transformer.layer.{L}.attention.v_lin.bias", "bias_heads"),
    f"{_LAYER}/attention/out/kernel": ("transformer.layer.{L}.attention.out_lin.weight", "linear_out_heads"),
    f"{_LAYER}/attention/out/bias": ("transformer.layer.{L}.attention.out_lin.bias", "vector"),
    f"{_LAYER}/attention_norm/scale": ("transformer.layer.{L}.sa_layer_norm.weight", "vector"),
    f"{_LAYER}/attention_norm/bias": ("transformer.layer.{L}.sa_layer_norm.bias", "vector"),
    f"{_LAYER}/mlp/wi/kernel": ("transformer.layer.{L}.ffn.lin1.weight", "linear"),
    f"{_LAYER}/mlp/wi/bias": ("transformer.layer.{L}.ffn.lin1.bias", "vector"),
    f"{_LAYER}/mlp/wo/kernel": ("transformer.layer.{L}.ffn.lin2.weight", "linear"),
    f"{_LAYER}/mlp/wo/bias": ("transformer.layer.{L}.ffn.lin2.bias", "vector"),
    f"{_LAYER}/mlp_norm/scale": ("transformer.layer.{L}.output_layer_norm.weight", "vector"),
    f"{_LAYER}/mlp_norm/bias": ("transformer.layer.{L}.output_layer_norm.bias", "vector"),
}

HF_NAME_MAP: dict[str, tuple[str, str]] = {
    **{f"distilbert/{k}": (f"distilbert.{v}", kind) for k, (v, kind) in HF_ENCODER_MAP.items()},
    "mlm_head/transform/kernel": ("vocab_transform.weight", "linear"),
    "mlm_head/transform/bias": ("vocab_transform.bias", "vector"),
    "mlm_head/layer_norm/scale": ("vocab_layer_norm.weight", "vector"),
    "mlm_head/layer_norm/bias": ("vocab_layer_norm.bias", "vector"),
    "mlm_head/bias": ("vocab_projector.bias", "vector"),
}
HF_ARCHITECTURE = "DistilBertForMaskedLM"
HF_MODEL_TYPE = "distilbert"
HF_BASE_PREFIX = "distilbert"
# transformers' `_tied_weights_keys` (copy → source); the projector's bias is its own tensor.
HF_TIED_WEIGHTS: dict[str, str] = {"vocab_projector.weight": "distilbert.embeddings.word_embeddings.weight"}
HF_IGNORED: tuple[str, ...] = (r"(^|\.)embeddings\.position_ids$",)
# What a checkpoint may lack (a bare `DistilBertModel`): initialised freshly and reported.
HF_INIT_IF_MISSING: tuple[str, ...] = ("mlm_head/",)


def config_from_hf(hf: dict[str, Any]) -> Config:
    """Our Config from a Hugging Face `DistilBertConfig` dict.

    `sinusoidal_pos_embds=True` loads as it is: the sinusoids are saved in the position table, which the forward
    pass reads like a learned one.

    Raises:
      ValueError: an untied output projection, which this model does not implement.
    """
    if hf.get("tie_word_embeddings", True) is False:
        raise ValueError("tie_word_embeddings=false: our DistilBERT ties vocab_projector to the word embeddings.")
    return Config(
        vocab_size=hf["vocab_size"], hidden_size=hf["dim"], num_layers=hf["n_layers"], num_heads=hf["n_heads"],
        intermediate_size=hf["hidden_dim"], max_position_embeddings=hf["max_position_embeddings"],
        hidden_act=hf.get("activation", "gelu"), hidden_dropout=hf.get("dropout", 0.1),
        attention_dropout=hf.get("attention_dropout", 0.1), initializer_range=hf.get("initializer_range", 0.02),
        pad_token_id=hf.get("pad_token_id") or 0,
    ).validate()


def config_to_hf(cfg: Config) -> dict[str, Any]:
    """A Hugging Face `DistilBertConfig` dict for our Config (learned positions: `sinusoidal_pos_embds=False`)."""
    if cfg.layer_norm_eps != 1e-12:
        raise ValueError(f"model.layer_norm_eps={cfg.layer_norm_eps}: Hugging Face's DistilBERT fixes 1e-12, so this "
                         "model cannot be written in its format.")
    return {
        "model_type": HF_MODEL_TYPE, "architectures": [HF_ARCHITECTURE], "vocab_size": cfg.vocab_size,
        "dim": cfg.hidden_size, "n_layers": cfg.num_layers, "n_heads": cfg.num_heads, "hidden_dim": cfg.intermediate_size,
        "max_position_embeddings": cfg.max_position_embeddings, "sinusoidal_pos_embds": False,
        "activation": cfg.hidden_act, "dropout": cfg.hidden_dropout, "attention_dropout": cfg.attention_dropout,
        "initializer_range": cfg.initializer_range, "pad_token_id": cfg.pad_token_id, "tie_word_embeddings": True,
    }
