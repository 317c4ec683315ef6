"""Token / position / type embeddings, with the transpose used for tied output logits."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class Embed(nn.Module):
    """A lookup table `[N, E]`; `attend(x)` gives `x · tableᵀ` (tied MLM / LM logits, Press & Wolf 2017).

    Attributes:
      num_embeddings: N (vocabulary, positions or token types).
      features: E (model width D, or ALBERT's factorised width E < D).
      axes: logical axes of the table, e.g. `("vocab", "embed")`.
    """

    num_embeddings: int
    features: int
    axes: Sequence[str | None] = ("vocab", "embed")
    embedding_init: nn.initializers.Initializer = nn.initializers.normal(0.02)
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.embedding = self.param("embedding", nn.with_logical_partitioning(self.embedding_init, tuple(self.axes)),
                                    (self.num_embeddings, self.features), jnp.float32)

    def __call__(self, ids: jax.Array) -> jax.Array:
        # Why a one-hot-free gather: `take` is exact and cheap; ids were range-checked on the host.
        return jnp.take(self.embedding, ids, axis=0).astype(self.dtype)

    def attend(self, x_BTE: jax.Array) -> jax.Array:
        x_BTE, table_VE = x_BTE.astype(self.dtype), self.embedding.astype(self.dtype)
        # Why a 2-D matmul over the flattened leading axes rather than `einsum("BTE,VE->BTV")`: for the latter's
        # gradient XLA:CPU materialises transposed copies of the [B, T, V] logit gradient (twice); in 2-D it folds
        # the transposes into the dots: ~20 % less time for this projection (benchmarks/NOTES.md).
        logits = jnp.dot(x_BTE.reshape(-1, x_BTE.shape[-1]), table_VE.T)
        return logits.reshape(*x_BTE.shape[:-1], table_VE.shape[0])
