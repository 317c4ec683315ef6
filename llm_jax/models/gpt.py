"""GPT-2 (Radford et al., 2019, "Language Models are Unsupervised Multitask Learners") and GPT-3 (Brown et al.,
2020, "Language Models are Few-Shot Learners"): decoder-only causal language models.

A Transformer decoder without cross-attention (Radford et al. 2018 §3.1) with learned absolute positions and an
output projection tied to the token embedding (Press & Wolf 2017). What GPT-2 changed from GPT-1 (§2.3), all here:
* pre-LN: "Layer normalization was moved to the input of each sub-block", and "an additional layer normalization
  was added after the final self-attention block" (`ln_f`);
* "a modified initialization which accounts for the accumulation on the residual path with model depth": the
  output projections of the attention and the MLP start at N(0, (0.02 / √(2L))²), two residual branches per layer;
* a 1024-token context and a byte-level BPE of 50,257 tokens whose `<|endoftext|>` ends every document.
GPT-3 (§2.1) is "the same model and architecture as GPT-2 … with the exception that we use alternating dense and
locally banded sparse attention patterns in the layers of the transformer, similar to the Sparse Transformer", with
a 2048-token context. Here that is one field, `attention_window`: with w > 0 the odd layers (1, 3, …) attend only
to the w most recent positions (themselves included) and the even ones densely; w = 0 is GPT-2. The paper publishes
neither the band width nor which layers are banded (reference/figures.md §3): the presets use w = 256, the window
of EleutherAI's GPT-Neo (its open replication of this architecture; layer 0 dense, as there).

GPT-1 (`llm_jax/models/gpt1.py`) builds on this file: it shares the attention, the MLP, the embeddings, the KV
cache and the tied head, and differs in its layer (post-LN), the missing final norm, its tokenizer and its Hugging
Face format — a different model type, so a different family file rather than a flag.

Incremental decoding: build the model with `decode=True` and `init` it on a `[B, T_max]` input; the `cache`
collection then holds every layer's keys and values (`llm_jax.layers.MultiHeadAttention`, stacked `[L, …]` by
`llm_jax.layers.Stack`) and the number of positions fed so far. Each `apply(..., mutable=["cache"])` appends its
tokens. Left-padded batches pass `mask_BT` over all T_max cache slots and their per-row `positions_BT`
(`positions_from_mask`). `init_decode_state` / `decode_step` / `reorder_decode_state` wrap this as the family's
decoder steps, which `llm_jax.generate` drives (the family contract's optional decoding members).

Parameter layout and numerics follow Hugging Face `GPT2LMHeadModel`; `HF_NAME_MAP` maps the names (the fused
`c_attn` Conv1D as three parts).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, ClassVar

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from llm_jax.data.tokenizer import GPT2_TOKENIZER
from llm_jax.flops import Tower
from llm_jax.layers import (
    Einsum,
    Embed,
    LayerNorm,
    Mlp,
    MultiHeadAttention,
    Stack,
    activation,
    padding_mask,
    select_cache_rows,
)
from llm_jax.layers.stack import SCOPE as STACK_SCOPE
from llm_jax.layers.embeddings import check_ids
from llm_jax.models.family import CommonConfig, InputFormat
from llm_jax.sharding import BATCH, EMBED, P_EMBED, P_VOCAB, SEQ, VOCAB, shard

# --------------------------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class Config(CommonConfig):
    """GPT-2/3 hyperparameters; runtime fields from `CommonConfig`.

    Names as BERT's (`hidden_size`, `num_layers`, …); HF `GPT2Config` calls them `n_embd`, `n_layer`, `n_head`,
    `n_inner`, `n_positions`, `activation_function`, `layer_norm_epsilon` (`config_from_hf` / `config_to_hf`).

    Attributes:
      attention_window: w, the band of GPT-3's locally banded layers: a query sees itself and the w − 1 positions
        before it. The odd layers are banded, the even ones dense (GPT-3 §2.1: "alternating"). 0 = every layer
        dense (GPT-2).
      eos_token_id: the end-of-text token (`<|endoftext|>`), which ends every document and a generated text:
        50256 in the published vocabulary, the tokenizer's `eod` once a run sizes the model for its tokenizer
        (`with_vocabulary`); None = not known.
    """

    vocab_size: int = 50257
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 1024
    hidden_act: str = "gelu_new"
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    attention_window: int = 0
    eos_token_id: int | None = None

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def width(self) -> int:
        """D, the width the fine-tuning heads read."""
        return self.hidden_size

    @property
    def num_token_types(self) -> int:
        """One: GPT has no token-type embeddings; pair inputs are told apart by their delimiter tokens."""
        return 1

    @property
    def max_seq_len(self) -> int:
        """The longest input the position table allows."""
        return self.max_position_embeddings

    def local_layers(self) -> np.ndarray | None:
        """`[L]` bool: which layers attend within `attention_window` (the odd ones); None when none can restrict
        anything (w = 0, or a band at least as long as the context, which is dense attention)."""
        if not self.has_banded_layers:
            return None
        return np.arange(self.num_layers) % 2 == 1

    @property
    def has_banded_layers(self) -> bool:
        """True when some layer's band is narrower than the context (what GPT-2 cannot compute)."""
        return 0 < self.attention_window < self.max_position_embeddings and self.num_layers > 1

    def with_vocabulary(self, vocab_size: int, special) -> Config:
        """This Config sized for a tokenizer: its vocabulary and end-of-text id (`special`: `SpecialIds`)."""
        eos = special.eod if special.eod is not None else special.eos
        return dataclasses.replace(self, vocab_size=vocab_size, eos_token_id=eos).validate()

    def validate(self) -> Config:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"model.hidden_size={self.hidden_size} is not divisible by model.num_heads="
                             f"{self.num_heads}; pick a head count that divides the width.")
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                     "max_position_embeddings"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be ≥ 1 (got {getattr(self, name)}).")
        if self.attention_window < 0:
            raise ValueError(f"model.attention_window={self.attention_window} must be ≥ 0 (0 = every layer dense, "
                             "GPT-2; w > 0 = GPT-3's banded odd layers).")
        if self.eos_token_id is not None and not 0 <= self.eos_token_id < self.vocab_size:
            raise ValueError(f"model.eos_token_id={self.eos_token_id} is outside the vocabulary [0, {self.vocab_size}).")
        activation(self.hidden_act)
        self.validate_runtime()
        return self


