"""A finished fine-tuning run reloaded for scoring: its task model, best params, tokenizer and encoded splits.

    run = load_finetuned("runs/ft-supersense")
    metrics, rows = run.score(run.params, "test")              # = results.json["test"] (the best params)
    metrics, _ = run.score(pruned_params, "test", config=smaller_config)   # a transformed copy of the model

What `llm-jax finetune DIR` leaves — `config.json` (the resolved run config), `tokenizer.json` (with the family's
task tokens), `best/params` (the params of the best validation evaluation) — is all this needs: the task model is
`heads.build(family, config, kind, num_labels)` as during fine-tuning, and every split is encoded exactly as the
run encoded it (same tokenizer, roles, input format and `data.seq_len`), so scoring the best params reproduces the
run's `results.json`. Compression benchmarks score pruned or quantized copies of a fine-tuned classifier this way
(`benchmarks/compression.py`). Head-based runs only: a text-to-text run (T5) has no task head and is scored by
decoding (`llm_jax.eval.text_to_text`).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import flax.linen as nn
import jax
import orbax.checkpoint as ocp

from llm_jax import models, sharding
from llm_jax.data.features import Encoded, encode
from llm_jax.data.input_format import finetuning_tokenizer
from llm_jax.data.tasks import Task, TaskConfig, load_task, with_metrics
from llm_jax.data.tokenizer import load_tokenizer
from llm_jax.eval.predict import Predictor, score
from llm_jax.models import heads


@dataclasses.dataclass
class FinetunedRun:
    """A fine-tuning run's task model and data (see the module docstring).

    Attributes:
      family / config: the family and the fine-tuned model's Config (vocabulary grown by the task tokens).
      task: the task (spec with the run's metrics, and its splits' records).
      tokenizer / roles: the run's tokenizer and the role map task encoding uses.
      seq_len / eval_batch_size: the run's `data.seq_len` and `data.eval_batch_size`.
      params: the best params (`best/params`), host arrays.
      run_config: the resolved run config (`config.json`).
    """

    family: str
    config: Any
    task: Task
    tokenizer: Any
    roles: dict[str, str]
    seq_len: int
    eval_batch_size: int
    params: dict
    run_config: dict[str, Any]
    _encoded: dict[str, Encoded] = dataclasses.field(default_factory=dict, repr=False)

    def model(self, config=None) -> heads.ForTask:
        """The task model for `config` (default: the run's; a neuron-pruned copy has a smaller one)."""
        spec = self.task.spec
        return heads.build(self.family, config or self.config, spec.kind, spec.num_labels,
                           self.run_config["model_source"].get("classifier_dropout"))

    def encoded(self, split: str) -> Encoded:
        """`split` encoded as the run encoded it (cached).

        Raises:
          ValueError: a split the task does not have.
        """
        if split not in self.task.splits or not self.task.splits[split]:
            raise ValueError(f"Task {self.task.spec.name} has no {split!r} split; it has "
                             f"{sorted(s for s, r in self.task.splits.items() if r)}.")
        if split not in self._encoded:
            data = self.run_config["data"]
            spec, fam = self.task.spec, models.family_module(self.family)
            self._encoded[split] = encode(
                spec.kind, self.tokenizer, self.task.splits[split], self.seq_len, doc_stride=data["doc_stride"],
                max_query_length=data["max_query_length"], type_vocab_size=self.config.num_token_types,
                fmt=fam.INPUT_FORMAT, roles=self.roles, symmetric=spec.symmetric)
        return self._encoded[split]

    def score(self, params, split: str, *, model=None, config=None,
              batch_size: int | None = None) -> tuple[dict[str, float], list[dict]]:
        """The task's metrics and per-example predictions of `params` on `split`.

        Args:
          params: params of `model` (default: `self.model(config)`).
          model: a module with the task model's call signature (e.g. a quantized copy of it).
          config: the Config of `params` when it differs from the run's (a neuron-pruned model).
          batch_size: rows per forward pass (default: the run's `data.eval_batch_size`).
        """
        model = model if model is not None else self.model(config)
        mesh = sharding.make_mesh(sharding.MeshConfig())
        predictor = Predictor(model, self.task.spec.kind, mesh, batch_size or self.eval_batch_size)
        enc = self.encoded(split)
        data = self.run_config["data"]
        return score(self.task.spec, split, self.task.splits[split], enc, predictor(params, enc.arrays),
                     max_answer_length=data["max_answer_length"])


def load_finetuned(workdir: str | pathlib.Path) -> FinetunedRun:
    """Reloads a fine-tuning run directory (see the module docstring).

    Raises:
      FileNotFoundError: the directory lacks `config.json`, `tokenizer.json` or `best/params` (not a fine-tuning
        run, or one that never evaluated): say which.
      ValueError: a text-to-text run (no task head), or a config.json that is not a fine-tuning run's.
    """
    run = pathlib.Path(workdir).absolute()
    for need in ("config.json", "tokenizer.json", "best/params"):
        if not (run / need).exists():
            raise FileNotFoundError(f"{run / need} is missing: point at the directory `llm-jax finetune` wrote "
                                    "(it keeps the best params in best/ once it has evaluated).")
    cfg = json.loads((run / "config.json").read_text(encoding="utf-8"))
    if not {"family", "model", "task", "data"} <= set(cfg):
        raise ValueError(f"{run / 'config.json'} is not a fine-tuning run's config (it lacks family / model / task / "
                         "data); point at the directory `llm-jax finetune` wrote.")
    if cfg["data"].get("text_to_text"):
        raise ValueError(f"{run} is a text-to-text run: it has no task head to reload; score it by decoding "
                         "(`llm-jax finetune` re-scores a finished run in place).")
    family = cfg["family"]
    config = models.make_config(family, **cfg["model"])
    task = load_task(TaskConfig(**cfg["task"]))
    task = Task(with_metrics(task.spec, cfg["task"]["metrics"]), task.splits)
    fam = models.family_module(family)
    ready = finetuning_tokenizer(load_tokenizer(run / "tokenizer.json"), fam.INPUT_FORMAT, fam.TOKENIZER.roles)
    out = FinetunedRun(family=family, config=config, task=task, tokenizer=ready.tokenizer, roles=dict(ready.roles),
                       seq_len=int(cfg["data"]["seq_len"]), eval_batch_size=int(cfg["data"]["eval_batch_size"]),
                       params={}, run_config=cfg)
    model = out.model()
    split = next(s for s in ("validation", "test", "train") if task.splits.get(s))
    row = {k: v[:1] for k, v in out.encoded(split).arrays.items()}  # one row in the run's input shape
    abstract = nn.meta.unbox(jax.eval_shape(lambda k: model.init(
        k, row["inputs"], segment_ids_BT=row["segment_ids"], mask_BT=row["mask"], deterministic=True),
        jax.random.key(0))["params"])
    with ocp.StandardCheckpointer() as ckptr:
        out.params = jax.device_get(ckptr.restore(run / "best" / "params", abstract))
    return out


__all__ = ["FinetunedRun", "load_finetuned"]
