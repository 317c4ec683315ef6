"""State carried across steps and frozen parameters through the sharded step and the pretraining loop.

The objective here is a real one of the kind the segment and distillation families need, built from the MLM
objective: each row carries a memory of its previous batch's mean hidden state (a stop-gradient state, as
Transformer-XL's memory), and a frozen teacher's MLM distribution is matched by KL (as DistilBERT's soft
targets). It checks the contract: the carry is threaded, batch-sharded, split under accumulation, checkpointed and
resumed bitwise; the teacher's params are a jit argument, never trained and never saved.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llm_jax import config as config_lib
from llm_jax import models, objectives, sharding
from llm_jax.data.tokenizer import SpecialIds
from llm_jax.objectives.mlm import Mlm, MlmConfig
from llm_jax.train import step as step_lib
from llm_jax.train.loop import pretrain
from llm_jax.train.metrics import read_metrics
from llm_jax.train.optim import OptimConfig, make_optimizer

SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)
VOCAB, B, T, P = 101, 8, 16, 4


@dataclasses.dataclass(frozen=True)
class MemoryConfig(MlmConfig):
    name: str = "test_memory_mlm"
    memory_weight: float = 0.5


class MemoryMlm(Mlm):
    """MLM + `memory_weight · |mean hidden − memory|²`, the memory being the previous batch's mean hidden state."""

    name = "test_memory_mlm"
    Config = MemoryConfig

    def init_carry(self, batch_size, model_cfg):
        return {"memory_BD": jnp.zeros((batch_size, model_cfg.hidden_size), jnp.float32)}

    def make_loss(self, model, frozen_models=None):
        def loss_fn(params, batch, rng, *, carry=None, frozen=None, denominators=None, deterministic=False):
            den = self.loss_denominators(batch) if denominators is None else denominators
            out = self._apply(model, params, batch, rng, deterministic)
            loss, metrics = self._mlm_terms(out, batch, den)
            mean_BD = out.hidden_BTD.mean(axis=1)
            gap = jnp.sum((mean_BD - carry["memory_BD"]) ** 2) / den["rows"]
            metrics.update(memory_gap=gap)
            total = loss + self.cfg.memory_weight * gap
            metrics["loss"] = total
            return total, (metrics, {"memory_BD": jax.lax.stop_gradient(mean_BD)})

        return loss_fn

    def loss_denominators(self, batch):
        return {**super().loss_denominators(batch), "rows": jnp.asarray(batch["inputs"].shape[0], jnp.float32)}


@dataclasses.dataclass(frozen=True)
class DistillConfig(MemoryConfig):
    name: str = "test_memory_distill"
    teacher: str = ""


class MemoryDistill(MemoryMlm):
    """`MemoryMlm` + KL(teacher ‖ student) over the predicted positions, the teacher frozen."""

    name = "test_memory_distill"
    Config = DistillConfig
    required_models = {"teacher": "a frozen teacher of the same vocabulary"}

    def make_loss(self, model, frozen_models=None):
        base = super().make_loss(model)
        teacher = frozen_models["teacher"]

        def loss_fn(params, batch, rng, *, carry=None, frozen=None, denominators=None, deterministic=False):
            den = self.loss_denominators(batch) if denominators is None else denominators
            loss, (metrics, carry) = base(params, batch, rng, carry=carry, denominators=den,
                                          deterministic=deterministic)
            args, kwargs = self.init_inputs(batch)
            t = teacher.apply({"params": frozen["teacher"]}, *args, **kwargs, deterministic=True)
            s = model.apply({"params": params}, *args, **kwargs, deterministic=True)
            t_logp = jax.nn.log_softmax(t.mlm_logits_BTV, -1)
            kl_BP = jnp.sum(jnp.exp(t_logp) * (t_logp - jax.nn.log_softmax(s.mlm_logits_BTV, -1)), -1)
            kl = jnp.sum(kl_BP * batch["mlm_weights"]) / den["mlm"]
            metrics.update(kl=kl, loss=loss + kl)
            return loss + kl, (metrics, carry)

        return loss_fn


for _cls in (MemoryMlm, MemoryDistill):
    if _cls.name not in objectives.OBJECTIVES:
        objectives.register(_cls)


def _cfg():
    return dataclasses.replace(models.get_preset("bert-tiny")[1], vocab_size=VOCAB, max_position_embeddings=T,
                               hidden_dropout=0.0, attention_dropout=0.0)


def _batches(objective, n):
    out = []
    for s in range(n):
        rng = np.random.default_rng(s)
        tokens = rng.integers(5, VOCAB, (B, T)).astype(np.int32)
        rows = {"tokens": tokens, "mask": np.ones((B, T), bool), "epoch": np.zeros(B, np.int64),
                "example_index": np.arange(B) + s * B}
        out.append(objective.prepare(rows, seed=s))
    return out


