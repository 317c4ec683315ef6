"""The optimizer: AdamW or Adafactor, a warmup + decay schedule, no decay on biases/norms, global-norm clipping.

Default as BERT's `optimization.py` (Devlin et al. 2019 Appendix A.2): Adam β=(0.9, 0.999), ε=1e-6, weight decay
0.01 excluded from LayerNorm and bias parameters, warmup then linear decay to 0, gradient clipping at norm 1.0.
GPT-2/3 and Transformer-XL decay with a cosine; T5 trains with Adafactor and an inverse-square-root schedule
(Raffel et al. 2020 §3.1.2). Optionally layer-wise learning-rate decay for fine-tuning (ELECTRA, Clark et al.
2020, Appendix A), and extra optax transforms at the end of the chain (pruning masks).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from llm_jax.layers.stack import SCOPE as STACK_SCOPE

OPTIMIZERS = ("adamw", "adafactor")
SCHEDULES = ("linear", "cosine", "rsqrt", "constant")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Optimizer hyperparameters.

    Attributes:
      learning_rate: peak learning rate.
      warmup_steps: linear warmup from 0 to the peak ("rsqrt": the constant stretch before the decay).
      end_learning_rate: value reached at the last step ("linear" and "cosine"; "rsqrt" ignores it).
      weight_decay: decoupled weight decay (`lr × weight_decay × param` per step, as AdamW), not applied to biases
        and norm scales; the same meaning for Adafactor (T5 used none: set 0).
      b1, b2, eps: Adam moments (AdamW only).
      clip_norm: global-norm gradient clipping (≤ 0 disables).
      grad_accum_steps: micro-batches per update (the batch is split inside the jitted step).
      layer_decay: layer-wise learning-rate decay (1.0 = off); see `layer_depth_factors`.
      name: "adamw" or "adafactor" (optax's Adafactor with its defaults, which are T5's: factored second
        moments, decay rate 0.8, update clipping at RMS 1.0, step scaled by the parameter RMS, no momentum).
      schedule: "linear" (warmup, then linear decay to `end_learning_rate`), "cosine" (warmup, then cosine decay
        to `end_learning_rate`) or "rsqrt" (`learning_rate × sqrt(warmup / max(step, warmup))`: constant, then
        ∝ 1/sqrt(step); T5's `1/sqrt(max(step, 10⁴))` is `learning_rate=0.01, warmup_steps=10_000`) or
        "constant" (warmup, then `learning_rate` to the end: T5's fine-tuning, §3.1.2, at 0.001).
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
    name: str = "adamw"
    schedule: str = "linear"

    def validate(self) -> "OptimConfig":
        if self.learning_rate <= 0:
            raise ValueError(f"optim.learning_rate must be > 0 (got {self.learning_rate}).")
        if self.warmup_steps < 0 or self.grad_accum_steps < 1:
            raise ValueError("optim.warmup_steps must be ≥ 0 and optim.grad_accum_steps ≥ 1.")
        if not 0.0 < self.layer_decay <= 1.0:
            raise ValueError(f"optim.layer_decay={self.layer_decay} must be in (0, 1] (1.0 disables it; ELECTRA "
                             "used 0.8 for Base and 0.9 for Large).")
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optim.name={self.name!r} is not an optimizer here; choose one of {OPTIMIZERS}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"optim.schedule={self.schedule!r} is not a schedule here; choose one of {SCHEDULES}.")
        return self


def learning_rate_schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    """The learning rate at each optimizer step (see `OptimConfig.schedule`); `total_steps` ends the decay."""
    if cfg.schedule == "rsqrt":
        k = float(max(cfg.warmup_steps, 1))
        peak = cfg.learning_rate
        return lambda step: peak * jnp.sqrt(k / jnp.maximum(jnp.asarray(step, jnp.float32), k))
    warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
    decay_steps = max(total_steps - warmup, 1)
    if cfg.schedule == "constant":
        decay = optax.constant_schedule(cfg.learning_rate)
    elif cfg.schedule == "cosine":
        decay = optax.cosine_decay_schedule(cfg.learning_rate, decay_steps, alpha=cfg.end_learning_rate / cfg.learning_rate)
    else:
        decay = optax.linear_schedule(cfg.learning_rate, cfg.end_learning_rate, decay_steps)
    if warmup == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, cfg.learning_rate, warmup), decay], [warmup])


def _decay_mask(params):
    """True for weights that get decay: everything but norm scales (named `scale`) and biases — any param whose
    path names a bias: the `bias` vectors, Transformer-XL / XLNet's relative-attention biases u, v, s (`r_w_bias`,
    `r_r_bias`, `r_s_bias`), T5's relative position bias table (`relative_attention_bias/embedding`), the
    adaptive softmax's `cluster_bias`. This is the rule of the original code (XLNet's `exclude_from_weight_decay=
    ["LayerNorm", "layer_norm", "bias"]` matched anywhere in a variable's name) and of Hugging Face's example
    scripts (`no_decay = ["bias", "LayerNorm.weight"]`, substrings of the parameter name)."""

    def keep(path, _):
        names = [str(getattr(k, "key", "")) for k in path if hasattr(k, "key")]
        last = names[-1] if names else None
        return last != "scale" and not any("bias" in name for name in names)

    return jax.tree_util.tree_map_with_path(keep, params)


def _path_names(path) -> list[str]:
    return [str(getattr(k, "key", getattr(k, "name", k))) for k in path]


def _is_box(x) -> bool:
    return isinstance(x, nn.meta.AxisMetadata)


def layer_depth_factors(params, decay: float):
    """Per-parameter learning-rate factors `decay^(L + 1 − depth)`, shaped to multiply the updates.

    Depths: the embeddings (any param under an `embeddings` or `embeddings_*` module) are 0; layer `l` (0-based) of a stack is
    `l + 1`; everything else — the pooler and the task head — is on top at `L + 1`, factor 1. So the top layer
    gets `decay`, layer `l` gets `decay^(L − l)` and the embeddings `decay^(L + 1)`: every depth learns `decay`
    times as fast as the one above it. (ELECTRA's released code puts the head two steps above the top layer,
    `n_layers + 2`, which multiplies everything below the head by one more `decay`.)

    The layer index comes from the params' logical `layers` axis, which `llm_jax.layers.Stack` puts on every
    scanned param: such a param's factor is an array with the `[L]` values on that axis and 1s elsewhere
    (`[L, 1, ..., 1]`). A shared stack (`Stack(shared=True)`, ALBERT) has no `layers` axis — one set of weights
    serves every depth — so its params get one factor, that of the top layer group (`decay`): they are the
    layer the head reads, and a smaller rate would slow the layer that fine-tuning changes most. L, for the
    embeddings, is the deepest scanned stack (1 when the only stack is shared).

    Args:
      params: the *boxed* params (leaves `nn.LogicallyPartitioned`, as `model.init` or
        `jax.eval_shape(model.init, ...)` return them before `nn.meta.unbox`); abstract leaves are fine.
      decay: the per-depth factor, in (0, 1].

    Returns:
      A tree shaped like the unboxed params, of float32 numpy factors broadcastable to each param.

    Raises:
      ValueError: when the params carry no logical axis names, or a param inside a stack has none.
    """
    leaves = jax.tree_util.tree_flatten_with_path(params, is_leaf=_is_box)[0]
    if not any(_is_box(x) for _, x in leaves):
        raise ValueError("layer_depth_factors needs the boxed params (nn.LogicallyPartitioned leaves, e.g. "
                         "step.abstract_params(model, batch)) to find the `layers` axis; pass them before nn.meta.unbox.")

    def kind(path, x) -> tuple[str, int]:
        names = _path_names(path)
        if _is_box(x) and "layers" in x.names:
            return "stacked", x.names.index("layers")
        if STACK_SCOPE in names:
            if not _is_box(x):
                raise ValueError(f"param {'/'.join(names)} sits in a Stack but has no logical axis names; create it "
                                 "with nn.with_logical_partitioning so layer_depth_factors can read its depth.")
            return "shared", -1
        # `embeddings_project` (ELECTRA's E → D projection) is embedding work too: depth 0 in ELECTRA's
        # `_get_layer_lrs` ("/embeddings_project/": 0).
        return ("embeddings" if any(n == "embeddings" or n.startswith("embeddings_") for n in names) else "top"), -1

    kinds = [kind(p, x) for p, x in leaves]
    shape = lambda x: tuple(np.shape(x.value if _is_box(x) else x))
    depth = max([shape(x)[axis] for (k, axis), (_, x) in zip(kinds, leaves) if k == "stacked"]
                + [1 for k, _ in kinds if k == "shared"] + [0])

    def factor(path, x):
        k, axis = kind(path, x)
        if k == "stacked":
            s = shape(x)
            n = s[axis]
            f = decay ** (n - np.arange(n, dtype=np.float64))
            return f.reshape([n if a == axis else 1 for a in range(len(s))]).astype(np.float32)
        exponent = {"shared": 1, "embeddings": depth + 1, "top": 0}[k]
        return np.asarray(decay ** exponent, np.float32)

    return jax.tree_util.tree_map_with_path(factor, params, is_leaf=_is_box)


def layerwise_lr_decay(decay: float, params) -> optax.GradientTransformation:
    """Scales each update by `layer_depth_factors(params, decay)` — layer-wise learning-rate decay (ELECTRA
    App. A; Howard & Ruder 2018's discriminative fine-tuning). Placed after the optimizer, it scales the whole
    step, weight decay included, exactly as a per-layer learning rate would.

    Args:
      decay: the per-depth factor.
      params: the boxed (abstract) params; see `layer_depth_factors`.
    """
    factors = layer_depth_factors(params, decay)

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        return jax.tree.map(lambda u, f: (u * f).astype(u.dtype), updates, factors), state

    return optax.GradientTransformation(init_fn, update_fn)


def _optimizer(cfg: OptimConfig, schedule: optax.Schedule) -> optax.GradientTransformation:
    if cfg.name == "adafactor":
        # optax.adafactor adds `weight_decay_rate × param` after its learning-rate scaling, i.e. not scaled by the
        # rate; a schedule `lr(step) × weight_decay` gives it AdamW's decoupled meaning of `weight_decay`.
        decay = None if cfg.weight_decay == 0 else (lambda step: cfg.weight_decay * schedule(step))
        return optax.adafactor(schedule, weight_decay_rate=decay, weight_decay_mask=_decay_mask)
    return optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay, mask=_decay_mask)


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    """Global-norm clipping (Pascanu et al. 2013): every update times `max_norm / max(‖g‖₂, max_norm)`, ‖g‖₂ the
    norm of all updates together — `optax.clip_by_global_norm`'s rule and state (`EmptyState`), so checkpoints of
    either restore into the other, and equal to it to an ulp (exactly equal when no clipping happens).

    Why not optax's: it divides each update by the norm, and XLA:CPU does not repeat a divide in each of its
    consumers, so the clipped gradient was written out and read back by Adam's two moment updates — two more
    passes over every gradient per step (benchmarks/NOTES.md, "The optimizer update"). A multiply by one scalar is
    fused into each consumer instead.
    """

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        scale = max_norm / jnp.maximum(optax.global_norm(updates), max_norm)
        return jax.tree.map(lambda t: t * scale.astype(t.dtype), updates), state

    return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(cfg: OptimConfig, total_steps: int, *, params=None,
                   extra_transforms: Sequence[optax.GradientTransformation] = ()
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optax chain and its schedule (the schedule is logged as `learning_rate`).

    Chain: global-norm clipping → AdamW / Adafactor → layer-wise LR decay → `extra_transforms`.

    Args:
      cfg: hyperparameters.
      total_steps: optimizer steps of the run (end of the decay).
      params: the model's boxed abstract params (`step.abstract_params(model, batch)`); needed only for
        `cfg.layer_decay < 1`.
      extra_transforms: optax transforms appended at the end (e.g. pruning masks that zero pruned updates).

    Raises:
      ValueError: invalid config, or `layer_decay` without `params`.
    """
    cfg.validate()
    schedule = learning_rate_schedule(cfg, total_steps)
    parts = []
    if cfg.clip_norm > 0:
        parts.append(clip_by_global_norm(cfg.clip_norm))
    parts.append(_optimizer(cfg, schedule))
    if cfg.layer_decay != 1.0:
        if params is None:
            raise ValueError(f"optim.layer_decay={cfg.layer_decay} reads layer depths from the params: call "
                             "make_optimizer(cfg, steps, params=step.abstract_params(model, batch)).")
        parts.append(layerwise_lr_decay(cfg.layer_decay, params))
    parts.extend(extra_transforms)
    return optax.chain(*parts), schedule
