"""Building blocks of the recipe files in `configs/`: the argument after `:`, default sections, CPU scale.

They live in the package (not next to the recipes) so that a recipe copied anywhere still imports them.
"""

import dataclasses

import ml_collections

from llm_jax import models


def parse_arg(arg: str | None) -> dict[str, str]:
    """`"size=tiny,foo=bar"` → dict."""
    out = {}
    for part in (arg or "").split(","):
        if part.strip():
            key, _, value = part.partition("=")
            out[key.strip()] = value.strip()
    return out


def base_config(family: str, preset: str) -> ml_collections.ConfigDict:
    """Model fields of the preset plus default sections; recipes override what differs."""
    fam, model_cfg = models.get_preset(preset)
    assert fam == family, (fam, family)
    cfg = ml_collections.ConfigDict()
    cfg.model = {"family": family, "init_from": "", **dataclasses.asdict(model_cfg)}
    cfg.objective = {"name": "mlm_nsp", "mask_prob": 0.15, "max_predictions": 20, "masking": "static",
                     "duplicate_factor": 10, "short_seq_prob": 0.1}
    cfg.data = {"corpus": "bundled", "text_field": "text", "train_split": "train", "eval_split": "validation",
                "max_documents": 0, "max_eval_documents": 0, "seq_len": 128, "vocab_size": 8000,
                "tokenizer": "", "lowercase": True}
    cfg.optim = {"learning_rate": 1e-4, "warmup_steps": 10_000, "end_learning_rate": 0.0, "weight_decay": 0.01,
                 "b1": 0.9, "b2": 0.999, "eps": 1e-6, "clip_norm": 1.0, "grad_accum_steps": 1}
    cfg.mesh = {"data": -1, "fsdp": 1, "tensor": 1, "rules": "dp"}
    cfg.train = {"steps": 1_000_000, "batch_size": 256, "seed": 0, "log_every": 100, "eval_every": 10_000,
                 "eval_batches": 8, "checkpoint_every": 10_000, "max_to_keep": 3, "max_consecutive_skips": 5,
                 "progress": True, "stop_after": 0}
    return cfg


def cpu_scale(cfg: ml_collections.ConfigDict) -> None:
    """Settings for the tiny/mini presets: a few minutes on 2 CPU cores over the bundled corpus."""
    cfg.data.seq_len = 128
    cfg.data.vocab_size = 8000
    cfg.objective.duplicate_factor = 2  # why not 10: the pool is built on the host at start-up; 2 keeps it < 30 s
    cfg.optim.learning_rate = 1e-3  # small models tolerate (and need) a higher peak rate (Turc et al. 2019)
    cfg.optim.warmup_steps = 30
    cfg.train.steps = 300
    cfg.train.batch_size = 32
    cfg.train.log_every = 25
    cfg.train.eval_every = 100
    cfg.train.eval_batches = 4
    cfg.train.checkpoint_every = 100
