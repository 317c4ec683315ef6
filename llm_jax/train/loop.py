"""The pretraining loop: data → sharded state → jitted steps → metrics, evaluation, Orbax checkpoints, resume.

A restart in the same workdir restores the newest good checkpoint (state + loader position) and continues;
because the global batch of step n is a pure function of (seed, n) and the step RNG is `fold_in(seed, step)`,
the resumed run sees exactly the batches and dropout masks the uninterrupted run would have.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import time
from typing import Any

import jax
import numpy as np

from llm_jax import models, sharding
from llm_jax.data.loader import DeterministicLoader
from llm_jax.objectives import make_objective
from llm_jax.train import step as step_lib
from llm_jax.train.checkpoint import Checkpointer, abstract_like
from llm_jax.train.metrics import MetricWriter, read_metrics
from llm_jax.train.runner import run_loop
from llm_jax.train.optim import make_optimizer
from llm_jax.train.pipeline import fixed_eval_batches, load_data

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Loop settings.

    Attributes:
      steps: optimizer updates in the whole run.
      batch_size: global batch (examples per update, across all devices and hosts).
      seed: data order, masks, init and dropout all derive from it.
      log_every / eval_every / checkpoint_every: intervals in steps (0 disables eval / periodic checkpoints).
      eval_batches: batches of the eval split per evaluation.
      max_to_keep: checkpoints kept.
      max_consecutive_skips: stop after this many non-finite steps in a row.
      progress: show a progress bar.
      stop_after: end this invocation after this step (with a checkpoint) although the schedule spans `steps`;
        for time-sliced jobs. 0 = run to `steps`.
    """

    steps: int = 1000
    batch_size: int = 32
    seed: int = 0
    log_every: int = 50
    eval_every: int = 500
    eval_batches: int = 4
    checkpoint_every: int = 500
    max_to_keep: int = 3
    max_consecutive_skips: int = 5
    progress: bool = True
    stop_after: int = 0

    def validate(self) -> "TrainConfig":
        if min(self.steps, self.batch_size, self.log_every, self.max_to_keep, self.max_consecutive_skips) < 1:
            raise ValueError("train.steps, batch_size, log_every, max_to_keep and max_consecutive_skips must be ≥ 1.")
        if min(self.checkpoint_every, self.eval_every, self.stop_after, self.eval_batches) < 0:
            raise ValueError("train.checkpoint_every, eval_every, eval_batches and stop_after must be ≥ 0 "
                             "(0 disables).")
        return self


def _check_batch(cfg, mesh) -> None:
    b = cfg.train.batch_size
    ways = sharding.batch_axis_size(mesh)
    accum = cfg.optim.grad_accum_steps
    if b % accum:
        raise ValueError(f"train.batch_size={b} is not divisible by optim.grad_accum_steps={accum}.")
    if (b // accum) % ways:
        raise ValueError(f"The micro-batch ({b} / {accum} accumulation steps = {b // accum}) is not divisible by the "
                         f"{ways} data-parallel shards (mesh data×fsdp); change train.batch_size or the mesh.")
    if b % jax.process_count():
        raise ValueError(f"train.batch_size={b} is not divisible by the {jax.process_count()} processes.")


def check_workdir(workdir: pathlib.Path, resolved: dict[str, Any], existing: str = "refuse", *,
                  keys: tuple[str, ...]) -> None:
    """Refuses to continue a run in a workdir that holds a run whose `keys` sections differ.

    Shared by pretraining and fine-tuning. `existing="resume"` continues anyway (e.g. more data documents);
    `"overwrite"` was handled by the caller.

    Raises:
      ValueError: naming the sections and the first fields that differ, and the three ways out.
    """
    path = workdir / "config.json"
    ckpts = workdir / "checkpoints"
    if not path.exists() or not (ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir())):
        return  # nothing trained yet (e.g. a run that failed before its first checkpoint): nothing to protect
    old = json.loads(path.read_text())
    resolved = json.loads(json.dumps(resolved))  # compare as saved: tuples become lists
    if isinstance(old.get("model"), dict):  # a run saved before a CommonConfig field existed had its default
        common = {f.name: f.default for f in dataclasses.fields(models.CommonConfig)}
        old["model"] = {**{k: v for k, v in common.items() if k not in old["model"]}, **old["model"]}
    differing = [k for k in keys if old.get(k) != resolved.get(k)]
    if differing and existing != "resume":
        details = [f"{k}.{f}: {old[k].get(f)!r} → {resolved[k].get(f)!r}" for k in differing
                   if isinstance(old.get(k), dict) and isinstance(resolved.get(k), dict)
                   for f in sorted(set(old[k]) | set(resolved[k])) if old[k].get(f) != resolved[k].get(f)]
        raise ValueError(f"{workdir} holds a run with a different {', '.join(differing)} config "
                         f"({'; '.join(details[:6]) or ', '.join(differing) + ' differs'}). Resume it with its own "
                         f"config (see {path}), pass --resume to continue it with this config, --overwrite to set it "
                         "aside and start afresh, or choose a new --workdir.")