def _gpt3(layers: int, width: int, heads: int) -> Config:
    # Table 2.1: n_ctx = 2048 for every size, d_ff = 4·d_model; GPT-2's vocabulary.
    return Config(hidden_size=width, num_layers=layers, num_heads=heads, intermediate_size=4 * width,
                  max_position_embeddings=2048, attention_window=GPT3_WINDOW, eos_token_id=GPT2_EOS)


# GPT-3's band width: unpublished; GPT-Neo's window (see the module docstring).
GPT3_WINDOW = 256
# `<|endoftext|>` in GPT-2's published vocabulary (the last of its 50,257 ids), which GPT-3 reused.
GPT2_EOS = 50256

PRESETS: dict[str, Config] = {
    # Radford et al. 2019 Table 2 shapes (117M/345M/762M/1542M in the paper; the released checkpoints, which these
    # count exactly, have 124,439,808 … 1,557,611,200 parameters: reference/figures.md §1.4).
    "gpt2": Config(eos_token_id=GPT2_EOS),
    "gpt2-medium": Config(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096, eos_token_id=GPT2_EOS),
    "gpt2-large": Config(hidden_size=1280, num_layers=36, num_heads=20, intermediate_size=5120, eos_token_id=GPT2_EOS),
    "gpt2-xl": Config(hidden_size=1600, num_layers=48, num_heads=25, intermediate_size=6400, eos_token_id=GPT2_EOS),
    # Brown et al. 2020 Table 2.1. Two rows are inconsistent: XL lists 24 heads of 128 for d_model 2048, and 13B
    # d_model 5140 with 40 heads of 128. The appendix's parameter counts (Table D.1: 1,320M, 12,850M) need an
    # attention width equal to d_model, 2048 and 5120: XL keeps the head size (16 × 128) and 13B is 40 × 128 = 5120.
    "gpt3-small": _gpt3(12, 768, 12),
    "gpt3-medium": _gpt3(24, 1024, 16),
    "gpt3-large": _gpt3(24, 1536, 16),
    "gpt3-xl": _gpt3(24, 2048, 16),
    "gpt3-2.7b": _gpt3(32, 2560, 32),
    "gpt3-6.7b": _gpt3(32, 4096, 32),
    "gpt3-13b": _gpt3(40, 5120, 40),
    "gpt3-175b": _gpt3(96, 12288, 96),
    # CPU sizes (Turc et al.'s tiny/mini shapes); gpt3-tiny has one dense and one banded layer, with a band that
    # bites at the CPU recipe's 128 tokens.
    "gpt2-tiny": Config(hidden_size=128, num_layers=2, num_heads=2, intermediate_size=512),
    "gpt2-mini": Config(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024),
    "gpt3-tiny": Config(hidden_size=128, num_layers=2, num_heads=2, intermediate_size=512,
                        max_position_embeddings=2048, attention_window=32),
}

# ---------------------------------------------------------------------------------------------- modules


@flax.struct.dataclass
class Output:
    """What the GPT models return.

    Attributes:
      hidden_BTD: the last layer's output (after `ln_f` in GPT-2/3).
      pooled_BD: `hidden_BTD` at each row's last real token (where `mask_BT` is last True; the last position
        without a mask): what the sequence classifiers read (HF `GPT2ForSequenceClassification`; GPT-1 §3.3 reads
        the final token's activation). None under `decode`.
      logits_BTV: next-token logits (float32), from the LM head.
      all_hidden_LBTD: every layer's output, with `collect_hidden`.
    """

    hidden_BTD: jax.Array
    pooled_BD: jax.Array | None = None
    logits_BTV: jax.Array | None = None
    all_hidden_LBTD: jax.Array | None = None


