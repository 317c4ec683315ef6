"""Fine-tuning (BERT §4): a pretrained trunk + a new task head, trained end to end; evaluation and results.

    llm-jax finetune --config configs/finetune.py:model=runs/bert-tiny,task=wordnet-supersense --workdir DIR

The model comes from a preset (random init; a tokenizer is then trained on the bundled corpus, or given), a run
directory or checkpoint of ours, a model directory, or a Hugging Face checkpoint directory
(`llm_jax.interop.native.load_pretrained`). Its trunk is transplanted under the task's head
(`llm_jax.models.heads`), and the same machinery as pretraining runs it: `train.step` (sharded state, jitted
step with dropout RNG `fold_in(seed, step)`), `train.runner.run_loop` (logging to metrics.jsonl/TensorBoard,
Orbax checkpoints, SIGTERM preemption, evaluation callbacks), `train.optim` (AdamW, warmup + linear decay,
optional layer-wise LR decay).

What fine-tuning adds:

* evaluation on the validation split every `train.eval_every` steps with the task's metrics, **keeping the best
  params** (by the first metric) in `DIR/best/` and stopping after `train.patience` evaluations without
  improvement; the test split is scored with the best params, not the last;
* few-shot subsets (`data.train_examples=K`: class-balanced, from the seed) and K = 0, zero-shot by MLM cloze
  scoring (`llm_jax.eval.cloze`);
* imbalanced labels: `data.balance=class_weights` (inverse-frequency weighted loss) or `oversample` (minority
  classes repeated until every class is as frequent as the largest);
* `DIR/results.json` — `{"validation": {metric: value, ..., "majority_baseline": v}, "test": {...}}` — and
  `DIR/predictions/{validation,test}.jsonl`, plus `summary.json` (steps, best step, timings);
* **text to text** (`data.text_to_text`, the default of a family with `text_to_text_inputs`: T5, Raffel et al.
  2020 §2.4): no head — the task's `TaskSpec.text` renders each record as a task-prefixed input and a target text
  (a label word, or a score rounded to 0.2), the pretraining model learns to write the target by teacher forcing
  (`objectives.text_to_text`), and evaluation decodes (greedy, or beam search with `data.num_beams`) and maps the
  text back to a label (`eval.text_to_text`); outputs that are no label count as wrong, and every result reports
  how many there were (`non_label_outputs`).

A rerun in the same workdir resumes from the newest checkpoint (and the best-so-far params); a finished run is
only re-scored.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import pathlib
import time
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from llm_jax import models, sharding
from llm_jax.compression.pruning import (gradual_magnitude_pruning, keep_masked, layer_axes_of, masks_for,
                                         measured_sparsity, parse_prune_spec, prune_record)
from llm_jax.config import section
from llm_jax.data.features import encode
from llm_jax.data.loader import DeterministicLoader
from llm_jax.data.tasks import Task, TaskConfig, few_shot_subset, labels_of, load_task, with_metrics
from llm_jax.data.text_to_text import encode_text_to_text, longest_target, text_labels
from llm_jax.data.tokenizer import load_tokenizer, save_tokenizer
from llm_jax.eval.predict import Predictor, majority_baseline, score
from llm_jax.eval.text_to_text import TextPredictor, score_texts
from llm_jax.eval.zero_shot import zero_shot
from llm_jax.models import heads
from llm_jax.objectives import check_token_ids
from llm_jax.objectives.finetune import TaskObjective, class_weights
from llm_jax.objectives.text_to_text import TextToTextObjective
from llm_jax.sharding import MeshConfig
from llm_jax.train import step as step_lib
from llm_jax.train.best import BestKeeper, write_json
from llm_jax.train.checkpoint import Checkpointer, abstract_like
from llm_jax.train.loop import check_workdir
from llm_jax.train.metrics import MetricWriter
from llm_jax.train.optim import OptimConfig, make_optimizer
from llm_jax.train.pipeline import DataConfig
from llm_jax.train.runner import run_loop
from llm_jax.train.sources import ModelSource, for_task_inputs, resolve_model

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
BALANCE = ("none", "class_weights", "oversample")


# ------------------------------------------------------------------------------------------------ config


@dataclasses.dataclass(frozen=True)
class FinetuneData:
    """Inputs and training-set selection.

    Attributes:
      seq_len: tokens per sequence (pairs are truncated longest-first).
      train_examples: K: -1 = the whole training split; K ≥ 1 = a class-balanced subset drawn with `train.seed`;
        0 = zero-shot (no training: MLM cloze scoring with the task's prompt and verbalizers).
      balance: `none`, `class_weights` (inverse-frequency weighted loss) or `oversample` (repeat minority
        classes) for imbalanced labels.
      tokenizer: a tokenizer (folder or tokenizer.json) for a preset model; empty = the workdir's (resume) or one
        trained on `tokenizer_corpus`. Ignored when the model is a directory (its own tokenizer is used).
      tokenizer_corpus / tokenizer_max_documents / vocab_size / lowercase: how that tokenizer is trained.
      doc_stride / max_query_length / max_answer_length: span tasks (SQuAD): window overlap, question cut,
        longest answer.
      eval_batch_size: rows per evaluation forward pass (or decoding call).
      text_to_text: fine-tune text to text (T5 §2.4; the family needs `text_to_text_inputs`) instead of a task
        head; `configs/finetune.py` sets it for the families that have it.
      target_len: text to text: target tokens (`</s>` included); 0 = the longest target of the task.
      num_beams: text to text: decoding at evaluation, 1 = greedy, N > 1 = beam search with N beams.
    """

    seq_len: int = 128
    train_examples: int = -1
    balance: str = "none"
    tokenizer: str = ""
    tokenizer_corpus: str = "bundled"
    tokenizer_max_documents: int = 0
    vocab_size: int = 8000
    lowercase: bool = True
    doc_stride: int = 128
    max_query_length: int = 64
    max_answer_length: int = 30
    eval_batch_size: int = 128
    text_to_text: bool = False
    target_len: int = 0
    num_beams: int = 1

    def validate(self) -> "FinetuneData":
        if self.seq_len < 8:
            raise ValueError(f"data.seq_len={self.seq_len} is too short; use at least 8 tokens.")
        if self.train_examples < -1:
            raise ValueError(f"data.train_examples={self.train_examples}: use -1 (all), 0 (zero-shot) or K ≥ 1.")
        if self.balance not in BALANCE:
            raise ValueError(f"data.balance={self.balance!r}: choose one of {BALANCE}.")
        if self.eval_batch_size < 1:
            raise ValueError("data.eval_batch_size must be ≥ 1.")
        if self.target_len < 0 or self.num_beams < 1:
            raise ValueError(f"data.target_len={self.target_len} must be ≥ 0 (0 = the longest target) and "
                             f"data.num_beams={self.num_beams} ≥ 1 (1 = greedy).")
        if self.text_to_text and self.balance == "class_weights":
            raise ValueError("data.balance=class_weights weighs a classifier's loss; text to text trains on target "
                             "tokens: use data.balance=oversample or none.")
        return self


@dataclasses.dataclass(frozen=True)
class FinetuneTrain:
    """The loop.

    Attributes:
      steps: optimizer updates; 0 = `ceil(epochs · N / batch_size)`.
      epochs: passes over the (subset of the) training split when `steps` is 0 (BERT §4.1 used 3).
      batch_size: global batch.
      seed: init of the head, dropout, data order and the few-shot subset.
      warmup_ratio: warmup as a fraction of the steps (BERT's `warmup_proportion` 0.1); > 0 overrides
        `optim.warmup_steps`.
      log_every: steps between logged training metrics.
      eval_every: steps between validation evaluations; 0 = once per epoch, at most 10 times a run.
      eval_examples: validation examples used by those evaluations (0 = all; a seed-drawn subset otherwise).
      final_eval_examples: examples of each evaluation split (validation, test) that the final scores,
        `results.json` and `predictions/` use: 0 = the whole splits (what a reported score needs); N ≥ 1 = a
        subset of N drawn with `seed` (for smoke runs: text-to-text decoding of thousands of rows is slow on CPU).
        The evaluations during training draw their `eval_examples` from that subset. A capped run's results are
        not the task's scores: `llm_jax.eval.finetuned` rescoring a run uses the whole splits.
      patience: stop after this many evaluations without improvement of the first metric (0 = never).
      checkpoint_every: steps between checkpoints (0 = only at the end / on preemption).
      aux_lm_weight: λ of the auxiliary LM loss on the task inputs (GPT-1 §3.2: `task + λ · LM`, λ = 0.5 in
        §4.1), for causal families; 0 = none. `configs/finetune.py` takes the family's recipe value
        (`FINETUNE_TRAIN`: 0.5 for GPT-1; none for GPT-2/3, which their papers never fine-tune).
      max_to_keep / max_consecutive_skips / progress / stop_after: as in pretraining.
      prune: gradual magnitude pruning during fine-tuning (Zhu & Gupta 2017 §3, cubic sparsity schedule;
        `llm_jax.compression.pruning.gradual_magnitude_pruning`), as a spec
        `magnitude:S[,begin=STEP][,end=STEP][,every=STEPS][,per-matrix][,groups=REGEX]`: the chosen weights (by
        default the attention and FFN kernels of the stacks) reach sparsity S at step `end` (default: 75 % of the
        steps) from 0 at `begin` (default 0), masks recomputed every `every` steps (default: a tenth of the span),
        pruned weights held at exactly 0 to the end. Empty = none. Independently of it, a model directory written by
        magnitude pruning (config.json's `compression.prune`) keeps its zeros: the pruned weights' updates are
        masked for the whole run.
    """

    steps: int = 0
    epochs: float = 3.0
    batch_size: int = 32
    seed: int = 0
    warmup_ratio: float = 0.1
    log_every: int = 50
    eval_every: int = 0
    eval_examples: int = 0
    final_eval_examples: int = 0
    patience: int = 0
    checkpoint_every: int = 0
    aux_lm_weight: float = 0.0
    max_to_keep: int = 2
    max_consecutive_skips: int = 5
    progress: bool = True
    stop_after: int = 0
    prune: str = ""

    def validate(self) -> "FinetuneTrain":
        if self.steps < 0 or min(self.batch_size, self.log_every, self.max_to_keep, self.max_consecutive_skips) < 1 \
                or self.epochs <= 0:
            raise ValueError("train.steps must be ≥ 0, train.epochs > 0, and train.batch_size, log_every, max_to_keep "
                             "and max_consecutive_skips ≥ 1.")
        if min(self.eval_every, self.eval_examples, self.final_eval_examples, self.patience, self.checkpoint_every,
               self.stop_after) < 0:
            raise ValueError("train.eval_every, eval_examples, final_eval_examples, patience, checkpoint_every and "
                             "stop_after must be ≥ 0 (0 = every example / never).")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"train.warmup_ratio={self.warmup_ratio} must be in [0, 1).")
        if not self.aux_lm_weight >= 0.0:
            raise ValueError(f"train.aux_lm_weight={self.aux_lm_weight} must be ≥ 0 (0 = no auxiliary LM loss).")
        if self.prune:
            spec = parse_prune_spec(self.prune)
            if spec.method != "magnitude":
                raise ValueError(f"train.prune={self.prune!r}: fine-tuning prunes gradually to a target sparsity; use "
                                 "magnitude:S[,begin=STEP][,end=STEP][,every=STEPS][,per-matrix][,groups=REGEX].")
        return self


FT_SECTIONS = {"model": ModelSource, "task": TaskConfig, "data": FinetuneData, "optim": OptimConfig,
               "mesh": MeshConfig, "train": FinetuneTrain}


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Everything a fine-tuning run needs (sections as in `configs/finetune.py`)."""

    model: ModelSource
    task: TaskConfig
    data: FinetuneData
    optim: OptimConfig
    mesh: MeshConfig
    train: FinetuneTrain

    def to_dict(self) -> dict[str, Any]:
        return {name: dataclasses.asdict(getattr(self, name)) for name in FT_SECTIONS}


def config_from_dict(d: dict[str, Any]) -> FinetuneConfig:
    """A validated FinetuneConfig from a nested dict (e.g. `ConfigDict.to_dict()`); unknown keys are errors."""
    missing = [s for s in FT_SECTIONS if s not in d]
    extra = sorted(set(d) - set(FT_SECTIONS))
    if missing or extra:
        raise ValueError(f"A fine-tuning config has the sections {list(FT_SECTIONS)}; missing {missing}, unknown "
                         f"{extra}.")
    return FinetuneConfig(**{name: section(cls, dict(d[name]), name) for name, cls in FT_SECTIONS.items()})


# -------------------------------------------------------------------------------------------- data prep


def _take(arrays: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in arrays.items()}


def oversample_indices(labels: np.ndarray, seed: int) -> np.ndarray:
    """Indices that repeat each class's examples (cycling, from a seeded shuffle) up to the largest class's count."""
    rng = np.random.default_rng([seed, 15_485_863])
    classes, counts = np.unique(labels, return_counts=True)
    target = counts.max()
    out = []
    for c in classes:
        pool = rng.permutation(np.flatnonzero(labels == c))
        out.append(np.resize(pool, target))
    return np.sort(np.concatenate(out))


def _train_rows(task: Task, cfg: FinetuneConfig) -> list[dict]:
    """The training records: all of them, or the K-shot subset."""
    records = task.splits["train"]
    k = cfg.data.train_examples
    if k > 0:
        labels = labels_of(records) if task.spec.kind in ("classification", "multiple_choice") else None
        idx = few_shot_subset(labels, len(records), k, cfg.train.seed)
        records = [records[i] for i in idx]
    return records


def _eval_records(records: list[dict], n: int, seed: int) -> list[dict]:
    if not n or n >= len(records):
        return records
    idx = np.sort(np.random.default_rng([seed, 32_452_843]).choice(len(records), n, replace=False))
    return [records[i] for i in idx]


# ----------------------------------------------------------------------------------------------- helpers


def tokenizer_config(data: FinetuneData) -> DataConfig:
    """The tokenizer settings of a fine-tuning run as the pretraining pipeline's `DataConfig`."""
    return DataConfig(corpus=data.tokenizer_corpus, max_documents=data.tokenizer_max_documents,
                      vocab_size=data.vocab_size, tokenizer=data.tokenizer, lowercase=data.lowercase)


def _write_predictions(workdir: pathlib.Path, split: str, rows: list[dict]) -> None:
    if jax.process_index() != 0:
        return
    out = workdir / "predictions"
    out.mkdir(exist_ok=True)
    with (out / f"{split}.jsonl").open("w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def _pruning_transforms(cfg: "FinetuneConfig", tcfg: FinetuneTrain, init_params, boxed, total: int
                        ) -> tuple[list, dict]:
    """The optax transforms that keep a magnitude-pruned source's zeros (`keep_masked`, last) and prune gradually
    (`train.prune`), with what they do for summary.json.

    Raises:
      ValueError: a gradual schedule that ends after the run's last step (one line).
    """
    transforms, info = [], {}
    if tcfg.prune:
        spec = parse_prune_spec(tcfg.prune)
        begin = spec.begin or 0
        end = spec.end if spec.end is not None else max(begin + 1, int(0.75 * total))
        every = spec.every or max(1, (end - begin) // 10)
        if end > total:
            raise ValueError(f"train.prune={tcfg.prune!r} ends at step {end}, after the run's {total} steps; set "
                             f"end ≤ {total} or train longer.")
        transforms.append(gradual_magnitude_pruning(spec.amount, begin, end, every, spec.groups,
                                                    per_matrix=spec.per_matrix, layer_axes=layer_axes_of(boxed)))
        info.update(gradual=spec.text, gradual_groups=spec.group_regex, begin=begin, end=end, every=every)
    record = prune_record(cfg.model.name) if init_params is not None else None
    if record and str(record.get("method", "")).startswith("magnitude"):
        # A magnitude-pruned model: its zeros stay zeros (the masks come from the loaded weights themselves).
        masks = masks_for(init_params, record.get("groups"))
        transforms.append(keep_masked(masks))
        info.update(masked=record.get("spec"), masked_groups=record.get("groups"))
    return transforms, info


# ---------------------------------------------------------------------------------------------- the run


def finetune(cfg: FinetuneConfig, workdir: str | pathlib.Path) -> dict[str, Any]:
    """Fine-tunes (or resumes, or zero-shot scores) as configured; returns the results dict (also results.json).

    Args:
      cfg: a `FinetuneConfig`.
      workdir: run directory: config.json, tokenizer.json, checkpoints/, best/, metrics.jsonl, tensorboard/,
        predictions/, results.json, summary.json.
    """
    sharding.maybe_initialize_distributed()
    workdir = pathlib.Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    tcfg = cfg.train.validate()
    cfg.data.validate()
    text_to_text = cfg.data.text_to_text
    task = load_task(cfg.task)
    task = Task(with_metrics(task.spec, cfg.task.metrics), task.splits)
    spec = task.spec
    source = resolve_model(cfg.model, tokenizer_config(cfg.data), workdir)
    fam = models.family_module(source.family)
    if tcfg.aux_lm_weight > 0 and fam.LM_KIND != "causal":
        raise ValueError(f"train.aux_lm_weight={tcfg.aux_lm_weight}: the auxiliary LM loss needs a causal LM, and "
                         f"{source.family} is a {fam.LM_KIND} LM; set train.aux_lm_weight=0.")
    # The family's task tokens (GPT-1's start / delimiter / extract) and template; the vocabulary grows by the
    # tokens added, and the pretrained token table by as many fresh rows (`heads.transplant_trunk`).
    pretrained_vocab = source.config.vocab_size
    source, roles = for_task_inputs(source)
    if cfg.data.seq_len > source.config.max_seq_len:
        raise ValueError(f"data.seq_len={cfg.data.seq_len} is longer than the model's {source.config.max_seq_len} "
                         "positions; shorten it.")

    resolved = {"family": source.family, "model": dataclasses.asdict(source.config), "source": source.description,
                **{k: v for k, v in cfg.to_dict().items() if k != "model"},
                "model_source": dataclasses.asdict(cfg.model)}
    check_workdir(workdir, resolved, keys=("family", "model", "source", "task", "data"))
    write_json(workdir / "config.json", resolved)
    saved = workdir / "tokenizer.json"
    if jax.process_index() == 0 and (not saved.exists() or load_tokenizer(saved).to_str() != source.tokenizer.to_str()):
        save_tokenizer(source.tokenizer, workdir)  # the run directory is self-contained, task tokens included
    if text_to_text:
        TextToTextObjective(source.family, source.config)  # refuses a family without text-to-text fine-tuning
        if source.config.vocab_size != pretrained_vocab and source.params is not None:
            raise ValueError(f"The {source.family} tokenizer gained task tokens, which text-to-text fine-tuning of the "
                             "pretraining model cannot hold; use data.text_to_text=False.")
    if cfg.data.train_examples == 0:
        if text_to_text:
            raise ValueError("data.train_examples=0 (zero-shot cloze) scores a masked LM; text to text needs "
                             "training examples (K ≥ 1, or -1 for all).")
        scored = zero_shot(source.family, source.config, source.params, source.tokenizer, task,
                           seq_len=cfg.data.seq_len, batch_size=cfg.data.eval_batch_size, seed=tcfg.seed)
        results = {split: m for split, (m, _) in scored.items()}
        for split, (_, rows) in scored.items():
            _write_predictions(workdir, split, rows)
        write_json(workdir / RESULTS_FILE, results)
        write_json(workdir / "summary.json", {"task": spec.name, "model": source.description, "train_examples": 0,
                                              "mode": "zero-shot cloze", "results": results})
        return results

    # ---- data
    t0 = time.time()
    enc_kw = dict(doc_stride=cfg.data.doc_stride, max_query_length=cfg.data.max_query_length,
                  type_vocab_size=source.config.num_token_types, fmt=fam.INPUT_FORMAT, roles=roles,
                  symmetric=spec.symmetric)
    train_records = _train_rows(task, cfg)
    if text_to_text:
        labels = text_labels(spec, source.tokenizer)
        target_len = cfg.data.target_len or longest_target(
            source.tokenizer, labels, [r for records in task.splits.values() for r in records])

        def encode_split(records):
            return encode_text_to_text(source.tokenizer, spec, labels, records, cfg.data.seq_len, target_len, roles)
    else:
        def encode_split(records):
            return encode(spec.kind, source.tokenizer, records, cfg.data.seq_len, **enc_kw)
    train = encode_split(train_records)
    check_token_ids(train.arrays["inputs"], source.config.vocab_size)
    train_arrays = dict(train.arrays, weight=np.ones(len(train), np.float32))
    cw = None
    if cfg.data.balance != "none":
        if spec.kind != "classification":
            raise ValueError(f"data.balance={cfg.data.balance} needs a classification task ({spec.name} is "
                             f"{spec.kind}); use data.balance=none.")
        if cfg.data.balance == "class_weights":
            cw = class_weights(train_arrays["labels"], spec.num_labels)
        else:
            train_arrays = _take(train_arrays, oversample_indices(train_arrays["labels"], tcfg.seed))
    n_train = len(train_arrays["inputs"])
    eval_records = {s: _eval_records(r, tcfg.final_eval_examples, tcfg.seed)
                    for s, r in task.splits.items() if s != "train" and r}
    encoded = {s: encode_split(r) for s, r in eval_records.items()}
    early_records = _eval_records(eval_records["validation"], tcfg.eval_examples, tcfg.seed)
    early_encoded = (encoded["validation"] if early_records is eval_records["validation"] else
                     encode_split(early_records))
    log.info("Encoded %s: %d training rows, %s in %.1fs", spec.name, n_train,
             {s: len(e) for s, e in encoded.items()}, time.time() - t0)

    # ---- model, optimizer, state
    mesh = sharding.make_mesh(cfg.mesh)
    rules = sharding.rules_for(cfg.mesh.rules)
    ways = sharding.batch_axis_size(mesh)
    if tcfg.batch_size % (ways * cfg.optim.grad_accum_steps) or tcfg.batch_size % jax.process_count():
        raise ValueError(f"train.batch_size={tcfg.batch_size} must be divisible by optim.grad_accum_steps × the "
                         f"{ways} data-parallel shards, and by the {jax.process_count()} processes.")
    steps_per_epoch = max(1, math.ceil(n_train / tcfg.batch_size))
    total = tcfg.steps or max(1, math.ceil(tcfg.epochs * n_train / tcfg.batch_size))
    optim_cfg = cfg.optim
    if tcfg.warmup_ratio > 0:
        optim_cfg = dataclasses.replace(optim_cfg, warmup_steps=int(tcfg.warmup_ratio * total))
    eval_every = tcfg.eval_every or max(steps_per_epoch, math.ceil(total / 10))
    if text_to_text:  # the pretraining model writes the target text: no head (T5 §2.4)
        model = models.build(source.family, source.config)
        objective = TextToTextObjective(source.family, source.config)
    else:
        model = heads.build(source.family, source.config, spec.kind, spec.num_labels, cfg.model.classifier_dropout)
        objective = TaskObjective(spec.kind, cw, tcfg.aux_lm_weight)
    dummy = {k: np.zeros((tcfg.batch_size,) + v.shape[1:], v.dtype) for k, v in train_arrays.items()}
    init_params = None
    if source.params is not None and text_to_text:
        init_params = source.params
    elif source.params is not None:
        one = {k: v[:1] for k, v in dummy.items()}
        fresh = nn.meta.unbox(jax.jit(lambda k: step_lib.init_variables(model, objective, one, {"params": k})[
            "params"])(jax.random.key(tcfg.seed)))
        init_params, _ = heads.transplant_trunk(source.family, fresh, source.params,
                                                vocab_sizes=(pretrained_vocab, source.config.vocab_size))
    # The boxed abstract params carry the logical `layers` axis that layer-wise LR decay reads depth from.
    boxed = step_lib.abstract_params(model, objective, dummy)
    pruning, prune_info = _pruning_transforms(cfg, tcfg, init_params, boxed, total)
    tx, schedule = make_optimizer(optim_cfg, total, params=boxed, extra_transforms=pruning)
    state, shardings = step_lib.create_state(model, objective, tx, dummy, mesh, rules, tcfg.seed,
                                             params=init_params)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))

    ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=tcfg.max_to_keep)
    start_step = 0
    restored = ckpt.restore_latest(abstract_like(state))
    if restored is not None:
        start_step, state, _ = restored
        log.info("Resumed from checkpoint step %d in %s", start_step, ckpt.directory)

    loss_fn = objective.make_loss(model)
    train_step = step_lib.jit_train_step(
        step_lib.make_train_step(loss_fn, tx, schedule, seed=tcfg.seed, grad_accum_steps=optim_cfg.grad_accum_steps,
                                 denominators_fn=objective.loss_denominators),
        shardings, mesh, dummy)
    loader = DeterministicLoader(train_arrays, tcfg.batch_size, seed=tcfg.seed, process_index=jax.process_index(),
                                 process_count=jax.process_count())
    if text_to_text:
        predictor = TextPredictor(source.family, source.config, source.tokenizer, cfg.data.eval_batch_size,
                                  target_len, cfg.data.num_beams)
    else:
        predictor = Predictor(model, spec.kind, mesh, cfg.data.eval_batch_size)
    best = BestKeeper(workdir / "best", spec.main_metric, tcfg.patience)

    def score_split(params, split, records, enc):
        if text_to_text:
            return score_texts(spec, labels, split, records, predictor(params, enc.arrays))
        return score(spec, split, records, enc, predictor(params, enc.arrays),
                     max_answer_length=cfg.data.max_answer_length)

    def evaluate(state) -> dict[str, float]:
        m, _ = score_split(state.params, "validation", early_records, early_encoded)
        return {f"eval_{k}": v for k, v in m.items()}

    writer = MetricWriter(workdir)
    if jax.process_index() == 0:
        how = ""
        if text_to_text:
            how = (f", text to text: targets of {target_len} tokens, "
                   f"{'greedy' if cfg.data.num_beams == 1 else f'beam search ({cfg.data.num_beams} beams)'} decoding")
        print(f"[llm-jax] finetune {source.family} ({source.description}) on {spec.name} ({spec.kind}, "
              f"{spec.num_labels} labels{how}): {n_params:,} parameters | {n_train:,} training rows of {cfg.data.seq_len} "
              f"tokens | batch {tcfg.batch_size} | steps {start_step}→{total} | eval every {eval_every}", flush=True)
        if prune_info.get("masked"):
            print(f"[llm-jax] pruned model ({prune_info['masked']}): its zeros are kept (masked updates)", flush=True)
        if prune_info.get("gradual"):
            target = parse_prune_spec(tcfg.prune).amount
            print(f"[llm-jax] gradual pruning {prune_info['gradual']}: sparsity 0 → {target} from step "
                  f"{prune_info['begin']} to {prune_info['end']}, masks every {prune_info['every']} steps", flush=True)
    end = min(total, tcfg.stop_after) if tcfg.stop_after else total
    if best.exhausted:
        end = start_step  # stopped early before: nothing left to train
    t_train = time.time()
    keys = tuple(dummy)
    with step_lib.mesh_context(mesh, rules):
        result = run_loop(
            state=state, train_step=train_step,
            batch_fn=lambda s: sharding.global_batch_from_local(
                {k: v for k, v in loader.local_batch(s).items() if k in keys}, mesh),
            start_step=start_step, end_step=end, total_steps=total, log_every=tcfg.log_every,
            checkpointer=ckpt, checkpoint_every=tcfg.checkpoint_every,
            meta_fn=lambda s: {"step": int(s), "config": resolved},
            writer=writer, tokens_per_step=tcfg.batch_size * cfg.data.seq_len,
            eval_every=eval_every, evaluate=evaluate, on_eval=best.update,
            max_consecutive_skips=tcfg.max_consecutive_skips, progress=tcfg.progress, desc=f"finetune {spec.name}",
            postfix_keys=("loss", "accuracy", f"eval_{spec.main_metric}"))
        train_seconds = time.time() - t_train
        ckpt.close()
        writer.close()
        summary = {"task": spec.name, "kind": spec.kind, "model": source.description, "family": source.family,
                   "parameters": n_params, "train_examples": len(train_records), "train_rows": n_train,
                   "steps": total, "start_step": start_step, "end_step": result.end_step,
                   "stopped_early": result.stopped_early or best.exhausted, "preempted": result.preempted,
                   "train_seconds": train_seconds, "best_step": best.meta["step"],
                   "best_validation": best.meta["value"], "eval_history": best.meta["history"]}
        if prune_info:
            groups = [g for g in (prune_info.get("masked_groups"), prune_info.get("gradual_groups")) if g]
            prune_info["final_sparsity"] = {g: measured_sparsity(result.state.params, g) for g in groups}
            summary["pruning"] = prune_info
        if text_to_text:
            summary["text_to_text"] = {"input_template": spec.text.input, "targets": list(labels.words),
                                       "target_len": target_len, "num_beams": cfg.data.num_beams}
        if result.preempted:
            summary["results"] = None
            write_json(workdir / "summary.json", summary)
            return {"preempted": True, "end_step": result.end_step, "summary": summary}

        # ---- final scores with the best params
        best_params = best.load(abstract_like(result.state.params))
        params = result.state.params if best_params is None else best_params
        results: dict[str, dict[str, float]] = {}
        for split, records in eval_records.items():
            m, rows = score_split(params, split, records, encoded[split])
            base = majority_baseline(spec, task.splits["train"], split, records)
            results[split] = {**m, **({"majority_baseline": base} if base is not None else {})}
            _write_predictions(workdir, split, rows)
    write_json(workdir / RESULTS_FILE, results)
    summary["results"] = results
    write_json(workdir / "summary.json", summary)
    return results


__all__ = ["FinetuneConfig", "FinetuneData", "FinetuneTrain", "RESULTS_FILE", "config_from_dict", "finetune",
           "oversample_indices", "tokenizer_config"]
