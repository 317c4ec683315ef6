"""Training throughput and MFU of our train step, side by side with Hugging Face transformers (PyTorch eager).

    python benchmarks/throughput.py --config configs/bert.py:size=base --batch 8 --seq 128
    python benchmarks/throughput.py --config configs/bert.py:size=mini --config configs/bert.py:size=base
    python benchmarks/throughput.py --config configs/albert.py:size=mini \
        --config configs/distilbert.py:size=tiny,teacher=bert-tiny

For each config and batch shape, one full training step (forward + backward + clipping + AdamW) of

* ours: `llm_jax.train.step.make_train_step` jitted by `jit_train_step` on a 1-device mesh, the objective's
  own loss (`make_objective(...).make_loss(model, frozen_models)`) and the config's optimizer (`make_optimizer`);
* the reference: the family's transformers class (`HF_ARCHITECTURE`: `BertForPreTraining`, `RobertaForMaskedLM`,
  `AlbertForPreTraining`, `DistilBertForMaskedLM`) with the identical architecture, the same batch and the same
  objective — the MLM head applied at the same P gathered positions, the weighted MLM cross-entropy (+ NSP for
  BERT, + SOP for ALBERT; distillation's T²·KL + MLM + hidden cosine for `distill`), global-norm clipping and
  AdamW with the same decay mask —

is timed on the same synthetic batch (random token ids: no tokenizer needed).

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
  load hits both alike; the medians of ≥ 10 steps after warm-up give step time and tokens/s.

FLOP/s and MFU use the analytical counts of `llm_jax.flops` (a frozen model counted forward only) against the
f32 matmul peak measured in the same run (the best of a few large `jnp` matmuls in our worker, before and after
the timed steps).
Writes `benchmarks/results/throughput.{json,md}`, merging rows by (config, overrides, batch, seq).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import multiprocessing
import os
import pathlib
import statistics
import sys
import time
import traceback

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
NAME = "throughput"
CORES = os.cpu_count() or 1
# XLA:CPU's intra-op pool; explicit so that the setting is on record. Flags already in XLA_FLAGS win.
DEFAULT_XLA_FLAGS = ("--xla_cpu_multi_thread_eigen=true",)
DEFAULT_WORKER_ENV = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
sys.path.insert(0, str(ROOT))
from llm_jax.eval.report import machine_info  # noqa: E402



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


def synthetic_batch(run, batch: int, seq: int, seed: int = 0):
    """A batch in the objective's layout with random ids: real tokens everywhere, P distinct masked positions."""
    import numpy as np

    rng = np.random.default_rng(seed)
    vocab = run.model.vocab_size
    objective = make_objective_for(run)
    out = objective.dummy_batch(batch, seq)
    first_plain = len(objective.required_roles)  # the placeholder special ids come first
    cls = objective.special.cls
    out["inputs"] = rng.integers(first_plain, vocab, size=(batch, seq), dtype=np.int32)
    out["inputs"][:, 0] = cls
    out["mask"][:] = True
    p = out["mlm_positions"].shape[1]
    if p > seq - 1:
        raise SystemExit(f"objective.max_predictions={p} does not fit in seq={seq}.")
    out["mlm_positions"] = np.sort(np.stack([rng.choice(np.arange(1, seq), p, replace=False) for _ in range(batch)]),
                                   axis=1).astype(np.int32)
    out["mlm_ids"] = rng.integers(first_plain, vocab, size=(batch, p), dtype=np.int32)
    out["mlm_weights"][:] = 1.0
    if "segment_ids" in out:
        out["segment_ids"][:, seq // 2:] = 1
    for key in [k for k in out if k.endswith("_label")]:  # the sentence-pair head's labels (NSP, SOP)
        out[key] = rng.integers(0, 2, size=(batch,), dtype=np.int32)
    return out


# -------------------------------------------------------------------------------------------------- ours


def setup_ours(run, batch_np, seed: int = 0, compiler_options: dict | None = None, keep_hlo: bool = False):
    """Our jitted train step on a 1-device mesh: `(step_fn, meta)`; `step_fn()` runs one step, returns its loss.

    `keep_hlo`: put the optimised HLO text in `meta["hlo_text"]` (for benchmarks/profile_step.py).
    """
    import flax.linen as nn
    import jax
    import numpy as np

    from llm_jax import flops, models
    from llm_jax.sharding import MeshConfig, global_batch_from_local, make_mesh, rules_for
    from llm_jax.train import step as step_lib
    from llm_jax.train.optim import make_optimizer

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

    def step_fn() -> float:
        holder["state"], metrics = compiled(holder["state"], batch, *extra)
        return float(metrics["loss"])  # a device-to-host transfer: the step has finished when this returns

    meta = {"compile_s": compile_s, "parameters": step_lib.count_params(step_lib.abstract_params(model, objective, batch_np)),
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


# How the heads of each transformers class apply to its trunk's outputs: `(mlm, pair)`, `mlm(model, h_BPD)` the MLM
# logits at the P gathered positions only (as ours and the original BERT compute them), `pair(model, pooled_BD)` the
# sentence-pair logits (NSP, SOP); None where the class has no pair head.
HF_HEADS = {
    "BertForPreTraining": (lambda m, h_BPD: m.cls.predictions(h_BPD), lambda m, p_BD: m.cls.seq_relationship(p_BD)),
    "BertForMaskedLM": (lambda m, h_BPD: m.cls.predictions(h_BPD), None),
    "RobertaForMaskedLM": (lambda m, h_BPD: m.lm_head(h_BPD), None),
    "AlbertForPreTraining": (lambda m, h_BPD: m.predictions(h_BPD), lambda m, p_BD: m.sop_classifier(p_BD)),
    "DistilBertForMaskedLM": (
        lambda m, h_BPD: m.vocab_projector(m.vocab_layer_norm(m.activation(m.vocab_transform(h_BPD)))), None),
}


def hf_model(family: str, model_cfg, masked_lm: bool = False):
    """The transformers model of a family's architecture, random params: its `HF_ARCHITECTURE`, or with `masked_lm`
    its masked-LM class (`AutoModelForMaskedLM`: no pooler, for a frozen model that only the MLM head is read of)."""
    import transformers

    from llm_jax import models

    fam = models.family_module(family)
    # The family's own HF architecture from the config our exporter writes: no per-family code here.
    hf_cfg = fam.config_to_hf(model_cfg)
    config = transformers.AutoConfig.for_model(hf_cfg.pop("model_type"), **hf_cfg)
    model = (transformers.AutoModelForMaskedLM.from_config(config) if masked_lm
             else getattr(transformers, fam.HF_ARCHITECTURE)(config))
    if type(model).__name__ not in HF_HEADS:
        raise SystemExit(f"No reference heads for transformers {type(model).__name__}: add how its MLM (and pair) "
                         "heads apply to HF_HEADS in benchmarks/throughput.py.")
    return model


def hf_forward(model, t: dict, pair: bool):
    """`(last hidden [B, T, D], MLM logits at the batch's P positions [B, P, V], pair logits [B, 2] or None)`."""
    import torch

    mlm_head, pair_head = HF_HEADS[type(model).__name__]
    kwargs = {"token_type_ids": t["segment_ids"]} if "segment_ids" in t else {}
    out = getattr(model, model.base_model_prefix)(input_ids=t["inputs"], attention_mask=t["mask"], **kwargs)
    hidden_BTD = out.last_hidden_state
    gathered_BPD = torch.gather(hidden_BTD, 1, t["mlm_positions"][..., None].expand(-1, -1, hidden_BTD.shape[-1]))
    return hidden_BTD, mlm_head(model, gathered_BPD), pair_head(model, out.pooler_output) if pair else None


def _weighted_mlm_loss(logits_BPV, t: dict):
    import torch

    nll_BP = torch.nn.functional.cross_entropy(logits_BPV.transpose(1, 2), t["mlm_ids"], reduction="none")
    return (nll_BP * t["mlm_weights"]).sum() / t["mlm_weights"].sum().clamp_min(1e-5)


def reference_mlm_loss(objective, model, frozen: dict, t: dict):
    """`Mlm`'s loss (mlm, mlm_nsp, mlm_sop): the weighted MLM cross-entropy + the pair head's over the rows."""
    import torch

    del frozen
    pair = objective.pair_head
    _, logits_BPV, pair_B2 = hf_forward(model, t, pair is not None)
    loss = _weighted_mlm_loss(logits_BPV, t)
    if pair:
        loss = loss + torch.nn.functional.cross_entropy(pair_B2, t[f"{pair}_label"])
    return loss


def reference_distill_loss(objective, model, frozen: dict, t: dict):
    """`Distill`'s loss: α_ce·T²·KL(teacher_T ‖ student_T) and α_mlm·MLM over the predicted positions,
    α_cos·(1 − cos) of the last hidden states over the non-padding tokens; the teacher forward only, without dropout
    or gradient (`llm_jax/objectives/distill.py`)."""
    import torch
    from torch.nn import functional as F

    c = objective.cfg
    with torch.no_grad():
        t_hidden_BTD, t_logits_BPV, _ = hf_forward(frozen["teacher"], t, False)
    s_hidden_BTD, s_logits_BPV, _ = hf_forward(model, t, False)
    weights_BP, mask_BT = t["mlm_weights"], t["mask"].float()
    kl_BP = F.kl_div(F.log_softmax(s_logits_BPV / c.temperature, -1), F.log_softmax(t_logits_BPV / c.temperature, -1),
                     log_target=True, reduction="none").sum(-1)
    ce_loss = c.temperature ** 2 * (kl_BP * weights_BP).sum() / weights_BP.sum().clamp_min(1e-5)
    cos_BT = 1.0 - F.cosine_similarity(t_hidden_BTD, s_hidden_BTD, dim=-1, eps=1e-8)
    cos_loss = (cos_BT * mask_BT).sum() / mask_BT.sum().clamp_min(1e-5)
    return c.alpha_ce * ce_loss + c.alpha_mlm * _weighted_mlm_loss(s_logits_BPV, t) + c.alpha_cos * cos_loss


# The PyTorch twin of each objective's loss, by the name of the objective class whose `make_loss` it uses
# (mlm_nsp and mlm_sop use `Mlm`'s, with their pair head).
REFERENCE_LOSSES = {"Mlm": reference_mlm_loss, "Distill": reference_distill_loss}


def setup_reference(run, batch_np, seed: int = 0):
    """The transformers model, loss and AdamW step equivalent to ours: `(step_fn, meta)`."""
    import numpy as np
    import torch

    torch.set_num_threads(CORES)
    torch.manual_seed(seed)
    objective = make_objective_for(run)
    owner = next(c.__name__ for c in type(objective).__mro__ if "make_loss" in vars(c))
    model = hf_model(run.family, run.model)
    pair = getattr(objective, "pair_head", None)
    if owner not in REFERENCE_LOSSES or (pair and HF_HEADS[type(model).__name__][1] is None):
        raise SystemExit(f"No PyTorch reference step for objective {run.objective.name!r} with {type(model).__name__} "
                         f"yet: the reference mirrors the losses of {sorted(REFERENCE_LOSSES)} (REFERENCE_LOSSES).")
    loss_of = REFERENCE_LOSSES[owner]
    frozen = {}
    for name, (family, cfg) in frozen_configs_for(run).items():
        frozen[name] = hf_model(family, cfg, masked_lm=tuple(objective.frozen_heads.get(name, objective.heads))
                                == ("mlm",)).eval().requires_grad_(False)  # forward only, no dropout
    model.train()  # dropout on, as in our train step

    # AdamW as llm_jax.train.optim: no decay on biases and norm scales; global-norm clipping first.
    def no_decay(name: str) -> bool:
        return name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name

    o = run.optim
    optimizer = torch.optim.AdamW(
        [{"params": [p for n, p in model.named_parameters() if not no_decay(n)], "weight_decay": o.weight_decay},
         {"params": [p for n, p in model.named_parameters() if no_decay(n)], "weight_decay": 0.0}],
        lr=o.learning_rate, betas=(o.b1, o.b2), eps=o.eps)
    t = {k: torch.from_numpy(np.asarray(v)) for k, v in batch_np.items()}
    t = {k: v.float() if v.is_floating_point() else v.long() for k, v in t.items()}

    def step_fn() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of(objective, model, frozen, t)
        loss.backward()
        if o.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), o.clip_norm)
        optimizer.step()
        return loss.item()

    described = (f"transformers {type(model).__name__} (PyTorch eager, "
                 f"attn_implementation={model.config._attn_implementation})")
    if frozen:
        described += "; frozen " + ", ".join(f"{name} {type(m).__name__} (no_grad, eval)" for name, m in frozen.items())
    meta = {"reference": described, "parameters": sum(p.numel() for p in model.parameters()),
            "frozen_parameters": {name: sum(p.numel() for p in m.parameters()) for name, m in frozen.items()},
            "torch_threads": torch.get_num_threads()}
    return step_fn, meta


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


