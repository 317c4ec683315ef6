"""BERT (Devlin et al., 2019, "BERT: Pre-training of Deep Bidirectional Transformers").

Post-LN Transformer encoder (Vaswani et al. 2017) with learned absolute positions and token-type
(segment) embeddings; a tanh pooler over `[CLS]`; pretraining heads for masked-LM (transform + LayerNorm +
decoder tied to the word embeddings, §3.1 Task #1) and next-sentence prediction (§3.1 Task #2).

Parameter layout and numerics follow Hugging Face `BertForPreTraining`; `HF_NAME_MAP` maps the names.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from llm_jax.data.tokenizer import BERT_TOKENIZER
from llm_jax.flops import Tower
from llm_jax.layers import (Einsum, Embed, LayerNorm, Mlp, MultiHeadAttention, Stack,
                            activation, padding_mask)
from llm_jax.models.family import CommonConfig, InputFormat
from llm_jax.sharding import BATCH, EMBED, SEQ, VOCAB, P_EMBED, P_VOCAB, shard

# --------------------------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class Config(CommonConfig):
    """BERT hyperparameters (names as in Hugging Face `BertConfig`); runtime fields from `CommonConfig`."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def embed_dim(self) -> int:
        """E, the width of the embedding tables: D here; ALBERT and ELECTRA factorise it (E → D projection)."""
        return self.hidden_size

    @property
    def width(self) -> int:
        """D, the width the fine-tuning heads read."""
        return self.hidden_size

    @property
    def num_token_types(self) -> int:
        """Segment (token-type) ids the embeddings accept: pair inputs use 0/1 when ≥ 2."""
        return self.type_vocab_size

    def with_vocabulary(self, vocab_size: int, special) -> "Config":
        """This Config sized for a tokenizer: its vocabulary and padding id (`special`: `SpecialIds`)."""
        return dataclasses.replace(self, vocab_size=vocab_size, pad_token_id=special.pad).validate()

    @property
    def max_seq_len(self) -> int:
        """The longest input the position table allows."""
        return self.max_position_embeddings

    def validate(self) -> "Config":
        if self.hidden_size % self.num_heads:
            raise ValueError(f"model.hidden_size={self.hidden_size} is not divisible by model.num_heads="
                             f"{self.num_heads}; pick a head count that divides the width.")
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                     "max_position_embeddings", "type_vocab_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be ≥ 1 (got {getattr(self, name)}).")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"model.pad_token_id={self.pad_token_id} is outside the vocabulary [0, {self.vocab_size}).")
        activation(self.hidden_act)
        self.validate_runtime()
        return self


# Devlin et al. 2019 §3 (base, large); Turc et al. 2019 "Well-Read Students Learn Better" (tiny … medium).
PRESETS: dict[str, Config] = {
    "bert-base": Config(),
    "bert-large": Config(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096),
    "bert-medium": Config(hidden_size=512, num_layers=8, num_heads=8, intermediate_size=2048),
    "bert-small": Config(hidden_size=512, num_layers=4, num_heads=8, intermediate_size=2048),
    "bert-mini": Config(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024),
    "bert-tiny": Config(hidden_size=128, num_layers=2, num_heads=2, intermediate_size=512),
}

# ---------------------------------------------------------------------------------------------- modules


@flax.struct.dataclass
class Output:
    """What `BertForPreTraining` returns.

    `mlm_logits_BTV` covers every position, or only the P gathered `mlm_positions_BP` when those are given
    (then it is `[B, P, V]`: the original implementation's gather before the output layer).
    """

    hidden_BTD: jax.Array
    pooled_BD: jax.Array | None = None
    mlm_logits_BTV: jax.Array | None = None
    nsp_logits_B2: jax.Array | None = None
    all_hidden_LBTD: jax.Array | None = None


def _init(cfg: Config):
    return nn.initializers.normal(cfg.initializer_range)


