"""The new families' objectives give the same losses on 1 device and on 8 fake CPU devices (dp, fsdp, fsdp_tp).

ALBERT-tiny trains with `mlm_sop` (n-gram MLM + sentence-order prediction over a shared layer stack) and
DistilBERT-tiny with `distill`, whose teacher (a BERT-tiny with random params) is a frozen jit argument placed
with `step.frozen_shardings`, as in `test_carry_frozen.py`. Every case goes through the same code: the
objective's `required_models` say which frozen models to build, its `dummy_batch` which row fields it reads.
ELECTRA-tiny trains with `rtd`: two passes over one params tree with Gumbel-max sampling from the step RNG in
between, which must give the same replacements on every layout. GPT-3-tiny trains with `clm`, T5-tiny with
`span_corruption`, Transformer-XL-tiny with `segment_clm` and XLNet-tiny with `plm`, each with its memory carried
in the train state and sharded on the batch axes (each case on the layouts it names).
"""

import dataclasses
import functools

import flax.linen as nn
import jax
import numpy as np
import pytest

from llm_jax import models, sharding
from llm_jax.data.tokenizer import SpecialIds
from llm_jax.objectives import config_for, make_objective
from llm_jax.train import step as step_lib
from llm_jax.train.optim import OptimConfig, make_optimizer

VOCAB, B, T, P = 128, 8, 32, 6
# BERT's special ids, the end-of-document / end-of-sequence token the causal LM and T5 pack with, and T5's
# sentinels (the top of the 128-token vocabulary).
SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4, eod=5, eos=5, sentinels=tuple(range(VOCAB - 1, VOCAB - 11, -1)))


@dataclasses.dataclass(frozen=True)
class Case:
    """A (family, objective) pair to train.

    Attributes:
      preset: the model preset (its family is the preset's).
      objective: the objective's config fields (`name` included).
      frozen: `{required model name: preset}` of the frozen models the objective reads.
      layouts: the 8-device meshes (`LAYOUTS`) it runs on; each costs one compilation (~20–40 s on 2 cores).
    """

    preset: str
    objective: dict
    frozen: dict = dataclasses.field(default_factory=dict)
    layouts: tuple[str, ...] = ("dp", "fsdp", "fsdp_tp")


CASES = {
    "albert-mlm_sop": Case("albert-tiny", {"name": "mlm_sop", "masking": "dynamic", "max_predictions": P}),
    "distilbert-distill": Case("distilbert-tiny", {"name": "distill", "masking": "dynamic", "max_predictions": P},
                               frozen={"teacher": "bert-tiny"}),
    # Generator and discriminator in one params tree; replacements sampled with the step RNG on every layout.
    "electra-rtd": Case("electra-tiny", {"name": "rtd", "max_predictions": P}),
    # fsdp_tp splits the batch (data × fsdp), the width (fsdp) and heads / MLP / vocabulary (tensor) at once, the
    # most the rule sets do (fsdp's rules are a subset); GPT-3-tiny has one dense and one banded layer.
    "gpt3-clm": Case("gpt3-tiny", {"name": "clm"}, layouts=("fsdp_tp",)),
    # Encoder, decoder, cross-attention, the relative position bias and the tied vocabulary projection.
    "t5-span_corruption": Case("t5-tiny", {"name": "span_corruption"}, layouts=("dp", "fsdp_tp")),
    # Relative attention over the carried memory `[B, L, M, D]` (the train state's carry, split over the batch axes),
    # the adaptive-softmax-free tiny preset's tied softmax; the second step reads the first one's memory.
    "transfo_xl-segment_clm": Case("transfo-xl-tiny", {"name": "segment_clm"}, layouts=("dp", "fsdp_tp")),
    # Both streams, the permutation mask and target mapping, relative positions and segments, and the memory
    # carried from the first step into the second (`state.carry`, split like the batch).
    "xlnet-plm": Case("xlnet-tiny", {"name": "plm", "mem_len": 8}, layouts=("dp", "fsdp_tp")),
}
# One compiled step per (case, layout): `fsdp` on a 4-wide axis (the width split 4 ways, the batch over data × fsdp),
# `fsdp_tp` on 2 × 2 × 2 (heads, FFN and vocabulary over `tensor` too).
LAYOUTS = {
    "dp": sharding.MeshConfig(data=8, rules="dp"),
    "fsdp": sharding.MeshConfig(data=2, fsdp=4, rules="fsdp"),
    "fsdp_tp": sharding.MeshConfig(data=2, fsdp=2, tensor=2, rules="fsdp_tp"),
}


