"""The adaptive softmax's training path (a tail cluster computed only at the positions whose targets it holds)
equals the full distribution's log-probabilities, values and gradients, whatever the clusters' occupancy, and
under a data-parallel mesh."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from llm_jax.layers.adaptive import AdaptiveSoftmax, capacities

V, CUTOFFS, B, T, D = 60, (20, 40), 8, 4, 12  # N = 32 positions: capacities 1, 2, 4, 8, …, 32


def _crit():
    return AdaptiveSoftmax(V, 16, D, CUTOFFS, div_val=2, tie_weights=False, tie_projs=())


@pytest.fixture(scope="module")
def setup():
    crit = _crit()
    h = jax.random.normal(jax.random.key(0), (B, T, D))
    params = crit.init(jax.random.key(1), h, [], jnp.zeros((B, T), jnp.int32))["params"]
    params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.key(2), p.shape), params)

    def gated(p, h, labels, w):
        return jnp.sum(crit.apply({"params": p}, h, [], labels) * w)

    def dense(p, h, labels, w):
        lp = crit.apply({"params": p}, h, [])
        return -jnp.sum(jnp.take_along_axis(lp, labels[..., None], -1)[..., 0] * w)

    return params, h, jax.jit(jax.value_and_grad(gated, (0, 1))), jax.jit(jax.value_and_grad(dense, (0, 1)))


def _labels(n_tail1: int, n_tail2: int, seed: int) -> np.ndarray:
    """N labels: `n_tail1` in cluster 1, `n_tail2` in cluster 2, the rest in the head, shuffled."""
    rng = np.random.default_rng(seed)
    n = B * T
    ids = np.concatenate([rng.integers(20, 40, n_tail1), rng.integers(40, 60, n_tail2),
                          rng.integers(0, 20, n - n_tail1 - n_tail2)])
    return rng.permutation(ids).reshape(B, T).astype(np.int32)


def test_capacities():
    assert capacities(32) == (1, 2, 4, 8, 12, 16, 20, 24, 28, 32)
    assert capacities(1024)[:3] == (32, 64, 128) and capacities(1024)[-1] == 1024
    assert capacities(3) == (1, 2, 3)


# Empty clusters, counts at and just above a capacity, one cluster holding every position.
@pytest.mark.parametrize("n_tail1,n_tail2", [(0, 0), (4, 5), (1, 31), (32, 0), (13, 19)])
def test_gated_tail_equals_full_distribution(setup, n_tail1, n_tail2):
    params, h, gated, dense = setup
    labels = _labels(n_tail1, n_tail2, seed=n_tail1 * 100 + n_tail2)
    w = jnp.asarray(np.random.default_rng(3).uniform(0.5, 1.5, (B, T)), jnp.float32)
    (v_gated, g_gated), (v_dense, g_dense) = gated(params, h, labels, w), dense(params, h, labels, w)
    np.testing.assert_allclose(v_gated, v_dense, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g_gated), jax.tree.leaves(g_dense)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_gated_tail_under_a_data_parallel_mesh(setup):
    params, h, gated, _ = setup
    labels, w = _labels(6, 11, seed=7), jnp.ones((B, T))
    mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
    split = NamedSharding(mesh, PartitionSpec("data"))
    v_one, g_one = gated(params, h, labels, w)
    v_mesh, g_mesh = gated(params, jax.device_put(h, split), jax.device_put(labels, split), jax.device_put(w, split))
    np.testing.assert_allclose(v_mesh, v_one, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g_mesh), jax.tree.leaves(g_one)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
