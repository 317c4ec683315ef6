"""The optimizer: AdamW with linear warmup + linear decay, no decay on biases/norms, global-norm clipping.

As BERT's `optimization.py` (Devlin et al. 2019 Appendix A.2): Adam β=(0.9, 0.999), ε=1e-6, weight decay 0.01
excluded from LayerNorm and bias parameters, warmup then linear decay to 0, gradient clipping at norm 1.0.
Optionally layer-wise learning-rate decay for fine-tuning (ELECTRA, Clark et al. 2020, Appendix A).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Optimizer hyperparameters.

    Attributes:
      learning_rate: peak learning rate.
      warmup_steps: linear warmup from 0 to the peak.
      end_learning_rate: value reached at the last step (linear decay).
      weight_decay: decoupled weight decay (AdamW), not applied to biases and norm scales.
      b1, b2, eps: Adam moments.
      clip_norm: global-norm gradient clipping (≤ 0 disables).
      grad_accum_steps: micro-batches per update (the batch is split inside the jitted step).
      layer_decay: layer-wise learning-rate decay (1.0 = off); see `layerwise_lr_decay`.
    """

    learning_rate: float = 1e-4
    warmup_steps: int = 10_000
    end_learning_rate: float = 0.0
    weight_decay: float = 0.01
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-6
    clip_norm: float = 1.0
    grad_accum_steps: int = 1
    layer_decay: float = 1.0

    def validate(self) -> "OptimConfig":
        if self.learning_rate <= 0:
            raise ValueError(f"optim.learning_rate must be > 0 (got {self.learning_rate}).")
        if self.warmup_steps < 0 or self.grad_accum_steps < 1:
            raise ValueError("optim.warmup_steps must be ≥ 0 and optim.grad_accum_steps ≥ 1.")
        if not 0.0 < self.layer_decay <= 1.0:
            raise ValueError(f"optim.layer_decay={self.layer_decay} must be in (0, 1] (1.0 disables it; ELECTRA "
                             "used 0.8 for Base and 0.9 for Large).")
        return self


def learning_rate_schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    """Linear warmup to the peak, then linear decay to `end_learning_rate` at `total_steps`."""
    warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
    decay = optax.linear_schedule(cfg.learning_rate, cfg.end_learning_rate, max(total_steps - warmup, 1))
    if warmup == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, cfg.learning_rate, warmup), decay], [warmup])


def _decay_mask(params):
    """True for weights that get decay: everything but biases and norm scales (named `bias` / `scale`)."""

    def keep(path, _):
        names = [getattr(k, "key", None) for k in path if hasattr(k, "key")]
        last = names[-1] if names else None
        return last not in ("bias", "scale")

    return jax.tree_util.tree_map_with_path(keep, params)


def _path_names(path) -> list[str]:
    return [str(getattr(k, "key", getattr(k, "name", k))) for k in path]


def layer_depth_factors(params, decay: float):
    """Per-parameter learning-rate factors `decay^(L + 1 − depth)`, shaped to multiply the updates.

    Depths: the embeddings (any param under an `embeddings` module) are 0; layer `l` (0-based) of a stack is
    `l + 1`; everything else — the pooler and the task head — is on top at `L + 1`, factor 1. So the top layer
    gets `decay`, layer `l` gets `decay^(L − l)` and the embeddings `decay^(L + 1)`: every depth learns `decay`
    times as fast as the one above it. (ELECTRA's released code puts the head two steps above the top layer,
    `n_layers + 2`, which multiplies everything below the head by one more `decay`.)

    Our layers are stacked on a leading `[L, ...]` axis in one scanned param (`llm_jax.layers.Stack`, whose
    module is named `layers`), so a stacked param's factor is an `[L, 1, ..., 1]` array, one value per slice.
    """
    def factor(path, x):
        names = _path_names(path)
        shape = getattr(x, "shape", ())
        if "layers" in names and len(shape) >= 1:
            n = shape[0]
            f = decay ** (n - np.arange(n, dtype=np.float64))
            return jnp.asarray(f.reshape((n,) + (1,) * (len(shape) - 1)), jnp.float32)
        if "embeddings" in names:
            return jnp.asarray(decay ** (_num_layers(params) + 1), jnp.float32)
        return jnp.asarray(1.0, jnp.float32)

    return jax.tree_util.tree_map_with_path(factor, params)


def _num_layers(params) -> int:
    """L: the leading size of the stacked layer params (the deepest stack when there are several)."""
    sizes = [np.shape(x)[0] for path, x in jax.tree_util.tree_flatten_with_path(params)[0]
             if "layers" in _path_names(path) and np.ndim(x) >= 1]
    return max(sizes) if sizes else 0


def layerwise_lr_decay(decay: float) -> optax.GradientTransformation:
    """Scales each update by `layer_depth_factors` — layer-wise learning-rate decay (ELECTRA App. A; Howard &
    Ruder 2018's discriminative fine-tuning). Placed after AdamW, it scales the whole step, weight decay included,
    exactly as a per-layer learning rate would."""

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        factors = layer_depth_factors(updates, decay)
        return jax.tree.map(lambda u, f: (u * f).astype(u.dtype), updates, factors), state

    return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(cfg: OptimConfig, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optax chain and its schedule (the schedule is logged as `learning_rate`)."""
    cfg.validate()
    schedule = learning_rate_schedule(cfg, total_steps)
    parts = []
    if cfg.clip_norm > 0:
        parts.append(optax.clip_by_global_norm(cfg.clip_norm))
    parts.append(optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                             mask=_decay_mask))
    if cfg.layer_decay != 1.0:
        parts.append(layerwise_lr_decay(cfg.layer_decay))
    return optax.chain(*parts), schedule
