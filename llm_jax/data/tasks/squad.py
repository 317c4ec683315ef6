"""SQuAD v1.1 and v2.0 (Rajpurkar et al. 2016, 2018): the JSON layout of the official files, and the Hub copies.

A local file in the official layout is read by `read_squad_json`; without files the Hub copies are used. Every
question becomes one `span` record `{"idx", "id", "question", "context", "answers", "answer_starts"}`; an
unanswerable SQuAD 2.0 question has no answers.
"""

from __future__ import annotations

import json
import os
from typing import Any

from llm_jax.data import files
from llm_jax.data.tasks import fields
from llm_jax.data.tasks.base import TaskSpec, hub_dataset

# The Hub repositories of the canonical SQuAD copies (datasets ≥ 3 reads them as Parquet).
SQUAD_DATASETS = {1: "rajpurkar/squad", 2: "rajpurkar/squad_v2"}
_LAYOUT = ("expected a top-level object with a 'data' list of articles, each with 'paragraphs' of "
           "{'context', 'qas': [{'id', 'question', 'answers': [{'text', 'answer_start'}]}]}")


def squad_spec(version: int) -> TaskSpec:
    name = "squad" if version == 1 else "squad_v2"
    return TaskSpec(name, "span", 2, (), ("f1", "exact_match"), unanswerable=version == 2,
                    description=f"extractive QA, SQuAD v{'1.1' if version == 1 else '2.0'} format")


def _items(parent: dict[str, Any], key: str, where: str) -> list[Any]:
    value = parent.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"{where}: {key!r} is {type(value).__name__}, not a list; {_LAYOUT}.")
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where} is {type(value).__name__}, not an object; {_LAYOUT}.")
    return value


def _question(qa: dict[str, Any], context: str, where: str) -> dict[str, Any]:
    answers = [] if qa.get("is_impossible") else _items(qa, "answers", where)
    texts, starts = [], []
    for k, a in enumerate(answers):
        a = _object(a, f"{where}.answers[{k}]")
        texts.append(fields.text(a.get("text"), f"{where}.answers[{k}]", "text"))
        starts.append(fields.integer(a.get("answer_start"), f"{where}.answers[{k}]", "answer_start"))
    return {"id": fields.text(qa.get("id"), where, "id"),
            "question": fields.text(qa.get("question"), where, "question"), "context": context,
            "answers": texts, "answer_starts": starts}


def read_squad_json(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records from a file in the SQuAD layout: `{"data": [{"paragraphs": [{"context", "qas": [...]}]}]}`.

    A question with `is_impossible: true` (SQuAD 2.0) gets no answers. Answers may be given as `answers` (v1.1,
    v2.0 train) or `plausible_answers` (v2.0 unanswerable; ignored as gold, as the official script does). The file
    may be compressed (.xz, .gz, .bz2).

    Raises:
      FileNotFoundError: no such file.
      ValueError: a folder, an empty or unreadable file, invalid JSON (with its line), a file not in the layout, or
        a question without an id, question text, or answer text (named by its place in the file).
    """
    p = files.check_file(path, "SQuAD file", example="dev-v2.0.json",
                         missing_hint="pass a JSON file in the SQuAD layout (e.g. train-v1.1.json / dev-v2.0.json)")
    try:
        with files.open_binary(p) as f:
            data = json.loads(f.read().decode("utf-8"))
    except (*files.DECOMPRESSION_ERRORS, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(files.read_error("SQuAD file", path, "json", err)) from err
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError(f"{p} is not in the SQuAD layout: {_LAYOUT}.")
    out = []
    for i, article in enumerate(data["data"]):
        article = _object(article, f"{p}: data[{i}]")
        for j, para in enumerate(_items(article, "paragraphs", f"{p}: data[{i}]")):
            where = f"{p}: data[{i}].paragraphs[{j}]"
            para = _object(para, where)
            context = fields.text(para.get("context"), where, "context")
            for k, qa in enumerate(_items(para, "qas", where)):
                qa = _object(qa, f"{where}.qas[{k}]")
                out.append({"idx": len(out), **_question(qa, context, f"{where}.qas[{k}]")})
    if not out:
        raise ValueError(f"{p} holds no questions; {_LAYOUT}.")
    return out


def squad_hub_records(version: int, split: str) -> list[dict[str, Any]]:
    """The records of one split of the Hub copy of SQuAD `version` (1 or 2)."""
    rows = hub_dataset(SQUAD_DATASETS[version], None, split)
    return [{"idx": i, "id": r["id"], "question": r["question"], "context": r["context"],
             "answers": list(r["answers"]["text"]), "answer_starts": [int(s) for s in r["answers"]["answer_start"]]}
            for i, r in enumerate(rows)]


__all__ = ["SQUAD_DATASETS", "read_squad_json", "squad_hub_records", "squad_spec"]
