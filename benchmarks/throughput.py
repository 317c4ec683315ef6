"""Training throughput and MFU of our train step, side by side with Hugging Face transformers (PyTorch eager).

    python benchmarks/throughput.py --row all                       # every family's row at its mini size
    python benchmarks/throughput.py --row bert --row gpt2 --size base
    python benchmarks/throughput.py --row all --trials 5 --rounds 5   # each row's trials spread over the run
    python benchmarks/throughput.py --config configs/bert.py:size=base --batch 8 --seq 128

For each row (`ROWS`: a family's pretraining config at a mini and a base size) or config, and batch shape, one
full training step (forward + backward + clipping + AdamW) of

* ours: `llm_jax.train.step.make_train_step` jitted by `jit_train_step` on a 1-device mesh, the objective's
  own loss (`make_objective(...).make_loss(model, frozen_models)`) and the config's optimizer (`make_optimizer`);
* the reference: the family's transformers class(es) (`HF_ARCHITECTURE`, or each of `HF_VIEWS`: ELECTRA's
  generator and discriminator) with the identical architecture, the same batch and the objective's loss written
  in PyTorch (`REFERENCES`: MLM at the same P gathered positions (+ NSP, SOP), distillation, replaced-token
  detection with sampling, causal LM, span corruption, permutation LM with its memory carried across steps),
  global-norm clipping and AdamW with the same decay mask and ours' learning-rate schedule —

is timed on the same synthetic batch (`BATCH_LAYOUTS`: random token ids in the objective's layout, no tokenizer).

Frozen models an objective reads (`required_models`: DistilBERT's teacher) run in the same step on both sides,
forward only (ours: a non-donated jit argument, as the training loop passes it; the reference: the family's
masked-LM class under `torch.no_grad()`). No checkpoint is read: the objective's field names a *preset*
(`configs/distilbert.py:size=tiny,teacher=bert-tiny`), built with random params and the student's vocabulary, and
the student starts from random params too (`model.init_from` is not read).

How the two are kept fair on a small shared machine:
* each runs in its own worker process, so neither framework's thread pool (XLA's Eigen/YNNPACK workers,
  torch's OpenMP team) spins or sleeps inside the other's step — in one process they slowed each other
  several-fold (benchmarks/NOTES.md);
* both get every core: XLA's intra-op pool is sized to the machine (`--xla_cpu_multi_thread_eigen`, passed
  explicitly), torch gets `torch.set_num_threads(cores)`;
* steps alternate between the workers in ABBA order with a short pause before each, so a change in machine
  load hits both alike;
* a row is ≥ 5 trials of a few steps each; a trial's ratio is the reference's median step time over ours, and
  the row reports the trials' median ratio, min–max and IQR, and a verdict (`verdict`) that is `inconclusive`
  unless every trial lies on the same side of 1 — with the other processes' CPU share per trial and the load
  average before and after the row;
* with `--rounds R` (`bench_rows`) a row's trials are spread over R rounds; a round runs every row once, in turn,
  each with a fresh pair of workers (set up side by side, ours' compiled step loaded from a compilation cache after
  the first round). Trials minutes apart in one pair of processes miss what moves over an hour on a shared VM
  and from one worker start to the next; a rerun of the script an hour later saw both (benchmarks/NOTES.md).

FLOP/s and MFU use the analytical counts of `llm_jax.flops` (a frozen model counted forward only) against the
f32 matmul peak measured in the same run (the best of a few large `jnp` matmuls in our worker, before the warm-up
and after the timed steps of the first round).
Writes `benchmarks/results/throughput.{json,md}`, merging rows by (config, overrides, batch, seq) on the machine (CPU
model, cores, vector extensions: `machine_name`) they ran on: a run on another CPU is kept beside the others, not compared with them as a rerun.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime
import importlib.util
import json
import math
import multiprocessing
import os
import pathlib
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
NAME = "throughput"
CORES = os.cpu_count() or 1
# XLA:CPU's intra-op pool; explicit so that the setting is on record. Flags already in XLA_FLAGS win.
DEFAULT_XLA_FLAGS = ("--xla_cpu_multi_thread_eigen=true",)
# glibc's malloc for both workers: one arena, no mmap, never trimmed, transparent huge pages (benchmarks/NOTES.md,
# "The allocator"). What a step frees stays mapped for the next, so a step takes no page faults after the first.
MALLOC_TUNABLES = ("glibc.malloc.hugetlb=1:glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:"
                   "glibc.malloc.trim_threshold=4294967295")
DEFAULT_WORKER_ENV = {"GLIBC_TUNABLES": MALLOC_TUNABLES}
sys.path.insert(0, str(ROOT))
from llm_jax.eval.report import machine_info  # noqa: E402



# Every family's pretraining step at a CPU size (`mini`: what the tests and this machine run) and a published one
# (`base`): `--row NAME [--size base]` or `--row all`. A family adds one entry here; its objective needs a
# synthetic batch layout (`BATCH_LAYOUTS`) and a PyTorch twin (`REFERENCES`) if no existing one fits. An entry with
# `"oracle": "what"` names a family whose transformers class the installed version lacks: its reference runs in
# an environment of its own (`--oracle-python`; without one the row times ours alone).
ROWS = {
    "bert": {"mini": "configs/bert.py:size=mini", "base": "configs/bert.py:size=base"},
    "roberta": {"mini": "configs/roberta.py:size=mini", "base": "configs/roberta.py:size=base"},
    "distilbert": {"mini": "configs/distilbert.py:size=tiny,teacher=bert-tiny",
                   "base": "configs/distilbert.py:size=base,teacher=bert-base"},
    "albert": {"mini": "configs/albert.py:size=mini", "base": "configs/albert.py:size=base"},
    "electra": {"mini": "configs/electra.py:size=mini", "base": "configs/electra.py:size=base"},
    "gpt2": {"mini": "configs/gpt.py:version=2,size=mini", "base": "configs/gpt.py:version=2,size=small"},
    "gpt1": {"mini": "configs/gpt.py:version=1,size=tiny", "base": "configs/gpt.py:version=1,size=small"},
    # AdamW: the reference step is AdamW (T5's own recipe, Adafactor, has no like-for-like PyTorch twin here).
    "t5": {"mini": "configs/t5.py:size=mini,optim=adamw", "base": "configs/t5.py:size=base,optim=adamw"},
    "transfo_xl": {"mini": "configs/transfo_xl.py:size=mini", "base": "configs/transfo_xl.py:size=base",
                   "oracle": "transformers 4.37.2 (transformers 5 has no TransfoXLLMHeadModel; "
                             "tests/fixtures/make_transfo_xl_fixtures.py says how to make the environment)"},
    # The base recipe's rows are 512 tokens (reuse 256, memory 384); the row keeps its proportions at 128.
    "xlnet": {"mini": "configs/xlnet.py:size=mini", "base": "configs/xlnet.py:size=base,seq_len=128"},
}


# ------------------------------------------------------------------------------------------------ config


def load_run_config(spec: str, overrides: list[str]):
    """`configs/X.py[:arg]` → RunConfig, after `section.field=value` overrides (values parsed as JSON when they can be)."""
    from llm_jax.config import from_dict

    path, _, arg = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location(f"_bench_config_{pathlib.Path(path).stem}", ROOT / path)
    if module_spec is None:
        raise SystemExit(f"--config {spec!r}: no config file at {ROOT / path}.")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    cfg = module.get_config(arg) if arg else module.get_config()
    d = cfg.to_dict()
    for item in overrides:
        key, _, raw = item.partition("=")
        section, _, field = key.partition(".")
        if section not in d or not field:
            raise SystemExit(f"--set {item!r}: use section.field=value with a section of {sorted(d)}.")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        d[section][field] = value
    run = from_dict(d)
    frozen_configs_for(run, spec)  # a frozen model that is not a preset is refused before any worker starts
    return run


def frozen_configs_for(run, spec: str = "") -> dict:
    """`{required model name: (family, Config)}` of the frozen models the run's objective reads (a teacher).

    Each is the preset named by the objective's field of that name (`objective.teacher=bert-tiny`), with the
    student's vocabulary (in training both read the same tokenizer's ids) and the student's run-time fields
    (precision, remat, scan unrolling); random params, no checkpoint.

    Raises:
      SystemExit: a field that does not name a preset.
    """
    import dataclasses

    from llm_jax import models
    from llm_jax.objectives import objective_class

    out = {}
    for name in objective_class(run.objective.name).required_models:
        preset = getattr(run.objective, name, "")
        if preset not in models.all_presets():
            raise SystemExit(f"--config {spec!r}: objective.{name}={preset!r} is not a preset; this benchmark reads no "
                             f"checkpoint and builds each frozen model from a preset name with random params: set "
                             f"{name}=PRESET, one of {', '.join(sorted(models.all_presets()))}.")
        family, cfg = models.get_preset(preset)
        cfg = models.with_runtime(dataclasses.replace(cfg, vocab_size=run.model.vocab_size), run.model)
        out[name] = (family, cfg)
    return out


def make_objective_for(run):
    """The run's objective with placeholder special-token ids (the first ids of the vocabulary; no tokenizer)."""
    import dataclasses

    from llm_jax.objectives import shape_only_objective

    fields = {k: v for k, v in dataclasses.asdict(run.objective).items() if k != "name"}
    return shape_only_objective(run.objective.name, run.model.vocab_size, **fields)


