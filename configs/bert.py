"""BERT pretraining (Devlin et al. 2019): MLM (80/10/10, static masking ×duplicate_factor) + NSP.

Usage: `llm-jax pretrain --config configs/bert.py:size=tiny --workdir runs/bert-tiny`
(`:size=tiny,objective=mlm` trains the same model with another registered objective: its own config section.)
sizes: tiny, mini, small, medium (Turc et al. 2019) for CPU; base, large (the paper, Appendix A.2 recipe:
batch 256, 1M steps, lr 1e-4, warmup 10k, seq 128 for 90 % of steps).
"""

from llm_jax.recipes import base_config, cpu_scale, parse_arg


def get_config(arg: str = "size=tiny"):
    args = parse_arg(arg)
    size = args.get("size", "tiny")
    cfg = base_config("bert", f"bert-{size}", objective=args.get("objective", "mlm_nsp"))  # static masking, P = 20 at length 128
    if size in ("tiny", "mini", "small", "medium"):
        cpu_scale(cfg)
    return cfg
