"""ALBERT (Lan et al., 2020, "ALBERT: A Lite BERT for Self-supervised Learning of Language Representations").

Builds on BERT: the same post-LN encoder layer (`bert.Layer`), pooler and token types. What differs (paper §3.1,
Hugging Face `AlbertForPreTraining`):

* **factorized embedding parameterization** (§3.1): the vocabulary is embedded at width E (128) and projected to
  the model width D by one dense layer (HF `embedding_hidden_mapping_in`), so the table costs V·E + E·D instead
  of V·D; position and token-type tables and the embedding LayerNorm are E wide too;
* **cross-layer parameter sharing** (§3.1): one layer's params applied L times (`llm_jax.layers.Stack(shared=True)`;
  HF `num_hidden_groups = inner_group_num = 1`, the only setting the paper trains and the only one we load);
* the MLM head works in E: dense D → E + activation + LayerNorm(E) + decoder tied to the E-wide word embeddings +
  output bias;
* **sentence-order prediction** (§3.2) replaces NSP: a 2-way classifier on the pooler (HF `sop_classifier`, with
  dropout `classifier_dropout_prob` before it); the objective is `llm_jax.objectives.mlm_sop`;
* vocabulary: a 30,000-piece SentencePiece Unigram model (§4.1), `[CLS] A [SEP] B [SEP]` inputs.

v1 and v2 checkpoints have the same shapes; v2 (the presets) trains with `gelu_new` and no dropout (the v2 README:
"no dropout", longer training), v1 with exact `gelu` and dropout 0.1 (0 for xxlarge).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from llm_jax.data.tokenizer import ALBERT_TOKENIZER
from llm_jax.flops import Tower
from llm_jax.layers import Einsum, LayerNorm, Stack, activation
from llm_jax.models import bert
from llm_jax.sharding import BATCH, EMBED, SEQ, VOCAB, P_EMBED, P_VOCAB, shard

# --------------------------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class Config(bert.Config):
    """ALBERT hyperparameters: BERT's fields (HF names) plus the embedding width E and the SOP head's dropout.

    Attributes:
      embedding_size: E, the width of the factorized embeddings (§3.1; 128 in every published model).
      classifier_dropout_prob: dropout on the pooled vector before the SOP classifier (HF `AlbertSOPHead`).
    """

    vocab_size: int = 30000
    embedding_size: int = 128
    hidden_act: str = "gelu_new"
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    classifier_dropout_prob: float = 0.1

    @property
    def embed_dim(self) -> int:
        """E."""
        return self.embedding_size

    def validate(self) -> "Config":
        super().validate()
        if self.embedding_size < 1:
            raise ValueError(f"model.embedding_size must be ≥ 1 (got {self.embedding_size}).")
        if not 0.0 <= self.classifier_dropout_prob < 1.0:
            raise ValueError(f"model.classifier_dropout_prob={self.classifier_dropout_prob} must be in [0, 1).")
        return self


# Lan et al. 2020 Table 1 (base … xxlarge; V=30000, E=128) with the v2 settings (gelu_new, no dropout; the v2
# checkpoints' configs). v1 differs only in `hidden_act="gelu"` and dropout 0.1 (xxlarge: 0): same parameters.
# tiny / mini are CPU shapes (Turc et al.'s widths with a smaller E).
PRESETS: dict[str, Config] = {
    "albert-base": Config(),
    "albert-large": Config(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096),
    "albert-xlarge": Config(hidden_size=2048, num_layers=24, num_heads=16, intermediate_size=8192),
    "albert-xxlarge": Config(hidden_size=4096, num_layers=12, num_heads=64, intermediate_size=16384),
    "albert-mini": Config(embedding_size=128, hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024),
    "albert-tiny": Config(embedding_size=64, hidden_size=128, num_layers=2, num_heads=2, intermediate_size=512),
}

# ---------------------------------------------------------------------------------------------- modules


@flax.struct.dataclass
class Output:
    """What `AlbertForPreTraining` returns (`mlm_logits_BTV` is `[B, P, V]` when `mlm_positions_BP` is given)."""

    hidden_BTD: jax.Array
    pooled_BD: jax.Array | None = None
    mlm_logits_BTV: jax.Array | None = None
    sop_logits_B2: jax.Array | None = None
    all_hidden_LBTD: jax.Array | None = None


def _init(cfg: Config):
    return nn.initializers.normal(cfg.initializer_range)


class Embeddings(bert.Embeddings):
    """BERT's embeddings of width E (`cfg.embed_dim`: word, position, token type → LayerNorm(E) → dropout), then a
    dense E → D projection (§3.1).

    HF keeps the E → D projection in its encoder (`embedding_hidden_mapping_in`); here it belongs to the
    embeddings, which it is part of, so that layer-wise LR decay (which reads depth 0 from the `embeddings`
    scope) gives it the embeddings' rate rather than the head's.
    """

    cfg: Config

    def setup(self):
        super().setup()
        cfg = self.cfg
        self.projection = Einsum("BTE,ED->BTD", (cfg.embedding_size, cfg.hidden_size), (None, P_EMBED),
                                 kernel_init=_init(cfg), dtype=jnp.dtype(cfg.dtype))

    def __call__(self, tokens_BT, segment_ids_BT, positions_BT, deterministic: bool):
        """`[B, T]` ids → `[B, T, D]`."""
        x_BTE = super().__call__(tokens_BT, segment_ids_BT, positions_BT, deterministic)
        return shard(self.projection(x_BTE), BATCH, SEQ, EMBED)


class Encoder(nn.Module):
    """One `bert.Layer` applied L times (§3.1).

    The shared layer's params carry no logical `layers` axis (one copy serves every depth), so layer-wise LR
    decay gives them a single factor (`llm_jax.train.optim.layer_depth_factors`) and never reads another axis
    (heads) as depth.
    """

    cfg: Config
    collect_hidden: bool = False

    @nn.compact
    def __call__(self, x_BTD, mask_BHTS, deterministic: bool):
        """`[B, T, D]` → (`[B, T, D]`, every layer's output `[L, B, T, D]` or None)."""
        cfg = self.cfg
        out = Stack(bert.Layer, (("cfg", cfg), ("deterministic", deterministic)), cfg.num_layers, remat=cfg.remat,
                    unroll=cfg.scan_unroll, shared=True, collect_hidden=self.collect_hidden, name="stack")(
            x_BTD, mask_BHTS)
        return out.x, out.hidden_LBTD


class AlbertModel(bert.BertModel):
    """Embeddings (E, projected to D) → shared encoder (→ pooler): the trunk (HF `AlbertModel`).

    BERT's trunk (`bert.BertModel`: the same call, pooler and tied `attend`, here onto the E-wide word
    embeddings) with ALBERT's embeddings and shared encoder.

    Attributes:
      cfg: hyperparameters.
      add_pooler: build the `[CLS]` pooler (SOP and the sequence classifiers read it).
      collect_hidden: also return every layer's output.
    """

    cfg: Config
    output_cls = Output

    def setup(self):
        self.embeddings = Embeddings(self.cfg)
        self.encoder = Encoder(self.cfg, collect_hidden=self.collect_hidden)
        if self.add_pooler:
            self.pooler = bert.Pooler(self.cfg)


# ------------------------------------------------------------------------------------------------ heads


class MlmHead(nn.Module):
    """dense D → E + activation + LayerNorm(E) → decoder tied to the E-wide word embeddings + bias (HF
    `AlbertMLMHead`; ELECTRA's generator head `generator_predictions` + `generator_lm_head` has the same shape).

    Attributes:
      cfg: hyperparameters (D = `hidden_size`, E = `embedding_size`).
      act: the transform's activation; None means `cfg.hidden_act` (ALBERT). ELECTRA's generator fixes exact GELU.
    """

    cfg: Config
    act: str | None = None

    @nn.compact
    def __call__(self, hidden_BTD, attend):
        """`[B, T, D]` → f32 logits `[B, T, V]`."""
        cfg = self.cfg
        dtype = jnp.dtype(cfg.dtype)
        h_BTE = Einsum("BTD,DE->BTE", (cfg.hidden_size, cfg.embedding_size), (P_EMBED, None),
                       kernel_init=_init(cfg), dtype=dtype, name="transform")(hidden_BTD)
        act = activation(cfg.hidden_act if self.act is None else self.act)
        h_BTE = LayerNorm(cfg.layer_norm_eps, dtype=dtype, name="layer_norm")(act(h_BTE))
        bias_V = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, (P_VOCAB,)),
                            (cfg.vocab_size,), jnp.float32)
        # Why f32: the loss's log-softmax over V needs full-precision logits.
        return shard(attend(h_BTE).astype(jnp.float32) + bias_V, BATCH, SEQ, VOCAB)


