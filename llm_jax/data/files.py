"""Local data files (task files, corpora): checks before a read, and a one-line diagnosis when a read fails.

Hugging Face `datasets` parses our JSON Lines / JSON / CSV / TSV / text files. On a bad file it raises from deep
inside pyarrow, pandas or a decompressor, often without naming the file or the line ("An error occurred while
generating the dataset"). So:

* `check_file` refuses what can be seen before reading — nothing there, a folder, no read permission, 0 bytes;
* `read_error` re-reads a file that failed with the standard library, finds the first bad line (or the damage in
  its compression) and says, in one line, what is wrong and what to do.

The diagnosis runs only after a failure, so the normal read stays one `datasets` pass (and its cache).
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import os
import pathlib
import zlib
from collections.abc import Iterator
from typing import IO

COMPRESSION_SUFFIXES = (".xz", ".gz", ".bz2", ".zst")
# `.zst` has no reader in the standard library: such files are read by `datasets` and not diagnosed here.
_OPENERS = {".xz": lzma.open, ".gz": gzip.open, ".bz2": bz2.open}
# What a damaged or cut-off compressed file raises while it is read (gzip.BadGzipFile is an OSError).
DECOMPRESSION_ERRORS = (EOFError, lzma.LZMAError, zlib.error, OSError)
FORMAT_NAMES = {"json": "JSON", "csv": "CSV", "tsv": "TSV", "text": "text"}
_MAX_DETAIL = 240


def strip_compression(name: str) -> str:
    """`name` in lower case without a compression suffix (`train.jsonl.xz` → `train.jsonl`)."""
    name = name.lower()
    for suffix in COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def check_file(path: str | os.PathLike, what: str, *, example: str = "data.jsonl", missing_hint: str = "fix the path"
               ) -> pathlib.Path:
    """`path` (with `~` expanded) if it names a readable, non-empty file.

    Args:
      path: the file as the user gave it.
      what: how the message names it, e.g. `"Task file"`.
      example: a file name to suggest inside a folder given by mistake.
      missing_hint: what to do when nothing is there.

    Raises:
      FileNotFoundError: nothing at `path` (the message names the working directory).
      ValueError: a folder, a file this process may not read, or an empty (0-byte) file.
    """
    p = pathlib.Path(os.path.expanduser(str(path)))
    if p.is_dir():
        raise ValueError(f"{what} {path} is a folder, not a file; name a file inside it, e.g. "
                         f"{os.path.join(str(path), example)}.")
    if not p.exists():
        raise FileNotFoundError(f"{what} {path} does not exist (working directory {os.getcwd()}); {missing_hint}.")
    if not p.is_file():
        raise ValueError(f"{what} {path} is not a regular file (a device, socket or pipe); copy the data to a file.")
    if not os.access(p, os.R_OK):
        raise ValueError(f"{what} {path} cannot be read (permission denied); make it readable (chmod u+r) or copy it.")
    if p.stat().st_size == 0:
        raise ValueError(f"{what} {path} is empty (0 bytes); fill it or remove it.")
    return p


def open_binary(path: str | os.PathLike) -> IO[bytes]:
    """`path` opened for reading bytes, decompressed when it ends in .xz / .gz / .bz2."""
    opener = _OPENERS.get(pathlib.Path(path).suffix.lower(), open)
    return opener(path, "rb")


def one_line(err: BaseException) -> str:
    """The innermost cause of `err` as `Type: message`, white space collapsed and cut to a readable length."""
    root = err
    while root.__cause__ is not None:
        root = root.__cause__
    text = " ".join(str(root).split()).rstrip(".") or "no message"  # embedded in a sentence of ours
    if len(text) > _MAX_DETAIL:
        text = text[:_MAX_DETAIL] + "…"
    return f"{type(root).__name__}: {text}"


def _lines(path: pathlib.Path) -> Iterator[tuple[int, bytes]]:
    with open_binary(path) as f:
        yield from enumerate(f, 1)


def _json_problem(path: pathlib.Path) -> str:
    """The first line that is not one JSON object (JSON Lines), or the error of a whole-document JSON file."""
    first = True
    for n, raw in _lines(path):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue  # reported before, or skipped on purpose (`undecodable_ok`)
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            if first:  # not JSON Lines: maybe one (pretty-printed) JSON document
                return _document_problem(path)
            return (f"line {n} is not valid JSON ({e.msg}, column {e.colno}); each line must hold one JSON object: "
                    "fix or remove that line")
        if not isinstance(value, dict):
            if first and isinstance(value, list):
                return ""  # a one-line JSON array of records is a valid document
            return f"line {n} holds a JSON {type(value).__name__}, not an object; give every line one {{...}} record"
        first = False
    if first:
        return "it holds only blank lines; give one JSON object per line"
    return ""


def _document_problem(path: pathlib.Path) -> str:
    with open_binary(path) as f:
        text = f.read().decode("utf-8", errors="replace")
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        return (f"line {e.lineno}, column {e.colno} is not valid JSON ({e.msg}); fix the file, or write one JSON "
                "object per line (JSON Lines)")
    return ""


def _csv_problem(path: pathlib.Path, delimiter: str) -> str:
    """The first CSV/TSV record whose field count differs from the header's, or an unclosed quotation mark."""
    with open_binary(path) as f:
        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        reader = csv.reader(text, delimiter=delimiter, strict=True)
        name = "TSV" if delimiter == "\t" else "CSV"
        header, start, rows = None, 1, 0
        try:
            for row in reader:
                rows += header is not None and bool(row)
                if header is None:
                    header = row
                elif row and len(row) > len(header):
                    return (f"line {start} has {len(row)} fields but the header has {len(header)}; quote fields that "
                            f"contain {'a tab' if name == 'TSV' else 'a comma'} (\"like, this\") or remove the extra "
                            "ones")
                start = reader.line_num + 1  # a quoted field may span lines: the next record starts here
        except csv.Error as e:
            return (f"the record starting on line {start} is not valid {name} ({e}); close every quotation mark, and "
                    "double a quotation mark inside a quoted field (\"\")")
    if header is not None and not rows:
        return "it has a header but no rows; add one row per example"
    return ""