class Embeddings(nn.Module):
    """word + position + token-type embeddings → LayerNorm → dropout (BERT §3, Figure 2), all `cfg.embed_dim` (E)
    wide: D for BERT, the factorized width for ALBERT and ELECTRA."""

    cfg: Config

    def setup(self):
        cfg = self.cfg
        dtype = jnp.dtype(cfg.dtype)
        e = cfg.embed_dim
        self.word_embeddings = Embed(cfg.vocab_size, e, (P_VOCAB, P_EMBED), _init(cfg), dtype,
                                     field="token ids (model.vocab_size)")
        self.position_embeddings = Embed(cfg.max_position_embeddings, e, (None, P_EMBED), _init(cfg),
                                         dtype, field="position ids (model.max_position_embeddings)")
        self.token_type_embeddings = Embed(cfg.type_vocab_size, e, (None, P_EMBED), _init(cfg), dtype,
                                           field="token type (segment) ids (model.type_vocab_size)")
        self.layer_norm = LayerNorm(cfg.layer_norm_eps, dtype=dtype)
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def __call__(self, tokens_BT, segment_ids_BT, positions_BT, deterministic: bool):
        """`[B, T]` ids → `[B, T, E]`."""
        x_BTE = (self.word_embeddings(tokens_BT) + self.position_embeddings(positions_BT)
                 + self.token_type_embeddings(segment_ids_BT))
        x_BTE = self.dropout(self.layer_norm(x_BTE), deterministic=deterministic)
        return shard(x_BTE, BATCH, SEQ, EMBED)


class Layer(nn.Module):
    """One post-LN encoder layer: `LN(x + Attn(x))`, then `LN(h + FFN(h))` (Vaswani et al. §3.1)."""

    cfg: Config
    deterministic: bool = True

    @nn.compact
    def __call__(self, x_BTD, mask_BHTS):
        cfg = self.cfg
        dtype = jnp.dtype(cfg.dtype)
        det = self.deterministic
        h_BTD = MultiHeadAttention(cfg.num_heads, cfg.head_dim, dropout_rate=cfg.attention_dropout,
                                   implementation=cfg.attention_impl, kernel_init=_init(cfg), dtype=dtype,
                                   name="attention")(
            x_BTD, mask_BHTS=mask_BHTS, deterministic=det)
        h_BTD = nn.Dropout(cfg.hidden_dropout)(h_BTD, deterministic=det)
        x_BTD = LayerNorm(cfg.layer_norm_eps, dtype=dtype, name="attention_norm")(x_BTD + h_BTD)
        h_BTD = Mlp(cfg.intermediate_size, act=cfg.hidden_act, kernel_init=_init(cfg), dtype=dtype, name="mlp")(x_BTD)
        h_BTD = nn.Dropout(cfg.hidden_dropout)(h_BTD, deterministic=det)
        x_BTD = LayerNorm(cfg.layer_norm_eps, dtype=dtype, name="mlp_norm")(x_BTD + h_BTD)
        return shard(x_BTD, BATCH, SEQ, EMBED)


class Encoder(nn.Module):
    """The stack of `num_layers` layers (scanned; see `llm_jax.layers.Stack`)."""

    cfg: Config
    collect_hidden: bool = False

    @nn.compact
    def __call__(self, x_BTD, mask_BHTS, deterministic: bool):
        out = Stack(Layer, (("cfg", self.cfg), ("deterministic", deterministic)), self.cfg.num_layers,
                    remat=self.cfg.remat, unroll=self.cfg.scan_unroll, collect_hidden=self.collect_hidden,
                    name="stack")(x_BTD, mask_BHTS)
        return out.x, out.hidden_LBTD


class Pooler(nn.Module):
    """tanh(W · h_[CLS] + b): the sentence representation NSP and sequence classifiers use."""

    cfg: Config

    @nn.compact
    def __call__(self, hidden_BTD):
        d = self.cfg.hidden_size
        dense = Einsum("BD,DE->BE", (d, d), (P_EMBED, None), kernel_init=_init(self.cfg),
                       dtype=jnp.dtype(self.cfg.dtype), name="dense")
        return jnp.tanh(dense(hidden_BTD[:, 0]))


