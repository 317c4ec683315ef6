"""T5 pretraining (Raffel et al. 2020): span corruption (15 % noise, mean span 3) with Adafactor and an
inverse-square-root learning rate.

Usage: `llm-jax pretrain --config configs/t5.py:size=tiny --workdir runs/t5-tiny`
sizes: tiny, mini, v1_1-tiny for CPU (a SentencePiece Unigram vocabulary with 100 sentinels trained on the bundled
corpus, inputs of 128 tokens → targets of 29); small, base, large, 3b, 11b (v1.0, the paper) and v1_1-small, -base,
-large, -xl, -xxl (v1.1: gated-GELU, untied head, no dropout).
Recipe (§3.1.2): Adafactor (factored second moments, update clipping at RMS 1, no momentum, no weight decay, no
gradient clipping) with lr = 1/sqrt(max(step, 10⁴)) (`schedule=rsqrt`, `learning_rate=0.01`, `warmup_steps=10000`),
inputs of 512 tokens (targets 114), 128 sequences per batch for 2^19 steps (the baseline; the released models:
batch 2048 for 1M steps). `:size=tiny,optim=adamw` trains with AdamW and a linear schedule instead.
"""

from llm_jax.recipes import base_config, cpu_scale, parse_arg

_CPU = ("tiny", "mini", "v1_1-tiny")


def get_config(arg: str = "size=tiny"):
    args = parse_arg(arg)
    size = args.get("size", "tiny")
    optimizer = args.get("optim", "adafactor")
    if optimizer not in ("adafactor", "adamw"):
        raise ValueError(f"configs/t5.py: optim={optimizer!r}; choose adafactor (T5's) or adamw.")
    cfg = base_config("t5", f"t5-{size}", objective="span_corruption")
    if size in _CPU:
        cpu_scale(cfg)
    else:
        cfg.data.seq_len = 512
        cfg.data.vocab_size = 32100  # 32,000 SentencePiece pieces + 100 sentinels (§3.1.4)
        cfg.train.batch_size = 128
        cfg.train.steps = 2 ** 19
    if optimizer == "adafactor":
        cfg.optim.name = "adafactor"
        cfg.optim.schedule = "rsqrt"
        cfg.optim.learning_rate = 0.01
        cfg.optim.weight_decay = 0.0
        cfg.optim.clip_norm = 0.0
        if size not in _CPU:
            cfg.optim.warmup_steps = 10_000
    return cfg
