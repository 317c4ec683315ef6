"""The adaptive softmax's training path (a tail cluster scored only at the positions whose targets it holds, per
sequence) equals the full distribution's log-probabilities, values and gradients, whatever the clusters' occupancy,
with projections and with one tied table (WikiText-103's layout); on a data-parallel mesh each device scores only
its own sequences' rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from llm_jax import flops
from llm_jax.layers.adaptive import AdaptiveSoftmax, capacities

V, CUTOFFS, B, T, D = 60, (20, 40), 4, 16, 12  # capacities per sequence: 1, 2, 4, 6, 8, …, 16
LAYOUTS = {
    # div_val 2: one table and projection per cluster, untied.
    "projected": {"embed_dim": 16, "div_val": 2, "tie_weights": False, "tie_projs": ()},
    # div_val 1, E = D, tied: the tail clusters' weights are slices of the one input table, no projection.
    "tied_table": {"embed_dim": D, "div_val": 1, "tie_weights": True, "tie_projs": (False, True, True)},
}


@pytest.fixture(scope="module", params=list(LAYOUTS))
def setup(request):
    kw = LAYOUTS[request.param]
    crit = AdaptiveSoftmax(V, model_dim=D, cutoffs=CUTOFFS, **kw)
    h = jax.random.normal(jax.random.key(0), (B, T, D))
    table = 0.5 * jax.random.normal(jax.random.key(3), (V, D))
    shared = [(table, None)] if kw["tie_weights"] else []
    params = crit.init(jax.random.key(1), h, shared, jnp.zeros((B, T), jnp.int32))["params"]
    params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.key(2), p.shape), params)
    shared_of = (lambda t: [(t, None)]) if kw["tie_weights"] else (lambda t: [])

    def gated(p, h, t, labels, w):
        return jnp.sum(crit.apply({"params": p}, h, shared_of(t), labels) * w)

    def dense(p, h, t, labels, w):
        lp = crit.apply({"params": p}, h, shared_of(t))
        return -jnp.sum(jnp.take_along_axis(lp, labels[..., None], -1)[..., 0] * w)

    return (params, h, table, *(jax.jit(jax.value_and_grad(f, (0, 1, 2))) for f in (gated, dense)))


def _labels(tail1_B, tail2_B, seed: int) -> np.ndarray:
    """`[B, T]` labels: in row b, `tail1_B[b]` targets in cluster 1 and `tail2_B[b]` in cluster 2, the rest in the
    head, shuffled within the row."""
    rng = np.random.default_rng(seed)
    rows = [rng.permutation(np.concatenate([rng.integers(20, 40, n1), rng.integers(40, 60, n2),
                                            rng.integers(0, 20, T - n1 - n2)])) for n1, n2 in zip(tail1_B, tail2_B)]
    return np.stack(rows).astype(np.int32)


def test_capacities():
    assert capacities(16) == (1, 2, 4, 6, 8, 10, 12, 14, 16)
    assert capacities(1024)[:3] == (32, 64, 128) and capacities(1024)[-1] == 1024
    assert capacities(3) == (1, 2, 3)


# Empty clusters; the fullest row exactly at a capacity (4) and just above one (5 → 6); a row all in one cluster.
@pytest.mark.parametrize("tail1_B,tail2_B", [((0, 0, 0, 0), (0, 0, 0, 0)), ((4, 0, 2, 0), (5, 1, 0, 0)),
                                             ((16, 0, 0, 0), (0, 16, 15, 1)), ((3, 7, 1, 0), (9, 2, 13, 4))])
def test_gated_tail_equals_full_distribution(setup, tail1_B, tail2_B):
    params, h, table, gated, dense = setup
    labels = _labels(tail1_B, tail2_B, seed=sum(tail1_B) * 100 + sum(tail2_B))
    w = jnp.asarray(np.random.default_rng(3).uniform(0.5, 1.5, (B, T)), jnp.float32)
    (v_gated, g_gated), (v_dense, g_dense) = gated(params, h, table, labels, w), dense(params, h, table, labels, w)
    np.testing.assert_allclose(v_gated, v_dense, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g_gated), jax.tree.leaves(g_dense)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_gated_tail_on_a_data_parallel_mesh(setup):
    params, h, table, gated, _ = setup
    labels, w = _labels((3, 1, 0, 2), (9, 12, 5, 7), seed=7), jnp.ones((B, T))
    mesh = Mesh(np.array(jax.devices()[:B]), ("data",))
    split = NamedSharding(mesh, PartitionSpec("data"))
    meshed = [jax.device_put(x, split) for x in (h, labels, w)]
    v_one, g_one = gated(params, h, table, labels, w)
    v_mesh, g_mesh = gated(params, meshed[0], table, meshed[1], meshed[2])
    np.testing.assert_allclose(v_mesh, v_one, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g_mesh), jax.tree.leaves(g_one)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Every product (every branch's, forward and backward) is split over the batch: no device scores the rows of
    # another's sequences (scoring every sequence's rows on each device would be ~3x this). Not to the FLOP: XLA
    # associates a few small weight-gradient products differently once the batch is split.
    one = flops.hlo_dot_flops(gated.lower(params, h, table, labels, w).compile())
    per_device = flops.hlo_dot_flops(gated.lower(params, meshed[0], table, meshed[1], meshed[2]).compile())
    assert per_device * B == pytest.approx(one, rel=0.01)