def _run(mesh_cfg, devices, accum=1, steps=3):
    cfg = _cfg()
    model = models.build("bert", cfg)
    objective = objectives.make_objective(objectives.config_for("test_memory_distill", max_predictions=P),
                                          SPECIAL, VOCAB)
    teacher = models.build("bert", cfg)
    batches = _batches(objective, steps)
    mesh = sharding.make_mesh(mesh_cfg, devices)
    rules = sharding.rules_for(mesh_cfg.rules)
    teacher_boxed = step_lib.abstract_params(teacher, objective, batches[0])
    frozen_sh = {"teacher": step_lib.frozen_shardings(teacher_boxed, mesh, rules)}
    teacher_params = nn.meta.unbox(jax.jit(lambda k: step_lib.init_variables(
        teacher, objective, batches[0], {"params": k})["params"])(jax.random.key(7)))
    frozen = {"teacher": step_lib.place(jax.tree.map(np.asarray, teacher_params), frozen_sh["teacher"])}
    tx, schedule = make_optimizer(OptimConfig(learning_rate=1e-2, warmup_steps=0, grad_accum_steps=accum), 10)
    state, shardings = step_lib.create_state(model, objective, tx, batches[0], mesh, rules, seed=0)
    step = step_lib.jit_train_step(
        step_lib.make_train_step(objective.make_loss(model, frozen_models={"teacher": teacher}), tx, schedule,
                                 seed=0, grad_accum_steps=accum, denominators_fn=objective.loss_denominators),
        shardings, mesh, batches[0], frozen_sh)
    losses, gaps = [], []
    with step_lib.mesh_context(mesh, rules):
        for b in batches:
            state, metrics = step(state, sharding.global_batch_from_local(b, mesh), frozen)
            losses.append(float(metrics["loss"]))
            gaps.append(float(metrics["memory_gap"]))
    return np.array(losses), np.array(gaps), state, (frozen, teacher_params)


@pytest.fixture(scope="module")
def one_device():
    return _run(sharding.MeshConfig(data=1), jax.devices()[:1])


def test_carry_is_threaded_and_frozen_params_stay(one_device):
    losses, gaps, state, (frozen, teacher_params) = one_device
    assert gaps[0] > 0 and np.all(np.isfinite(losses))
    # After a step the carry holds the last batch's mean hidden state, one row per example.
    assert state.carry["memory_BD"].shape == (B, 128) and float(jnp.abs(state.carry["memory_BD"]).sum()) > 0
    # The teacher was read every step (a KL term) but neither trained nor donated, and is not in the state.
    for got, want in zip(jax.tree.leaves(frozen), jax.tree.leaves(teacher_params)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert set(state.__dataclass_fields__) == {"step", "params", "opt_state", "carry"}  # what checkpoints save


@pytest.mark.parametrize("mesh_cfg", [sharding.MeshConfig(data=8, rules="dp"),
                                      sharding.MeshConfig(data=2, fsdp=2, tensor=2, rules="fsdp_tp")],
                         ids=["dp", "fsdp_tp"])
def test_carry_and_frozen_on_eight_devices_equal_one_device(one_device, mesh_cfg):
    losses, gaps, state, frozen = _run(mesh_cfg, jax.devices())
    np.testing.assert_allclose(losses, one_device[0], rtol=1e-5)
    np.testing.assert_allclose(gaps, one_device[1], rtol=1e-5)
    assert state.carry["memory_BD"].sharding.spec[0] is not None  # batch-sharded
    np.testing.assert_allclose(np.asarray(state.carry["memory_BD"]), np.asarray(one_device[2].carry["memory_BD"]),
                               rtol=1e-5, atol=1e-6)


def test_accumulation_splits_the_carry_like_the_batch(one_device):
    losses, gaps, state, _ = _run(sharding.MeshConfig(data=1), jax.devices()[:1], accum=2)
    np.testing.assert_allclose(losses, one_device[0], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(state.carry["memory_BD"]), np.asarray(one_device[2].carry["memory_BD"]),
                               rtol=1e-5, atol=1e-6)


def _loop_config(steps, stop_after=0):
    d = config_lib.load_config_file("configs/bert.py:size=tiny", {
        "data.max_documents": 200, "data.max_eval_documents": 20, "data.seq_len": 32, "data.vocab_size": 600,
        "train.batch_size": 8, "train.steps": steps, "train.stop_after": stop_after, "train.progress": False,
        "train.log_every": 1, "train.eval_every": 2, "train.eval_batches": 2, "train.checkpoint_every": 2,
        "optim.warmup_steps": 1})
    d["objective"] = objectives.default_config("test_memory_mlm")
    return config_lib.from_dict(d)


def test_pretraining_loop_checkpoints_the_carry_and_resumes_bitwise(tmp_path):
    straight = pretrain(_loop_config(4), tmp_path / "straight")
    pretrain(_loop_config(4, stop_after=2), tmp_path / "resumed")
    resumed = pretrain(_loop_config(4), tmp_path / "resumed")
    assert resumed["start_step"] == 2 and straight["end_step"] == 4
    rows = lambda d: {r["step"]: (r["loss"], r["memory_gap"]) for r in read_metrics(d) if "loss" in r}
    a, b = rows(tmp_path / "straight"), rows(tmp_path / "resumed")
    assert a[3] == b[3] and a[4] == b[4]  # steps after the restart: bitwise, memory term included
    assert "eval_memory_gap" in straight["eval"]
