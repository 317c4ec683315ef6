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
  `DIR/predictions/{validation,test}.jsonl`, plus `summary.json` (steps, best step, timings).

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
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from llm_jax import models, sharding
from llm_jax.config import section
from llm_jax.data.features import Encoded, encode
from llm_jax.data.loader import DeterministicLoader
from llm_jax.data.tasks import Task, TaskConfig, few_shot_subset, labels_of, load_task, with_metrics
from llm_jax.data.tokenizer import load_tokenizer, save_tokenizer, special_ids, train_tokenizer
from llm_jax.eval import metrics as metrics_lib
from llm_jax.eval.predict import Predictor, majority_baseline, score
from llm_jax.models import heads
from llm_jax.objectives.finetune import class_weights, make_loss
from llm_jax.sharding import MeshConfig
from llm_jax.train import step as step_lib
from llm_jax.train.checkpoint import Checkpointer
from llm_jax.train.metrics import MetricWriter
from llm_jax.train.optim import OptimConfig, make_optimizer
from llm_jax.train.runner import run_loop

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
BALANCE = ("none", "class_weights", "oversample")


# ------------------------------------------------------------------------------------------------ config


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """Where the model comes from, and the run-time choices that the checkpoint does not fix.

    Attributes:
      name: a preset (`bert-tiny`, `roberta-base`, ...: random init), or a directory: a run of ours, one of its
        checkpoint steps, a model directory, or a Hugging Face checkpoint.
      random_init: take only the architecture (and tokenizer) from `name` and start from random weights — the
        "from scratch" control of a transfer-learning comparison.
      hidden_dropout / attention_dropout: the trunk's dropout during fine-tuning (BERT §4: 0.1).
      classifier_dropout: dropout before the output layer (HF's `classifier_dropout`).
      dtype / remat / scan_unroll / attention_impl: numerics, memory and speed (see the family Config). Unlike pretraining, the layer
        scan stays rolled by default: fine-tuning runs are short, and the rolled loop compiles about twice as fast.
    """

    name: str = "bert-tiny"
    random_init: bool = False
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    classifier_dropout: float = 0.1
    dtype: str = "float32"
    remat: str = "none"
    scan_unroll: bool = False
    attention_impl: str = "einsum"

    def validate(self) -> "ModelSource":
        for k in ("hidden_dropout", "attention_dropout", "classifier_dropout"):
            if not 0.0 <= getattr(self, k) < 1.0:
                raise ValueError(f"model.{k}={getattr(self, k)} must be in [0, 1).")
        return self


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
      eval_batch_size: rows per evaluation forward pass.
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

    def validate(self) -> "FinetuneData":
        if self.seq_len < 8:
            raise ValueError(f"data.seq_len={self.seq_len} is too short; use at least 8 tokens.")
        if self.train_examples < -1:
            raise ValueError(f"data.train_examples={self.train_examples}: use -1 (all), 0 (zero-shot) or K ≥ 1.")
        if self.balance not in BALANCE:
            raise ValueError(f"data.balance={self.balance!r}: choose one of {BALANCE}.")
        if self.eval_batch_size < 1:
            raise ValueError("data.eval_batch_size must be ≥ 1.")
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
        The final validation and test scores always use the whole splits.
      patience: stop after this many evaluations without improvement of the first metric (0 = never).
      checkpoint_every: steps between checkpoints (0 = only at the end / on preemption).
      max_to_keep / max_consecutive_skips / progress / stop_after: as in pretraining.
    """

    steps: int = 0
    epochs: float = 3.0
    batch_size: int = 32
    seed: int = 0
    warmup_ratio: float = 0.1
    log_every: int = 50
    eval_every: int = 0
    eval_examples: int = 0
    patience: int = 0
    checkpoint_every: int = 0
    max_to_keep: int = 2
    max_consecutive_skips: int = 5
    progress: bool = True
    stop_after: int = 0

    def validate(self) -> "FinetuneTrain":
        if self.steps < 0 or self.batch_size < 1 or self.log_every < 1 or self.epochs <= 0:
            raise ValueError("train.steps must be ≥ 0, train.epochs > 0, train.batch_size and train.log_every ≥ 1.")
        if min(self.eval_every, self.eval_examples, self.patience, self.checkpoint_every, self.stop_after) < 0:
            raise ValueError("train.eval_every, eval_examples, patience, checkpoint_every, stop_after must be ≥ 0.")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"train.warmup_ratio={self.warmup_ratio} must be in [0, 1).")
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


# ------------------------------------------------------------------------------------------ model source


@dataclasses.dataclass
class Source:
    """A resolved model source: family, Config, pretrained params (None = random init) and tokenizer."""

    family: str
    config: Any
    params: dict | None
    tokenizer: Any
    description: str


def _train_tokenizer(cfg: FinetuneConfig, family: str, workdir: pathlib.Path):
    saved = workdir / "tokenizer.json"
    if saved.exists():
        return load_tokenizer(saved)
    if cfg.data.tokenizer:
        return load_tokenizer(cfg.data.tokenizer)
    from llm_jax.data.corpus import load_documents  # why lazy: only presets without a tokenizer read the corpus

    t0 = time.time()
    docs = load_documents(cfg.data.tokenizer_corpus, "train", max_documents=cfg.data.tokenizer_max_documents or None)
    kind = models.family_module(family).TOKENIZER_KIND
    tok = train_tokenizer(kind, docs, cfg.data.vocab_size,
                          **({"lowercase": cfg.data.lowercase} if kind == "wordpiece" else {}))
    log.info("Trained a %s tokenizer (%d entries) on %s in %.1fs", kind, tok.get_vocab_size(),
             cfg.data.tokenizer_corpus, time.time() - t0)
    return tok


def resolve_model(cfg: FinetuneConfig, workdir: pathlib.Path) -> Source:
    """The family, Config, params and tokenizer named by `cfg.model` (see `ModelSource`)."""
    name = cfg.model.name
    runtime = {"hidden_dropout": cfg.model.hidden_dropout, "attention_dropout": cfg.model.attention_dropout,
               "dtype": cfg.model.dtype, "remat": cfg.model.remat, "scan_unroll": cfg.model.scan_unroll,
               "attention_impl": cfg.model.attention_impl}
    if name in models.all_presets():
        family, config = models.get_preset(name)
        tok = _train_tokenizer(cfg, family, workdir)
        sp = special_ids(tok)
        config = dataclasses.replace(config, vocab_size=tok.get_vocab_size(), pad_token_id=sp.pad, **runtime)
        return Source(family, config.validate(), None, tok, f"{name} (random init)")
    path = pathlib.Path(name).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"model.name={name!r} is neither a preset ({', '.join(sorted(models.all_presets()))}) "
                                "nor an existing directory (a run, checkpoint step, model or Hugging Face directory).")
    from llm_jax.interop.native import load_pretrained  # why lazy: only runs that start from given weights

    family, config, params, tok = load_pretrained(path)
    if tok is None:
        raise FileNotFoundError(f"{path} has no tokenizer beside its weights; the token ids must come from the "
                                "tokenizer the model was trained with.")
    config = dataclasses.replace(config, **runtime).validate()
    if cfg.model.random_init:
        return Source(family, config, None, tok, f"{path} architecture (random init)")
    return Source(family, config, params, tok, str(path))


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


def _check_workdir(workdir: pathlib.Path, resolved: dict[str, Any]) -> None:
    path = workdir / "config.json"
    if not path.exists():
        return
    old = json.loads(path.read_text())
    differing = [k for k in ("family", "model", "source", "task", "data") if old.get(k) != resolved.get(k)]
    if differing:
        raise ValueError(f"{workdir} holds a run with a different {', '.join(differing)}; resume it with its own "
                         f"config (see {path}) or choose a new --workdir.")


def _write_json(path: pathlib.Path, obj: Any) -> None:
    if jax.process_index() == 0:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(obj, indent=2) + "\n")
        tmp.replace(path)


def _write_predictions(workdir: pathlib.Path, split: str, rows: list[dict]) -> None:
    if jax.process_index() != 0:
        return
    out = workdir / "predictions"
    out.mkdir(exist_ok=True)
    with (out / f"{split}.jsonl").open("w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def _better(value: float, best: float | None, metric: str) -> bool:
    if best is None:
        return True
    return value < best if metric in metrics_lib.LOWER_IS_BETTER else value > best


class BestKeeper:
    """Keeps the params of the best evaluation so far, on disk (`DIR/best/`) and as a device copy.

    `update(step, metrics, state)` returns whether training should stop (patience exhausted). The record in
    `best/meta.json` (step, value, evaluations since) lets a resumed run continue the same early stopping.
    """

    def __init__(self, directory: pathlib.Path, metric: str, patience: int):
        self.directory, self.metric, self.patience = directory, metric, patience
        self.meta: dict[str, Any] = {"step": None, "value": None, "evals_since_best": 0, "history": []}
        self.params = None
        if (directory / "meta.json").exists():
            self.meta = json.loads((directory / "meta.json").read_text())

    @property
    def exhausted(self) -> bool:
        return bool(self.patience) and self.meta["evals_since_best"] >= self.patience

    def update(self, step: int, metrics: dict[str, float], state) -> bool:
        value = metrics[f"eval_{self.metric}"]
        self.meta["history"].append({"step": int(step), self.metric: value})
        if _better(value, self.meta["value"], self.metric):
            # A copy on the devices, in the params' own sharding: the next step donates the state's buffers.
            self.params = jax.tree.map(jnp.copy, state.params)
            self.meta.update(step=int(step), value=value, evals_since_best=0)
            with ocp.StandardCheckpointer() as ckptr:  # every process takes part (multi-host saves)
                ckptr.save(self.directory.absolute() / "params", self.params, force=True)
        else:
            self.meta["evals_since_best"] += 1
        if jax.process_index() == 0:
            self.directory.mkdir(parents=True, exist_ok=True)
            _write_json(self.directory / "meta.json", self.meta)
        return self.exhausted

    def load(self, abstract_params):
        """The best params (from memory, else from disk onto `abstract_params`), or None if never evaluated."""
        if self.params is not None:
            return self.params
        if self.meta["step"] is None or not (self.directory / "params").exists():
            return None
        with ocp.StandardCheckpointer() as ckptr:
            return ckptr.restore(self.directory.absolute() / "params", abstract_params)


# ---------------------------------------------------------------------------------------------- the run


def _zero_shot(cfg: FinetuneConfig, task: Task, source: Source, workdir: pathlib.Path) -> dict[str, Any]:
    from llm_jax.eval.cloze import cloze_scores  # why lazy: only K = 0 scores by cloze

    if task.spec.kind != "classification":
        raise ValueError(f"Zero-shot (data.train_examples=0) scores classification tasks by cloze; {task.spec.name} "
                         f"is a {task.spec.kind} task.")
    params = source.params
    if params is None:
        model = models.build(source.family, source.config)
        dummy = np.zeros((1, 8), np.int32)
        params = nn.meta.unbox(jax.jit(lambda k: model.init(k, dummy, mlm_positions_BP=np.zeros((1, 1), np.int32)))(
            jax.random.key(cfg.train.seed))["params"])
    results: dict[str, dict[str, float]] = {}
    train = task.splits["train"]
    for split in ("validation", "test"):
        records = task.splits.get(split)
        if not records:
            continue
        scores = cloze_scores(source.family, source.config, params, source.tokenizer, task.spec, records,
                              cfg.data.seq_len, cfg.data.eval_batch_size)
        outputs = {"logits": scores}
        enc = Encoded({"inputs": np.zeros((len(records), 1), np.int32)})
        m, rows = score(task.spec, split, records, enc, outputs)
        base = majority_baseline(task.spec, train, split, records)
        results[split] = {**m, **({"majority_baseline": base} if base is not None else {})}
        _write_predictions(workdir, split, rows)
    _write_json(workdir / RESULTS_FILE, results)
    _write_json(workdir / "summary.json", {"task": task.spec.name, "model": source.description,
                                           "train_examples": 0, "mode": "zero-shot cloze", "results": results})
    return results


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
    task = load_task(cfg.task)
    task = Task(with_metrics(task.spec, cfg.task.metrics), task.splits)
    spec = task.spec
    source = resolve_model(cfg, workdir)
    if jax.process_index() == 0 and not (workdir / "tokenizer.json").exists():
        save_tokenizer(source.tokenizer, workdir)  # the run directory is self-contained
    if cfg.data.seq_len > source.config.max_seq_len:
        raise ValueError(f"data.seq_len={cfg.data.seq_len} is longer than the model's {source.config.max_seq_len} "
                         "positions; shorten it.")

    resolved = {"family": source.family, "model": dataclasses.asdict(source.config), "source": source.description,
                **{k: v for k, v in cfg.to_dict().items() if k != "model"},
                "model_source": dataclasses.asdict(cfg.model)}
    _check_workdir(workdir, resolved)
    _write_json(workdir / "config.json", resolved)
    if cfg.data.train_examples == 0:
        return _zero_shot(cfg, task, source, workdir)

    # ---- data
    t0 = time.time()
    enc_kw = dict(doc_stride=cfg.data.doc_stride, max_query_length=cfg.data.max_query_length,
                  type_vocab_size=source.config.type_vocab_size)
    train_records = _train_rows(task, cfg)
    train = encode(spec.kind, source.tokenizer, train_records, cfg.data.seq_len, **enc_kw)
    if train.arrays["inputs"].max() >= source.config.vocab_size:
        raise ValueError(f"Token ids reach {train.arrays['inputs'].max()} but the model has {source.config.vocab_size} "
                         "embeddings; use the tokenizer the model was trained with.")
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
    eval_records = {s: r for s, r in task.splits.items() if s != "train" and r}
    encoded = {s: encode(spec.kind, source.tokenizer, r, cfg.data.seq_len, **enc_kw) for s, r in eval_records.items()}
    early_records = _eval_records(eval_records["validation"], tcfg.eval_examples, tcfg.seed)
    early_encoded = (encoded["validation"] if early_records is eval_records["validation"] else
                     encode(spec.kind, source.tokenizer, early_records, cfg.data.seq_len, **enc_kw))
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
    model = heads.build(source.family, source.config, spec.kind, spec.num_labels, cfg.model.classifier_dropout)
    tx, schedule = make_optimizer(optim_cfg, total)
    dummy = {k: np.zeros((tcfg.batch_size,) + v.shape[1:], v.dtype) for k, v in train_arrays.items()}
    init_params = None
    if source.params is not None:
        one = {k: dummy[k][:1] for k in ("inputs", "mask", "segment_ids")}
        fresh = nn.meta.unbox(jax.jit(lambda k: model.init({"params": k}, one["inputs"], mask_BT=one["mask"],
                                                           segment_ids_BT=one["segment_ids"])["params"])(
            jax.random.key(tcfg.seed)))
        init_params, _ = heads.transplant_trunk(source.family, fresh, source.params)
    state, shardings = step_lib.create_state(model, tx, dummy, mesh, rules, tcfg.seed, params=init_params)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))

    ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=tcfg.max_to_keep)
    start_step = 0
    restored = ckpt.restore_latest(jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state))
    if restored is not None:
        start_step, state, _ = restored
        log.info("Resumed from checkpoint step %d in %s", start_step, ckpt.directory)

    loss_fn = make_loss(model, spec.kind, cw)
    train_step = step_lib.jit_train_step(
        step_lib.make_train_step(loss_fn, tx, schedule, seed=tcfg.seed, grad_accum_steps=optim_cfg.grad_accum_steps),
        shardings, mesh, dummy)
    loader = DeterministicLoader(train_arrays, tcfg.batch_size, seed=tcfg.seed, process_index=jax.process_index(),
                                 process_count=jax.process_count())
    predictor = Predictor(model, spec.kind, mesh, cfg.data.eval_batch_size)
    best = BestKeeper(workdir / "best", spec.main_metric, tcfg.patience)

    def evaluate(state) -> dict[str, float]:
        outputs = predictor(state.params, early_encoded.arrays)
        m, _ = score(spec, "validation", early_records, early_encoded, outputs,
                     max_answer_length=cfg.data.max_answer_length)
        return {f"eval_{k}": v for k, v in m.items()}

    writer = MetricWriter(workdir)
    if jax.process_index() == 0:
        print(f"[llm-jax] finetune {source.family} ({source.description}) on {spec.name} ({spec.kind}, "
              f"{spec.num_labels} labels): {n_params:,} parameters | {n_train:,} training rows of {cfg.data.seq_len} "
              f"tokens | batch {tcfg.batch_size} | steps {start_step}→{total} | eval every {eval_every}", flush=True)
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
            meta_fn=lambda s: {"step": int(s), "loader_step": int(s), "config": resolved},
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
        if result.preempted:
            summary["results"] = None
            _write_json(workdir / "summary.json", summary)
            return {"preempted": True, "end_step": result.end_step, "summary": summary}

        # ---- final scores with the best params
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                                result.state.params)
        best_params = best.load(abstract)
        params = result.state.params if best_params is None else best_params
        results: dict[str, dict[str, float]] = {}
        for split, records in eval_records.items():
            outputs = predictor(params, encoded[split].arrays)
            m, rows = score(spec, split, records, encoded[split], outputs, max_answer_length=cfg.data.max_answer_length)
            base = majority_baseline(spec, task.splits["train"], split, records)
            results[split] = {**m, **({"majority_baseline": base} if base is not None else {})}
            _write_predictions(workdir, split, rows)
    _write_json(workdir / RESULTS_FILE, results)
    summary["results"] = results
    _write_json(workdir / "summary.json", summary)
    return results


__all__ = ["BestKeeper", "FinetuneConfig", "FinetuneData", "FinetuneTrain", "ModelSource", "RESULTS_FILE",
           "config_from_dict", "finetune", "oversample_indices", "resolve_model"]
