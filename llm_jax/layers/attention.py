"""Multi-head attention for every family: self / cross, additive bias, memory prefix, masks, KV cache.

* `bias_BHTS` is added to the scores before the softmax: T5's bucketed relative position bias, or any
  relative-score term a family computes itself.
* `memory_BMD` is prepended to the key/value source (Transformer-XL segment recurrence, Dai et al. 2019 §3.2);
  the family decides whether to stop its gradient.
* `kv_BSD` makes it cross-attention (T5 decoder).
* `decode=True` keeps a KV cache in the `cache` collection for incremental decoding.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from llm_jax.layers.linear import Einsum
from llm_jax.sharding import BATCH, EMBED, HEADS, KV, SEQ, P_EMBED, P_HEADS, P_KV, shard


ATTENTION_IMPLEMENTATIONS = ("einsum", "xla", "cudnn", "auto")


def dot_product_attention(
    q_BTHK: jax.Array,
    k_BSHK: jax.Array,
    v_BSHK: jax.Array,
    *,
    mask_BHTS: jax.Array | None = None,
    bias_BHTS: jax.Array | None = None,
    scale: float | None = None,
    dropout_rate: float = 0.0,
    dropout_rng: jax.Array | None = None,
    deterministic: bool = True,
    implementation: str = "einsum",
) -> jax.Array:
    """softmax(q·k·scale + bias, masked) · v, with scores and softmax in float32.

    Args:
      q_BTHK, k_BSHK, v_BSHK: queries, keys, values.
      mask_BHTS: boolean, broadcastable to `[B, H, T, S]`; False positions get zero weight.
      bias_BHTS: additive score bias, broadcastable to `[B, H, T, S]`.
      scale: score scale; default `1/sqrt(K)` (T5 uses 1.0: its init absorbs the scale).
      dropout_rate: attention-probability dropout (BERT `attention_probs_dropout_prob`).
      implementation: "einsum" (the two products and the softmax written out: any dtype, dropout), or
        "xla" / "cudnn" / "auto": `jax.nn.dot_product_attention` (a fused kernel on GPU; "auto" lets JAX pick),
        which has no attention dropout, so it refuses a training call with `dropout_rate > 0`.

    Returns:
      `[B, T, H, K]` in the dtype of `v`.
    """
    k_dim = q_BTHK.shape[-1]
    if implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(f"attention implementation {implementation!r} is not one of {ATTENTION_IMPLEMENTATIONS}.")
    if implementation != "einsum":
        if not deterministic and dropout_rate > 0.0:
            raise ValueError(f"attention_impl={implementation!r} (jax.nn.dot_product_attention) has no attention "
                             f"dropout, and this call trains with attention_dropout={dropout_rate}; set "
                             "attention_dropout=0 or attention_impl='einsum'.")
        return jax.nn.dot_product_attention(
            q_BTHK, k_BSHK, v_BSHK, bias=bias_BHTS, mask=mask_BHTS, scale=scale,
            implementation=None if implementation == "auto" else implementation)
    scale = (1.0 / jnp.sqrt(k_dim)) if scale is None else scale
    # Why f32: logits of large magnitude and the softmax normaliser lose too much in bf16.
    scores_BHTS = jnp.einsum("BTHK,BSHK->BHTS", q_BTHK, k_BSHK, preferred_element_type=jnp.float32) * scale
    if bias_BHTS is not None:
        scores_BHTS = scores_BHTS + bias_BHTS.astype(jnp.float32)
    if mask_BHTS is not None:
        scores_BHTS = jnp.where(mask_BHTS, scores_BHTS, jnp.finfo(jnp.float32).min)
    probs_BHTS = jax.nn.softmax(scores_BHTS, axis=-1)
    if not deterministic and dropout_rate > 0.0:
        keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, probs_BHTS.shape)
        probs_BHTS = jnp.where(keep, probs_BHTS / (1.0 - dropout_rate), 0.0)
    return jnp.einsum("BHTS,BSHK->BTHK", probs_BHTS.astype(v_BSHK.dtype), v_BSHK)


class MultiHeadAttention(nn.Module):
    """Projections q, k, v (`D → H×K`) and out (`H×K → D`) around `dot_product_attention`.

    Attributes:
      num_heads: H.
      head_dim: K.
      use_bias: biases on the four projections (BERT/GPT yes, T5 no).
      dropout_rate: attention-probability dropout.
      scale: see `dot_product_attention`.
      decode: keep a KV cache (`cache` collection, initialised by a call on a full-length dummy input).
      implementation: see `dot_product_attention`.
    """

    num_heads: int
    head_dim: int
    use_bias: bool = True
    dropout_rate: float = 0.0
    scale: float | None = None
    decode: bool = False
    implementation: str = "einsum"
    kernel_init: nn.initializers.Initializer = nn.initializers.normal(0.02)
    dtype: jnp.dtype = jnp.float32

    def _proj_in(self, name: str, d: int) -> Einsum:
        return Einsum("BTD,DHK->BTHK", (d, self.num_heads, self.head_dim), (P_EMBED, P_HEADS, P_KV),
                      use_bias=self.use_bias, kernel_init=self.kernel_init, dtype=self.dtype, name=name)

    @nn.compact
    def __call__(
        self,
        x_BTD: jax.Array,
        kv_BSD: jax.Array | None = None,
        *,
        mask_BHTS: jax.Array | None = None,
        bias_BHTS: jax.Array | None = None,
        memory_BMD: jax.Array | None = None,
        deterministic: bool = True,
    ) -> jax.Array:
        d = x_BTD.shape[-1]
        source_BSD = x_BTD if kv_BSD is None else kv_BSD
        if memory_BMD is not None:
            source_BSD = jnp.concatenate([memory_BMD.astype(source_BSD.dtype), source_BSD], axis=1)
        q_BTHK = shard(self._proj_in("query", d)(x_BTD), BATCH, SEQ, HEADS, KV)
        k_BSHK = shard(self._proj_in("key", source_BSD.shape[-1])(source_BSD), BATCH, SEQ, HEADS, KV)
        v_BSHK = shard(self._proj_in("value", source_BSD.shape[-1])(source_BSD), BATCH, SEQ, HEADS, KV)
        if self.decode:
            k_BSHK, v_BSHK, mask_BHTS = self._use_cache(k_BSHK, v_BSHK, mask_BHTS)
        dropout_rng = None
        if not deterministic and self.dropout_rate > 0.0:
            dropout_rng = self.make_rng("dropout")
        out_BTHK = dot_product_attention(
            q_BTHK, k_BSHK, v_BSHK, mask_BHTS=mask_BHTS, bias_BHTS=bias_BHTS, scale=self.scale,
            dropout_rate=self.dropout_rate, dropout_rng=dropout_rng, deterministic=deterministic,
            implementation=self.implementation)
        out_BTHK = shard(out_BTHK, BATCH, SEQ, HEADS, KV)
        y_BTD = Einsum("BTHK,HKD->BTD", (self.num_heads, self.head_dim, d), (P_HEADS, P_KV, P_EMBED),
                       use_bias=self.use_bias, kernel_init=self.kernel_init, dtype=self.dtype, name="out")(out_BTHK)
        return shard(y_BTD, BATCH, SEQ, EMBED)

    def _use_cache(self, k_BTHK, v_BTHK, mask_BHTS):
        """Writes the new keys/values at the cache index and returns the whole cache with a causal mask.

        The first call (`init` with a `[B, S_max, ...]` input) only creates the cache. Later calls with T new
        tokens let query t see cache slots ≤ index + t; a given `mask_BHTS` must then span all S_max slots.
        """
        is_initialized = self.has_variable("cache", "cached_key")
        cached_k = self.variable("cache", "cached_key", jnp.zeros, k_BTHK.shape, k_BTHK.dtype)
        cached_v = self.variable("cache", "cached_value", jnp.zeros, v_BTHK.shape, v_BTHK.dtype)
        index = self.variable("cache", "cache_index", lambda: jnp.array(0, dtype=jnp.int32))
        if not is_initialized:
            return k_BTHK, v_BTHK, mask_BHTS
        t = k_BTHK.shape[1]
        s_max = cached_k.value.shape[1]
        i = index.value
        cached_k.value = jax.lax.dynamic_update_slice(cached_k.value, k_BTHK.astype(cached_k.value.dtype), (0, i, 0, 0))
        cached_v.value = jax.lax.dynamic_update_slice(cached_v.value, v_BTHK.astype(cached_v.value.dtype), (0, i, 0, 0))
        index.value = i + t
        visible_TS = jnp.arange(s_max)[None, :] <= (i + jnp.arange(t))[:, None]
        cache_mask = visible_TS[None, None]
        mask_BHTS = cache_mask if mask_BHTS is None else jnp.logical_and(mask_BHTS, cache_mask)
        return cached_k.value, cached_v.value, mask_BHTS
