"""Data: corpora through Hugging Face ``datasets``, tokenizers through ``tokenizers``, packing, loading.

The flow of a pretraining run: :func:`load_documents` → :func:`train_tokenizer` / :func:`load_tokenizer` →
:func:`tokenize_documents` → an objective's example builder (e.g. :func:`pack_full_sentences`) →
:class:`DeterministicLoader`. The bundled corpus and tasks live in :func:`bundled_dir`.
"""

from llm_jax.data.corpus import bundled_dir, load_documents
from llm_jax.data.loader import DeterministicLoader
from llm_jax.data.packing import pack_full_sentences
from llm_jax.data.tokenizer import (
    SpecialIds,
    load_tokenizer,
    save_tokenizer,
    special_ids,
    tokenize_documents,
    train_tokenizer,
)

__all__ = [
    "DeterministicLoader",
    "SpecialIds",
    "bundled_dir",
    "load_documents",
    "load_tokenizer",
    "pack_full_sentences",
    "save_tokenizer",
    "special_ids",
    "tokenize_documents",
    "train_tokenizer",
]
