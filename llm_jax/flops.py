"""FLOPs per step for every family and objective, XLA's own count to check it, and MFU.

Three counts answer three questions, all from the `Tower`s a family describes itself with:

* `step_flops` / `train_flops` — what a step *computes*, term by term (ours). Elementwise constants follow
  ELECTRA's `flops_computation.py` (Clark et al. 2020, google-research/electra): a matmul `[m, k]·[k, n]` is
  `2mkn` (a multiply-add is two operations); elementwise work is counted per element (dropout 4, LayerNorm 5,
  activation 8, softmax 5, one per bias add / residual add / score scale). What differs from the script, and why:
  - training = 3 × forward (backward = 2 × forward: each matmul needs an input gradient and a weight
    gradient of its own size). ELECTRA's script assumed backward = forward; XLA's count of our jitted train
    step confirms 3× for every matmul exactly (tests/test_flops.py);
  - an embedding lookup is a gather (`jnp.take`), 0 FLOPs; ELECTRA counted a dense one-hot matmul
    (`dense_embedding_lookup=True` reproduces that);
  - the vocabulary projection runs only where the objective predicts: BERT's MLM gathers its
    `max_predictions` positions before the output layer (`mlm_positions_BP`), exactly ELECTRA's
    `output_frac` = P / T; a causal LM predicts at every position;
  - ELECTRA's LayerNorm after attention is counted per element (its script omits the `× hidden`);
  - each Tower field counts as the code runs (no bias where `use_bias=False`, RMSNorm, gated FFN, the
    pooler classifier, the tables actually looked up), where the script applies BERT's template to all;
  - the optimizer's elementwise update (AdamW + global-norm clipping) is a separate term of the train step.
  Everything is counted densely, as the code runs: padded positions and masked-out attention scores cost
  the same as real ones — except in GPT-3's locally banded layers, whose scores are counted over the band
  (`Tower.attention_window`), what a banded kernel (`jax.nn.dot_product_attention`'s `local_window_size`)
  computes; the einsum implementation computes the whole rectangle and masks it.
* `electra_script_train_flops` / `electra_script_forward_flops` — the count ELECTRA's paper published
  (Tables 1-4), the script's conventions applied to the same Towers: training = 2 × forward, dense one-hot
  lookups (word, position and token type), the MLM head at `lm_positions / seq_len` of the positions (the
  script: 0.15625 for every model, `ELECTRA_SCRIPT_OUTPUT_FRAC`), its quirks kept (attention LayerNorm 5,
  scores over all s keys even for a decoder), no pooler, no optimizer. It reproduces the script's rows
  (BERT-Base 6.428e19, ELECTRA-Small 1.294e18, ...; tests/test_flops.py) and puts our models on the paper's
  axis. `format_train_flops` prints both totals side by side.
* `palm_flops_per_token` — PaLM's *model FLOPs* (Chowdhery et al. 2022, Appendix B): `6N + 12·L·H·Q·T`
  per token, N the non-embedding parameters, L layers, H heads, Q head dim, T sequence length. It is the
  numerator of MFU: the work the model needs, whatever the implementation recomputes (remat) or wastes.
  N here is every parameter that is not an embedding table (word / position / token-type), counted as
  applied (a layer shared across depth, ALBERT, counts L times), as Kaplan et al. 2020 §2.1 define the
  non-embedding N of `C ≈ 6N`. Embedding lookups are gathers; the tied vocabulary projection is outside
  6N, which for MLM (20 of 128 positions predicted) leaves out ~1 % of BERT-base's FLOPs.

A family describes itself with `towers(cfg, seq_len, *, predicted_positions, heads)` in its own file, returning
`Tower`s (ELECTRA: generator + discriminator; T5: encoder + decoder with cross-attention).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# ELECTRA's elementwise constants (flops_computation.py), FLOPs per element.
DROPOUT_FLOPS = 4  # random number, compare, multiply by the mask, multiply by 1 / (1 - rate)
LAYER_NORM_FLOPS = 5  # mean (sum), variance (square, sum), scale, shift
RMS_NORM_FLOPS = 3  # square, sum, scale: no mean and no shift (T5)
ACTIVATION_FLOPS = 8  # GELU's tanh form: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
SOFTMAX_FLOPS = 5  # max, subtract, exp, sum, divide
# AdamW with global-norm clipping, per parameter: clip (square, sum, scale = 3), first moment (3), second
# moment (4), bias corrections (2), m̂ / (√v̂ + ε) (3), weight decay (2), learning rate (1), apply (1).
ADAMW_FLOPS_PER_PARAM = 19
# Backward = 2 × forward for a matmul: dL/dx = dL/dy·Wᵀ and dL/dW = xᵀ·dL/dy, each the forward's size.
BACKWARD_FACTOR = 2


@dataclasses.dataclass(frozen=True)
class Tower:
    """One Transformer stack with its input embeddings and output heads, as the FLOPs count sees it.

    Attributes:
      num_layers: L (applications: a layer shared across depth still counts L times).
      d_model: D.
      num_heads: H.
      head_dim: K (H·K need not equal D).
      d_ff: F, the feed-forward hidden width.
      vocab_size: V.
      seq_len: T, positions this tower processes per sequence.
      embed_dim: E, the embedding width (ALBERT factorises E < D); None means D.
      embedding_tables: how many tables are looked up and summed at the input (word, position, type).
      memory_len: S of the encoder states a decoder cross-attends to (T5); 0 = no cross-attention.
      gated_ffn: gated-linear-unit FFN (two input projections, T5 v1.1).
      use_bias: biases on the projections (BERT/GPT yes, T5 no).
      norm: "layernorm" or "rmsnorm".
      input_norm: a norm right after the embedding sum (BERT yes, GPT-2/T5 no); the embedding dropout is
        counted either way.
      final_norm: a norm after the last layer (pre-LN stacks: GPT-2/3's `ln_f`).
      lm_positions: positions per sequence that go through the vocabulary projection (MLM: P gathered;
        causal LM: T); 0 = no vocabulary head.
      lm_transform: BERT's dense + activation + LayerNorm before the vocabulary projection.
      lm_bias: an output bias on the vocabulary projection (BERT's `cls.predictions.bias`, when `use_bias`);
        GPT's tied head has none.
      attention_window: keys each query of a windowed layer attends to (GPT-3's locally banded layers, Brown et
        al. 2020 §2.1: the band width w); its scores, softmax and context products are counted over
        min(w, S) keys, what a banded kernel computes, not the S of a dense layer. 0 = every layer dense.
      windowed_layers: how many of the `num_layers` layers attend within `attention_window` (GPT-3: every other).
      pooler_classes: C of a classifier on the `[CLS]` pooler (BERT NSP and ALBERT SOP: 2); 0 = none.
      token_classes: C of a per-token classifier behind dense + activation (ELECTRA's discriminator: 1).
      trainable: False for a frozen model the loss only reads (a distillation teacher): a training step runs
        it forward once, without dropout and without a backward pass, and the optimizer does not touch it.
      attention_memory: M, positions of a memory that the self-attention's keys and values also cover
        (Transformer-XL's segment-level recurrence, Dai et al. 2019 §3.2): key / value projections, scores, softmax
        and context run over M + T keys; 0 = none.
      attention_bias: biases on the attention projections; None = `use_bias` (Transformer-XL and XLNet: none
        there, but biases on the feed-forward and, XLNet, the vocabulary projection).
      attention_keys: keys per query of the self-attention when they are not this tower's own T positions (an
        XLNet query stream reads the content stream's T keys at its P positions); 0 = `seq_len`.
      shared_kv: the self-attention reads another tower's keys and values (XLNet's query stream shares the
        content stream's, Yang et al. 2019 §2.3): no key / value (or relative position) projections here, and
        no parameters of its own in the layers.
      relative_positions: R, the relative position encodings each layer projects and scores every query against
        before the shift (Transformer-XL / XLNet, Dai et al. 2019 §3.3): a `[R, D]·[D, H·K]` projection, a
        `[T, H·K]·[H·K, R]` score term, the content / position biases u, v; 0 = none.
      relative_once_per_step: the `[R, D]` projection runs once per step, not once per sequence (Transformer-XL:
        its sinusoid table does not depend on the sequence; `tower_step_terms`).
      segment_terms: XLNet's relative segment encoding (§2.5): each query scored against the two segment
        embeddings (same / different) with its bias s, and the chosen score added.
      vocab_clusters: adaptive input embeddings and softmax (Baevski & Auli 2019; Grave et al. 2017): per cluster
        `(V_i, E_i, input projection, output projection)`; replaces the single table and vocabulary projection.
        Empty = none.
      cluster_shares: per cluster, the fraction of the predicted positions at which it is scored: in training
        a tail cluster only where the target lies in it (ours and Hugging Face's; the head everywhere), so the
        data decide (`uniform_target_shares` for uniform targets). Empty = every cluster at every position (what
        scoring the whole vocabulary does; an upper bound for training).
    """

    num_layers: int
    d_model: int
    num_heads: int
    head_dim: int
    d_ff: int
    vocab_size: int
    seq_len: int
    embed_dim: int | None = None
    embedding_tables: int = 3
    memory_len: int = 0
    gated_ffn: bool = False
    use_bias: bool = True
    norm: str = "layernorm"
    input_norm: bool = True
    final_norm: bool = False
    lm_positions: int = 0
    lm_transform: bool = True
    lm_bias: bool = True
    pooler_classes: int = 0
    token_classes: int = 0
    trainable: bool = True
    attention_window: int = 0
    windowed_layers: int = 0
    attention_memory: int = 0
    attention_bias: bool | None = None
    attention_keys: int = 0
    shared_kv: bool = False
    relative_positions: int = 0
    relative_once_per_step: bool = False
    segment_terms: bool = False
    vocab_clusters: tuple[tuple[int, int, bool, bool], ...] = ()
    cluster_shares: tuple[float, ...] = ()

    def __post_init__(self):
        if self.attention_window < 0 or not 0 <= self.windowed_layers <= self.num_layers:
            raise ValueError(f"Tower(attention_window={self.attention_window}, windowed_layers={self.windowed_layers}): "
                             f"the window must be ≥ 0 and the windowed layers between 0 and num_layers="
                             f"{self.num_layers}.")
        if bool(self.attention_window) != bool(self.windowed_layers):
            raise ValueError(f"Tower(attention_window={self.attention_window}, windowed_layers={self.windowed_layers}): "
                             "set both (a band width and how many layers use it) or neither.")
        if self.cluster_shares and (len(self.cluster_shares) != len(self.vocab_clusters)
                                    or not all(0 <= x <= 1 for x in self.cluster_shares)):
            raise ValueError(f"Tower(cluster_shares={self.cluster_shares}): give one fraction in [0, 1] per vocabulary "
                             f"cluster ({len(self.vocab_clusters)}), or none.")

    @property
    def attn_bias(self) -> bool:
        return self.use_bias if self.attention_bias is None else self.attention_bias

    @property
    def e(self) -> int:
        return self.d_model if self.embed_dim is None else self.embed_dim

    def keys_per_query(self, s: int, windowed: bool) -> int:
        """Keys a query's scores cover in a self-attention over `s` keys: all of them, or the window's."""
        return min(self.attention_window, s) if windowed and self.attention_window else s


@dataclasses.dataclass(frozen=True)
class FlopsCount:
    """FLOPs of one step, per term (already multiplied by the batch and, for training, by 3).

    Attributes:
      terms: name → FLOPs; a name starting with `matmul/` is a matrix product, anything else elementwise.
    """

    terms: dict[str, float]

    @property
    def matmul(self) -> float:
        return float(sum(v for k, v in self.terms.items() if k.startswith("matmul/")))

    @property
    def elementwise(self) -> float:
        return float(sum(v for k, v in self.terms.items() if not k.startswith("matmul/")))

    @property
    def total(self) -> float:
        return self.matmul + self.elementwise


class _Terms:
    """Accumulates named FLOPs terms."""

    def __init__(self):
        self.terms: dict[str, float] = {}

    def add(self, name: str, flops: float) -> None:
        if flops:
            self.terms[name] = self.terms.get(name, 0.0) + float(flops)

    def add_each(self, per_unit: Mapping[str, float], units: float) -> None:
        for name, flops in per_unit.items():
            self.add(name, flops * units)

    def matmul(self, name: str, m: int, k: int, n: int) -> None:
        self.add(f"matmul/{name}", 2 * m * k * n)


def _prefixed(name: str, prefix: str) -> str:
    """`prefix` inserted after the `matmul/` marker that FlopsCount sorts by."""
    if name.startswith("matmul/"):
        return f"matmul/{prefix}{name[len('matmul/'):]}"
    return f"{prefix}{name}"


def _norm_flops(tower: Tower) -> int:
    if tower.norm not in ("layernorm", "rmsnorm"):
        raise ValueError(f"Tower.norm={tower.norm!r}: choose 'layernorm' or 'rmsnorm'.")
    return LAYER_NORM_FLOPS if tower.norm == "layernorm" else RMS_NORM_FLOPS


def _attention(acc: _Terms, tower: Tower, prefix: str, t: int, s: int, dropout: bool, keys: int | None = None) -> None:
    """One attention block over T queries and S keys, with its output residual and norm.

    `keys`: keys per query that the scores and context cover (a banded layer's window); default S. The key and
    value projections still run over all S positions. With `relative_positions` the self-attention adds the
    position scores against the R projected encodings (projected here, or once per step in `tower_step_terms`)
    and the u / v bias adds; with `segment_terms` XLNet's segment scores.
    """
    d, hk, h = tower.d_model, tower.num_heads * tower.head_dim, tower.num_heads
    bias = int(tower.attn_bias)
    w = s if keys is None else keys
    own_kv = not (tower.shared_kv and prefix.endswith("self_attn"))
    acc.matmul(f"{prefix}/q", t, d, hk)
    if own_kv:
        acc.matmul(f"{prefix}/kv", 2 * s, d, hk)
    acc.add(f"{prefix}/qkv_bias", bias * (t + 2 * s * own_kv) * hk)
    acc.matmul(f"{prefix}/scores", t, hk, w)  # Σ_h [T, K]·[K, S] = 2·T·S·H·K
    if tower.relative_positions and prefix.endswith("self_attn"):
        r = tower.relative_positions
        if own_kv and not tower.relative_once_per_step:
            acc.matmul(f"{prefix}/rel_pos", r, d, hk)  # W_r R (a query stream reuses the content stream's)
        acc.matmul(f"{prefix}/rel_scores", t, hk, r)  # (q + v)·W_r R against every row, then the shift
        acc.add(f"{prefix}/rel_biases", 2 * t * hk)  # q + u, q + v
        acc.add(f"{prefix}/rel_sum", h * t * w)
    if tower.segment_terms and prefix.endswith("self_attn"):
        acc.matmul(f"{prefix}/seg_scores", t, hk, 2)  # (q + s)·e for e ∈ {same, different}
        acc.add(f"{prefix}/seg_select_sum", t * hk + 2 * h * t * w)
    acc.add(f"{prefix}/scale", h * t * w)
    acc.add(f"{prefix}/softmax", SOFTMAX_FLOPS * h * t * w)
    acc.add(f"{prefix}/probs_dropout", dropout * DROPOUT_FLOPS * h * t * w)
    acc.matmul(f"{prefix}/context", t, w, hk)
    acc.matmul(f"{prefix}/out", t, hk, d)
    acc.add(f"{prefix}/out_bias", bias * t * d)
    acc.add(f"{prefix}/out_dropout", dropout * DROPOUT_FLOPS * t * d)
    acc.add(f"{prefix}/residual", t * d)
    acc.add(f"{prefix}/norm", _norm_flops(tower) * t * d)


def _ffn(acc: _Terms, tower: Tower, t: int, dropout: bool) -> None:
    d, f = tower.d_model, tower.d_ff
    n_in = 2 if tower.gated_ffn else 1
    acc.matmul("layers/ffn_in", t, d, n_in * f)
    acc.add("layers/ffn_in_bias", int(tower.use_bias) * n_in * t * f)
    acc.add("layers/ffn_act", ACTIVATION_FLOPS * t * f)
    acc.add("layers/ffn_gate", int(tower.gated_ffn) * t * f)
    acc.matmul("layers/ffn_out", t, f, d)
    acc.add("layers/ffn_out_bias", int(tower.use_bias) * t * d)
    acc.add("layers/ffn_dropout", dropout * DROPOUT_FLOPS * t * d)
    acc.add("layers/ffn_residual", t * d)
    acc.add("layers/ffn_norm", _norm_flops(tower) * t * d)


def tower_forward_terms(tower: Tower, *, dropout: bool, dense_embedding_lookup: bool = False) -> dict[str, float]:
    """Forward FLOPs of one sequence through one tower, per term.

    Args:
      tower: the shapes.
      dropout: count dropout (training); inference runs without it.
      dense_embedding_lookup: count lookups as one-hot matmuls (ELECTRA's assumption) instead of gathers.
    """
    t, d, e = tower.seq_len, tower.d_model, tower.e
    acc = _Terms()
    # Input: lookups (gathers), their sum, norm, dropout, and ALBERT's E → D projection.
    if dense_embedding_lookup:
        acc.matmul("embed/lookup", t, tower.vocab_size, e)
    acc.add("embed/sum", max(tower.embedding_tables - 1, 0) * t * e)
    if tower.input_norm:
        acc.add("embed/norm", _norm_flops(tower) * t * e)
    acc.add("embed/dropout", dropout * DROPOUT_FLOPS * t * e)
    if tower.vocab_clusters:  # adaptive input: each cluster's E_i → D projection, summed, scaled by √D
        for i, (_, e_i, in_proj, _) in enumerate(tower.vocab_clusters):
            if in_proj:
                acc.matmul(f"embed/project{i}", t, e_i, d)
        acc.add("embed/sum", (len(tower.vocab_clusters) - 1) * t * d)
        acc.add("embed/scale", t * d)
    elif e != d:
        acc.matmul("embed/project", t, e, d)
        acc.add("embed/project_bias", int(tower.use_bias) * t * d)
    # The layers: dense ones, and those attending within the window (GPT-3's banded layers).
    for windowed, count in ((False, tower.num_layers - tower.windowed_layers), (True, tower.windowed_layers)):
        if not count:
            continue
        layer = _Terms()
        s_self = (tower.attention_keys or t) + tower.attention_memory
        _attention(layer, tower, "layers/self_attn", t, s_self, dropout, keys=tower.keys_per_query(s_self, windowed))
        if tower.memory_len:
            _attention(layer, tower, "layers/cross_attn", t, tower.memory_len, dropout)
        _ffn(layer, tower, t, dropout)
        for name, v in layer.terms.items():
            acc.add(name, count * v)
    if tower.final_norm:
        acc.add("final_norm", _norm_flops(tower) * t * d)
    # Output heads.
    p = tower.lm_positions
    if p and tower.vocab_clusters:  # adaptive softmax: each cluster's projection, scores, bias and log-softmax
        shares = tower.cluster_shares or (1.0,) * len(tower.vocab_clusters)
        for i, ((v_i, e_i, _, out_proj), share) in enumerate(zip(tower.vocab_clusters, shares)):
            p_i = p * share  # the positions at which cluster i is scored
            if out_proj:
                acc.matmul(f"lm_head/project{i}", p_i, d, e_i)
            acc.matmul(f"lm_head/vocab{i}", p_i, e_i, v_i)
            acc.add("lm_head/vocab_bias", p_i * v_i)
            acc.add("loss/lm_softmax", SOFTMAX_FLOPS * p_i * v_i)
        acc.add("loss/cluster_sum", p * sum(shares[1:]))
    elif p:
        if tower.lm_transform:
            acc.matmul("lm_head/transform", p, d, e)
            acc.add("lm_head/transform_bias", int(tower.use_bias) * p * e)
            acc.add("lm_head/act", ACTIVATION_FLOPS * p * e)
            acc.add("lm_head/norm", _norm_flops(tower) * p * e)
        acc.matmul("lm_head/vocab", p, e if tower.lm_transform else d, tower.vocab_size)
        acc.add("lm_head/vocab_bias", int(tower.use_bias and tower.lm_bias) * p * tower.vocab_size)
        acc.add("loss/lm_softmax", SOFTMAX_FLOPS * p * tower.vocab_size)
    if tower.pooler_classes:
        c = tower.pooler_classes
        acc.matmul("pooler/dense", 1, d, d)
        acc.add("pooler/bias_act", (1 + ACTIVATION_FLOPS) * d)
        acc.matmul("pooler/classifier", 1, d, c)
        acc.add("pooler/classifier_bias", c)
        acc.add("loss/pooler_softmax", SOFTMAX_FLOPS * c)
    if tower.token_classes:
        c = tower.token_classes
        acc.matmul("token_head/dense", t, d, d)
        acc.add("token_head/bias_act", (1 + ACTIVATION_FLOPS) * t * d)
        acc.matmul("token_head/classifier", t, d, c)
        acc.add("token_head/classifier_bias", t * c)
        acc.add("loss/token_softmax", SOFTMAX_FLOPS * t * max(c, 2))
    return acc.terms


def tower_step_terms(tower: Tower) -> dict[str, float]:
    """Forward FLOPs a tower spends once per step whatever the batch: Transformer-XL's projection of the
    `[M + T, D]` relative sinusoids in every layer (the table does not depend on the sequence)."""
    if not (tower.relative_positions and tower.relative_once_per_step):
        return {}
    acc = _Terms()
    acc.matmul("layers/self_attn/position_proj", tower.num_layers * tower.relative_positions, tower.d_model,
               tower.num_heads * tower.head_dim)
    return acc.terms


def non_embedding_params(tower: Tower) -> int:
    """Parameters that are not embedding tables, counted as applied (PaLM's / Kaplan's N).

    Equals the model's parameter count minus its `embedding` tables for unshared stacks (tested).
    """
    d, hk, f, e = tower.d_model, tower.num_heads * tower.head_dim, tower.d_ff, tower.e
    b, ba = int(tower.use_bias), int(tower.attn_bias)
    norm = 2 if tower.norm == "layernorm" else 1
    # A tower that shares another's keys and values (XLNet's query stream) applies its q and output projections,
    # its norms and feed-forward to its own positions; the parameters are the other tower's, counted there too.
    own = 0 if tower.shared_kv else 1
    attn = (2 + 2 * own) * d * hk + ba * ((1 + 2 * own) * hk + d) + norm * d
    if tower.relative_positions:
        attn += own * (d * hk + 2 * hk)  # W_r and the u, v biases
    if tower.segment_terms:
        attn += own * 3 * hk  # the segment embeddings (same, different) and the bias s
    n_in = 2 if tower.gated_ffn else 1
    ffn = n_in * d * f + f * d + b * (n_in * f + d) + norm * d
    layer = attn * (2 if tower.memory_len else 1) + ffn
    n = tower.num_layers * layer
    if tower.input_norm:
        n += norm * e
    if tower.final_norm:
        n += norm * d
    if tower.vocab_clusters:
        # Adaptive input projections; the softmax's are counted as tied to them (WikiText-103 ties all but the
        # first) and its biases (one per word and tail cluster) as the output bias.
        n += sum(e_i * d for _, e_i, in_proj, _ in tower.vocab_clusters if in_proj)
        if tower.lm_positions:
            n += sum(v_i for v_i, _, _, _ in tower.vocab_clusters)
    elif e != d:
        n += e * d + b * d
    if tower.lm_positions and not tower.vocab_clusters:
        if tower.lm_transform:
            n += d * e + b * e + norm * e
        n += int(tower.use_bias and tower.lm_bias) * tower.vocab_size  # the output bias; the projection is tied
    if tower.pooler_classes:
        n += d * d + d + d * tower.pooler_classes + tower.pooler_classes
    if tower.token_classes:
        n += d * d + d + d * tower.token_classes + tower.token_classes
    return int(n)


def uniform_target_shares(tower: Tower) -> Tower:
    """`tower` with `cluster_shares` for targets drawn uniformly from the vocabulary (a synthetic batch's): the head
    cluster at every position, tail cluster i at the fraction `V_i / V` of them. A tower without clusters as is."""
    if not tower.vocab_clusters:
        return tower
    tails = tuple(v_i / tower.vocab_size for v_i, _, _, _ in tower.vocab_clusters[1:])
    return dataclasses.replace(tower, cluster_shares=(1.0, *tails))


def forward_flops(towers: Sequence[Tower], batch: int, *, dropout: bool = False,
                  dense_embedding_lookup: bool = False) -> FlopsCount:
    """Forward FLOPs of a batch through every tower (inference: `dropout=False`)."""
    acc = _Terms()
    for i, tower in enumerate(towers):
        prefix = "" if len(towers) == 1 else f"tower{i}/"
        for name, v in tower_forward_terms(tower, dropout=dropout, dense_embedding_lookup=dense_embedding_lookup).items():
            acc.add(_prefixed(name, prefix), batch * v)
        for name, v in tower_step_terms(tower).items():
            acc.add(_prefixed(name, prefix), v)
    return FlopsCount(acc.terms)


def train_flops(towers: Sequence[Tower], batch: int, *, num_params: int = 0,
                dense_embedding_lookup: bool = False) -> FlopsCount:
    """Training FLOPs of one step: forward with dropout × (1 + BACKWARD_FACTOR), plus the optimizer.

    A tower with `trainable=False` (a frozen teacher) counts its deterministic forward once: no dropout, no
    backward (its activations carry no gradient), and no optimizer update.

    Args:
      towers: the model, trained towers and frozen ones.
      batch: sequences per step.
      num_params: all trainable parameters (embeddings included; a frozen tower's are not): AdamW updates each
        one; 0 leaves it out.
    """
    terms: dict[str, float] = {}
    for i, tower in enumerate(towers):
        prefix = "" if len(towers) == 1 else f"tower{i}/"
        fwd = forward_flops([tower], batch, dropout=tower.trainable, dense_embedding_lookup=dense_embedding_lookup)
        factor = (1 + BACKWARD_FACTOR) if tower.trainable else 1
        for name, v in fwd.terms.items():
            name = _prefixed(name, prefix)
            terms[name] = terms.get(name, 0.0) + factor * v
    if num_params:
        terms["optimizer/adamw"] = float(ADAMW_FLOPS_PER_PARAM * num_params)
    return FlopsCount(terms)


def palm_flops_per_token(num_params: int, num_layers: int, num_heads: int, head_dim: int, seq_len: float) -> float:
    """PaLM's model FLOPs per trained token, `6N + 12·L·H·Q·T` (Chowdhery et al. 2022, Appendix B).

    `6N`: forward 2N (one multiply-add per parameter and token) and backward 4N. `12·L·H·Q·T`: the two
    attention matmuls (scores and context), 2·2·T·H·Q per token and layer forward, × 3 with the backward.
    """
    return 6.0 * num_params + 12.0 * num_layers * num_heads * head_dim * seq_len


def model_flops_per_token(towers: Sequence[Tower]) -> float:
    """PaLM model FLOPs per input token of the first tower, summed over towers (the numerator of MFU).

    A frozen tower (`trainable=False`) runs forward only: a third of PaLM's forward + backward count. A windowed
    layer's attention term covers its window, not the whole sequence (`Tower.attention_window`).
    """
    tokens = towers[0].seq_len

    def attended(tw: Tower) -> float:
        # PaLM's T in 12·L·H·Q·T, averaged over the layers: the dense ones see T (+ memory), the windowed min(w, T).
        t = (tw.attention_keys or tw.seq_len) + tw.memory_len + tw.attention_memory
        dense = tw.num_layers - tw.windowed_layers
        return (dense * t + tw.windowed_layers * tw.keys_per_query(t, True)) / tw.num_layers

    per_sequence = sum(
        (1.0 if tw.trainable else 1.0 / (1 + BACKWARD_FACTOR))
        * tw.seq_len * palm_flops_per_token(non_embedding_params(tw), tw.num_layers, tw.num_heads, tw.head_dim,
                                            attended(tw))
        for tw in towers)
    return per_sequence / tokens


def mfu(tokens_per_s: float, flops_per_token: float, peak_flops_per_s: float) -> float:
    """Model FLOPs utilisation: achieved model FLOP/s over the peak (PaLM Appendix B)."""
    return tokens_per_s * flops_per_token / peak_flops_per_s


# ----------------------------------------------------------------------------- ELECTRA's script's count

# ELECTRA's script assumes backward = forward, so a training step is this many forward passes (ours: 3).
ELECTRA_SCRIPT_TRAIN_FACTOR = 2
# The script's share of positions through the MLM head, for every model (20 of 128); a Tower's is P / T.
ELECTRA_SCRIPT_OUTPUT_FRAC = 0.15625
# Token types the script charges besides the s positions in its one-hot position + token-type matmul.
ELECTRA_SCRIPT_TOKEN_TYPES = 2


def electra_script_forward_flops(tower: Tower, *, output_frac: float | None = None) -> FlopsCount:
    """Forward FLOPs of one sequence through one tower as ELECTRA's `flops_computation.py` counts them.

    The convention of the training FLOPs in Clark et al. 2020 (ELECTRA), Tables 1-4 and §3.3, from
    google-research/electra's `TransformerHparams`: h = D, l = L, s = T, v = V, e = E, i = F, heads = H and
    kqv = H·K, per token and × s (× l for the layers):

    * layer: `6·h·kqv` (q, k, v) + `3·kqv` (biases) + `2·kqv·s` (scores) + `(5 + 4 + 1)·s·heads` (softmax,
      dropout, scale) + `2·h·s` (context) + `2·h²` (output) + `h + 4h + h` (bias, dropout, residual) + `5`
      (the attention LayerNorm: the script omits its `× h`) + `2·h·i + 8·i + i` (FFN in, GELU, bias) +
      `2·h·i + h + 4h + h + 5h` (FFN out, bias, dropout, residual, LayerNorm). The scores span all s keys
      (no causal halving); a tower with cross-attention (`memory_len > 0`) counts every attention term twice
      over its own s, as the script's `decoder=True` (exact for S = T, the script's T5 row). The context and
      output projections use h where H·K ≠ D would need kqv: the script does.
    * input: `2·e·v` (the word lookup as a dense one-hot matmul) + `2·e·(s + 2)` (position and token type, the
      same) + `2e` (their sum) + `5e + 4e` (LayerNorm, dropout), + `2·h·e + h` when e ≠ h (the projection).
    * MLM head, per predicted position: `2·h·e + e + 8e + 5e` (transform, bias, GELU, LayerNorm) + `2·e·v`
      (vocabulary) + `5v + 2v` (softmax, target).
    * token head (ELECTRA's discriminator), per position: `2h² + h + 8h + 2·h·C` (C = `token_classes`; the
      script's binary head is C = 1).

    Everything else is the script's BERT template whatever the Tower says, as the script itself applies it to
    GPT, RoBERTa, ALBERT and T5: biases, LayerNorm, GELU and dropout are always counted, `embedding_tables`,
    `input_norm`, `lm_transform`, `gated_ffn`, `use_bias` and `norm` play no part, and a pooler / NSP / SOP
    classifier (`pooler_classes`) is not counted (the script has none).

    Args:
      tower: the shapes.
      output_frac: the share of positions through the MLM head; None = the tower's `lm_positions / seq_len`.
        A tower without a vocabulary head (`lm_positions == 0`) counts none either way. The script used
        `ELECTRA_SCRIPT_OUTPUT_FRAC` for every model.

    Returns:
      FLOPs per sequence, per term (names after the script's terms; `matmul/` marks matrix products).

    Raises:
      ValueError: `output_frac` is outside [0, 1].
    """
    if output_frac is not None and not 0.0 <= output_frac <= 1.0:
        raise ValueError(f"output_frac={output_frac} is not a share of positions: pass a number in [0, 1] or None.")
    h, s, v, e, i = tower.d_model, tower.seq_len, tower.vocab_size, tower.e, tower.d_ff
    heads, kqv = tower.num_heads, tower.num_heads * tower.head_dim
    attn_mul = 2 if tower.memory_len else 1
    acc = _Terms()
    layer_per_token = {
        "matmul/layers/kqv": 3 * 2 * h * kqv * attn_mul,
        "layers/kqv_bias": 3 * kqv * attn_mul,
        "matmul/layers/attention_scores": 2 * kqv * s * attn_mul,
        "layers/attention_softmax": SOFTMAX_FLOPS * s * heads * attn_mul,
        "layers/attention_dropout": DROPOUT_FLOPS * s * heads * attn_mul,
        "layers/attention_scale": s * heads * attn_mul,
        "matmul/layers/attention_values": 2 * h * s * attn_mul,
        "matmul/layers/attention_out": 2 * h * h * attn_mul,
        "layers/attention_out_bias": h * attn_mul,
        "layers/attention_out_dropout": DROPOUT_FLOPS * h * attn_mul,
        "layers/attention_residual": h * attn_mul,
        "layers/attention_norm": LAYER_NORM_FLOPS * attn_mul,
        "matmul/layers/ffn_in": 2 * h * i,
        "layers/ffn_act": ACTIVATION_FLOPS * i,
        "layers/ffn_in_bias": i,
        "matmul/layers/ffn_out": 2 * h * i,
        "layers/ffn_out_bias": h,
        "layers/ffn_dropout": DROPOUT_FLOPS * h,
        "layers/ffn_residual": h,
        "layers/ffn_norm": LAYER_NORM_FLOPS * h,
    }
    acc.add_each(layer_per_token, tower.num_layers * s)
    embed_per_token = {
        "matmul/embed/lookup": 2 * e * v,
        "matmul/embed/position_and_type": 2 * e * (s + ELECTRA_SCRIPT_TOKEN_TYPES),
        "embed/sum": 2 * e,
        "embed/norm": LAYER_NORM_FLOPS * e,
        "embed/dropout": DROPOUT_FLOPS * e,
    }
    if e != h:
        embed_per_token.update({"matmul/embed/project": 2 * h * e, "embed/project_bias": h})
    acc.add_each(embed_per_token, s)
    if tower.lm_positions:
        # Why not `output_frac * s` by default: lm_positions is the exact count (20 of 128 in float is inexact).
        predicted = tower.lm_positions if output_frac is None else output_frac * s
        lm_per_position = {
            "matmul/lm_head/transform": 2 * h * e,
            "lm_head/transform_bias": e,
            "lm_head/act": ACTIVATION_FLOPS * e,
            "lm_head/norm": LAYER_NORM_FLOPS * e,
            "matmul/lm_head/vocab": 2 * e * v,
            "loss/lm_softmax": SOFTMAX_FLOPS * v,
            "loss/lm_target": 2 * v,
        }
        acc.add_each(lm_per_position, predicted)
    if tower.token_classes:
        token_per_position = {
            "matmul/token_head/dense": 2 * h * h,
            "token_head/bias": h,
            "token_head/act": ACTIVATION_FLOPS * h,
            "matmul/token_head/classifier": 2 * h * tower.token_classes,
        }
        acc.add_each(token_per_position, s)
    return FlopsCount(acc.terms)


def electra_script_train_flops(towers: Sequence[Tower], batch: int, steps: float = 1, *,
                               output_frac: float | None = None) -> FlopsCount:
    """Training FLOPs of `steps` steps as ELECTRA's script counts them: `ELECTRA_SCRIPT_TRAIN_FACTOR` (2) ×
    batch × steps × the forward of each tower (`electra_script_forward_flops`), summed over towers.

    The convention of ELECTRA's published totals (Clark et al. 2020, Tables 1-4: ELECTRA-Small 1.3e18 with
    `output_frac=ELECTRA_SCRIPT_OUTPUT_FRAC`): backward = forward, dense one-hot lookups, no optimizer term.
    Our own count, `train_flops`, has backward = 2 × forward and gathers. A frozen tower (`trainable=False`,
    which the script never had) counts one forward.

    Args:
      towers: the model (ELECTRA: generator and discriminator, sharing batch, s and steps as in the script).
      batch: sequences per step.
      steps: training steps (the paper's totals are per run).
      output_frac: see `electra_script_forward_flops`; applies to every tower with a vocabulary head.

    Returns:
      FLOPs per term (`tower{i}/` inserted when there are several towers), summed over the steps.
    """
    acc = _Terms()
    for n, tower in enumerate(towers):
        prefix = "" if len(towers) == 1 else f"tower{n}/"
        factor = (ELECTRA_SCRIPT_TRAIN_FACTOR if tower.trainable else 1) * batch * steps
        for name, v in electra_script_forward_flops(tower, output_frac=output_frac).terms.items():
            acc.add(_prefixed(name, prefix), factor * v)
    return FlopsCount(acc.terms)


def electra_script_infer_flops(tower: Tower) -> FlopsCount:
    """Inference FLOPs of one sequence as ELECTRA's script counts them (`get_infer_flops`): the tower's
    layers and input, and a binary token head at every position in place of its pretraining heads.

    The convention of the inference column of Clark et al. 2020, Table 1 (BERT-Small 3.7e9 at s = 128).
    """
    return electra_script_forward_flops(dataclasses.replace(tower, lm_positions=0, token_classes=1))


def format_train_flops(towers: Sequence[Tower], batch: int, steps: float = 1, *, num_params: int = 0,
                       output_frac: float | None = None) -> str:
    """Total training FLOPs of `steps` steps in both conventions, one line each, for a printout.

    "ours": `train_flops` (backward = 2 × forward, so training = 3 × forward; lookups are gathers; AdamW when
    `num_params` is given). "ELECTRA's script": `electra_script_train_flops` (training = 2 × forward, dense
    one-hot lookups; `output_frac` as there). The second line gives its ratio to ours.
    """
    ours = steps * train_flops(towers, batch, num_params=num_params).total
    script = electra_script_train_flops(towers, batch, steps, output_frac=output_frac).total
    return (f"train FLOPs, {batch} sequences x {steps:,.0f} steps:\n"
            f"  ours (backward = 2x forward, lookups are gathers):        {ours:.4e}\n"
            f"  ELECTRA's script (training = 2x forward, one-hot lookups): {script:.4e} ({script / ours:.3f}x ours)")


def step_flops_by_convention(convention: str, towers: Sequence[Tower], batch: int, seq_len: int, *,
                             num_params: int = 0) -> float:
    """One training step's FLOPs in a named convention (`CONVENTIONS`; `llm-jax flops --convention`).

    Raises:
      ValueError: an unknown convention.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"Unknown FLOPs convention {convention!r}; choose one of {sorted(CONVENTIONS)}.")
    return CONVENTIONS[convention](towers, batch, seq_len, num_params)


# name → `count(towers, batch, seq_len, num_params)` of one training step.
CONVENTIONS: dict[str, Any] = {
    # What our step computes: backward = 2 × forward, lookups are gathers, AdamW's update.
    "ours": lambda towers, batch, seq_len, n: train_flops(towers, batch, num_params=n).total,
    # The ELECTRA paper's flops_computation.py (training = 2 × forward, one-hot lookups).
    "electra": lambda towers, batch, seq_len, n: electra_script_train_flops(towers, batch, 1).total,  # not a family branch
    # PaLM's model FLOPs 6N + 12·L·H·Q·T per token.
    "palm": lambda towers, batch, seq_len, n: model_flops_per_token(towers) * batch * seq_len,
}


# ------------------------------------------------------------------------------------------- families


def towers_for(family: str, model_cfg: Any, objective_cfg: Any, seq_len: int, *,
               frozen_configs: Mapping[str, tuple[str, Any]] | None = None) -> tuple[Tower, ...]:
    """The towers of a family's pretraining model under an objective config, at sequence length `seq_len`.

    The family's `towers(...)` describes its stacks; the objective says which heads it reads and how many
    positions per sequence reach the vocabulary projection. The frozen models of the objective's
    `required_models` (a distillation teacher) follow, with `trainable=False` (`Objective.frozen_towers`).

    Args:
      family / model_cfg: the trained model.
      objective_cfg: the objective's config.
      seq_len: T.
      frozen_configs: `{required model name: (family, Config)}`, as the loop loads them; needed when the
        objective has `required_models` (the teacher's shape is not known from the student's).

    Raises:
      ValueError: the objective reads frozen models whose configs are not given.
    """
    from llm_jax import models, objectives  # why lazy: the families import `Tower` from this module

    cls = objectives.objective_class(objective_cfg.name)
    trained = models.family_module(family).towers(
        model_cfg, seq_len, predicted_positions=cls.predicted_positions_for(objective_cfg, seq_len),
        heads=cls.heads)
    memory = cls.memory_positions_for(objective_cfg)
    if memory:  # the objective's memory: M more keys per query, and M more relative distances where scored
        trained = [dataclasses.replace(t, attention_memory=t.attention_memory + memory,
                                       relative_positions=t.relative_positions + memory if t.relative_positions
                                       else 0) for t in trained]
    return tuple(trained) + tuple(cls.frozen_towers(objective_cfg, seq_len, frozen_configs or {}))


def step_flops(family: str, model_cfg: Any, objective_cfg: Any, batch: int, seq_len: int, *, train: bool = True,
               num_params: int = 0, frozen_configs: Mapping[str, tuple[str, Any]] | None = None) -> FlopsCount:
    """FLOPs of one training step (or, `train=False`, one forward pass) of a family under an objective.

    `frozen_configs` are the objective's frozen models (`towers_for`); a training step runs them forward only.
    """
    towers = towers_for(family, model_cfg, objective_cfg, seq_len, frozen_configs=frozen_configs)
    if train:
        return train_flops(towers, batch, num_params=num_params)
    return forward_flops(towers, batch)


# ----------------------------------------------------------------------------------------- XLA's count


def xla_flops(compiled) -> float:
    """`compiled.cost_analysis()["flops"]`: XLA's count, per device, a loop body counted once."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax returned one dict per computation
        analysis = analysis[0]
    return float(analysis["flops"])


_DEF_RE = re.compile(r"^\s*(?:ROOT\s+)?(%[\w.\-]+)\s*=\s*\w+\[([\d,]*)\]")
_DOT_RE = re.compile(r"^\s*(?:ROOT\s+)?%[\w.\-]+\s*=\s*\w+\[([\d,]*)\]\S*\s+dot\((%[\w.\-]+),\s*(%[\w.\-]+)\)")
_CONTRACT_RE = re.compile(r"lhs_contracting_dims=\{([\d,]*)\}")


def _dims(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def hlo_dot_flops(compiled) -> int:
    """FLOPs of the `dot` instructions XLA kept in the optimised module: Σ 2 · |output| · |contracted|.

    The matmul part of `cost_analysis()` made inspectable: the analytic matmul count must equal it exactly,
    while the elementwise remainder of XLA's total depends on XLA's own per-op rules.
    """
    text = compiled.as_text()
    shapes: dict[str, list[int]] = {}
    for line in text.splitlines():
        m = _DEF_RE.match(line)
        if m:
            shapes[m.group(1)] = _dims(m.group(2))
    total = 0
    for line in text.splitlines():
        m = _DOT_RE.match(line)
        if not m:
            continue
        lhs = shapes[m.group(2)]
        contract = _CONTRACT_RE.search(line)
        k = int(np.prod([lhs[i] for i in _dims(contract.group(1))])) if contract else 1
        total += 2 * int(np.prod(_dims(m.group(1)))) * k
    return total
