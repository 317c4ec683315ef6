"""Relative-position attention of Transformer-XL (Dai et al. 2019 §3.3) and XLNet (Yang et al. 2019 §2.3, App. A.2).

For query i (absolute position M + i after M memory slots) and key j of the K = M + T keys, at relative distance
d = M + i − j:

    score_ij = [(q_i + u)·k_j  +  (q_i + v)·W_r R_d  (+ (q_i + s)·e_{seg_ij})] / sqrt(K_head)

term (a)+(c) "content" with the content bias u, (b)+(d) "position" with the position bias v and the projected
sinusoid R_d, and XLNet's relative segment term with bias s and a learned embedding e ∈ {same, different}. The
position term is computed against every row of R at once (`[T, R]`) and `rel_shift` turns it into `[T, K]`.

Layouts and conventions of Hugging Face (for the parity work; HF is sequence-major `[T, B, ...]`, we are `[B, T, ...]`):

* `XLNetRelativeAttention`: `q, k, v, r` are `[D, H, K]` parameters (`"ibh,hnd->ibnd"`): our `query`, `key`,
  `value`, `pos` kernels as they are; `o` is `[D, H, K]` used as `"ibnd,hnd->ibh"`: our `out` kernel `[H, K, D]`
  is its transpose. `r_w_bias` = u, `r_r_bias` = v, `r_s_bias` = s (all `[H, K]`, per layer), `seg_embed` `[2, H, K]`
  (index 0 = same segment, 1 = different). No projection biases. `attn_mask` is float, 1 = *masked*, `[T, K, B]`
  (our `mask_BHTS` is True = may attend); `seg_mat` is the one-hot `[T, K, B, 2]` of `token_type_ids[i] !=
  cat(zeros(M), token_type_ids)[j]` (our `seg_diff_BTS`); `target_mapping` `[P, T, B]` (our `target_mapping_BPT`).
  The post-attention residual + LayerNorm is XLNet's layer, not this module.
* `TransfoXLModel` 4.37 (`RelPartialLearnableMultiHeadAttn`): `qkv_net.weight` `[3·H·K, D]` splits into q, k, v
  (each `[H·K, D]` → our `[D, H, K]`), `r_net.weight` `[H·K, D]` → `pos`, `o_net.weight` `[D, H·K]` → `out`
  `[H, K, D]`; no biases. `r_w_bias` / `r_r_bias` `[H, K]` live in each layer when `untie_r` (wt103: true), else in
  the model. `attn_mask` is bool, True = *masked*. Positions `klen−1 … 0` (`attn_type="txl"` here).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from llm_jax.layers.linear import Einsum
from llm_jax.sharding import BATCH, EMBED, HEADS, KV, SEQ, P_EMBED, P_HEADS, P_KV, shard

ATTN_TYPES = ("txl", "uni", "bi")


def sinusoid_positions(klen: int, qlen: int, d: int, *, clamp_len: int = -1, attn_type: str = "uni") -> jax.Array:
    """The relative position embeddings R `[R, D]`: row r is the sinusoid of distance `first − r`.

    `cat(sin(p·f), cos(p·f))` with `f = 1 / 10000^(2i/D)` (Vaswani et al. 2017 §3.5, sin and cos halves
    concatenated as Transformer-XL does). Distances, as Hugging Face builds them:

    * "txl": `klen − 1 … 0` (K rows; `TransfoXLModel`: `arange(klen − 1, −1, −1)`);
    * "uni": `klen … 0` (K + 1 rows; `XLNetModel.relative_positional_encoding`, `attn_type="uni"`);
    * "bi":  `klen … −qlen + 1` (K + T rows; XLNet's `arange(klen, −qlen, −1)`, `attn_type="bi"`, its default).

    Args:
      klen: K = M + T keys.
      qlen: T queries.
      d: D (even).
      clamp_len: > 0 clips distances to `[−clamp_len, clamp_len]` (HF `clamp_len`; −1 or 0 = off).
      attn_type: "txl", "uni" or "bi".

    Returns:
      float32 `[R, D]`.
    """
    if attn_type not in ATTN_TYPES:
        raise ValueError(f"attn_type={attn_type!r} is not one of {ATTN_TYPES} (TransfoXL, XLNet uni, XLNet bi).")
    if d % 2:
        raise ValueError(f"sinusoid positions need an even width, got d={d}; use an even model width.")
    begin, end = {"txl": (klen - 1, -1), "uni": (klen, -1), "bi": (klen, -qlen)}[attn_type]
    pos_R = jnp.arange(begin, end, -1, dtype=jnp.float32)
    if clamp_len > 0:
        pos_R = jnp.clip(pos_R, -clamp_len, clamp_len)
    inv_freq = 1.0 / (10000.0 ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d))
    x_RF = pos_R[:, None] * inv_freq[None, :]
    return jnp.concatenate([jnp.sin(x_RF), jnp.cos(x_RF)], axis=-1)


def rel_shift(x_BHTR: jax.Array, klen: int) -> jax.Array:
    """`[..., T, R]` scores against R → `[..., T, K]` against keys: `out[i, j] = x[i, j + T − i]` (XLNet).

    The pad-reshape-slice trick: view `[T, R]` as `[R, T]`, drop the first row, view as `[T, R − 1]` and keep K
    columns. With R's row r at distance `klen − r` (XLNet's "uni" / "bi"), entry (i, j) then holds distance
    `M + i − j`. This is HF `XLNetRelativeAttention.rel_shift_bnij` exactly. Transformer-XL's R starts one
    closer (`klen − 1 … 0`, R = K rows): its `_rel_shift` first pads a zero column in front, which is what this
    function does when R = K — so both HF shifts are reproduced, including the entries that masks then hide
    (future keys in "txl" / "uni" get values from other rows).

    Args:
      x_BHTR: scores against the R relative positions, leading axes arbitrary.
      klen: K, keys to keep (R ≥ K).

    Returns:
      `[..., T, K]`.
    """
    *lead, t, r = x_BHTR.shape
    if r < klen:
        raise ValueError(f"rel_shift needs at least klen={klen} relative positions, got R={r}; build R with "
                         "sinusoid_positions(klen, qlen, ...).")
    if r == klen:  # Transformer-XL's zero column.
        x_BHTR = jnp.pad(x_BHTR, [(0, 0)] * len(lead) + [(0, 0), (1, 0)])
        r += 1
    x = x_BHTR.reshape(*lead, r, t)[..., 1:, :]
    return x.reshape(*lead, t, r - 1)[..., :klen]


class RelativeAttention(nn.Module):
    """Relative-position multi-head attention (Transformer-XL §3.3; XLNet two-stream and segment terms).

    The content/position biases u, v (and XLNet's segment bias s) are call arguments, so a family decides
    whether they are shared across layers (Transformer-XL `untie_r=False`) or per layer (a param of its layer).
    One instance serves both XLNet streams with the same weights: call it once for the content stream h
    (`q_in_BTD=h`) and once for the query stream g (`q_in_BTD=g, kv_in_BTD=h`, its own mask). Under `jit`,
    XLA's common-subexpression elimination merges the second call's key / value / position projections with
    the first's (same operands).

    Attributes:
      num_heads: H.
      head_dim: K (per head).
      segments: own XLNet's relative segment embedding `seg_embed` `[2, H, K]` (§2.5 "Relative Segment
        Encodings") and add the segment term when `seg_diff_BTS` is given.
      use_bias: biases on the projections (neither Transformer-XL nor XLNet has them).
      dropout_rate: attention-probability dropout (HF `dropatt` / `dropout`).
      dtype: compute dtype; scores and softmax in float32.
    """

    num_heads: int
    head_dim: int
    segments: bool = False
    use_bias: bool = False
    dropout_rate: float = 0.0
    kernel_init: nn.initializers.Initializer = nn.initializers.normal(0.02)
    dtype: jnp.dtype = jnp.float32

    def _proj(self, eqn: str, shape, axes, name: str) -> Einsum:
        return Einsum(eqn, shape, axes, use_bias=self.use_bias, kernel_init=self.kernel_init, dtype=self.dtype,
                      name=name)

    @nn.compact
    def __call__(
        self,
        q_in_BTD: jax.Array,
        kv_in_BTD: jax.Array | None = None,
        *,
        r_RD: jax.Array,
        u_HK: jax.Array,
        v_HK: jax.Array,
        mems_BMD: jax.Array | None = None,
        mask_BHTS: jax.Array | None = None,
        seg_diff_BTS: jax.Array | None = None,
        s_HK: jax.Array | None = None,
        target_mapping_BPT: jax.Array | None = None,
        deterministic: bool = True,
    ) -> jax.Array:
        """Relative attention from the queries of `q_in_BTD` to `cat(mems_BMD, kv_in_BTD)`; no residual, no norm.

        Args:
          q_in_BTD: the queries' input: the content stream h, or XLNet's query stream g (`[B, P, D]` with
            `target_mapping_BPT`).
          kv_in_BTD: the keys'/values' input (the content stream h); None means `q_in_BTD`. Its T positions are
            the queries' positions.
          r_RD: relative position embeddings from `sinusoid_positions(M + T, T, D, ...)` (after the family's
            dropout), any of its orderings; `[B, R, D]` gives each row its own (XLNet's `bi_data`, whose second
            half of the batch reads the distances negated).
          u_HK, v_HK: content and position biases (Transformer-XL's u, v; HF `r_w_bias`, `r_r_bias`).
          mems_BMD: memory prefix of the keys/values (Transformer-XL recurrence, §3.2); the family stops its
            gradient.
          mask_BHTS: boolean, True = may attend, broadcastable to `[B, H, T, M + T]`.
          seg_diff_BTS: XLNet: True where query i and key j are in different segments (memory counts as
            segment 0), `[B, T, M + T]`; needs `segments=True` and `s_HK`.
          s_HK: XLNet's segment bias (HF `r_s_bias`).
          target_mapping_BPT: XLNet: one-hot rows placing the P query-stream inputs at T positions (HF
            `target_mapping` `[P, T, B]`); the output comes back as `[B, P, D]`.
          deterministic: no dropout.

        Returns:
          `[B, T, D]` (or `[B, P, D]` with `target_mapping_BPT`).
        """
        kv_in_BTD = q_in_BTD if kv_in_BTD is None else kv_in_BTD
        d = kv_in_BTD.shape[-1]
        h, k_dim = self.num_heads, self.head_dim
        in_axes = (P_EMBED, P_HEADS, P_KV)
        q_BTHK = self._proj("BTD,DHK->BTHK", (d, h, k_dim), in_axes, "query")(q_in_BTD)
        if target_mapping_BPT is not None:
            q_BTHK = jnp.einsum("BPHK,BPT->BTHK", q_BTHK, target_mapping_BPT.astype(q_BTHK.dtype))
        t = kv_in_BTD.shape[1]
        if q_BTHK.shape[1] != t:
            raise ValueError(f"RelativeAttention: {q_BTHK.shape[1]} queries for {t} content positions; the query "
                             "stream must have the content stream's length or a target_mapping_BPT onto it.")
        cat_BSD = kv_in_BTD if mems_BMD is None else jnp.concatenate([mems_BMD.astype(kv_in_BTD.dtype), kv_in_BTD], 1)
        klen = cat_BSD.shape[1]
        k_BSHK = shard(self._proj("BSD,DHK->BSHK", (d, h, k_dim), in_axes, "key")(cat_BSD), BATCH, SEQ, HEADS, KV)
        v_BSHK = shard(self._proj("BSD,DHK->BSHK", (d, h, k_dim), in_axes, "value")(cat_BSD), BATCH, SEQ, HEADS, KV)
        u_HK, v_HK = u_HK.astype(q_BTHK.dtype), v_HK.astype(q_BTHK.dtype)

        # Why f32 scores: as in `dot_product_attention`.
        f32 = dict(preferred_element_type=jnp.float32)
        ac_BHTS = jnp.einsum("BTHK,BSHK->BHTS", q_BTHK + u_HK, k_BSHK, **f32)
        if r_RD.ndim == 3:  # one R per row (XLNet's bi_data: forward and backward halves of the batch)
            r_BRHK = self._proj("BRD,DHK->BRHK", (r_RD.shape[-1], h, k_dim), in_axes, "pos")(r_RD)
            bd_BHTR = jnp.einsum("BTHK,BRHK->BHTR", q_BTHK + v_HK, r_BRHK, **f32)
        else:
            r_RHK = self._proj("RD,DHK->RHK", (r_RD.shape[-1], h, k_dim), in_axes, "pos")(r_RD)
            bd_BHTR = jnp.einsum("BTHK,RHK->BHTR", q_BTHK + v_HK, r_RHK, **f32)
        bd_BHTS = rel_shift(bd_BHTR, klen)
        scores_BHTS = ac_BHTS + bd_BHTS
        if self.segments:
            seg_embed_CHK = self.param("seg_embed", nn.with_logical_partitioning(self.kernel_init, (None, P_HEADS, P_KV)),
                                       (2, h, k_dim), jnp.float32)
            if seg_diff_BTS is not None:
                if s_HK is None:
                    raise ValueError("RelativeAttention: seg_diff_BTS needs the segment bias s_HK (HF r_s_bias).")
                ef_BHTC = jnp.einsum("BTHK,CHK->BHTC", q_BTHK + s_HK.astype(q_BTHK.dtype),
                                     seg_embed_CHK.astype(q_BTHK.dtype), **f32)
                scores_BHTS = scores_BHTS + jnp.where(seg_diff_BTS[:, None], ef_BHTC[..., 1:2], ef_BHTC[..., 0:1])
        elif seg_diff_BTS is not None:
            raise ValueError("RelativeAttention: seg_diff_BTS given but segments=False; build it with segments=True "
                             "(XLNet) to own the segment embedding.")
        scores_BHTS = scores_BHTS * (1.0 / np.sqrt(k_dim))
        if mask_BHTS is not None:
            scores_BHTS = jnp.where(mask_BHTS, scores_BHTS, jnp.finfo(jnp.float32).min)
        probs_BHTS = jax.nn.softmax(scores_BHTS, axis=-1)
        if not deterministic and self.dropout_rate > 0.0:
            keep = jax.random.bernoulli(self.make_rng("dropout"), 1.0 - self.dropout_rate, probs_BHTS.shape)
            probs_BHTS = jnp.where(keep, probs_BHTS / (1.0 - self.dropout_rate), 0.0)
        out_BTHK = jnp.einsum("BHTS,BSHK->BTHK", probs_BHTS.astype(v_BSHK.dtype), v_BSHK)
        if target_mapping_BPT is not None:
            out_BTHK = jnp.einsum("BTHK,BPT->BPHK", out_BTHK, target_mapping_BPT.astype(out_BTHK.dtype))
        out_BTHK = shard(out_BTHK, BATCH, SEQ, HEADS, KV)
        y_BTD = self._proj("BTHK,HKD->BTD", (h, k_dim, d), (P_HEADS, P_KV, P_EMBED), "out")(out_BTHK)
        return shard(y_BTD, BATCH, SEQ, EMBED)