def _mlm_layout(objective, out: dict, rng, first_plain: int) -> None:
    """Masked-LM batches (mlm, mlm_nsp, mlm_sop, distill, rtd): `[CLS]` first, P distinct sorted masked positions
    after it, their original ids, two segments, random pair labels (NSP, SOP)."""
    import numpy as np

    batch, seq = out["inputs"].shape
    out["inputs"][:, 0] = objective.special.cls
    p = out["mlm_positions"].shape[1]
    if p > seq - 1:
        raise SystemExit(f"objective.max_predictions={p} does not fit in seq={seq}.")
    out["mlm_positions"] = np.sort(np.stack([rng.choice(np.arange(1, seq), p, replace=False) for _ in range(batch)]),
                                   axis=1).astype(np.int32)
    if objective.special.mask is not None:  # the generator / student reads [MASK] where it predicts
        np.put_along_axis(out["inputs"], out["mlm_positions"], objective.special.mask, axis=1)
    if "segment_ids" in out:
        out["segment_ids"][:] = 0
        out["segment_ids"][:, seq // 2:] = 1
    for key in [k for k in out if k.endswith("_label")]:  # the sentence-pair head's labels (NSP, SOP)
        out[key] = rng.integers(0, 2, size=(batch,), dtype=np.int32)


def _clm_layout(objective, out: dict, rng, first_plain: int) -> None:
    """Causal LM: a row of T + 1 stream tokens, inputs its first T and targets its last T."""
    import numpy as np

    batch, seq = out["inputs"].shape
    stream = rng.integers(first_plain, objective.vocab_size - len(objective.special.sentinels), size=(batch, seq + 1),
                          dtype=np.int32)
    out["inputs"], out["targets"] = stream[:, :-1].copy(), stream[:, 1:].copy()


def _span_corruption_layout(objective, out: dict, rng, first_plain: int) -> None:
    """Span corruption: full inputs and targets (both end with eos), decoder inputs = targets shifted right behind
    the start id (T5's pad), sentinels where the spans were."""
    import numpy as np

    sentinels = np.asarray(objective.special.sentinels, np.int32)
    spans = objective.lengths(out["inputs"].shape[1]).spans
    for key in ("inputs", "targets"):
        ids = out[key]
        ids[:, -1] = objective.special.eos
        gaps = np.linspace(0, ids.shape[1] - 1, spans, endpoint=False).astype(int)  # a sentinel per span
        ids[:, gaps] = sentinels[:spans]
    out["decoder_inputs"] = np.concatenate([np.full_like(out["targets"][:, :1], objective.special.pad),
                                            out["targets"][:, :-1]], axis=1)


def _plm_layout(objective, out: dict, rng, first_plain: int) -> None:
    """Permutation LM: rows `reuse ++ A <sep> B <sep> <cls>` of random ids with token types 0 / 1 / 2 (A and B
    of equal length), then the objective's own host-side draw (`Plm.prepare`: predicted spans, factorization
    orders as `perm_mask`, `target_mapping`, targets, weights) — the layout training feeds, not a hand-made one."""
    import numpy as np

    batch, seq = out["inputs"].shape
    reuse = objective.cfg.lengths(seq)[0]
    a_len = (seq - reuse - 3) // 2
    b_len = seq - reuse - 3 - a_len
    tokens = out["inputs"].copy()
    sep_a, sep_b = reuse + a_len, reuse + a_len + 1 + b_len
    tokens[:, [sep_a, sep_b]] = objective.special.sep
    tokens[:, -1] = objective.special.cls
    segments = np.zeros_like(tokens)
    segments[:, sep_a + 1:] = 1
    segments[:, -1] = 2
    examples = {"tokens": tokens, "segment_ids": segments, "epoch": np.zeros(batch, np.int64),
                "example_index": np.arange(batch)}
    out.update(objective.prepare(examples, seed=int(rng.integers(2**31))))


# How the synthetic batch of an objective differs from random ids everywhere (bool masks all True, float weights
# all 1), by the name of the objective class that defines `dummy_batch` (or a base class of it): a new objective
# with its own batch layout adds one function here.
BATCH_LAYOUTS = {"Mlm": _mlm_layout, "Clm": _clm_layout, "SegmentClm": _clm_layout,
                 "SpanCorruption": _span_corruption_layout, "Plm": _plm_layout}


def _entry_for(table: dict, objective, what: str, member: str):
    """The entry of `table` for the objective's class or its nearest base class that has one."""
    for cls in type(objective).__mro__:
        if cls.__name__ in table:
            return table[cls.__name__]
    raise SystemExit(f"No {what} for objective {objective.name!r} ({type(objective).__name__}) yet: add its class "
                     f"name to {member} in benchmarks/throughput.py (known: {sorted(table)}).")


def synthetic_batch(run, batch: int, seq: int, seed: int = 0):
    """A batch in the objective's layout with random ids (no tokenizer, no corpus): real tokens everywhere, then the
    objective's layout (`BATCH_LAYOUTS`: masked positions, shifted targets, sentinels)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    objective = make_objective_for(run)
    out = objective.dummy_batch(batch, seq)
    # The placeholder special ids come first and the sentinels last (`shape_only_objective`): plain tokens between.
    first_plain = len([r for r in objective.required_roles if r != "sentinels"])
    end_plain = run.model.vocab_size - len(objective.special.sentinels)
    for key, value in out.items():
        if value.dtype == bool:
            value[:] = True
        elif np.issubdtype(value.dtype, np.floating):
            value[:] = 1.0
        else:
            out[key] = rng.integers(first_plain, end_plain, size=value.shape, dtype=value.dtype)
    _entry_for(BATCH_LAYOUTS, objective, "synthetic batch layout", "BATCH_LAYOUTS")(objective, out, rng, first_plain)
    return out


# -------------------------------------------------------------------------------------------------- ours


def setup_ours(run, batch_np, seed: int = 0, compiler_options: dict | None = None, keep_hlo: bool = False,
               schedule_steps: int = 0):
    """Our jitted train step on a 1-device mesh: `(step_fn, meta)`; `step_fn()` runs one step, returns its loss.

    `keep_hlo`: put the optimised HLO text in `meta["hlo_text"]` (for benchmarks/profile_step.py).
    `schedule_steps`: put the learning rate of optimizer steps `0 … schedule_steps − 1` in `meta["lr_schedule"]`
    (the reference follows it).
    """
    import flax.linen as nn
    import jax
    import numpy as np

    from llm_jax import flops, models
    from llm_jax.sharding import MeshConfig, global_batch_from_local, make_mesh, rules_for
    from llm_jax.train import step as step_lib
    from llm_jax.train.optim import _decay_mask, make_optimizer

    model = models.build(run.family, run.model)
    objective = make_objective_for(run)
    tx, schedule = make_optimizer(run.optim, run.train.steps)
    mesh = make_mesh(MeshConfig(data=1), jax.devices()[:1])
    rules = rules_for("dp")
    state, shardings = step_lib.create_state(model, objective, tx, batch_np, mesh, rules, seed)
    # Frozen models (a teacher): random params placed like the loop's (`load_frozen_models`), a non-donated argument.
    frozen_models = {name: models.build(family, cfg) for name, (family, cfg) in frozen_configs_for(run).items()}
    frozen_sh, frozen, frozen_counts = {}, {}, {}
    for i, (name, module) in enumerate(frozen_models.items()):
        boxed = step_lib.abstract_params(module, objective, batch_np)
        frozen_sh[name] = step_lib.frozen_shardings(boxed, mesh, rules)
        frozen_counts[name] = step_lib.count_params(boxed)
        params = jax.jit(lambda key, m=module: step_lib.init_variables(
            m, objective, batch_np, {"params": key})["params"])(jax.random.key(seed + 1 + i))
        frozen[name] = step_lib.place(jax.tree.map(np.asarray, nn.meta.unbox(params)), frozen_sh[name])
    extra = (frozen,) if frozen else ()  # the step takes `frozen` only when compiled with its shardings
    train_step = step_lib.jit_train_step(
        step_lib.make_train_step(objective.make_loss(model, frozen_models=frozen_models or None), tx, schedule,
                                 seed=seed, grad_accum_steps=run.optim.grad_accum_steps,
                                 denominators_fn=objective.loss_denominators), shardings, mesh, batch_np,
        frozen_sh or None)
    with step_lib.mesh_context(mesh, rules):
        batch = global_batch_from_local(batch_np, mesh)
        t0 = time.perf_counter()
        compiled = train_step.lower(state, batch, *extra).compile(compiler_options=compiler_options)
        compile_s = time.perf_counter() - t0
    holder = {"state": state}

    def step_fn(i: int = 0) -> float:
        del i  # ours counts its steps in the state
        holder["state"], metrics = compiled(holder["state"], batch, *extra)
        return float(metrics["loss"])  # a device-to-host transfer: the step has finished when this returns

    boxed = step_lib.abstract_params(model, objective, batch_np)
    decayed = jax.tree.leaves(_decay_mask(nn.meta.unbox(boxed)))
    meta = {"compile_s": compile_s, "parameters": step_lib.count_params(boxed),
            "no_decay_parameters": sum(int(np.prod(x.shape)) for x, d in zip(jax.tree.leaves(nn.meta.unbox(boxed)),
                                                                             decayed) if not d),
            "lr_schedule": [float(schedule(i)) for i in range(schedule_steps)],
            "frozen_parameters": frozen_counts,
            "xla_dot_flops_per_step": flops.hlo_dot_flops(compiled), "xla_flags": os.environ.get("XLA_FLAGS", "")}
    if keep_hlo:
        meta["hlo_text"] = compiled.as_text()
    return step_fn, meta


def measure_jnp_peak(sizes=(2048, 4096), repeats: int = 3) -> dict[str, float]:
    """FLOP/s of square f32 `jnp` matmuls, the best of `repeats` per size: the MFU denominator."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    out = {}
    mm = jax.jit(jnp.matmul)
    for n in sizes:
        a = jnp.asarray(np.random.default_rng(0).random((n, n), np.float32))
        b = jnp.asarray(np.random.default_rng(1).random((n, n), np.float32))
        mm(a, b).block_until_ready()
        out[str(n)] = 2 * n**3 / min(_timed(lambda: mm(a, b).block_until_ready()) for _ in range(repeats))
    return out


# --------------------------------------------------------------------------------------------- reference


def hf_models(family: str, model_cfg, masked_lm: bool = False) -> dict:
    """The transformers model(s) of a family's architecture, random params, from the configs our exporter writes
    (no per-family code here): `{"model": its HF_ARCHITECTURE}` for a one-checkpoint family, `{view: the view's
    architecture}` for one exported as several checkpoints (`HF_VIEWS`: ELECTRA's discriminator and generator).
    With `masked_lm`: `{"model": its masked-LM class}` (`AutoModelForMaskedLM`: no pooler, for a frozen model of
    which only the MLM head is read)."""
    import transformers

    from llm_jax import models

    fam = models.family_module(family)
    views = getattr(fam, "HF_VIEWS", None)
    specs = ({view: (v.config_to_hf, v.architecture) for view, v in views.items()} if views
             else {"model": (fam.config_to_hf, fam.HF_ARCHITECTURE)})
    out = {}
    for name, (to_hf, architecture) in specs.items():
        hf_cfg = to_hf(model_cfg)
        config = transformers.AutoConfig.for_model(hf_cfg.pop("model_type"), **hf_cfg)
        out[name] = (transformers.AutoModelForMaskedLM.from_config(config) if masked_lm
                     else getattr(transformers, architecture)(config))
    return out


# How the heads of a transformers class apply to its trunk's outputs: `(mlm, pair)`, `mlm(model, h_BPD)` the MLM
# logits at the P gathered positions only (as ours and the original BERT compute them), `pair(model, pooled_BD)` the
# sentence-pair logits (NSP, SOP); None where the class has no pair head.
HF_HEADS = {
    "BertForPreTraining": (lambda m, h_BPD: m.cls.predictions(h_BPD), lambda m, p_BD: m.cls.seq_relationship(p_BD)),
    "BertForMaskedLM": (lambda m, h_BPD: m.cls.predictions(h_BPD), None),
    "RobertaForMaskedLM": (lambda m, h_BPD: m.lm_head(h_BPD), None),
    "AlbertForPreTraining": (lambda m, h_BPD: m.predictions(h_BPD), lambda m, p_BD: m.sop_classifier(p_BD)),
    "DistilBertForMaskedLM": (
        lambda m, h_BPD: m.vocab_projector(m.vocab_layer_norm(m.activation(m.vocab_transform(h_BPD)))), None),
    "ElectraForMaskedLM": (lambda m, h_BPD: m.generator_lm_head(m.generator_predictions(h_BPD)), None),
}


def _heads(model):
    name = type(model).__name__
    if name not in HF_HEADS:
        raise SystemExit(f"No reference heads for transformers {name}: add how its MLM (and pair) heads apply to "
                         "HF_HEADS in benchmarks/throughput.py.")
    return HF_HEADS[name]


def _trunk(model, t: dict, ids_key: str = "inputs", ids=None):
    """The trunk's output (`last_hidden_state`, `pooler_output` where it has one) on the batch's ids."""
    kwargs = {"token_type_ids": t["segment_ids"]} if "segment_ids" in t else {}
    return getattr(model, model.base_model_prefix)(input_ids=t[ids_key] if ids is None else ids,
                                                   attention_mask=t["mask"], **kwargs)


def _gather_BPD(hidden_BTD, positions_BP):
    import torch

    return torch.gather(hidden_BTD, 1, positions_BP[..., None].expand(-1, -1, hidden_BTD.shape[-1]))


def hf_forward(model, t: dict, pair: bool):
    """`(last hidden [B, T, D], MLM logits at the batch's P positions [B, P, V], pair logits [B, 2] or None)`."""
    mlm_head, pair_head = _heads(model)
    if pair and pair_head is None:
        raise SystemExit(f"transformers {type(model).__name__} has no sentence-pair head for this objective.")
    out = _trunk(model, t)
    hidden_BTD = out.last_hidden_state
    return (hidden_BTD, mlm_head(model, _gather_BPD(hidden_BTD, t["mlm_positions"])),
            pair_head(model, out.pooler_output) if pair else None)


def _weighted_ce(logits_BPV, ids_BP, weights_BP):
    """`weighted_cross_entropy` (llm_jax/objectives/base.py): Σ w·nll / max(Σ w, 1e-5)."""
    import torch

    nll_BP = torch.nn.functional.cross_entropy(logits_BPV.float().transpose(1, 2), ids_BP, reduction="none")
    return (nll_BP * weights_BP).sum() / weights_BP.sum().clamp_min(1e-5)


def _weighted_mlm_loss(logits_BPV, t: dict):
    return _weighted_ce(logits_BPV, t["mlm_ids"], t["mlm_weights"])


def reference_mlm_loss(objective, models: dict, frozen: dict, t: dict, state: dict):
    """`Mlm`'s loss (mlm, mlm_nsp, mlm_sop): the weighted MLM cross-entropy + the pair head's over the rows."""
    import torch

    del frozen, state
    pair = objective.pair_head
    _, logits_BPV, pair_B2 = hf_forward(models["model"], t, pair is not None)
    loss = _weighted_mlm_loss(logits_BPV, t)
    if pair:
        loss = loss + torch.nn.functional.cross_entropy(pair_B2, t[f"{pair}_label"])
    return loss


def reference_distill_loss(objective, models: dict, frozen: dict, t: dict, state: dict):
    """`Distill`'s loss: α_ce·T²·KL(teacher_T ‖ student_T) and α_mlm·MLM over the predicted positions,
    α_cos·(1 − cos) of the last hidden states over the non-padding tokens; the teacher forward only, without dropout
    or gradient (`llm_jax/objectives/distill.py`)."""
    import torch
    from torch.nn import functional as F

    del state
    c = objective.cfg
    with torch.no_grad():
        t_hidden_BTD, t_logits_BPV, _ = hf_forward(frozen["teacher"]["model"], t, False)
    s_hidden_BTD, s_logits_BPV, _ = hf_forward(models["model"], t, False)
    weights_BP, mask_BT = t["mlm_weights"], t["mask"].float()
    kl_BP = F.kl_div(F.log_softmax(s_logits_BPV / c.temperature, -1), F.log_softmax(t_logits_BPV / c.temperature, -1),
                     log_target=True, reduction="none").sum(-1)
    ce_loss = c.temperature ** 2 * (kl_BP * weights_BP).sum() / weights_BP.sum().clamp_min(1e-5)
    cos_BT = 1.0 - F.cosine_similarity(t_hidden_BTD, s_hidden_BTD, dim=-1, eps=1e-8)
    cos_loss = (cos_BT * mask_BT).sum() / mask_BT.sum().clamp_min(1e-5)
    return c.alpha_ce * ce_loss + c.alpha_mlm * _weighted_mlm_loss(s_logits_BPV, t) + c.alpha_cos * cos_loss


def tie_electra_pair(models: dict) -> dict:
    """ELECTRA's generator and discriminator sharing their whole embedding block (word, position, token type and its
    LayerNorm; §3.2), the generator's output layer tied to the shared word embeddings — one parameter set, as our
    joint module has."""
    gen, disc = models["generator"], models["discriminator"]
    gen.electra.embeddings = disc.electra.embeddings
    gen.generator_lm_head.weight = disc.electra.embeddings.word_embeddings.weight
    return models


def reference_rtd_loss(objective, models: dict, frozen: dict, t: dict, state: dict):
    """`Rtd`'s loss (llm_jax/objectives/rtd.py): the generator's MLM at the masked positions, a Gumbel-max sample
    from its softmax there (no gradient), the discriminator on the corrupted ids, its binary cross-entropy over the
    real tokens; `gen_weight`·MLM + `disc_weight`·disc."""
    import torch
    from torch.nn import functional as F

    del frozen, state
    c = objective.cfg
    gen, disc = models["generator"], models["discriminator"]
    positions_BP, ids_BP, weights_BP = t["mlm_positions"], t["mlm_ids"], t["mlm_weights"]
    gen_BPV = _heads(gen)[0](gen, _gather_BPD(_trunk(gen, t).last_hidden_state, positions_BP))
    mlm_loss = _weighted_mlm_loss(gen_BPV, t)
    with torch.no_grad():
        u_BPV = torch.rand_like(gen_BPV, dtype=torch.float32).clamp_(1e-20, 1.0)
        sampled_BP = torch.argmax(gen_BPV.float() / c.temperature - torch.log(-torch.log(u_BPV)), dim=-1)
        real_BP = weights_BP > 0
        originals_BT = t["inputs"].scatter(1, positions_BP, torch.where(real_BP, ids_BP, t["inputs"].gather(1, positions_BP)))
        corrupted_BT = originals_BT.scatter(1, positions_BP, torch.where(real_BP, sampled_BP, ids_BP))
        labels_BT = (corrupted_BT != originals_BT).float()
    logits_BT = disc.discriminator_predictions(_trunk(disc, t, ids=corrupted_BT).last_hidden_state)
    weights_BT = t["mask"].float()
    bce_BT = F.binary_cross_entropy_with_logits(logits_BT, labels_BT, reduction="none")
    disc_loss = (bce_BT * weights_BT).sum() / weights_BT.sum().clamp_min(1e-5)
    return c.gen_weight * mlm_loss + c.disc_weight * disc_loss


def reference_token_loss(targets: str, weights: str, decoder_inputs: str | None = None):
    """The twin of `token_loss_fn` (llm_jax/objectives/base.py): logits at every position of the model's output
    (a causal LM's, or an encoder-decoder's decoder under teacher forcing), weighted cross-entropy against
    `t[targets]`. Computed from the logits, not through HF's `labels=` (which would shift a causal LM's targets
    by one more position: ours come shifted in the batch)."""

    def loss(objective, models: dict, frozen: dict, t: dict, state: dict):
        del objective, frozen, state
        kwargs = {"decoder_input_ids": t[decoder_inputs]} if decoder_inputs else {}
        logits_BTV = models["model"](input_ids=t["inputs"], attention_mask=t["mask"], **kwargs).logits
        return _weighted_ce(logits_BTV, t[targets], t[weights])

    return loss


def reference_plm_loss(objective, models: dict, frozen: dict, t: dict, state: dict):
    """`Plm`'s loss (llm_jax/objectives/plm.py): `XLNetLMHeadModel` with the permutation mask, the target mapping
    (its logits are the query stream's at the P predicted positions), token types, the attention mask and the
    memory carried in `state` (`use_mems=True`; zeros of `mem_len` slots at the first step, as ours' carry starts;
    the new memory keeps this row's first `reuse_len` layer inputs, the last `mem_len` kept, detached); weighted
    cross-entropy against each predicted position's own token."""
    import torch

    del frozen
    model = models["model"]
    b, seq = t["inputs"].shape
    mem_len = objective.cfg.mem_len
    kwargs = {}
    if mem_len:
        trunk = getattr(model, model.base_model_prefix)
        # The memory lengths of this call (ours passes them to the model per call; HF reads its attributes).
        trunk.mem_len, trunk.reuse_len = mem_len, objective.cfg.lengths(seq)[0]
        if "mems" not in state:
            c = model.config
            state["mems"] = [torch.zeros(mem_len, b, c.d_model) for _ in range(c.n_layer)]  # HF: [M, B, D] per layer
        kwargs.update(mems=state["mems"], use_mems=True)
    out = model(input_ids=t["inputs"], token_type_ids=t["segment_ids"], attention_mask=t["mask"].float(),
                perm_mask=t["perm_mask"].float(), target_mapping=t["target_mapping"], **kwargs)
    if mem_len:
        state["mems"] = [m.detach() for m in out.mems]
    return _weighted_ce(out.logits, t["targets"], t["weights"])


def reference_segment_clm_loss(objective, models: dict, frozen: dict, t: dict, state: dict):
    """`SegmentClm`'s loss (llm_jax/objectives/segment_clm.py) with transformers 4.37.2's `TransfoXLLMHeadModel` as
    one trains it: the trunk on the segment with the memory carried in `state` (None at the first step, which 4.37.2
    starts from zeros as ours' carry does; its `_update_mems` keeps the last `mem_len` layer inputs, without
    gradient), then the adaptive softmax with labels (`crit`: each cluster's log-probabilities only for the tokens
    in that cluster; ours computes every cluster's at every position). `crit` scores position i against label
    i + 1 (it shifts, as `labels=` does), so the hidden states get a padding position at the end and the targets one
    in front; `keep_order` keeps the losses in position order for the weights."""
    import torch

    del objective, frozen
    model = models["model"]
    out = model.transformer(input_ids=t["inputs"], mems=state.get("mems"))
    state["mems"] = out.mems
    hidden_BTD = out.last_hidden_state
    b, _, d = hidden_BTD.shape
    hidden = torch.cat([hidden_BTD, hidden_BTD.new_zeros(b, 1, d)], 1)
    labels = torch.cat([t["targets"].new_zeros(b, 1), t["targets"]], 1)
    nll_BT = model.crit(hidden, labels, keep_order=True).view(b, -1)
    weights_BT = t["weights"]
    return (nll_BT * weights_BT).sum() / weights_BT.sum().clamp_min(1e-5)


@dataclasses.dataclass(frozen=True)
class Reference:
    """The PyTorch twin of one objective's training step.

    Attributes:
      loss: `loss(objective, models, frozen, t, state) -> scalar tensor`; `models` are the trainable transformers
        modules (`hf_models`), `frozen` the required models' (forward only), `t` the batch as tensors, `state` a dict
        kept across steps (for what an objective carries: Transformer-XL's memory, say).
      prepare: `prepare(models) -> models`, applied once after building (ties across checkpoints); None: as built.
    """

    loss: Callable
    prepare: Callable | None = None


# The reference step of each objective, by the name of the objective class whose `make_loss` it mirrors (or a base
# class of it: mlm_nsp and mlm_sop use `Mlm`'s, with their pair head). A new objective adds one entry.
REFERENCES = {
    "Mlm": Reference(reference_mlm_loss),
    "Distill": Reference(reference_distill_loss),
    "Rtd": Reference(reference_rtd_loss, prepare=tie_electra_pair),
    "Clm": Reference(reference_token_loss("targets", "weights")),
    "SpanCorruption": Reference(reference_token_loss("targets", "target_weights", decoder_inputs="decoder_inputs")),
    "Plm": Reference(reference_plm_loss),
    "SegmentClm": Reference(reference_segment_clm_loss),
}


def _owner(objective) -> type:
    """The class in the objective's MRO that defines `make_loss`, or a base of it with a `REFERENCES` entry."""
    for cls in type(objective).__mro__:
        if cls.__name__ in REFERENCES:
            return cls
    raise SystemExit(f"No PyTorch reference step for objective {objective.name!r} ({type(objective).__name__}) yet: "
                     f"add its class name to REFERENCES in benchmarks/throughput.py (known: {sorted(REFERENCES)}).")


def no_decay_parameters(modules) -> set[int]:
    """`id`s of the parameters AdamW does not decay, as `llm_jax.train.optim` decides for ours (biases and norm
    scales): biases by name — any parameter whose full name contains "bias", as Hugging Face's scripts decide
    (XLNet's `r_w_bias` / `r_r_bias` / `r_s_bias`, T5's `relative_attention_bias.weight`) — and norm scales by module
    class (`LayerNorm`, GPT-2's `ln_*`, T5's `T5LayerNorm`, any class with "Norm" in its name) so that no naming
    convention of a family is missed."""
    out = set()
    for module in modules:
        for prefix, sub in module.named_modules():
            norm = "norm" in type(sub).__name__.lower()
            for name, p in sub.named_parameters(recurse=False):
                if norm or "bias" in f"{prefix}.{name}":
                    out.add(id(p))
    return out


_OPTIM_FIELDS = ("name", "learning_rate", "b1", "b2", "eps", "weight_decay", "clip_norm", "layer_decay",
                 "grad_accum_steps")


def setup_reference(run, batch_np, seed: int = 0, lr_schedule: list[float] | None = None):
    """The transformers model(s), loss and AdamW step equivalent to ours: `(step_fn, meta)`.

    `step_fn(i)` runs optimizer step i (0-based) at learning rate `lr_schedule[i]` (ours' schedule at that step;
    the config's peak rate when no schedule is given) and returns the loss.
    """
    objective = make_objective_for(run)
    optim = _reference_optim(run)
    reference = REFERENCES[_owner(objective).__name__]
    models = hf_models(run.family, run.model)
    frozen = {}
    for name, (family, cfg) in frozen_configs_for(run).items():
        masked_lm = tuple(objective.frozen_heads.get(name, objective.heads)) == ("mlm",)
        frozen[name] = {k: m.eval().requires_grad_(False)  # forward only, no dropout
                        for k, m in hf_models(family, cfg, masked_lm=masked_lm).items()}
    return reference_step(models, frozen, reference, objective, optim, batch_np, seed, lr_schedule)


def _reference_optim(run) -> dict:
    o = run.optim
    if o.name != "adamw" or o.layer_decay != 1.0 or o.grad_accum_steps != 1:
        raise SystemExit(f"The PyTorch reference step is AdamW without layer-wise decay or accumulation; this config "
                         f"has optim.name={o.name!r}, layer_decay={o.layer_decay}, grad_accum_steps="
                         f"{o.grad_accum_steps}. Set them (e.g. configs/t5.py:size=mini,optim=adamw) or time ours "
                         "alone with --no-reference.")
    return {f: getattr(o, f) for f in _OPTIM_FIELDS}


def reference_step(models: dict, frozen: dict, reference: Reference, objective, optim: dict, batch_np, seed: int,
                   lr_schedule: list[float] | None):
    """`(step_fn, meta)` of the reference: AdamW (the decay mask of `no_decay_parameters`), global-norm clipping and
    `reference.loss` over `models` (trainable, dropout on) and `frozen` (forward only). Needs torch alone, no
    llm_jax, so that it also runs in an oracle environment of another transformers version (`setup_oracle`)."""
    import numpy as np
    import torch

    torch.set_num_threads(CORES)
    torch.manual_seed(seed)
    if reference.prepare is not None:
        models = reference.prepare(models)
    for m in models.values():
        m.train()  # dropout on, as in our train step
    # One list of unique parameters (modules that share one, ELECTRA's embeddings, list it once).
    params = list({id(p): p for m in models.values() for p in m.parameters()}.values())
    skip = no_decay_parameters(models.values())
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in params if id(p) not in skip], "weight_decay": optim["weight_decay"]},
         {"params": [p for p in params if id(p) in skip], "weight_decay": 0.0}],
        lr=optim["learning_rate"], betas=(optim["b1"], optim["b2"]), eps=optim["eps"],
        fused=True)  # the fused kernel: `Trainer`'s default optimizer (`adamw_torch_fused`) with torch ≥ 2.8
    t = {k: torch.from_numpy(np.asarray(v)) for k, v in batch_np.items()}
    t = {k: v.float() if v.is_floating_point() else v if v.dtype == torch.bool else v.long() for k, v in t.items()}
    state: dict = {}

    def step_fn(i: int = 0) -> float:
        lr = optim["learning_rate"] if lr_schedule is None else lr_schedule[min(i, len(lr_schedule) - 1)]
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        # The phases are named for `benchmarks/profile_step.py --reference` (a no-op unless a profiler runs).
        with torch.profiler.record_function("forward"):
            loss = reference.loss(objective, models, frozen, t, state)
        with torch.profiler.record_function("backward"):
            loss.backward()
        with torch.profiler.record_function("update"):
            if optim["clip_norm"] > 0:
                torch.nn.utils.clip_grad_norm_(params, optim["clip_norm"])
            optimizer.step()
        return loss.item()

    import transformers

    step_fn.models = models  # the transformers modules it trains (for tests)
    names = " + ".join(type(m).__name__ for m in models.values())
    first = next(iter(models.values()))
    described = (f"transformers {transformers.__version__} {names} (PyTorch eager, attn_implementation="
                 f"{getattr(first.config, '_attn_implementation', None) or 'eager'}, fused AdamW, "
                 f"{'the schedule of ours' if lr_schedule is not None else 'constant learning rate'})")
    if frozen:
        described += "; frozen " + ", ".join(f"{name} {' + '.join(type(m).__name__ for m in ms.values())} "
                                             "(no_grad, eval)" for name, ms in frozen.items())
    meta = {"reference": described, "parameters": sum(p.numel() for p in params),
            "no_decay_parameters": sum(p.numel() for p in params if id(p) in skip),
            "frozen_parameters": {name: sum(p.numel() for m in ms.values() for p in m.parameters())
                                  for name, ms in frozen.items()},
            "torch_threads": torch.get_num_threads()}
    return step_fn, meta