class AlbertForPreTraining(nn.Module):
    """ALBERT trunk + MLM head (in E) + SOP head on the pooler (§3.2; HF `AlbertForPreTraining`)."""

    cfg: Config
    collect_hidden: bool = False

    def setup(self):
        cfg = self.cfg
        self.albert = AlbertModel(cfg, add_pooler=True, collect_hidden=self.collect_hidden)
        self.mlm_head = MlmHead(cfg)
        self.sop_dropout = nn.Dropout(cfg.classifier_dropout_prob)
        self.sop_head = Einsum("BD,DC->BC", (cfg.hidden_size, 2), (P_EMBED, None), kernel_init=_init(cfg),
                               dtype=jnp.dtype(cfg.dtype))

    def __call__(self, tokens_BT, *, segment_ids_BT=None, positions_BT=None, mask_BT=None,
                 mlm_positions_BP=None, deterministic=True) -> Output:
        """`[B, T]` ids → `Output` with `mlm_logits_BTV` (`[B, P, V]` at `mlm_positions_BP`) and `sop_logits_B2`
        (label 1 = the two segments are swapped)."""
        out = self.albert(tokens_BT, segment_ids_BT=segment_ids_BT, positions_BT=positions_BT, mask_BT=mask_BT,
                          deterministic=deterministic)
        h_BTD = out.hidden_BTD if mlm_positions_BP is None else bert.gather_positions(out.hidden_BTD, mlm_positions_BP)
        pooled_BD = self.sop_dropout(out.pooled_BD, deterministic=deterministic)
        return out.replace(mlm_logits_BTV=self.mlm_head(h_BTD, self.albert.attend),
                           sop_logits_B2=self.sop_head(pooled_BD).astype(jnp.float32))


