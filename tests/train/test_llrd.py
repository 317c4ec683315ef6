"""Layer-wise learning-rate decay (ELECTRA App. A): lr × decay^(L − layer), embeddings at depth 0, heads on top.
Depths come from the params' logical `layers` axis (boxed params), so shared stacks are handled on purpose."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from llm_jax import layers, models
from llm_jax.models import heads
from llm_jax.train.optim import OptimConfig, layer_depth_factors, layerwise_lr_decay, make_optimizer

L, DECAY = 3, 0.5
box = nn.LogicallyPartitioned


def _params():
    """Boxed params as `model.init` returns them: the stacked ones carry the `layers` axis Stack adds."""
    return {"bert": {"embeddings": {"word_embeddings": {"embedding": box(jnp.ones((5, 4)), ("vocab", "embed"))}},
                     "encoder": {"stack": {"layers": {"block": {"mlp": {
                         "kernel": box(jnp.ones((L, 4, 4)), ("layers", "embed", "mlp")),
                         "bias": box(jnp.ones((L, 4)), ("layers", "mlp"))}}}}},
                     "pooler": {"dense": {"kernel": box(jnp.ones((4, 4)), ("embed", None))}}},
            "classifier": {"kernel": box(jnp.ones((4, 2)), ("embed", None)), "bias": box(jnp.ones((2,)), (None,))}}


def test_factors_by_depth():
    f = layer_depth_factors(_params(), DECAY)
    assert float(f["bert"]["embeddings"]["word_embeddings"]["embedding"]) == DECAY ** (L + 1)
    stacked = f["bert"]["encoder"]["stack"]["layers"]["block"]["mlp"]
    assert stacked["kernel"].shape == (L, 1, 1) and stacked["bias"].shape == (L, 1)
    np.testing.assert_allclose(stacked["kernel"][:, 0, 0], [DECAY ** 3, DECAY ** 2, DECAY ** 1])  # layer l: decay^(L-l)
    assert float(f["bert"]["pooler"]["dense"]["kernel"]) == 1.0 and float(f["classifier"]["kernel"]) == 1.0
    with pytest.raises(ValueError, match="boxed params"):
        layer_depth_factors(nn.meta.unbox(_params()), DECAY)


def test_sgd_updates_are_scaled_per_layer_slice():
    params = _params()
    plain = nn.meta.unbox(params)
    tx = optax.chain(optax.sgd(1.0), layerwise_lr_decay(DECAY, params))
    grads = jax.tree.map(jnp.ones_like, plain)
    updates, _ = tx.update(grads, tx.init(plain), plain)
    k = updates["bert"]["encoder"]["stack"]["layers"]["block"]["mlp"]["kernel"]
    for layer in range(L):
        np.testing.assert_allclose(k[layer], -DECAY ** (L - layer) * np.ones((4, 4)))
    np.testing.assert_allclose(updates["bert"]["embeddings"]["word_embeddings"]["embedding"], -DECAY ** (L + 1))
    np.testing.assert_allclose(updates["classifier"]["bias"], -1.0)


def test_make_optimizer_applies_it_after_adamw_and_only_when_asked():
    boxed = _params()
    params = nn.meta.unbox(boxed)
    grads = jax.tree.map(lambda p: 0.3 * jnp.ones_like(p), params)
    cfg = OptimConfig(learning_rate=1e-2, warmup_steps=0, weight_decay=0.0, clip_norm=0.0, eps=1e-12)
    plain, _ = make_optimizer(cfg, 10)
    decayed, _ = make_optimizer(dataclasses.replace(cfg, layer_decay=DECAY), 10, params=boxed)
    up_plain, _ = plain.update(grads, plain.init(params), params)
    up_decay, _ = decayed.update(grads, decayed.init(params), params)
    ratio = jax.tree.map(lambda a, b: np.asarray(a / b), up_decay, up_plain)
    np.testing.assert_allclose(ratio["bert"]["encoder"]["stack"]["layers"]["block"]["mlp"]["kernel"][:, 0, 0],
                               [DECAY ** 3, DECAY ** 2, DECAY], rtol=1e-6)
    np.testing.assert_allclose(ratio["classifier"]["kernel"], 1.0)
    with pytest.raises(ValueError, match="layer_decay"):
        OptimConfig(layer_decay=0.0).validate()
    with pytest.raises(ValueError, match="params=step.abstract_params"):
        make_optimizer(dataclasses.replace(cfg, layer_decay=DECAY), 10)


def test_real_model_paths_get_the_right_depths():
    cfg = dataclasses.replace(models.get_preset("bert-tiny")[1], vocab_size=50)
    model = heads.build("bert", cfg, "classification", 3)
    abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), np.ones((1, 4), np.int32))["params"])
    f = layer_depth_factors(abstract, 0.8)
    n = cfg.num_layers
    emb = [float(v) for v in jax.tree.leaves(f["bert"]["embeddings"])]
    assert len(emb) == 5 and emb == pytest.approx([0.8 ** (n + 1)] * 5)  # 3 tables + LayerNorm scale, bias
    q = f["bert"]["encoder"]["stack"]["layers"]["block"]["attention"]["query"]["kernel"]
    assert q.shape == (n, 1, 1, 1)
    np.testing.assert_allclose(q.ravel(), [0.8 ** (n - l) for l in range(n)], rtol=1e-6)
    assert {float(v) for v in jax.tree.leaves((f["bert"]["pooler"], f["classifier"]))} == {1.0}


class _Block(nn.Module):
    @nn.compact
    def __call__(self, x):
        return layers.MultiHeadAttention(num_heads=2, head_dim=4, name="attention")(x)


class _Tiny(nn.Module):
    """Embeddings → a Stack of attention blocks (shared or scanned) → a head."""

    shared: bool

    @nn.compact
    def __call__(self, ids):
        x = layers.Embed(7, 8, name="embeddings")(ids)
        x = layers.Stack(_Block, (), 3, shared=self.shared, name="stack")(x).x
        return layers.Einsum("BTD,DC->BTC", (8, 2), ("embed", None), name="head")(x)


@pytest.mark.parametrize("shared", [False, True], ids=["scanned", "shared"])
def test_stacks_from_the_logical_layers_axis(shared):
    abstract = jax.eval_shape(lambda: _Tiny(shared).init(jax.random.key(0), np.zeros((1, 4), np.int32))["params"])
    f = layer_depth_factors(abstract, DECAY)
    q = f["stack"]["layers"]["block"]["attention"]["query"]["kernel"]  # [L, D, H, K] scanned, [D, H, K] shared
    if shared:
        # One set of weights for every depth: one factor, the top layer group's (not one per head, as a
        # leading-axis reading of the [D, H, K] kernel would give).
        assert q.shape == () and float(q) == DECAY
        assert float(f["embeddings"]["embedding"]) == DECAY ** 2
    else:
        assert q.shape == (3, 1, 1, 1)
        np.testing.assert_allclose(q.ravel(), [DECAY ** 3, DECAY ** 2, DECAY])
        assert float(f["embeddings"]["embedding"]) == DECAY ** 4
    assert float(f["head"]["kernel"]) == 1.0
    assert {np.shape(v) for v in jax.tree.leaves(f["stack"])} == ({()} if shared else {(3, 1), (3, 1, 1), (3, 1, 1, 1)})
