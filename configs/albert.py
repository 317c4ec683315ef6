"""ALBERT pretraining (Lan et al. 2020): n-gram MLM (spans of 1–3 words, p ∝ 1/n) + sentence-order prediction.

Usage: `llm-jax pretrain --config configs/albert.py:size=tiny --workdir runs/albert-tiny`
sizes: tiny, mini for CPU (a SentencePiece Unigram vocabulary trained on the bundled corpus); base, large, xlarge,
xxlarge (v2 shapes; the paper's §4.1 recipe: batch 4096, 125k steps, LAMB lr 0.00176, seq 512 — here AdamW with the
loop's defaults, since LAMB is not among our optimizers; set optim.* to taste).
"""

from llm_jax.recipes import base_config, cpu_scale, parse_arg


def get_config(arg: str = "size=tiny"):
    size = parse_arg(arg).get("size", "tiny")
    cfg = base_config("albert", f"albert-{size}", objective="mlm_sop")  # static n-gram masking, P = 20 at 128
    if size in ("tiny", "mini"):
        cpu_scale(cfg)  # duplicate_factor 2 instead of the reference's 40: the pool is built at start-up
    else:
        cfg.data.seq_len = 512
        cfg.data.vocab_size = 30000  # §4.1: a 30,000-piece SentencePiece vocabulary
        cfg.train.batch_size = 4096
        cfg.train.steps = 125_000
        cfg.optim.learning_rate = 0.00176
        cfg.optim.warmup_steps = 3_125
    return cfg
