"""T5-tiny trained with `span_corruption` gives the same losses on 1 device and on 8 fake CPU devices under `dp` and
`fsdp_tp` (whose rules include `fsdp`'s), through the same helper as the other families (`test_sharding_families._losses`): encoder,
decoder, cross-attention, the relative position bias and the tied vocabulary projection all sharded."""

import jax
import numpy as np
import pytest
import test_sharding_families as families

from llm_jax import sharding
from llm_jax.data.tokenizer import SpecialIds

# The families' special ids plus T5's end of sequence and sentinels (the top of the 128-token vocabulary).
SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4, eos=5, sentinels=tuple(range(127, 117, -1)))
CASE = families.Case("t5-tiny", {"name": "span_corruption"})


@pytest.fixture(scope="module")
def patched():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(families, "SPECIAL", SPECIAL)
        yield


@pytest.fixture(scope="module")
def reference(patched):
    return families._losses(CASE, sharding.MeshConfig(data=1), jax.devices()[:1])[0]


# Why not `fsdp` alone: its rules are a subset of fsdp_tp's (the width over `fsdp`), which runs here with the batch
# over data × fsdp and heads / FFN / vocabulary over `tensor` as well; each mesh costs ~30 s of compilation on 2 cores.
@pytest.mark.parametrize("mesh_cfg", [
    sharding.MeshConfig(data=8, rules="dp"),
    sharding.MeshConfig(data=2, fsdp=2, tensor=2, rules="fsdp_tp"),
], ids=["dp", "fsdp_tp"])
def test_same_loss_on_one_and_eight_devices(patched, reference, mesh_cfg):
    assert len(jax.devices()) == 8
    losses, state = families._losses(CASE, mesh_cfg, jax.devices())
    assert np.all(np.isfinite(losses)) and losses[0] != losses[1]  # two real steps, the first one updated
    np.testing.assert_allclose(losses, reference, rtol=1e-5)
    specs = [leaf.sharding.spec for leaf in jax.tree.leaves(state.params)]
    sharded = [s for s in specs if any(a is not None for a in s)]
    if mesh_cfg.rules == "dp":
        assert not sharded  # replicated
    else:
        assert any("fsdp" in s for s in sharded)
        assert any("tensor" in s for s in sharded) == (mesh_cfg.rules == "fsdp_tp")