# ------------------------------------------------------------------------------------- family contract
# (llm_jax/models/family.py)

NAME = "albert"
PRETRAINING_MODEL = AlbertForPreTraining
DEFAULT_OBJECTIVE = "mlm_sop"
LM_KIND = "masked"
# SentencePiece Unigram with <pad>=0 <unk>=1 [CLS]=2 [SEP]=3 [MASK]=4 and `[CLS] A [SEP] B [SEP]` inputs (§4.1).
TOKENIZER = ALBERT_TOKENIZER
INPUT_FORMAT = bert.INPUT_FORMAT
TRUNK_NAME = "albert"
# Neuron pruning (`llm_jax.compression.pruning`): FFN width field → the FFN (`Mlp`) modules of that width.
FFN_BLOCKS = {"intermediate_size": ("albert/encoder/stack/layers/block/mlp",)}  # the shared layer: one set
# Bias tests (`llm_jax.eval.embeddings`): the factorized token table `[V, E]`, and the pretrained pooler (SOP's).
TOKEN_EMBEDDING = bert.TOKEN_EMBEDDING
pooled_features = bert.pooled_features


def build_trunk(cfg: Config, kind: str, **kwargs) -> AlbertModel:
    """The encoder a fine-tuning head of `kind` sits on; with the pooler where the head reads it."""
    return AlbertModel(cfg, add_pooler=kind in bert.POOLED_KINDS, **kwargs)


