"""T5 (Raffel et al., 2020, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text Transformer").

An encoder-decoder Transformer (§2.1) that differs from Vaswani et al. (2017) in:

* pre-norm residual blocks with RMSNorm: a scale only, no bias and no mean subtraction (§2.1: "a simplified
  layer normalization ... no additive bias"), and a final norm after each stack;
* no biases in any projection;
* bucketed relative position bias (§2.1): a scalar per head and bucket, added to the attention logits, 32 buckets
  reaching up to a distance of 128 (log-spaced past the exact range; bidirectional in the encoder, causal in the
  decoder), learned once per stack — in the first layer of Hugging Face's checkpoints — and shared by all of its
  layers; the decoder's cross-attention has none;
* no 1/sqrt(K) scale on the attention logits: Mesh TensorFlow folds it into the query's initialisation;
* the decoder's cross-attention to the encoder output;
* v1.0 (the paper): ReLU feed-forward and the output projection tied to the input embedding, with the decoder output
  rescaled by d_model^-0.5 before it; v1.1 (google-research/text-to-text-transfer-transformer, `t5.1.1.*.gin`):
  gated-GELU feed-forward (Shazeer, 2020), an untied output projection and no rescale;
* separate encoder and decoder depths (`num_layers`, `num_decoder_layers`).

Modules: `T5Model` (the shared embedding, the encoder and the decoder: the trunk, HF `T5Model`) and
`T5ForConditionalGeneration` (the trunk plus the output projection, HF's class of the same name). Their
`__call__` runs teacher forcing: `model.apply({"params": p}, tokens_BT, decoder_tokens_BT=..., mask_BT=...)`
returns `Output` with the decoder's `logits_BTV`. `encode` runs the encoder alone; `run_decoder` runs the decoder on
encoder states. Built with `decode=True`, the decoder keeps a self-attention KV cache and a cross-attention cache
(the encoder's keys/values projected once) in the `cache` collection, so that incremental decoding equals the full
teacher-forced pass (tests/models/test_t5.py). `init_decode_state` / `decode_step` / `reorder_decode_state` /
`stop_token_ids` wrap this as the family's decoder steps, which `llm_jax.generate` drives (greedy, sampling, beam
search): the encoder once over the input, the decoder from `decoder_start_token_id` to `</s>`.

Parameter layout and numerics follow Hugging Face `T5ForConditionalGeneration`; `HF_NAME_MAP` maps the names.
transformers 5 reads a v1.1 configuration (`tie_word_embeddings=false`) as "tied, no rescale" unless the
checkpoint holds a separate `lm_head.weight`, which then stays untied: `config_from_hf` reads both spellings.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from llm_jax.data.tokenizer import T5_TOKENIZER
from llm_jax.flops import Tower
from llm_jax.layers import (Einsum, Embed, Mlp, MultiHeadAttention, RMSNorm, Stack, activation, padding_mask,
                            select_cache_rows)
from llm_jax.models.family import CommonConfig, InputFormat
from llm_jax.sharding import BATCH, EMBED, SEQ, VOCAB, P_EMBED, P_HEADS, P_VOCAB, shard

# --------------------------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class Config(CommonConfig):
    """T5 hyperparameters (names as in Hugging Face `T5Config`); runtime fields from `CommonConfig`.

    `hidden_dropout` is T5's `dropout_rate` (after the embeddings, every sub-layer, the feed-forward activation and
    the final norm); `attention_dropout` the one on attention probabilities (HF uses `dropout_rate` for both).

    Attributes:
      d_model / d_kv / d_ff: D, K (per head, H·K need not be D) and F.
      num_layers / num_decoder_layers: encoder and decoder depths.
      num_heads: H.
      relative_attention_num_buckets / relative_attention_max_distance: the position-bias buckets (32) and the
        distance from which all positions share the last bucket (128).
      layer_norm_epsilon: RMSNorm's ε.
      feed_forward_proj: `relu` (v1.0) or `gated-gelu` (v1.1; GELU's tanh form as transformers runs it), or
        `[gated-]<activation>`.
      tie_word_embeddings: True (v1.0): logits = (h · d_model^-0.5) · Eᵀ; False (v1.1): a separate `lm_head`.
      initializer_factor: scales every initialiser (HF `initializer_factor`).
      n_positions: the input length the checkpoint was trained for (the relative bias itself has no limit).
      pad_token_id / eos_token_id / decoder_start_token_id: padding (0), end of sequence (1) and the first decoder
        input (T5 uses the padding id).
    """

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_decoder_layers: int = 6
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "relu"
    tie_word_embeddings: bool = True
    initializer_factor: float = 1.0
    n_positions: int = 512
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0

    @property
    def is_gated(self) -> bool:
        """A gated-linear-unit feed-forward (v1.1)."""
        return self.feed_forward_proj.split("-")[0] == "gated"

    @property
    def ffn_activation(self) -> str:
        """The feed-forward activation's name in `llm_jax.layers.ACTIVATIONS`; `gated-gelu` runs the tanh form, as
        transformers does (`T5Config`: "for backwards compatibility")."""
        if self.feed_forward_proj == "gated-gelu":
            return "gelu_new"
        return self.feed_forward_proj.split("-")[-1]

    @property
    def width(self) -> int:
        """D, the width the fine-tuning heads read."""
        return self.d_model

    @property
    def num_token_types(self) -> int:
        """T5 has no token-type (segment) embedding."""
        return 1

    @property
    def max_seq_len(self) -> int:
        """The longest input this model claims (`n_positions`; relative positions have no table to run out of)."""
        return self.n_positions

    @property
    def initializer_range(self) -> float:
        """Std of the dense layers of task heads: HF `T5ClassificationHead`'s `initializer_factor · d_model^-0.5`."""
        return self.initializer_factor * self.d_model ** -0.5

    def with_vocabulary(self, vocab_size: int, special) -> "Config":
        """This Config sized for a tokenizer: its vocabulary, padding (= decoder start) and end-of-sequence ids."""
        eos = self.eos_token_id if special.eos is None else special.eos
        return dataclasses.replace(self, vocab_size=vocab_size, pad_token_id=special.pad, eos_token_id=eos,
                                   decoder_start_token_id=special.pad).validate()

    def validate(self) -> "Config":
        for name in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads",
                     "relative_attention_max_distance", "n_positions"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be ≥ 1 (got {getattr(self, name)}).")
        if self.relative_attention_num_buckets < 4 or self.relative_attention_num_buckets % 2:
            raise ValueError(f"model.relative_attention_num_buckets={self.relative_attention_num_buckets} must be an "
                             "even number ≥ 4 (the encoder splits them by sign, each half into exact and log buckets; "
                             "T5 uses 32).")
        parts = self.feed_forward_proj.split("-")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
            raise ValueError(f"model.feed_forward_proj={self.feed_forward_proj!r} is not `<activation>` or "
                             "`gated-<activation>` (T5: 'relu'; v1.1: 'gated-gelu').")
        activation(self.ffn_activation)
        for name in ("pad_token_id", "eos_token_id", "decoder_start_token_id"):
            if not 0 <= getattr(self, name) < self.vocab_size:
                raise ValueError(f"model.{name}={getattr(self, name)} is outside the vocabulary [0, {self.vocab_size}).")
        if self.initializer_factor <= 0:
            raise ValueError(f"model.initializer_factor={self.initializer_factor} must be > 0 (T5: 1.0).")
        self.validate_runtime()
        return self


_V11 = dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False, hidden_dropout=0.0, attention_dropout=0.0)
# Raffel et al. 2020 Table 14 / the released checkpoints (v1.0: t5/models/gin/models/bi_v1*.gin) and v1.1
# (`t5.1.1.{small,base,large,xl,xxl}.gin`: gated-GELU, untied head, pretrained without dropout). V = 32128: the
# 32,100 tokens of the vocabulary padded to a multiple of 128, as in every published checkpoint. tiny / mini (and
# the v1.1-style tiny) are CPU shapes.
PRESETS: dict[str, Config] = {
    "t5-small": Config(),
    "t5-base": Config(d_model=768, d_ff=3072, num_layers=12, num_decoder_layers=12, num_heads=12),
    "t5-large": Config(d_model=1024, d_ff=4096, num_layers=24, num_decoder_layers=24, num_heads=16),
    "t5-3b": Config(d_model=1024, d_kv=128, d_ff=16384, num_layers=24, num_decoder_layers=24, num_heads=32),
    "t5-11b": Config(d_model=1024, d_kv=128, d_ff=65536, num_layers=24, num_decoder_layers=24, num_heads=128),
    "t5-v1_1-small": Config(d_model=512, d_ff=1024, num_layers=8, num_decoder_layers=8, num_heads=6, **_V11),
    "t5-v1_1-base": Config(d_model=768, d_ff=2048, num_layers=12, num_decoder_layers=12, num_heads=12, **_V11),
    "t5-v1_1-large": Config(d_model=1024, d_ff=2816, num_layers=24, num_decoder_layers=24, num_heads=16, **_V11),
    "t5-v1_1-xl": Config(d_model=2048, d_ff=5120, num_layers=24, num_decoder_layers=24, num_heads=32, **_V11),
    "t5-v1_1-xxl": Config(d_model=4096, d_ff=10240, num_layers=24, num_decoder_layers=24, num_heads=64, **_V11),
    "t5-mini": Config(d_model=256, d_ff=1024, num_layers=4, num_decoder_layers=4, num_heads=4),
    "t5-tiny": Config(d_model=128, d_kv=32, d_ff=512, num_layers=2, num_decoder_layers=2, num_heads=4),
    "t5-v1_1-tiny": Config(d_model=128, d_kv=32, d_ff=320, num_layers=2, num_decoder_layers=2, num_heads=4, **_V11),
}