def init(cfg) -> nn.initializers.Initializer:
    """N(0, initializer_range²): every weight of GPT-1 (§4.1) and GPT-2's others."""
    return nn.initializers.normal(cfg.initializer_range)


def residual_init(cfg) -> nn.initializers.Initializer:
    """GPT-2 §2.3: the projections that write into the residual stream start at N(0, (0.02 / √(2L))²)."""
    return nn.initializers.normal(cfg.initializer_range / math.sqrt(2 * cfg.num_layers))


def positions_from_mask(mask_BT: jax.Array) -> jax.Array:
    """Per-row positions of a left-padded batch: each row's first real token is position 0 (padding gets 0).

    Args:
      mask_BT: True on real tokens.

    Returns:
      `[B, T]` int32, `cumsum(mask) − 1` clipped at 0 (what HF's `generate` passes as `position_ids`).
    """
    return jnp.maximum(jnp.cumsum(mask_BT.astype(jnp.int32), axis=1) - 1, 0)


class Embeddings(nn.Module):
    """token + learned position embeddings → dropout (no norm, no token types); `attend` is the tied LM head."""

    cfg: Any

    def setup(self):
        cfg = self.cfg
        dtype = jnp.dtype(cfg.dtype)
        self.word_embeddings = Embed(cfg.vocab_size, cfg.hidden_size, (P_VOCAB, P_EMBED), init(cfg), dtype,
                                     field="token ids (model.vocab_size)")
        self.position_embeddings = Embed(cfg.max_position_embeddings, cfg.hidden_size, (None, P_EMBED), init(cfg),
                                         dtype, field="position ids (model.max_position_embeddings)")
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def __call__(self, tokens_BT, positions_BT, deterministic: bool):
        x_BTD = self.word_embeddings(tokens_BT) + self.position_embeddings(positions_BT)
        return shard(self.dropout(x_BTD, deterministic=deterministic), BATCH, SEQ, EMBED)

    def attend(self, x_BTD):
        """`[B, T, D]` → `[B, T, V]` logits with the token embedding as the output projection (no bias)."""
        return self.word_embeddings.attend(x_BTD)


def attention(cfg, decode: bool, out_init, name: str = "attn") -> MultiHeadAttention:
    """Causal self-attention (banded where a layer's `use_window` says so), HF's `attn`: fused q|k|v + `c_proj`."""
    return MultiHeadAttention(cfg.num_heads, cfg.head_dim, dropout_rate=cfg.attention_dropout,
                              implementation=cfg.attention_impl, kernel_init=init(cfg), out_init=out_init,
                              dtype=jnp.dtype(cfg.dtype), causal=True, decode=decode,
                              window=cfg.attention_window if cfg.has_banded_layers else None, name=name)


def mlp(cfg, out_init, name: str = "mlp") -> Mlp:
    """`c_fc` → activation → `c_proj` (HF's `mlp`)."""
    return Mlp(cfg.intermediate_size, act=cfg.hidden_act, kernel_init=init(cfg), out_init=out_init,
               dtype=jnp.dtype(cfg.dtype), name=name)


class Block(nn.Module):
    """One pre-LN decoder layer (GPT-2 §2.3): `x + Attn(LN(x))`, then `h + MLP(LN(h))`.

    `is_local`: this layer's switch for the band (a traced scalar from `Stack`'s `is_local_L`), or None.
    """

    cfg: Config
    decode: bool = False
    deterministic: bool = True

    @nn.compact
    def __call__(self, x_BTD, mask_BHTS, is_local=None):
        cfg = self.cfg
        dtype = jnp.dtype(cfg.dtype)
        drop = nn.Dropout(cfg.hidden_dropout)
        h_BTD = LayerNorm(cfg.layer_norm_eps, dtype=dtype, name="ln_1")(x_BTD)
        h_BTD = attention(cfg, self.decode, residual_init(cfg))(h_BTD, mask_BHTS=mask_BHTS, use_window=is_local,
                                                                deterministic=self.deterministic)
        x_BTD = x_BTD + drop(h_BTD, deterministic=self.deterministic)
        h_BTD = LayerNorm(cfg.layer_norm_eps, dtype=dtype, name="ln_2")(x_BTD)
        h_BTD = mlp(cfg, residual_init(cfg))(h_BTD)
        x_BTD = x_BTD + drop(h_BTD, deterministic=self.deterministic)
        return shard(x_BTD, BATCH, SEQ, EMBED)


