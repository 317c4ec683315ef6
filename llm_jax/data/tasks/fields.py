"""One field of a raw row, checked: a missing or null value is refused with the file and row, never stringified.

Rows come from `datasets`, which fills a field absent from a row with None, and from CSV files, where an empty
cell is None too. Turning such a value into text would train on the word "None"; these readers raise instead.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def is_missing(value: Any) -> bool:
    """None, or a float NaN (what pandas writes for an empty cell)."""
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def missing(where: str, field: str, fix: str = "give every row a value, or remove the row") -> ValueError:
    return ValueError(f"{where}: field {field!r} is missing or null; {fix}.")


def text(value: Any, where: str, field: str) -> str:
    """A text field: a string, or a number written where text was expected (kept as its JSON spelling)."""
    if is_missing(value):
        raise missing(where, field)
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return str(value)
    raise ValueError(f"{where}: field {field!r} holds {type(value).__name__} {value!r}, not text; give a string "
                     "there (for a local task: point task.text_fields at the fields with the text).")


def items(value: Any, where: str, field: str) -> list[Any]:
    """A field holding a list (tokens, tags, choices), items unchecked."""
    if is_missing(value):
        raise missing(where, field)
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{where}: field {field!r} holds {type(value).__name__} {value!r}, not a list; give a JSON "
                         "list.")
    return list(value)


def text_list(value: Any, where: str, field: str) -> list[str]:
    """A field holding a list of texts (tokens, choices), each checked like `text`."""
    return [text(v, f"{where}, item {j}", field) for j, v in enumerate(items(value, where, field))]


def number(value: Any, where: str, field: str) -> float:
    """A finite real number (a regression score): a JSON number, or a string that spells one (CSV)."""
    if is_missing(value) or (isinstance(value, str) and not value.strip()):
        raise missing(where, field)
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{where}: field {field!r} holds the boolean {value!r}, not a score; give numbers.")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: field {field!r} holds {value!r}, not a number; a regression label must be a "
                         "number.") from None
    if not math.isfinite(x):
        raise ValueError(f"{where}: field {field!r} holds {value!r}; a regression label must be a finite number.")
    return x


def integer(value: Any, where: str, field: str) -> int:
    """A whole number: an int, an integral float (1.0) or a string that spells one; booleans are refused."""
    if is_missing(value) or (isinstance(value, str) and not value.strip()):
        raise missing(where, field)
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{where}: field {field!r} holds the boolean {value!r}, not an integer.")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: field {field!r} holds {value!r}, not an integer.") from None
    if not x.is_integer():
        raise ValueError(f"{where}: field {field!r} holds {value!r}, not a whole number.")
    return int(x)


def row_index(value: Any, row: int, where: str) -> int:
    """The record's `idx`: the file's own `idx` field when a row has one, else its 0-based position."""
    return row if is_missing(value) else integer(value, where, "idx")


__all__ = ["integer", "is_missing", "items", "missing", "number", "row_index", "text", "text_list"]
