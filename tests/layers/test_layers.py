"""Shapes and properties of the shared layers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llm_jax import layers


def test_einsum_projection_shapes_and_bias():
    proj = layers.Einsum("BTD,DHK->BTHK", (8, 2, 4), ("embed", "heads", "kv"))
    x = jnp.ones((3, 5, 8))
    params = proj.init(jax.random.key(0), x)["params"]
    assert params["kernel"].value.shape == (8, 2, 4)
    assert params["bias"].value.shape == (2, 4)
    assert proj.apply({"params": params}, x).shape == (3, 5, 2, 4)


def test_layer_norm_matches_formula():
    x = jax.random.normal(jax.random.key(1), (2, 3, 16)) * 3 + 1
    ln = layers.LayerNorm(eps=1e-5)
    params = ln.init(jax.random.key(0), x)
    y = ln.apply(params, x)
    ref = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, ref, atol=1e-5)


def test_rms_norm_unit_rms():
    x = jax.random.normal(jax.random.key(1), (2, 16)) * 5
    y = layers.RMSNorm().apply({"params": {"scale": jnp.ones(16)}}, x)
    np.testing.assert_allclose(jnp.sqrt(jnp.mean(y**2, -1)), 1.0, atol=1e-4)


def _attn(**kw):
    return layers.MultiHeadAttention(num_heads=2, head_dim=4, **kw)


def test_attention_padding_mask_ignores_masked_keys():
    x = jax.random.normal(jax.random.key(0), (1, 6, 8))
    attn = _attn()
    params = attn.init(jax.random.key(1), x)
    mask = layers.padding_mask(jnp.array([[1, 1, 1, 1, 0, 0]]))
    y1 = attn.apply(params, x, mask_BHTS=mask)
    x2 = x.at[:, 4:].set(123.0)  # change only the masked keys
    y2 = attn.apply(params, x2, mask_BHTS=mask)
    np.testing.assert_allclose(y1[:, :4], y2[:, :4], atol=1e-5)


def test_attention_causal_by_gradient():
    x = jax.random.normal(jax.random.key(0), (1, 6, 8))
    attn = _attn()
    params = attn.init(jax.random.key(1), x)
    mask = layers.causal_mask(6)
    grad = jax.grad(lambda x: attn.apply(params, x, mask_BHTS=mask)[0, 2].sum())(x)
    assert np.all(np.asarray(grad[0, 3:]) == 0.0)
    assert np.any(np.asarray(grad[0, :3]) != 0.0)


def test_banded_mask_window():
    m = np.asarray(layers.banded_causal_mask(5, window=2))[0, 0]
    expected = np.array([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 1, 1]], bool)
    np.testing.assert_array_equal(m, expected)


def test_attention_bias_and_memory_and_cross():
    x = jax.random.normal(jax.random.key(0), (2, 3, 8))
    mem = jax.random.normal(jax.random.key(2), (2, 4, 8))
    attn = _attn()
    params = attn.init(jax.random.key(1), x)
    # Memory prefix = attending over concat(memory, x): equal to cross-attention onto that concatenation.
    y_mem = attn.apply(params, x, memory_BMD=mem, mask_BHTS=layers.causal_mask(3, 7))
    y_cross = attn.apply(params, x, jnp.concatenate([mem, x], 1), mask_BHTS=layers.causal_mask(3, 7))
    np.testing.assert_allclose(y_mem, y_cross, atol=1e-6)
    # A huge negative bias on a key acts like masking it.
    bias = jnp.zeros((1, 1, 3, 3)).at[..., 2].set(-1e9)
    y_bias = attn.apply(params, x, bias_BHTS=bias)
    y_mask = attn.apply(params, x, mask_BHTS=jnp.array([True, True, False])[None, None, None])
    np.testing.assert_allclose(y_bias, y_mask, atol=1e-5)


def test_kv_cache_decoding_matches_full_causal_pass():
    t = 5
    x = jax.random.normal(jax.random.key(0), (2, t, 8))
    full = _attn()
    params = full.init(jax.random.key(1), x)["params"]
    ref = full.apply({"params": params}, x, mask_BHTS=layers.causal_mask(t))
    dec = _attn(decode=True, causal=True)
    cache = dec.init(jax.random.key(1), x)["cache"]
    outs = []
    for i in range(t):
        y, mut = dec.apply({"params": params, "cache": cache}, x[:, i:i + 1], mutable=["cache"])
        cache = mut["cache"]
        outs.append(y)
    np.testing.assert_allclose(jnp.concatenate(outs, 1), ref, atol=1e-5)


def test_mlp_gated_and_plain():
    x = jnp.ones((2, 3, 8))
    for gated in (False, True):
        mlp = layers.Mlp(hidden_size=16, gated=gated, act="gelu_new")
        p = mlp.init(jax.random.key(0), x)
        assert mlp.apply(p, x).shape == (2, 3, 8)
        assert ("wi_0" in p["params"]) == gated




@pytest.mark.parametrize("shared", [False, True])
def test_stack_scan_unroll_and_sharing(shared):
    import flax.linen as nn

    class Block(nn.Module):
        deterministic: bool = True

        @nn.compact
        def __call__(self, x, scale):
            return x + scale * nn.Dense(x.shape[-1])(x)

    x = jnp.ones((2, 8))
    kw = (("deterministic", True),)
    stack = layers.Stack(Block, kw, num_layers=3, shared=shared, collect_hidden=True)
    params = stack.init(jax.random.key(0), x, 0.5)
    kernel = params["params"]["layers"]["block"]["Dense_0"]["kernel"]
    kernel = getattr(kernel, "value", kernel)
    assert kernel.shape == ((8, 8) if shared else (3, 8, 8))
    y, hidden, inputs = stack.apply(params, x, 0.5)
    assert hidden.shape == (3, 2, 8) and inputs is None
    np.testing.assert_allclose(hidden[-1], y)
    unrolled = layers.Stack(Block, dict(kw), num_layers=3, shared=shared, unroll=True, remat="full")
    y2 = unrolled.apply(params, x, 0.5).x
    np.testing.assert_allclose(y, y2, atol=1e-6)


@pytest.mark.parametrize("eqn,x_shape,k_shape", [
    ("BTD,DHK->BTHK", (2, 5, 8), (8, 2, 4)),  # projection into heads: computed as a 2-D matmul
    ("BTHK,HKD->BTD", (2, 5, 2, 4), (2, 4, 8)),  # out of heads: 2-D matmul over the flattened H×K
    ("BTD,HKD->BTHK", (2, 5, 8), (2, 4, 8)),  # not a plain projection: the einsum itself
])
def test_einsum_layer_equals_einsum(eqn, x_shape, k_shape):
    x = jax.random.normal(jax.random.key(0), x_shape)
    proj = layers.Einsum(eqn, k_shape, (None,) * len(k_shape), use_bias=False)
    params = proj.init(jax.random.key(1), x)["params"]
    expected = jnp.einsum(eqn, x, params["kernel"].value)
    np.testing.assert_allclose(proj.apply({"params": params}, x), expected, rtol=1e-6, atol=1e-6)
    # The kernel gradient too: the 2-D path exists for the backward pass (NOTES.md).
    g = jax.grad(lambda p: jnp.sum(proj.apply({"params": p}, x) ** 2))(params)["kernel"].value
    g_ref = jax.grad(lambda k: jnp.sum(jnp.einsum(eqn, x, k) ** 2))(params["kernel"].value)
    np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("implementation", ["xla", "auto"])
def test_attention_implementations_agree(implementation):
    ks = jax.random.split(jax.random.key(3), 4)
    q, k, v = (jax.random.normal(kk, (2, 6, 3, 4)) for kk in ks[:3])
    bias = jax.random.normal(ks[3], (1, 3, 6, 6))
    mask = layers.padding_mask(jnp.array([[1] * 6, [1] * 4 + [0] * 2], bool))
    expected = layers.dot_product_attention(q, k, v, mask_BHTS=mask, bias_BHTS=bias)
    got = layers.dot_product_attention(q, k, v, mask_BHTS=mask, bias_BHTS=bias, implementation=implementation)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    with pytest.raises(ValueError, match="no attention dropout"):
        layers.dot_product_attention(q, k, v, dropout_rate=0.1, dropout_rng=ks[0], deterministic=False,
                                     implementation=implementation)
    with pytest.raises(ValueError, match="not one of"):
        layers.dot_product_attention(q, k, v, implementation="flash")


@pytest.mark.parametrize("s", [6, 9], ids=["no_offset", "memory_offset"])
@pytest.mark.parametrize("window", [None, 2])
def test_causal_and_window_equal_their_dense_masks(s, window):
    ks = jax.random.split(jax.random.key(5), 3)
    q = jax.random.normal(ks[0], (2, 6, 3, 4))
    k, v = (jax.random.normal(kk, (2, s, 3, 4)) for kk in ks[1:])
    pad = layers.padding_mask(jnp.array([[1] * s, [0] + [1] * (s - 1)], bool))
    band = layers.causal_mask(6, s) if window is None else layers.banded_causal_mask(6, window, s)
    expected = layers.dot_product_attention(q, k, v, mask_BHTS=jnp.logical_and(pad, band))
    for implementation in ("einsum", "xla"):  # "xla" with S = T: is_causal / local_window_size
        got = layers.dot_product_attention(q, k, v, mask_BHTS=pad, causal=True, window=window,
                                           implementation=implementation)
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_attention_configuration_errors():
    q = jnp.ones((1, 3, 2, 4))
    with pytest.raises(ValueError, match="set causal=True"):
        layers.dot_product_attention(q, q, q, window=2)
    x = jnp.ones((1, 3, 8))
    with pytest.raises(ValueError, match="cross-attention"):
        _attn(causal=True).init(jax.random.key(0), x, x)
    with pytest.raises(ValueError, match="causal KV cache"):
        _attn(decode=True).init(jax.random.key(0), x)


def test_embed_rejects_out_of_range_ids_when_concrete():
    embed = layers.Embed(5, 4, field="token ids")
    params = embed.init(jax.random.key(0), jnp.zeros((1, 2), jnp.int32))
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 5\).*\[0, 5\]"):
        embed.apply(params, jnp.array([[0, 5]]))
    with pytest.raises(ValueError, match=r"position ids must be in \[0, 3\)"):
        layers.check_ids(np.array([-1, 2]), 3, "position ids")
    layers.check_ids(np.array([0, 2]), 3, "position ids")
    # Traced ids are not checked (no host callback in the hot path): the gather fills NaN, hence the host checks.
    assert bool(jnp.isnan(jax.jit(embed.apply)(params, jnp.array([[0, 5]]))[0, 1]).all())
