"""Multi-head attention for every family: self / cross, causal / banded, additive bias, memory prefix, KV caches.

* `causal=True` lets query i see key j ≤ i + (S − T) (a memory / cache prefix is seen by every query);
  `window=w` narrows that to the w keys (i − w, i] (GPT-3's locally banded layers, Brown et al. 2020 §2.1).
  With `implementation != "einsum"` and no offset (S = T) both go to `jax.nn.dot_product_attention`'s
  `is_causal` / `local_window_size` (a fused kernel skips the masked blocks); otherwise they become dense masks
  (`masks.causal_mask`, `masks.banded_causal_mask`).
* `bias_BHTS` is added to the scores before the softmax: T5's bucketed relative position bias, or any
  relative-score term a family computes itself (Transformer-XL / XLNet use `relative.RelativeAttention`).
* `memory_BMD` is prepended to the key/value source (Transformer-XL segment recurrence, Dai et al. 2019 §3.2);
  the family decides whether to stop its gradient.
* `kv_BSD` makes it cross-attention (T5 decoder).
* `decode=True` keeps a cache in the `cache` collection. Self-attention appends each call's keys/values to a
  causal KV cache; cross-attention projects the encoder's keys/values once, on the first decoding call, and
  reuses them (the output length always comes from the query). `select_cache_rows` picks / repeats rows of such
  a collection (beam search reorders its hypotheses with it).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from llm_jax.layers.linear import Einsum
from llm_jax.layers.masks import banded_causal_mask, causal_mask
from llm_jax.layers.stack import SCOPE as STACK_SCOPE
from llm_jax.sharding import BATCH, EMBED, HEADS, KV, SEQ, P_EMBED, P_HEADS, P_KV, shard


ATTENTION_IMPLEMENTATIONS = ("einsum", "xla", "cudnn", "auto")
# The cache variables of `MultiHeadAttention` that hold one row per batch element (`[B, S, H, K]` in the layer); the
# others (`cache_index`, `cross_filled`) are one value per layer, shared by the rows.
BATCHED_CACHE_VARIABLES = ("cached_key", "cached_value", "cross_key", "cross_value")


def _and(a: jax.Array | None, b: jax.Array | None) -> jax.Array | None:
    if a is None:
        return b
    return a if b is None else jnp.logical_and(a, b)


def _check_window(causal: bool, window: int | None) -> None:
    if window is not None and (not causal or window < 1):
        raise ValueError(f"attention window={window} is a causal band of ≥ 1 keys: set causal=True and window ≥ 1 "
                         "(or window=None for dense attention).")


def dot_product_attention(
    q_BTHK: jax.Array,
    k_BSHK: jax.Array,
    v_BSHK: jax.Array,
    *,
    mask_BHTS: jax.Array | None = None,
    bias_BHTS: jax.Array | None = None,
    causal: bool = False,
    window: int | None = None,
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
      causal: query i sees key j ≤ i + (S − T) only (the first S − T keys are a prefix every query sees).
      window: with `causal`, query i sees only the `window` keys (i − window, i] + (S − T) (GPT-3 banded layers).
      scale: score scale; default `1/sqrt(K)` (T5 uses 1.0: its init absorbs the scale).
      dropout_rate: attention-probability dropout (BERT `attention_probs_dropout_prob`).
      implementation: "einsum" (the two products and the softmax written out: any dtype, dropout), or
        "xla" / "cudnn" / "auto": `jax.nn.dot_product_attention` (a fused kernel on GPU; "auto" lets JAX pick),
        which has no attention dropout, so it refuses a training call with `dropout_rate > 0`. There `causal` and
        `window` become `is_causal` / `local_window_size` when S = T (JAX aligns its causal mask top-left, so an
        offset S ≠ T needs the dense mask); JAX ANDs them with `mask_BHTS`.

    Returns:
      `[B, T, H, K]` in the dtype of `v`.

    Raises:
      ValueError: unknown implementation, `window` without `causal`, or dropout with a fused implementation.
    """
    k_dim = q_BTHK.shape[-1]
    t, s = q_BTHK.shape[1], k_BSHK.shape[1]
    if implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(f"attention implementation {implementation!r} is not one of {ATTENTION_IMPLEMENTATIONS}.")
    _check_window(causal, window)
    fused = implementation != "einsum" and t == s
    if causal and not fused:
        band = causal_mask(t, s) if window is None else banded_causal_mask(t, window, s)
        mask_BHTS = _and(mask_BHTS, band)
    if implementation != "einsum":
        if not deterministic and dropout_rate > 0.0:
            raise ValueError(f"attention_impl={implementation!r} (jax.nn.dot_product_attention) has no attention "
                             f"dropout, and this call trains with attention_dropout={dropout_rate}; set "
                             "attention_dropout=0 or attention_impl='einsum'.")
        return jax.nn.dot_product_attention(
            q_BTHK, k_BSHK, v_BSHK, bias=bias_BHTS, mask=mask_BHTS, scale=scale,
            is_causal=causal and fused,
            # (left, right) = (w − 1, 0): the query itself and the w − 1 keys before it.
            local_window_size=(window - 1, 0) if (fused and window is not None) else None,
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
      decode: keep a cache (`cache` collection) for incremental decoding. Initialise it by `init` on a
        full-length input (self-attention: `[B, T_max, D]`, the cache size; cross-attention: the encoder output
        `[B, S, D]` or a dummy of its shape). Self-attention under `decode` must be `causal`.
      implementation: see `dot_product_attention`.
      kernel_init: initializer of the key and value projections, and of the query and output ones unless
        `query_init` / `out_init` are given.
      query_init / out_init: initializers of the query and output projections; None = `kernel_init`. T5 folds
        the 1/sqrt(K) score scale into the query's init (std (D·K)^-1/2 instead of D^-1/2) and starts the output
        projection at std (H·K)^-1/2 (Mesh TensorFlow; HF `T5PreTrainedModel._init_weights`).
      causal: self-attention with a causal mask (GPT, T5 decoder, Transformer-XL with memory).
      window: with `causal`, a local band of `window` keys (GPT-3's sparse layers); `use_window` switches it per
        call.
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
    causal: bool = False
    window: int | None = None
    query_init: nn.initializers.Initializer | None = None
    out_init: nn.initializers.Initializer | None = None

    def _proj_in(self, name: str, d: int) -> Einsum:
        init = self.query_init if name == "query" and self.query_init is not None else self.kernel_init
        return Einsum("BTD,DHK->BTHK", (d, self.num_heads, self.head_dim), (P_EMBED, P_HEADS, P_KV),
                      use_bias=self.use_bias, kernel_init=init, dtype=self.dtype, name=name)

    @nn.compact
    def __call__(
        self,
        x_BTD: jax.Array,
        kv_BSD: jax.Array | None = None,
        *,
        mask_BHTS: jax.Array | None = None,
        bias_BHTS: jax.Array | None = None,
        memory_BMD: jax.Array | None = None,
        use_window: jax.Array | bool | None = None,
        deterministic: bool = True,
    ) -> jax.Array:
        """Attends from `x_BTD` to itself (or to `kv_BSD`), returning `[B, T, D]`.

        Args:
          x_BTD: the queries' input (and the keys'/values' in self-attention).
          kv_BSD: cross-attention source (the encoder output); None for self-attention.
          mask_BHTS: boolean mask over the keys (with `memory_BMD`: the M + T keys; under `decode` self-attention:
            all T_max cache slots).
          bias_BHTS: additive score bias.
          memory_BMD: a prefix of the keys/values (Transformer-XL); self-attention without `decode` only.
          use_window: per-layer switch for `window` (GPT-3 alternates dense and banded layers). A Python bool
            (or None: on whenever `window` is set) picks statically; a traced boolean scalar — what a scanned
            `Stack` gives each layer from an `is_local_L` array, since a scan body is traced once — runs a
            `lax.cond` between the two attentions, not a `jnp.where` between two masks, so each branch keeps
            its fused path and only the taken one runs.
          deterministic: no dropout.
        """
        _check_window(self.causal, self.window)
        cross = kv_BSD is not None
        if cross and self.causal:
            raise ValueError("MultiHeadAttention(causal=True) is self-attention; cross-attention (kv_BSD given) "
                             "takes no causal mask: build the cross-attention layer with causal=False.")
        if self.decode and not cross and not self.causal:
            raise ValueError("decode=True self-attention keeps a causal KV cache: build it with causal=True (the "
                             "full pass of the same layer then needs no causal mask_BHTS).")
        if self.decode and memory_BMD is not None:
            raise ValueError("memory_BMD (Transformer-XL recurrence) and decode=True (a KV cache) do not combine: "
                             "carry memory between segments with decode=False.")
        d = x_BTD.shape[-1]
        source_BSD = x_BTD if kv_BSD is None else kv_BSD
        if memory_BMD is not None:
            source_BSD = jnp.concatenate([memory_BMD.astype(source_BSD.dtype), source_BSD], axis=1)
        q_BTHK = shard(self._proj_in("query", d)(x_BTD), BATCH, SEQ, HEADS, KV)
        causal, window = self.causal, self.window
        if self.decode and cross:
            k_BSHK, v_BSHK = self._cross_cache(source_BSD)
        else:
            k_BSHK = self._proj_in("key", source_BSD.shape[-1])(source_BSD)
            v_BSHK = self._proj_in("value", source_BSD.shape[-1])(source_BSD)
            if self.decode and self.has_variable("cache", "cached_key"):
                k_BSHK, v_BSHK, mask_BHTS = self._use_cache(k_BSHK, v_BSHK, mask_BHTS, use_window)
                causal, window = False, None  # the cache mask holds both
            elif self.decode:
                self._create_cache(k_BSHK, v_BSHK)  # `init`: a plain causal pass that sizes the cache
        k_BSHK = shard(k_BSHK, BATCH, SEQ, HEADS, KV)
        v_BSHK = shard(v_BSHK, BATCH, SEQ, HEADS, KV)
        dropout_rng = None
        if not deterministic and self.dropout_rate > 0.0:
            dropout_rng = self.make_rng("dropout")

        def attend(banded: bool) -> jax.Array:
            return dot_product_attention(
                q_BTHK, k_BSHK, v_BSHK, mask_BHTS=mask_BHTS, bias_BHTS=bias_BHTS, causal=causal,
                window=window if banded else None, scale=self.scale, dropout_rate=self.dropout_rate,
                dropout_rng=dropout_rng, deterministic=deterministic, implementation=self.implementation)

        if window is None or use_window is None or isinstance(use_window, (bool, np.bool_)):
            out_BTHK = attend(window is not None and (use_window is None or bool(use_window)))
        else:
            out_BTHK = jax.lax.cond(use_window, lambda: attend(True), lambda: attend(False))
        out_BTHK = shard(out_BTHK, BATCH, SEQ, HEADS, KV)
        y_BTD = Einsum("BTHK,HKD->BTD", (self.num_heads, self.head_dim, d), (P_HEADS, P_KV, P_EMBED),
                       use_bias=self.use_bias, kernel_init=self.kernel_init if self.out_init is None else self.out_init,
                       dtype=self.dtype, name="out")(out_BTHK)
        return shard(y_BTD, BATCH, SEQ, EMBED)

    def _create_cache(self, k_BSHK, v_BSHK):
        self.variable("cache", "cached_key", jnp.zeros, k_BSHK.shape, k_BSHK.dtype)
        self.variable("cache", "cached_value", jnp.zeros, v_BSHK.shape, v_BSHK.dtype)
        self.variable("cache", "cache_index", lambda: jnp.array(0, dtype=jnp.int32))

    def _use_cache(self, k_BTHK, v_BTHK, mask_BHTS, use_window):
        """Writes the T new keys/values at the cache index; returns the whole cache `[B, S_max, H, K]` and its mask.

        Query t sees cache slots ≤ index + t (and, with `window` switched on, > index + t − window); a given
        `mask_BHTS` must span all S_max slots. The cache holds S_max positions (the init input's length): writing
        past it is not an error under jit — `dynamic_update_slice` clamps the index, overwriting the last slots —
        so a decode loop must stop at S_max (checking the lengths on the host before it starts).
        """
        cached_k = self.variable("cache", "cached_key")
        cached_v = self.variable("cache", "cached_value")
        index = self.variable("cache", "cache_index")
        t = k_BTHK.shape[1]
        s_max = cached_k.value.shape[1]
        i = index.value
        cached_k.value = jax.lax.dynamic_update_slice(cached_k.value, k_BTHK.astype(cached_k.value.dtype), (0, i, 0, 0))
        cached_v.value = jax.lax.dynamic_update_slice(cached_v.value, v_BTHK.astype(cached_v.value.dtype), (0, i, 0, 0))
        index.value = i + t
        q_T1 = (i + jnp.arange(t))[:, None]
        k_1S = jnp.arange(s_max)[None, :]
        visible_TS = k_1S <= q_T1
        if self.window is not None:
            in_band_TS = k_1S > q_T1 - self.window
            if use_window is not None:
                in_band_TS = jnp.logical_or(in_band_TS, jnp.logical_not(use_window))
            visible_TS = jnp.logical_and(visible_TS, in_band_TS)
        return cached_k.value, cached_v.value, _and(mask_BHTS, visible_TS[None, None])

    def _cross_cache(self, source_BSD):
        """Cross-attention keys/values `[B, S, H, K]` projected from the encoder output once, then reused.

        `init` creates the cache (`cross_key`, `cross_value`, and `cross_filled` = False) from a source of the
        encoder's shape. The first decoding call projects its `source_BSD` and stores it; later calls return
        the stored projections (a `nn.cond`, so the projection does not run again; their `source_BSD` is ignored).
        """
        d = source_BSD.shape[-1]

        def project(mdl, src_BSD):
            return mdl._proj_in("key", d)(src_BSD), mdl._proj_in("value", d)(src_BSD)

        if not self.has_variable("cache", "cross_key"):
            k_BSHK, v_BSHK = project(self, source_BSD)
            self.variable("cache", "cross_key", jnp.zeros, k_BSHK.shape, k_BSHK.dtype)
            self.variable("cache", "cross_value", jnp.zeros, v_BSHK.shape, v_BSHK.dtype)
            self.variable("cache", "cross_filled", lambda: jnp.array(False))
            return k_BSHK, v_BSHK
        cached_k = self.variable("cache", "cross_key")
        cached_v = self.variable("cache", "cross_value")
        filled = self.variable("cache", "cross_filled")
        k_BSHK, v_BSHK = nn.cond(filled.value, lambda mdl, src_BSD, kv: kv, lambda mdl, src_BSD, kv: project(mdl, src_BSD),
                                 self, source_BSD, (cached_k.value, cached_v.value))
        cached_k.value, cached_v.value, filled.value = k_BSHK, v_BSHK, jnp.array(True)
        return k_BSHK, v_BSHK


def select_cache_rows(cache, rows_R: jax.Array):
    """The rows `rows_R` of a `cache` collection of `MultiHeadAttention` layers, in that order (repeats allowed).

    Beam search keeps each hypothesis in one row and, after every step, continues each surviving hypothesis from
    its parent's keys and values; it also expands a prompt's row into one row per beam. The batched variables
    (`BATCHED_CACHE_VARIABLES`) have the batch on axis 0 in the layer, and every `Stack` around the layer adds a
    leading layer axis (its scope is named `layers`): the rows are taken on that axis. Per-layer counters and
    flags, and any other variable of the collection, are kept as they are.

    Args:
      cache: a `cache` collection (nested dicts, as `apply(..., mutable=["cache"])` returns it), or any pytree of
        them (e.g. a tuple of per-layer collections).
      rows_R: int `[R]`, row indices into the batch.

    Returns:
      The same tree with R rows.
    """

    def take(path, leaf):
        names = [getattr(key, "key", None) for key in path]
        if names and names[-1] in BATCHED_CACHE_VARIABLES:
            return jnp.take(leaf, rows_R, axis=names.count(STACK_SCOPE))
        return leaf

    return jax.tree_util.tree_map_with_path(take, cache)
