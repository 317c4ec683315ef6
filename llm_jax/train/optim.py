"""The optimizer: AdamW with linear warmup + linear decay, no decay on biases/norms, global-norm clipping.

As BERT's `optimization.py` (Devlin et al. 2019 Appendix A.2): Adam β=(0.9, 0.999), ε=1e-6, weight decay 0.01
excluded from LayerNorm and bias parameters, warmup then linear decay to 0, gradient clipping at norm 1.0.
"""

from __future__ import annotations

import dataclasses

import jax
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

    def validate(self) -> "OptimConfig":
        if self.learning_rate <= 0:
            raise ValueError(f"optim.learning_rate must be > 0 (got {self.learning_rate}).")
        if self.warmup_steps < 0 or self.grad_accum_steps < 1:
            raise ValueError("optim.warmup_steps must be ≥ 0 and optim.grad_accum_steps ≥ 1.")
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


def make_optimizer(cfg: OptimConfig, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optax chain and its schedule (the schedule is logged as `learning_rate`)."""
    cfg.validate()
    schedule = learning_rate_schedule(cfg, total_steps)
    parts = []
    if cfg.clip_norm > 0:
        parts.append(optax.clip_by_global_norm(cfg.clip_norm))
    parts.append(optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                             mask=_decay_mask))
    return optax.chain(*parts), schedule
