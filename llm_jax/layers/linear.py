"""Einsum projections whose kernels keep their real multi-axis shape (heads are a kernel axis).

`nn.DenseGeneral` builds a flat kernel for multi-axis features, which breaks logical partitioning under
`jax.set_mesh` (DESIGN.md §4); this small layer creates the kernel at full shape instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Initializer = Callable[..., jax.Array]


def _as_matmul(eqn: str) -> tuple[int, int] | None:
    """`(n_contract, n_free_kernel)` when `eqn` is a plain projection, else None.

    A plain projection contracts the input's trailing letters with the kernel's leading ones (same order) and
    appends the kernel's remaining letters to the input's leading ones: `BTD,DHK->BTHK`, `BTHK,HKD->BTD`.
    """
    inputs, out = eqn.replace(" ", "").split("->")
    x, kernel = inputs.split(",")
    n = len(x) - len(out) + len(kernel)
    if n % 2:
        return None
    n_contract = n // 2
    if n_contract < 1 or n_contract > min(len(x), len(kernel)):
        return None
    contract, free_x, free_k = x[len(x) - n_contract:], x[:len(x) - n_contract], kernel[n_contract:]
    if kernel[:n_contract] != contract or out != free_x + free_k or len(set(x + free_k)) != len(x + free_k):
        return None
    return n_contract, len(free_k)


def _bias_dims(eqn: str) -> str:
    """Output letters that come from the kernel, in output order: the shape of the bias."""
    inputs, out = eqn.replace(" ", "").split("->")
    kernel = inputs.split(",")[1]
    return "".join(c for c in out if c in kernel)


def matmul_layout() -> bool:
    """Whether a plain projection runs as a 2-D matmul on reshaped views (True: every float model).

    Quantization (`llm_jax.compression.quantize`) intercepts this function to return False while a quantized model
    runs: the projection is then the einsum on the kernel at its own multi-axis shape, so its int8 values keep the
    saved layout (and logical axes) and its per-output-channel scales follow the kernel's output axes.
    """
    return True


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
        float_layout = matmul_layout()
        x = x.astype(self.dtype)
        if float_layout:  # a quantized kernel (qwix's int8 values + scales) is dequantized by the product itself
            kernel = kernel.astype(self.dtype)
        plain = _as_matmul(self.eqn)
        if plain is None or not float_layout:
            y = jnp.einsum(self.eqn, x, kernel)
        else:
            # Why a 2-D matmul on reshaped views (free: both are row-major) rather than the einsum: for the
            # gradient of a multi-axis kernel (heads × head dim) XLA:CPU emits the dot and then a transposing copy
            # of the whole kernel gradient, every layer and step; with 2-D operands it folds the transpose into
            # the dot (benchmarks/NOTES.md). Same products and sums as the einsum.
            n_contract, n_free = plain
            batch_shape, k_in = x.shape[:x.ndim - n_contract], kernel.shape[:n_contract]
            k_out = kernel.shape[n_contract:]
            y = jnp.dot(x.reshape(-1, int(np.prod(k_in))), kernel.reshape(int(np.prod(k_in)), int(np.prod(k_out))))
            y = y.reshape(*batch_shape, *k_out)
        if self.use_bias:
            kernel_letters = self.eqn.replace(" ", "").split("->")[0].split(",")[1]
            dims = _bias_dims(self.eqn)
            bias_shape = tuple(self.shape[kernel_letters.index(c)] for c in dims)
            bias_axes = tuple(self.kernel_axes[kernel_letters.index(c)] for c in dims)
            bias = self.param("bias", nn.with_logical_partitioning(self.bias_init, bias_axes), bias_shape,
                              self.param_dtype)
            y = y + bias.astype(self.dtype)
        return y