def diagnose(path: str | os.PathLike, fmt: str, *, undecodable_ok: bool = False) -> str:
    """What is wrong with `path` read as `fmt` (`json`, `csv`, `tsv`, `text`), in words; `""` if nothing found.

    Checked in order: the compression (a cut-off or damaged .xz / .gz / .bz2), UTF-8 (line by line, unless
    `undecodable_ok`), then the format itself (JSON per line or as one document; CSV/TSV field counts and quotes).
    """
    p = pathlib.Path(os.path.expanduser(str(path)))
    if p.suffix.lower() == ".zst" or not p.is_file():
        return ""
    try:
        for n, raw in _lines(p):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                if not undecodable_ok:
                    return (f"line {n} is not valid UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1}); save the "
                            "file as UTF-8 (e.g. iconv -f latin1 -t utf-8)")
        if fmt == "json":
            return _json_problem(p)
        if fmt in ("csv", "tsv"):
            return _csv_problem(p, "\t" if fmt == "tsv" else ",")
    except DECOMPRESSION_ERRORS as err:
        return f"the file is truncated or damaged ({one_line(err)}); download or compress it again"
    return ""


def read_error(what: str, path: str | os.PathLike, fmt: str, err: BaseException, *, undecodable_ok: bool = False
               ) -> str:
    """A one-line message for a file that `datasets` could not read: the diagnosis, else the innermost error."""
    detail = diagnose(path, fmt, undecodable_ok=undecodable_ok) or one_line(err)
    return f"Could not read {what} {path} as {FORMAT_NAMES.get(fmt, fmt)}: {detail}."


__all__ = ["COMPRESSION_SUFFIXES", "DECOMPRESSION_ERRORS", "check_file", "diagnose", "one_line", "open_binary",
           "read_error", "strip_compression"]
