"""Relative-position attention (Transformer-XL §3.3, XLNet §2.3): positions, rel_shift, the direct O(T²) formula,
the two streams, and Hugging Face XLNet's conventions."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llm_jax import layers

B, T, M, D, H, K = 2, 3, 2, 8, 2, 4


def _sinusoid(p: float, d: int = D) -> np.ndarray:
    inv = 1.0 / 10000.0 ** (np.arange(0, d, 2) / d)
    return np.concatenate([np.sin(p * inv), np.cos(p * inv)])


@pytest.mark.parametrize("attn_type,positions", [
    ("txl", [4, 3, 2, 1, 0]),  # TransfoXLModel: klen-1 … 0
    ("uni", [5, 4, 3, 2, 1, 0]),  # XLNet uni: klen … 0
    ("bi", [5, 4, 3, 2, 1, 0, -1, -2]),  # XLNet bi: klen … -qlen+1
])
def test_sinusoid_positions_follow_the_hf_orderings(attn_type, positions):
    r = layers.sinusoid_positions(M + T, T, D, attn_type=attn_type)
    np.testing.assert_allclose(r, np.stack([_sinusoid(p) for p in positions]), atol=1e-6)
    clamped = layers.sinusoid_positions(M + T, T, D, attn_type=attn_type, clamp_len=2)
    np.testing.assert_allclose(clamped, np.stack([_sinusoid(np.clip(p, -2, 2)) for p in positions]), atol=1e-6)


@pytest.mark.parametrize("attn_type", layers.ATTN_TYPES)
def test_rel_shift_gives_distance_m_plus_i_minus_j(attn_type):
    klen = M + T
    first = klen - 1 if attn_type == "txl" else klen
    rows = {"txl": klen, "uni": klen + 1, "bi": klen + T}[attn_type]
    x_TR = np.broadcast_to(first - np.arange(rows, dtype=np.float32), (T, rows))  # each row's own distance
    got = np.asarray(layers.rel_shift(jnp.asarray(x_TR)[None, None], klen))[0, 0]
    want = M + np.arange(T)[:, None] - np.arange(klen)[None, :]
    visible = want >= 0 if attn_type != "bi" else np.ones_like(want, bool)  # uni/txl: future keys are masked
    np.testing.assert_array_equal(got[visible], want[visible])


def _reference(p, q_in, kv_in, mems, u, v, mask, *, clamp_len=-1, seg_diff=None, s=None):
    """The scores written out per (b, h, i, j) in float64: (q_i+u)·k_j + (q_i+v)·W_r R_{M+i-j} (+ segment)."""
    kern = {n: np.asarray(p[n]["kernel"], np.float64) for n in ("query", "key", "value", "pos", "out")}
    cat = kv_in if mems is None else np.concatenate([mems, kv_in], 1)
    m = cat.shape[1] - kv_in.shape[1]
    q = np.einsum("btd,dhk->bthk", q_in, kern["query"])
    k = np.einsum("bsd,dhk->bshk", cat, kern["key"])
    val = np.einsum("bsd,dhk->bshk", cat, kern["value"])
    mask = np.broadcast_to(np.asarray(mask), (B, H, q.shape[1], cat.shape[1]))
    out = np.zeros(q.shape)
    for b in range(B):
        for h in range(H):
            for i in range(q.shape[1]):
                scores = np.full(cat.shape[1], -np.inf)
                for j in range(cat.shape[1]):
                    if not mask[b, h, i, j]:
                        continue
                    dist = m + i - j
                    if clamp_len > 0:
                        dist = np.clip(dist, -clamp_len, clamp_len)
                    r = _sinusoid(dist) @ kern["pos"][:, h, :]
                    score = (q[b, i, h] + u[h]) @ k[b, j, h] + (q[b, i, h] + v[h]) @ r
                    if seg_diff is not None:
                        score += (q[b, i, h] + s[h]) @ np.asarray(p["seg_embed"], np.float64)[int(seg_diff[b, i, j]), h]
                    scores[j] = score / np.sqrt(K)
                w = np.exp(scores - scores.max())
                out[b, i, h] = (w / w.sum()) @ val[b, :, h]
    return np.einsum("bthk,hkd->btd", out, kern["out"])


def _inputs(seed=0):
    ks = jax.random.split(jax.random.key(seed), 6)
    h, mems, g = (np.asarray(jax.random.normal(k, shape)) for k, shape in
                  zip(ks[:3], [(B, T, D), (B, M, D), (B, T, D)]))
    u, v, s = (np.asarray(0.5 * jax.random.normal(k, (H, K))) for k in ks[3:])
    return h, mems, g, u, v, s


def _init(attn, *args, **kwargs):
    return nn.meta.unbox(attn.init(jax.random.key(1), *args, **kwargs)["params"])


@pytest.mark.parametrize("attn_type,clamp_len,segments", [("txl", -1, False), ("uni", 2, False), ("bi", -1, True)])
def test_relative_attention_equals_the_direct_formula(attn_type, clamp_len, segments):
    h, mems, _, u, v, s = _inputs()
    klen = M + T
    r = layers.sinusoid_positions(klen, T, D, clamp_len=clamp_len, attn_type=attn_type)
    pad = np.ones((B, klen), bool)
    pad[1, 0] = False  # a padded memory slot in the second example
    if attn_type == "bi":
        rng = np.random.default_rng(0)
        mask = (rng.random((B, 1, T, klen)) < 0.7) | (np.arange(klen)[None, None, None] == M + np.arange(T)[:, None])
    else:
        mask = np.asarray(layers.causal_mask(T, klen))
    mask = mask & pad[:, None, None, :]
    kw = dict(r_RD=r, u_HK=u, v_HK=v, mems_BMD=mems, mask_BHTS=jnp.asarray(mask))
    ref_kw = {}
    if segments:
        seg_q = np.array([[0, 0, 1], [0, 1, 1]])
        cat_seg = np.concatenate([np.zeros((B, M), int), seg_q], 1)  # memory is segment 0 (HF `mem_pad`)
        seg_diff = seg_q[:, :, None] != cat_seg[:, None, :]
        kw.update(seg_diff_BTS=jnp.asarray(seg_diff), s_HK=s)
        ref_kw = dict(seg_diff=seg_diff, s=s)
    attn = layers.RelativeAttention(H, K, segments=segments)
    params = _init(attn, h, **kw)
    got = attn.apply({"params": params}, h, **kw)
    want = _reference(params, h, h, mems, u, v, mask, clamp_len=clamp_len, **ref_kw)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_query_stream_reuses_the_weights_and_target_mapping_places_the_queries():
    h, mems, g, u, v, _ = _inputs(1)
    klen = M + T
    r = layers.sinusoid_positions(klen, T, D, attn_type="bi")
    # XLNet's query stream may not see its own content (Yang et al. §2.3): the diagonal is masked.
    mask_g = jnp.asarray(np.arange(klen)[None, :] != M + np.arange(T)[:, None])[None, None]
    attn = layers.RelativeAttention(H, K)
    kw = dict(r_RD=r, u_HK=u, v_HK=v, mems_BMD=mems)
    params = _init(attn, h, **kw)
    out_g = attn.apply({"params": params}, g, h, mask_BHTS=mask_g, **kw)
    np.testing.assert_allclose(out_g, _reference(params, g, h, mems, u, v, mask_g), atol=1e-5, rtol=1e-5)
    # P = 2 predicted positions (2, then 0): the outputs are the full query stream's rows at those positions.
    tm_BPT = jnp.asarray(np.eye(T, dtype=np.float32)[[2, 0]][None].repeat(B, 0))
    out_p = attn.apply({"params": params}, g[:, [2, 0]], h, mask_BHTS=mask_g, target_mapping_BPT=tm_BPT, **kw)
    np.testing.assert_allclose(out_p, out_g[:, [2, 0]], atol=1e-5)
    with pytest.raises(ValueError, match="query stream must have the content stream's length"):
        attn.apply({"params": params}, g[:, :2], h, **kw)


def test_matches_hf_xlnet_relative_attention(require):
    torch = require("torch")
    transformers = require("transformers")
    from transformers.models.xlnet import modeling_xlnet

    h, mems, g, u, v, s = _inputs(2)
    klen = M + T
    config = transformers.XLNetConfig(vocab_size=11, d_model=D, n_layer=1, n_head=H, d_inner=16, dropout=0.0,
                                      attn_type="bi")
    r = layers.sinusoid_positions(klen, T, D, attn_type="bi")
    hf_pos = modeling_xlnet.XLNetModel(config).relative_positional_encoding(T, klen, bsz=B)
    np.testing.assert_allclose(r, hf_pos[:, 0].numpy(), atol=1e-6)

    seg_q = np.array([[0, 1, 1], [0, 0, 1]])
    seg_diff = seg_q[:, :, None] != np.concatenate([np.zeros((B, M), int), seg_q], 1)[:, None, :]
    rng = np.random.default_rng(1)
    mask_h = rng.random((B, T, klen)) < 0.8
    mask_h[:, :, M:] |= np.eye(T, dtype=bool)  # every query sees itself
    mask_g = mask_h & ~np.pad(np.eye(T, dtype=bool), ((0, 0), (M, 0)))[None]
    mask_g[:, :, 0] = True  # ...and the query stream one memory slot
    tm_BPT = np.eye(T, dtype=np.float32)[[1, 2]][None].repeat(B, 0)

    attn = layers.RelativeAttention(H, K, segments=True)
    kw = dict(r_RD=r, u_HK=u, v_HK=v, mems_BMD=mems, seg_diff_BTS=jnp.asarray(seg_diff), s_HK=s)
    params = _init(attn, h, **kw)
    out_h = attn.apply({"params": params}, h, mask_BHTS=jnp.asarray(mask_h)[:, None], **kw)
    out_g = attn.apply({"params": params}, g[:, [1, 2]], h, mask_BHTS=jnp.asarray(mask_g)[:, None],
                       target_mapping_BPT=jnp.asarray(tm_BPT), **kw)

    hf = modeling_xlnet.XLNetRelativeAttention(config).eval()
    t = lambda x: torch.tensor(np.asarray(x, np.float32))
    seq_major = lambda x: t(np.swapaxes(np.asarray(x), 0, 1))  # [B, T, ...] → HF's [T, B, ...]
    with torch.no_grad():
        for name, ours in (("q", "query"), ("k", "key"), ("v", "value"), ("r", "pos")):
            getattr(hf, name).copy_(t(params[ours]["kernel"]))
        hf.o.copy_(t(np.transpose(params["out"]["kernel"], (2, 0, 1))))  # our [H, K, D] is HF's o [D, H, K]
        hf.r_w_bias.copy_(t(u)), hf.r_r_bias.copy_(t(v)), hf.r_s_bias.copy_(t(s))
        hf.seg_embed.copy_(t(params["seg_embed"]))
        # HF masks are float with 1 = masked, [T, K, B, 1]; seg_mat one-hot [T, K, B, 2].
        hf_mask = lambda m: t(np.transpose(~m, (1, 2, 0))[..., None].astype(np.float32))
        seg_mat = t(np.eye(2, dtype=np.float32)[np.transpose(seg_diff.astype(int), (1, 2, 0))])
        hf_h, hf_g = hf(seq_major(h), seq_major(g[:, [1, 2]]), hf_mask(mask_h), hf_mask(mask_g),
                        hf_pos, seg_mat, mems=seq_major(mems), target_mapping=t(np.transpose(tm_BPT, (1, 2, 0))))

    def post_attention(x, y):  # HF's residual + LayerNorm (unit scale, zero bias), the family's part
        z = np.asarray(x, np.float64) + np.asarray(y, np.float64)
        return (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + config.layer_norm_eps)

    np.testing.assert_allclose(post_attention(h, out_h), np.swapaxes(hf_h.numpy(), 0, 1), atol=1e-5)
    np.testing.assert_allclose(post_attention(g[:, [1, 2]], out_g), np.swapaxes(hf_g.numpy(), 0, 1), atol=1e-5)