@dataclasses.dataclass
class Frozen:
    """Frozen models an objective reads (a teacher): their modules and their sharded params."""

    modules: dict[str, Any]
    params: dict[str, Any]


def load_frozen_models(objective, objective_cfg, dummy: dict[str, np.ndarray], mesh, rules, tokenizer=None):
    """Loads the models the objective declares in `required_models` from the paths in its config.

    Each is any model `load_pretrained` reads (a run, checkpoint, model or Hugging Face directory). Its params are
    placed in the shardings their logical names give, to be passed to the step as a non-donated argument. With
    `tokenizer` (the run's), each model's own tokenizer must have the same vocabulary: a teacher reading other ids
    would teach nonsense silently.

    Returns:
      `(Frozen | None, shardings | None)`.

    Raises:
      ValueError: a required model whose path is not set in the objective config, or whose vocabulary differs
        from `tokenizer`'s.
    """
    if not objective.required_models:
        return None, None
    from llm_jax.compression import quantize
    from llm_jax.interop.native import load_pretrained  # why lazy: only objectives with frozen models

    modules, params, shardings = {}, {}, {}
    for name, what in objective.required_models.items():
        path = getattr(objective_cfg, name, "")
        if not path:
            raise ValueError(f"objective.{name} is empty: the {objective_cfg.name} objective needs {what}; set "
                             f"--config.objective.{name}=DIR (a run, checkpoint, model or Hugging Face directory).")
        family, cfg, p, tok = load_pretrained(path)
        cfg, p = quantize.as_float(family, cfg, p, f"objective.{name}")
        if tokenizer is not None and (tok is None or tok.get_vocab() != tokenizer.get_vocab()):
            raise ValueError(f"objective.{name}={path} was trained with {'another' if tok else 'an unknown'} "
                             f"vocabulary than this run's tokenizer, so their token ids disagree; start this run "
                             f"with that model's tokenizer (--config.data.tokenizer={path}).")
        modules[name] = models.build(family, cfg)
        boxed = step_lib.abstract_params(modules[name], objective, dummy)
        shardings[name] = step_lib.frozen_shardings(boxed, mesh, rules)
        params[name] = step_lib.place(p, shardings[name])
    return Frozen(modules, params), shardings


