"""Transformer-XL (Dai et al., 2019, "Transformer-XL: Attentive Language Models Beyond a Fixed-Length Context").

A decoder-only language model that reads a long text segment by segment and lets each segment attend to a memory
of the previous ones:
* **segment-level recurrence** (§3.2): layer l of segment τ+1 attends to `[SG(m^{l−1}_τ) ∘ h^{l−1}_{τ+1}]`, the
  cached inputs of layer l over the last `mem_len` positions (stop-gradient) followed by the segment's own; the new
  memory is the last `mem_len` of that concatenation (`Stack(collect_inputs=True)` returns each layer's input);
* **relative positional encodings** (§3.3): no absolute positions anywhere; the scores
  `(q_i + u)·k_j + (q_i + v)·W_R R_{i−j}` use fixed sinusoids R of the distance, projected per layer, with the
  content and position biases u, v per layer (`untie_r`, the WikiText-103 models) or shared across layers, and
  the `rel_shift` trick (`llm_jax.layers.relative`); `clamp_len` caps distances, `same_length` makes every query
  see the same number of keys (the paper's evaluation setting);
* post-LN blocks: `LN(x + Attn(x))`, then `LN(h + FF(h))` with a ReLU feed-forward;
* adaptive input embeddings and the adaptive softmax (`cutoffs`, `div_val`; `llm_jax.layers.adaptive`) tied
  to each other for WikiText-103's 267,735 words; with no cutoffs, a plain softmax tied to the embedding.

The model call is the contract's with the memory explicit:

    out = TransfoXLLMHeadModel(cfg).apply({"params": p}, tokens_BT, labels_BT=labels_BT, memory=memory)
    out.nll_BT      # −log p(labels_BT[b, t] | tokens ≤ t and the memory), nats, float32
    out.memory      # [B, L, M', D] the next segment's memory (M' = min(mem_len, M + T)); None when mem_len = 0

`memory=None` means no memory (the first segment attends to itself only); a training run starts its carried memory
from zeros `[B, L, mem_len, D]` (`Config.init_memory`), as the original TensorFlow code and Hugging Face's
`init_mems` do, so that every step has the same shapes. Without `labels_BT` the output has every word's
log-probability (`log_probs_BTV`).

Parameter layout and numerics follow transformers 4.37.2's `TransfoXLLMHeadModel` (the last release whose model
runs; 5.x has none): `HF_NAME_MAP` maps the names, parity is tested against fixtures written with it
(`tests/fixtures/make_transfo_xl_fixtures.py`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from llm_jax.data.tokenizer import TRANSFO_XL_TOKENIZER
from llm_jax.flops import Tower
from llm_jax.layers import Einsum, LayerNorm, Mlp, RelativeAttention, Stack, sinusoid_positions
from llm_jax.layers.adaptive import AdaptiveEmbedding, AdaptiveSoftmax, cluster_bounds, cluster_widths
from llm_jax.layers.embeddings import check_ids
from llm_jax.models.family import CommonConfig, InputFormat
from llm_jax.sharding import BATCH, EMBED, P_EMBED, P_HEADS, P_KV, SEQ, shard

# Relative positions put no bound on the length (HF: "one of the few models that has no sequence length limit");
# what the trainer and the tokenizer export read as the longest input.
UNBOUNDED_LENGTH = 1 << 30

# --------------------------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class Config(CommonConfig):
    """Transformer-XL hyperparameters; runtime fields from `CommonConfig`.

    Names as GPT's; Hugging Face `TransfoXLConfig` calls them `d_model`, `d_embed`, `n_layer`, `n_head`, `d_head`,
    `d_inner`, `dropout`, `dropatt`, `init_std`, `layer_norm_epsilon` (`config_from_hf` / `config_to_hf`).

    Attributes:
      embedding_size: E, the width of cluster 0's embedding table (HF `d_embed`); projected to D where it differs
        (and always with `div_val` > 1).
      cutoffs: the adaptive clusters' boundaries (empty: one plain softmax).
      div_val: cluster i's width is `E // div_val^i`.
      tie_word_embeddings: the softmax's weights are the embedding tables.
      tie_projs: per cluster, the softmax's projection is the embedding's (HF `tie_projs`; wt103: all but the first).
      untie_r: u and v per layer (True) or shared by all layers.
      mem_len: positions of memory kept per layer (0 = none).
      clamp_len: distances beyond it use its sinusoid (≤ 0 = off).
      same_length: every query attends to the same number of keys (Dai et al. §3.3's evaluation setting).
      proj_init_std: N(0, σ²) of the adaptive projections (HF `proj_init_std`).
      eos_token_id: `<eos>`, which ends every line of the corpus.
    """

    vocab_size: int = 267735
    cutoffs: tuple[int, ...] = (20000, 40000, 200000)
    hidden_size: int = 410
    embedding_size: int = 410
    num_layers: int = 16
    num_heads: int = 10
    head_dim: int = 41
    intermediate_size: int = 2100
    div_val: int = 1
    tie_word_embeddings: bool = True
    tie_projs: tuple[bool, ...] = (False, True, True, True)
    untie_r: bool = True
    mem_len: int = 150
    clamp_len: int = -1
    same_length: bool = False
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    proj_init_std: float = 0.01
    eos_token_id: int | None = 0
    attention_dropout: float = 0.0  # dropatt (wt103 base: 0)

    @property
    def width(self) -> int:
        return self.hidden_size

    @property
    def num_token_types(self) -> int:
        """One: no token types."""
        return 1

    @property
    def max_seq_len(self) -> int:
        """No limit from positions (relative sinusoids of any distance)."""
        return UNBOUNDED_LENGTH

    def init_memory(self, batch_size: int) -> dict[str, jax.Array]:
        """The carried state a segment-recurrent objective starts from: `{"memory": zeros [B, L, mem_len, D]}`
        (float32; `{}` when mem_len = 0)."""
        if not self.mem_len:
            return {}
        return {"memory": jnp.zeros((batch_size, self.num_layers, self.mem_len, self.hidden_size), jnp.float32)}

    def with_memory(self, *, mem_len: int, clamp_len: int | None = None, same_length: bool | None = None) -> Config:
        """This Config with another memory length (and, when given, `clamp_len` / `same_length`): evaluation
        settings, which change no parameter (`llm_jax.eval.recurrent`)."""
        return dataclasses.replace(self, mem_len=mem_len,
                                   clamp_len=self.clamp_len if clamp_len is None else clamp_len,
                                   same_length=self.same_length if same_length is None else same_length).validate()

    def with_vocabulary(self, vocab_size: int, special) -> Config:
        """This Config sized for a tokenizer: its vocabulary, `<eos>` id, and the cutoffs that still fit inside it
        (a smaller word-level vocabulary than the preset's keeps its first clusters)."""
        cutoffs = tuple(c for c in self.cutoffs if c < vocab_size)
        eos = special.eos if special.eos is not None else special.eod
        return dataclasses.replace(self, vocab_size=vocab_size, eos_token_id=eos, cutoffs=cutoffs,
                                   tie_projs=tuple(self.tie_projs[:len(cutoffs) + 1])).validate()

    def validate(self) -> Config:
        for name in ("vocab_size", "hidden_size", "embedding_size", "num_layers", "num_heads", "head_dim",
                     "intermediate_size", "div_val"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be ≥ 1 (got {getattr(self, name)}).")
        if self.hidden_size % 2:
            raise ValueError(f"model.hidden_size={self.hidden_size} must be even (sin and cos halves of the relative "
                             "position sinusoids).")
        cluster_bounds(self.vocab_size, self.cutoffs)
        if len(self.tie_projs) != len(self.cutoffs) + 1:
            raise ValueError(f"model.tie_projs has {len(self.tie_projs)} entries for {len(self.cutoffs) + 1} clusters "
                             f"(cutoffs {list(self.cutoffs)}); give one per cluster.")
        if min(cluster_widths(self.embedding_size, self.div_val, len(self.cutoffs) + 1)) < 1:
            raise ValueError(f"model.div_val={self.div_val} leaves a cluster of width 0 from embedding_size="
                             f"{self.embedding_size}; use a smaller div_val or fewer cutoffs.")
        if self.mem_len < 0:
            raise ValueError(f"model.mem_len={self.mem_len} must be ≥ 0 (0 = no memory).")
        if self.eos_token_id is not None and not 0 <= self.eos_token_id < self.vocab_size:
            raise ValueError(f"model.eos_token_id={self.eos_token_id} is outside the vocabulary [0, {self.vocab_size}).")
        self.validate_runtime()
        return self


WT103_CUTOFFS = (20000, 40000, 200000)
PRESETS: dict[str, Config] = {
    # Dai et al. 2019 §4 / Table 1 and the original run_wt103_{base,large}.sh (reference/figures.md §2): memory
    # length as trained (evaluation uses 640 / clamp 400 for base, 1600 / clamp 1000 for large, with same_length).
    # Base ("Standard", 151M): one 410-wide table, tied softmax; 151,119,838 parameters as TransfoXLLMHeadModel.
    "transfo-xl-wt103-base": Config(),
    # Large (the published `transfo-xl-wt103`, 285,205,322 parameters; the paper says 257M): div_val 4.
    "transfo-xl-wt103-large": Config(hidden_size=1024, embedding_size=1024, num_layers=18, num_heads=16, head_dim=64,
                                     intermediate_size=4096, div_val=4, mem_len=384, hidden_dropout=0.2,
                                     attention_dropout=0.2),
    # CPU sizes: a plain tied softmax (small vocabularies) and a two-cluster adaptive one.
    "transfo-xl-tiny": Config(vocab_size=8000, cutoffs=(), tie_projs=(False,), hidden_size=128, embedding_size=128,
                              num_layers=2, num_heads=2, head_dim=64, intermediate_size=512, mem_len=64),
    "transfo-xl-mini": Config(vocab_size=8000, cutoffs=(2000, 4000), tie_projs=(False, True, True), hidden_size=256,
                              embedding_size=256, num_layers=4, num_heads=4, head_dim=64, intermediate_size=1024,
                              div_val=2, mem_len=128),
}

# ---------------------------------------------------------------------------------------------- modules


@flax.struct.dataclass
class Output:
    """What the Transformer-XL models return.

    Attributes:
      hidden_BTD: the last layer's output.
      memory: the next segment's memory `[B, L, M', D]` (float32, no gradient), None when `mem_len` = 0.
      pooled_BD: `hidden_BTD` at each row's last real token (the sequence classifiers read it).
      nll_BT: with labels, `−log p(label)` per position (nats, float32).
      log_probs_BTV: without labels, every word's log-probability (float32).
    """

    hidden_BTD: jax.Array
    memory: jax.Array | None = None
    pooled_BD: jax.Array | None = None
    nll_BT: jax.Array | None = None
    log_probs_BTV: jax.Array | None = None


def init(cfg) -> nn.initializers.Initializer:
    """N(0, init_std²): every weight of the original `init="normal"`."""
    return nn.initializers.normal(cfg.initializer_range)


def attention_mask(t: int, m: int, mem_len: int, same_length: bool) -> jax.Array:
    """`[1, 1, T, M + T]` True where query i may attend key j: the memory and the causal past; with `same_length`
    only the last `mem_len + 1` keys ending at i (transformers 4.37's `dec_attn_mask`, which uses the configured
    `mem_len`, not M).
    """
    k = m + t
    i, j = np.arange(t)[:, None], np.arange(k)[None, :]
    masked = j > i + m  # triu(ones, 1 + M)
    if same_length:
        mask_len = k - mem_len
        shift = t - mask_len if mask_len > 0 else t
        masked |= j <= i - shift  # tril(ones, −shift)
    return jnp.asarray(~masked)[None, None]


class Block(nn.Module):
    """One post-LN layer: `LN(x + Drop(RelAttn(x, memory)))`, then `LN(h + Drop(FF(h)))` (HF
    `RelPartialLearnableDecoderLayer`). Owns u, v when they are per layer (`untie_r`)."""

    cfg: Config
    deterministic: bool = True

    @nn.compact
    def __call__(self, x_BTD, r_RD, mask_BHTS, u_HK=None, v_HK=None, memory_BMD=None):
        cfg = self.cfg
        dtype = jnp.dtype(cfg.dtype)
        if cfg.untie_r:
            bias = nn.with_logical_partitioning(init(cfg), (P_HEADS, P_KV))
            u_HK = self.param("r_w_bias", bias, (cfg.num_heads, cfg.head_dim), jnp.float32)
            v_HK = self.param("r_r_bias", bias, (cfg.num_heads, cfg.head_dim), jnp.float32)
        drop = nn.Dropout(cfg.hidden_dropout)
        h_BTD = RelativeAttention(cfg.num_heads, cfg.head_dim, dropout_rate=cfg.attention_dropout,
                                  kernel_init=init(cfg), dtype=dtype, name="attn")(
            x_BTD, r_RD=r_RD, u_HK=u_HK, v_HK=v_HK, mems_BMD=memory_BMD, mask_BHTS=mask_BHTS,
            deterministic=self.deterministic)
        x_BTD = LayerNorm(cfg.layer_norm_eps, dtype=dtype, name="attn_norm")(
            x_BTD + drop(h_BTD, deterministic=self.deterministic))
        h_BTD = Mlp(cfg.intermediate_size, act="relu", dropout_rate=cfg.hidden_dropout, kernel_init=init(cfg),
                    dtype=dtype, name="ff")(x_BTD, deterministic=self.deterministic)
        x_BTD = LayerNorm(cfg.layer_norm_eps, dtype=dtype, name="ff_norm")(
            x_BTD + drop(h_BTD, deterministic=self.deterministic))
        return shard(x_BTD, BATCH, SEQ, EMBED)


class Decoder(nn.Module):
    """The `num_layers` layers (scanned, `llm_jax.layers.Stack`), each fed its slice of the memory and returning
    its input (the next memory)."""

    cfg: Any

    @nn.compact
    def __call__(self, x_BTD, r_RD, mask_BHTS, shared: tuple, extra: dict, deterministic: bool):
        cfg = self.cfg
        # The memory travels as `memory_BMD`, stacked `[L, B, M, D]`: the scan hands each layer its `[B, M, D]`.
        return Stack(Block, (("cfg", cfg), ("deterministic", deterministic)), cfg.num_layers, remat=cfg.remat,
                     unroll=cfg.scan_unroll, collect_inputs=bool(cfg.mem_len), scanned_args=("memory_BMD",),
                     name="stack")(x_BTD, r_RD, mask_BHTS, *shared, **extra)


class TransfoXLModel(nn.Module):
    """Adaptive embeddings → L relative-attention layers with memory (HF `TransfoXLModel`, `transformer`).

    `__call__(tokens_BT, *, memory=None, segment_ids_BT=None, positions_BT=None, mask_BT=None, deterministic)`:
    * `memory`: `[B, L, M, D]` from the previous segment, or None (no memory); M may differ from `mem_len`;
    * `segment_ids_BT` must be all 0 when given; `positions_BT` must be None (positions are relative);
    * `mask_BT`: True on real tokens; a padded key is hidden from every query (the memory is always real).
    Returns `Output(hidden_BTD, memory, pooled_BD)`.
    """

    cfg: Any

    def setup(self):
        cfg = self.cfg
        self.word_emb = AdaptiveEmbedding(cfg.vocab_size, cfg.embedding_size, cfg.hidden_size, tuple(cfg.cutoffs),
                                          cfg.div_val, cfg.initializer_range, cfg.proj_init_std, jnp.dtype(cfg.dtype))
        if not cfg.untie_r:
            bias = nn.with_logical_partitioning(init(cfg), (P_HEADS, P_KV))
            self.r_w_bias = self.param("r_w_bias", bias, (cfg.num_heads, cfg.head_dim), jnp.float32)
            self.r_r_bias = self.param("r_r_bias", bias, (cfg.num_heads, cfg.head_dim), jnp.float32)
        self.drop = nn.Dropout(cfg.hidden_dropout)
        self.decoder = Decoder(cfg)

    def __call__(self, tokens_BT, *, memory=None, segment_ids_BT=None, positions_BT=None, mask_BT=None,
                 deterministic: bool = True) -> Output:
        cfg = self.cfg
        b, t = tokens_BT.shape
        if positions_BT is not None:
            raise ValueError("Transformer-XL takes no positions_BT: its positions are relative distances; leave it out.")
        if segment_ids_BT is not None and not isinstance(segment_ids_BT, jax.core.Tracer):
            check_ids(segment_ids_BT, 1, "token type (segment) ids (Transformer-XL has no token types)")
        m = 0 if memory is None else memory.shape[2]
        if memory is not None and memory.shape[:2] + memory.shape[3:] != (b, cfg.num_layers, cfg.hidden_size):
            raise ValueError(f"memory has shape {memory.shape}; a batch of {b} needs [B={b}, L={cfg.num_layers}, M, "
                             f"D={cfg.hidden_size}] (the previous segment's out.memory).")
        mask_BHTS = attention_mask(t, m, cfg.mem_len, cfg.same_length)
        if mask_BT is not None:
            keys_BS = jnp.concatenate([jnp.ones((b, m), bool), mask_BT.astype(bool)], axis=1)
            mask_BHTS = mask_BHTS & keys_BS[:, None, None, :]
        x_BTD = shard(self.drop(self.word_emb(tokens_BT), deterministic=deterministic), BATCH, SEQ, EMBED)
        r_RD = sinusoid_positions(m + t, t, cfg.hidden_size, clamp_len=cfg.clamp_len, attn_type="txl")
        r_RD = self.drop(r_RD.astype(jnp.dtype(cfg.dtype)), deterministic=deterministic)
        shared = () if cfg.untie_r else (self.r_w_bias, self.r_r_bias)
        extra = {} if memory is None else {"memory_BMD": jnp.moveaxis(memory, 1, 0)}  # per layer: [L, B, M, D]
        out = self.decoder(x_BTD, r_RD, mask_BHTS, shared, extra, deterministic)
        h_BTD = self.drop(out.x, deterministic=deterministic)
        new_memory = None
        if cfg.mem_len:
            # §3.2: the next segment's memory is the last mem_len inputs of every layer, without gradient.
            cat_LBSD = out.inputs_LBTD if memory is None else jnp.concatenate(
                [jnp.moveaxis(memory, 1, 0).astype(out.inputs_LBTD.dtype), out.inputs_LBTD], axis=2)
            kept = cat_LBSD[:, :, max(0, m + t - cfg.mem_len):]
            new_memory = jax.lax.stop_gradient(jnp.moveaxis(kept, 0, 1).astype(jnp.float32))
        if mask_BT is None:
            last_B = jnp.full((b,), t - 1, jnp.int32)
        else:
            last_B = jnp.argmax(jnp.arange(t)[None, :] * mask_BT.astype(jnp.int32), axis=1)
        pooled_BD = jnp.take_along_axis(h_BTD, last_B[:, None, None], axis=1)[:, 0]
        return Output(hidden_BTD=h_BTD, memory=new_memory, pooled_BD=pooled_BD)

    def shared_tables(self):
        """The adaptive embedding's tables and projections (what the tied softmax reads)."""
        return self.word_emb.shared()


class TransfoXLLMHeadModel(nn.Module):
    """The trunk + the adaptive softmax (HF `TransfoXLLMHeadModel`): the pretraining model.

    `__call__(tokens_BT, *, labels_BT=None, memory=None, ...)` → `Output` with `nll_BT` (labels given) or
    `log_probs_BTV`, and the new `memory`. `labels_BT[b, t]` is the word predicted at position t (the next token:
    unlike HF's `labels`, not shifted inside the model).
    """

    cfg: Any

    def setup(self):
        cfg = self.cfg
        self.transformer = TransfoXLModel(cfg)
        self.crit = AdaptiveSoftmax(cfg.vocab_size, cfg.embedding_size, cfg.hidden_size, tuple(cfg.cutoffs),
                                    cfg.div_val, cfg.tie_word_embeddings, tuple(cfg.tie_projs), cfg.initializer_range,
                                    cfg.proj_init_std, jnp.dtype(cfg.dtype))

    def __call__(self, tokens_BT, *, labels_BT=None, memory=None, segment_ids_BT=None, positions_BT=None,
                 mask_BT=None, deterministic: bool = True) -> Output:
        if labels_BT is not None and not isinstance(labels_BT, jax.core.Tracer):
            check_ids(labels_BT, self.cfg.vocab_size, "labels (model.vocab_size)")
        out = self.transformer(tokens_BT, memory=memory, segment_ids_BT=segment_ids_BT, positions_BT=positions_BT,
                               mask_BT=mask_BT, deterministic=deterministic)
        scores = self.crit(out.hidden_BTD, self.transformer.shared_tables(), labels_BT)
        if labels_BT is None:
            return out.replace(log_probs_BTV=scores)
        return out.replace(nll_BT=scores)


# ------------------------------------------------------------------------------------- family contract
# (llm_jax/models/family.py)

NAME = "transfo_xl"
PRETRAINING_MODEL = TransfoXLLMHeadModel
DEFAULT_OBJECTIVE = "segment_clm"
LM_KIND = "causal"
TOKENIZER = TRANSFO_XL_TOKENIZER
# As GPT-2: right padding (causal attention never lets a real token see a later pad), the classifier on the last
# real token, the two texts of a pair joined by the corpus's line end `<eos>`.
INPUT_FORMAT = InputFormat(pad_side="right", classifier_token=False, task_tokens=(("sep", TOKENIZER.roles["eos"]),),
                           template="sep_between")
TRUNK_NAME = "transformer"


def build_trunk(cfg: Config, kind: str, **kwargs) -> TransfoXLModel:
    """The trunk every fine-tuning head sits on (without memory)."""
    del kind
    return TransfoXLModel(cfg, **kwargs)


def sequence_head(cfg, trunk_out: Output, *, kind: str, num_outputs: int, dropout: float,
                  deterministic: bool) -> jax.Array:
    """The last real token's state → dropout → a bias-free `score` layer (as GPT-2's classifier).

    Returns:
      `[B, num_outputs]` logits.
    """
    del kind
    x_BD = nn.Dropout(dropout)(trunk_out.pooled_BD, deterministic=deterministic)
    return Einsum("BD,DC->BC", (cfg.hidden_size, num_outputs), (P_EMBED, None), use_bias=False, kernel_init=init(cfg),
                  dtype=jnp.dtype(cfg.dtype), name="score")(x_BD)


def vocab_clusters(cfg: Config) -> tuple[tuple[int, int, bool, bool], ...]:
    """`(V_i, E_i, input projection, output projection)` per cluster, as `llm_jax.layers.adaptive` computes them
    (the head cluster's V includes one score per tail cluster)."""
    bounds = cluster_bounds(cfg.vocab_size, cfg.cutoffs)
    widths = cluster_widths(cfg.embedding_size, cfg.div_val, len(bounds))
    n_tails = len(bounds) - 1
    out = []
    for i, ((l, r), e) in enumerate(zip(bounds, widths)):
        proj = cfg.div_val > 1 or e != cfg.hidden_size
        # One table of width E serves every cluster when div_val = 1: its lookup and projection happen once.
        in_proj = proj and (cfg.div_val > 1 or i == 0)
        out.append((r - l + (n_tails if i == 0 else 0), e, in_proj, proj))
    return tuple(out)


def towers(cfg: Config, seq_len: int, *, predicted_positions: int, heads: tuple[str, ...]) -> tuple[Tower, ...]:
    """One decoder whose self-attention also reads `mem_len` memory positions, with relative-position scores
    (a `[M + T, D]` sinusoid table projected per layer), the adaptive input and softmax; biases in the FF only."""
    del heads
    return (Tower(num_layers=cfg.num_layers, d_model=cfg.hidden_size, num_heads=cfg.num_heads, head_dim=cfg.head_dim,
                  d_ff=cfg.intermediate_size, vocab_size=cfg.vocab_size, seq_len=seq_len,
                  embedding_tables=1, input_norm=False,
                  lm_positions=min(predicted_positions, seq_len), lm_transform=False, attention_memory=cfg.mem_len,
                  relative_positions=True, attention_bias=False, vocab_clusters=vocab_clusters(cfg)),)


# ---------------------------------------------------------------------------------------- HF name map
# transformers 4.37.2 `TransfoXLLMHeadModel`. Clusters are separate tensors of different shapes, so each has its
# own entry; entries of clusters a config does not have are conditional (`HF_CONDITIONAL_PARAMS`).

MAX_CLUSTERS = 8
_OURS = "transformer/decoder/stack/layers/block"
_HF = "transformer.layers.{L}"


def _name_map() -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for i, proj in enumerate(("query", "key", "value")):
        out[f"{_OURS}/attn/{proj}/kernel"] = (f"{_HF}.dec_attn.qkv_net.weight", "linear_in_heads", (i, 3))
    out.update({
        f"{_OURS}/attn/pos/kernel": (f"{_HF}.dec_attn.r_net.weight", "linear_in_heads"),
        f"{_OURS}/attn/out/kernel": (f"{_HF}.dec_attn.o_net.weight", "linear_out_heads"),
        f"{_OURS}/r_w_bias": (f"{_HF}.dec_attn.r_w_bias", "embed"),
        f"{_OURS}/r_r_bias": (f"{_HF}.dec_attn.r_r_bias", "embed"),
        f"{_OURS}/attn_norm/scale": (f"{_HF}.dec_attn.layer_norm.weight", "vector"),
        f"{_OURS}/attn_norm/bias": (f"{_HF}.dec_attn.layer_norm.bias", "vector"),
        f"{_OURS}/ff/wi/kernel": (f"{_HF}.pos_ff.CoreNet.0.weight", "linear"),
        f"{_OURS}/ff/wi/bias": (f"{_HF}.pos_ff.CoreNet.0.bias", "vector"),
        f"{_OURS}/ff/wo/kernel": (f"{_HF}.pos_ff.CoreNet.3.weight", "linear"),
        f"{_OURS}/ff/wo/bias": (f"{_HF}.pos_ff.CoreNet.3.bias", "vector"),
        f"{_OURS}/ff_norm/scale": (f"{_HF}.pos_ff.layer_norm.weight", "vector"),
        f"{_OURS}/ff_norm/bias": (f"{_HF}.pos_ff.layer_norm.bias", "vector"),
        "transformer/r_w_bias": ("transformer.r_w_bias", "embed"),
        "transformer/r_r_bias": ("transformer.r_r_bias", "embed"),
        "crit/cluster_weight": ("crit.cluster_weight", "embed"),
        "crit/cluster_bias": ("crit.cluster_bias", "vector"),
    })
    for i in range(MAX_CLUSTERS):
        out.update({
            f"transformer/word_emb/emb_layers_{i}": (f"transformer.word_emb.emb_layers.{i}.weight", "embed"),
            f"transformer/word_emb/emb_projs_{i}": (f"transformer.word_emb.emb_projs.{i}", "linear"),
            f"crit/out_layers_{i}_weight": (f"crit.out_layers.{i}.weight", "embed"),
            f"crit/out_layers_{i}_bias": (f"crit.out_layers.{i}.bias", "vector"),
            f"crit/out_projs_{i}": (f"crit.out_projs.{i}", "embed"),
        })
    return out


HF_NAME_MAP: dict[str, tuple] = _name_map()
HF_CONDITIONAL_PARAMS: tuple[str, ...] = (
    f"{_OURS}/r_w_bias", f"{_OURS}/r_r_bias", "transformer/r_w_bias", "transformer/r_r_bias", "crit/cluster_",
    *(f"transformer/word_emb/emb_layers_{i}" for i in range(1, MAX_CLUSTERS)),
    *(f"transformer/word_emb/emb_projs_{i}" for i in range(MAX_CLUSTERS)),
    *(f"crit/out_layers_{i}_" for i in range(MAX_CLUSTERS)), *(f"crit/out_projs_{i}" for i in range(MAX_CLUSTERS)))
HF_ARCHITECTURE = "TransfoXLLMHeadModel"
HF_MODEL_TYPE = "transfo-xl"
HF_BASE_PREFIX = "transformer"
# `_tied_weights_keys`: the softmax's weights and projections may be the embedding's (per config).
HF_TIED_WEIGHTS: dict[str, str] = {
    **{f"crit.out_layers.{i}.weight": f"transformer.word_emb.emb_layers.{i}.weight" for i in range(MAX_CLUSTERS)},
    **{f"crit.out_projs.{i}": f"transformer.word_emb.emb_projs.{i}" for i in range(MAX_CLUSTERS)},
}
# The sinusoid's frequencies (a buffer), and the per-layer copies of u, v when they are shared (older checkpoints
# saved them; the model's own pair is what it reads).
HF_IGNORED: tuple[str, ...] = (r"(^|\.)pos_emb\.inv_freq$", r"^transformer\.layers\.\d+\.dec_attn\.r_[wr]_bias$")
HF_INIT_IF_MISSING: tuple[str, ...] = ()


def _refuse(hf: dict[str, Any], key: str, want, why: str) -> None:
    if key in hf and hf[key] is not None and hf[key] != want:
        raise ValueError(f"{key}={hf[key]!r} is not supported: {why}.")


def config_from_hf(hf: dict[str, Any]) -> Config:
    """Our Config from a Hugging Face `TransfoXLConfig` dict (transformers 4.37).

    Raises:
      ValueError: settings this model does not implement (pre-LN layers, other attention types, sampled softmax),
        or more than `MAX_CLUSTERS` clusters.
    """
    _refuse(hf, "pre_lnorm", False, "Transformer-XL's published models are post-LN; this model implements those")
    _refuse(hf, "attn_type", 0, "only the relative attention of Dai et al. §3.3 (attn_type 0) is implemented")
    if (hf.get("sample_softmax") or -1) > 0:
        raise ValueError(f"sample_softmax={hf['sample_softmax']} is not supported: the full adaptive softmax only.")
    cutoffs = tuple(hf.get("cutoffs") or ())
    if len(cutoffs) + 1 > MAX_CLUSTERS:
        raise ValueError(f"{len(cutoffs) + 1} adaptive clusters exceed the {MAX_CLUSTERS} the name map covers.")
    tie_projs = hf.get("tie_projs")
    if tie_projs is None:
        tie_projs = [False] + [bool(hf.get("proj_share_all_but_first", True))] * len(cutoffs)
    return Config(
        vocab_size=hf["vocab_size"], cutoffs=cutoffs, hidden_size=hf["d_model"], embedding_size=hf["d_embed"],
        num_layers=hf["n_layer"], num_heads=hf["n_head"], head_dim=hf["d_head"], intermediate_size=hf["d_inner"],
        div_val=hf.get("div_val", 1), tie_word_embeddings=hf.get("tie_word_embeddings", True),
        tie_projs=tuple(bool(x) for x in tie_projs), untie_r=hf.get("untie_r", True), mem_len=hf.get("mem_len", 0),
        clamp_len=hf.get("clamp_len", -1), same_length=hf.get("same_length", False),
        layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5), initializer_range=hf.get("init_std", 0.02),
        proj_init_std=hf.get("proj_init_std", 0.01), hidden_dropout=hf.get("dropout", 0.1),
        attention_dropout=hf.get("dropatt", 0.0),
        eos_token_id=hf["eos_token_id"] if isinstance(hf.get("eos_token_id"), int)
        and 0 <= hf["eos_token_id"] < hf["vocab_size"] else None,
    ).validate()


def config_to_hf(cfg: Config) -> dict[str, Any]:
    """A Hugging Face `TransfoXLConfig` dict (transformers 4.37) for our Config."""
    return {
        "model_type": HF_MODEL_TYPE, "architectures": [HF_ARCHITECTURE], "vocab_size": cfg.vocab_size,
        "cutoffs": list(cfg.cutoffs), "d_model": cfg.hidden_size, "d_embed": cfg.embedding_size,
        "n_head": cfg.num_heads, "d_head": cfg.head_dim, "d_inner": cfg.intermediate_size, "div_val": cfg.div_val,
        "pre_lnorm": False, "n_layer": cfg.num_layers, "mem_len": cfg.mem_len, "clamp_len": cfg.clamp_len,
        "same_length": cfg.same_length, "attn_type": 0, "sample_softmax": -1, "adaptive": True,
        "dropout": cfg.hidden_dropout, "dropatt": cfg.attention_dropout, "untie_r": cfg.untie_r, "init": "normal",
        "init_range": 0.01, "proj_init_std": cfg.proj_init_std, "init_std": cfg.initializer_range,
        "layer_norm_epsilon": cfg.layer_norm_eps, "eos_token_id": cfg.eos_token_id,
        "tie_word_embeddings": cfg.tie_word_embeddings, "tie_projs": list(cfg.tie_projs),
        "proj_share_all_but_first": list(cfg.tie_projs) == [False] + [True] * len(cfg.cutoffs),
    }