def sequence_head(cfg: Config, trunk_out: Output, *, kind: str, num_outputs: int, dropout: float,
                  deterministic: bool) -> jax.Array:
    """HF `AlbertForSequenceClassification` / `AlbertForMultipleChoice`: dropout on the pooled `[CLS]` vector, then
    one dense layer `classifier` (BERT's head, `bert.sequence_head`). Returns `[B, num_outputs]` logits."""
    return bert.sequence_head(cfg, trunk_out, kind=kind, num_outputs=num_outputs, dropout=dropout,
                              deterministic=deterministic)


def towers(cfg: Config, seq_len: int, *, predicted_positions: int, heads: tuple[str, ...]) -> tuple[Tower, ...]:
    """One encoder of L layer *applications* (sharing saves parameters, not FLOPs), embeddings of width E with the
    E → D projection, the MLM head over P gathered positions, SOP on the pooler when the objective reads it."""
    if seq_len > cfg.max_position_embeddings:
        raise ValueError(f"seq_len={seq_len} exceeds model.max_position_embeddings={cfg.max_position_embeddings}.")
    return (Tower(
        num_layers=cfg.num_layers, d_model=cfg.hidden_size, num_heads=cfg.num_heads, head_dim=cfg.head_dim,
        d_ff=cfg.intermediate_size, vocab_size=cfg.vocab_size, seq_len=seq_len, embed_dim=cfg.embedding_size,
        embedding_tables=3, lm_positions=min(predicted_positions, seq_len), lm_transform=True,
        pooler_classes=2 if "sop" in heads else 0),)


# ---------------------------------------------------------------------------------------- HF name map
# Layout kinds as in bert.py. The shared layer has no `{L}`: HF stores it once, as group 0 / inner layer 0.