def _set_aside(workdir: pathlib.Path) -> None:
    """Moves an existing run to `<workdir>.replaced-<time>`: overwriting never destroys the old run's data."""
    if workdir.exists() and any(workdir.iterdir()):
        target = workdir.with_name(f"{workdir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        workdir.rename(target)
        log.warning("Moved the previous run in %s to %s (--overwrite).", workdir, target)


def pretrain(cfg, workdir: str | pathlib.Path, *, existing: str = "refuse") -> dict[str, Any]:
    """Runs (or resumes) pretraining as configured; returns a summary dict (also written to summary.json).

    Args:
      cfg: a `llm_jax.config.RunConfig`.
      workdir: run directory (checkpoints, metrics, tokenizer, config).
      existing: what to do when `workdir` holds a run with a different config: `refuse`, `resume` (continue it
        with this config), or `overwrite` (move it aside to `<workdir>.replaced-<time>`, start afresh).
    """
    if existing not in ("refuse", "resume", "overwrite"):
        raise ValueError(f"existing={existing!r}: choose 'refuse', 'resume' or 'overwrite'.")
    sharding.maybe_initialize_distributed()
    workdir = pathlib.Path(workdir).absolute()
    if existing == "overwrite" and jax.process_index() == 0:
        _set_aside(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    tcfg = cfg.train.validate()
    mesh = sharding.make_mesh(cfg.mesh)
    rules = sharding.rules_for(cfg.mesh.rules)
    _check_batch(cfg, mesh)
    family = models.family_module(cfg.family)

    init_params = None
    hf_tokenizer = None
    model_cfg = cfg.model
    if cfg.init_from:
        from llm_jax.compression import quantize
        from llm_jax.interop.native import load_pretrained  # why lazy: only runs that start from given weights

        fam, model_cfg, init_params, hf_tokenizer = load_pretrained(cfg.init_from)
        # A compressed model (`llm-jax compress`) trains from its dequantized float32 weights (one logged line).
        model_cfg, init_params = quantize.as_float(fam, model_cfg, init_params, "model.init_from")
        init_params = quantize.cast_params(init_params, "float32")
        if fam != cfg.family:
            # A family built on a parent may start from the parent's weights (DistilBERT from every other BERT
            # layer, Sanh et al. 2019 §3): its optional `params_from(parent, parent_cfg, params, cfg)` hook.
            convert = getattr(family, "params_from", None)
            if convert is None:
                raise ValueError(f"model.init_from={cfg.init_from} holds a {fam!r} model but the config is for "
                                 f"{cfg.family!r}, which cannot start from one; use configs/{fam}.py.")
            model_cfg, init_params = convert(fam, model_cfg, init_params, cfg.model)
        if hf_tokenizer is None:
            raise FileNotFoundError(f"model.init_from={cfg.init_from} has no tokenizer.json beside its weights; the "
                                    "token ids must come from the tokenizer the weights were trained with.")
        # Architecture from the checkpoint; run-time choices (precision, remat, dropout) from this config.
        model_cfg = models.with_runtime(model_cfg, cfg.model)

    # A different run in the workdir is refused before its tokenizer is read (the model section, whose vocabulary
    # comes from that tokenizer, is compared below).
    check_workdir(workdir, cfg.to_dict(), existing, keys=("family", "objective", "data"))
    data = load_data(cfg.data, family.TOKENIZER, workdir, tokenizer=hf_tokenizer)
    if not cfg.init_from:
        model_cfg = model_cfg.with_vocabulary(data.tokenizer.get_vocab_size(), data.special)
    if cfg.data.seq_len > model_cfg.max_seq_len:
        raise ValueError(f"data.seq_len={cfg.data.seq_len} is longer than the model's positions "
                         f"({model_cfg.max_seq_len}); shorten data.seq_len.")
    resolved = cfg.to_dict()
    resolved["model"] = dataclasses.asdict(model_cfg)
    check_workdir(workdir, resolved, existing, keys=("family", "model", "objective", "data"))
    if jax.process_index() == 0:
        (workdir / "config.json").write_text(json.dumps(resolved, indent=2))

    objective = make_objective(cfg.objective, data.special, model_cfg.vocab_size, tokenizer=data.tokenizer)
    t0 = time.time()
    train_examples = objective.build_examples(data.train_docs_ids, cfg.data.seq_len, tcfg.seed,
                                              batch_size=tcfg.batch_size)
    eval_examples = (objective.build_examples(data.eval_docs_ids, cfg.data.seq_len, tcfg.seed + 1,
                                              batch_size=tcfg.batch_size)
                     if data.eval_docs_ids and tcfg.eval_every else None)
    n_examples = len(next(iter(train_examples.values())))
    log.info("Built %d training examples in %.1fs", n_examples, time.time() - t0)
    loader = DeterministicLoader(train_examples, tcfg.batch_size, seed=tcfg.seed,
                                 process_index=jax.process_index(), process_count=jax.process_count(),
                                 shuffle=objective.data_order == "shuffled")

    model = models.build(cfg.family, model_cfg)
    dummy = objective.dummy_batch(tcfg.batch_size, cfg.data.seq_len)
    # Layer-wise LR decay reads depths from the boxed params' logical `layers` axis.
    boxed = step_lib.abstract_params(model, objective, dummy) if cfg.optim.layer_decay != 1.0 else None
    tx, schedule = make_optimizer(cfg.optim, tcfg.steps, params=boxed)
    frozen, frozen_sharding = load_frozen_models(objective, cfg.objective, dummy, mesh, rules, data.tokenizer)
    state, shardings = step_lib.create_state(model, objective, tx, dummy, mesh, rules, tcfg.seed, params=init_params)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))

    ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=tcfg.max_to_keep)
    start_step = 0
    restored = ckpt.restore_latest(abstract_like(state))
    if restored is not None:
        start_step, state, _ = restored
        log.info("Resumed from checkpoint step %d in %s", start_step, ckpt.directory)

    loss_fn = objective.make_loss(model, frozen_models=frozen.modules if frozen else None)
    train_step = step_lib.jit_train_step(
        step_lib.make_train_step(loss_fn, tx, schedule, seed=tcfg.seed, grad_accum_steps=cfg.optim.grad_accum_steps,
                                 denominators_fn=objective.loss_denominators),
        shardings, mesh, dummy, frozen_sharding)
    eval_step = step_lib.jit_eval_step(
        step_lib.make_eval_step(loss_fn, grad_accum_steps=cfg.optim.grad_accum_steps,
                                denominators_fn=objective.loss_denominators),
        shardings, mesh, dummy, frozen_sharding)
    frozen_args = (frozen.params,) if frozen else ()
    eval_batches = []
    if eval_examples is not None:
        p, n_proc = jax.process_index(), jax.process_count()
        per = tcfg.batch_size // n_proc
        eval_batches = [{k: v[p * per:(p + 1) * per] for k, v in b.items()}
                        for b in fixed_eval_batches(objective, eval_examples, tcfg.batch_size, tcfg.eval_batches,
                                                    tcfg.seed)]

    writer = MetricWriter(workdir)

    def evaluate(state) -> dict[str, float]:
        # The eval stream is read in order with its own carry (fresh at every evaluation), as a segment model's
        # evaluation with memory needs.
        carry = step_lib.place(objective.init_carry(tcfg.batch_size, model_cfg), shardings.carry)
        ms = []
        for b in eval_batches:
            m, carry = eval_step(state.params, sharding.global_batch_from_local(b, mesh), carry, *frozen_args)
            ms.append(m)
        ms = jax.device_get(ms)
        means = {k: float(np.mean([m[k] for m in ms])) for k in ms[0]}
        return {f"eval_{k}": v for k, v in {**means, **objective.derived_metrics(means)}.items()}

    summary: dict[str, Any] = {"workdir": str(workdir), "parameters": n_params, "start_step": start_step,
                               "steps": tcfg.steps, "family": cfg.family}
    if jax.process_index() == 0:
        print(f"[llm-jax] {cfg.family}: {n_params:,} parameters | mesh {dict(mesh.shape)} rules={cfg.mesh.rules} | "
              f"{n_examples:,} examples of {cfg.data.seq_len} tokens | batch {tcfg.batch_size} | "
              f"steps {start_step}→{tcfg.steps}", flush=True)
    t_start = time.time()
    end = min(tcfg.steps, tcfg.stop_after) if tcfg.stop_after else tcfg.steps
    with step_lib.mesh_context(mesh, rules):
        result = run_loop(
            state=state, train_step=lambda st, b: train_step(st, b, *frozen_args),
            batch_fn=lambda s: sharding.global_batch_from_local(objective.prepare(loader.local_batch(s), tcfg.seed), mesh),
            start_step=start_step, end_step=end, total_steps=tcfg.steps, log_every=tcfg.log_every,
            checkpointer=ckpt, checkpoint_every=tcfg.checkpoint_every,
            meta_fn=lambda s: {"step": int(s), "config": resolved},
            writer=writer, tokens_per_step=tcfg.batch_size * cfg.data.seq_len,
            eval_every=tcfg.eval_every if eval_batches else 0, evaluate=evaluate,
            max_consecutive_skips=tcfg.max_consecutive_skips, progress=tcfg.progress, desc="pretrain",
            postfix_keys=objective.progress_keys, derive=objective.derived_metrics)
    ckpt.close()
    writer.close()
    s = result.end_step
    if result.last_eval:
        summary["eval"] = result.last_eval
    summary["preempted"] = result.preempted
    summary.update(seconds=time.time() - t_start, end_step=s, checkpoint_dir=str(ckpt.directory))
    rows = [r for r in read_metrics(workdir) if "loss" in r]
    if rows:
        summary["first_logged"] = {"step": rows[0]["step"], "loss": rows[0]["loss"]}
        summary["last_logged"] = {"step": rows[-1]["step"], "loss": rows[-1]["loss"],
                                  "tokens_per_s": rows[-1].get("tokens_per_s")}
    if jax.process_index() == 0:
        (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary

