"""Layer features composed through `Stack` (DESIGN §5.12): KV-cache decoding, cross-attention decoding,
segment memory, and per-layer dense / banded attention. Tiny sizes; each variant compiles once."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llm_jax import layers

B, T, S, D, H, K, F, L = 2, 5, 7, 8, 2, 4, 16, 2
WINDOW = 2
ATTN = dict(num_heads=H, head_dim=K)


def _x(t=T, seed=0):
    return jax.random.normal(jax.random.key(seed), (B, t, D))


class DecoderBlock(nn.Module):
    """Causal self-attention (banded where `is_local`) + optional cross-attention + MLP, residual only."""

    decode: bool = False
    cross: bool = False

    @nn.compact
    def __call__(self, x, is_local, enc=None, enc_mask=None):
        x = x + layers.MultiHeadAttention(**ATTN, causal=True, window=WINDOW, decode=self.decode,
                                          name="self_attn")(x, use_window=is_local)
        if self.cross:
            x = x + layers.MultiHeadAttention(**ATTN, decode=self.decode, name="cross_attn")(x, enc, mask_BHTS=enc_mask)
        return x + layers.Mlp(F, act="gelu_new", name="mlp")(x)


def _stack(decode, *, cross=False, unroll=False, shared=False):
    return layers.Stack(DecoderBlock, {"decode": decode, "cross": cross}, L, unroll=unroll, shared=shared,
                        scanned_args=(0,))


IS_LOCAL_L = jnp.array([False, True])  # layer 0 dense, layer 1 banded


def _decode_all(model, params, cache, x_BTD, *extra_per_step):
    """Feeds x one token at a time through a jitted step; returns the concatenated outputs and the last cache."""

    @jax.jit
    def step(cache, x_B1D, *extra):
        out, mut = model.apply({"params": params, "cache": cache}, x_B1D, IS_LOCAL_L, *extra, mutable=["cache"])
        return out.x, mut["cache"]

    outs = []
    for i in range(x_BTD.shape[1]):
        y, cache = step(cache, x_BTD[:, i:i + 1], *(e(i) for e in extra_per_step))
        assert y.shape == (B, 1, D)
        outs.append(y)
    return jnp.concatenate(outs, 1), cache


@pytest.mark.parametrize("unroll,shared", [(False, False), (True, False), (False, True)],
                         ids=["scan", "unroll", "shared"])
def test_stack_decoding_token_by_token_equals_full_causal_pass(unroll, shared):
    x = _x()
    dec = _stack(True, unroll=unroll, shared=shared)
    variables = jax.jit(dec.init)(jax.random.key(1), x, IS_LOCAL_L)  # a full causal pass: params + cache
    params, cache = variables["params"], variables["cache"]
    ref = jax.jit(_stack(False, unroll=unroll, shared=shared).apply)({"params": params}, x, IS_LOCAL_L).x
    # The cache is per layer, shared weights or not.
    assert cache["layers"]["block"]["self_attn"]["cached_key"].shape == (L, B, T, H, K)
    got, cache = _decode_all(dec, params, cache, x)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    np.testing.assert_array_equal(cache["layers"]["block"]["self_attn"]["cache_index"], [T, T])


@pytest.mark.parametrize("unroll", [False, True], ids=["scan", "unroll"])
def test_stack_cross_attention_decoding_equals_full_pass(unroll):
    x, enc = _x(), _x(S, seed=3)
    enc_mask = layers.padding_mask(jnp.array([[1] * S, [1] * (S - 2) + [0] * 2]))
    dec = _stack(True, cross=True, unroll=unroll)
    variables = jax.jit(dec.init)(jax.random.key(1), x, IS_LOCAL_L, jnp.zeros_like(enc), enc_mask)
    params, cache = variables["params"], variables["cache"]
    ref = jax.jit(_stack(False, cross=True, unroll=unroll).apply)({"params": params}, x, IS_LOCAL_L, enc, enc_mask).x
    assert cache["layers"]["block"]["cross_attn"]["cross_key"].shape == (L, B, S, H, K)
    # The encoder keys/values are projected once, at the first step: later steps get a garbage source and must
    # not use it (the output length is the query's: asserted in `_decode_all`).
    source = lambda i: enc if i == 0 else jnp.full_like(enc, 1e3)
    got, cache = _decode_all(dec, params, cache, x, source, lambda i: enc_mask)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert bool(jnp.all(cache["layers"]["block"]["cross_attn"]["cross_filled"]))


def test_select_cache_rows_continues_each_row_from_its_own_caches():
    """Beam search's reordering through a Stack: rows [1, 0, 1] of the self- and cross-attention caches, fed the next
    token of those rows, give those rows' outputs of the original caches."""
    x, enc = _x(), _x(S, seed=3)
    dec = _stack(True, cross=True)
    variables = jax.jit(dec.init)(jax.random.key(1), x, IS_LOCAL_L, jnp.zeros_like(enc), None)
    params = variables["params"]
    step = jax.jit(lambda cache, x_B1D, enc: dec.apply({"params": params, "cache": cache}, x_B1D, IS_LOCAL_L, enc,
                                                       mutable=["cache"]))
    cache = variables["cache"]
    for i in range(3):
        cache = step(cache, x[:, i:i + 1], enc)[1]["cache"]
    rows = jnp.array([1, 0, 1])
    picked = layers.select_cache_rows(cache, rows)
    attn = picked["layers"]["block"]["self_attn"]
    assert attn["cached_key"].shape == (L, 3, T, H, K) and attn["cache_index"].tolist() == [3, 3]
    assert picked["layers"]["block"]["cross_attn"]["cross_value"].shape == (L, 3, S, H, K)
    want = step(cache, x[:, 3:4], enc)[0].x[rows]
    got = step(picked, x[rows, 3:4], enc[rows])[0].x
    np.testing.assert_allclose(got, want, atol=1e-6)


