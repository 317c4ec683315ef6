"""Shared fixtures for the data tests: the bundled validation split and tokenizers trained on it once."""

import pytest

from llm_jax.data import load_documents, train_tokenizer

# Small enough to train in well under a second, large enough for real merges on all three sources.
SMALL_VOCAB = 1000


@pytest.fixture(scope="session")
def small_vocab() -> int:
    return SMALL_VOCAB


@pytest.fixture(scope="session")
def validation_docs() -> list[str]:
    return load_documents("bundled", "validation")


@pytest.fixture(scope="session")
def wordpiece_tok(validation_docs):
    return train_tokenizer("wordpiece", validation_docs, SMALL_VOCAB)


@pytest.fixture(scope="session")
def bpe_tok(validation_docs):
    return train_tokenizer("bytelevel_bpe", validation_docs, SMALL_VOCAB)
