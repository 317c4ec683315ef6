"""Pretraining corpora as lists of documents, read through Hugging Face ``datasets``.

A document is one string whose sentences are separated by ``"\\n"``. Keeping sentence and document
boundaries is what the original objectives need: BERT's next-sentence pairs come from consecutive
sentences of one document (BERT §3.1, "Task #2"), and RoBERTa's FULL-SENTENCES packing adds a separator
where one document ends and the next begins (RoBERTa §4.2).

Sources:

* ``"bundled"`` — the corpus shipped inside the package (Python docs, KJV, WordNet; see
  ``bundled/README.md``), splits ``train`` and ``validation``. Works offline.
* a local file or glob: ``.jsonl`` / ``.json`` / ``.jsonl.xz`` (one document per record, read by the
  ``json`` builder) or ``.txt`` (blank-line-separated documents, one sentence per line, read by the
  ``text`` builder with ``sample_by="paragraph"``). A ``{split}`` placeholder in the path is replaced by
  ``split``, so one setting serves both ``train`` and ``validation``.
* anything else is taken as a Hugging Face Hub dataset name (needs network access or the local HF cache).

``datasets`` caches what it parses (under ``HF_DATASETS_CACHE``, by default ``~/.cache/huggingface``), so a
second load of the same file costs a memory map, not a parse.

Bad input is refused in one line that names the file (``llm_jax.data.files``): a missing path, a folder, an empty
or unreadable file, a cut-off ``.xz``, an invalid JSON line (with its number). Lines that are not UTF-8 are the
exception: a corpus scraped from the web often has a few, so they are skipped and counted in a warning.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import pathlib
import tempfile

import datasets
import numpy as np

from llm_jax.data import files as files_lib

log = logging.getLogger(__name__)

SPLITS = ("train", "validation")

# File endings each ``datasets`` builder reads. ``.xz`` / ``.gz`` / ``.bz2`` / ``.zst`` wrappers are
# decompressed by ``datasets`` itself.
_JSON_SUFFIXES = (".jsonl", ".json")
_TEXT_SUFFIXES = (".txt",)
_GLOB_CHARS = "*?["
_MISSING_HINT = "fix the path, or use source='bundled' for the corpus shipped with llm_jax"


def bundled_dir() -> pathlib.Path:
    """The ``bundled/`` folder of data shipped inside the installed package."""
    return pathlib.Path(__file__).resolve().parent / "bundled"


def _builder_for(path: str) -> str | None:
    """``"json"`` / ``"text"`` from a file name (compression suffix ignored), or ``None`` if neither."""
    name = files_lib.strip_compression(path)
    if name.endswith(_JSON_SUFFIXES):
        return "json"
    if name.endswith(_TEXT_SUFFIXES):
        return "text"
    return None


def _looks_local(source: str) -> bool:
    """Whether ``source`` names local files rather than a Hub dataset."""
    return (
        _builder_for(source) is not None
        or any(c in source for c in _GLOB_CHARS)
        or os.path.exists(source)
        or source.startswith((".", "/", "~"))
    )


def _local_files(source: str) -> tuple[str, list[str]]:
    """Expands a local path or glob into ``(builder, files)``; raises people-readable errors."""
    pattern = os.path.expanduser(source)
    if any(c in pattern for c in _GLOB_CHARS):
        files = sorted(f for f in glob.glob(pattern, recursive=True) if os.path.isfile(f))
        if not files:
            raise FileNotFoundError(
                f"No files match {source!r}. Check the pattern and the working directory ({os.getcwd()})."
            )
    else:
        files = [pattern]
    for f in files:  # each: there, a file, readable, not empty
        files_lib.check_file(f, "Corpus file", example="*.jsonl", missing_hint=_MISSING_HINT)
    builders = {_builder_for(f) for f in files}
    if None in builders:
        unknown = next(f for f in files if _builder_for(f) is None)
        raise ValueError(
            f"Cannot tell the format of {unknown}: corpus files must end in .jsonl, .json or .txt "
            "(optionally compressed: .xz, .gz, .bz2, .zst)."
        )
    if len(builders) > 1:
        raise ValueError(f"{source!r} matches both JSON and text files; give one format per source.")
    return builders.pop(), files


def _without_undecodable_lines(files: list[str]) -> list[str]:
    """Files as given, except that a file with lines that are not UTF-8 is replaced by a cleaned copy.

    Why: one bad byte makes the Arrow readers behind `datasets` fail the whole file; a corpus scraped from the
    web often has a few. Such lines are dropped and counted (a warning says how many and where), never a crash.
    """
    out = []
    for f in files:
        if pathlib.Path(f).suffix == ".zst" or pathlib.Path(f).resolve().is_relative_to(bundled_dir().resolve()):
            out.append(f)  # .zst: no stdlib reader (datasets reports a bad record itself); bundled: known clean
            continue
        bad = n = 0
        kept = []
        try:
            with files_lib.open_binary(f) as fh:
                for n, line in enumerate(fh, 1):
                    try:
                        line.decode("utf-8")
                    except UnicodeDecodeError:
                        bad += 1
                        continue
                    kept.append(line)
        except files_lib.DECOMPRESSION_ERRORS as err:
            raise ValueError(f"Corpus file {f} is truncated or damaged after line {n} ({files_lib.one_line(err)}); "
                             "download or compress it again.") from err
        if not bad:
            out.append(f)
            continue
        log.warning("%s: skipped %d line(s) that are not valid UTF-8.", f, bad)
        digest = hashlib.sha1(f"{os.path.abspath(f)}:{os.path.getmtime(f)}".encode()).hexdigest()[:16]
        suffixes = "".join(s for s in pathlib.Path(f).suffixes if s not in files_lib.COMPRESSION_SUFFIXES)
        clean = pathlib.Path(tempfile.gettempdir()) / "llm_jax_clean" / f"{digest}{suffixes or '.txt'}"
        clean.parent.mkdir(parents=True, exist_ok=True)
        clean.write_bytes(b"".join(kept))
        out.append(str(clean))
    return out


def _load_local(source: str, split: str) -> datasets.Dataset:
    builder, files = _local_files(source.replace("{split}", split))
    readable = _without_undecodable_lines(files)
    # Text files hold one document per blank-line-separated paragraph, one sentence per line: the input
    # format of google-research/bert's create_pretraining_data.py (its sample_text.txt).
    kwargs = {"sample_by": "paragraph"} if builder == "text" else {}
    try:
        return datasets.load_dataset(builder, data_files={"train": readable}, split="train", **kwargs)
    except Exception as err:  # datasets wraps parse errors in several types; all mean "bad file".
        # `datasets` does not say which file failed: the first one with a problem found is named.
        for f in files:
            found = files_lib.diagnose(f, builder, undecodable_ok=True)
            if found:
                raise ValueError(f"Could not read corpus file {f} as {builder.upper()}: {found}.") from err
        raise ValueError(
            f"Could not read {source} as {builder.upper()} with Hugging Face datasets ({files_lib.one_line(err)}). "
            "Each JSON Lines record must be one JSON object per line (e.g. {\"text\": \"First sentence.\\nSecond."
            "\"})."
        ) from err


def _load_hub(name: str, split: str) -> datasets.Dataset:
    try:
        return datasets.load_dataset(name, split=split)
    except Exception as err:  # Network, auth, missing split, unknown name: all surface here.
        raise RuntimeError(
            f"Could not load Hugging Face dataset {name!r} (split {split!r}): {err}. Hub datasets need network "
            "access or an earlier download in the HF cache; for local data pass a path ending in .jsonl, .json, "
            ".jsonl.xz or .txt, or use source='bundled'."
        ) from err


def _clean(text: object, where: str, field: str, row: int) -> str:
    """Strips every sentence and drops empty lines, so ``"\\n"`` always separates two real sentences.

    A null text is an empty document (left out, and counted by the caller), never the word "None".
    """
    if text is None:
        return ""
    if not isinstance(text, str):
        raise ValueError(
            f"Field {field!r} of {where} (record {row + 1}) holds {type(text).__name__} values, not text. Pass "
            "text_field= with the field that holds the document string."
        )
    return "\n".join(line.strip() for line in text.split("\n") if line.strip())


def load_documents(
    source: str = "bundled",
    split: str = "train",
    *,
    text_field: str = "text",
    max_documents: int | None = None,
) -> list[str]:
    """Loads a corpus as a list of documents (sentences separated by ``"\\n"``).

    Args:
      source: ``"bundled"``, a local file / glob (``.jsonl``, ``.json``, ``.jsonl.xz``, ``.txt``; a
        ``{split}`` placeholder is filled with ``split``), or a Hugging Face Hub dataset name.
      split: ``"train"`` or ``"validation"`` for the bundled corpus; the Hub split name for a Hub dataset;
        for a local path only used to fill ``{split}`` (a path without it is read whatever the split).
      text_field: Record field holding the document text (``.txt`` files always give ``"text"``).
      max_documents: Keep only the first N documents of the source, in file order (deterministic).

    Returns:
      Document texts, each stripped of blank lines; blank documents are left out.

    Raises:
      FileNotFoundError: A local file or glob that names nothing.
      ValueError: Empty data, a missing ``text_field`` (the message lists the fields there are), a bad
        ``split`` or ``max_documents``.
      RuntimeError: A Hub dataset that could not be loaded.
    """
    if not isinstance(source, str) or not source:
        raise ValueError(f"source must be 'bundled', a file path or a Hub dataset name, got {source!r}.")
    if max_documents is not None and (
        isinstance(max_documents, bool) or not isinstance(max_documents, (int, np.integer)) or max_documents < 1
    ):
        raise ValueError(f"max_documents must be a positive integer or None, got {max_documents!r}.")
    if source == "bundled":
        if split not in SPLITS:
            raise ValueError(f"The bundled corpus has splits {', '.join(SPLITS)}; got split={split!r}.")
        path = bundled_dir() / "corpus" / f"{split}.jsonl.xz"
        if not path.is_file():
            raise FileNotFoundError(
                f"The bundled corpus file {path} is missing: the llm_jax installation is incomplete. Reinstall "
                "the package (pip install --force-reinstall llm_jax) so its package data is copied."
            )
        ds = _load_local(str(path), split)
        where = f"bundled corpus ({split})"
    elif _looks_local(source):
        ds = _load_local(source, split)
        where = source
    else:
        ds = _load_hub(source, split)
        where = f"Hugging Face dataset {source!r} ({split})"
    if text_field not in ds.column_names:
        raise ValueError(
            f"{where} has no field {text_field!r}; its fields are {', '.join(ds.column_names) or '(none)'}. "
            "Pass text_field= with the one that holds the document text."
        )
    if max_documents is not None and max_documents < len(ds):
        ds = ds.select(range(int(max_documents)))
    texts = ds[text_field]
    nulls = sum(text is None for text in texts)
    if nulls:
        log.warning("%s: left out %d record(s) whose %r is null.", where, nulls, text_field)
    docs = [doc for doc in (_clean(text, where, text_field, i) for i, text in enumerate(texts)) if doc]
    if not docs:
        raise ValueError(
            f"{where} has no non-empty documents in field {text_field!r} ({len(ds)} records read). "
            "Check that the file holds text and that text_field names the right field."
        )
    return docs