class BertModel(nn.Module):
    """Embeddings → encoder (→ pooler). The trunk every BERT-derived head sits on.

    Attributes:
      cfg: hyperparameters.
      add_pooler: build the `[CLS]` pooler (BertForPreTraining yes; RobertaForMaskedLM no).
      collect_hidden: also return every layer's output.
    """

    cfg: Config
    add_pooler: bool = True
    collect_hidden: bool = False

    def setup(self):
        self.embeddings = Embeddings(self.cfg)
        self.encoder = Encoder(self.cfg, collect_hidden=self.collect_hidden)
        if self.add_pooler:
            self.pooler = Pooler(self.cfg)

    def embed(self, tokens_BT, *, segment_ids_BT=None, positions_BT=None, deterministic=True):
        """The embeddings' output `[B, T, E]` for `[B, T]` ids (segment 0 and positions 0 … T−1 by default).

        Raises:
          ValueError: T longer than the position table.
        """
        b, t = tokens_BT.shape
        if t > self.cfg.max_seq_len:
            raise ValueError(f"Sequence length {t} exceeds the {self.cfg.max_seq_len} positions of "
                             f"model.max_position_embeddings={self.cfg.max_position_embeddings}; shorten data.seq_len.")
        if segment_ids_BT is None:
            segment_ids_BT = jnp.zeros((b, t), jnp.int32)
        if positions_BT is None:
            positions_BT = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
        return self.embeddings(tokens_BT, segment_ids_BT, positions_BT, deterministic)

    def __call__(self, tokens_BT, *, segment_ids_BT=None, positions_BT=None, mask_BT=None, deterministic=True):
        mask_BHTS = None if mask_BT is None else padding_mask(mask_BT)
        x_BTD = self.embed(tokens_BT, segment_ids_BT=segment_ids_BT, positions_BT=positions_BT,
                           deterministic=deterministic)
        hidden_BTD, all_hidden = self.encoder(x_BTD, mask_BHTS, deterministic)
        pooled_BD = self.pooler(hidden_BTD) if self.add_pooler else None
        return self.output_cls(hidden_BTD=hidden_BTD, pooled_BD=pooled_BD, all_hidden_LBTD=all_hidden)

    # The output dataclass; a child family whose heads add fields (ALBERT's SOP logits) names its own.
    output_cls = Output

    def attend(self, x_BTD):
        """Tied output projection onto the vocabulary (used by the MLM head)."""
        return self.embeddings.word_embeddings.attend(x_BTD)


# ------------------------------------------------------------------------------------------------ heads


class MlmHead(nn.Module):
    """transform (dense + act + LayerNorm) → tied decoder + output bias (BERT's `cls.predictions`).

    Attributes:
      cfg: hyperparameters.
      act: the transform's activation; None means `cfg.hidden_act` (BERT). RoBERTa fixes it to exact GELU.
    """

    cfg: Config
    act: str | None = None

    @nn.compact
    def __call__(self, hidden_BTD, attend):
        cfg = self.cfg
        dtype = jnp.dtype(cfg.dtype)
        d = cfg.hidden_size
        h_BTD = Einsum("BTD,DE->BTE", (d, d), (P_EMBED, None), kernel_init=_init(cfg), dtype=dtype,
                       name="transform")(hidden_BTD)
        act = activation(cfg.hidden_act if self.act is None else self.act)
        h_BTD = LayerNorm(cfg.layer_norm_eps, dtype=dtype, name="layer_norm")(act(h_BTD))
        bias_V = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, (P_VOCAB,)),
                            (cfg.vocab_size,), jnp.float32)
        # Why f32: the loss's log-softmax over V needs full-precision logits. The constraint splits the vocabulary
        # over `tensor` under fsdp_tp, as the tied table is.
        return shard(attend(h_BTD).astype(jnp.float32) + bias_V, BATCH, SEQ, VOCAB)


def gather_positions(x_BTD: jax.Array, positions_BP: jax.Array) -> jax.Array:
    """Rows `positions_BP` of each sequence: `[B, P, D]`."""
    return jnp.take_along_axis(x_BTD, positions_BP[..., None].astype(jnp.int32), axis=1)