def _worker(kind: str, spec: str, overrides: list[str], batch: int, seq: int, options, conn) -> None:
    """One framework in its own process: set up, then run commands (`step`, `peak`, `stop`) from the parent.

    `options`: XLA compiler options for ours; the OpenMP wait policy for the reference.
    """
    try:
        if kind == "reference" and options:
            # Read by torch's OpenMP runtime when it loads (below, in setup_reference), hence set here.
            os.environ["OMP_WAIT_POLICY"] = options
        compiler_options = options if kind == "ours" else None
        run = load_run_config(spec, overrides)
        batch_np = synthetic_batch(run, batch, seq)
        if kind == "ours":
            peak = measure_jnp_peak()  # before compiling: nothing else of ours is resident yet
            step_fn, meta = setup_ours(run, batch_np, compiler_options=compiler_options)
            meta["peak_before"] = peak
        else:
            step_fn, meta = setup_reference(run, batch_np)
            meta["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY", "")
        conn.send(("ready", meta))
        while True:
            cmd = conn.recv()
            if cmd == "step":
                c0, t0 = os.times(), time.perf_counter()
                loss = step_fn()
                dt, c1 = time.perf_counter() - t0, os.times()
                conn.send(("ok", (dt, (c1.user + c1.system) - (c0.user + c0.system), loss)))
            elif cmd == "peak":
                conn.send(("ok", measure_jnp_peak() if kind == "ours" else measure_torch_peak()))
            else:
                break
    except EOFError:  # the parent went away
        return
    except Exception:  # noqa: BLE001 - the parent prints it and stops
        conn.send(("error", traceback.format_exc()))


