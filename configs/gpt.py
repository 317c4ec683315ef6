"""GPT pretraining: causal LM over packed documents (`clm`), AdamW, warmup then cosine decay.

Usage: `llm-jax pretrain --config configs/gpt.py:version=2,size=tiny --workdir runs/gpt2-tiny`
versions and sizes:
  1: tiny (CPU), small = GPT-1 (Radford et al. 2018 §4.1: Adam, lr 2.5e-4 warmed up over 2000 updates then
     cosine-annealed to 0, batch 64 × 512 tokens, weight decay 0.01, 100 epochs of BooksCorpus);
  2: tiny, mini (CPU), small = gpt2, medium, large, xl (Radford et al. 2019: batch 512 × 1024 tokens; the paper gives
     no optimizer settings, so GPT-3's recipe below is used);
  3: tiny (CPU, banded layers), small, medium, large, xl, 2.7b, 6.7b, 13b, 175b (Brown et al. 2020 Table 2.1 and
     Appendix B: Adam β = (0.9, 0.95), ε = 1e-8, clip 1.0, weight decay 0.1, warmup over 375M tokens, cosine decay
     to 10 % of the peak; 300B tokens of 2048-token rows).
The schedule decays over the whole run (GPT-3 decays over 260B of its 300B tokens and then holds 10 %), and the
batch is fixed (GPT-3 ramps it up over the first 4–12B tokens).
"""

from llm_jax.recipes import base_config, cpu_scale, parse_arg

SIZES = {
    "1": {"tiny": "gpt1-tiny", "small": "gpt1"},
    "2": {"tiny": "gpt2-tiny", "mini": "gpt2-mini", "small": "gpt2", "medium": "gpt2-medium",
          "large": "gpt2-large", "xl": "gpt2-xl"},
    "3": {s: f"gpt3-{s}" for s in ("tiny", "small", "medium", "large", "xl", "2.7b", "6.7b", "13b", "175b")},
}
# GPT-3 Table 2.1: (batch in tokens, peak learning rate) per size.
GPT3_BATCH_LR = {"small": (0.5e6, 6.0e-4), "medium": (0.5e6, 3.0e-4), "large": (0.5e6, 2.5e-4), "xl": (1e6, 2.0e-4),
                 "2.7b": (1e6, 1.6e-4), "6.7b": (2e6, 1.2e-4), "13b": (2e6, 1.0e-4), "175b": (3.2e6, 0.6e-4)}
CPU_SIZES = ("tiny", "mini")


def get_config(arg: str = "version=2,size=tiny"):
    args = parse_arg(arg)
    version, size = args.get("version", "2"), args.get("size", "tiny")
    if version not in SIZES:
        raise ValueError(f"configs/gpt.py: version={version!r}; choose 1, 2 or 3.")
    if size not in SIZES[version]:
        raise ValueError(f"configs/gpt.py: GPT-{version} has no size {size!r}; choose one of {list(SIZES[version])}.")
    preset = SIZES[version][size]
    cfg = base_config("gpt1" if version == "1" else "gpt", preset, objective=args.get("objective", "clm"))
    cfg.optim.schedule = "cosine"
    if version == "1":
        cfg.optim.update(learning_rate=2.5e-4, warmup_steps=2000, weight_decay=0.01, b2=0.999, eps=1e-8)
        cfg.train.batch_size = 64
        cfg.data.seq_len = 512
        cfg.data.vocab_size = 40478
        # The paper trains 100 epochs of BooksCorpus, whose token count it does not give: set train.steps for the
        # corpus at hand (the default is the base recipe's 1M).
    else:
        batch_tokens, lr = GPT3_BATCH_LR.get(size, (512 * 1024, 6.0e-4)) if version == "3" else (512 * 1024, 6.0e-4)
        seq_len = 2048 if version == "3" else 1024
        cfg.data.seq_len = seq_len
        cfg.data.vocab_size = 50257
        cfg.train.batch_size = max(1, round(batch_tokens / seq_len))
        tokens_per_step = cfg.train.batch_size * seq_len
        cfg.train.steps = int(300e9 // tokens_per_step)
        cfg.optim.update(learning_rate=lr, warmup_steps=int(375e6 // tokens_per_step), end_learning_rate=0.1 * lr,
                         weight_decay=0.1, b1=0.9, b2=0.95, eps=1e-8, clip_norm=1.0)
    if size in CPU_SIZES:
        cpu_scale(cfg)
        cfg.optim.end_learning_rate = 0.0 if version == "1" else 0.1 * cfg.optim.learning_rate
    return cfg
