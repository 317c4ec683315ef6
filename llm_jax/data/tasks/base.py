"""What every task source shares: the config, the spec, the loaded task, and reading Hub datasets."""

from __future__ import annotations

import dataclasses
from typing import Any

from llm_jax.data.tasks.text import TextTemplate

KINDS = ("classification", "regression", "token_classification", "span", "multiple_choice")
SPLITS = ("train", "validation", "test")
DEFAULT_METRICS = {
    "classification": ("accuracy", "macro_f1"),
    "regression": ("pearson", "spearman", "mse"),
    "token_classification": ("accuracy", "macro_f1"),
    "span": ("exact_match", "f1"),
    "multiple_choice": ("accuracy",),
}


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """Which task, and for `local` tasks what the files hold.

    Attributes:
      name: a bundled task, a GLUE task, `squad` / `squad_v2`, or `local` (see `llm_jax.data.tasks`).
      train_file / validation_file / test_file: local files (`local`, or SQuAD-layout JSON for `squad*`).
      kind: `local` only: one of `KINDS`.
      text_fields: `local` only: comma-separated text fields (one, or two for a pair; the context field for
        `multiple_choice`, may be empty; `question,context` for `span`; the token list field for
        `token_classification`).
      label_field: `local` only: the label field (a list of tags for `token_classification`). In the test file
        it may be absent or null in every row: the test labels are then hidden (predictions, no metrics).
      label_names: `local` only: comma-separated label names in id order; a label is matched to a name by its
        value (`1`, `1.0` and `"1"` all match the name `1`; `true` / `false` match booleans). When no name is a
        number, integer labels are taken as ids into the names. Empty = the distinct labels of the train file,
        sorted (numbers by value).
      metrics: comma-separated metric names (first = the one early stopping follows); empty = the task's own.
      choices_field: `local` `multiple_choice` only: the field with the list of candidate answers.
      mark_spans: mark target-word spans in the text (bundled pair tasks); see `llm_jax.data.tasks`.
      symmetric: `local` pair tasks only: the two texts have no inherent order (a similarity or paraphrase task,
        `TaskSpec.symmetric`).
    """

    name: str = "wordnet-supersense"
    train_file: str = ""
    validation_file: str = ""
    test_file: str = ""
    kind: str = "classification"
    text_fields: str = "text"
    label_field: str = "label"
    label_names: str = ""
    metrics: str = ""
    choices_field: str = "choices"
    mark_spans: bool = True
    symmetric: bool = False

    def validate(self) -> "TaskConfig":
        if self.kind not in KINDS:
            raise ValueError(f"task.kind={self.kind!r} is not a task kind; choose one of {KINDS}.")
        if self.symmetric and self.name != "local":
            raise ValueError(f"task.symmetric=True is for local tasks; {self.name!r} declares whether its pairs are "
                             "symmetric itself. Drop the override.")
        if self.symmetric and (self.kind not in ("classification", "regression") or len(split_list(self.text_fields))
                               != 2):
            raise ValueError(f"task.symmetric=True needs a pair task (classification or regression with two "
                             f"task.text_fields); got kind={self.kind!r}, text_fields={self.text_fields!r}.")
        return self


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """What a task is: its kind, labels, metrics, and (for zero-shot) a cloze prompt.

    Attributes:
      name: the task's name.
      kind: one of `KINDS`.
      num_labels: classes (or tags); 1 for regression; 2 for span (start, end).
      label_names: one name per label id.
      metrics: metric names; `metrics[0]` is the one early stopping and the results headline follow.
      prompt: zero-shot cloze template over the record fields, with `{mask}` where the label word goes
        (e.g. `"{text_a} It was {mask}."`, after LM-BFF, Gao et al. 2021); empty = no zero-shot.
      verbalizers: one word per label, scored at `{mask}` by the MLM head (Schick & Schütze 2021, PET).
      test_labels: whether the test split has labels. When False (GLUE's hidden test labels, a local test file
        without labels) every test record's `label` is None: predictions are written, metrics are not.
      unanswerable: span tasks only: questions may have no answer (SQuAD 2.0), so "" can be predicted.
      template: the in-context template (`llm_jax.eval.in_context`) over the record fields, ending in `{answer}`
        where a demonstration shows its answer and a query's candidates are scored (e.g. `"{text_a}\nAnswer:
        {answer}"`, GPT-3 §2 style); empty = a default for the task's kind (`in_context.default_template`).
      symmetric: pair tasks only: the two texts have no inherent order — a similarity relation such as
        paraphrase or "the same sense", where swapping them never changes the label (Radford et al. 2018 §3.3,
        "Similarity"); an asymmetric pair (premise → hypothesis, sentence → definition) is entailment-style.
        A family whose `InputFormat.both_orders` is set encodes a symmetric pair in both orders.
      description: one line for people.
      text: how the task reads as text to text (T5 §2.4: a task-prefixed input, label words or a rounded score as
        the target; `llm_jax.data.tasks.text`); None = the task has no text-to-text form.
    """

    name: str
    kind: str
    num_labels: int
    label_names: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ("accuracy",)
    prompt: str = ""
    verbalizers: tuple[str, ...] = ()
    test_labels: bool = True
    unanswerable: bool = False
    description: str = ""
    symmetric: bool = False
    text: TextTemplate | None = None
    template: str = ""

    @property
    def main_metric(self) -> str:
        return self.metrics[0]


@dataclasses.dataclass
class Task:
    """A loaded task: its spec and the records of each available split (`train`, `validation`, `test`)."""

    spec: TaskSpec
    splits: dict[str, list[dict[str, Any]]]


class DatasetUnavailable(RuntimeError):
    """A Hub dataset could not be loaded (offline and not cached, or no such dataset / split)."""


def hub_dataset(path: str, config: str | None, split: str):
    """One split of a Hugging Face Hub dataset, through `datasets` (network or the local HF cache).

    Raises:
      DatasetUnavailable: any failure (network, cache miss, unknown split), with what to do instead.
    """
    import datasets  # why lazy: only Hub tasks need it at import time of this module

    try:
        return datasets.load_dataset(path, config, split=split)
    except Exception as err:  # network, cache miss, unknown split: all surface here
        detail = " ".join(str(err).split())
        raise DatasetUnavailable(
            f"Could not load {path}{'/' + config if config else ''} (split {split!r}) with Hugging Face datasets: "
            f"{detail}. Hub datasets need network access or an earlier download in the Hugging Face cache; offline, "
            "export the data to local files and use task.name=local (or squad with task.train_file=...).") from err


def split_list(text: str) -> tuple[str, ...]:
    """The non-empty, stripped items of a comma-separated config value."""
    return tuple(s.strip() for s in text.split(",") if s.strip())


__all__ = ["DEFAULT_METRICS", "DatasetUnavailable", "KINDS", "SPLITS", "Task", "TaskConfig", "TaskSpec",
           "hub_dataset", "split_list"]