# ------------------------------------------------------------------------------------ oracle environments


def oracle_payload(run, batch: int, seq: int, lr_schedule: list[float]) -> dict:
    """What a reference step in an oracle environment needs, in plain Python (the oracle has neither jax nor
    llm_jax, and its numpy may be another major version): the HF config, architecture, objective (its
    `REFERENCES` name), optimizer, the synthetic batch as raw bytes, and ours' schedule. Only objectives whose
    reference loss does not read the objective's config can run there (SegmentClm)."""
    from llm_jax import models

    objective = make_objective_for(run)
    owner = _owner(objective).__name__
    if owner != "SegmentClm" or frozen_configs_for(run):
        raise SystemExit(f"An oracle environment runs the SegmentClm reference alone, not {owner}.")
    fam = models.family_module(run.family)
    hf_cfg = fam.config_to_hf(run.model)
    batch_np = synthetic_batch(run, batch, seq)
    return {"config": hf_cfg, "architecture": fam.HF_ARCHITECTURE, "objective": owner,
            "optim": _reference_optim(run), "lr_schedule": list(lr_schedule),
            "batch": {k: (str(v.dtype), list(v.shape), v.tobytes()) for k, v in batch_np.items()}}


def _own_site_packages() -> None:
    """In a worker started with another interpreter: import from its own environment, not from the parent's
    (a spawned process inherits the parent's `sys.path`)."""
    import site

    sys.path[:] = [p for p in sys.path if "-packages" not in p] + site.getsitepackages()