class RelBlock(nn.Module):
    """Transformer-XL-style layer: relative attention over cat(memory, x) + MLP, per-layer u, v."""

    @nn.compact
    def __call__(self, x, r_RD, mask, mems_BMD=None):
        u = self.param("u", nn.initializers.normal(0.5), (H, K))
        v = self.param("v", nn.initializers.normal(0.5), (H, K))
        x = x + layers.RelativeAttention(**ATTN, name="attn")(x, r_RD=r_RD, u_HK=u, v_HK=v, mems_BMD=mems_BMD,
                                                              mask_BHTS=mask)
        return x + layers.Mlp(F, act="gelu_new", name="mlp")(x)


@pytest.mark.parametrize("unroll", [False, True], ids=["scan", "unroll"])
def test_stack_two_segments_with_memory_equal_the_whole_sequence(unroll):
    t = 3
    x = _x(2 * t)
    stack = layers.Stack(RelBlock, (), L, unroll=unroll, collect_inputs=True, scanned_args=("mems_BMD",))
    r = lambda klen, qlen: layers.sinusoid_positions(klen, qlen, D, attn_type="txl")
    params = jax.jit(stack.init)(jax.random.key(1), x, r(2 * t, 2 * t), layers.causal_mask(2 * t))["params"]
    apply = jax.jit(lambda *a, **kw: stack.apply({"params": params}, *a, **kw))
    whole = apply(x, r(2 * t, 2 * t), layers.causal_mask(2 * t))
    first = apply(x[:, :t], r(t, t), layers.causal_mask(t))
    # Each layer's memory is its input on the previous segment (Dai et al. 2019 §3.2), h^{l-1}.
    assert first.inputs_LBTD.shape == (L, B, t, D)
    np.testing.assert_allclose(first.inputs_LBTD[0], x[:, :t])
    second = apply(x[:, t:], r(2 * t, t), layers.causal_mask(t, 2 * t), mems_BMD=first.inputs_LBTD)
    np.testing.assert_allclose(first.x, whole.x[:, :t], atol=1e-5)
    np.testing.assert_allclose(second.x, whole.x[:, t:], atol=1e-5)
    np.testing.assert_allclose(second.inputs_LBTD, whole.inputs_LBTD[:, :, t:], atol=1e-5)


class GptBlock(nn.Module):
    implementation: str = "einsum"

    @nn.compact
    def __call__(self, x, is_local):
        return x + layers.MultiHeadAttention(**ATTN, causal=True, window=WINDOW, implementation=self.implementation,
                                             name="attn")(x, use_window=is_local)


class ReferenceBlock(nn.Module):
    """The same layer with the dense / banded mask written out (the per-layer reference)."""

    @nn.compact
    def __call__(self, x, mask):
        return x + layers.MultiHeadAttention(**ATTN, name="attn")(x, mask_BHTS=mask)


@pytest.mark.parametrize("implementation", ["einsum", "xla"])
def test_stack_alternating_dense_and_banded_layers_equal_per_layer_reference(implementation):
    n, t = 4, 6
    is_local = jnp.array([False, True, False, True])  # GPT-3: alternating dense and locally banded (§2.1)
    x = _x(t)
    stack = layers.Stack(GptBlock, {"implementation": implementation}, n, scanned_args=(0,))
    params = jax.jit(stack.init)(jax.random.key(1), x, is_local)["params"]
    got = jax.jit(lambda x, f: stack.apply({"params": params}, x, f).x)(x, is_local)
    ref = x
    for l in range(n):
        layer_params = jax.tree.map(lambda p, l=l: p[l], nn.meta.unbox(params["layers"]["block"]))
        mask = layers.banded_causal_mask(t, WINDOW) if is_local[l] else layers.causal_mask(t)
        ref = ReferenceBlock().apply({"params": layer_params}, ref, mask)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_stack_rejects_a_scanned_argument_without_the_layer_axis():
    stack = layers.Stack(GptBlock, (), 3, scanned_args=(0,))
    with pytest.raises(ValueError, match="leading axis of num_layers=3"):
        stack.init(jax.random.key(0), _x(), jnp.array([True, False]))
    with pytest.raises(ValueError, match="scanned_args"):
        layers.Stack(GptBlock, (), 3, scanned_args=(1,)).init(jax.random.key(0), _x(), jnp.zeros(3, bool))
