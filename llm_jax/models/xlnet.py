"""XLNet (Yang et al. 2019, "XLNet: Generalized Autoregressive Pretraining for Language Understanding").

Transformer-XL's layers (Dai et al. 2019: relative positional encoding, segment-level memory) with what XLNet adds:

* two-stream self-attention (§2.3): the *content* stream h sees the content of every key it may attend to, itself
  included; the *query* stream g starts from one learned vector (`mask_emb`) and sees the position of the token it
  predicts but not its content. Both streams share every weight of a layer (HF `XLNetRelativeAttention` runs
  both); the query stream only runs at the P predicted positions (`target_mapping_BPT`, §2.3 "partial
  prediction");
* permutation masks (`perm_mask_BTT`, True = query i may *not* see key j) that realise a factorization order;
  the content stream additionally always sees itself;
* relative segment encoding (§2.5): per layer a bias s and a learned embedding of "same segment" / "different
  segment" enter every score; memory counts as segment 0;
* u, v and s biases per layer (HF `r_w_bias`, `r_r_bias`, `r_s_bias`);
* relative positions over all keys in both directions (`attn_type="bi"`, the default) or causal ("uni"); with
  `bi_data` the second half of the batch reads the distances negated (the pretraining pipeline feeds that half
  reversed text, `data_utils.create_tfrecords`);
* post-LN layers: attention → dropout → residual → LayerNorm, then the feed-forward (GELU) → dropout → residual →
  LayerNorm, the same modules for both streams;
* an LM head tied to the word embedding with its own bias (HF `XLNetLMHeadModel.lm_loss`), on the query stream
  when there is one, else on the content stream;
* the summary head of classification (HF `XLNetSequenceSummary`, `summary_type="last"`): the content stream at
  the last position, which is `<cls>` (`A <sep> B <sep> <cls>`, left padding so every row ends with it) → dense
  D → D → tanh → dropout → `logits_proj`.

Memory (§2.4, Transformer-XL §3.2) goes in and out explicitly: `mems_LBMD` are the content stream's layer inputs of
earlier segments; with `return_mems=True` the model returns the new ones (`cache_mem`: the first `reuse_len`
positions of this segment appended, the last `mem_len` kept; 0 = all).

Parameter layout and numerics follow Hugging Face `XLNetLMHeadModel`; `HF_NAME_MAP` maps the names.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from llm_jax.data.tokenizer import XLNET_TOKENIZER
from llm_jax.flops import Tower
from llm_jax.layers import (
    Einsum,
    Embed,
    LayerNorm,
    Mlp,
    RelativeAttention,
    Stack,
    activation,
    sinusoid_positions,
)
from llm_jax.models.family import CommonConfig, InputFormat
from llm_jax.sharding import (
    BATCH,
    EMBED,
    P_EMBED,
    P_HEADS,
    P_KV,
    P_VOCAB,
    SEQ,
    VOCAB,
    shard,
)

# --------------------------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class Config(CommonConfig):
    """XLNet hyperparameters (names as in Hugging Face `XLNetConfig`); runtime fields from `CommonConfig`.

    HF's single `dropout` is both our `hidden_dropout` (embeddings, positions, sub-layer outputs, feed-forward
    activation, final output) and `attention_dropout` (attention probabilities).

    Attributes:
      d_model / n_layer / n_head / d_inner: D, L, H (K = D / H) and F.
      ff_activation: the feed-forward activation (`gelu`, exact).
      attn_type: "bi" (XLNet's: relative distances in both directions) or "uni" (causal, Transformer-XL-like).
      bi_data: the second half of the batch reads negated distances (bidirectional data pipeline; an even batch).
      clamp_len: clip relative distances to ±clamp_len (−1 = off).
      same_length: with "uni", every query sees the same number of keys.
      mem_len: memory slots returned by `return_mems` (the last ones); 0 = every position (HF `mem_len=None`).
      reuse_len: positions of a segment that enter the memory (the first ones); 0 = all.
      layer_norm_eps: LayerNorm ε.
      initializer_range: std of every weight's normal initialiser.
      max_position_embeddings: the longest input this model claims (relative positions have no table).
      pad_token_id: `<pad>` (5 in the published vocabulary).
    """

    vocab_size: int = 32000
    d_model: int = 1024
    n_layer: int = 24
    n_head: int = 16
    d_inner: int = 4096
    ff_activation: str = "gelu"
    attn_type: str = "bi"
    bi_data: bool = False
    clamp_len: int = -1
    same_length: bool = False
    mem_len: int = 0
    reuse_len: int = 0
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    max_position_embeddings: int = 512
    pad_token_id: int = 5

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_head

    @property
    def width(self) -> int:
        """D, the width the fine-tuning heads read."""
        return self.d_model

    @property
    def num_token_types(self) -> int:
        """Segment ids 0 (A and memory), 1 (B) and 2 (`<cls>`): compared for equality only (§2.5), no table."""
        return 3

    @property
    def max_seq_len(self) -> int:
        return self.max_position_embeddings

    def memory_shape(self, mem_len: int) -> tuple[int, int, int]:
        """One row's memory of `mem_len` slots: `(L, M, D)` (what an objective carries across steps)."""
        return (self.n_layer, mem_len, self.d_model)

    def with_vocabulary(self, vocab_size: int, special) -> Config:
        """This Config sized for a tokenizer: its vocabulary and padding id."""
        pad = self.pad_token_id if special.pad is None else special.pad
        return dataclasses.replace(self, vocab_size=vocab_size, pad_token_id=pad).validate()

    def validate(self) -> Config:
        for name in ("vocab_size", "d_model", "n_layer", "n_head", "d_inner", "max_position_embeddings"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be ≥ 1 (got {getattr(self, name)}).")
        if self.d_model % self.n_head:
            raise ValueError(f"model.d_model={self.d_model} is not divisible by model.n_head={self.n_head}; pick a "
                             "head count that divides the width.")
        if self.d_model % 2:
            raise ValueError(f"model.d_model={self.d_model} must be even (sin and cos halves of the relative "
                             "position encoding).")
        if self.attn_type not in ("bi", "uni"):
            raise ValueError(f"model.attn_type={self.attn_type!r}: choose 'bi' (XLNet) or 'uni' (causal).")
        if self.mem_len < 0 or self.reuse_len < 0:
            raise ValueError(f"model.mem_len={self.mem_len} and model.reuse_len={self.reuse_len} must be ≥ 0 "
                             "(0 = keep every position).")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"model.pad_token_id={self.pad_token_id} is outside the vocabulary [0, {self.vocab_size}).")
        activation(self.ff_activation)
        self.validate_runtime()
        return self


# Yang et al. 2019 §3.1 / the released xlnet_cased_L-{12,24} configs: V = 32000 SentencePiece pieces, D 768 / 1024,
# 12 / 24 layers, 12 / 16 heads, F = 4D, GELU. tiny / mini are CPU shapes.
PRESETS: dict[str, Config] = {
    "xlnet-base": Config(d_model=768, n_layer=12, n_head=12, d_inner=3072),
    "xlnet-large": Config(),
    "xlnet-mini": Config(d_model=256, n_layer=4, n_head=4, d_inner=1024),
    "xlnet-tiny": Config(d_model=128, n_layer=2, n_head=4, d_inner=512),
}

# ---------------------------------------------------------------------------------------------- modules


@flax.struct.dataclass
class Output:
    """What the XLNet modules return.

    Attributes:
      hidden_BTD: the content stream's output `[B, T, D]`.
      query_BPD: the query stream's output at the P predicted positions (with `target_mapping_BPT`), else None.
      pooled_BD: the content stream at the last position (`<cls>`, XLNet's `summary_type="last"`).
      logits_BTV: float32 LM logits on the content stream (no `target_mapping_BPT`), else None.
      logits_BPV: float32 LM logits on the query stream (with `target_mapping_BPT`), else None.
      mems_LBMD: the new memory (`return_mems=True`), else None.
    """

    hidden_BTD: jax.Array
    query_BPD: jax.Array | None = None
    pooled_BD: jax.Array | None = None
    logits_BTV: jax.Array | None = None
    logits_BPV: jax.Array | None = None
    mems_LBMD: jax.Array | None = None


def _init(cfg: Config):
    return nn.initializers.normal(cfg.initializer_range)


class Layer(nn.Module):
    """One XLNet layer over both streams (HF `XLNetLayer`): relative attention (the query stream's over the content
    stream's keys) → dropout → residual → LayerNorm, then the feed-forward → dropout → residual → LayerNorm.

    `hg` is the pair `(h_BTD, g_BPD or None)`; the masks are bool, True = may attend, `[B, 1, T, M + T]`.
    """

    cfg: Config
    deterministic: bool = True

    @nn.compact
    def __call__(self, hg, *, r_RD, mask_h=None, mask_g=None, seg_diff_BTS=None, target_mapping_BPT=None,
                 mems_BMD=None):
        cfg = self.cfg
        h_BTD, g_BPD = hg
        dtype = jnp.dtype(cfg.dtype)
        init = _init(cfg)
        hk = (cfg.n_head, cfg.d_head)
        bias = lambda name: self.param(name, nn.with_logical_partitioning(init, (P_HEADS, P_KV)), hk, jnp.float32)
        u_HK, v_HK, s_HK = bias("r_w_bias"), bias("r_r_bias"), bias("r_s_bias")
        attn = RelativeAttention(cfg.n_head, cfg.d_head, segments=True, dropout_rate=cfg.attention_dropout,
                                 kernel_init=init, dtype=dtype, name="rel_attn")
        attn_norm = LayerNorm(cfg.layer_norm_eps, dtype=dtype, name="attn_norm")
        mlp = Mlp(cfg.d_inner, act=cfg.ff_activation, dropout_rate=cfg.hidden_dropout, kernel_init=init, dtype=dtype,
                  name="ff")
        ff_norm = LayerNorm(cfg.layer_norm_eps, dtype=dtype, name="ff_norm")
        drop = nn.Dropout(cfg.hidden_dropout)
        deterministic = self.deterministic
        kw = dict(r_RD=r_RD, u_HK=u_HK, v_HK=v_HK, s_HK=s_HK if seg_diff_BTS is not None else None,
                  seg_diff_BTS=seg_diff_BTS, mems_BMD=mems_BMD, deterministic=deterministic)

        def post(x, y):  # dropout → residual → LayerNorm, then the feed-forward block
            x = attn_norm(x + drop(y, deterministic=deterministic))
            y = mlp(x, deterministic=deterministic)
            return shard(ff_norm(x + drop(y, deterministic=deterministic)), BATCH, SEQ, EMBED)

        new_h = post(h_BTD, attn(h_BTD, mask_BHTS=mask_h, **kw))
        new_g = None
        if g_BPD is not None:
            new_g = post(g_BPD, attn(g_BPD, h_BTD, mask_BHTS=mask_g, target_mapping_BPT=target_mapping_BPT, **kw))
        return new_h, new_g


def causal_blocked(t: int, m: int, same_length: bool) -> jax.Array:
    """HF `XLNetModel.create_mask`: `[T, M + T]` bool, True = query i may *not* see key j (j > M + i; with
    `same_length` also the keys more than M before it)."""
    i = jnp.arange(t)[:, None]
    j = jnp.arange(m + t)[None, :]
    blocked = j > m + i
    if same_length:
        blocked = blocked | (j < i)
    return blocked


def relative_positions(cfg: Config, klen: int, qlen: int, batch: int) -> jax.Array:
    """The relative encodings R: `[R, D]`, or `[B, R, D]` with `bi_data` (the second half's distances negated,
    HF `relative_positional_encoding`'s `bwd_pos_seq`)."""
    r_RD = sinusoid_positions(klen, qlen, cfg.d_model, clamp_len=cfg.clamp_len, attn_type=cfg.attn_type)
    if not cfg.bi_data:
        return r_RD
    half = cfg.d_model // 2
    # sin(−x) = −sin(x), cos(−x) = cos(x): the negated distances' encodings without recomputing them.
    bwd_RD = r_RD * jnp.concatenate([-jnp.ones(half), jnp.ones(half)])
    # An odd batch (HF refuses one) gives the extra row to the forward half.
    return jnp.concatenate([jnp.broadcast_to(r_RD, (batch - batch // 2, *r_RD.shape)),
                            jnp.broadcast_to(bwd_RD, (batch // 2, *r_RD.shape))], axis=0)


class XLNetModel(nn.Module):
    """The word embedding, `mask_emb` and the L layers over both streams: the trunk (HF `XLNetModel`, `transformer`).

    `__call__(tokens_BT, *, segment_ids_BT, positions_BT, mask_BT, perm_mask_BTT, target_mapping_BPT, mems_LBMD,
    return_mems, deterministic)`:
    * `segment_ids_BT` (HF `token_type_ids`): any ints, compared for equality (relative segment encoding); None =
      no segment term;
    * `positions_BT` must be None: positions are relative, given by the order of the tokens;
    * `mask_BT` True on real tokens (HF `attention_mask`): padded keys are hidden from every query;
    * `perm_mask_BTT` True where query i may *not* attend key j (HF `perm_mask`);
    * `target_mapping_BPT` one-hot rows: the query stream's P predicted positions (HF `target_mapping`);
    * `mems_LBMD` each layer's memory (earlier segments' content-stream inputs), always visible;
    * `return_mems` returns the new memory in `mems_LBMD` (HF `use_mems`): `mem_len` / `reuse_len` override the
      Config's for this call.
    """

    cfg: Config

    def masks(self, b: int, t: int, m: int, mask_BT, perm_mask_BTT):
        """`(content mask, query mask)`, bool `[B, 1, T, M + T]` (True = may attend), or `(None, None)` when
        nothing is masked (HF `non_tgt_mask`, `attn_mask`)."""
        cfg = self.cfg
        blocked = None
        if cfg.attn_type == "uni":
            blocked = causal_blocked(t, m, cfg.same_length)[None]
        data = None
        if mask_BT is not None:
            data = jnp.broadcast_to(~mask_BT.astype(bool)[:, None, :], (b, t, t))
        if perm_mask_BTT is not None:
            perm = perm_mask_BTT.astype(bool)
            data = perm if data is None else data | perm
        if data is not None:
            data = jnp.pad(data, ((0, 0), (0, 0), (m, 0)))  # memory is always visible
            blocked = data if blocked is None else blocked | data
        if blocked is None:
            return None, None
        own_BTS = jnp.pad(jnp.eye(t, dtype=bool), ((0, 0), (m, 0)))[None]
        return (~blocked | own_BTS)[:, None], (~blocked)[:, None]

    @nn.compact
    def __call__(self, tokens_BT, *, segment_ids_BT=None, positions_BT=None, mask_BT=None, perm_mask_BTT=None,
                 target_mapping_BPT=None, mems_LBMD=None, return_mems: bool = False, mem_len: int | None = None,
                 reuse_len: int | None = None, deterministic: bool = True) -> Output:
        cfg = self.cfg
        word_embedding = Embed(cfg.vocab_size, cfg.d_model, (P_VOCAB, P_EMBED), _init(cfg), jnp.dtype(cfg.dtype),
                               field="token ids (model.vocab_size)", name="word_embedding")
        mask_emb = self.param("mask_emb", nn.with_logical_partitioning(_init(cfg), (None, None, P_EMBED)),
                              (1, 1, cfg.d_model), jnp.float32)
        dropout = nn.Dropout(cfg.hidden_dropout)
        mem_len = cfg.mem_len if mem_len is None else mem_len
        reuse_len = cfg.reuse_len if reuse_len is None else reuse_len
        if positions_BT is not None:
            raise ValueError("XLNet's positions are relative (the order of the tokens); pass positions_BT=None.")
        b, t = tokens_BT.shape
        m = 0 if mems_LBMD is None else mems_LBMD.shape[2]
        if mems_LBMD is not None and mems_LBMD.shape[:2] != (cfg.n_layer, b):
            raise ValueError(f"mems_LBMD has shape {mems_LBMD.shape}; it needs [n_layer={cfg.n_layer}, B={b}, M, D].")
        klen = m + t
        mask_h, mask_g = self.masks(b, t, m, mask_BT, perm_mask_BTT)
        h_BTD = dropout(word_embedding(tokens_BT), deterministic=deterministic)
        g_BPD = None
        if target_mapping_BPT is not None:
            p = target_mapping_BPT.shape[1]
            g_BPD = dropout(jnp.broadcast_to(mask_emb.astype(h_BTD.dtype), (b, p, cfg.d_model)),
                                 deterministic=deterministic)
        kw = dict(r_RD=dropout(relative_positions(cfg, klen, t, b).astype(h_BTD.dtype),
                                    deterministic=deterministic))
        if mask_h is not None:
            kw.update(mask_h=mask_h, mask_g=mask_g)
        if segment_ids_BT is not None:
            seg_BT = segment_ids_BT.astype(jnp.int32)
            cat_BS = jnp.pad(seg_BT, ((0, 0), (m, 0)))  # memory is segment 0
            kw["seg_diff_BTS"] = seg_BT[:, :, None] != cat_BS[:, None, :]
        if target_mapping_BPT is not None:
            kw["target_mapping_BPT"] = target_mapping_BPT
        if mems_LBMD is not None:
            kw["mems_BMD"] = jax.lax.stop_gradient(mems_LBMD)
        out = Stack(Layer, (("cfg", cfg), ("deterministic", deterministic)), cfg.n_layer, remat=cfg.remat,
                    unroll=cfg.scan_unroll, collect_inputs=return_mems, scanned_args=("mems_BMD",),
                    name="layer")((h_BTD, g_BPD), **kw)
        h_BTD, g_BPD = out.x
        new_mems = None
        if return_mems:
            cur_LBTD = out.inputs_LBTD[0]
            if reuse_len > 0:
                cur_LBTD = cur_LBTD[:, :, :reuse_len]
            cat_LBSD = cur_LBTD if mems_LBMD is None else jnp.concatenate([mems_LBMD.astype(cur_LBTD.dtype),
                                                                           cur_LBTD], axis=2)
            if mem_len > 0:
                cat_LBSD = cat_LBSD[:, :, -mem_len:]
            new_mems = jax.lax.stop_gradient(cat_LBSD)
        h_BTD = dropout(h_BTD, deterministic=deterministic)
        if g_BPD is not None:
            g_BPD = dropout(g_BPD, deterministic=deterministic)
        return Output(hidden_BTD=h_BTD, query_BPD=g_BPD, pooled_BD=h_BTD[:, -1], mems_LBMD=new_mems)

    def attend(self, x_BTD):
        """`x · Eᵀ` with the word embedding (the tied LM head's projection, no bias); call after `__call__`."""
        table_VD = nn.meta.unbox(self.variables["params"]["word_embedding"]["embedding"])
        dtype = jnp.dtype(self.cfg.dtype)
        # Why a 2-D matmul over the flattened leading axes: as `llm_jax.layers.Embed.attend`.
        logits = jnp.dot(x_BTD.astype(dtype).reshape(-1, x_BTD.shape[-1]), table_VD.astype(dtype).T)
        return logits.reshape(*x_BTD.shape[:-1], table_VD.shape[0])


class LMLossBias(nn.Module):
    """The tied LM head's own output bias `bias [V]` (HF `lm_loss.bias`); named `bias`, so that AdamW exempts it
    from weight decay as it does every bias (`llm_jax.train.optim`; the original XLNet exempts it too)."""

    vocab_size: int

    @nn.compact
    def __call__(self, logits_BXV):
        bias_V = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, (P_VOCAB,)),
                            (self.vocab_size,), jnp.float32)
        return logits_BXV + bias_V


class XLNetLMHeadModel(nn.Module):
    """The trunk + the LM head tied to the word embedding with a bias `lm_loss/bias` (HF `XLNetLMHeadModel`): the
    pretraining model. Logits on the query stream with `target_mapping_BPT` (`logits_BPV`), else on the content
    stream (`logits_BTV`); float32."""

    cfg: Config

    def setup(self):
        self.transformer = XLNetModel(self.cfg)
        self.lm_loss = LMLossBias(self.cfg.vocab_size)

    def __call__(self, tokens_BT, *, segment_ids_BT=None, positions_BT=None, mask_BT=None, perm_mask_BTT=None,
                 target_mapping_BPT=None, mems_LBMD=None, return_mems: bool = False, mem_len: int | None = None,
                 reuse_len: int | None = None, deterministic: bool = True) -> Output:
        out = self.transformer(tokens_BT, segment_ids_BT=segment_ids_BT, positions_BT=positions_BT, mask_BT=mask_BT,
                               perm_mask_BTT=perm_mask_BTT, target_mapping_BPT=target_mapping_BPT,
                               mems_LBMD=mems_LBMD, return_mems=return_mems, mem_len=mem_len, reuse_len=reuse_len,
                               deterministic=deterministic)
        x = out.hidden_BTD if out.query_BPD is None else out.query_BPD
        logits = self.lm_loss(self.transformer.attend(x)).astype(jnp.float32)
        logits = shard(logits, BATCH, SEQ, VOCAB)
        if out.query_BPD is None:
            return out.replace(logits_BTV=logits)
        return out.replace(logits_BPV=logits)


# ------------------------------------------------------------------------------------- family contract
# (llm_jax/models/family.py)

NAME = "xlnet"
PRETRAINING_MODEL = XLNetLMHeadModel
DEFAULT_OBJECTIVE = "plm"
LM_KIND = "permutation"
# SentencePiece Unigram with XLNet's specials <unk>=0 <s>=1 </s>=2 <cls>=3 <sep>=4 <pad>=5 <mask>=6 <eod>=7 <eop>=8,
# the `A <sep> B <sep> <cls>` template with token types 0 / 1 / 2.
TOKENIZER = XLNET_TOKENIZER
# Left padding (XLNet's run_classifier and HF's XLNet tokenizer): `<cls>` is the last position of every row, which
# the summary head reads.
INPUT_FORMAT = InputFormat(pad_side="left")
TRUNK_NAME = "transformer"


def build_trunk(cfg: Config, kind: str, **kwargs) -> XLNetModel:
    """The trunk every fine-tuning head sits on (the same for every kind)."""
    del kind
    return XLNetModel(cfg, **kwargs)


class SequenceSummary(nn.Module):
    """HF `XLNetSequenceSummary` (`summary_type="last"`, `summary_use_proj`, `summary_activation="tanh"`): the last
    position's state → dense D → D (`summary`) → tanh → dropout (`summary_last_dropout`)."""

    cfg: Config
    dropout: float

    @nn.compact
    def __call__(self, x_BD, deterministic: bool):
        d = self.cfg.d_model
        x_BD = jnp.tanh(Einsum("BD,DE->BE", (d, d), (P_EMBED, None), kernel_init=_init(self.cfg),
                               dtype=jnp.dtype(self.cfg.dtype), name="summary")(x_BD))
        return nn.Dropout(self.dropout)(x_BD, deterministic=deterministic)


def sequence_head(cfg: Config, trunk_out: Output, *, kind: str, num_outputs: int, dropout: float,
                  deterministic: bool) -> jax.Array:
    """HF `XLNetForSequenceClassification` / `XLNetForMultipleChoice`: `sequence_summary` on the last position
    (`<cls>`), then `logits_proj` (dense D → C). Called inside the parent's compact method.

    Returns:
      `[B, num_outputs]` logits.
    """
    del kind
    x_BD = SequenceSummary(cfg, dropout, name="sequence_summary")(trunk_out.pooled_BD, deterministic)
    return Einsum("BD,DC->BC", (cfg.d_model, num_outputs), (P_EMBED, None), kernel_init=_init(cfg),
                  dtype=jnp.dtype(cfg.dtype), name="logits_proj")(x_BD)


def towers(cfg: Config, seq_len: int, *, predicted_positions: int, heads: tuple[str, ...]) -> tuple[Tower, ...]:
    """The content stream over the T = `seq_len` positions, and — when the objective predicts fewer positions than
    it reads (permutation LM's partial prediction, `target_mapping`) — the query stream over the P predicted
    positions, attending to the content stream's keys and values (it projects only its queries) and carrying the
    LM head (tied, with a bias). Both have relative position terms over the 2T relative distances of
    `attn_type="bi"` (T + 1 with "uni") and the segment term; no input norm, post-LN, no attention biases. The
    memory the permutation-LM objective carries (M more keys and distances) is added by `flops.towers_for`
    (`Objective.memory_positions_for`)."""
    rel = seq_len + (seq_len if cfg.attn_type == "bi" else 1)
    common = dict(num_layers=cfg.n_layer, d_model=cfg.d_model, num_heads=cfg.n_head, head_dim=cfg.d_head,
                  d_ff=cfg.d_inner, vocab_size=cfg.vocab_size, embedding_tables=1, use_bias=True, attention_bias=False,
                  input_norm=False, relative_positions=rel, segment_terms=True, lm_transform=False)
    lm = "lm" in heads
    if predicted_positions >= seq_len:
        return (Tower(seq_len=seq_len, lm_positions=seq_len if lm else 0, **common),)
    content = Tower(seq_len=seq_len, **common)
    query = Tower(seq_len=predicted_positions, attention_keys=seq_len, shared_kv=True,
                  lm_positions=predicted_positions if lm else 0, **{**common, "embedding_tables": 0})
    return (content, query)


# ---------------------------------------------------------------------------------------- HF name map

_L = "transformer/layer/layers/block"
_H = "transformer.layer.{L}"
HF_NAME_MAP: dict[str, tuple[str, str]] = {
    "transformer/word_embedding/embedding": ("transformer.word_embedding.weight", "embed"),
    "transformer/mask_emb": ("transformer.mask_emb", "embed"),
    **{f"{_L}/rel_attn/{ours}/kernel": (f"{_H}.rel_attn.{hf}", "heads_dhk")
       for ours, hf in (("query", "q"), ("key", "k"), ("value", "v"), ("pos", "r"))},
    f"{_L}/rel_attn/out/kernel": (f"{_H}.rel_attn.o", "out_heads_dhk"),
    f"{_L}/rel_attn/seg_embed": (f"{_H}.rel_attn.seg_embed", "embed"),
    **{f"{_L}/{b}": (f"{_H}.rel_attn.{b}", "embed") for b in ("r_w_bias", "r_r_bias", "r_s_bias")},
    f"{_L}/attn_norm/scale": (f"{_H}.rel_attn.layer_norm.weight", "vector"),
    f"{_L}/attn_norm/bias": (f"{_H}.rel_attn.layer_norm.bias", "vector"),
    f"{_L}/ff/wi/kernel": (f"{_H}.ff.layer_1.weight", "linear"),
    f"{_L}/ff/wi/bias": (f"{_H}.ff.layer_1.bias", "vector"),
    f"{_L}/ff/wo/kernel": (f"{_H}.ff.layer_2.weight", "linear"),
    f"{_L}/ff/wo/bias": (f"{_H}.ff.layer_2.bias", "vector"),
    f"{_L}/ff_norm/scale": (f"{_H}.ff.layer_norm.weight", "vector"),
    f"{_L}/ff_norm/bias": (f"{_H}.ff.layer_norm.bias", "vector"),
    "lm_loss/bias": ("lm_loss.bias", "vector"),
}
HF_ARCHITECTURE = "XLNetLMHeadModel"
HF_MODEL_TYPE = "xlnet"
HF_BASE_PREFIX = "transformer"
HF_TIED_WEIGHTS: dict[str, str] = {"lm_loss.weight": "transformer.word_embedding.weight"}
HF_IGNORED: tuple[str, ...] = ()
HF_INIT_IF_MISSING: tuple[str, ...] = ("lm_loss/",)


def config_from_hf(hf: dict[str, Any]) -> Config:
    """Our Config from a Hugging Face `XLNetConfig` dict (`mem_len`/`reuse_len` None → 0).

    Raises:
      ValueError: `untie_r=false` (biases shared across layers, which HF's XLNet no longer implements) or an
        `attn_type` other than "bi" / "uni".
    """
    if hf.get("untie_r", True) is False:
        raise ValueError("untie_r=false (u/v/s biases shared across layers) is not supported: transformers' XLNet "
                         "keeps them per layer, as this model does.")
    dropout = hf.get("dropout", 0.1)
    return Config(
        vocab_size=hf["vocab_size"], d_model=hf["d_model"], n_layer=hf["n_layer"], n_head=hf["n_head"],
        d_inner=hf["d_inner"], ff_activation=hf.get("ff_activation", "gelu"), attn_type=hf.get("attn_type", "bi"),
        bi_data=bool(hf.get("bi_data", False)), clamp_len=hf.get("clamp_len", -1),
        same_length=bool(hf.get("same_length", False)), mem_len=hf.get("mem_len") or 0,
        reuse_len=hf.get("reuse_len") or 0, layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
        initializer_range=hf.get("initializer_range", 0.02), pad_token_id=hf.get("pad_token_id", 5),
        hidden_dropout=dropout, attention_dropout=dropout,
    ).validate()


def config_to_hf(cfg: Config) -> dict[str, Any]:
    """A Hugging Face `XLNetConfig` dict for our Config."""
    return {
        "model_type": HF_MODEL_TYPE, "architectures": [HF_ARCHITECTURE], "vocab_size": cfg.vocab_size,
        "d_model": cfg.d_model, "n_layer": cfg.n_layer, "n_head": cfg.n_head, "d_head": cfg.d_head,
        "d_inner": cfg.d_inner, "ff_activation": cfg.ff_activation, "untie_r": True, "attn_type": cfg.attn_type,
        "bi_data": cfg.bi_data, "clamp_len": cfg.clamp_len, "same_length": cfg.same_length,
        "mem_len": cfg.mem_len or None, "reuse_len": cfg.reuse_len or None, "layer_norm_eps": cfg.layer_norm_eps,
        "initializer_range": cfg.initializer_range, "dropout": cfg.hidden_dropout, "pad_token_id": cfg.pad_token_id,
        "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": True, "summary_type": "last",
        "summary_use_proj": True, "summary_activation": "tanh", "summary_last_dropout": cfg.hidden_dropout,
    }
