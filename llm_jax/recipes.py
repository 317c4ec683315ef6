"""Building blocks of the recipe files in `configs/`: the argument after `:`, default sections, CPU scale.

They live in the package (not next to the recipes) so that a recipe copied anywhere still imports them.
"""

import dataclasses

import ml_collections

from llm_jax import models, objectives
from llm_jax.sharding import MeshConfig
from llm_jax.train.loop import TrainConfig
from llm_jax.train.optim import OptimConfig
from llm_jax.train.pipeline import DataConfig


def parse_arg(arg: str | None) -> dict[str, str]:
    """`"size=tiny,foo=bar"` → dict."""
    out = {}
    for part in (arg or "").split(","):
        if part.strip():
            key, _, value = part.partition("=")
            out[key.strip()] = value.strip()
    return out


def base_config(family: str, preset: str, objective: str | None = None) -> ml_collections.ConfigDict:
    """Model fields of the preset plus every section at its dataclass's defaults; recipes override what differs.

    Args:
      family: the family the preset belongs to.
      preset: a preset name of that family.
      objective: a registered objective; default the family's `DEFAULT_OBJECTIVE`. Its own config class gives
        the section's keys and defaults (they live there only).

    Raises:
      ValueError: a preset of another family, or an unknown objective.
    """
    fam, model_cfg = models.get_preset(preset)
    if fam != family:
        raise ValueError(f"Preset {preset!r} belongs to family {fam!r}, not {family!r}.")
    cfg = ml_collections.ConfigDict()
    cfg.model = {"family": family, "init_from": "", **dataclasses.asdict(model_cfg)}
    cfg.objective = objectives.default_config(objective or models.family_module(family).DEFAULT_OBJECTIVE)
    # The paper-scale defaults of the loop (BERT Appendix A.2: batch 256, 1M steps, warmup 10k, lr 1e-4).
    cfg.data = dataclasses.asdict(DataConfig())
    cfg.optim = dataclasses.asdict(OptimConfig(learning_rate=1e-4, warmup_steps=10_000))
    cfg.mesh = dataclasses.asdict(MeshConfig())
    cfg.train = dataclasses.asdict(TrainConfig(steps=1_000_000, batch_size=256, log_every=100, eval_every=10_000,
                                               eval_batches=8, checkpoint_every=10_000))
    return cfg


def cpu_scale(cfg: ml_collections.ConfigDict) -> None:
    """Settings for the tiny/mini presets: a few minutes on 2 CPU cores over the bundled corpus."""
    cfg.data.seq_len = 128
    cfg.data.vocab_size = 8000
    if "duplicate_factor" in cfg.objective:  # static masking's copies (MLM objectives)
        cfg.objective.duplicate_factor = 2  # why not 10: the pool is built on the host at start-up; 2 keeps it < 30 s
    cfg.optim.learning_rate = 1e-3  # small models tolerate (and need) a higher peak rate (Turc et al. 2019)
    cfg.optim.warmup_steps = 30
    cfg.train.steps = 300
    cfg.train.batch_size = 32
    cfg.train.log_every = 25
    cfg.train.eval_every = 100
    cfg.train.eval_batches = 4
    cfg.train.checkpoint_every = 100


def cpu_learning_scale(cfg: ml_collections.ConfigDict) -> None:
    """`cpu_scale` changed where, on the bundled WordNet text, a tiny model otherwise learns only token frequencies
    (its held-out MLM loss stays at the corpus's unigram cross-entropy; benchmarks/NOTES.md, "A recipe that
    learns"): a 2,000-piece vocabulary, 64-token rows, batch 16, peak rate 2e-3 with 6 % warmup (5e-3 at batch 16
    stays on the unigram plateau), no dropout (under one epoch there is nothing to regularise), 1,200 steps."""
    cpu_scale(cfg)
    cfg.data.seq_len = 64
    cfg.data.vocab_size = 2000
    cfg.train.batch_size = 16
    cfg.train.steps = 1200
    cfg.optim.learning_rate = 2e-3
    cfg.optim.warmup_steps = 72
    cfg.model.hidden_dropout = 0.0
    cfg.model.attention_dropout = 0.0
    cfg.train.log_every = 100
    cfg.train.eval_every = 400
    cfg.train.eval_batches = 8
    cfg.train.checkpoint_every = 400
