"""Family-agnostic Flax Linen building blocks."""

from llm_jax.layers.attention import ATTENTION_IMPLEMENTATIONS, MultiHeadAttention, dot_product_attention
from llm_jax.layers.embeddings import Embed
from llm_jax.layers.linear import Einsum
from llm_jax.layers.masks import banded_causal_mask, causal_mask, combine, padding_mask, segment_mask
from llm_jax.layers.mlp import ACTIVATIONS, Mlp, activation
from llm_jax.layers.norms import LayerNorm, RMSNorm
from llm_jax.layers.stack import REMAT_POLICIES, Stack

__all__ = [
    "ACTIVATIONS", "ATTENTION_IMPLEMENTATIONS", "Einsum", "Embed", "LayerNorm", "Mlp", "MultiHeadAttention", "REMAT_POLICIES", "RMSNorm",
    "Stack", "activation", "banded_causal_mask", "causal_mask", "combine", "dot_product_attention",
    "padding_mask", "segment_mask",
]
