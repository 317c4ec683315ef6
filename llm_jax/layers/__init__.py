"""Family-agnostic Flax Linen building blocks."""

from llm_jax.layers.attention import (
    ATTENTION_IMPLEMENTATIONS,
    BATCHED_CACHE_VARIABLES,
    MultiHeadAttention,
    dot_product_attention,
    select_cache_rows,
)
from llm_jax.layers.embeddings import Embed, check_ids
from llm_jax.layers.linear import Einsum
from llm_jax.layers.masks import banded_causal_mask, causal_mask, padding_mask
from llm_jax.layers.mlp import ACTIVATIONS, Mlp, activation
from llm_jax.layers.norms import LayerNorm, RMSNorm
from llm_jax.layers.relative import ATTN_TYPES, RelativeAttention, rel_shift, sinusoid_positions
from llm_jax.layers.stack import REMAT_POLICIES, Stack, StackOutput

__all__ = [
    "ACTIVATIONS", "ATTENTION_IMPLEMENTATIONS", "ATTN_TYPES", "BATCHED_CACHE_VARIABLES", "Einsum", "Embed",
    "LayerNorm", "Mlp", "MultiHeadAttention", "REMAT_POLICIES", "RMSNorm", "RelativeAttention", "Stack", "StackOutput", "activation",
    "banded_causal_mask", "causal_mask", "check_ids", "dot_product_attention", "padding_mask", "rel_shift",
    "select_cache_rows", "sinusoid_positions",
]