class Decoder(nn.Module):
    """The `num_layers` layers (scanned, `llm_jax.layers.Stack`); GPT-3's per-layer band switch is scanned along."""

    cfg: Any
    block_cls: Any = Block
    decode: bool = False
    collect_hidden: bool = False

    @nn.compact
    def __call__(self, x_BTD, mask_BHTS, deterministic: bool):
        cfg = self.cfg
        local_L = cfg.local_layers()
        extra = () if local_L is None else (jnp.asarray(local_L),)
        out = Stack(self.block_cls, (("cfg", cfg), ("decode", self.decode), ("deterministic", deterministic)),
                    cfg.num_layers, remat=cfg.remat, unroll=cfg.scan_unroll, collect_hidden=self.collect_hidden,
                    scanned_args=() if local_L is None else (1,), name="stack")(x_BTD, mask_BHTS, *extra)
        return out.x, out.hidden_LBTD


class GptModel(nn.Module):
    """Embeddings → decoder layers (→ `ln_f`): the trunk of every GPT head (HF `GPT2Model`, `transformer`).

    `__call__(tokens_BT, *, segment_ids_BT, positions_BT, mask_BT, deterministic)` follows the model contract:
    * `segment_ids_BT` must be all 0 when given (no token types; checked when concrete) and is otherwise unused;
    * `positions_BT` default `0 … T−1` (under `decode`: continuing from the positions already fed); left-padded
      rows pass `positions_from_mask(mask_BT)`;
    * `mask_BT` marks real tokens as keys (under `decode`: over all T_max cache slots). Causality needs no mask;
      right padding needs none either (a padded key is never before a real query).

    Attributes:
      cfg: hyperparameters.
      decode: keep a KV cache (see the module docstring).
      collect_hidden: also return every layer's output.
    """

    cfg: Any
    decode: bool = False
    collect_hidden: bool = False

    # What a child family changes (GPT-1: its post-LN layer and no final norm).
    BLOCK: ClassVar[type] = Block
    FINAL_NORM: ClassVar[bool] = True

    def setup(self):
        cfg = self.cfg
        self.embeddings = Embeddings(cfg)
        self.decoder = Decoder(cfg, self.BLOCK, self.decode, self.collect_hidden)
        if self.FINAL_NORM:
            self.ln_f = LayerNorm(cfg.layer_norm_eps, dtype=jnp.dtype(cfg.dtype))
        if self.decode:
            self.fed = self.variable("cache", "positions_fed", lambda: jnp.zeros((), jnp.int32))

    def _positions(self, b: int, t: int, positions_BT):
        if self.decode:
            start = self.fed.value
            if not self.is_initializing():  # `init` sizes the cache; only `apply` feeds tokens
                self.fed.value = start + t
            if positions_BT is None:
                positions_BT = jnp.broadcast_to(start + jnp.arange(t, dtype=jnp.int32), (b, t))
            return positions_BT
        if t > self.cfg.max_seq_len:
            raise ValueError(f"Sequence length {t} exceeds the {self.cfg.max_seq_len} positions of "
                             f"model.max_position_embeddings; shorten data.seq_len.")
        if positions_BT is None:
            positions_BT = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
        return positions_BT

    def __call__(self, tokens_BT, *, segment_ids_BT=None, positions_BT=None, mask_BT=None,
                 deterministic: bool = True) -> Output:
        b, t = tokens_BT.shape
        if segment_ids_BT is not None and not isinstance(segment_ids_BT, jax.core.Tracer):
            check_ids(segment_ids_BT, 1, "token type (segment) ids (GPT has no token types)")
        positions_BT = self._positions(b, t, positions_BT)
        mask_BHTS = None if mask_BT is None else padding_mask(mask_BT)
        x_BTD = self.embeddings(tokens_BT, positions_BT, deterministic)
        h_BTD, all_hidden = self.decoder(x_BTD, mask_BHTS, deterministic)
        if self.FINAL_NORM:
            h_BTD = self.ln_f(h_BTD)
        pooled_BD = None
        if not self.decode:
            if mask_BT is None:
                last_B = jnp.full((b,), t - 1, jnp.int32)
            else:  # the rightmost real token, whichever side the padding is on (as HF)
                last_B = jnp.argmax(jnp.arange(t)[None, :] * mask_BT.astype(jnp.int32), axis=1)
            pooled_BD = jnp.take_along_axis(h_BTD, last_B[:, None, None], axis=1)[:, 0]
        return Output(hidden_BTD=h_BTD, pooled_BD=pooled_BD, all_hidden_LBTD=all_hidden)

    def attend(self, x_BTD):
        """The tied LM head's logits (used by `GptLMHeadModel`)."""
        return self.embeddings.attend(x_BTD)


class GptLMHeadModel(nn.Module):
    """The trunk + the LM head tied to the token embedding, no bias (HF `GPT2LMHeadModel`): the pretraining model."""

    cfg: Any
    decode: bool = False
    collect_hidden: bool = False

    TRUNK: ClassVar[type] = GptModel

    def setup(self):
        self.transformer = self.TRUNK(self.cfg, decode=self.decode, collect_hidden=self.collect_hidden)

    def __call__(self, tokens_BT, *, segment_ids_BT=None, positions_BT=None, mask_BT=None,
                 deterministic: bool = True) -> Output:
        """Hidden states `[B, T, D]` and next-token logits `[B, T, V]` (float32: the loss's log-softmax)."""
        out = self.transformer(tokens_BT, segment_ids_BT=segment_ids_BT, positions_BT=positions_BT, mask_BT=mask_BT,
                               deterministic=deterministic)
        logits_BTV = shard(self.transformer.attend(out.hidden_BTD).astype(jnp.float32), BATCH, SEQ, VOCAB)
        return out.replace(logits_BTV=logits_BTV)


