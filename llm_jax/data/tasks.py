"""Labelled downstream tasks: specs (fields, labels, metrics, zero-shot prompts) and their examples.

Sources, by `TaskConfig.name`:

* the bundled WordNet tasks `wordnet-supersense`, `wordnet-gloss`, `wordnet-wic` (offline; see
  `bundled/README.md` for their baselines);
* the nine GLUE tasks (Wang et al. 2019) — `cola`, `sst2`, `mrpc`, `qqp`, `stsb` (regression), `mnli` (matched
  validation / test), `mnli_mismatched`, `qnli`, `rte`, `wnli`; a `glue/` prefix is allowed — read with
  `datasets.load_dataset` from the Hub (network or the local Hugging Face cache). GLUE's test labels are hidden:
  test predictions are written, test metrics are not;
* `squad` (v1.1) and `squad_v2` (with unanswerable questions, Rajpurkar et al. 2018): local JSON files in the
  SQuAD layout (`task.train_file=...`, `task.validation_file=...`), or the Hub copies when no file is given;
* `local`: your own JSON Lines / JSON / CSV / TSV files with a small spec in the config (`task.kind`,
  `task.text_fields`, `task.label_field`, `task.metrics`, ...).

Every source is normalised to plain records, per kind:

| kind | record |
|---|---|
| classification / regression | `{"idx", "text_a", "text_b" (pair tasks), "label"}` |
| token_classification | `{"idx", "tokens": [...], "label": [...]}` |
| span | `{"idx", "id", "question", "context", "answers": [...], "answer_starts": [...]}` |
| multiple_choice | `{"idx", "context", "choices": [...], "label"}` |

**Target-word spans** (`wordnet-gloss`, `wordnet-wic`): the word whose sense is asked about is marked *in the
text* with double quotation marks, and in `wordnet-gloss` the definition is prefixed with the word (`"word:
gloss"`), following GlossBERT's weak supervision (Huang et al. 2019, §3.2). Marking needs no new vocabulary
entries and no change to the model, so every family and every pretrained checkpoint reads it as ordinary text,
and a plain pair (which leaves the model to guess which word is meant) is one switch away
(`task.mark_spans=False`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import lzma
import os
import pathlib
from typing import Any

import numpy as np

from llm_jax.data.corpus import bundled_dir

log = logging.getLogger(__name__)

KINDS = ("classification", "regression", "token_classification", "span", "multiple_choice")
SPLITS = ("train", "validation", "test")
DEFAULT_METRICS = {
    "classification": ("accuracy", "macro_f1"),
    "regression": ("pearson", "spearman", "mse"),
    "token_classification": ("accuracy", "macro_f1"),
    "span": ("exact_match", "f1"),
    "multiple_choice": ("accuracy",),
}
# The Hub repositories of the canonical GLUE and SQuAD copies (datasets ≥ 3 reads them as Parquet).
GLUE_DATASET = "nyu-mll/glue"
SQUAD_DATASETS = {1: "rajpurkar/squad", 2: "rajpurkar/squad_v2"}


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """Which task, and for `local` tasks what the files hold.

    Attributes:
      name: a bundled task, a GLUE task, `squad` / `squad_v2`, or `local` (see the module docstring).
      train_file / validation_file / test_file: local files (`local`, or SQuAD-layout JSON for `squad*`).
      kind: `local` only: one of `KINDS`.
      text_fields: `local` only: comma-separated text fields (one, or two for a pair; the context field for
        `multiple_choice`, may be empty; `question,context` for `span`; the token list field for
        `token_classification`).
      label_field: `local` only: the label field (a list of tags for `token_classification`).
      label_names: `local` only: comma-separated label names in id order; empty = the sorted distinct labels of
        the train file (string labels) or `0..max` (integer labels).
      metrics: comma-separated metric names (first = the one early stopping follows); empty = the task's own.
      choices_field: `local` `multiple_choice` only: the field with the list of candidate answers.
      mark_spans: mark target-word spans in the text (bundled pair tasks); see the module docstring.
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

    def validate(self) -> "TaskConfig":
        if self.kind not in KINDS:
            raise ValueError(f"task.kind={self.kind!r} is not a task kind; choose one of {KINDS}.")
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
      test_labels: whether the test split has labels (GLUE's are hidden).
      unanswerable: span tasks only: questions may have no answer (SQuAD 2.0), so "" can be predicted.
      description: one line for people.
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

    @property
    def main_metric(self) -> str:
        return self.metrics[0]


# --------------------------------------------------------------------------------------------- bundled

# Zero-shot prompts: the WordNet corpus the models are pretrained on writes definitions as "lemma: definition."
# and the prompts reuse that shape; the verbalizers are common words, so that even a small trained vocabulary
# has most of them as single pieces (`llm_jax.eval.cloze` says which are not).
BUNDLED: dict[str, TaskSpec] = {
    "wordnet-supersense": TaskSpec(
        "wordnet-supersense", "classification", 10,
        ("noun.act", "noun.animal", "noun.artifact", "noun.body", "noun.cognition", "noun.communication",
         "noun.food", "noun.location", "noun.person", "noun.plant"),
        ("accuracy", "macro_f1"),
        prompt="a kind of {mask}: {text_a}.",
        verbalizers=("act", "animal", "device", "body", "idea", "message", "food", "place", "person", "plant"),
        description="noun supersense of a WordNet definition, 10 balanced classes"),
    "wordnet-gloss": TaskSpec(
        "wordnet-gloss", "classification", 2, ("other sense", "this sense"), ("accuracy", "f1"),
        prompt="{text_a}? {mask}, {text_b}", verbalizers=("no", "yes"),
        description="is the definition the sense of the marked word in the sentence?"),
    "wordnet-wic": TaskSpec(
        "wordnet-wic", "classification", 2, ("different sense", "same sense"), ("accuracy", "f1"),
        prompt="{text_a}? {mask}, {text_b}", verbalizers=("no", "yes"),
        description="is the marked word used in the same sense in both sentences?"),
}


def _mark(text: str, start: int, end: int, enabled: bool) -> str:
    """Puts double quotation marks around `text[start:end]` (GlossBERT's weak supervision)."""
    if not enabled:
        return text
    if not 0 <= start < end <= len(text):
        raise ValueError(f"Span [{start}, {end}) does not lie inside the sentence {text!r}; the task file is damaged.")
    return f'{text[:start]}"{text[start:end]}"{text[end:]}'


def _bundled_records(name: str, split: str, mark: bool) -> list[dict[str, Any]]:
    path = bundled_dir() / "tasks" / name / f"{split}.jsonl.xz"
    if not path.is_file():
        raise FileNotFoundError(f"The bundled task file {path} is missing: the llm_jax installation is incomplete; "
                                "reinstall the package so its package data is copied.")
    with lzma.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    out = []
    for r in rows:
        if name == "wordnet-supersense":
            rec = {"text_a": r["text"]}
        elif name == "wordnet-gloss":
            rec = {"text_a": _mark(r["sentence"], r["start"], r["end"], mark),
                   "text_b": f"{r['word'].replace('_', ' ')}: {r['gloss']}" if mark else r["gloss"]}
        else:
            rec = {"text_a": _mark(r["sentence1"], r["start1"], r["end1"], mark),
                   "text_b": _mark(r["sentence2"], r["start2"], r["end2"], mark)}
        out.append({"idx": int(r["idx"]), **rec, "label": int(r["label"])})
    return out


# ------------------------------------------------------------------------------------------------ GLUE


@dataclasses.dataclass(frozen=True)
class _Glue:
    config: str  # the Hub config name
    fields: tuple[str, ...]
    spec: TaskSpec
    validation: str = "validation"
    test: str = "test"


def _glue(name, fields, num_labels, labels, metrics, prompt="", verbalizers=(), description="", **splits):
    kind = "regression" if num_labels == 1 else "classification"
    spec = TaskSpec(name, kind, num_labels, labels, metrics, prompt, verbalizers, test_labels=False,
                    description=description)
    return _Glue(splits.pop("config", name), fields, spec, **splits)


# Metrics as the GLUE paper reports them (Wang et al. 2019, Table 1): MCC for CoLA, F1 and accuracy for MRPC and
# QQP, Pearson/Spearman for STS-B, accuracy elsewhere. Prompts and verbalizers from LM-BFF (Gao et al. 2021, Table 1).
GLUE: dict[str, _Glue] = {g.spec.name: g for g in (
    _glue("cola", ("sentence",), 2, ("unacceptable", "acceptable"), ("mcc", "accuracy"),
          "{text_a} This is {mask}.", ("incorrect", "correct"), "grammatical acceptability"),
    _glue("sst2", ("sentence",), 2, ("negative", "positive"), ("accuracy",),
          "{text_a} It was {mask}.", ("terrible", "great"), "movie review sentiment"),
    _glue("mrpc", ("sentence1", "sentence2"), 2, ("not_equivalent", "equivalent"), ("f1", "accuracy"),
          "{text_a} {mask}, {text_b}", ("no", "yes"), "paraphrase"),
    _glue("qqp", ("question1", "question2"), 2, ("not_duplicate", "duplicate"), ("f1", "accuracy"),
          "{text_a} {mask}, {text_b}", ("no", "yes"), "duplicate questions"),
    _glue("stsb", ("sentence1", "sentence2"), 1, (), ("pearson", "spearman", "mse"),
          description="semantic similarity 0–5 (regression)"),
    _glue("mnli", ("premise", "hypothesis"), 3, ("entailment", "neutral", "contradiction"), ("accuracy",),
          "{text_a} ? {mask}, {text_b}", ("yes", "maybe", "no"), "entailment (matched)",
          validation="validation_matched", test="test_matched"),
    _glue("mnli_mismatched", ("premise", "hypothesis"), 3, ("entailment", "neutral", "contradiction"),
          ("accuracy",), "{text_a} ? {mask}, {text_b}", ("yes", "maybe", "no"), "entailment (mismatched)",
          config="mnli", validation="validation_mismatched", test="test_mismatched"),
    _glue("qnli", ("question", "sentence"), 2, ("entailment", "not_entailment"), ("accuracy",),
          "{text_a} ? {mask}, {text_b}", ("yes", "no"), "question answering as entailment"),
    _glue("rte", ("sentence1", "sentence2"), 2, ("entailment", "not_entailment"), ("accuracy",),
          "{text_a} ? {mask}, {text_b}", ("yes", "no"), "textual entailment"),
    _glue("wnli", ("sentence1", "sentence2"), 2, ("not_entailment", "entailment"), ("accuracy",),
          "{text_a} ? {mask}, {text_b}", ("no", "yes"), "Winograd schema as entailment"),
)}


class DatasetUnavailable(RuntimeError):
    """A Hub dataset could not be loaded (offline and not cached, or no such dataset / split)."""


def _hub(path: str, config: str | None, split: str):
    import datasets

    try:
        return datasets.load_dataset(path, config, split=split)
    except Exception as err:  # network, cache miss, unknown split: all surface here
        raise DatasetUnavailable(
            f"Could not load {path}{'/' + config if config else ''} (split {split!r}) with Hugging Face datasets: "
            f"{err}. Hub datasets need network access or an earlier download in the Hugging Face cache; offline, "
            "export the data to local files and use task.name=local (or squad with task.train_file=...)." ) from err


def _glue_records(g: _Glue, split: str) -> list[dict[str, Any]]:
    source = {"train": "train", "validation": g.validation, "test": g.test}[split]
    ds = _hub(GLUE_DATASET, g.config, source)
    out = []
    for i, r in enumerate(ds):
        rec = {"idx": int(r.get("idx", i)), "text_a": r[g.fields[0]], "label": r["label"]}
        if len(g.fields) > 1:
            rec["text_b"] = r[g.fields[1]]
        if g.spec.kind == "regression":
            rec["label"] = float(rec["label"])
        out.append(rec)
    return out


# ----------------------------------------------------------------------------------------------- SQuAD


def _squad_spec(version: int) -> TaskSpec:
    name = "squad" if version == 1 else "squad_v2"
    return TaskSpec(name, "span", 2, (), ("f1", "exact_match"), unanswerable=version == 2,
                    description=f"extractive QA, SQuAD v{'1.1' if version == 1 else '2.0'} format")


def read_squad_json(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records from a file in the SQuAD layout: `{"data": [{"paragraphs": [{"context", "qas": [...]}]}]}`.

    A question with `is_impossible: true` (SQuAD 2.0) gets no answers. Answers may be given as `answers` (v1.1,
    v2.0 train) or `plausible_answers` (v2.0 unanswerable; ignored as gold, as the official script does).
    """
    p = pathlib.Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"SQuAD file {p} does not exist; pass a JSON file in the SQuAD layout (e.g. "
                                "train-v1.1.json / dev-v2.0.json).")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{p} is not valid JSON ({e}).") from e
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError(f"{p} is not in the SQuAD layout: expected a top-level object with a 'data' list of "
                         "articles, each with 'paragraphs' of {'context', 'qas'}.")
    out = []
    for article in data["data"]:
        for para in article.get("paragraphs", []):
            context = para["context"]
            for qa in para.get("qas", []):
                answers = [] if qa.get("is_impossible") else qa.get("answers", [])
                out.append({"idx": len(out), "id": str(qa["id"]), "question": qa["question"], "context": context,
                            "answers": [a["text"] for a in answers],
                            "answer_starts": [int(a["answer_start"]) for a in answers]})
    if not out:
        raise ValueError(f"{p} holds no questions.")
    return out


def _squad_hub_records(version: int, split: str) -> list[dict[str, Any]]:
    ds = _hub(SQUAD_DATASETS[version], None, split)
    return [{"idx": i, "id": str(r["id"]), "question": r["question"], "context": r["context"],
             "answers": list(r["answers"]["text"]), "answer_starts": [int(s) for s in r["answers"]["answer_start"]]}
            for i, r in enumerate(ds)]


# ----------------------------------------------------------------------------------------------- local


def _read_local(path: str) -> list[dict[str, Any]]:
    """Rows of a local JSON Lines / JSON / CSV / TSV file (compressed JSON too), through `datasets`."""
    import datasets

    p = os.path.expanduser(path)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"Task file {path} does not exist (working directory {os.getcwd()}).")
    name = p.lower()
    for suffix in (".xz", ".gz", ".bz2", ".zst"):
        name = name.removesuffix(suffix)
    if name.endswith((".jsonl", ".json")):
        builder, kwargs = "json", {}
    elif name.endswith(".csv"):
        builder, kwargs = "csv", {}
    elif name.endswith(".tsv"):
        builder, kwargs = "csv", {"delimiter": "\t"}
    else:
        raise ValueError(f"Cannot tell the format of {path}: task files end in .jsonl, .json, .csv or .tsv "
                         "(JSON optionally compressed: .xz, .gz, .bz2, .zst).")
    try:
        ds = datasets.load_dataset(builder, data_files={"train": [p]}, split="train", **kwargs)
    except Exception as err:  # datasets wraps parse errors in several types
        raise ValueError(f"Could not read {path} as {builder.upper()}: {err!r}.") from err
    return list(ds)


def _split_list(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def _local_spec(cfg: TaskConfig, train_rows: list[dict[str, Any]]) -> tuple[TaskSpec, dict[Any, int]]:
    """The spec of a local task, and the map from raw label values to ids."""
    kind = cfg.kind
    metrics = _split_list(cfg.metrics) or DEFAULT_METRICS[kind]
    if kind == "regression":
        return TaskSpec("local", kind, 1, (), metrics), {}
    if kind == "span":
        # SQuAD 2.0-style data when some training question has no answer.
        answers = [r.get("answers") or {} for r in train_rows]
        return TaskSpec("local", kind, 2, (), metrics, unanswerable=any(not a.get("text") for a in answers)), {}
    names = _split_list(cfg.label_names)
    if kind == "multiple_choice":
        return TaskSpec("local", kind, 1, names, metrics), {}
    values = []
    for r in train_rows:
        if cfg.label_field not in r:
            raise ValueError(f"Task file {cfg.train_file} has no field {cfg.label_field!r} (fields: {sorted(r)}); set "
                             "task.label_field.")
        v = r[cfg.label_field]
        values.extend(v if kind == "token_classification" else [v])
    if names:
        mapping = {n: i for i, n in enumerate(names)}
        mapping.update({i: i for i in range(len(names))})
    elif all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        n = int(max(values)) + 1
        names, mapping = tuple(str(i) for i in range(n)), {i: i for i in range(n)}
    else:
        names = tuple(sorted({str(v) for v in values}))
        mapping = {n: i for i, n in enumerate(names)}
    if len(names) < 2:
        raise ValueError(f"The train file {cfg.train_file} has only the label(s) {list(names)}; a classification "
                         "task needs at least two (or set task.label_names).")
    return TaskSpec("local", kind, len(names), names, metrics), mapping


def _label_id(value, mapping: dict[Any, int], where: str) -> int:
    key = value if value in mapping else str(value)
    if key not in mapping:
        raise ValueError(f"{where}: label {value!r} is not one of the task's labels {sorted(map(str, mapping))}; "
                         "list every label in task.label_names.")
    return mapping[key]


def _local_records(cfg: TaskConfig, spec: TaskSpec, mapping, rows, path: str) -> list[dict[str, Any]]:
    fields = _split_list(cfg.text_fields)
    needed = list(fields) + ([cfg.choices_field] if spec.kind == "multiple_choice" else [])
    if spec.kind != "span":
        needed.append(cfg.label_field)
    if rows:
        missing = [f for f in needed if f not in rows[0]]
        if missing:
            raise ValueError(f"{path} has no field(s) {missing}; its fields are {sorted(rows[0])}. Set task.text_fields"
                             " / task.label_field / task.choices_field to the right names.")
    out = []
    for i, r in enumerate(rows):
        where = f"{path} row {i}"
        rec: dict[str, Any] = {"idx": int(r.get("idx", i))}
        if spec.kind in ("classification", "regression"):
            if len(fields) not in (1, 2):
                raise ValueError(f"task.text_fields={cfg.text_fields!r}: give one field, or two for a pair.")
            rec["text_a"] = str(r[fields[0]])
            if len(fields) == 2:
                rec["text_b"] = str(r[fields[1]])
            rec["label"] = (float(r[cfg.label_field]) if spec.kind == "regression"
                            else _label_id(r[cfg.label_field], mapping, where))
        elif spec.kind == "token_classification":
            rec["tokens"] = [str(t) for t in r[fields[0]]]
            rec["label"] = [_label_id(t, mapping, where) for t in r[cfg.label_field]]
            if len(rec["tokens"]) != len(rec["label"]):
                raise ValueError(f"{where}: {len(rec['tokens'])} tokens but {len(rec['label'])} tags.")
        elif spec.kind == "multiple_choice":
            rec["context"] = str(r[fields[0]]) if fields else ""
            rec["choices"] = [str(c) for c in r[cfg.choices_field]]
            rec["label"] = int(r[cfg.label_field])
        else:  # span, flat layout: question, context, answers {text, answer_start} (the Hub's SQuAD columns)
            q, c = fields if len(fields) == 2 else ("question", "context")
            answers = r.get("answers") or {"text": [], "answer_start": []}
            rec.update(id=str(r.get("id", i)), question=r[q], context=r[c], answers=list(answers["text"]),
                       answer_starts=[int(s) for s in answers["answer_start"]])
        out.append(rec)
    return out


# ------------------------------------------------------------------------------------------------- API


@dataclasses.dataclass
class Task:
    """A loaded task: its spec and the records of each available split (`train`, `validation`, `test`)."""

    spec: TaskSpec
    splits: dict[str, list[dict[str, Any]]]


def task_names() -> list[str]:
    """Every task name `load_task` accepts."""
    return sorted([*BUNDLED, *GLUE, "squad", "squad_v2", "local"])


def load_task(cfg: TaskConfig) -> Task:
    """Reads a task's spec and records (see the module docstring for the sources).

    Raises:
      ValueError: an unknown task name (the message lists the known ones) or a malformed file.
      FileNotFoundError: a local file that does not exist.
      DatasetUnavailable: a Hub dataset that could not be loaded (offline and not cached).
    """
    cfg.validate()
    name = cfg.name.removeprefix("glue/").strip()
    if name in BUNDLED:
        return Task(BUNDLED[name], {s: _bundled_records(name, s, cfg.mark_spans) for s in SPLITS})
    if name in GLUE:
        g = GLUE[name]
        return Task(g.spec, {s: _glue_records(g, s) for s in SPLITS})
    if name in ("squad", "squad_v2"):
        version = 1 if name == "squad" else 2
        files = {"train": cfg.train_file, "validation": cfg.validation_file, "test": cfg.test_file}
        if any(files.values()):
            if not (files["train"] and files["validation"]):
                raise ValueError(f"task.name={name} with local files needs task.train_file and task.validation_file "
                                 "(task.test_file is optional).")
            splits = {s: read_squad_json(f) for s, f in files.items() if f}
        else:
            splits = {s: _squad_hub_records(version, s) for s in ("train", "validation")}
        return Task(_squad_spec(version), splits)
    if name == "local":
        if not (cfg.train_file and cfg.validation_file):
            raise ValueError("task.name=local needs task.train_file and task.validation_file (and optionally "
                             "task.test_file), plus task.kind, task.text_fields and task.label_field.")
        rows = {s: _read_local(f) for s, f in (("train", cfg.train_file), ("validation", cfg.validation_file),
                                               ("test", cfg.test_file)) if f}
        spec, mapping = _local_spec(cfg, rows["train"])
        paths = {"train": cfg.train_file, "validation": cfg.validation_file, "test": cfg.test_file}
        return Task(spec, {s: _local_records(cfg, spec, mapping, r, paths[s]) for s, r in rows.items()})
    raise ValueError(f"Unknown task {cfg.name!r}; known tasks: {', '.join(task_names())}.")


def with_metrics(spec: TaskSpec, metrics: str) -> TaskSpec:
    """`spec` with its metric list replaced by the comma-separated `metrics` (unchanged when empty)."""
    names = _split_list(metrics)
    return dataclasses.replace(spec, metrics=names) if names else spec


def labels_of(records: list[dict[str, Any]]) -> np.ndarray | None:
    """The per-example labels of a classification-like split (None for span and token tasks)."""
    if not records or "label" not in records[0] or isinstance(records[0]["label"], list):
        return None
    return np.asarray([r["label"] for r in records])


def few_shot_subset(labels: np.ndarray | None, num_examples: int, k: int, seed: int) -> np.ndarray:
    """Indices of a seed-determined training subset of `k` examples, class-balanced when labels are given.

    Classes get `k // C` examples each; the `k mod C` left over go to classes drawn by the seed (so counts differ
    by at most one). A class with fewer examples than its share gives all it has, and the shortfall is drawn from
    the other classes. As in the few-shot protocol of Gao et al. (2021, §3) the subset is balanced and resampled
    per seed, but `k` counts all classes together. Without labels (span, token tasks, regression) the subset is
    a uniform draw.

    Args:
      labels: integer labels of the `num_examples` training examples, or None.
      num_examples: size of the training split.
      k: subset size (`k ≥ num_examples` returns everything).
      seed: determines the subset.

    Returns:
      Sorted int64 indices into the training split.
    """
    if k < 1:
        raise ValueError(f"A training subset needs k ≥ 1 examples (got {k}).")
    rng = np.random.default_rng([seed, 104_729])
    if k >= num_examples:
        return np.arange(num_examples, dtype=np.int64)
    if labels is None or labels.dtype.kind == "f":
        return np.sort(rng.choice(num_examples, size=k, replace=False)).astype(np.int64)
    classes = np.unique(labels)
    share = np.full(len(classes), k // len(classes))
    share[rng.choice(len(classes), size=k % len(classes), replace=False)] += 1
    chosen = []
    for c, n in zip(classes, share):
        pool = np.flatnonzero(labels == c)
        chosen.append(rng.permutation(pool)[:n])
    picked = np.concatenate(chosen)
    if len(picked) < k:  # some classes were smaller than their share: fill up from the rest, uniformly
        rest = np.setdiff1d(np.arange(num_examples), picked)
        picked = np.concatenate([picked, rng.choice(rest, size=k - len(picked), replace=False)])
    return np.sort(picked).astype(np.int64)


__all__ = ["BUNDLED", "DEFAULT_METRICS", "DatasetUnavailable", "GLUE", "KINDS", "SPLITS", "Task", "TaskConfig",
           "TaskSpec", "few_shot_subset", "labels_of", "load_task", "read_squad_json", "task_names", "with_metrics"]