class _EveryPieceStartsAWord:
    """A tokenizer stand-in for `bind_tokenizer`: no pieces known, so every id starts a word."""

    @staticmethod
    def get_vocab():
        return {}


def _build(preset):
    family, cfg = models.get_preset(preset)
    return models.build(family, dataclasses.replace(cfg, vocab_size=VOCAB))


def _batch(objective, seed):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(5, VOCAB, (B, T)).astype(np.int32)
    tokens[:, 0] = SPECIAL.cls
    tokens[:, T // 2] = SPECIAL.sep
    tokens[:, -1] = SPECIAL.sep
    tokens[1, 20:] = SPECIAL.pad
    rows = {"tokens": tokens, "mask": tokens != SPECIAL.pad, "epoch": np.zeros(B, np.int64),
            "example_index": np.arange(B) + seed * B}
    optional = {"segment_ids": (np.arange(T) > T // 2).astype(np.int32)[None].repeat(B, 0),
                "sop_label": rng.integers(0, 2, B).astype(np.int32)}
    wanted = objective.dummy_batch(1, T)
    rows.update({k: v for k, v in optional.items() if k in wanted})  # only the fields the objective reads
    return objective.prepare(rows, seed)


def _losses(case, mesh_cfg, devices, steps=2):
    model = _build(case.preset)
    objective = make_objective(config_for(**case.objective), SPECIAL, VOCAB)
    objective.bind_tokenizer(_EveryPieceStartsAWord())
    assert set(objective.required_models) == set(case.frozen)
    batches = [_batch(objective, s) for s in range(steps)]
    mesh = sharding.make_mesh(mesh_cfg, devices)
    rules = sharding.rules_for(mesh_cfg.rules)
    frozen_models = {name: _build(preset) for name, preset in case.frozen.items()}
    frozen_sh, frozen = {}, {}
    for i, (name, module) in enumerate(frozen_models.items()):
        frozen_sh[name] = step_lib.frozen_shardings(step_lib.abstract_params(module, objective, batches[0]),
                                                    mesh, rules)
        params = nn.meta.unbox(jax.jit(lambda k, m=module: step_lib.init_variables(
            m, objective, batches[0], {"params": k})["params"])(jax.random.key(7 + i)))
        frozen[name] = step_lib.place(jax.tree.map(np.asarray, params), frozen_sh[name])
    tx, schedule = make_optimizer(OptimConfig(learning_rate=1e-3, warmup_steps=1), 10)
    state, shardings = step_lib.create_state(model, objective, tx, batches[0], mesh, rules, seed=0)
    train_step = step_lib.jit_train_step(
        step_lib.make_train_step(objective.make_loss(model, frozen_models=frozen_models or None), tx, schedule,
                                 seed=0, denominators_fn=objective.loss_denominators),
        shardings, mesh, batches[0], frozen_sh or None)
    extra = (frozen,) if frozen else ()  # the step takes `frozen` only when compiled with its shardings
    losses = []
    with step_lib.mesh_context(mesh, rules):
        for b in batches:
            state, metrics = train_step(state, sharding.global_batch_from_local(b, mesh), *extra)
            losses.append(float(metrics["loss"]))
    return np.array(losses), state


@pytest.fixture(scope="module")
def reference():
    """`reference(case)`: the case's losses on one device, computed when a case first asks and kept for the module,
    so that a run of a few cases (`-k`) compiles only their references."""
    return functools.cache(lambda name: _losses(CASES[name], sharding.MeshConfig(data=1), jax.devices()[:1])[0])


@pytest.mark.parametrize("case,layout", [(c, layout) for c in sorted(CASES) for layout in CASES[c].layouts])
def test_same_loss_on_one_and_eight_devices(reference, case, layout):
    mesh_cfg = LAYOUTS[layout]
    assert len(jax.devices()) == 8
    losses, state = _losses(CASES[case], mesh_cfg, jax.devices())
    assert np.all(np.isfinite(losses)) and losses[0] != losses[1]  # two real steps, the first one updated
    np.testing.assert_allclose(losses, reference(case), rtol=1e-5)
    for leaf in jax.tree.leaves(state.carry):  # carried state (Transformer-XL's memory) is split like the batch
        assert leaf.sharding.spec[0] == ("data", "fsdp")
    specs = [leaf.sharding.spec for leaf in jax.tree.leaves(state.params)]
    sharded = [s for s in specs if any(a is not None for a in s)]
    if mesh_cfg.rules == "dp":
        assert not sharded  # replicated
    else:
        assert any("fsdp" in s for s in sharded)
        assert any("tensor" in s for s in sharded) == (mesh_cfg.rules == "fsdp_tp")