class BertForPreTraining(nn.Module):
    """BERT trunk + MLM head + NSP head (the pretraining model, Devlin et al. §3.1)."""

    cfg: Config
    collect_hidden: bool = False

    def setup(self):
        self.bert = BertModel(self.cfg, add_pooler=True, collect_hidden=self.collect_hidden)
        self.mlm_head = MlmHead(self.cfg)
        self.nsp_head = Einsum("BD,DC->BC", (self.cfg.hidden_size, 2), (P_EMBED, None),
                               kernel_init=_init(self.cfg), dtype=jnp.dtype(self.cfg.dtype))

    def __call__(self, tokens_BT, *, segment_ids_BT=None, positions_BT=None, mask_BT=None,
                 mlm_positions_BP=None, deterministic=True) -> Output:
        out = self.bert(tokens_BT, segment_ids_BT=segment_ids_BT, positions_BT=positions_BT, mask_BT=mask_BT,
                        deterministic=deterministic)
        h_BTD = out.hidden_BTD if mlm_positions_BP is None else gather_positions(out.hidden_BTD, mlm_positions_BP)
        return out.replace(mlm_logits_BTV=self.mlm_head(h_BTD, self.bert.attend),
                           nsp_logits_B2=self.nsp_head(out.pooled_BD).astype(jnp.float32))


# ------------------------------------------------------------------------------------- family contract
# (llm_jax/models/family.py)

NAME = "bert"
PRETRAINING_MODEL = BertForPreTraining
DEFAULT_OBJECTIVE = "mlm_nsp"
LM_KIND = "masked"
# Uncased WordPiece with [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4 and `[CLS] A [SEP] B [SEP]` inputs (§3).
TOKENIZER = BERT_TOKENIZER
INPUT_FORMAT = InputFormat(pad_side="right")
TRUNK_NAME = "bert"
# Neuron pruning (`llm_jax.compression.pruning`): FFN width field → the FFN (`Mlp`) modules of that width.
FFN_BLOCKS = {"intermediate_size": ("bert/encoder/stack/layers/block/mlp",)}
# Task kinds whose sequence head reads the pooled [CLS] vector (BERT §4.1, §4.4).
POOLED_KINDS = ("classification", "regression", "multiple_choice")


def build_trunk(cfg: Config, kind: str, **kwargs) -> BertModel:
    """The encoder a fine-tuning head of `kind` sits on; with the pooler where the head reads it."""
    return BertModel(cfg, add_pooler=kind in POOLED_KINDS, **kwargs)


# The input token embedding inside the trunk's params (static word vectors for the bias tests).
TOKEN_EMBEDDING = ("embeddings", "word_embeddings", "embedding")


def pooled_features(cfg: Config, trunk_out: Output) -> jax.Array:
    """The pretrained pooler's output tanh(W · h_[CLS] + b) `[B, D]`: what `sequence_head` feeds its new layer."""
    del cfg
    return trunk_out.pooled_BD


def first_token_features(cfg, trunk_out) -> jax.Array:
    """The first token's last-layer state `[B, D]` (`<s>`/`[CLS]`): what a classifier whose layers are all new
    reads (RoBERTa, ELECTRA, DistilBERT)."""
    del cfg
    return trunk_out.hidden_BTD[:, 0]


def dense(cfg: Config, eqn: str, d_in: int, d_out: int, name: str) -> Einsum:
    """A classifier layer initialised as HF's `_init_weights` does: normal(initializer_range), zero bias."""
    return Einsum(eqn, (d_in, d_out), (P_EMBED, None), kernel_init=_init(cfg), dtype=jnp.dtype(cfg.dtype), name=name)


def sequence_head(cfg: Config, trunk_out: Output, *, kind: str, num_outputs: int, dropout: float,
                  deterministic: bool) -> jax.Array:
    """BERT §4.1: dropout on the pooled [CLS] vector, then one dense layer (HF `BertForSequenceClassification`,
    and `BertForMultipleChoice` with one output per choice). Called inside the parent's compact method.

    Returns:
      `[B, num_outputs]` logits.
    """
    del kind  # every sequence kind reads the pooler
    x_BD = nn.Dropout(dropout)(trunk_out.pooled_BD, deterministic=deterministic)
    return dense(cfg, "BD,DC->BC", cfg.hidden_size, num_outputs, "classifier")(x_BD)


