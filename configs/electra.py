"""ELECTRA pretraining (Clark et al. 2020): replaced-token detection by a discriminator, with a small MLM generator.

Usage: `llm-jax pretrain --config configs/electra.py:size=tiny --workdir runs/electra-tiny`
       `llm-jax pretrain --config configs/electra.py:size=tiny,objective=all_tokens_mlm ...` (Table 5 ablations)
sizes: tiny, mini for CPU (generator ¼ of the discriminator's width; a 2,000-piece WordPiece vocabulary trained on
the corpus, 64-token rows, batch 16, lr 2e-3, no dropout, 1,200 steps: `recipes.cpu_learning_scale`); small (the
released model: a full-size generator), small-paper (the paper's Table 1 model: a 64-wide generator), base (generator ⅓), large (generator ¼). Recipe: google-research/electra `configure_pretraining.py` and
the paper's Table 6 — lr 5e-4 (small) / 2e-4 (base, large), batch 128 / 256 / 2048, steps 1M / 766K / 400K, seq 128
(small) / 512, warmup 10K, linear decay, weight decay 0.01, Adam ε 1e-6, mask 15 % (25 % for large), λ = 50.
Fine-tune the discriminator with `configs/finetune.py:model=RUN,...` and layer-wise LR decay
(`--config.optim.layer_decay=0.8`, the paper's value for small and base; 0.9 for large).
"""

from llm_jax.recipes import base_config, cpu_learning_scale, parse_arg

# size → (learning rate, batch, steps, seq_len, mask_prob)
_PAPER = {
    "small": (5e-4, 128, 1_000_000, 128, 0.15),
    "small-paper": (5e-4, 128, 1_000_000, 128, 0.15),
    "base": (2e-4, 256, 766_000, 512, 0.15),
    "large": (2e-4, 2048, 400_000, 512, 0.25),
}


def get_config(arg: str = "size=tiny"):
    args = parse_arg(arg)
    size = args.get("size", "tiny")
    # `objective=` picks another registered objective, e.g. the paper's Table 5 ablations: electra15, replace_mlm,
    # all_tokens_mlm.
    cfg = base_config("electra", f"electra-{size}", objective=args.get("objective", "rtd"))
    if size in ("tiny", "mini"):
        # The CPU recipe with which BERT-tiny's MLM leaves the unigram plateau; the generator learns with it too. The
        # discriminator stays on its own plateau (its last hidden states collapse to one vector within ~100 steps) and
        # does not beat "nothing replaced" on the bundled text within 1,200 (or 2,400) steps, with this rate, 5e-4, 25 % masking
        # or the original's Glorot-initialised logit layer alike (benchmarks/NOTES.md, experiments 7-16).
        cpu_learning_scale(cfg)
    else:
        lr, batch, steps, seq_len, mask_prob = _PAPER[size]
        cfg.optim.learning_rate = lr
        cfg.train.batch_size = batch
        cfg.train.steps = steps
        cfg.data.seq_len = seq_len
        cfg.data.vocab_size = 30522  # BERT's uncased WordPiece vocabulary (§3.1: "the same data as BERT")
        cfg.objective.mask_prob = mask_prob
    return cfg