# --------------------------------------------------------------------------------- incremental decoding


@flax.struct.dataclass
class DecodeState:
    """What a GPT carries from one decoding step to the next (`init_decode_state`).

    The decoding steps run the same modules as `GptLMHeadModel` — `Embeddings`, the family's `Block`, `ln_f`, the
    tied head — but apply the layers one by one with weights sliced once per generation, instead of through the
    layer scan. Why: XLA:CPU copies each layer's weights out of the stacked `[L, …]` params at every step of a
    scan, and transposes the `[V, D]` token embedding for the head at every step — with both done once, a token of
    a 6 × 256 GPT-2 at batch 1 took 3.6 ms instead of 9 (`benchmarks/generate.py`).

    Attributes:
      layers: each layer's params (a tuple of L trees, sliced from the stacked ones).
      caches: each layer's `cache` collection (keys and values `[B, S_max, H, K]`, the write index).
      mask_BS: `[B, S_max]` bool, the keys a row may attend to: its real prompt tokens (left padding is False) and
        every slot after the prompt, which the generated tokens fill.
      position_B: `[B]` int32, the position of each row's next token: its prompt length, then one more per step
        (a left-padded row counts from its first real token, as `positions_from_mask` and Hugging Face do).
      head_DV: the tied LM head's table, transposed once (`[D, V]`, compute dtype).
    """

    layers: tuple
    caches: tuple
    mask_BS: jax.Array
    position_B: jax.Array
    head_DV: jax.Array


def _forward(cfg, model_cls, params, layers, caches, tokens_BT, positions_BT, mask_BS):
    """`GptModel.__call__` under `decode=True`, layer by layer: the last hidden states `[B, T, D]` and the new caches.
    A banded layer's switch is a Python bool here (`Config.local_layers`), so each layer compiles its own pattern."""
    trunk = model_cls.TRUNK
    x_BTD = Embeddings(cfg).apply({"params": params["transformer"]["embeddings"]}, tokens_BT, positions_BT, True)
    mask_BHTS = padding_mask(mask_BS)
    local_L = cfg.local_layers()
    block = trunk.BLOCK(cfg, decode=True)
    new_caches = []
    for i, (layer, cache) in enumerate(zip(layers, caches)):
        is_local = None if local_L is None else bool(local_L[i])
        x_BTD, variables = block.apply({"params": layer, "cache": cache}, x_BTD, mask_BHTS, is_local,
                                       mutable=["cache"])
        new_caches.append(variables["cache"])
    if trunk.FINAL_NORM:
        x_BTD = LayerNorm(cfg.layer_norm_eps, dtype=jnp.dtype(cfg.dtype)).apply(
            {"params": params["transformer"]["ln_f"]}, x_BTD)
    return x_BTD, tuple(new_caches)


def _logits(cfg, h_BD, head_DV) -> jax.Array:
    """`[B, V]` float32 next-token logits from the last hidden states (the tied head, as `Embed.attend`)."""
    return jnp.dot(h_BD.astype(jnp.dtype(cfg.dtype)), head_DV).astype(jnp.float32)


