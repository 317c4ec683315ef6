"""RoBERTa pretraining (Liu et al. 2019): FULL-SENTENCES packing, dynamic masking MLM, no NSP.

Usage: `llm-jax pretrain --config configs/roberta.py:size=tiny --workdir runs/roberta-tiny`
sizes: tiny, mini for CPU; base, large (the paper's Table 9: batch 8k, lr 6e-4/4e-4, β2 0.98, ε 1e-6, wd 0.01,
warmup 24k/30k, seq 512).
"""

from llm_jax.recipes import base_config, cpu_scale, parse_arg


def get_config(arg: str = "size=tiny"):
    args = parse_arg(arg)
    size = args.get("size", "tiny")
    cfg = base_config("roberta", f"roberta-{size}", objective=args.get("objective", "mlm"))  # dynamic masking, P from data.seq_len
    cfg.data.lowercase = False
    cfg.optim.b2 = 0.98
    if size == "base":
        cfg.optim.learning_rate = 6e-4
        cfg.optim.warmup_steps = 24_000
        cfg.train.batch_size = 8192
        cfg.train.steps = 500_000
    elif size == "large":
        cfg.optim.learning_rate = 4e-4
        cfg.optim.warmup_steps = 30_000
        cfg.train.batch_size = 8192
        cfg.train.steps = 500_000
    if size in ("base", "large"):
        cfg.data.seq_len = 512
        cfg.data.vocab_size = 50265
    else:
        cpu_scale(cfg)
    return cfg
