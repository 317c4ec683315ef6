"""The spec of a `local` task, inferred from its config and train file, and the map from raw labels to ids.

Labels arrive in many types: JSON gives ints, floats (`1.0`), strings and booleans; a CSV file gives strings.
Each is matched by one canonical text, its *key*: an integral number is written as an integer (`1`, `1.0`, `"1"`
and `"1.0"` → `1`), another number as Python writes it (`0.5`), a boolean as `true` / `false` (also from the
strings `"True"`, `"false"`, ...), any other string stripped. Label names from the config get the same keys, so
`task.label_names=1,2,3,4,5` maps the labels 1…5 to the ids 0…4, and `task.label_names=1,-1` maps 1 → 0, -1 → 1.

When no given name is a number, an integer label is taken as an id into the names (a GLUE export with labels
0/1 and `task.label_names=negative,positive`). Without names, the ids follow the sorted distinct keys of the
train file: numbers by value (so 2 comes before 10), then the rest alphabetically.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from llm_jax.data.tasks import fields
from llm_jax.data.tasks.base import DEFAULT_METRICS, TaskConfig, TaskSpec, split_list


def _number(text: str) -> float | None:
    try:
        x = float(text)
    except ValueError:
        return None
    return x if math.isfinite(x) else None  # "nan" / "inf" stay words


def _number_key(x: float) -> str:
    return str(int(x)) if x.is_integer() else repr(x)


def label_key(value: Any) -> str | None:
    """The canonical text a label value is matched by (see the module docstring); None for a missing value.

    Raises:
      TypeError: a value that cannot be a label (a list, an object).
    """
    if fields.is_missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return _number_key(float(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        s = value.strip()
        x = _number(s)
        if x is not None:
            return _number_key(x)
        return s.lower() if s.lower() in ("true", "false") else (s or None)
    raise TypeError(f"{type(value).__name__} {value!r} is not a label value")


def _checked_key(value: Any, where: str, field: str) -> str:
    """`label_key(value)`, with a missing value or a list / object refused (file and row named)."""
    try:
        key = label_key(value)
    except TypeError as err:
        raise ValueError(f"{where}: field {field!r}: {err}; give a string, number or boolean.") from None
    if key is None:
        raise fields.missing(where, field)
    return key


def _sort_order(key: str) -> tuple:
    x = _number(key)
    return (0, x, "") if x is not None else (1, 0.0, key)


@dataclasses.dataclass(frozen=True)
class LabelMap:
    """Raw label values → ids, for `classification` and `token_classification` local tasks (and `multiple_choice`
    ones with named choice positions).

    Attributes:
      names: one name per id (as the config gave them, or the inferred keys).
      ids: key → id.
      integers_are_ids: integer labels index `names` (no name is a number).
    """

    names: tuple[str, ...]
    ids: dict[str, int]
    integers_are_ids: bool

    @classmethod
    def from_names(cls, names: tuple[str, ...]) -> "LabelMap":
        ids: dict[str, int] = {}
        for i, name in enumerate(names):
            key = label_key(name)
            if key in ids:
                raise ValueError(f"task.label_names lists {names[ids[key]]!r} and {name!r}, which are the same label; "
                                 "give each label once.")
            ids[key] = i
        return cls(names, ids, integers_are_ids=all(_number(k) is None for k in ids))

    @classmethod
    def infer(cls, keys: set[str]) -> "LabelMap":
        names = tuple(sorted(keys, key=_sort_order))
        return cls(names, {k: i for i, k in enumerate(names)}, integers_are_ids=False)

    def id_of(self, value: Any, where: str, field: str) -> int:
        """The id of one raw label value.

        Raises:
          ValueError: a missing value, or one that is not among the names (the message lists them).
        """
        key = _checked_key(value, where, field)
        if key in self.ids:
            return self.ids[key]
        if self.integers_are_ids and not isinstance(value, (bool, np.bool_)):
            x = _number(key)
            if x is not None and x.is_integer() and 0 <= x < len(self.names):
                return int(x)
        hint = (" (GLUE marks hidden test labels with -1: remove the label field from the test file, or set it to "
                "null, to read it as unlabelled)" if key == "-1" else "")
        raise ValueError(f"{where}: label {value!r} is not one of the task's labels {list(self.names)}; list every "
                         f"label in task.label_names, in id order{hint}.")


def _label_values(cfg: TaskConfig, rows: list[dict[str, Any]], path: str) -> set[str]:
    """The keys of every label in the train rows (token tasks: every tag)."""
    keys = set()
    for i, r in enumerate(rows):
        where = f"{path} row {i + 1}"
        value = r.get(cfg.label_field)
        values = fields.items(value, where, cfg.label_field) if cfg.kind == "token_classification" else [value]
        for j, v in enumerate(values):
            keys.add(_checked_key(v, f"{where}, item {j}" if cfg.kind == "token_classification" else where,
                                  cfg.label_field))
    return keys


def local_spec(cfg: TaskConfig, train_rows: list[dict[str, Any]], path: str) -> tuple[TaskSpec, LabelMap | None]:
    """The spec of a local task and, for classification and token tasks, its `LabelMap`.

    Raises:
      ValueError: no label field in the train file, a missing label, fewer than two labels, or repeated names.
    """
    kind = cfg.kind
    metrics = split_list(cfg.metrics) or DEFAULT_METRICS[kind]
    if kind == "regression":
        return TaskSpec("local", kind, 1, (), metrics), None
    if kind == "span":
        # SQuAD 2.0-style data when some training question has no answer.
        # (An `answers` that is not an object is refused with its row when the records are built.)
        answers = [r.get("answers") or {} for r in train_rows]
        unanswerable = any(not isinstance(a, dict) or not a.get("text") for a in answers)
        return TaskSpec("local", kind, 2, (), metrics, unanswerable=unanswerable), None
    names = split_list(cfg.label_names)
    if kind == "multiple_choice":  # labels are choice indices, or names of the choice positions ("A,B,C,D")
        return TaskSpec("local", kind, 1, names, metrics), LabelMap.from_names(names) if names else None
    if train_rows and cfg.label_field not in train_rows[0]:
        raise ValueError(f"Task file {path} has no field {cfg.label_field!r} (fields: {sorted(train_rows[0])}); set "
                         "task.label_field.")
    keys = _label_values(cfg, train_rows, path)
    labels = LabelMap.from_names(names) if names else LabelMap.infer(keys)
    if len(labels.names) < 2:
        raise ValueError(f"The train file {path} has only the label(s) {list(labels.names)}; a classification task "
                         "needs at least two (or set task.label_names).")
    return TaskSpec("local", kind, len(labels.names), labels.names, metrics), labels


__all__ = ["LabelMap", "label_key", "local_spec"]