def init_decode_state(cfg: Config, params, tokens_BT: jax.Array, mask_BT: jax.Array, max_new_tokens: int, *,
                      model_cls: type = GptLMHeadModel) -> tuple[DecodeState, jax.Array]:
    """The prefill: KV caches for the prompt plus `max_new_tokens` − 1 tokens, filled with the prompt.

    Traceable (the decoding loop jits it); the caches start as zeros of the shapes `init` would give, and the head
    runs at the last position only.

    Args:
      cfg: the model's Config.
      params: its params (`GptLMHeadModel`'s tree).
      tokens_BT: int `[B, T]` prompts, left-padded (every row's last token is real).
      mask_BT: bool `[B, T]`, True on real tokens.
      max_new_tokens: how many tokens will be generated; the last one is never fed back, so the caches hold
        S_max = T + max_new_tokens − 1 positions.
      model_cls: the LM module whose trunk's `BLOCK` and `FINAL_NORM` to run (GPT-1 passes its own).

    Returns:
      `(state, logits_BV)`: the state before the first generated token, and that token's float32 logits.

    Raises:
      ValueError: S_max beyond `max_position_embeddings` (at trace time, before anything compiles).
    """
    b, t = tokens_BT.shape
    s_max = t + max_new_tokens - 1
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be ≥ 1.")
    if s_max > cfg.max_position_embeddings:
        raise ValueError(f"A {t}-token prompt and max_new_tokens={max_new_tokens} need {s_max} positions; the model "
                         f"has {cfg.max_position_embeddings} (model.max_position_embeddings): shorten the prompt or "
                         f"generate fewer tokens.")
    stacked = params["transformer"]["decoder"]["stack"][STACK_SCOPE]["block"]
    layers = tuple(jax.tree.map(lambda w, i=i: w[i], stacked) for i in range(cfg.num_layers))
    block = model_cls.TRUNK.BLOCK(cfg, decode=True)
    x_shape = jax.ShapeDtypeStruct((b, s_max, cfg.hidden_size), jnp.dtype(cfg.dtype))
    shapes = jax.eval_shape(block.init, jax.random.key(0), x_shape, None)["cache"]
    caches = tuple(jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes) for _ in range(cfg.num_layers))
    mask_BS = jnp.concatenate([mask_BT.astype(bool), jnp.ones((b, s_max - t), bool)], axis=1)
    positions_BT = positions_from_mask(mask_BT)
    h_BTD, caches = _forward(cfg, model_cls, params, layers, caches, tokens_BT, positions_BT, mask_BS)
    table_VD = params["transformer"]["embeddings"]["word_embeddings"]["embedding"]
    head_DV = jnp.asarray(table_VD, jnp.dtype(cfg.dtype)).T
    state = DecodeState(layers=layers, caches=caches, mask_BS=mask_BS, position_B=positions_BT[:, -1] + 1,
                        head_DV=head_DV)
    return state, _logits(cfg, h_BTD[:, -1], head_DV)


def decode_step(cfg: Config, params, state: DecodeState, tokens_B: jax.Array, *,
                model_cls: type = GptLMHeadModel) -> tuple[DecodeState, jax.Array]:
    """Feeds one token per row (`[B]` int) at each row's next position; returns the new state and the next
    token's float32 logits `[B, V]`."""
    h_B1D, caches = _forward(cfg, model_cls, params, state.layers, state.caches, tokens_B[:, None],
                             state.position_B[:, None], state.mask_BS)
    state = state.replace(caches=caches, position_B=state.position_B + 1)
    return state, _logits(cfg, h_B1D[:, 0], state.head_DV)


def reorder_decode_state(state: DecodeState, rows_R: jax.Array) -> DecodeState:
    """The state of rows `rows_R` (`[R]` int, repeats allowed): beam search's expansion and reordering."""
    return state.replace(caches=select_cache_rows(state.caches, rows_R), mask_BS=state.mask_BS[rows_R],
                         position_B=state.position_B[rows_R])


def stop_token_ids(cfg: Config) -> tuple[int, ...]:
    """The ids that end a generated text: `<|endoftext|>` (`eos_token_id`), when the Config knows it."""
    return () if cfg.eos_token_id is None else (cfg.eos_token_id,)


def decoding_for(model_cls: type):
    """`(init_decode_state, decode_step)` bound to a child family's LM module (GPT-1's)."""
    return (functools.partial(init_decode_state, model_cls=model_cls),
            functools.partial(decode_step, model_cls=model_cls))


# ------------------------------------------------------------------------------------- family contract
# (llm_jax/models/family.py)

NAME = "gpt"
PRETRAINING_MODEL = GptLMHeadModel
DEFAULT_OBJECTIVE = "clm"
LM_KIND = "causal"
# Byte-level BPE with <|endoftext|> as the only special token (id 0 here, 50256 in the published vocabulary).
TOKENIZER = GPT2_TOKENIZER
# Why right padding: causal attention never lets a real token see a later pad, so a right-padded row computes
# exactly what the unpadded one does, at the positions it was pretrained at (0, 1, …); the classifier finds the
# last real token from the mask (`Output.pooled_BD`), as HF's GPT2ForSequenceClassification does. Generation
# left-pads its prompts itself (per-row positions, `positions_from_mask`).
# Task inputs are plain text: the classifier reads the last real token, no classifier token is added (HF's
# GPT2ForSequenceClassification). Neither GPT-2 nor GPT-3 was fine-tuned in its paper, so nothing prescribes a pair
# format; the two texts of a pair are joined by <|endoftext|>, the delimiter GPT-2/3 saw between documents, rather
# than run together (transformers' GPT-2 tokenizer concatenates them). Pads with <|endoftext|> too (no pad token;
# padded positions are masked).
INPUT_FORMAT = InputFormat(pad_side="right", classifier_token=False, task_tokens=(("sep", TOKENIZER.roles["eod"]),),
                           template="sep_between")
TRUNK_NAME = "transformer"
# Neuron pruning (`llm_jax.compression.pruning`): FFN width field → the FFN (`Mlp`) modules of that width.
FFN_BLOCKS = {"intermediate_size": ("transformer/decoder/stack/layers/block/mlp",)}
# Bias tests (`llm_jax.eval.embeddings`): the token table, and the last real token's state (`pooled_features`).
TOKEN_EMBEDDING = ("embeddings", "word_embeddings", "embedding")
# Decoding (optional members, `llm_jax.generate`): `init_decode_state`, `decode_step`, `reorder_decode_state` and
# `stop_token_ids`, defined above.


