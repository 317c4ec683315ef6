"""Boolean attention masks, shaped to broadcast against scores `[B, H, T, S]` (True = may attend)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def padding_mask(mask_BS: jax.Array) -> jax.Array:
    """Keys that are real tokens: `[B, 1, 1, S]`."""
    return mask_BS.astype(bool)[:, None, None, :]


def causal_mask(t: int, s: int | None = None) -> jax.Array:
    """Query i may see key j ≤ i + (S − T): `[1, 1, T, S]`.

    With S > T the first S − T keys are a memory / cache prefix that every query sees (Transformer-XL).
    """
    s = t if s is None else s
    q_T = jnp.arange(t)[:, None] + (s - t)
    k_S = jnp.arange(s)[None, :]
    return (k_S <= q_T)[None, None]


def banded_causal_mask(t: int, window: int, s: int | None = None) -> jax.Array:
    """Causal and local: query i sees the `window` keys (i − window, i] (GPT-3's locally banded sparse layers,
    Brown et al. 2020 §2.1; HF GPT-Neo's `window_size`), offset by S − T as in `causal_mask`: `[1, 1, T, S]`."""
    s = t if s is None else s
    q_T = jnp.arange(t)[:, None] + (s - t)
    k_S = jnp.arange(s)[None, :]
    return ((k_S <= q_T) & (k_S > q_T - window))[None, None]