def towers(cfg: Config, seq_len: int, *, predicted_positions: int, heads: tuple[str, ...]) -> tuple[Tower, ...]:
    """One encoder; MLM over the P gathered positions; NSP on the pooler when the objective reads it.

    The model always builds the NSP head, but a loss that does not read it lets XLA drop the pooler, so the
    objective's `heads` decide.
    """
    if seq_len > cfg.max_position_embeddings:
        raise ValueError(f"seq_len={seq_len} exceeds model.max_position_embeddings={cfg.max_position_embeddings}.")
    return (Tower(
        num_layers=cfg.num_layers, d_model=cfg.hidden_size, num_heads=cfg.num_heads, head_dim=cfg.head_dim,
        d_ff=cfg.intermediate_size, vocab_size=cfg.vocab_size, seq_len=seq_len, embedding_tables=3,
        lm_positions=min(predicted_positions, seq_len), lm_transform=True,
        pooler_classes=2 if "nsp" in heads else 0),)


# ---------------------------------------------------------------------------------------- HF name map
# Our param path → Hugging Face name ("{L}": the layer index; our param stacks the layers on a leading axis) and
# layout kind: "embed" / "vector" (same layout), "linear" (torch [out, in] → our [in, out]), "linear_in_heads"
# ([H*K, D] → [D, H, K]), "bias_heads" ([H*K] → [H, K]), "linear_out_heads" ([D, H*K] → [H, K, D]).
# The reader/writer in llm_jax.interop (state_dict.py) applies these.

HF_ENCODER_MAP: dict[str, tuple[str, str]] = {
    "embeddings/word_embeddings/embedding": ("embeddings.word_embeddings.weight", "embed"),
    "embeddings/position_embeddings/embedding": ("embeddings.position_embeddings.weight", "embed"),
    "embeddings/token_type_embeddings/embedding": ("embeddings.token_type_embeddings.weight", "embed"),
    "embeddings/layer_norm/scale": ("embeddings.LayerNorm.weight", "vector"),
    "embeddings/layer_norm/bias": ("embeddings.LayerNorm.bias", "vector"),
    "encoder/stack/layers/block/attention/query/kernel": ("encoder.layer.{L}.attention.self.query.weight", "linear_in_heads"),
    "encoder/stack/layers/block/attention/query/bias": ("encoder.layer.{L}.attention.self.query.bias", "bias_heads"),
    "encoder/stack/layers/block/attention/key/kernel": ("encoder.layer.{L}.attention.self.key.weight", "linear_in_heads"),
    "encoder/stack/layers/block/attention/key/bias": ("encoder.layer.{L}.attention.self.key.bias", "bias_heads"),
    "encoder/stack/layers/block/attention/value/kernel": ("encoder.layer.{L}.attention.self.value.weight", "linear_in_heads"),
    "encoder/stack/layers/block/attention/value/bias": ("encoder.layer.{L}.attention.self.value.bias", "bias_heads"),
    "encoder/stack/layers/block/attention/out/kernel": ("encoder.layer.{L}.attention.output.dense.weight", "linear_out_heads"),
    "encoder/stack/layers/block/attention/out/bias": ("encoder.layer.{L}.attention.output.dense.bias", "vector"),
    "encoder/stack/layers/block/attention_norm/scale": ("encoder.layer.{L}.attention.output.LayerNorm.weight", "vector"),
    "encoder/stack/layers/block/attention_norm/bias": ("encoder.layer.{L}.attention.output.LayerNorm.bias", "vector"),
    "encoder/stack/layers/block/mlp/wi/kernel": ("encoder.layer.{L}.intermediate.dense.weight", "linear"),
    "encoder/stack/layers/block/mlp/wi/bias": ("encoder.layer.{L}.intermediate.dense.bias", "vector"),
    "encoder/stack/layers/block/mlp/wo/kernel": ("encoder.layer.{L}.output.dense.weight", "linear"),
    "encoder/stack/layers/block/mlp/wo/bias": ("encoder.layer.{L}.output.dense.bias", "vector"),
    "encoder/stack/layers/block/mlp_norm/scale": ("encoder.layer.{L}.output.LayerNorm.weight", "vector"),
    "encoder/stack/layers/block/mlp_norm/bias": ("encoder.layer.{L}.output.LayerNorm.bias", "vector"),
}