def build_trunk(cfg: Config, kind: str, **kwargs) -> GptModel:
    """The decoder every fine-tuning head sits on (the same for every kind)."""
    del kind
    return GptModel(cfg, **kwargs)


def sequence_head(cfg, trunk_out: Output, *, kind: str, num_outputs: int, dropout: float,
                  deterministic: bool) -> jax.Array:
    """The last real token's state → dropout → `score` (dense, no bias): HF `GPT2ForSequenceClassification` (which
    has no dropout) and GPT-1 §3.3 (a linear layer on the final token's activation, "dropout to the classifier with
    a rate of 0.1", §4.1). Multiple choice scores each (context, choice) row the same way. Called inside the
    parent's compact method.

    Returns:
      `[B, num_outputs]` logits.
    """
    del kind
    x_BD = nn.Dropout(dropout)(trunk_out.pooled_BD, deterministic=deterministic)
    return Einsum("BD,DC->BC", (cfg.hidden_size, num_outputs), (P_EMBED, None), use_bias=False, kernel_init=init(cfg),
                  dtype=jnp.dtype(cfg.dtype), name="score")(x_BD)


def pooled_features(cfg, trunk_out: Output) -> jax.Array:
    """The last real token's state `[B, D]` (after `ln_f`): what `sequence_head` feeds its new `score` layer."""
    del cfg
    return trunk_out.pooled_BD


def decoder_tower(cfg, seq_len: int, predicted_positions: int, *, final_norm: bool) -> Tower:
    """One decoder with two embedding tables, no input norm, the LM head (tied, no bias) at every predicted
    position; GPT-3's banded layers attend over their window (GPT-1 builds on it without the final norm)."""
    if seq_len > cfg.max_position_embeddings:
        raise ValueError(f"seq_len={seq_len} exceeds model.max_position_embeddings={cfg.max_position_embeddings}.")
    local_L = cfg.local_layers()
    return Tower(
        num_layers=cfg.num_layers, d_model=cfg.hidden_size, num_heads=cfg.num_heads, head_dim=cfg.head_dim,
        d_ff=cfg.intermediate_size, vocab_size=cfg.vocab_size, seq_len=seq_len, embedding_tables=2,
        input_norm=False, final_norm=final_norm, lm_positions=min(predicted_positions, seq_len), lm_transform=False,
        lm_bias=False, attention_window=0 if local_L is None else cfg.attention_window,
        windowed_layers=0 if local_L is None else int(local_L.sum()))


def towers(cfg: Config, seq_len: int, *, predicted_positions: int, heads: tuple[str, ...]) -> tuple[Tower, ...]:
    """GPT-2/3's decoder with `ln_f` (the LM head is the only head)."""
    del heads
    return (decoder_tower(cfg, seq_len, predicted_positions, final_norm=True),)


# ---------------------------------------------------------------------------------------- HF name map
# Layouts (llm_jax.interop.layouts): transformers' Conv1D keeps [in, out], our orientation: "conv1d" for the MLP,
# "conv1d_in_heads" ([D, H*K] → [D, H, K]) for q, k, v as parts 0, 1, 2 of the fused `c_attn`, "bias_heads" for
# their parts of its bias, "conv1d_out_heads" ([H*K, D] → [H, K, D]) for `attn.c_proj`.


def layer_map(hf_layer: str, ln_1: str = "ln_1", ln_2: str = "ln_2") -> dict[str, tuple]:
    """Our per-layer params → HF names of one GPT layer (`hf_layer` like `transformer.h.{L}`); GPT-1 and GPT-2 name
    their layers alike."""
    ours = "transformer/decoder/stack/layers/block"
    out: dict[str, tuple] = {}
    for i, proj in enumerate(("query", "key", "value")):
        out[f"{ours}/attn/{proj}/kernel"] = (f"{hf_layer}.attn.c_attn.weight", "conv1d_in_heads", (i, 3))
        out[f"{ours}/attn/{proj}/bias"] = (f"{hf_layer}.attn.c_attn.bias", "bias_heads", (i, 3))
    out.update({
        f"{ours}/attn/out/kernel": (f"{hf_layer}.attn.c_proj.weight", "conv1d_out_heads"),
        f"{ours}/attn/out/bias": (f"{hf_layer}.attn.c_proj.bias", "vector"),
        f"{ours}/ln_1/scale": (f"{hf_layer}.{ln_1}.weight", "vector"),
        f"{ours}/ln_1/bias": (f"{hf_layer}.{ln_1}.bias", "vector"),
        f"{ours}/mlp/wi/kernel": (f"{hf_layer}.mlp.c_fc.weight", "conv1d"),
        f"{ours}/mlp/wi/bias": (f"{hf_layer}.mlp.c_fc.bias", "vector"),
        f"{ours}/mlp/wo/kernel": (f"{hf_layer}.mlp.c_proj.weight", "conv1d"),
        f"{ours}/mlp/wo/bias": (f"{hf_layer}.mlp.c_proj.bias", "vector"),
        f"{ours}/ln_2/scale": (f"{hf_layer}.{ln_2}.weight", "vector"),
        f"{ours}/ln_2/bias": (f"{hf_layer}.{ln_2}.bias", "vector"),
    })
    return out