# ---------------------------------------------------------------------------------------------- modules


@flax.struct.dataclass
class Output:
    """What the T5 modules return.

    Attributes:
      hidden_BTD: the encoder's output (after its final norm), `[B, S, D]` for S input positions.
      decoder_hidden_BTD: the decoder's output (after its final norm, before the output rescale), `[B, T, D]`.
      logits_BTV: float32 logits over the vocabulary at each decoder position (`T5ForConditionalGeneration`).
      eos_hidden_BD: the decoder output at each row's last `eos_token_id` of the input, when the decoder inputs
        were the inputs shifted right (HF `T5ForSequenceClassification`'s sentence representation).
      all_hidden_LBTD: every encoder layer's output `[L, B, S, D]` (before the final norm), with `collect_hidden`.
    """

    hidden_BTD: jax.Array
    decoder_hidden_BTD: jax.Array | None = None
    logits_BTV: jax.Array | None = None
    eos_hidden_BD: jax.Array | None = None
    all_hidden_LBTD: jax.Array | None = None


def _normal(std: float):
    return nn.initializers.normal(std)


def relative_position_bucket(relative_position: jax.Array, *, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> jax.Array:
    """The bucket of each relative position `key − query` (T5 §2.1; Mesh TensorFlow `_relative_position_bucket`).

    Bidirectional (encoder): half of the buckets for keys after the query, half for keys before. Causal (decoder):
    positive distances (future keys, masked anyway) share bucket 0 with distance 0. Of each half, the first half
    are exact distances 0 … n/2 − 1, the rest log-spaced up to `max_distance`, past which all share the last.

    Args:
      relative_position: int array, key position minus query position.

    Returns:
      int32 buckets in `[0, num_buckets)`, the same shape.
    """
    n = num_buckets
    bucket = jnp.zeros_like(relative_position, dtype=jnp.int32)
    if bidirectional:
        n //= 2
        bucket = bucket + (relative_position > 0).astype(jnp.int32) * n
        distance = jnp.abs(relative_position)
    else:
        distance = -jnp.minimum(relative_position, 0)
    max_exact = n // 2
    is_small = distance < max_exact
    # Why float32 and truncation toward zero: the reference computes the log bucket in float32 and casts with
    # `.to(long)` / `tf.cast`; a distance below max_exact takes the exact branch (its log is never used).
    scaled = (jnp.log(jnp.maximum(distance, 1).astype(jnp.float32) / max_exact)
              / math.log(max_distance / max_exact) * (n - max_exact))
    large = jnp.minimum(max_exact + scaled.astype(jnp.int32), n - 1)
    return bucket + jnp.where(is_small, distance, large).astype(jnp.int32)


class RelativePositionBias(nn.Module):
    """A learned scalar per head and bucket (`embedding`, `[buckets, H]`), looked up for every (query, key) pair.

    Attributes:
      cfg: hyperparameters.
      bidirectional: encoder (True) or decoder (False) bucketing.
    """

    cfg: Config
    bidirectional: bool

    @nn.compact
    def __call__(self, query_positions_T: jax.Array, key_positions_S: jax.Array) -> jax.Array:
        """Absolute query and key positions → float32 bias `[1, H, T, S]` to add to the attention logits."""
        cfg = self.cfg
        table_NH = self.param("embedding",
                              nn.with_logical_partitioning(_normal(cfg.initializer_factor * cfg.d_model ** -0.5),
                                                           (None, P_HEADS)),
                              (cfg.relative_attention_num_buckets, cfg.num_heads), jnp.float32)
        buckets_TS = relative_position_bucket(key_positions_S[None, :] - query_positions_T[:, None],
                                              bidirectional=self.bidirectional,
                                              num_buckets=cfg.relative_attention_num_buckets,
                                              max_distance=cfg.relative_attention_max_distance)
        return jnp.take(table_NH, buckets_TS, axis=0).transpose(2, 0, 1)[None]


def _attention(cfg: Config, name: str, *, causal: bool = False, decode: bool = False) -> MultiHeadAttention:
    f = cfg.initializer_factor
    # HF `_init_weights` (Mesh TensorFlow's): the 1/sqrt(K) logit scale folded into the query's std (D·K)^-1/2.
    return MultiHeadAttention(cfg.num_heads, cfg.d_kv, use_bias=False, dropout_rate=cfg.attention_dropout, scale=1.0,
                              decode=decode, implementation=cfg.attention_impl, causal=causal,
                              kernel_init=_normal(f * cfg.d_model ** -0.5),
                              query_init=_normal(f * (cfg.d_model * cfg.d_kv) ** -0.5),
                              out_init=_normal(f * (cfg.num_heads * cfg.d_kv) ** -0.5),
                              dtype=jnp.dtype(cfg.dtype), name=name)


class Layer(nn.Module):
    """One pre-norm block: `x + Attn(RMSNorm(x))` (+ `x + CrossAttn(RMSNorm(x), encoded)` in the decoder), then
    `x + FFN(RMSNorm(x))`, dropout on each branch (HF `T5Block`).

    Attributes:
      cfg: hyperparameters.
      decoder: causal self-attention and a cross-attention sub-layer.
      decode: keep the decoder's caches (see `T5ForConditionalGeneration`).
      deterministic: no dropout.
    """

    cfg: Config
    decoder: bool = False
    decode: bool = False
    deterministic: bool = True

    @nn.compact
    def __call__(self, x_BTD, mask_BHTS, bias_BHTS, encoded_BSD=None, cross_mask_BHTS=None):
        cfg = self.cfg
        dtype = jnp.dtype(cfg.dtype)
        det = self.deterministic
        norm = lambda name: RMSNorm(cfg.layer_norm_epsilon, dtype=dtype, name=name)
        h_BTD = _attention(cfg, "self_attention", causal=self.decoder, decode=self.decode)(
            norm("self_attention_norm")(x_BTD), mask_BHTS=mask_BHTS, bias_BHTS=bias_BHTS, deterministic=det)
        x_BTD = x_BTD + nn.Dropout(cfg.hidden_dropout)(h_BTD, deterministic=det)
        if self.decoder:
            h_BTD = _attention(cfg, "cross_attention", decode=self.decode)(
                norm("cross_attention_norm")(x_BTD), encoded_BSD, mask_BHTS=cross_mask_BHTS, deterministic=det)
            x_BTD = x_BTD + nn.Dropout(cfg.hidden_dropout)(h_BTD, deterministic=det)
        f = cfg.initializer_factor
        h_BTD = Mlp(cfg.d_ff, act=cfg.ffn_activation, gated=cfg.is_gated, use_bias=False,
                    dropout_rate=cfg.hidden_dropout, kernel_init=_normal(f * cfg.d_model ** -0.5),
                    out_init=_normal(f * cfg.d_ff ** -0.5), dtype=dtype, name="mlp")(norm("mlp_norm")(x_BTD),
                                                                                    deterministic=det)
        x_BTD = x_BTD + nn.Dropout(cfg.hidden_dropout)(h_BTD, deterministic=det)
        return shard(x_BTD, BATCH, SEQ, EMBED)


class T5Stack(nn.Module):
    """Dropout → the scanned layers sharing one relative position bias → final RMSNorm → dropout (HF `T5Stack`,
    without its embedding table: the model owns the one both stacks read).

    With `decode=True` (the decoder) the `cache` collection holds, besides each layer's KV caches, the number of
    positions decoded so far (`position`) and the cache's key positions (`key_positions`, `0 … T_max − 1`), so that
    each step's bias covers its query positions against every cache slot.

    Attributes:
      cfg: hyperparameters.
      decoder: the decoder stack (causal bucketing, cross-attention, `num_decoder_layers`).
      decode: incremental decoding with caches.
      collect_hidden: also return every layer's output `[L, B, T, D]` (before the final norm).
    """

    cfg: Config
    decoder: bool = False
    decode: bool = False
    collect_hidden: bool = False

    @nn.compact
    def __call__(self, x_BTD, *, mask_BT=None, encoded_BSD=None, encoder_mask_BS=None, deterministic=True):
        """`[B, T, D]` embeddings → `[B, T, D]` states (and, with `collect_hidden`, `(states, [L, B, T, D])`).

        Args:
          x_BTD: the embedded tokens.
          mask_BT: padding mask of these tokens (True = real); in a decoding step with the cache it must be None
            (the cache masks its empty slots).
          encoded_BSD / encoder_mask_BS: the decoder's cross-attention source and its padding mask.
        """
        cfg = self.cfg
        t = x_BTD.shape[1]
        positions_T = jnp.arange(t, dtype=jnp.int32)
        query_T, key_S = positions_T, positions_T
        if self.decode and self.has_variable("cache", "position"):
            if mask_BT is not None:
                raise ValueError("A cached decoding step takes no decoder padding mask: the cache masks its empty "
                                 "slots; pass decoder_mask_BT=None.")
            position = self.variable("cache", "position")
            key_S = self.variable("cache", "key_positions").value
            query_T = position.value + positions_T
            position.value = position.value + t
        elif self.decode:  # the call that creates the caches (a plain full pass) sizes them
            self.variable("cache", "position", lambda: jnp.array(0, jnp.int32))
            self.variable("cache", "key_positions", lambda: positions_T)
        bias_1HTS = RelativePositionBias(cfg, bidirectional=not self.decoder, name="relative_attention_bias")(
            query_T, key_S)
        mask_BHTS = None if mask_BT is None else padding_mask(mask_BT)
        args = (mask_BHTS, bias_1HTS)
        if self.decoder:
            if encoded_BSD is None:
                raise ValueError("The T5 decoder cross-attends to the encoder: pass encoded_BSD (model.encode).")
            args += (encoded_BSD, None if encoder_mask_BS is None else padding_mask(encoder_mask_BS))
        x_BTD = nn.Dropout(cfg.hidden_dropout)(x_BTD, deterministic=deterministic)
        layers = cfg.num_decoder_layers if self.decoder else cfg.num_layers
        out = Stack(Layer, (("cfg", cfg), ("decoder", self.decoder), ("decode", self.decode),
                            ("deterministic", deterministic)), layers, remat=cfg.remat, unroll=cfg.scan_unroll,
                    collect_hidden=self.collect_hidden, name="stack")(x_BTD, *args)
        x_BTD = RMSNorm(cfg.layer_norm_epsilon, dtype=jnp.dtype(cfg.dtype), name="final_norm")(out.x)
        x_BTD = nn.Dropout(cfg.hidden_dropout)(x_BTD, deterministic=deterministic)
        return (x_BTD, out.hidden_LBTD) if self.collect_hidden else x_BTD


def shift_right(tokens_BT: jax.Array, start_id: int) -> jax.Array:
    """`[start, x_0, …, x_{T−2}]`: teacher-forcing decoder inputs from targets (HF `_shift_right`)."""
    start_B1 = jnp.full((tokens_BT.shape[0], 1), start_id, tokens_BT.dtype)
    return jnp.concatenate([start_B1, tokens_BT[:, :-1]], axis=1)


class T5Model(nn.Module):
    """The shared embedding, the encoder and the decoder (HF `T5Model`): the trunk of every T5 head.

    Attributes:
      cfg: hyperparameters.
      decode: build the decoder with caches for incremental decoding.
      collect_hidden: `__call__` also returns every encoder layer's output (`Output.all_hidden_LBTD`).
    """

    cfg: Config
    decode: bool = False
    collect_hidden: bool = False

    def setup(self):
        cfg = self.cfg
        self.shared = Embed(cfg.vocab_size, cfg.d_model, (P_VOCAB, P_EMBED), _normal(cfg.initializer_factor),
                            jnp.dtype(cfg.dtype), field="token ids (model.vocab_size)")
        self.encoder = T5Stack(cfg, collect_hidden=self.collect_hidden)
        self.decoder = T5Stack(cfg, decoder=True, decode=self.decode)

    def encode_layers(self, tokens_BT, *, mask_BT=None, deterministic=True) -> tuple[jax.Array, jax.Array | None]:
        """`(encoder output [B, S, D], every encoder layer's output [L, B, S, D] or None without collect_hidden)`."""
        x_BTD = shard(self.shared(tokens_BT), BATCH, SEQ, EMBED)
        out = self.encoder(x_BTD, mask_BT=mask_BT, deterministic=deterministic)
        return out if self.collect_hidden else (out, None)

    def encode(self, tokens_BT, *, mask_BT=None, deterministic=True) -> jax.Array:
        """The encoder's output `[B, S, D]` for input ids `[B, S]` (padding mask `mask_BT`, True = real)."""
        return self.encode_layers(tokens_BT, mask_BT=mask_BT, deterministic=deterministic)[0]

    def decode_hidden(self, decoder_tokens_BT, encoded_BSD, *, encoder_mask_BS=None, decoder_mask_BT=None,
                      deterministic=True) -> jax.Array:
        """The decoder's output `[B, T, D]` for decoder input ids `[B, T]` and encoder states `[B, S, D]`."""
        x_BTD = shard(self.shared(decoder_tokens_BT), BATCH, SEQ, EMBED)
        return self.decoder(x_BTD, mask_BT=decoder_mask_BT, encoded_BSD=encoded_BSD, encoder_mask_BS=encoder_mask_BS,
                            deterministic=deterministic)

    def __call__(self, tokens_BT, *, decoder_tokens_BT=None, segment_ids_BT=None, positions_BT=None, mask_BT=None,
                 decoder_mask_BT=None, deterministic=True) -> Output:
        """Encoder on `tokens_BT`, decoder on `decoder_tokens_BT` (default: the inputs shifted right, as HF's
        `T5ForSequenceClassification` runs it; then `eos_hidden_BD` is the decoder output at each row's last eos).

        `segment_ids_BT` is accepted for the model contract and has no effect: T5 has no token types.

        Raises:
          ValueError: `positions_BT` given (T5's positions are relative, computed from the order).
        """
        del segment_ids_BT
        if positions_BT is not None:
            raise ValueError("T5 takes no positions_BT: its relative position bias follows the token order.")
        encoded_BSD, all_hidden = self.encode_layers(tokens_BT, mask_BT=mask_BT, deterministic=deterministic)
        eos_rows = decoder_tokens_BT is None
        if eos_rows:
            decoder_tokens_BT = shift_right(tokens_BT, self.cfg.decoder_start_token_id)
        hidden_BTD = self.decode_hidden(decoder_tokens_BT, encoded_BSD, encoder_mask_BS=mask_BT,
                                        decoder_mask_BT=decoder_mask_BT, deterministic=deterministic)
        eos_hidden_BD = None
        if eos_rows:
            t = tokens_BT.shape[1]
            # A row without eos reads its last position (HF raises; under jit nothing can).
            last_eos_B = jnp.max(jnp.where(tokens_BT == self.cfg.eos_token_id, jnp.arange(t), -1), axis=1)
            last_eos_B = jnp.where(last_eos_B < 0, t - 1, last_eos_B)
            eos_hidden_BD = jnp.take_along_axis(hidden_BTD, last_eos_B[:, None, None], axis=1)[:, 0]
        return Output(hidden_BTD=encoded_BSD, decoder_hidden_BTD=hidden_BTD, eos_hidden_BD=eos_hidden_BD,
                      all_hidden_LBTD=all_hidden)

    def attend(self, x_BTD):
        """`x · Eᵀ` with the shared embedding E (the tied output projection)."""
        return self.shared.attend(x_BTD)


class T5ForConditionalGeneration(nn.Module):
    """The trunk (`transformer`) and the output projection: the pretraining and text-to-text model (§2.1, §3.1).

    Attributes:
      cfg: hyperparameters.
      decode: build the decoder with caches. The caches are created by the first `run_decoder` call without them (a
        plain full pass over `[B, T_max]` decoder ids, which sizes the self-attention cache to T_max; the
        cross-attention cache is filled by the next call); each later call with `mutable=["cache"]` appends its
        positions. The caller stops at T_max.
    """

    cfg: Config
    decode: bool = False

    def setup(self):
        cfg = self.cfg
        self.transformer = T5Model(cfg, decode=self.decode)
        if not cfg.tie_word_embeddings:
            # Why std D^-1/2 and not HF's 1.0: Mesh TensorFlow's untied logits layer is a dense layer with
            # fan-in variance scaling; with std 1 the first logits would have std sqrt(D).
            self.lm_head = Einsum("BTD,DV->BTV", (cfg.d_model, cfg.vocab_size), (P_EMBED, P_VOCAB), use_bias=False,
                                  kernel_init=_normal(cfg.initializer_factor * cfg.d_model ** -0.5),
                                  dtype=jnp.dtype(cfg.dtype))

    def logits(self, decoder_hidden_BTD) -> jax.Array:
        """Float32 logits `[B, T, V]`: tied (v1.0, after the d_model^-0.5 rescale) or through `lm_head` (v1.1)."""
        cfg = self.cfg
        if cfg.tie_word_embeddings:
            logits_BTV = self.transformer.attend(decoder_hidden_BTD * cfg.d_model ** -0.5)
        else:
            logits_BTV = self.lm_head(decoder_hidden_BTD)
        # Why f32: the loss's log-softmax over V needs full-precision logits.
        return shard(logits_BTV.astype(jnp.float32), BATCH, SEQ, VOCAB)

    def encode(self, tokens_BT, *, mask_BT=None, deterministic=True) -> jax.Array:
        """The encoder's output `[B, S, D]` (run once; every decoding step reads it)."""
        return self.transformer.encode(tokens_BT, mask_BT=mask_BT, deterministic=deterministic)

    def run_decoder(self, decoder_tokens_BT, encoded_BSD, *, encoder_mask_BS=None, decoder_mask_BT=None,
                    deterministic=True) -> Output:
        """The decoder on encoder states: `Output` with `decoder_hidden_BTD` and `logits_BTV` for `[B, T]` ids.

        Under `decode=True` with caches, the ids are the next T positions (see the class docstring).
        """
        hidden_BTD = self.transformer.decode_hidden(decoder_tokens_BT, encoded_BSD, encoder_mask_BS=encoder_mask_BS,
                                                    decoder_mask_BT=decoder_mask_BT, deterministic=deterministic)
        return Output(hidden_BTD=encoded_BSD, decoder_hidden_BTD=hidden_BTD, logits_BTV=self.logits(hidden_BTD))

    def __call__(self, tokens_BT, *, decoder_tokens_BT=None, segment_ids_BT=None, positions_BT=None, mask_BT=None,
                 decoder_mask_BT=None, deterministic=True) -> Output:
        """Teacher forcing: the encoder on `tokens_BT` `[B, S]`, the decoder on `decoder_tokens_BT` `[B, T]` (the
        targets shifted right, `shift_right`); `Output.logits_BTV` predicts the targets.

        Args:
          mask_BT / decoder_mask_BT: padding masks of the inputs and of the decoder inputs (True = real); the
            decoder is causal either way, so right padding needs no decoder mask.
          segment_ids_BT: accepted for the model contract, no effect (no token types).

        Raises:
          ValueError: no `decoder_tokens_BT`, or `positions_BT` given.
        """
        if decoder_tokens_BT is None:
            raise ValueError("T5ForConditionalGeneration needs decoder_tokens_BT (the targets shifted right, "
                             "llm_jax.models.t5.shift_right); the span_corruption objective builds them.")
        out = self.transformer(tokens_BT, decoder_tokens_BT=decoder_tokens_BT, segment_ids_BT=segment_ids_BT,
                               positions_BT=positions_BT, mask_BT=mask_BT, decoder_mask_BT=decoder_mask_BT,
                               deterministic=deterministic)
        return out.replace(logits_BTV=self.logits(out.decoder_hidden_BTD))


# --------------------------------------------------------------------------------- incremental decoding


@flax.struct.dataclass
class DecodeState:
    """What T5 carries from one decoding step to the next (`init_decode_state`).

    Attributes:
      cache: the decoder's `cache` collection (`T5ForConditionalGeneration(decode=True)`): each layer's
        self-attention KV cache `[B, T_max, H, K]` and cross-attention keys/values `[B, S, H, K]`, and the stack's
        decoded-position count and key positions.
      encoded_BSD: the encoder output `[B, S, D]` (read by the cross-attention cache's first fill; kept in the
        state so that beam search reorders it with the caches).
      encoder_mask_BS: `[B, S]` bool, the real input tokens (the cross-attention mask at every step).
    """

    cache: Any
    encoded_BSD: jax.Array
    encoder_mask_BS: jax.Array


def _decoder_apply(cfg: Config, params, cache, tokens_BT, encoded_BSD, encoder_mask_BS):
    """One cached decoder call on `[B, T]` ids: `(new cache, float32 logits [B, T, V])`."""
    model = T5ForConditionalGeneration(cfg, decode=True)
    out, variables = model.apply({"params": params, "cache": cache}, tokens_BT, encoded_BSD,
                                 encoder_mask_BS=encoder_mask_BS, method="run_decoder", mutable=["cache"])
    return variables["cache"], out.logits_BTV


def init_decode_state(cfg: Config, params, tokens_BT: jax.Array, mask_BT: jax.Array,
                      max_new_tokens: int) -> tuple[DecodeState, jax.Array]:
    """The prefill: the encoder over the inputs (once), then the decoder fed `decoder_start_token_id` (T5 §3.1,
    HF `generate`: the padding id) with empty caches for `max_new_tokens` decoder positions.

    The prompt is the encoder input; the generated tokens are decoder tokens only. Left-padded inputs give the
    same encoder output on the real tokens as right-padded ones (the position bias is relative and padded keys are
    masked). Traceable (the decoding loop jits it); the caches start as zeros of the shapes the cache-creating
    call would give.

    Args:
      cfg: the model's Config.
      params: its params (`T5ForConditionalGeneration`'s tree).
      tokens_BT: int `[B, S]` encoder inputs (padded on either side).
      mask_BT: bool `[B, S]`, True on real tokens.
      max_new_tokens: how many tokens will be generated; the decoder holds the start token and all but the last of
        them, so T_max = `max_new_tokens` positions.

    Returns:
      `(state, logits_BV)`: the state after the start token, and the first generated token's float32 logits.

    Raises:
      ValueError: `max_new_tokens` < 1.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be ≥ 1.")
    b = tokens_BT.shape[0]
    mask_BS = mask_BT.astype(bool)
    model = T5ForConditionalGeneration(cfg, decode=True)
    encoded_BSD = model.apply({"params": params}, tokens_BT, mask_BT=mask_BS, method="encode")
    start_BT = jnp.full((b, max_new_tokens), cfg.decoder_start_token_id, jnp.int32)
    shapes = jax.eval_shape(lambda p, x, e, m: model.apply({"params": p}, x, e, encoder_mask_BS=m,
                                                           method="run_decoder", mutable=["cache"])[1]["cache"],
                            params, start_BT, encoded_BSD, mask_BS)

    def empty(path, leaf):
        # The stack's key positions are 0 … T_max − 1; everything else (caches, counters, flags) starts at zero.
        if getattr(path[-1], "key", None) == "key_positions":
            return jnp.arange(leaf.shape[0], dtype=leaf.dtype)
        return jnp.zeros(leaf.shape, leaf.dtype)

    cache = jax.tree_util.tree_map_with_path(empty, shapes)
    cache, logits_B1V = _decoder_apply(cfg, params, cache, start_BT[:, :1], encoded_BSD, mask_BS)
    return DecodeState(cache=cache, encoded_BSD=encoded_BSD, encoder_mask_BS=mask_BS), logits_B1V[:, 0]


def decode_step(cfg: Config, params, state: DecodeState, tokens_B: jax.Array) -> tuple[DecodeState, jax.Array]:
    """Feeds one decoder token per row (`[B]` int) at the next decoder position; returns the new state and the next
    token's float32 logits `[B, V]`."""
    cache, logits_B1V = _decoder_apply(cfg, params, state.cache, tokens_B[:, None].astype(jnp.int32),
                                       state.encoded_BSD, state.encoder_mask_BS)
    return state.replace(cache=cache), logits_B1V[:, 0]


def reorder_decode_state(state: DecodeState, rows_R: jax.Array) -> DecodeState:
    """The state of rows `rows_R` (`[R]` int, repeats allowed): the decoder caches, the encoder output and its mask
    (beam search's expansion and reordering)."""
    return DecodeState(cache=select_cache_rows(state.cache, rows_R), encoded_BSD=state.encoded_BSD[rows_R],
                       encoder_mask_BS=state.encoder_mask_BS[rows_R])


def target_logits(cfg: Config, params, tokens_BS: jax.Array, mask_BS: jax.Array, targets_BT: jax.Array) -> jax.Array:
    """Teacher forcing (the family's scoring member, `llm_jax.eval.score`): float32 logits `[B, T, V]` predicting
    `targets_BT` given the encoder inputs `tokens_BS` (mask `mask_BS`, True = real); the decoder reads the targets
    shifted right behind `decoder_start_token_id` (§3.1, HF `labels=`). Targets may be right-padded: the decoder is
    causal, so padding changes no earlier position."""
    out = T5ForConditionalGeneration(cfg).apply({"params": params}, tokens_BS, mask_BT=mask_BS,
                                                decoder_tokens_BT=shift_right(targets_BT, cfg.decoder_start_token_id))
    return out.logits_BTV


def stop_token_ids(cfg: Config) -> tuple[int, ...]:
    """The ids that end a generated text: `</s>` (`eos_token_id`)."""
    return (cfg.eos_token_id,)


def text_to_text_inputs(cfg: Config, tokens_BT: jax.Array, mask_BT: jax.Array,
                        targets_BT: jax.Array) -> tuple[tuple, dict[str, Any]]:
    """Teacher forcing for text-to-text fine-tuning (T5 §2.4, §3.1.3): the `PRETRAINING_MODEL` call that predicts
    `targets_BT` (`[B, T]`, the target text + `</s>`, padded) from the inputs `[B, S]` (+ mask) — the decoder reads
    the targets shifted right behind `decoder_start_token_id` (`shift_right`).

    Returns:
      `(args, kwargs)` of `T5ForConditionalGeneration.__call__`.
    """
    return (tokens_BT,), {"mask_BT": mask_BT,
                          "decoder_tokens_BT": shift_right(targets_BT, cfg.decoder_start_token_id)}


def FINETUNE_OPTIM(cfg: Config) -> dict[str, Any]:  # noqa: N802 (a family attribute, read by configs/finetune.py)
    """T5's fine-tuning recipe (Raffel et al. 2020 §3.1.2, and T5X's fine-tuning configs): Adafactor at a constant
    learning rate of 0.001, no weight decay, no global-norm clipping (Adafactor clips its own update at RMS 1)."""
    del cfg
    return {"name": "adafactor", "learning_rate": 1e-3, "schedule": "constant", "weight_decay": 0.0,
            "clip_norm": 0.0}


def FINETUNE_TRAIN(cfg: Config) -> dict[str, Any]:  # noqa: N802 (a family attribute, read by configs/finetune.py)
    """No warmup in T5's fine-tuning (§3.1.2: the constant rate from the first step)."""
    del cfg
    return {"warmup_ratio": 0.0}


# ------------------------------------------------------------------------------------- family contract
# (llm_jax/models/family.py)

NAME = "t5"
PRETRAINING_MODEL = T5ForConditionalGeneration
DEFAULT_OBJECTIVE = "span_corruption"
LM_KIND = "seq2seq"
# SentencePiece Unigram, <pad>=0 </s>=1 <unk>=2, no bos, sentinels <extra_id_0..99> at the top of the vocabulary
# (§3.1.4 / t5.data.preprocessors.noise_span_to_unique_sentinel), `A </s>` inputs.
TOKENIZER = T5_TOKENIZER
INPUT_FORMAT = InputFormat(pad_side="right")
# HF's `base_model_prefix`; everything but the untied output projection.
TRUNK_NAME = "transformer"
# Neuron pruning (`llm_jax.compression.pruning`): FFN width field → the FFN (`Mlp`) modules of that width.
FFN_BLOCKS = {"d_ff": ("transformer/encoder/stack/layers/block/mlp", "transformer/decoder/stack/layers/block/mlp")}
# Bias tests (`llm_jax.eval.embeddings`): the shared token table; words are read from the encoder.
TOKEN_EMBEDDING = ("shared", "embedding")
# Decoding (optional members, `llm_jax.generate`): `init_decode_state`, `decode_step`, `reorder_decode_state` and
# `stop_token_ids`, defined above; with them `text_to_text_inputs` makes text-to-text T5's way to fine-tune (§2.4:
# every task as an input text with a task prefix → a target text, trained by teacher forcing, scored by decoding).


def build_trunk(cfg: Config, kind: str, **kwargs) -> T5Model:
    """The encoder-decoder trunk; a sequence head reads the decoder at the last eos (HF
    `T5ForSequenceClassification`), token-level heads the encoder output."""
    del kind
    return T5Model(cfg, **kwargs)


def sequence_head(cfg: Config, trunk_out: Output, *, kind: str, num_outputs: int, dropout: float,
                  deterministic: bool) -> jax.Array:
    """HF `T5ClassificationHead` on the decoder output at each row's last eos (`T5ForSequenceClassification`):
    dropout → dense D → D → tanh → dropout → `out_proj`, under `classification_head`; one output per choice for
    multiple choice. Called inside the parent's compact method.

    Returns:
      `[B, num_outputs]` logits.
    """
    del kind
    return ClassificationHead(cfg, num_outputs, dropout, name="classification_head")(trunk_out.eos_hidden_BD,
                                                                                     deterministic)


def pooled_features(cfg: Config, trunk_out: Output) -> jax.Array:
    """The decoder's state at each row's last `</s>` `[B, D]` (the inputs shifted right as decoder inputs): what
    `sequence_head` feeds its new `ClassificationHead` (HF `T5ForSequenceClassification`)."""
    del cfg
    return trunk_out.eos_hidden_BD


class ClassificationHead(nn.Module):
    """dropout → dense D → D (bias) → tanh → dropout → dense D → C (bias) (HF `T5ClassificationHead`)."""

    cfg: Config
    num_outputs: int
    dropout: float

    @nn.compact
    def __call__(self, x_BD, deterministic: bool):
        cfg = self.cfg
        d = cfg.d_model
        init = _normal(cfg.initializer_range)
        x_BD = nn.Dropout(self.dropout)(x_BD, deterministic=deterministic)
        x_BD = jnp.tanh(Einsum("BD,DE->BE", (d, d), (P_EMBED, None), kernel_init=init, dtype=jnp.dtype(cfg.dtype),
                               name="dense")(x_BD))
        x_BD = nn.Dropout(self.dropout)(x_BD, deterministic=deterministic)
        return Einsum("BD,DC->BC", (d, self.num_outputs), (P_EMBED, None), kernel_init=init,
                      dtype=jnp.dtype(cfg.dtype), name="out_proj")(x_BD)


def towers(cfg: Config, seq_len: int, *, predicted_positions: int, heads: tuple[str, ...]) -> tuple[Tower, ...]:
    """The encoder over the S = `seq_len` inputs and the decoder over the T = `predicted_positions` targets, which
    cross-attends to the S encoder states and predicts every one of its positions (the span-corruption targets
    are shorter than the inputs: `objectives.span_corruption.span_lengths`); each stack ends with an RMSNorm."""
    common = dict(d_model=cfg.d_model, num_heads=cfg.num_heads, head_dim=cfg.d_kv, d_ff=cfg.d_ff,
                  vocab_size=cfg.vocab_size, embedding_tables=1, gated_ffn=cfg.is_gated, use_bias=False,
                  norm="rmsnorm", input_norm=False, final_norm=True)
    encoder = Tower(num_layers=cfg.num_layers, seq_len=seq_len, **common)
    decoder = Tower(num_layers=cfg.num_decoder_layers, seq_len=predicted_positions, memory_len=seq_len,
                    lm_positions=predicted_positions if "lm" in heads else 0, lm_transform=False, **common)
    return (encoder, decoder)


# ---------------------------------------------------------------------------------------- HF name map
# Layout kinds as in bert.py. The relative position bias lives in block 0 of each HF stack; ours is the stack's.


def _attention_map(ours: str, hf: str) -> dict[str, tuple[str, str]]:
    return {f"{ours}/query/kernel": (f"{hf}.q.weight", "linear_in_heads"),
            f"{ours}/key/kernel": (f"{hf}.k.weight", "linear_in_heads"),
            f"{ours}/value/kernel": (f"{hf}.v.weight", "linear_in_heads"),
            f"{ours}/out/kernel": (f"{hf}.o.weight", "linear_out_heads")}


def _mlp_map(ours: str, hf: str) -> dict[str, tuple[str, str]]:
    return {f"{ours}/{w}/kernel": (f"{hf}.DenseReluDense.{w}.weight", "linear") for w in ("wi", "wi_0", "wi_1", "wo")}


def _stack_map(stack: str) -> dict[str, tuple[str, str]]:
    ours = f"transformer/{stack}"
    block = f"{ours}/stack/layers/block"
    hf = f"{stack}.block.{{L}}.layer"
    out = {f"{ours}/relative_attention_bias/embedding":
           (f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight", "embed"),
           f"{ours}/final_norm/scale": (f"{stack}.final_layer_norm.weight", "vector"),
           **_attention_map(f"{block}/self_attention", f"{hf}.0.SelfAttention"),
           f"{block}/self_attention_norm/scale": (f"{hf}.0.layer_norm.weight", "vector")}
    ffn = 1
    if stack == "decoder":
        out.update(_attention_map(f"{block}/cross_attention", f"{hf}.1.EncDecAttention"))
        out[f"{block}/cross_attention_norm/scale"] = (f"{hf}.1.layer_norm.weight", "vector")
        ffn = 2
    out.update(_mlp_map(f"{block}/mlp", f"{hf}.{ffn}"))
    out[f"{block}/mlp_norm/scale"] = (f"{hf}.{ffn}.layer_norm.weight", "vector")
    return out


HF_NAME_MAP: dict[str, tuple[str, str]] = {
    "transformer/shared/embedding": ("shared.weight", "embed"),
    **_stack_map("encoder"),
    **_stack_map("decoder"),
    "lm_head/kernel": ("lm_head.weight", "linear"),
}
HF_ARCHITECTURE = "T5ForConditionalGeneration"
HF_MODEL_TYPE = "t5"
# HF's `base_model_prefix`. Our names are those of `T5ForConditionalGeneration`, which carry no prefix; checkpoints of
# `T5ForSequenceClassification` / `T5ForQuestionAnswering` hold the same trunk under `transformer.` and load too
# (their task head is reported as unexpected; the untied `lm_head` of v1.1, which they lack, is then missing).
HF_BASE_PREFIX = "transformer"
# transformers' `_tied_weights_keys`. `lm_head.weight` is a tied copy only where our config ties it (v1.0); an
# untied config (v1.1) maps it to `lm_head/kernel` of its own (`state_dict._read_view`).
HF_TIED_WEIGHTS: dict[str, str] = {
    "encoder.embed_tokens.weight": "shared.weight",
    "decoder.embed_tokens.weight": "shared.weight",
    "lm_head.weight": "shared.weight",
}
# Old checkpoints carry a relative bias in the decoder's first cross-attention, which no code reads.
HF_IGNORED: tuple[str, ...] = (r"^decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight$",)
HF_INIT_IF_MISSING: tuple[str, ...] = ()
# The untied head (v1.1) and the feed-forward projections of the chosen kind (wi for ReLU, wi_0 / wi_1 gated).
HF_CONDITIONAL_PARAMS: tuple[str, ...] = ("lm_head/", *(f"transformer/{s}/stack/layers/block/mlp/{w}/"
                                                        for s in ("encoder", "decoder") for w in ("wi", "wi_0", "wi_1")))


def config_from_hf(hf: dict[str, Any]) -> Config:
    """Our Config from a Hugging Face `config.json` dict.

    The output projection is untied (v1.1) when `tie_word_embeddings` is false (the published v1.1 configs and
    transformers 4) or `scale_decoder_outputs` is false (how transformers 5 writes the same model: it forces
    `tie_word_embeddings=true` and keeps the head untied when the checkpoint holds a different `lm_head.weight`).

    Raises:
      ValueError: a decoder-only or encoder-only configuration (`is_encoder_decoder=false`).
    """
    if hf.get("is_encoder_decoder", True) is False:
        raise ValueError("is_encoder_decoder=false: that is a T5 encoder or decoder alone; our T5 family loads the "
                         "encoder-decoder (T5ForConditionalGeneration / T5Model).")
    tied = hf.get("tie_word_embeddings", True) is not False and hf.get("scale_decoder_outputs", True) is not False
    dropout = hf.get("dropout_rate", 0.1)
    pad = hf.get("pad_token_id")
    pad = 0 if pad is None else pad
    start = hf.get("decoder_start_token_id")
    return Config(
        vocab_size=hf["vocab_size"], d_model=hf["d_model"], d_kv=hf["d_kv"], d_ff=hf["d_ff"],
        num_layers=hf["num_layers"], num_decoder_layers=hf.get("num_decoder_layers") or hf["num_layers"],
        num_heads=hf["num_heads"], relative_attention_num_buckets=hf.get("relative_attention_num_buckets", 32),
        relative_attention_max_distance=hf.get("relative_attention_max_distance", 128),
        layer_norm_epsilon=hf.get("layer_norm_epsilon", 1e-6), feed_forward_proj=hf.get("feed_forward_proj", "relu"),
        tie_word_embeddings=tied, initializer_factor=hf.get("initializer_factor", 1.0),
        n_positions=hf.get("n_positions", 512), pad_token_id=pad, eos_token_id=hf.get("eos_token_id", 1),
        decoder_start_token_id=pad if start is None else start, hidden_dropout=dropout, attention_dropout=dropout,
    ).validate()


def config_to_hf(cfg: Config) -> dict[str, Any]:
    """A Hugging Face `config.json` dict for our Config (v1.1: `tie_word_embeddings=false`, as published)."""
    return {
        "model_type": HF_MODEL_TYPE, "architectures": [HF_ARCHITECTURE], "vocab_size": cfg.vocab_size,
        "d_model": cfg.d_model, "d_kv": cfg.d_kv, "d_ff": cfg.d_ff, "num_layers": cfg.num_layers,
        "num_decoder_layers": cfg.num_decoder_layers, "num_heads": cfg.num_heads,
        "relative_attention_num_buckets": cfg.relative_attention_num_buckets,
        "relative_attention_max_distance": cfg.relative_attention_max_distance, "dropout_rate": cfg.hidden_dropout,
        "layer_norm_epsilon": cfg.layer_norm_epsilon, "initializer_factor": cfg.initializer_factor,
        "feed_forward_proj": cfg.feed_forward_proj, "tie_word_embeddings": cfg.tie_word_embeddings,
        "is_encoder_decoder": True, "n_positions": cfg.n_positions, "pad_token_id": cfg.pad_token_id,
        "eos_token_id": cfg.eos_token_id, "decoder_start_token_id": cfg.decoder_start_token_id,
    }
