"""`local` tasks: your own JSON Lines / JSON / CSV / TSV files, described by a few `task.*` settings.

Files are parsed by Hugging Face `datasets`. CSV and TSV columns are read as text, with only an empty cell taken as
missing: pandas' own guesses would turn the text "007" into 7, "1.50" into 1.5 and the words "NA" or "None" into
missing values. Numbers and booleans in labels are then matched by value (`local_spec.label_key`).

Missing or null values in a used field are refused with the file and row (counted from 1, header excluded), never
stringified. The one exception is the test file's labels: when the label field is absent or null in *every* test
row, the test labels are taken as hidden (as GLUE's are): `spec.test_labels` is False, each record's `label` is
None, and predictions are written without metrics. A test file with some labels missing is refused like any other.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
from typing import Any

from llm_jax.data import files
from llm_jax.data.tasks import fields
from llm_jax.data.tasks.base import Task, TaskConfig, TaskSpec, split_list
from llm_jax.data.tasks.local_spec import LabelMap, local_spec

log = logging.getLogger(__name__)

# Text fields each kind reads, as counts `task.text_fields` may give.
_TEXT_FIELD_COUNTS = {"classification": (1, 2), "regression": (1, 2), "token_classification": (1,),
                      "multiple_choice": (0, 1), "span": (2,)}


def _format(path: str) -> str:
    name = files.strip_compression(path)
    for suffix, fmt in ((".jsonl", "json"), (".json", "json"), (".csv", "csv"), (".tsv", "tsv")):
        if name.endswith(suffix):
            return fmt
    raise ValueError(f"Cannot tell the format of {path}: task files end in .jsonl, .json, .csv or .tsv "
                     "(optionally compressed: .xz, .gz, .bz2, .zst).")


def _csv_columns(path, fmt: str) -> list[str]:
    """The header of a CSV/TSV file."""
    with files.open_binary(path) as f:
        header = next(csv.reader(io.TextIOWrapper(f, encoding="utf-8", newline=""),
                                 delimiter="\t" if fmt == "tsv" else ","), [])
    header = [c or f"Unnamed: {i}" for i, c in enumerate(header)]  # pandas' name for a column without one
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise ValueError(f"Task file {path}: the header lists the column(s) {repeated} more than once; give every "
                         "column its own name.")
    return header


def read_rows(path: str) -> list[dict[str, Any]]:
    """The rows of a local task file, as dicts (a field absent from a row is None there).

    Raises:
      FileNotFoundError: no such file.
      ValueError: a folder, an empty, unreadable, damaged or malformed file (with the line when it can be found).
    """
    import datasets  # why lazy: importing `datasets` costs seconds, and only local tasks read files with it

    p = files.check_file(path, "Task file", example="train.jsonl")
    fmt = _format(path)
    kwargs: dict[str, Any] = {}
    if fmt in ("csv", "tsv"):
        kwargs = {"delimiter": "\t" if fmt == "tsv" else ",", "keep_default_na": False, "na_values": [""]}
        if p.suffix.lower() != ".zst":  # no stdlib reader for the header: such a file keeps pandas' column types
            try:
                columns = _csv_columns(p, fmt)
            except (*files.DECOMPRESSION_ERRORS, UnicodeDecodeError, csv.Error) as err:
                raise ValueError(files.read_error("task file", path, fmt, err)) from err
            kwargs["features"] = datasets.Features({c: datasets.Value("string") for c in columns})
    try:
        ds = datasets.load_dataset("csv" if fmt in ("csv", "tsv") else "json", data_files={"train": [str(p)]},
                                   split="train", **kwargs)
        rows = list(ds)  # inside the `try`: Arrow keeps bytes that are not UTF-8 and fails only here
    except Exception as err:  # datasets, pyarrow, pandas and the decompressors all raise their own types
        raise ValueError(files.read_error("task file", path, fmt, err)) from err
    if not rows:
        raise ValueError(f"Task file {path} holds no records; give one record per line (JSON Lines) or per row (CSV).")
    return rows


def _label(value: Any, spec: TaskSpec, labels: LabelMap | None, n_choices: int, where: str, field: str) -> Any:
    if spec.kind == "regression":
        return fields.number(value, where, field)
    if spec.kind == "multiple_choice":
        k = labels.id_of(value, where, field) if labels else fields.integer(value, where, field)
        if not 0 <= k < n_choices:
            raise ValueError(f"{where}: label {value!r} is not the index of one of the {n_choices} choices "
                             f"(0–{n_choices - 1}); labels of multiple-choice tasks count choices from 0.")
        return k
    return labels.id_of(value, where, field)


def _span(r: dict[str, Any], text_fields: tuple[str, ...], row: int, where: str) -> dict[str, Any]:
    """A span record in the flat layout of the Hub's SQuAD columns: question, context, answers {text, answer_start}."""
    q, c = text_fields
    answers = r.get("answers")
    if fields.is_missing(answers):
        answers = {"text": [], "answer_start": []}  # no answer: an unanswerable question (SQuAD 2.0)
    if not isinstance(answers, dict):
        raise ValueError(f"{where}: field 'answers' holds {type(answers).__name__}, not "
                         "{'text': [...], 'answer_start': [...]}.")
    texts = fields.text_list(answers.get("text") or [], where, "answers.text")
    starts = [fields.integer(s, where, "answers.answer_start")
              for s in fields.items(answers.get("answer_start") or [], where, "answers.answer_start")]
    if len(texts) != len(starts):
        raise ValueError(f"{where}: {len(texts)} answer texts but {len(starts)} answer_start offsets; give one "
                         "offset per answer.")
    rid = r.get("id")
    return {"id": str(row) if fields.is_missing(rid) else fields.text(rid, where, "id"),
            "question": fields.text(r.get(q), where, q), "context": fields.text(r.get(c), where, c),
            "answers": texts, "answer_starts": starts}


