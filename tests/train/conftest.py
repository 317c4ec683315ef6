"""Fixtures shared by the fine-tuning tests: small tokenizers trained once per session."""

import pytest

from llm_jax.data import load_documents, save_tokenizer, train_tokenizer


@pytest.fixture(scope="session")
def small_docs():
    return load_documents("bundled", "train", max_documents=1500)


@pytest.fixture(scope="session")
def small_tokenizer(tmp_path_factory, small_docs):
    """A 2000-entry WordPiece trained on 1500 bundled documents (seconds, not the full corpus's minute)."""
    path = tmp_path_factory.mktemp("tok")
    save_tokenizer(train_tokenizer("wordpiece", small_docs, 2000), path)
    return path
