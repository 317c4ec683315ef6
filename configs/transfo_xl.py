"""Transformer-XL pretraining (Dai et al. 2019): causal LM over ordered streams with the memory carried from step to
step (`segment_clm`), a word-level vocabulary, Adam with cosine decay and gradient clipping at 0.25.

Usage: `llm-jax pretrain --config configs/transfo_xl.py:size=tiny --workdir runs/txl-tiny`
sizes: tiny, mini (CPU: a word-level vocabulary of 8,000 trained on the bundled corpus, segments of 64 tokens
with 64 / 128 of memory), base, large (WikiText-103, the original `run_wt103_{base,large}.sh`: base 16 layers of
410, segments of 150 with 150 of memory, batch 60, lr 2.5e-4 without warmup, 200K steps; large 18 layers of 1024,
div_val 4, segments of 384 with 384 of memory, batch 128, 16K warmup steps, 4M steps). Evaluation with a longer
memory (base: 640, clamp_len 400, same_length; large: 1600 / 1000) is `llm_jax.eval.recurrent`'s.
`data.seq_len` is the segment length (tgt_len), `model.mem_len` the memory.
"""

from llm_jax.recipes import base_config, cpu_scale, parse_arg

_SIZES = {"tiny": "transfo-xl-tiny", "mini": "transfo-xl-mini", "base": "transfo-xl-wt103-base",
          "large": "transfo-xl-wt103-large"}
_CPU = ("tiny", "mini")


def get_config(arg: str = "size=tiny"):
    args = parse_arg(arg)
    size = args.get("size", "tiny")
    if size not in _SIZES:
        raise ValueError(f"configs/transfo_xl.py: size={size!r}; choose one of {list(_SIZES)}.")
    cfg = base_config("transfo_xl", _SIZES[size], objective="segment_clm")
    # The original scripts: Adam (no weight decay), cosine annealing to 0, gradient norm clipped at 0.25.
    cfg.optim.update(schedule="cosine", weight_decay=0.0, clip_norm=0.25, b1=0.9, b2=0.999, eps=1e-8,
                     end_learning_rate=0.0, learning_rate=2.5e-4)
    if size in _CPU:
        cpu_scale(cfg)
        cfg.data.seq_len = 64
        cfg.optim.update(learning_rate=1e-3, end_learning_rate=0.0)
    elif size == "base":
        cfg.data.update(seq_len=150, vocab_size=267735)
        cfg.train.update(batch_size=60, steps=200_000)
        cfg.optim.warmup_steps = 0
    else:
        cfg.data.update(seq_len=384, vocab_size=267735)
        cfg.train.update(batch_size=128, steps=4_000_000)
        cfg.optim.warmup_steps = 16_000
    return cfg
