"""XLNet pretraining (Yang et al. 2019): permutation LM with partial prediction (`plm`), Transformer-XL memory.

Usage: `llm-jax pretrain --config configs/xlnet.py:size=tiny --workdir runs/xlnet-tiny`
sizes: tiny, mini for CPU (a SentencePiece Unigram vocabulary with XLNet's special tokens trained on the bundled
corpus; rows of 128 tokens, 64 reused into a memory of 64, 21 predictions); base, large (the released models).
Recipe (Appendix A.3, Table 7, XLNet-Large): rows of 512 tokens (reuse_len = perm_size = 256), memory 384,
partial prediction K = 6 (85 predictions), n-gram spans up to 5, Adam with lr 4e-4, ε = 1e-6, weight decay 0.01,
40k warmup steps then linear decay, batch 8192 for 500k steps, dropout 0.1, gradient clipping at 1; bidirectional
data (the README's `--bi_data=True`: half of each batch is the reversed corpus, read with negated relative
distances: `objective.bi_data` and `model.bi_data`). The CPU sizes read the corpus forward only.
`:size=tiny,k=7` predicts 1/7 instead (the paper tries K = 6 and 7). `:size=base,seq_len=128` keeps the recipe's
proportions at shorter rows (reuse_len = perm_size = seq_len / 2, memory 3/4 of seq_len), as the throughput
benchmark runs it.
"""

from llm_jax.recipes import base_config, cpu_scale, parse_arg

_CPU = ("tiny", "mini")


def get_config(arg: str = "size=tiny"):
    args = parse_arg(arg)
    size = args.get("size", "tiny")
    if size not in (*_CPU, "base", "large"):
        raise ValueError(f"configs/xlnet.py: size={size!r}; choose one of {[*_CPU, 'base', 'large']}.")
    k = int(args.get("k", "6"))
    if k not in (6, 7):
        raise ValueError(f"configs/xlnet.py: k={k}; XLNet predicts 1/6 or 1/7 of the tokens (k=6 or k=7).")
    cfg = base_config("xlnet", f"xlnet-{size}", objective="plm")
    cfg.objective.partial_prediction_k = k
    cfg.optim.update(learning_rate=4e-4, eps=1e-6, weight_decay=0.01, clip_norm=1.0, schedule="linear")
    if size in _CPU:
        cpu_scale(cfg)
        cfg.objective.mem_len = 64
    else:
        cfg.data.vocab_size = 32000
        seq_len = int(args.get("seq_len", "512"))
        if seq_len < 16 or seq_len % 4:
            raise ValueError(f"configs/xlnet.py: seq_len={seq_len}; use a multiple of 4, at least 16.")
        cfg.data.seq_len = seq_len
        cfg.objective.update(reuse_len=seq_len // 2, perm_size=seq_len // 2, mem_len=3 * seq_len // 4, bi_data=True)
        cfg.model.bi_data = True
        cfg.optim.warmup_steps = 40_000
        cfg.train.batch_size = 8192
        cfg.train.steps = 500_000
    return cfg
