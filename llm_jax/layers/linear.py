"""Einsum projections whose kernels keep their real multi-axis shape (heads are a kernel axis).

`nn.DenseGeneral` builds a flat kernel for multi-axis features, which breaks logical partitioning under
`jax.set_mesh` (DESIGN.md §4); this small layer creates the kernel at full shape instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]


def _bias_dims(eqn: str) -> str:
    """Output letters that come from the kernel, in output order: the shape of the bias."""
    inputs, out = eqn.replace(" ", "").split("->")
    kernel = inputs.split(",")[1]
    return "".join(c for c in out if c in kernel)


class Einsum(nn.Module):
    """`y = einsum(eqn, x, kernel) (+ bias)`, e.g. `Einsum('BTD,DHK->BTHK', (D, H, K), ('embed', 'heads', 'kv'))`.

    Attributes:
      eqn: einsum equation `input,kernel->output` with the shape-suffix letters of DESIGN.md.
      shape: kernel shape.
      kernel_axes: logical axis name per kernel dim.
      use_bias: add a bias over the output dims that come from the kernel.
      dtype: compute dtype (params stay in `param_dtype`).
    """

    eqn: str
    shape: Sequence[int]
    kernel_axes: Sequence[str | None]
    use_bias: bool = True
    kernel_init: Initializer = nn.initializers.normal(0.02)
    bias_init: Initializer = nn.initializers.zeros
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if len(self.shape) != len(self.kernel_axes):
            raise ValueError(f"Einsum {self.eqn}: kernel shape {tuple(self.shape)} and axes {tuple(self.kernel_axes)} differ in rank.")
        kernel = self.param("kernel", nn.with_logical_partitioning(self.kernel_init, tuple(self.kernel_axes)),
                            tuple(self.shape), self.param_dtype)
        y = jnp.einsum(self.eqn, x.astype(self.dtype), kernel.astype(self.dtype))
        if self.use_bias:
            kernel_letters = self.eqn.replace(" ", "").split("->")[0].split(",")[1]
            dims = _bias_dims(self.eqn)
            bias_shape = tuple(self.shape[kernel_letters.index(c)] for c in dims)
            bias_axes = tuple(self.kernel_axes[kernel_letters.index(c)] for c in dims)
            bias = self.param("bias", nn.with_logical_partitioning(self.bias_init, bias_axes), bias_shape,
                              self.param_dtype)
            y = y + bias.astype(self.dtype)
        return y