def setup_oracle(payload: dict):
    """`reference_step` from `oracle_payload`, in the oracle environment (transformers of another version)."""
    import numpy as np
    import transformers

    cfg = dict(payload["config"])
    config = transformers.AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    models = {"model": getattr(transformers, payload["architecture"])(config)}
    batch_np = {k: np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
                for k, (dtype, shape, raw) in payload["batch"].items()}
    return reference_step(models, {}, REFERENCES[payload["objective"]], None, payload["optim"], batch_np, 0,
                          payload["lr_schedule"])


def measure_torch_peak(n: int = 4096, repeats: int = 3) -> float:
    import torch

    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    return 2 * n**3 / min(_timed(lambda: a @ b) for _ in range(repeats))


# ------------------------------------------------------------------------------------------------ workers


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _worker(kind: str, spec: str, overrides: list[str], batch: int, seq: int, options, schedule, conn) -> None:
    """One framework in its own process: set up, then run commands (`("step", i)`, `("peak", 0)`, `"stop"`) from
    the parent.

    `options`: XLA compiler options for ours; the OpenMP wait policy for the reference.
    `schedule`: for ours, how many steps' learning rates to report (`meta["lr_schedule"]`); for the reference,
    that list (it follows ours' schedule).
    `kind` "oracle": the reference in an oracle environment (another interpreter); `spec` is its `oracle_payload`.
    """
    try:
        if kind != "ours" and options:
            # Read by torch's OpenMP runtime when it loads (below, in setup_reference), hence set here.
            os.environ["OMP_WAIT_POLICY"] = options
        if kind == "oracle":
            _own_site_packages()
            step_fn, meta = setup_oracle(spec)
        else:
            run = load_run_config(spec, overrides)
            batch_np = synthetic_batch(run, batch, seq)
            if kind == "ours":
                step_fn, meta = setup_ours(run, batch_np, compiler_options=options, schedule_steps=schedule)
            else:
                step_fn, meta = setup_reference(run, batch_np, lr_schedule=schedule)
        if kind != "ours":
            meta["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY", "")
        conn.send(("ready", meta))
        while True:
            cmd = conn.recv()
            if not isinstance(cmd, tuple):
                break
            what, i = cmd
            if what == "step":
                c0, t0 = os.times(), time.perf_counter()
                loss = step_fn(i)
                dt, c1 = time.perf_counter() - t0, os.times()
                conn.send(("ok", (dt, (c1.user + c1.system) - (c0.user + c0.system), loss)))
            elif what == "peak":
                conn.send(("ok", measure_jnp_peak() if kind == "ours" else measure_torch_peak()))
    except EOFError:  # the parent went away
        return
    except Exception:  # noqa: BLE001 - the parent prints it and stops
        conn.send(("error", traceback.format_exc()))