class Worker:
    """The parent's handle on a worker process."""

    def __init__(self, ctx, kind: str, *args):
        self.kind = kind
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker, args=(kind, *args, child), daemon=True)
        self.process.start()
        child.close()  # the worker holds its end; without the parent's copy it sees EOF if the parent dies
        self.meta = self._reply()

    def _reply(self):
        status, payload = self.conn.recv()
        if status == "error":
            self.close()
            raise SystemExit(f"{self.kind} worker failed:\n{payload}")
        return payload

    def call(self, cmd: str):
        self.conn.send(cmd)
        return self._reply()

    def close(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(BrokenPipeError, OSError):  # the worker already exited
                self.conn.send("stop")
            self.process.join(timeout=30)


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


def bench_one(ctx, spec: str, overrides: list[str], batch: int, seq: int, steps: int, warmup: int,
              reference: bool, settle_s: float, compiler_options, quiet_wait_s: float, worker_env: dict,
              omp_wait_policy: str) -> dict:
    from llm_jax import flops

    run = load_run_config(spec, overrides)
    print(f"\n== {spec} {' '.join(overrides)} batch={batch} seq={seq}: starting workers…", flush=True)
    ours = Worker(ctx, "ours", spec, overrides, batch, seq, compiler_options)
    ref = Worker(ctx, "reference", spec, overrides, batch, seq, omp_wait_policy) if reference else None
    try:
        pair = [("ours", ours)] + ([("ref", ref)] if ref else [])
        times: dict[str, list[float]] = {"ours": [], "ref": []}
        cpu_times: dict[str, list[float]] = {"ours": [], "ref": []}
        losses: dict[str, list[float]] = {"ours": [], "ref": []}
        load = None
        for i in range(warmup + steps):
            if i == warmup:
                if quiet_wait_s > 0:
                    wait_for_quiet(quiet_wait_s)
                load = ForeignLoad([os.getpid(), ours.process.pid] + ([ref.process.pid] if ref else []))
            for name, worker in (pair if i % 2 == 0 else pair[::-1]):
                time.sleep(settle_s)  # let the other process's pool threads stop spinning
                dt, cpu, loss = worker.call("step")
                losses[name].append(loss)
                if i >= warmup:
                    times[name].append(dt)
                    cpu_times[name].append(cpu)
        foreign_share = load.stop() if load else None
        peak_detail = {"jnp_matmul_f32_before": ours.meta["peak_before"], "jnp_matmul_f32_after": ours.call("peak")}
        if ref:
            peak_detail["torch_matmul_f32_4096"] = ref.call("peak")
    finally:
        ours.close()
        if ref:
            ref.close()
    peak = max(max(v.values()) for k, v in peak_detail.items() if k.startswith("jnp"))

    frozen_configs = frozen_configs_for(run, spec)
    towers = flops.towers_for(run.family, run.model, run.objective, seq, frozen_configs=frozen_configs)
    train = flops.train_flops(towers, batch, num_params=ours.meta["parameters"])
    per_token = flops.model_flops_per_token(towers)
    tokens = batch * seq
    ours_s = statistics.median(times["ours"])
    row = {
        "config": spec, "overrides": list(overrides), "family": run.family, "batch": batch, "seq": seq,
        "model": {k: getattr(run.model, k) for k in ("num_layers", "hidden_size", "num_heads", "intermediate_size",
                                                      "vocab_size", "dtype", "remat", "scan_unroll")},
        "objective": run.objective.name, "max_predictions": make_objective_for(run).predicted_positions(seq),  # P
        "parameters": ours.meta["parameters"], "steps_timed": steps, "warmup": warmup,
        "frozen": {name: {"preset": getattr(run.objective, name), "family": family,
                          "parameters": ours.meta["frozen_parameters"][name]}
                   for name, (family, _) in frozen_configs.items()},
        "compile_s": round(ours.meta["compile_s"], 1),
        "ours_step_s": ours_s, "ours_step_s_all": [round(x, 4) for x in times["ours"]],
        "ours_tokens_per_s": tokens / ours_s, "ours_cpu_s": statistics.median(cpu_times["ours"]),
        "flops_per_step": train.total, "matmul_flops_per_step": train.matmul,
        "xla_dot_flops_per_step": ours.meta["xla_dot_flops_per_step"],
        "model_flops_per_token": per_token, "ours_flops_per_s": train.total / ours_s,
        "mfu": flops.mfu(tokens / ours_s, per_token, peak), "peak_flops": peak, "peak_detail": peak_detail,
        "ours_loss_first_last": [losses["ours"][0], losses["ours"][-1]],
        "xla_flags": ours.meta["xla_flags"], "compiler_options": compiler_options or {}, "worker_env": worker_env,
        "foreign_cpu_share": foreign_share, "loadavg_1m_at_end": os.getloadavg()[0], "nice": os.nice(0),
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if ref:
        ref_s = statistics.median(times["ref"])
        if ref.meta["parameters"] != row["parameters"]:
            raise SystemExit(f"The reference has {ref.meta['parameters']:,} parameters, ours {row['parameters']:,}: "
                             "the architectures differ.")
        for name, count in ref.meta["frozen_parameters"].items():
            row["frozen"][name]["reference_parameters"] = count
        row.update(reference=ref.meta["reference"], torch_threads=ref.meta["torch_threads"],
                   omp_wait_policy=ref.meta["omp_wait_policy"],
                   reference_step_s=ref_s, reference_step_s_all=[round(x, 4) for x in times["ref"]],
                   reference_tokens_per_s=tokens / ref_s, ratio=ref_s / ours_s,
                   reference_cpu_s=statistics.median(cpu_times["ref"]),
                   cpu_ratio=statistics.median(cpu_times["ref"]) / statistics.median(cpu_times["ours"]),
                   reference_mfu=flops.mfu(tokens / ref_s, per_token, peak),
                   reference_loss_first_last=[losses["ref"][0], losses["ref"][-1]])
    else:
        row.update(reference=None, reference_step_s=None, reference_tokens_per_s=None, ratio=None, reference_mfu=None)
    msg = f"   ours {row['ours_tokens_per_s']:.0f} tok/s ({ours_s:.3f} s/step, MFU {row['mfu']:.1%})"
    if ref:
        msg += f" | reference {row['reference_tokens_per_s']:.0f} tok/s ({row['reference_step_s']:.3f} s/step)"
        msg += f" | ratio {row['ratio']:.2f}× (CPU time {row['cpu_ratio']:.2f}×)"
    foreign = "n/a" if foreign_share is None else f"{foreign_share:.0%}"
    print(msg + f" | peak {peak / 1e9:.1f} GFLOP/s | other processes' CPU share {foreign}", flush=True)
    return row


def _key(row: dict) -> tuple:
    return row["config"], tuple(row.get("overrides", [])), row["batch"], row["seq"]


def write_results(rows: list[dict], info: dict, out_dir: pathlib.Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{NAME}.json"
    merged: dict[tuple, dict] = {}
    if path.exists():
        for row in json.loads(path.read_text()).get("rows", []):
            merged[_key(row)] = row
    for row in rows:
        merged[_key(row)] = dict(row, machine=info)
    ordered = sorted(merged.values(), key=lambda r: (r["config"], r["batch"], r["seq"], r.get("overrides", [])))
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


def markdown(rows: list[dict]) -> str:
    lines = [
        "# Training throughput: llm_jax vs Hugging Face transformers (PyTorch eager), CPU",
        "",
        "One full training step (forward + backward + clipping + AdamW) on the same synthetic batch; the two run in",
        "separate worker processes, steps alternating; medians after warm-up. MFU = tokens/s × PaLM model FLOPs per",
        "token (6N + 12·L·H·Q·T, N = non-embedding parameters; `llm_jax/flops.py`) / the f32 matmul peak measured",
        "with `jnp` in the same run. Written by `benchmarks/throughput.py`; what was tried: `benchmarks/NOTES.md`.",
        "",
        "Read a row with its `other load` column: the share of the machine's CPU time that other processes took",
        "during the timed steps. Under such load both frameworks slow down, by different factors; the CPU-time",
        "ratio (CPU seconds the reference spends per step over ours) is the steadier comparison of work there.",
        "",
        "| config | overrides | batch×seq | ours tok/s | ours s/step | reference tok/s | reference s/step | ratio |"
        " CPU-time ratio | MFU ours | MFU reference | peak GFLOP/s | analytic GFLOP/step | other load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['config']}` | {' '.join(r.get('overrides', [])) or '—'} | {r['batch']}×{r['seq']} | "
            f"{r['ours_tokens_per_s']:.0f} | {r['ours_step_s']:.3f} | {_fmt(r.get('reference_tokens_per_s'), '.0f')} | "
            f"{_fmt(r.get('reference_step_s'), '.3f')} | {_fmt(r.get('ratio'), '.2f', '×')} | "
            f"{_fmt(r.get('cpu_ratio'), '.2f', '×')} | {r['mfu']:.1%} | "
            f"{_fmt(r.get('reference_mfu'), '.1%')} | {r['peak_flops'] / 1e9:.1f} | {r['flops_per_step'] / 1e9:.1f} | "
            f"{_fmt(r.get('foreign_cpu_share'), '.0%')} |")
    lines += ["", "Runs:", ""]
    for r in rows:
        m, v = r["machine"], r["machine"]["versions"]
        lines.append(
            f"- `{r['config']}` {' '.join(r.get('overrides', []))} — {r['measured_at']}, commit {m['commit']}; "
            f"{m['cpu']}, {m['cores']} cores; jax {v['jax']}, jaxlib {v['jaxlib']}, flax {v['flax']}, "
            f"torch {v.get('torch', '—')}, transformers {v.get('transformers', '—')}; XLA_FLAGS=`{r['xla_flags']}`, "
            f"XLA options {r.get('compiler_options') or '—'}, worker environment {r.get('worker_env') or '—'}, "
            f"torch threads {r.get('torch_threads', '—')}, OMP_WAIT_POLICY={r.get('omp_wait_policy') or 'default'}; "
            f"reference: {r.get('reference') or '—'}; "
            f"model {r['model']}, objective {r['objective']} (P={r['max_predictions']}), {r['parameters']:,} parameters; "
            f"{_frozen_text(r)}{r['steps_timed']} timed steps after {r['warmup']} warm-up; compile {r['compile_s']} s; "
            f"other processes used {_fmt(r.get('foreign_cpu_share'), '.0%')} of the CPUs during the timed steps "
            f"(our processes at nice {r.get('nice', 0)}).")
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", required=True, help="configs/X.py[:arg]; repeat for several")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed steps of each (≥ 10 for a stable median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each after compilation")
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
    parser.add_argument("--out", default=str(RESULTS), help="results directory")
    parser.add_argument("--dry-run", action="store_true", help="print, write nothing")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        raise SystemExit("--steps must be ≥ 1 and --warmup ≥ 0.")
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
    # Transparent huge pages for malloc: XLA:CPU allocates its large step buffers afresh every step and glibc
    # maps and unmaps them, so without huge pages a BERT step spends ~20 % of its CPU time in page faults
    # (benchmarks/NOTES.md). Both workers get it (torch barely notices); `--env GLIBC_TUNABLES=` turns it off.
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
    rows = [bench_one(ctx, spec, args.set, args.batch, args.seq, args.steps, args.warmup, not args.no_reference,
                      args.settle, compiler_options or None, args.quiet_wait, worker_env, args.omp_wait_policy)
            for spec in args.config]
    if not args.dry_run:
        write_results(rows, info, pathlib.Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
