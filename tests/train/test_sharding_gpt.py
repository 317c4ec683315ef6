"""GPT-3-tiny (one dense and one banded layer) trained with `clm` gives the same losses on 1 device and on 8 fake CPU
devices, through the same helper as the other families (`test_sharding_families._losses`)."""

import jax
import numpy as np
import pytest
import test_sharding_families as families

from llm_jax import sharding
from llm_jax.data.tokenizer import SpecialIds

# The families' special ids plus the end-of-document token the causal-LM objective packs with.
SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4, eod=5)
CASE = families.Case("gpt3-tiny", {"name": "clm"})


@pytest.fixture(scope="module")
def patched():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(families, "SPECIAL", SPECIAL)
        yield


@pytest.fixture(scope="module")
def reference(patched):
    return families._losses(CASE, sharding.MeshConfig(data=1), jax.devices()[:1])[0]


# Why only fsdp_tp among the 8-device meshes: it splits the batch (data × fsdp), the width (fsdp) and the heads,
# MLP and vocabulary (tensor) at once, the most the rule sets do; BERT's test covers dp / fsdp / fsdp_tp.
def test_same_loss_on_one_and_eight_devices(patched, reference):
    assert len(jax.devices()) == 8
    mesh_cfg = sharding.MeshConfig(data=2, fsdp=2, tensor=2, rules="fsdp_tp")
    losses, state = families._losses(CASE, mesh_cfg, jax.devices())
    assert np.all(np.isfinite(losses)) and losses[0] != losses[1]  # two real steps, the first one updated
    np.testing.assert_allclose(losses, reference, rtol=1e-5)
    specs = [leaf.sharding.spec for leaf in jax.tree.leaves(state.params)]
    assert any("fsdp" in s for s in specs) and any("tensor" in s for s in specs)