class Worker:
    """The parent's handle on a worker process."""

    def __init__(self, ctx, kind: str, *args, executable: str | None = None):
        self.kind = kind
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker, args=(kind, *args, child), daemon=True)
        if executable:  # an oracle environment's interpreter, for this worker only
            ctx.set_executable(executable)
        try:
            self.process.start()
        finally:
            if executable:
                ctx.set_executable(sys.executable)
        child.close()  # the worker holds its end; without the parent's copy it sees EOF if the parent dies
        self._meta = None

    @property
    def meta(self) -> dict:
        """What the worker reports once set up; the first access waits for it (workers set up side by side)."""
        if self._meta is None:
            self._meta = self._reply()
        return self._meta

    def _reply(self):
        status, payload = self.conn.recv()
        if status == "error":
            self.close()
            raise SystemExit(f"{self.kind} worker failed:\n{payload}")
        return payload

    def call(self, cmd: tuple):
        self.conn.send(cmd)
        return self._reply()

    def close(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(BrokenPipeError, OSError):  # the worker already exited
                self.conn.send("stop")
            self.process.join(timeout=30)
            if self.process.is_alive():  # still busy (setting up) when its partner failed
                self.process.terminate()
                self.process.join(timeout=10)


# ------------------------------------------------------------------------------------------- machine load


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat (None off Linux)."""
    try:
        fields = [int(x) for x in pathlib.Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def _process_jiffies(pids) -> int:
    total = 0
    for pid in pids:
        try:
            stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


class ForeignLoad:
    """Share of the machine's CPU time used by processes other than ours between `start()` and `stop()`.

    On a shared machine another job can take a core in the middle of a step; torch's OpenMP team waits for its
    slowest thread at every parallel region and slows several-fold, XLA's work-stealing pool much less. A
    ratio measured under foreign load is not a ratio of the two frameworks, so every row records this share.
    """

    def __init__(self, pids):
        self.pids = list(pids)
        self.start()

    def start(self) -> None:
        self._cpu, self._ours = _cpu_jiffies(), _process_jiffies(self.pids)

    def stop(self) -> float | None:
        cpu, ours = _cpu_jiffies(), _process_jiffies(self.pids)
        if cpu is None or self._cpu is None or cpu[1] == self._cpu[1]:
            return None
        foreign = (cpu[0] - self._cpu[0]) - (ours - self._ours)
        return max(foreign, 0) / (cpu[1] - self._cpu[1])


def wait_for_quiet(max_wait_s: float, threshold: float = 0.1, window_s: float = 3.0) -> float | None:
    """Waits (up to `max_wait_s`) until other processes use < `threshold` of the CPUs over a window."""
    deadline = time.time() + max_wait_s
    share = None
    while True:
        probe = ForeignLoad([os.getpid()])
        time.sleep(window_s)
        share = probe.stop()
        if share is None or share < threshold or time.time() >= deadline:
            return share
        print(f"   waiting for a quiet machine: other processes use {share:.0%} of the CPUs…", flush=True)


# ---------------------------------------------------------------------------------------------- reporting

MIN_TRIALS = 5  # fewer trials than this give no verdict


def verdict(ratios: list[float], min_trials: int = MIN_TRIALS) -> str:
    """What a row's per-trial ratios (reference time / ours) allow one to say.

    `faster` when every trial's ratio is above 1, `slower` when every one is below: the spread (min–max) is narrower
    than the effect (the distance of the median from 1). Otherwise — or with fewer than `min_trials` trials —
    `inconclusive`: the run does not show which is faster.
    """
    if len(ratios) < min_trials:
        return "inconclusive"
    if min(ratios) > 1.0:
        return "faster"
    if max(ratios) < 1.0:
        return "slower"
    return "inconclusive"


def ratio_summary(ratios: list[float]) -> dict:
    """Median, min, max and interquartile range of the per-trial ratios, with `verdict`."""
    qs = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else [ratios[0]] * 3
    return {"ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "ratio_iqr": [qs[0], qs[2]], "ratio_trials": [round(r, 4) for r in ratios], "verdict": verdict(ratios)}


def split_trials(trials: int, rounds: int) -> list[int]:
    """How many of a row's `trials` each of `rounds` rounds runs: as even as possible, earlier rounds one more.

    Raises:
      SystemExit: rounds < 1 or more rounds than trials (a round runs ≥ 1 trial of each row).
    """
    if not 1 <= rounds <= trials:
        raise SystemExit(f"--rounds {rounds} with --trials {trials}: give 1 ≤ rounds ≤ trials (each round runs at "
                         "least one trial of every row).")
    return [trials // rounds + (r < trials % rounds) for r in range(rounds)]


def learning_rates(run, n: int) -> list[float]:
    """Ours' learning rate at optimizer steps 0 … n − 1 (`make_optimizer`'s schedule): the reference follows it."""
    from llm_jax.train.optim import make_optimizer

    _, schedule = make_optimizer(run.optim, run.train.steps)
    return [float(schedule(i)) for i in range(n)]


@contextlib.contextmanager
def shared_compilation_cache(enabled: bool):
    """With several rounds, a row's workers of later rounds load ours' compiled step (and its parameter init) from
    JAX's persistent compilation cache, a temporary directory for this run (or JAX_COMPILATION_CACHE_DIR when set):
    a round costs its set-up, not a second compile. The executable is the same; `compile_s` is the first round's."""
    if not enabled:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="llm_jax_throughput_") as cache_dir:
        wanted = {"JAX_COMPILATION_CACHE_DIR": cache_dir, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
        added = {k: v for k, v in wanted.items() if k not in os.environ}
        os.environ.update(added)  # spawned workers inherit it
        try:
            yield
        finally:
            for name in added:
                os.environ.pop(name, None)


@dataclasses.dataclass
class Session:
    """One round of one row: a fresh pair of workers, their warm-up steps and this round's trials.

    Attributes:
      ours_meta, ref_meta: what each worker reported when set up (`setup_ours`, `reference_step`); ref None
        without a reference.
      times: `{"ours" | "ref": [[step seconds, …] per trial]}`, the warm-up steps not included.
      warmup_times: `{"ours" | "ref": [seconds of each warm-up step]}`.
      cpu_times: `{"ours" | "ref": [CPU seconds of each timed step]}`.
      losses: `{"ours" | "ref": [loss of every step, warm-up included]}`.
      foreign: other processes' share of the CPU time in each trial (`ForeignLoad`), None off Linux.
      peak_detail: the f32 matmul peaks (FLOP/s) measured in this session, empty when it measured none.
      loadavg_before, loadavg_after: `os.getloadavg()` when the workers were started and when they stopped.
      setup_s: seconds from starting the workers until both were set up (ours compiled or loaded its step).
    """

    ours_meta: dict
    ref_meta: dict | None
    times: dict
    warmup_times: dict
    cpu_times: dict
    losses: dict
    foreign: list
    peak_detail: dict
    loadavg_before: tuple
    loadavg_after: tuple
    setup_s: float


def run_session(ctx, spec: str, overrides: list[str], run, batch: int, seq: int, steps: int, warmup: int,
                trials: int, reference: bool, settle_s: float, compiler_options, quiet_wait_s: float,
                omp_wait_policy: str, oracle_python: str | None, measure_peak: bool, label: str = "") -> Session:
    """Starts both workers (they set up side by side: nothing is timed yet), runs `warmup` untimed steps of each,
    then `trials` trials of `steps` steps, alternating ABBA; `measure_peak`: the matmul peaks before the warm-up
    and after the trials."""
    total = warmup + trials * steps
    print(f"\n== {spec} {' '.join(overrides)} batch={batch} seq={seq}{label}: starting workers…", flush=True)
    loadavg_before = os.getloadavg()
    lr_schedule = learning_rates(run, total)
    t0 = time.perf_counter()
    ours = Worker(ctx, "ours", spec, overrides, batch, seq, compiler_options, total)
    ref = None
    try:
        if reference and oracle_python:  # the reference in an environment of its own (another transformers version)
            ref = Worker(ctx, "oracle", oracle_payload(run, batch, seq, lr_schedule), None, batch, seq,
                         omp_wait_policy, None, executable=oracle_python)
        elif reference:
            ref = Worker(ctx, "reference", spec, overrides, batch, seq, omp_wait_policy, lr_schedule)
        pair = [("ours", ours)] + ([("ref", ref)] if ref else [])
        metas = {name: worker.meta for name, worker in pair}  # waits until both are set up
        setup_s = time.perf_counter() - t0
        peak_detail = {"jnp_matmul_f32_before": ours.call(("peak", 0))} if measure_peak else {}
        times: dict[str, list[list[float]]] = {"ours": [], "ref": []}
        cpu_times: dict[str, list[float]] = {"ours": [], "ref": []}
        losses: dict[str, list[float]] = {"ours": [], "ref": []}
        foreign: list[float | None] = []
        pids = [os.getpid(), ours.process.pid] + ([ref.process.pid] if ref else [])
        i = 0
        for trial in range(-1, trials):  # trial -1: the warm-up steps
            n = warmup if trial < 0 else steps
            if trial == 0 and quiet_wait_s > 0:
                wait_for_quiet(quiet_wait_s)
            load = ForeignLoad(pids)
            for name in times:
                times[name].append([])
            for _ in range(n):
                for name, worker in (pair if i % 2 == 0 else pair[::-1]):
                    time.sleep(settle_s)  # let the other process's pool threads stop spinning
                    dt, cpu, loss = worker.call(("step", i))
                    losses[name].append(loss)
                    times[name][-1].append(dt)
                    if trial >= 0:
                        cpu_times[name].append(cpu)
                i += 1
            if trial >= 0:
                foreign.append(load.stop())
                msg = f"   trial {trial + 1}/{trials}: ours {statistics.median(times['ours'][-1]):.3f} s"
                if ref:
                    msg += (f", reference {statistics.median(times['ref'][-1]):.3f} s, ratio "
                            f"{statistics.median(times['ref'][-1]) / statistics.median(times['ours'][-1]):.2f}×")
                print(msg + f", other load {_fmt(foreign[-1], '.0%')}", flush=True)
        if measure_peak:
            peak_detail["jnp_matmul_f32_after"] = ours.call(("peak", 0))
            if ref:
                peak_detail["torch_matmul_f32_4096"] = ref.call(("peak", 0))
    finally:
        ours.close()
        if ref:
            ref.close()
    return Session(metas["ours"], metas.get("ref"), {k: v[1:] for k, v in times.items()},
                   {k: v[0] for k, v in times.items()}, cpu_times, losses,
                   foreign, peak_detail, loadavg_before, os.getloadavg(), setup_s)


def _steps_by_round(sessions: list[Session], name: str) -> list[list[float]]:
    """Every step time of worker `name` ("ours" / "ref") per round, warm-up first (s, 4 decimals)."""
    return [[round(x, 4) for steps in [s.warmup_times[name], *s.times[name]] for x in steps] for s in sessions]


def row_from_sessions(spec: str, overrides: list[str], run, batch: int, seq: int, steps: int, warmup: int,
                      sessions: list[Session], compiler_options, worker_env: dict) -> dict:
    """One row from its rounds' sessions: every trial of every round pooled (a trial's ratio is the reference's
    median step time over ours'), the ratio's median, spread and verdict, FLOPs and MFU against the first
    round's matmul peak."""
    from llm_jax import flops

    first = sessions[0]
    ours_meta, ref_meta = first.ours_meta, first.ref_meta
    peak_detail = next(s.peak_detail for s in sessions if s.peak_detail)
    peak = max(max(v.values()) for k, v in peak_detail.items() if k.startswith("jnp"))
    ours_trials = [statistics.median(t) for s in sessions for t in s.times["ours"]]
    trial_rounds = [r + 1 for r, s in enumerate(sessions) for _ in s.times["ours"]]
    foreign = [x for s in sessions for x in s.foreign]
    cpu_times = {name: [x for s in sessions for x in s.cpu_times[name]] for name in ("ours", "ref")}
    trials = len(ours_trials)

    frozen_configs = frozen_configs_for(run, spec)
    towers = flops.towers_for(run.family, run.model, run.objective, seq, frozen_configs=frozen_configs)
    # The synthetic batch's targets are uniform over the vocabulary: an adaptive softmax's tail clusters are
    # scored at their share of the positions (ours and the reference alike).
    towers = tuple(map(flops.uniform_target_shares, towers))
    train = flops.train_flops(towers, batch, num_params=ours_meta["parameters"])
    per_token = flops.model_flops_per_token(towers)
    tokens = batch * seq
    ours_s = statistics.median(ours_trials)
    shares = [s for s in foreign if s is not None]
    row = {
        "config": spec, "overrides": list(overrides), "family": run.family, "batch": batch, "seq": seq,
        "model": {f.name: getattr(run.model, f.name) for f in dataclasses.fields(run.model)},
        "objective": run.objective.name, "predicted_positions": make_objective_for(run).predicted_positions(seq),
        "parameters": ours_meta["parameters"], "no_decay_parameters": ours_meta["no_decay_parameters"],
        "trials": trials, "rounds": len(sessions), "trial_rounds": trial_rounds, "steps_per_trial": steps,
        "warmup": warmup,
        "frozen": {name: {"preset": getattr(run.objective, name), "family": family,
                          "parameters": ours_meta["frozen_parameters"][name]}
                   for name, (family, _) in frozen_configs.items()},
        "compile_s": round(ours_meta["compile_s"], 1),
        "setup_s_rounds": [round(s.setup_s, 1) for s in sessions],
        "ours_step_s": ours_s, "ours_step_s_trials": [round(x, 4) for x in ours_trials],
        # Every step of every round, warm-up first: whether a round's steps had settled.
        "ours_steps_s_rounds": _steps_by_round(sessions, "ours"),
        "ours_tokens_per_s": tokens / ours_s, "ours_cpu_s": statistics.median(cpu_times["ours"]),
        "flops_per_step": train.total, "matmul_flops_per_step": train.matmul,
        "xla_dot_flops_per_step": ours_meta["xla_dot_flops_per_step"],
        "model_flops_per_token": per_token, "ours_flops_per_s": train.total / ours_s,
        "mfu": flops.mfu(tokens / ours_s, per_token, peak), "peak_flops": peak, "peak_detail": peak_detail,
        "learning_rate_first_last": [ours_meta["lr_schedule"][0], ours_meta["lr_schedule"][-1]],
        "ours_loss_first_last": [first.losses["ours"][0], first.losses["ours"][-1]],
        "xla_flags": ours_meta["xla_flags"], "compiler_options": compiler_options or {}, "worker_env": worker_env,
        "foreign_cpu_share": statistics.median(shares) if shares else None,
        "foreign_cpu_share_trials": [None if s is None else round(s, 3) for s in foreign],
        "loadavg_before": [round(x, 2) for x in first.loadavg_before],
        "loadavg_after": [round(x, 2) for x in sessions[-1].loadavg_after],
        "nice": os.nice(0),
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if ref_meta:
        if ref_meta["parameters"] != row["parameters"]:
            raise SystemExit(f"The reference has {ref_meta['parameters']:,} parameters, ours {row['parameters']:,}: "
                             "the architectures differ.")
        if ref_meta["no_decay_parameters"] != row["no_decay_parameters"]:
            raise SystemExit(f"The reference exempts {ref_meta['no_decay_parameters']:,} parameters from weight decay, "
                             f"ours {row['no_decay_parameters']:,}: fix no_decay_parameters so both exempt the same "
                             "biases and norm scales.")
        for name, count in ref_meta["frozen_parameters"].items():
            row["frozen"][name]["reference_parameters"] = count
        ref_trials = [statistics.median(t) for s in sessions for t in s.times["ref"]]
        ref_s = statistics.median(ref_trials)
        row.update(reference=ref_meta["reference"], torch_threads=ref_meta["torch_threads"],
                   omp_wait_policy=ref_meta["omp_wait_policy"],
                   reference_step_s=ref_s, reference_step_s_trials=[round(x, 4) for x in ref_trials],
                   reference_steps_s_rounds=_steps_by_round(sessions, "ref"),
                   reference_tokens_per_s=tokens / ref_s,
                   **ratio_summary([r / o for r, o in zip(ref_trials, ours_trials)]),
                   reference_cpu_s=statistics.median(cpu_times["ref"]),
                   cpu_ratio=statistics.median(cpu_times["ref"]) / statistics.median(cpu_times["ours"]),
                   reference_mfu=flops.mfu(tokens / ref_s, per_token, peak),
                   reference_loss_first_last=[first.losses["ref"][0], first.losses["ref"][-1]])
    else:
        row.update(reference=None, reference_step_s=None, reference_tokens_per_s=None, ratio=None, reference_mfu=None,
                   verdict=None)
    msg = f"   {spec}: ours {row['ours_tokens_per_s']:.0f} tok/s ({ours_s:.3f} s/step, MFU {row['mfu']:.1%})"
    if ref_meta:
        msg += f" | reference {row['reference_tokens_per_s']:.0f} tok/s ({row['reference_step_s']:.3f} s/step)"
        msg += (f" | ratio {row['ratio']:.2f}× (min–max {row['ratio_min']:.2f}–{row['ratio_max']:.2f}, "
                f"{trials} trials in {len(sessions)} round(s)): {row['verdict']}")
    print(msg + f" | peak {peak / 1e9:.1f} GFLOP/s | other load {_fmt(row['foreign_cpu_share'], '.0%')}, "
          f"load average {row['loadavg_before'][0]:.2f} → {row['loadavg_after'][0]:.2f}", flush=True)
    return row


def bench_rows(ctx, specs: list[tuple], overrides: list[str], batch: int, seq: int, steps: int, warmup: int,
               trials: int, rounds: int, settle_s: float, compiler_options, quiet_wait_s: float, worker_env: dict,
               omp_wait_policy: str) -> list[dict]:
    """Every row of `specs` (`(config, with reference, oracle python or None)`), its `trials` spread over `rounds`
    rounds (`split_trials`). A round runs each row once in turn, with a fresh pair of workers: a row's trials then
    span the whole run, so its spread holds what changes over an hour on the machine and from one worker start to
    the next (memory layout, huge pages), which trials minutes apart in one pair of processes do not see."""
    runs = [load_run_config(spec, overrides) for spec, _, _ in specs]
    per_round = split_trials(trials, rounds)
    sessions: list[list[Session]] = [[] for _ in specs]
    with shared_compilation_cache(rounds > 1):
        for r, n in enumerate(per_round):
            label = f", round {r + 1}/{rounds}" if rounds > 1 else ""
            for (spec, reference, oracle), run, done in zip(specs, runs, sessions):
                done.append(run_session(ctx, spec, overrides, run, batch, seq, steps, warmup, n, reference, settle_s,
                                        compiler_options, quiet_wait_s, omp_wait_policy, oracle or None,
                                        measure_peak=r == 0, label=label))
    return [row_from_sessions(spec, overrides, run, batch, seq, steps, warmup, done, compiler_options, worker_env)
            for (spec, _, _), run, done in zip(specs, runs, sessions)]


def _key(row: dict) -> tuple:
    return row["config"], tuple(row.get("overrides", [])), row["batch"], row["seq"]


def machine_name(row: dict) -> str:
    """The machine a row was measured on, as the results file groups rows: CPU model, core count and, where the
    row recorded them, the CPU's vector extensions (`machine_info`'s `cpu_isa`: a VM's model name is often
    generic). Rows recorded before `cpu_isa` existed keep the name without it."""
    m = row.get("machine") or {}
    isa = f" ({' '.join(m['cpu_isa'])})" if m.get("cpu_isa") else ""
    return f"{m.get('cpu', 'unknown CPU')}, {m.get('cores', '?')} cores{isa}"


def _run_key(row: dict) -> tuple:
    """A row of the results file: the row's `_key` on its machine. A run on another CPU is a measurement of its
    own, kept beside the others; only a run on the same machine replaces a row (and is its rerun)."""
    return (*_key(row), machine_name(row))


_RUN_SUMMARY = ("measured_at", "ratio", "ratio_min", "ratio_max", "ratio_iqr", "ratio_trials", "rounds", "verdict",
                "foreign_cpu_share",
                "ours_step_s", "reference_step_s")


def reruns_agree(new: dict, old: dict) -> bool | None:
    """Whether two runs of one row agree within their spreads, strictly: each run's median ratio lies inside the
    other's min–max over its trials. None when either run has no ratio (a row without a reference).

    Strict at 5 trials: were both runs 5 independent draws of one distribution, this holds only ~71 % of the time
    (~87 % at 7 trials, ~94 % at 9; simulated, `benchmarks/NOTES.md`), so it is reported beside `rerun_p`."""
    if new.get("ratio") is None or old.get("ratio") is None:
        return None
    return (old["ratio_min"] <= new["ratio"] <= old["ratio_max"]) and (new["ratio_min"] <= old["ratio"] <= new["ratio_max"])


RERUN_ALPHA = 0.05  # two runs whose trial ratios a rank test separates at this level do not agree


def rerun_p(new: dict, old: dict) -> float | None:
    """The exact two-sided Mann–Whitney U test's p-value of two runs' trial ratios (scipy): how likely trials as
    far apart in rank as these are if both runs drew from one distribution. Below `RERUN_ALPHA` the runs differ
    by more than their spreads explain. None without both runs' trial ratios, or with too few trials for any
    ordering to reach `RERUN_ALPHA` (the smallest exact p is 2 / C(n + m, n): 0.1 at 3 + 3 trials)."""
    a, b = new.get("ratio_trials"), old.get("ratio_trials")
    if not a or not b or new.get("ratio") is None or old.get("ratio") is None:
        return None
    if 2 / math.comb(len(a) + len(b), len(a)) >= RERUN_ALPHA:
        return None
    # scipy: the test extra, which the reference side needs anyway.
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(a, b, alternative="two-sided", method="exact").pvalue)


def with_previous_run(new: dict, old: dict | None) -> dict:
    """`new` with the summary of the run it replaces (`previous_run`: its date, commit, ratio, spread, trials,
    verdict), `reruns_agree` (the strict rule) and `rerun_p` (the rank test); a run replaced twice keeps only the
    latest predecessor."""
    if old is None or "trials" not in old:
        return new
    previous = {k: old.get(k) for k in _RUN_SUMMARY}
    previous["commit"] = old.get("machine", {}).get("commit")
    return dict(new, previous_run=previous, reruns_agree=reruns_agree(new, old), rerun_p=rerun_p(new, old))


def write_results(rows: list[dict], info: dict, out_dir: pathlib.Path) -> None:
    """Merges `rows`, measured on the machine `info` describes, into `out_dir/throughput.{json,md}` by (config,
    overrides, batch, seq, machine: `_run_key`); a row that replaces an earlier run of itself on the same machine
    keeps that run's summary for the reproducibility table. Rows of other machines are kept as they are."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{NAME}.json"
    merged: dict[tuple, dict] = {}
    if path.exists():
        for row in json.loads(path.read_text()).get("rows", []):
            if "trials" in row:  # rows of single-run measurements (before trials) are superseded, not kept
                merged[_run_key(row)] = row
    for row in rows:
        row = dict(row, machine=info)
        merged[_run_key(row)] = with_previous_run(row, merged.get(_run_key(row)))
    ordered = sorted(merged.values(), key=lambda r: (r["config"], r["batch"], r["seq"], r.get("overrides", []),
                                                     machine_name(r)))
    path.write_text(json.dumps({"benchmark": NAME, "rows": ordered}, indent=1) + "\n")
    (out_dir / f"{NAME}.md").write_text(markdown(ordered))
    print(f"\nwrote {path} and {out_dir / f'{NAME}.md'}")


def _fmt(value, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def _frozen_text(row: dict) -> str:
    """The frozen models of a row (a teacher), as the `Runs:` list describes them."""
    out = ""
    for name, f in row.get("frozen", {}).items():
        reference = f"; the reference's {f['reference_parameters']:,}" if "reference_parameters" in f else ""
        out += f"frozen {name} {f['preset']} (random params, forward only; {f['parameters']:,} parameters{reference}); "
    return out


def _row_name(row: dict) -> str:
    """The `ROWS` entry a row's config is, or the config itself."""
    for name, sizes in ROWS.items():
        for size in ("mini", "base"):
            if sizes[size] == row["config"]:
                return f"{name} ({size})"
    return f"`{row['config']}`"


def _machine_tables(rows: list[dict]) -> list[str]:
    """Markdown lines for the rows of one machine: the results table, the reproducibility table, the runs."""
    lines = [
        "| row | batch×seq | trials / rounds | ours s/step | reference s/step | ratio (median) | min–max | IQR | verdict |"
        " CPU-time ratio | MFU ours | MFU ref | other load | load avg | loss first→last ours / ref |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        iqr = r.get("ratio_iqr")
        loss = f"{r['ours_loss_first_last'][0]:.2f}→{r['ours_loss_first_last'][1]:.2f}"
        if r.get("reference_loss_first_last"):
            loss += f" / {r['reference_loss_first_last'][0]:.2f}→{r['reference_loss_first_last'][1]:.2f}"
        overrides = f" {' '.join(r['overrides'])}" if r.get("overrides") else ""
        spread = "—" if r.get("ratio_min") is None else f"{r['ratio_min']:.2f}–{r['ratio_max']:.2f}"
        lines.append(
            f"| {_row_name(r)}{overrides} | {r['batch']}×{r['seq']} | {r['trials']} / {r.get('rounds', 1)} | "
            f"{r['ours_step_s']:.3f} | "
            f"{_fmt(r.get('reference_step_s'), '.3f')} | {_fmt(r.get('ratio'), '.2f', '×')} | "
            f"{spread} | {'—' if not iqr else f'{iqr[0]:.2f}–{iqr[1]:.2f}'} | {r.get('verdict') or '—'} | "
            f"{_fmt(r.get('cpu_ratio'), '.2f', '×')} | {r['mfu']:.1%} | {_fmt(r.get('reference_mfu'), '.1%')} | "
            f"{_fmt(r.get('foreign_cpu_share'), '.0%')} | {r['loadavg_before'][0]:.2f}→{r['loadavg_after'][0]:.2f} | "
            f"{loss} |")
    reruns = [r for r in rows if r.get("previous_run") and r.get("ratio") is not None]
    if reruns:
        lines += ["", "Reproducibility: each row's run above against the run of the same row before it, two ways. "
                  "Strict: each median lies inside the other's min–max (with 5 trials a run this fails ~29 % of the "
                  "time even when both runs draw from one distribution). Rank test: the exact two-sided "
                  "Mann–Whitney U p-value of the two runs' trial ratios; the runs **agree** unless p < "
                  f"{RERUN_ALPHA} (they differ by more than their spreads explain). The verdicts are each run's own.",
                  "",
                  "| row | this run: median (min–max), trials / rounds | previous run | strict | rank test p | agree "
                  "| verdicts (this / previous) | previous run at |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in reruns:
            p = r["previous_run"]
            if p.get("ratio") is None:
                continue
            pvalue = r.get("rerun_p")
            agree = "—" if pvalue is None else ("yes" if pvalue >= RERUN_ALPHA else "**no**")
            lines.append(f"| {_row_name(r)} | {r['ratio']:.2f}× ({r['ratio_min']:.2f}–{r['ratio_max']:.2f}), "
                         f"{r['trials']} / {r.get('rounds', 1)} | {p['ratio']:.2f}× ({p['ratio_min']:.2f}–"
                         f"{p['ratio_max']:.2f}), {len(p.get('ratio_trials') or []) or '—'} / {p.get('rounds') or 1} | "
                         f"{'yes' if r['reruns_agree'] else 'no'} | {_fmt(pvalue, '.3f')} | {agree} | "
                         f"{r['verdict']} / {p['verdict']} | {p['measured_at']}, commit {p['commit']} |")
    return lines + _runs_list(rows)


def markdown(rows: list[dict]) -> str:
    lines = [
        "# Training throughput: llm_jax vs Hugging Face transformers (PyTorch eager), CPU",
        "",
        "One full training step (forward + backward + clipping + AdamW, the same learning-rate schedule) of each",
        "family's pretraining objective on the same synthetic batch; the two frameworks run in separate worker",
        "processes. Each row is ≥ 5 **trials**; a trial runs a few steps of each, alternating ABBA, and its ratio is",
        "the reference's median step time over ours (> 1: ours is faster). The row gives the median of the trial",
        "ratios, their min–max and interquartile range, and a **verdict**: `faster` / `slower` only when every",
        "trial agrees (the spread is narrower than the effect), `inconclusive` otherwise. `trials / rounds`: a row",
        "run with `--rounds R` spreads its trials over R rounds of the whole run, each round a fresh pair of workers",
        "(the rows take turns), so its spread includes the drift over the run and from one worker start to the next.",
        "MFU = tokens/s × PaLM model FLOPs per token (`llm_jax/flops.py`) / the f32 matmul peak measured with `jnp`",
        "in the same run. Written by `benchmarks/throughput.py`; what was tried: `benchmarks/NOTES.md`.",
        "",
        "Read every row with the machine's other load: `other load` is the share of the machine's CPU time that",
        "other processes took during the timed trials (median over trials), `load avg` the 1-minute load average",
        "before → after the row. Under load both frameworks slow down, by different factors.",
        "Single-run rows measured before the trials existed are not kept: a second run did not reproduce them.",
        "Rows are grouped by the machine they ran on (CPU model, cores): a run on another CPU is kept beside "
        "the others and never judged as their rerun.",
    ]
    latest = {}
    for r in rows:
        latest[machine_name(r)] = max(latest.get(machine_name(r), ""), r["measured_at"])
    for machine in sorted(latest, key=latest.get, reverse=True):  # the newest measurements first
        lines += ["", f"## {machine}", "", *_machine_tables([r for r in rows if machine_name(r) == machine])]
    lines.append("")
    return "\n".join(lines)


def _runs_list(rows: list[dict]) -> list[str]:
    """Markdown lines: how each row was run (machine, versions, settings, every trial ratio)."""
    lines = ["", "Runs:", ""]
    for r in rows:
        m = r.get("machine") or {}
        v = collections.defaultdict(lambda: "—", m.get("versions") or {})
        lines.append(
            f"- {_row_name(r)}: `{r['config']}` {' '.join(r.get('overrides', []))} — {r['measured_at']}, commit "
            f"{m.get('commit') or '—'}; {machine_name(r)}; jax {v['jax']}, jaxlib {v['jaxlib']}, flax {v['flax']}, "
            f"torch {v['torch']}, transformers {v['transformers']}; XLA_FLAGS=`{r['xla_flags']}`, "
            f"XLA options {r.get('compiler_options') or '—'}, worker environment {r.get('worker_env') or '—'}, "
            f"torch threads {r.get('torch_threads', '—')}, OMP_WAIT_POLICY={r.get('omp_wait_policy') or 'default'}; "
            f"reference: {r.get('reference') or '—'}; objective {r['objective']} "
            f"({r['predicted_positions']} predicted positions per row), {r['parameters']:,} parameters "
            f"({r['no_decay_parameters']:,} without weight decay, both sides); {_frozen_text(r)}"
            f"{r['trials']} trials × {r['steps_per_trial']} steps in {r.get('rounds', 1)} round(s), each after "
            f"{r['warmup']} warm-up; learning rate "
            f"{r['learning_rate_first_last'][0]:.3g} → {r['learning_rate_first_last'][1]:.3g}; compile "
            f"{r['compile_s']} s; trial ratios {r.get('ratio_trials', '—')}; other load per trial "
            f"{r.get('foreign_cpu_share_trials')}; load average (1, 5, 15 min) before {r['loadavg_before']}, after "
            f"{r['loadavg_after']} (our processes at nice {r.get('nice', 0)}); analytic {r['flops_per_step'] / 1e9:.1f} "
            f"GFLOP/step, matmul peak {r['peak_flops'] / 1e9:.1f} GFLOP/s.")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", default=[], help="configs/X.py[:arg]; repeat for several")
    parser.add_argument("--row", action="append", default=[], choices=[*ROWS, "all"],
                        help="a family's row of ROWS at --size (repeat, or `all`)")
    parser.add_argument("--size", default="mini", choices=["mini", "base"], help="the size of --row rows")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--trials", type=int, default=MIN_TRIALS,
                        help=f"trials per row (a verdict needs ≥ {MIN_TRIALS})")
    parser.add_argument("--rounds", type=int, default=1,
                        help="spread each row's trials over this many rounds; a round runs every row once, each\n"
                             "with fresh workers, so a row's spread covers the whole run (≤ --trials)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps of each framework per trial")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed steps of each after compilation (in every round)")
    parser.add_argument("--settle", type=float, default=0.1, help="seconds of pause before each step")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="config override for every --config, e.g. model.scan_unroll=true")
    parser.add_argument("--xla-option", action="append", default=[], metavar="NAME=VALUE",
                        help="XLA compiler option for our step, e.g. xla_cpu_use_onednn=true")
    parser.add_argument("--quiet-wait", type=float, default=0.0, metavar="SECONDS",
                        help="before timing, wait up to this long for other processes to leave the CPUs")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help=f"environment variable for both workers (default {DEFAULT_WORKER_ENV}; NAME= unsets)")
    parser.add_argument("--omp-wait-policy", default="PASSIVE", choices=["PASSIVE", "ACTIVE", ""],
                        help="OpenMP wait policy of the torch worker ('' = the environment's / libgomp's default).\n"
                             "PASSIVE: with another job on a core, spinning OpenMP threads slow torch ~10×\n"
                             "(benchmarks/NOTES.md)")
    parser.add_argument("--no-reference", action="store_true", help="time ours only")
    parser.add_argument("--oracle-python", default="", metavar="PATH",
                        help="the interpreter of an environment with the transformers version a row's reference "
                             "needs (ROWS' `oracle`: Transformer-XL's 4.37.2)")
    parser.add_argument("--out", default=str(RESULTS), help="results directory")
    parser.add_argument("--dry-run", action="store_true", help="print, write nothing")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.trials < 1:
        raise SystemExit("--steps and --trials must be ≥ 1 and --warmup ≥ 0.")
    split_trials(args.trials, args.rounds)  # refuses a bad --rounds before anything starts
    names = list(ROWS) if "all" in args.row else list(dict.fromkeys(args.row))
    specs = []
    for name in names:
        oracle = ROWS[name].get("oracle")
        if oracle and not args.oracle_python:
            print(f"{name}: its reference needs {oracle}; without --oracle-python the row times ours alone.")
        specs.append((ROWS[name][args.size], not oracle or bool(args.oracle_python), oracle and args.oracle_python))
    for spec in args.config:  # a config of a family whose reference needs an oracle environment gets it too
        oracle = ROWS.get(load_run_config(spec, args.set).family, {}).get("oracle")
        specs.append((spec, not oracle or bool(args.oracle_python), oracle and args.oracle_python))
    if not specs:
        raise SystemExit(f"Nothing to run: give --row NAME (one of {', '.join(ROWS)}, or all) or --config FILE.")
    compiler_options = {}
    for item in args.xla_option:
        name, _, raw = item.partition("=")
        compiler_options[name] = {"true": True, "false": False}.get(raw.lower(), int(raw) if raw.lstrip("-").isdigit() else raw)

    # Set before any worker starts (they inherit the environment) and before jax initialises here.
    flags = os.environ.get("XLA_FLAGS", "")
    for flag in DEFAULT_XLA_FLAGS:
        if flag.split("=")[0] not in flags:
            flags = f"{flags} {flag}".strip()
    os.environ["XLA_FLAGS"] = flags
    # The allocator: XLA:CPU allocates its large step buffers afresh every step; with glibc's defaults they are
    # mapped and unmapped every step, and after the other worker's step (which fragments free memory) the huge-page
    # faults of ours spent seconds in compaction. MALLOC_TUNABLES keeps what a step frees mapped for the next
    # (benchmarks/NOTES.md). Both workers get it; `--env GLIBC_TUNABLES=` turns it off.
    worker_env = {} if "GLIBC_TUNABLES" in os.environ else dict(DEFAULT_WORKER_ENV)
    worker_env.update(item.split("=", 1) for item in args.env)
    for name, value in worker_env.items():  # spawned workers inherit it; glibc reads tunables at process start
        if value:
            os.environ[name] = value
        else:
            os.environ.pop(name, None)
    worker_env = {name: os.environ.get(name, "") for name in sorted({*worker_env, *DEFAULT_WORKER_ENV})}

    info = machine_info(ROOT)
    print(f"{info['cpu']}, {info['cores']} cores; XLA_FLAGS={flags!r}", flush=True)
    ctx = multiprocessing.get_context("spawn")
    rows = bench_rows(ctx, [(spec, reference and not args.no_reference, oracle) for spec, reference, oracle in specs],
                      args.set, args.batch, args.seq, args.steps, args.warmup, args.trials, args.rounds, args.settle,
                      compiler_options or None, args.quiet_wait, worker_env, args.omp_wait_policy)
    if not args.dry_run:
        write_results(rows, info, pathlib.Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
