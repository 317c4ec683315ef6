"""Saving and loading tokenizers in the Hugging Face layout (``tokenizer.json``; ``spiece.model`` for Unigram)."""

from __future__ import annotations

import json
import os
import pathlib

import tokenizers

from llm_jax.data.tokenizers.unigram import SPIECE_MODEL, write_spm_model

TOKENIZER_FILE = "tokenizer.json"


def save_tokenizer(tok: tokenizers.Tokenizer, directory: str | os.PathLike[str]) -> pathlib.Path:
    """Writes ``tokenizer.json`` into ``directory`` (created if needed), the Hugging Face layout.

    A Unigram tokenizer also gets its ``spiece.model`` (the SentencePiece model, sentinels left out as in T5's),
    so that ``sentencepiece`` and transformers' SentencePiece-based classes can read the folder.

    Args:
      tok: The tokenizer to save.
      directory: Target folder.

    Returns:
      The path of the written ``tokenizer.json``.

    Raises:
      NotADirectoryError: ``directory`` is a file.
    """
    directory = pathlib.Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"Cannot save the tokenizer into {directory}: it is a file, not a folder.")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / TOKENIZER_FILE
    tok.save(str(path))
    if json.loads(tok.to_str())["model"]["type"] == "Unigram":
        write_spm_model(tok, directory / SPIECE_MODEL)
    return path


def load_tokenizer(directory_or_file: str | os.PathLike[str]) -> tokenizers.Tokenizer:
    """Loads a ``tokenizer.json`` (ours, or one from a Hugging Face checkpoint folder).

    ``tokenizer.json`` is complete for every kind; a ``spiece.model`` beside it is for other readers.

    Args:
      directory_or_file: A folder containing ``tokenizer.json``, or the JSON file itself.

    Returns:
      The tokenizer.

    Raises:
      FileNotFoundError: Nothing at that path, or a folder without ``tokenizer.json``.
      ValueError: The file is not a valid tokenizer description.
    """
    path = pathlib.Path(directory_or_file)
    if path.is_dir():
        path = path / TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"No tokenizer.json in {path.parent}. Train and save one with train_tokenizer/save_tokenizer, or "
                "point at a Hugging Face checkpoint folder that has a fast-tokenizer file (tokenizer.json)."
            )
    elif not path.is_file():
        raise FileNotFoundError(
            f"Tokenizer file {path} does not exist. Pass a tokenizer.json or the folder that contains it."
        )
    try:
        return tokenizers.Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises a bare Exception on malformed JSON.
        raise ValueError(f"{path} is not a valid tokenizers JSON file ({err}).") from err


__all__ = ["TOKENIZER_FILE", "load_tokenizer", "save_tokenizer"]