HF_NAME_MAP: dict[str, tuple[str, str]] = {
    **{f"bert/{k}": (f"bert.{v}", kind) for k, (v, kind) in HF_ENCODER_MAP.items()},
    "bert/pooler/dense/kernel": ("bert.pooler.dense.weight", "linear"),
    "bert/pooler/dense/bias": ("bert.pooler.dense.bias", "vector"),
    "mlm_head/transform/kernel": ("cls.predictions.transform.dense.weight", "linear"),
    "mlm_head/transform/bias": ("cls.predictions.transform.dense.bias", "vector"),
    "mlm_head/layer_norm/scale": ("cls.predictions.transform.LayerNorm.weight", "vector"),
    "mlm_head/layer_norm/bias": ("cls.predictions.transform.LayerNorm.bias", "vector"),
    "mlm_head/bias": ("cls.predictions.bias", "vector"),
    "nsp_head/kernel": ("cls.seq_relationship.weight", "linear"),
    "nsp_head/bias": ("cls.seq_relationship.bias", "vector"),
}
HF_ARCHITECTURE = "BertForPreTraining"
HF_MODEL_TYPE = "bert"
# transformers' `base_model_prefix`: a bare `BertModel` checkpoint names its tensors without it.
HF_BASE_PREFIX = "bert"
# transformers' `_tied_weights_keys` (copy → source): `save_pretrained` leaves the copies out.
HF_TIED_WEIGHTS: dict[str, str] = {
    "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}
# Index buffers that older checkpoints saved; we compute them.
HF_IGNORED: tuple[str, ...] = (r"(^|\.)embeddings\.position_ids$", r"(^|\.)embeddings\.token_type_ids$")
# What a checkpoint may lack (a bare `BertModel`, one saved without pooler): initialised freshly and reported.
HF_INIT_IF_MISSING: tuple[str, ...] = ("bert/pooler/", "mlm_head/", "nsp_head/")


def config_from_hf(hf: dict[str, Any]) -> Config:
    """Our Config from a Hugging Face `config.json` dict.

    Raises:
      ValueError: settings that change the computation in ways this model does not implement (relative
        position embeddings, a causal decoder, an untied output projection), rather than load them wrongly.
    """
    position_type = hf.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise ValueError(f"position_embedding_type={position_type!r} is not supported: our BERT-family encoder "
                         f"uses absolute learned positions only.")
    if hf.get("is_decoder") or hf.get("add_cross_attention"):
        raise ValueError("is_decoder / add_cross_attention is set: that is a causal BERT decoder (BertLMHeadModel); "
                         "our BERT-family encoder is bidirectional.")
    if hf.get("tie_word_embeddings", True) is False:
        raise ValueError("tie_word_embeddings=false: our BERT-family models always tie the MLM decoder to the word "
                         "embeddings.")
    return Config(
        vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"], num_layers=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"], intermediate_size=hf["intermediate_size"],
        max_position_embeddings=hf["max_position_embeddings"], type_vocab_size=hf.get("type_vocab_size", 2),
        hidden_act=hf.get("hidden_act", "gelu"), layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
        hidden_dropout=hf.get("hidden_dropout_prob", 0.1), attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
        initializer_range=hf.get("initializer_range", 0.02), pad_token_id=hf.get("pad_token_id") or 0,
    ).validate()


def config_to_hf(cfg: Config) -> dict[str, Any]:
    """A Hugging Face `config.json` dict for our Config."""
    return {
        "model_type": HF_MODEL_TYPE, "architectures": [HF_ARCHITECTURE], "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.intermediate_size, "max_position_embeddings": cfg.max_position_embeddings,
        "type_vocab_size": cfg.type_vocab_size, "hidden_act": cfg.hidden_act, "layer_norm_eps": cfg.layer_norm_eps,
        "hidden_dropout_prob": cfg.hidden_dropout, "attention_probs_dropout_prob": cfg.attention_dropout,
        "initializer_range": cfg.initializer_range, "pad_token_id": cfg.pad_token_id,
    }