_HF_LAYER = "albert.encoder.albert_layer_groups.0.albert_layers.0"
_BLOCK = "albert/encoder/stack/layers/block"
HF_NAME_MAP: dict[str, tuple[str, str]] = {
    "albert/embeddings/word_embeddings/embedding": ("albert.embeddings.word_embeddings.weight", "embed"),
    "albert/embeddings/position_embeddings/embedding": ("albert.embeddings.position_embeddings.weight", "embed"),
    "albert/embeddings/token_type_embeddings/embedding": ("albert.embeddings.token_type_embeddings.weight", "embed"),
    "albert/embeddings/layer_norm/scale": ("albert.embeddings.LayerNorm.weight", "vector"),
    "albert/embeddings/layer_norm/bias": ("albert.embeddings.LayerNorm.bias", "vector"),
    "albert/embeddings/projection/kernel": ("albert.encoder.embedding_hidden_mapping_in.weight", "linear"),
    "albert/embeddings/projection/bias": ("albert.encoder.embedding_hidden_mapping_in.bias", "vector"),
    f"{_BLOCK}/attention/query/kernel": (f"{_HF_LAYER}.attention.query.weight", "linear_in_heads"),
    f"{_BLOCK}/attention/query/bias": (f"{_HF_LAYER}.attention.query.bias", "bias_heads"),
    f"{_BLOCK}/attention/key/kernel": (f"{_HF_LAYER}.attention.key.weight", "linear_in_heads"),
    f"{_BLOCK}/attention/key/bias": (f"{_HF_LAYER}.attention.key.bias", "bias_heads"),
    f"{_BLOCK}/attention/value/kernel": (f"{_HF_LAYER}.attention.value.weight", "linear_in_heads"),
    f"{_BLOCK}/attention/value/bias": (f"{_HF_LAYER}.attention.value.bias", "bias_heads"),
    f"{_BLOCK}/attention/out/kernel": (f"{_HF_LAYER}.attention.dense.weight", "linear_out_heads"),
    f"{_BLOCK}/attention/out/bias": (f"{_HF_LAYER}.attention.dense.bias", "vector"),
    f"{_BLOCK}/attention_norm/scale": (f"{_HF_LAYER}.attention.LayerNorm.weight", "vector"),
    f"{_BLOCK}/attention_norm/bias": (f"{_HF_LAYER}.attention.LayerNorm.bias", "vector"),
    f"{_BLOCK}/mlp/wi/kernel": (f"{_HF_LAYER}.ffn.weight", "linear"),
    f"{_BLOCK}/mlp/wi/bias": (f"{_HF_LAYER}.ffn.bias", "vector"),
    f"{_BLOCK}/mlp/wo/kernel": (f"{_HF_LAYER}.ffn_output.weight", "linear"),
    f"{_BLOCK}/mlp/wo/bias": (f"{_HF_LAYER}.ffn_output.bias", "vector"),
    f"{_BLOCK}/mlp_norm/scale": (f"{_HF_LAYER}.full_layer_layer_norm.weight", "vector"),
    f"{_BLOCK}/mlp_norm/bias": (f"{_HF_LAYER}.full_layer_layer_norm.bias", "vector"),
    "albert/pooler/dense/kernel": ("albert.pooler.weight", "linear"),
    "albert/pooler/dense/bias": ("albert.pooler.bias", "vector"),
    "mlm_head/transform/kernel": ("predictions.dense.weight", "linear"),
    "mlm_head/transform/bias": ("predictions.dense.bias", "vector"),
    "mlm_head/layer_norm/scale": ("predictions.LayerNorm.weight", "vector"),
    "mlm_head/layer_norm/bias": ("predictions.LayerNorm.bias", "vector"),
    "mlm_head/bias": ("predictions.bias", "vector"),
    "sop_head/kernel": ("sop_classifier.classifier.weight", "linear"),
    "sop_head/bias": ("sop_classifier.classifier.bias", "vector"),
}
HF_ARCHITECTURE = "AlbertForPreTraining"
HF_MODEL_TYPE = "albert"
HF_BASE_PREFIX = "albert"
HF_TIED_WEIGHTS: dict[str, str] = {
    "predictions.decoder.weight": "albert.embeddings.word_embeddings.weight",
    "predictions.decoder.bias": "predictions.bias",
}
HF_IGNORED: tuple[str, ...] = bert.HF_IGNORED
# What a checkpoint may lack (a bare `AlbertModel`, an `AlbertForMaskedLM`): initialised freshly and reported.
HF_INIT_IF_MISSING: tuple[str, ...] = ("albert/pooler/", "mlm_head/", "sop_head/")


def config_from_hf(hf: dict[str, Any]) -> Config:
    """Our Config from a Hugging Face `config.json` dict.

    Raises:
      ValueError: layer groups other than one shared layer (`num_hidden_groups`, `inner_group_num` ≠ 1), or the
        settings BERT's `config_from_hf` refuses.
    """
    groups, inner = hf.get("num_hidden_groups", 1), hf.get("inner_group_num", 1)
    if groups != 1 or inner != 1:
        raise ValueError(f"num_hidden_groups={groups}, inner_group_num={inner}: only one layer shared across depth "
                         "(1 and 1, every published ALBERT) is supported.")
    base = bert.config_from_hf({**hf, "hidden_act": hf.get("hidden_act", "gelu_new"),
                                "hidden_dropout_prob": hf.get("hidden_dropout_prob", 0.0),
                                "attention_probs_dropout_prob": hf.get("attention_probs_dropout_prob", 0.0)})
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(bert.Config)}
    return Config(**fields, embedding_size=hf.get("embedding_size", 128),
                  classifier_dropout_prob=hf.get("classifier_dropout_prob", 0.1)).validate()


def config_to_hf(cfg: Config) -> dict[str, Any]:
    """A Hugging Face `config.json` dict (`AlbertConfig`) for our Config."""
    return {**bert.config_to_hf(cfg), "model_type": HF_MODEL_TYPE, "architectures": [HF_ARCHITECTURE],
            "embedding_size": cfg.embedding_size, "num_hidden_groups": 1, "inner_group_num": 1,
            "classifier_dropout_prob": cfg.classifier_dropout_prob, "bos_token_id": 2, "eos_token_id": 3}
