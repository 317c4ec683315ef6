"""Position-wise feed-forward block (Vaswani et al. 2017 §3.3), optionally gated (Shazeer 2020, T5 v1.1)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from llm_jax.layers.linear import Einsum
from llm_jax.sharding import BATCH, MLP, SEQ, P_EMBED, P_MLP, shard


def _gelu_exact(x):
    return jax.nn.gelu(x, approximate=False)


def _gelu_tanh(x):
    return jax.nn.gelu(x, approximate=True)


# Names as Hugging Face configs spell them ("gelu" is the exact erf form; "gelu_new" the tanh one of GPT-2).
ACTIVATIONS = {
    "gelu": _gelu_exact,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
}


def activation(name: str):
    """Looks up an activation by its Hugging Face name."""
    if name not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}; known: {sorted(ACTIVATIONS)}.")
    return ACTIVATIONS[name]


class Mlp(nn.Module):
    """`wo(act(wi(x)))`, or `wo(act(wi_0(x)) * wi_1(x))` when gated.

    Attributes:
      hidden_size: F.
      act: activation name (see `ACTIVATIONS`).
      gated: gated-linear-unit variant (T5 v1.1 gated-GELU).
      use_bias: biases on both projections (BERT/GPT yes, T5 no).
      dropout_rate: dropout on the hidden activation (T5) — BERT applies its dropout after `wo`, in the block.
      kernel_init: initializer of the input projection(s), and of `wo` unless `out_init` is given.
      out_init: initializer of `wo`; None = `kernel_init` (T5 starts `wo` at std F^-1/2, `wi` at D^-1/2).
    """

    hidden_size: int
    act: str = "gelu"
    gated: bool = False
    use_bias: bool = True
    dropout_rate: float = 0.0
    kernel_init: nn.initializers.Initializer = nn.initializers.normal(0.02)
    dtype: jnp.dtype = jnp.float32
    out_init: nn.initializers.Initializer | None = None

    @nn.compact
    def __call__(self, x_BTD: jax.Array, deterministic: bool = True) -> jax.Array:
        d = x_BTD.shape[-1]
        f = self.hidden_size
        proj = lambda name: Einsum("BTD,DF->BTF", (d, f), (P_EMBED, P_MLP), use_bias=self.use_bias,
                                   kernel_init=self.kernel_init, dtype=self.dtype, name=name)
        if self.gated:
            h_BTF = activation(self.act)(proj("wi_0")(x_BTD)) * proj("wi_1")(x_BTD)
        else:
            h_BTF = activation(self.act)(proj("wi")(x_BTD))
        h_BTF = shard(h_BTF, BATCH, SEQ, MLP)
        h_BTF = nn.Dropout(self.dropout_rate)(h_BTF, deterministic=deterministic)
        return Einsum("BTF,FD->BTD", (f, d), (P_MLP, P_EMBED), use_bias=self.use_bias,
                      kernel_init=self.kernel_init if self.out_init is None else self.out_init, dtype=self.dtype,
                      name="wo")(h_BTF)
