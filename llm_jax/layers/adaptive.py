"""Adaptive input embeddings and the adaptive softmax (Baevski & Auli 2019; Grave et al. 2017), as Transformer-XL
uses them for WikiText-103's 267,735 words (Dai et al. 2019 §4).

The vocabulary is cut at `cutoffs` into clusters ordered by frequency: cluster 0 holds ids `[0, c_1)`, cluster i
ids `[c_i, c_{i+1})`, the last one up to V. With `div_val` > 1 cluster i gets its own narrower table of width
`E / div_val^i` and a projection to the model width D (rare words get fewer parameters); with `div_val` = 1 one
table `[V, E]` serves every cluster and a projection exists only when E ≠ D.

The softmax factorises `p(w) = p(cluster(w)) · p(w | cluster(w))` (Grave et al. 2017 §3): the head scores cluster
0's words plus one "cluster token" per tail cluster; tail cluster i scores its own words. Scores of a cluster are
`(h · P_i) · W_iᵀ + b_i` with `P_i` `[D, E_i]` (no projection: `h · W_iᵀ`). The output weights W_i are the input
tables when tied (Press & Wolf 2017; Hugging Face `tie_word_embeddings`), and P_i the input projection when
`tie_projs[i]` (wt103: all but the first). In training (labels given) a tail cluster is scored only at the positions
whose target it holds, as Hugging Face's `index_select` does (Grave et al. 2017 §3: the point of the factorisation),
per sequence, rounded up to one of a few static row counts (`capacities`, `tail_log_probs`); without labels every
cluster is scored everywhere.

Hugging Face names and layouts (transformers 4.37 `AdaptiveEmbedding`, `ProjectedAdaptiveLogSoftmax`):
`emb_layers.{i}.weight` `[V_i, E_i]` = our `emb_layers_{i}` as is; `emb_projs.{i}` `[D, E_i]` applied as
`F.linear(e, P)` (= e · Pᵀ) = our `emb_projs_{i}` `[E_i, D]` transposed; `out_layers.{i}.weight/bias` (one layer over
the whole vocabulary when `div_val` = 1, sliced per cluster); `out_projs.{i}` `[D, E_i]` applied as `h · P` = our
`out_projs_{i}` as is; `cluster_weight` `[n_clusters, E_0]`, `cluster_bias` `[n_clusters]`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from llm_jax.layers.embeddings import check_ids
from llm_jax.sharding import P_EMBED, P_VOCAB


def cluster_bounds(vocab_size: int, cutoffs: Sequence[int]) -> list[tuple[int, int]]:
    """`[(l_i, r_i)]`: the id range of each cluster (`cutoffs` strictly increasing inside `(0, V)`).

    Raises:
      ValueError: cutoffs that are not strictly increasing in `(0, vocab_size)`.
    """
    ends = [0, *cutoffs, vocab_size]
    if any(b <= a for a, b in zip(ends, ends[1:])):
        raise ValueError(f"cutoffs {list(cutoffs)} must increase strictly inside (0, vocab_size={vocab_size}); "
                         f"e.g. WikiText-103's [20000, 40000, 200000].")
    return list(zip(ends[:-1], ends[1:]))


def cluster_widths(embed_dim: int, div_val: int, n_clusters: int) -> list[int]:
    """`E_i = E // div_val^i` per cluster (one shared width when `div_val` = 1)."""
    return [embed_dim // (div_val ** i) for i in range(n_clusters)]


def _table_axes():
    return (P_VOCAB, P_EMBED)


class AdaptiveEmbedding(nn.Module):
    """Adaptive input (Baevski & Auli 2019 §3): cluster i's table `[V_i, E_i]` and projection `E_i → D`, scaled by
    √D (Transformer-XL's `emb_scale`, as Vaswani et al. §3.4).

    Attributes:
      vocab_size: V.
      embed_dim: E (cluster 0's width).
      model_dim: D (HF `d_proj`).
      cutoffs: cluster boundaries (empty = one cluster).
      div_val: width divisor per cluster.
      init_std / proj_init_std: N(0, σ²) of the tables and of the projections.
    """

    vocab_size: int
    embed_dim: int
    model_dim: int
    cutoffs: tuple[int, ...] = ()
    div_val: int = 1
    init_std: float = 0.02
    proj_init_std: float = 0.01
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        bounds = cluster_bounds(self.vocab_size, self.cutoffs)
        if self.div_val == 1:
            bounds = [(0, self.vocab_size)]  # one table serves every cluster
        widths = cluster_widths(self.embed_dim, self.div_val, len(bounds))
        self.bounds = bounds
        self.tables = [self.param(f"emb_layers_{i}", nn.with_logical_partitioning(
            nn.initializers.normal(self.init_std), _table_axes()), (r - l, e), jnp.float32)
            for i, ((l, r), e) in enumerate(zip(bounds, widths))]
        # Why no projection for one table of width D: Hugging Face has none then (`d_proj == d_embed`).
        self.projs = [self.param(f"emb_projs_{i}", nn.with_logical_partitioning(
            nn.initializers.normal(self.proj_init_std), (None, P_EMBED)), (e, self.model_dim), jnp.float32)
            if self.div_val > 1 or e != self.model_dim else None for i, e in enumerate(widths)]

    def __call__(self, ids_BT: jax.Array) -> jax.Array:
        """`[B, T]` ids → `[B, T, D]`, already multiplied by √D.

        Raises:
          ValueError: concrete ids outside `[0, V)` (under tracing they are not checked; see `Embed`).
        """
        if not isinstance(ids_BT, jax.core.Tracer):
            check_ids(ids_BT, self.vocab_size, "token ids (model.vocab_size)")
        out_BTD = None
        for (l, r), table_VE, proj_ED in zip(self.bounds, self.tables, self.projs):
            inside_BT = (ids_BT >= l) & (ids_BT < r)
            e_BTE = jnp.take(table_VE, jnp.clip(ids_BT - l, 0, r - l - 1), axis=0).astype(self.dtype)
            x_BTD = e_BTE if proj_ED is None else jnp.einsum("BTE,ED->BTD", e_BTE, proj_ED.astype(self.dtype))
            x_BTD = jnp.where(inside_BT[..., None], x_BTD, 0) if len(self.bounds) > 1 else x_BTD
            out_BTD = x_BTD if out_BTD is None else out_BTD + x_BTD
        return out_BTD * jnp.asarray(np.sqrt(self.model_dim), self.dtype)

    def shared(self) -> list[tuple[jax.Array, jax.Array | None]]:
        """`(table_VE, proj_ED)` per table: what a tied adaptive softmax reads."""
        return list(zip(self.tables, self.projs))


class AdaptiveSoftmax(nn.Module):
    """The projected adaptive softmax (Grave et al. 2017; Transformer-XL's `ProjectedAdaptiveLogSoftmax`).

    Attributes:
      vocab_size, embed_dim, model_dim, cutoffs, div_val: as `AdaptiveEmbedding`.
      tie_weights: the output weights are the input tables (passed to `__call__` as `shared`).
      tie_projs: per cluster, the output projection is the input one (ignored where there is none).
      init_std / proj_init_std: N(0, σ²) of the untied weights / projections and of the cluster weights.
    """

    vocab_size: int
    embed_dim: int
    model_dim: int
    cutoffs: tuple[int, ...] = ()
    div_val: int = 1
    tie_weights: bool = True
    tie_projs: tuple[bool, ...] = ()
    init_std: float = 0.02
    proj_init_std: float = 0.01
    dtype: jnp.dtype = jnp.float32

    def _tied_proj(self, i: int) -> bool:
        return bool(self.tie_projs[i]) if i < len(self.tie_projs) else False

    @nn.compact
    def __call__(self, h_BTD: jax.Array, shared: list, labels_BT: jax.Array | None = None):
        """Per-token negative log-likelihoods of `labels_BT` (nats, float32 `[B, T]`), or without labels the
        log-probabilities of the whole vocabulary (float32 `[B, T, V]`).

        Args:
          h_BTD: the last hidden states.
          shared: `AdaptiveEmbedding.shared()` (the tied tables and projections).
          labels_BT: target ids in `[0, V)`; None = return every word's log-probability.

        With labels, tail cluster i costs about its own positions' `[·, E_i]·[E_i, V_i]` scores, not N's
        (`tail_log_probs`); values and gradients equal the full distribution's. The labels path has
        no forward-mode derivative (a custom VJP).
        """
        bounds = cluster_bounds(self.vocab_size, self.cutoffs)
        n_tables = 1 if self.div_val == 1 else len(bounds)
        widths = cluster_widths(self.embed_dim, self.div_val, len(bounds))
        normal, proj_normal = nn.initializers.normal(self.init_std), nn.initializers.normal(self.proj_init_std)
        weights, biases = [], []
        for i in range(n_tables):
            (l, r), e = (0, self.vocab_size) if self.div_val == 1 else bounds[i], widths[i]
            weight = shared[i][0] if self.tie_weights else self.param(
                f"out_layers_{i}_weight", nn.with_logical_partitioning(normal, _table_axes()), (r - l, e), jnp.float32)
            weights.append(weight)
            biases.append(self.param(f"out_layers_{i}_bias", nn.with_logical_partitioning(
                nn.initializers.zeros, (P_VOCAB,)), (r - l,), jnp.float32))
        projs = []
        for i, e in enumerate(widths):
            has_proj = self.div_val > 1 or e != self.model_dim
            if not has_proj:
                projs.append(None)
            elif self._tied_proj(i):
                # HF: with one table the tied projection of every cluster is the input's only one.
                emb_proj_ED = shared[i if self.div_val > 1 else 0][1]
                projs.append(emb_proj_ED.T)
            else:
                projs.append(self.param(f"out_projs_{i}", nn.with_logical_partitioning(proj_normal, (P_EMBED, None)),
                                        (self.model_dim, e), jnp.float32))
        n_clusters = len(bounds) - 1
        if n_clusters:
            cluster_w = self.param("cluster_weight", nn.with_logical_partitioning(normal, (None, P_EMBED)),
                                   (n_clusters, widths[0]), jnp.float32)
            cluster_b = self.param("cluster_bias", nn.with_logical_partitioning(nn.initializers.zeros, (None,)),
                                   (n_clusters,), jnp.float32)

        def cluster(i):
            (l, r) = bounds[i]
            if self.div_val == 1:
                w, b = weights[0][l:r], biases[0][l:r]
            else:
                w, b = weights[i], biases[i]
            if i == 0 and n_clusters:
                w, b = jnp.concatenate([w, cluster_w]), jnp.concatenate([b, cluster_b])
            return w, b, projs[i]

        def log_softmax(i, x_BTD):
            return _log_softmax(x_BTD, *cluster(i), self.dtype)

        head_BTC = log_softmax(0, h_BTD)
        c0 = bounds[0][1]
        if labels_BT is None:
            parts = [head_BTC[..., :c0]]
            for i in range(1, len(bounds)):
                parts.append(head_BTC[..., c0 + i - 1, None] + log_softmax(i, h_BTD))
            return jnp.concatenate(parts, axis=-1)
        labels_BT = labels_BT.astype(jnp.int32)
        nll_BT = -jnp.take_along_axis(head_BTC, jnp.clip(labels_BT, 0, c0 - 1)[..., None], -1)[..., 0]
        for i in range(1, len(bounds)):
            l, r = bounds[i]
            inside_BT = (labels_BT >= l) & (labels_BT < r)
            tail_BT = tail_log_probs(inside_BT, jnp.clip(labels_BT - l, 0, r - l - 1), h_BTD, cluster(i), self.dtype)
            nll_BT = jnp.where(inside_BT, -(head_BTC[..., c0 + i - 1] + tail_BT), nll_BT)
        return nll_BT


def _log_softmax(x_BKD, w_VE, b_V, p_DE, dtype) -> jax.Array:
    """One cluster's log-probabilities `[B, K, V_i]` (float32) of hidden states `[B, K, D]`: `(x · P) · Wᵀ + b`."""
    x_BKE = x_BKD.astype(dtype)
    if p_DE is not None:
        x_BKE = jnp.einsum("BKD,DE->BKE", x_BKE, p_DE.astype(dtype))
    logits_BKV = jnp.einsum("BKE,VE->BKV", x_BKE, w_VE.astype(dtype)) + b_V.astype(dtype)
    # Why float32: the normaliser of a large vocabulary (DESIGN §5.9).
    return jax.nn.log_softmax(logits_BKV.astype(jnp.float32), axis=-1)


def capacities(n: int) -> tuple[int, ...]:
    """The row counts per sequence `tail_log_probs` compiles for sequences of `n` positions: eighths of n, and
    n/16, n/32 below them (rounded up). A cluster's rows are rounded up to the next one: at most n/8 rows more than
    it needs, and n/32 rows when it needs fewer."""
    return tuple(sorted({max(1, -(-n * k // 8)) for k in range(1, 9)} | {max(1, -(-n // 16)), max(1, -(-n // 32))}))


def tail_log_probs(inside_BT: jax.Array, rel_labels_BT: jax.Array, h_BTD: jax.Array,
                   cluster: tuple[jax.Array, jax.Array, jax.Array | None], dtype) -> jax.Array:
    """`log p(label | cluster)` of a tail cluster where its words are the targets, as Hugging Face's `index_select`
    of those positions does (Grave et al. 2017 §3), in static shapes.

    In each sequence a stable sort puts the positions whose target is in the cluster first; the K first positions
    of every sequence are gathered, K the smallest of `capacities(T)` that holds the fullest sequence's, and scored;
    `lax.switch` runs that program at run time (none when no sequence has one). Why per sequence: the batch axis is
    the one a data-parallel mesh splits, so each device scores its own sequences' rows. The backward pass is a
    second switch that recomputes the chosen rows' scores (`_gated_rows`).

    Args:
      inside_BT: bool, the positions whose target lies in the cluster.
      rel_labels_BT: int, the targets relative to the cluster's first id, clipped into it.
      h_BTD: the last hidden states (differentiable).
      cluster: `(w_VE, b_V, p_DE or None)`: the cluster's output weights, biases and projection (differentiable).
      dtype: the matmuls' dtype (the log-softmax is float32).

    Returns:
      float32 `[B, T]`: the log-probabilities where `inside_BT` holds, 0 elsewhere.
    """
    t = inside_BT.shape[1]
    order_BT = jnp.argsort(~inside_BT, axis=1, stable=True)
    count_B = jnp.sum(inside_BT, axis=1, dtype=jnp.int32)
    most = jnp.max(count_B)
    branch = jnp.where(most == 0, 0, 1 + jnp.searchsorted(jnp.asarray(capacities(t), jnp.int32), most, side="left"))
    return _gated_rows(branch, order_BT, count_B, rel_labels_BT, (h_BTD, cluster), jnp.dtype(dtype))


def _rows_log_probs(k: int, order_BT, count_B, rel_labels_BT, floats, dtype) -> jax.Array:
    """The label's log-probability at the first `k` positions of `order_BT` per sequence, `[B, k]`, 0 past a
    sequence's `count_B`; `floats = (h_BTD, (w_VE, b_V, p_DE))`."""
    h_BTD, cluster = floats
    idx_BK = order_BT[:, :k]
    h_BKD = jnp.take_along_axis(h_BTD, idx_BK[..., None], axis=1)
    labels_BK = jnp.take_along_axis(rel_labels_BT, idx_BK, axis=1)
    lp_BK = jnp.take_along_axis(_log_softmax(h_BKD, *cluster, dtype), labels_BK[..., None], -1)[..., 0]
    return jnp.where(jnp.arange(k)[None, :] < count_B[:, None], lp_BK, 0.0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _gated_rows(branch, order_BT, count_B, rel_labels_BT, floats, dtype):
    """`[B, T]` log-probabilities (see `tail_log_probs`): `branch` 0 = no rows, `i` = `capacities(T)[i - 1]` rows per
    sequence; the integer arguments have no gradient, `floats = (h_BTD, cluster)` do."""
    b, t = order_BT.shape

    def rows(k):
        def run(ops):
            order_BT, count_B, rel_labels_BT, floats = ops
            lp_BK = _rows_log_probs(k, order_BT, count_B, rel_labels_BT, floats, dtype)
            return jnp.zeros((b, t), jnp.float32).at[jnp.arange(b)[:, None], order_BT[:, :k]].set(
                lp_BK, unique_indices=True)
        return run

    return jax.lax.switch(branch, [lambda ops: jnp.zeros((b, t), jnp.float32), *map(rows, capacities(t))],
                          (order_BT, count_B, rel_labels_BT, floats))


def _gated_rows_fwd(branch, order_BT, count_B, rel_labels_BT, floats, dtype):
    # Why only the inputs as residuals: autodiff through the switch would make every branch return every other
    # branch's `[B, K, V_i]` residuals (zeros), several times the dense buffer.
    out_BT = _gated_rows(branch, order_BT, count_B, rel_labels_BT, floats, dtype)
    return out_BT, (branch, order_BT, count_B, rel_labels_BT, floats)


def _gated_rows_bwd(dtype, residuals, ct_BT):
    branch, order_BT, count_B, rel_labels_BT, floats = residuals

    def rows(k):
        def run(ops):
            order_BT, count_B, rel_labels_BT, floats, ct_BT = ops
            _, pull = jax.vjp(lambda f: _rows_log_probs(k, order_BT, count_B, rel_labels_BT, f, dtype), floats)
            return pull(jnp.take_along_axis(ct_BT, order_BT[:, :k], axis=1))[0]
        return run

    d_floats = jax.lax.switch(branch, [lambda ops: jax.tree.map(jnp.zeros_like, ops[3]),
                                       *map(rows, capacities(order_BT.shape[1]))],
                              (order_BT, count_B, rel_labels_BT, floats, ct_BT))
    return None, None, None, None, d_floats


_gated_rows.defvjp(_gated_rows_fwd, _gated_rows_bwd)

__all__ = ["AdaptiveEmbedding", "AdaptiveSoftmax", "capacities", "cluster_bounds", "cluster_widths", "tail_log_probs"]
