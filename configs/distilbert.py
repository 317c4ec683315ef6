"""DistilBERT pretraining by distillation from a BERT teacher (Sanh et al. 2019).

Usage: `llm-jax pretrain --config configs/distilbert.py:size=tiny,teacher=runs/bert-tiny --workdir runs/distil-tiny`
sizes: tiny (1 layer: half of BERT-tiny) for CPU; base (6 layers: half of BERT-base). `teacher` is a BERT run,
checkpoint, model or Hugging Face directory. It is both the frozen teacher (`objective.teacher`) and the student's
starting point (`model.init_from`): the student takes the teacher's tokenizer, width and vocabulary, and one layer
out of two (§3 "Student initialization"); `size` sets its depth and the recipe.

Loss: 5·T²·KL + 2·MLM + 1·cosine at T = 2 (the reference recipe's weights), dynamic masking, no NSP. Base recipe
(reference `train.py` of transformers' research_projects/distillation): lr 5e-4, warmup 5 %, Adam ε 1e-6, clip 5,
4K-example batches by accumulation (§3), sequences of 512.
"""

from llm_jax.recipes import base_config, cpu_scale, parse_arg


def get_config(arg: str = "size=tiny"):
    args = parse_arg(arg)
    size = args.get("size", "tiny")
    teacher = args.get("teacher", "")
    if not teacher:
        raise ValueError("configs/distilbert.py needs its BERT teacher: configs/distilbert.py:size=tiny,teacher=DIR "
                         "(a BERT run, checkpoint, model or Hugging Face directory).")
    cfg = base_config("distilbert", f"distilbert-{size}", objective="distill")
    cfg.objective.teacher = teacher
    cfg.model.init_from = teacher  # the teacher's tokenizer and every other layer (models/distilbert.py)
    cfg.objective.masking = "dynamic"
    if size == "base":
        cfg.data.seq_len = 512
        cfg.optim.learning_rate = 5e-4
        cfg.optim.eps = 1e-6
        cfg.optim.clip_norm = 5.0
        cfg.optim.weight_decay = 0.0
        cfg.train.batch_size = 4096
        # The paper gives time (90 h on 8 V100s), not steps: ~3 epochs (the reference `n_epoch`) of BERT's 3.3B-word
        # corpus as 512-token rows (~8.4M rows per epoch) at 4K rows per update.
        cfg.train.steps = 6_000
        cfg.optim.warmup_steps = 300  # 5 % of the steps (the reference `warmup_prop` 0.05)
    else:
        cpu_scale(cfg)
    return cfg
