"""Normalisation layers, computed in float32 whatever the compute dtype (small-variance stats in bf16 drift)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class LayerNorm(nn.Module):
    """LayerNorm over the last axis (Ba et al., 2016), with learned scale and bias.

    Attributes:
      eps: added to the variance (BERT 1e-12, RoBERTa 1e-5, GPT-2 1e-5).
      use_bias: False gives a bias-free LayerNorm.
      dtype: output dtype.
    """

    eps: float = 1e-12
    use_bias: bool = True
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d = x.shape[-1]
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("norm",)), (d,), jnp.float32)
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps) * scale
        if self.use_bias:
            y = y + self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, ("norm",)), (d,), jnp.float32)
        return y.astype(self.dtype)


class RMSNorm(nn.Module):
    """Root-mean-square norm without mean subtraction or bias (T5, Zhang & Sennrich 2019)."""

    eps: float = 1e-6
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d = x.shape[-1]
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("norm",)), (d,), jnp.float32)
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps) * scale
        return y.astype(self.dtype)
