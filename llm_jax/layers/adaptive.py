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
rounded up to one of a few static row counts (`capacities`); without labels every cluster is scored everywhere.

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
        (`tail_log_probs`); values and gradients equal the full distribution's.
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

        def log_softmax(i, x_ND):
            return _log_softmax(x_ND, *cluster(i), self.dtype)

        B, T, D = h_BTD.shape
        h_ND = h_BTD.reshape(B * T, D)
        head_NC = log_softmax(0, h_ND)
        c0 = bounds[0][1]
        if labels_BT is None:
            parts = [head_NC[..., :c0]]
            for i in range(1, len(bounds)):
                parts.append(head_NC[..., c0 + i - 1, None] + log_softmax(i, h_ND))
            return jnp.concatenate(parts, axis=-1).reshape(B, T, -1)
        labels_N = labels_BT.reshape(-1).astype(jnp.int32)
        nll_N = -jnp.take_along_axis(head_NC, jnp.clip(labels_N, 0, c0 - 1)[:, None], -1)[:, 0]
        for i in range(1, len(bounds)):
            l, r = bounds[i]
            inside_N = (labels_N >= l) & (labels_N < r)
            tail_N = tail_log_probs(inside_N, jnp.clip(labels_N - l, 0, r - l - 1), h_ND, cluster(i), self.dtype)
            nll_N = jnp.where(inside_N, -(head_NC[:, c0 + i - 1] + tail_N), nll_N)
        return nll_N.reshape(B, T)


def _log_softmax(x_ND, w_VE, b_V, p_DE, dtype) -> jax.Array:
    """One cluster's log-probabilities `[N, V_i]` (float32) of hidden states `[N, D]`: `(x · P) · Wᵀ + b`."""
    x = x_ND.astype(dtype)
    if p_DE is not None:
        x = jnp.einsum("ND,DE->NE", x, p_DE.astype(dtype))
    logits = jnp.einsum("NE,VE->NV", x, w_VE.astype(dtype)) + b_V.astype(dtype)
    # Why float32: the normaliser of a large vocabulary (DESIGN §5.9).
    return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)


def capacities(n: int) -> tuple[int, ...]:
    """The row counts `tail_log_probs` compiles for `n` positions: eighths of n, and n/16, n/32 below them (a tail
    cluster's work is at most n/8 rows above what it needs, or twice them for the smallest)."""
    return tuple(sorted({max(1, -(-n * k // 8)) for k in range(1, 9)} | {max(1, -(-n // 16)), max(1, -(-n // 32))}))


def tail_log_probs(inside_N: jax.Array, labels_N: jax.Array, h_ND: jax.Array, cluster: tuple, dtype) -> jax.Array:
    """`log p(label | cluster)` `[N]` (float32) at the positions where `inside_N` holds, 0 elsewhere: a tail
    cluster scored only where its words are the targets, as Hugging Face's `index_select` does, in static shapes.

    The cluster's positions come first in a stable sort, then others to fill the smallest of `capacities(N)` that
    holds them all; `lax.switch` runs that program (none when the cluster is empty), so the cluster costs its own
    rows, rounded up, not N. The backward pass is its own switch that recomputes the chosen rows' scores: with
    autodiff through the switch every branch would carry every other branch's `[K, V_i]` residuals as zeros.

    Args:
      inside_N: bool, the positions whose target lies in the cluster.
      labels_N: targets relative to the cluster's first id, clipped into it.
      h_ND: the hidden states (differentiable).
      cluster: `(w_VE, b_V, p_DE or None)` (differentiable).
    """
    n = inside_N.shape[0]
    order_N = jnp.argsort(~inside_N, stable=True)
    count = jnp.sum(inside_N, dtype=jnp.int32)
    which = jnp.where(count == 0, 0, 1 + jnp.searchsorted(jnp.asarray(capacities(n), jnp.int32), count, side="left"))
    return _gated_rows(which, order_N, labels_N, (h_ND, cluster), jnp.dtype(dtype))


def _rows_log_probs(idx_K, labels_N, floats, dtype) -> jax.Array:
    h_ND, cluster = floats
    lp_KV = _log_softmax(h_ND[idx_K], *cluster, dtype)
    return jnp.take_along_axis(lp_KV, labels_N[idx_K][:, None], -1)[:, 0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _gated_rows(which, order_N, labels_N, floats, dtype):
    n = order_N.shape[0]

    def rows(cap):
        def branch(ops):
            order_N, labels_N, floats = ops
            idx_K = order_N[:cap]
            return jnp.zeros((n,), jnp.float32).at[idx_K].set(_rows_log_probs(idx_K, labels_N, floats, dtype),
                                                             unique_indices=True)
        return branch

    return jax.lax.switch(which, [lambda ops: jnp.zeros((n,), jnp.float32), *map(rows, capacities(n))],
                          (order_N, labels_N, floats))


def _gated_rows_fwd(which, order_N, labels_N, floats, dtype):
    return _gated_rows(which, order_N, labels_N, floats, dtype), (which, order_N, labels_N, floats)


def _gated_rows_bwd(dtype, residuals, ct_N):
    which, order_N, labels_N, floats = residuals

    def rows(cap):
        def branch(ops):
            order_N, labels_N, floats, ct_N = ops
            idx_K = order_N[:cap]
            _, pull = jax.vjp(lambda f: _rows_log_probs(idx_K, labels_N, f, dtype), floats)
            return pull(ct_N[idx_K])[0]
        return branch

    d_floats = jax.lax.switch(which, [lambda ops: jax.tree.map(jnp.zeros_like, ops[2]),
                                      *map(rows, capacities(order_N.shape[0]))], (order_N, labels_N, floats, ct_N))
    return None, None, None, d_floats


_gated_rows.defvjp(_gated_rows_fwd, _gated_rows_bwd)

__all__ = ["AdaptiveEmbedding", "AdaptiveSoftmax", "cluster_bounds", "cluster_widths"]
