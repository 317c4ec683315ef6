"""Tokenizers: train, save, load, look up special ids, and encode documents.

The implementation lives in the :mod:`llm_jax.data.tokenizers` package (one module per algorithm, plus roles,
kinds, storage and encoding); this module keeps the historical import path ``llm_jax.data.tokenizer`` with the
same names.
"""

# Re-exports exactly the package's public names (its __all__).
from llm_jax.data.tokenizers import *
from llm_jax.data.tokenizers import __all__  # noqa: F401