def local_records(cfg: TaskConfig, spec: TaskSpec, labels: LabelMap | None, rows: list[dict[str, Any]], path: str,
                  *, hidden: bool = False) -> list[dict[str, Any]]:
    """Records (see `llm_jax.data.tasks`) from the rows of one local file; `hidden`: labels are None."""
    text_fields = split_list(cfg.text_fields)
    if spec.kind == "span" and len(text_fields) != 2:
        text_fields = ("question", "context")  # the Hub's SQuAD column names
    if len(text_fields) not in _TEXT_FIELD_COUNTS[spec.kind]:
        raise ValueError(f"task.text_fields={cfg.text_fields!r}: a {spec.kind} task reads "
                         f"{' or '.join(map(str, _TEXT_FIELD_COUNTS[spec.kind]))} text field(s) (one, or two for a "
                         "pair; question,context for span; the context, or none, for multiple_choice).")
    needed = list(text_fields) + ([cfg.choices_field] if spec.kind == "multiple_choice" else [])
    if spec.kind != "span" and not hidden:
        needed.append(cfg.label_field)
    absent = [f for f in needed if f not in rows[0]]
    if absent:
        raise ValueError(f"{path} has no field(s) {absent}; its fields are {sorted(rows[0])}. Set task.text_fields"
                         " / task.label_field / task.choices_field to the right names.")
    out = []
    for i, r in enumerate(rows):
        where = f"{path} row {i + 1}"
        rec: dict[str, Any] = {"idx": fields.row_index(r.get("idx"), i, where)}
        if spec.kind in ("classification", "regression"):
            rec["text_a"] = fields.text(r.get(text_fields[0]), where, text_fields[0])
            if len(text_fields) == 2:
                rec["text_b"] = fields.text(r.get(text_fields[1]), where, text_fields[1])
            rec["label"] = None if hidden else _label(r.get(cfg.label_field), spec, labels, 0, where, cfg.label_field)
        elif spec.kind == "token_classification":
            rec["tokens"] = fields.text_list(r.get(text_fields[0]), where, text_fields[0])
            if hidden:
                rec["label"] = None
            else:
                tags = fields.items(r.get(cfg.label_field), where, cfg.label_field)
                rec["label"] = [labels.id_of(t, f"{where}, item {j}", cfg.label_field) for j, t in enumerate(tags)]
                if len(rec["tokens"]) != len(rec["label"]):
                    raise ValueError(f"{where}: {len(rec['tokens'])} tokens but {len(rec['label'])} tags; give one "
                                     "tag per token.")
        elif spec.kind == "multiple_choice":
            rec["context"] = fields.text(r.get(text_fields[0]), where, text_fields[0]) if text_fields else ""
            rec["choices"] = fields.text_list(r.get(cfg.choices_field), where, cfg.choices_field)
            rec["label"] = None if hidden else _label(r.get(cfg.label_field), spec, labels, len(rec["choices"]),
                                                      where, cfg.label_field)
        else:
            rec.update(_span(r, text_fields, i, where))
        out.append(rec)
    return out


def load_local(cfg: TaskConfig) -> Task:
    """A `local` task: its files read, its spec inferred (`local_spec`), its records built.

    Raises:
      ValueError: missing settings, or a file, field or value that cannot be used (the message names it).
      FileNotFoundError: a file that does not exist.
    """
    if not (cfg.train_file and cfg.validation_file):
        raise ValueError("task.name=local needs task.train_file and task.validation_file (and optionally "
                         "task.test_file), plus task.kind, task.text_fields and task.label_field.")
    paths = {s: f for s, f in (("train", cfg.train_file), ("validation", cfg.validation_file),
                               ("test", cfg.test_file)) if f}
    rows = {s: read_rows(f) for s, f in paths.items()}
    spec, labels = local_spec(cfg, rows["train"], paths["train"])
    test = rows.get("test")
    if test and spec.kind != "span" and all(fields.is_missing(r.get(cfg.label_field)) for r in test):
        spec = dataclasses.replace(spec, test_labels=False)
        log.warning("%s has no %r values in its %d rows: its labels are taken as hidden (predictions are written, "
                 "test metrics are not).", paths["test"], cfg.label_field, len(test))
    return Task(spec, {s: local_records(cfg, spec, labels, r, paths[s], hidden=s == "test" and not spec.test_labels)
                       for s, r in rows.items()})


__all__ = ["load_local", "local_records", "read_rows"]
