"""Labelled downstream tasks: specs (fields, labels, metrics, zero-shot prompts) and their examples.

Sources, by `TaskConfig.name`:

* the bundled WordNet tasks `wordnet-supersense`, `wordnet-gloss`, `wordnet-wic` (offline; see
  `bundled/README.md` for their baselines) — `bundled.py`;
* the nine GLUE tasks (Wang et al. 2019) — `cola`, `sst2`, `mrpc`, `qqp`, `stsb` (regression), `mnli` (matched
  validation / test), `mnli_mismatched`, `qnli`, `rte`, `wnli`; a `glue/` prefix is allowed — read with
  `datasets.load_dataset` from the Hub (network or the local Hugging Face cache). GLUE's test labels are hidden:
  test predictions are written, test metrics are not — `glue.py`;
* `squad` (v1.1) and `squad_v2` (with unanswerable questions, Rajpurkar et al. 2018): local JSON files in the
  SQuAD layout (`task.train_file=...`, `task.validation_file=...`), or the Hub copies when no file is given —
  `squad.py`;
* `local`: your own JSON Lines / JSON / CSV / TSV files with a small spec in the config (`task.kind`,
  `task.text_fields`, `task.label_field`, `task.metrics`, ...) — `local.py`, labels in `local_spec.py`.

Every classification and regression task also reads as text to text (T5 §2.4; `TaskSpec.text`, `text.py`): a
task-prefixed input (`cola sentence: …`) and a target word or rounded score, defined with the task (a local task's
input names its `task.text_fields`).

K-shot subsets are drawn by `few_shot.py`; the shared types live in `base.py`.

Every source is normalised to plain records, per kind:

| kind | record |
|---|---|
| classification / regression | `{"idx", "text_a", "text_b" (pair tasks), "label"}` |
| token_classification | `{"idx", "tokens": [...], "label": [...]}` |
| span | `{"idx", "id", "question", "context", "answers": [...], "answer_starts": [...]}` |
| multiple_choice | `{"idx", "context", "choices": [...], "label"}` |

A hidden label (GLUE's test split, a local test file without labels) is `None`, and the spec says so
(`TaskSpec.test_labels=False`); no label value has a special meaning.

**Target-word spans** (`wordnet-gloss`, `wordnet-wic`): the word whose sense is asked about is marked *in the
text* with double quotation marks, and in `wordnet-gloss` the definition is prefixed with the word (`"word:
gloss"`), following GlossBERT's weak supervision (Huang et al. 2019, §3.2). Marking needs no new vocabulary
entries and no change to the model, so every family and every pretrained checkpoint reads it as ordinary text,
and a plain pair (which leaves the model to guess which word is meant) is one switch away
(`task.mark_spans=False`).
"""

from __future__ import annotations

import dataclasses

from llm_jax.data.corpus import bundled_dir
from llm_jax.data.tasks.base import (DEFAULT_METRICS, KINDS, SPLITS, DatasetUnavailable, Task, TaskConfig, TaskSpec,
                                     split_list)
from llm_jax.data.tasks.bundled import BUNDLED, bundled_records
from llm_jax.data.tasks.few_shot import few_shot_subset, labels_of
from llm_jax.data.tasks.glue import GLUE, GLUE_DATASET, glue_records
from llm_jax.data.tasks.local import load_local
from llm_jax.data.tasks.squad import SQUAD_DATASETS, read_squad_json, squad_hub_records, squad_spec
from llm_jax.data.tasks.text import TextLabels, TextTemplate, text_template_for_fields


def task_names() -> list[str]:
    """Every task name `load_task` accepts."""
    return sorted([*BUNDLED, *GLUE, "squad", "squad_v2", "local"])


def _squad(cfg: TaskConfig, name: str) -> Task:
    version = 1 if name == "squad" else 2
    paths = {"train": cfg.train_file, "validation": cfg.validation_file, "test": cfg.test_file}
    if any(paths.values()):
        if not (paths["train"] and paths["validation"]):
            raise ValueError(f"task.name={name} with local files needs task.train_file and task.validation_file "
                             "(task.test_file is optional).")
        splits = {s: read_squad_json(f) for s, f in paths.items() if f}
    else:
        splits = {s: squad_hub_records(version, s) for s in ("train", "validation")}
    return Task(squad_spec(version), splits)


def load_task(cfg: TaskConfig) -> Task:
    """Reads a task's spec and records (see the module docstring for the sources).

    Raises:
      ValueError: an unknown task name (the message lists the known ones), a malformed file, or a missing, null
        or unknown value in a used field (the message names the file and row).
      FileNotFoundError: a local file that does not exist.
      DatasetUnavailable: a Hub dataset that could not be loaded (offline and not cached).
    """
    cfg.validate()
    name = cfg.name.removeprefix("glue/").strip()
    if name in BUNDLED:
        return Task(BUNDLED[name], {s: bundled_records(name, s, cfg.mark_spans) for s in SPLITS})
    if name in GLUE:
        return Task(GLUE[name].spec, {s: glue_records(GLUE[name], s) for s in SPLITS})
    if name in ("squad", "squad_v2"):
        return _squad(cfg, name)
    if name == "local":
        task = load_local(cfg)
        spec = dataclasses.replace(task.spec, text=text_template_for_fields("", split_list(cfg.text_fields)))
        return Task(dataclasses.replace(spec, symmetric=True) if cfg.symmetric else spec, task.splits)
    raise ValueError(f"Unknown task {cfg.name!r}; known tasks: {', '.join(task_names())}.")


def with_metrics(spec: TaskSpec, metrics: str) -> TaskSpec:
    """`spec` with its metric list replaced by the comma-separated `metrics` (unchanged when empty)."""
    names = split_list(metrics)
    return dataclasses.replace(spec, metrics=names) if names else spec


__all__ = ["BUNDLED", "DEFAULT_METRICS", "DatasetUnavailable", "GLUE", "GLUE_DATASET", "KINDS", "SPLITS",
           "SQUAD_DATASETS", "Task", "TaskConfig", "TaskSpec", "TextLabels", "TextTemplate", "bundled_dir",
           "bundled_records", "few_shot_subset", "labels_of", "load_task", "read_squad_json", "task_names",
           "text_template_for_fields", "with_metrics"]
