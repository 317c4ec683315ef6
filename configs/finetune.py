"""Fine-tuning recipes (BERT §4): a pretrained model + a task head, per-task settings.

Usage:
  llm-jax finetune --config configs/finetune.py:model=runs/bert-tiny,task=wordnet-supersense --workdir DIR
  llm-jax finetune --config configs/finetune.py:model=bert-tiny,task=wordnet-wic --workdir DIR   (random init)
  llm-jax finetune --config configs/finetune.py:model=HF_DIR,task=rte --workdir DIR --config.optim.layer_decay=0.8

`model` is a preset, a run / checkpoint / model directory of ours, or a Hugging Face checkpoint directory;
`task` a bundled task, a GLUE task, squad / squad_v2, or local (see llm_jax.data.tasks). Everything can be
overridden with --config.SECTION.KEY=VALUE.

Defaults: BERT §4.1 (batch 32, 3 epochs, warmup 10 %, dropout 0.1), with the learning rate by model width — the
small-BERT release of Turc et al. (2019) found {3e-4, 1e-4} best for its tiny/mini models, BERT-Base used
{2e-5 … 5e-5}. Early stopping keeps the best validation params (patience 3 evaluations). A family's own recipe
(`FINETUNE_OPTIM`, `FINETUNE_TRAIN` in its model file) overrides them: ELECTRA's layer-wise LR decay, GPT-1's
auxiliary LM loss (train.aux_lm_weight=0.5) and warmup over 0.2 % of the steps. A family that fine-tunes text to text
(T5, Raffel et al. 2020 §2.4) does so by default (`data.text_to_text`): task-prefixed inputs, label words or rounded
scores as targets, evaluation by greedy decoding (`data.num_beams=4` for beam search).
"""

import dataclasses
import json
import os

import ml_collections

from llm_jax import models
from llm_jax.models.family import TEXT_TO_TEXT_MEMBER
from llm_jax.recipes import parse_arg
from llm_jax.data.tasks import TaskConfig
from llm_jax.sharding import MeshConfig
from llm_jax.train.finetune import FinetuneData, FinetuneTrain
from llm_jax.train.optim import OptimConfig
from llm_jax.train.sources import ModelSource

# Per-task data settings: sequence length that covers ~99 % of examples, and epochs.
TASKS = {
    "wordnet-supersense": {"seq_len": 64, "epochs": 5.0},
    "wordnet-gloss": {"seq_len": 96, "epochs": 3.0},
    "wordnet-wic": {"seq_len": 96, "epochs": 4.0},
    "cola": {"seq_len": 64}, "sst2": {"seq_len": 64}, "mrpc": {"seq_len": 128}, "qqp": {"seq_len": 128},
    "stsb": {"seq_len": 128}, "mnli": {"seq_len": 128}, "mnli_mismatched": {"seq_len": 128},
    "qnli": {"seq_len": 128}, "rte": {"seq_len": 128}, "wnli": {"seq_len": 128},
    # BERT §4.2: SQuAD at 384 tokens with a 128-token stride, 2–3 epochs.
    "squad": {"seq_len": 384, "epochs": 2.0}, "squad_v2": {"seq_len": 384, "epochs": 2.0},
}


def _model_config(model: str) -> tuple[str, object] | None:
    """The model's `(family, Config)`, read cheaply from a preset, one of our run / model directories, or a Hugging
    Face directory's config.json (None if unknown or unreadable)."""
    presets = models.all_presets()
    if model in presets:
        return presets[model]
    for path in (os.path.join(model, "config.json"), os.path.join(model, "..", "..", "config.json")):
        if os.path.isfile(path):
            try:
                with open(path) as f:
                    cfg = json.load(f)
                if "family" in cfg:  # ours: {"family", "model": {...}} (a run's config.json has more sections)
                    return cfg["family"], models.make_config(cfg["family"], **cfg["model"])
                from llm_jax.interop.hf import read_hf_config  # why lazy: only Hugging Face directories

                return read_hf_config(os.path.dirname(path))
            except (ValueError, KeyError, TypeError, OSError):
                return None  # the run itself reports an unreadable model with the file named
    return None


def get_config(arg: str = "model=bert-tiny,task=wordnet-supersense"):
    args = parse_arg(arg)
    model = args.get("model", "bert-tiny")
    task = args.get("task", "wordnet-supersense")
    found = _model_config(model)
    width = found[1].width if found else 768
    per_task = TASKS.get(task.removeprefix("glue/"), {})

    cfg = ml_collections.ConfigDict()
    # Every section starts from its dataclass's defaults (they live there only); the recipe sets what differs.
    cfg.model = dataclasses.asdict(ModelSource(name=model))
    cfg.task = dataclasses.asdict(TaskConfig(name=task))
    cfg.data = dataclasses.asdict(FinetuneData(seq_len=per_task.get("seq_len", 128)))
    lr = 3e-4 if width <= 256 else (1e-4 if width <= 512 else 3e-5)
    # Warmup comes from train.warmup_ratio (BERT's 10 %); everything else at OptimConfig's defaults (AdamW, linear).
    cfg.optim = dataclasses.asdict(OptimConfig(learning_rate=lr, warmup_steps=0))
    if found:  # the family's own fine-tuning recipe, e.g. ELECTRA's layer-wise LR decay (Clark et al. Table 7)
        cfg.optim.update(getattr(models.family_module(found[0]), "FINETUNE_OPTIM", lambda c: {})(found[1]))
    cfg.mesh = dataclasses.asdict(MeshConfig())
    cfg.train = dataclasses.asdict(FinetuneTrain(epochs=per_task.get("epochs", 3.0), patience=3))
    if found:  # e.g. GPT-1's auxiliary LM loss (Radford et al. 2018 §3.2, λ = 0.5)
        cfg.train.update(getattr(models.family_module(found[0]), "FINETUNE_TRAIN", lambda c: {})(found[1]))
    # Text to text (T5 §2.4) is the way to fine-tune of a family that has it; --config.data.text_to_text=False puts a
    # task head on it instead.
    cfg.data.text_to_text = bool(found) and hasattr(models.family_module(found[0]), TEXT_TO_TEXT_MEMBER)
    return cfg
