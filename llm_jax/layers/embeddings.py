"""Token / position / type embeddings, with the transpose used for tied output logits, and the id range check."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def check_ids(ids, n: int, field: str = "ids") -> None:
    """Raises a one-line ValueError unless every id is in `[0, n)`. Host side: call it on concrete arrays.

    Why: `jnp.take` (and every gather under jit) fills out-of-range rows with NaN instead of failing, which
    surfaces steps later as a NaN loss (DESIGN §5.11).

    Args:
      ids: integer array (numpy or a concrete jax array), any shape.
      n: rows of the table (N).
      field: what the ids are, for the message: "token ids", "token_type (segment) ids", "position ids".

    Raises:
      ValueError: naming the field, the valid range and the offending values.
    """
    ids = np.asarray(ids)
    if ids.size == 0:
        return
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= n:
        raise ValueError(f"{field} must be in [0, {n}) for this {n}-row embedding table but range over [{lo}, {hi}]; "
                         f"encode the inputs with the tokenizer / config that matches the model, or enlarge the "
                         f"table in the model config.")


class Embed(nn.Module):
    """A lookup table `[N, E]`; `attend(x)` gives `x · tableᵀ` (tied MLM / LM logits, Press & Wolf 2017).

    Out-of-range ids: when the ids are concrete (eager `model.apply`), `__call__` checks them on the host and
    raises `check_ids`'s ValueError. Under tracing (`jax.jit`, `eval_shape`) it does not check — no host callback
    in the hot path — and a bad id gives NaN rows, so jitted entry points must call `check_ids` on their host
    batches before the step (the objectives' `prepare` and the data pipeline do).

    Attributes:
      num_embeddings: N (vocabulary, positions or token types).
      features: E (model width D, or ALBERT's factorised width E < D).
      axes: logical axes of the table, e.g. `("vocab", "embed")`.
      field: what the ids are, for the out-of-range message ("token ids", "position ids", ...).
    """

    num_embeddings: int
    features: int
    axes: Sequence[str | None] = ("vocab", "embed")
    embedding_init: nn.initializers.Initializer = nn.initializers.normal(0.02)
    dtype: jnp.dtype = jnp.float32
    field: str = "ids"

    def setup(self):
        self.embedding = self.param("embedding", nn.with_logical_partitioning(self.embedding_init, tuple(self.axes)),
                                    (self.num_embeddings, self.features), jnp.float32)

    def __call__(self, ids: jax.Array) -> jax.Array:
        """`[...] int → [..., E]`; raises ValueError for concrete out-of-range ids (see the class docstring)."""
        if not isinstance(ids, jax.core.Tracer):
            check_ids(ids, self.num_embeddings, self.field)
        # Why a one-hot-free gather: `take` is exact and cheap.
        return jnp.take(self.embedding, ids, axis=0).astype(self.dtype)

    def attend(self, x_BTE: jax.Array) -> jax.Array:
        x_BTE, table_VE = x_BTE.astype(self.dtype), self.embedding.astype(self.dtype)
        # Why a 2-D matmul over the flattened leading axes rather than `einsum("BTE,VE->BTV")`: for the latter's
        # gradient XLA:CPU materialises transposed copies of the [B, T, V] logit gradient (twice); in 2-D it folds
        # the transposes into the dots: ~20 % less time for this projection (benchmarks/NOTES.md).
        logits = jnp.dot(x_BTE.reshape(-1, x_BTE.shape[-1]), table_VE.T)
        return logits.reshape(*x_BTE.shape[:-1], table_VE.shape[0])