HF_NAME_MAP: dict[str, tuple] = {
    "transformer/embeddings/word_embeddings/embedding": ("transformer.wte.weight", "embed"),
    "transformer/embeddings/position_embeddings/embedding": ("transformer.wpe.weight", "embed"),
    **layer_map("transformer.h.{L}"),
    "transformer/ln_f/scale": ("transformer.ln_f.weight", "vector"),
    "transformer/ln_f/bias": ("transformer.ln_f.bias", "vector"),
}
HF_ARCHITECTURE = "GPT2LMHeadModel"
HF_MODEL_TYPE = "gpt2"
HF_BASE_PREFIX = "transformer"
HF_TIED_WEIGHTS: dict[str, str] = {"lm_head.weight": "transformer.wte.weight"}
# The causal-mask buffers older transformers saved in every layer (`attn.bias`, `attn.masked_bias`).
HF_IGNORED: tuple[str, ...] = (r"(^|\.)h\.\d+\.attn\.(bias|masked_bias)$",)
HF_INIT_IF_MISSING: tuple[str, ...] = ()


def _refuse(hf: dict[str, Any], key: str, want, why: str) -> None:
    if key in hf and hf[key] is not None and hf[key] != want:
        raise ValueError(f"{key}={hf[key]!r} is not supported: {why}.")


def config_from_hf(hf: dict[str, Any]) -> Config:
    """Our Config from a Hugging Face `GPT2Config` dict (`embd_pdrop` is taken as `resid_pdrop`, which our
    embeddings' dropout shares).

    Raises:
      ValueError: settings that change the computation in ways this model does not implement.
    """
    _refuse(hf, "scale_attn_weights", True, "our attention always scales the scores by 1/√(head size)")
    _refuse(hf, "scale_attn_by_inverse_layer_idx", False, "our attention does not scale scores by 1/(layer + 1)")
    _refuse(hf, "add_cross_attention", False, "our GPT has no cross-attention (a decoder-only LM)")
    _refuse(hf, "tie_word_embeddings", True, "our GPT ties the LM head to the token embedding")
    width = hf["n_embd"]
    return Config(
        vocab_size=hf["vocab_size"], hidden_size=width, num_layers=hf["n_layer"], num_heads=hf["n_head"],
        intermediate_size=hf.get("n_inner") or 4 * width, max_position_embeddings=hf["n_positions"],
        hidden_act=hf.get("activation_function", "gelu_new"), layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        initializer_range=hf.get("initializer_range", 0.02), hidden_dropout=hf.get("resid_pdrop", 0.1),
        attention_dropout=hf.get("attn_pdrop", 0.1), eos_token_id=eos_from_hf(hf),
    ).validate()


def eos_from_hf(hf: dict[str, Any]) -> int | None:
    """`eos_token_id`, or None when it is not an id of the vocabulary: GPT2Config's default 50256 stays in the
    configs of small models (transformers only warns), and it changes no computation."""
    eos = hf.get("eos_token_id")
    return eos if isinstance(eos, int) and 0 <= eos < hf["vocab_size"] else None


def config_to_hf(cfg: Config) -> dict[str, Any]:
    """A Hugging Face `GPT2Config` dict for our Config.

    Raises:
      ValueError: GPT-3's banded layers, which no transformers model computes as we do: GPT-2 attends densely,
        and GPT-Neo's local layers come without the 1/√d score scaling and the q/k/v biases.
    """
    if cfg.has_banded_layers:
        raise ValueError(f"model.attention_window={cfg.attention_window}: GPT-3's locally banded layers cannot be "
                         f"written as a Hugging Face GPT-2 checkpoint (GPT-2 attends densely in every layer); only "
                         f"a dense model (attention_window=0) exports.")
    return {
        "model_type": HF_MODEL_TYPE, "architectures": [HF_ARCHITECTURE], "vocab_size": cfg.vocab_size,
        "n_embd": cfg.hidden_size, "n_layer": cfg.num_layers, "n_head": cfg.num_heads,
        "n_inner": cfg.intermediate_size, "n_positions": cfg.max_position_embeddings,
        "activation_function": cfg.hidden_act, "layer_norm_epsilon": cfg.layer_norm_eps,
        "initializer_range": cfg.initializer_range, "resid_pdrop": cfg.hidden_dropout,
        "embd_pdrop": cfg.hidden_dropout, "attn_pdrop": cfg.attention_dropout, "scale_attn_weights": True,
        "bos_token_id": cfg.eos_token_id, "eos_token_id": cfg.eos_token_id, "tie_word_embeddings": True,
    }
