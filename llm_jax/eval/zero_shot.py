"""Zero-shot scoring of a classification task (K = 0 of the few-shot curve): no training step at all.

For a masked LM this is cloze scoring with the task's prompt and verbalizers (`llm_jax.eval.cloze`); the
pretrained model is used as it is, or, for the "random init" control, freshly initialised from `seed`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import numpy as np

from llm_jax import models, objectives
from llm_jax.data.features import Encoded
from llm_jax.data.tasks import Task
from llm_jax.data.tokenizer import special_ids
from llm_jax.eval.predict import majority_baseline, score


def zero_shot(family: str, config, params: Any | None, tokenizer, task: Task, *, seq_len: int, batch_size: int,
              seed: int) -> dict[str, tuple[dict[str, float], list[dict]]]:
    """Scores the validation and test splits of a classification task without training.

    Args:
      family / config / params / tokenizer: the model (`params=None`: random init from `seed`).
      task: a classification task with a prompt and verbalizers.

    Returns:
      split → (metrics incl. `majority_baseline`, prediction rows).

    Raises:
      ValueError: a task that is not classification, or a family that is not a masked LM.
    """
    from llm_jax.eval.cloze import cloze_scores  # why lazy: only K = 0 scores by cloze

    if task.spec.kind != "classification":
        raise ValueError(f"Zero-shot (data.train_examples=0) scores classification tasks by cloze; {task.spec.name} "
                         f"is a {task.spec.kind} task.")
    fam = models.family_module(family)
    if fam.LM_KIND != "masked":
        raise ValueError(f"Zero-shot cloze scoring needs a masked LM; {family} is a {fam.LM_KIND} LM. Use "
                         "data.train_examples ≥ 1.")
    if params is None:
        model = models.build(family, config)
        objective = objectives.make_objective(objectives.config_for(fam.DEFAULT_OBJECTIVE),
                                              special_ids(tokenizer, fam.TOKENIZER.roles), config.vocab_size)
        args, kwargs = objective.init_inputs(objective.dummy_batch(1, 8))
        params = nn.meta.unbox(jax.jit(lambda k: model.init(k, *args, **kwargs))(jax.random.key(seed))["params"])
    out = {}
    train = task.splits["train"]
    for split in ("validation", "test"):
        records = task.splits.get(split)
        if not records:
            continue
        scores = cloze_scores(family, config, params, tokenizer, task.spec, records, seq_len, batch_size)
        enc = Encoded({"inputs": np.zeros((len(records), 1), np.int32)})
        m, rows = score(task.spec, split, records, enc, {"logits": scores})
        base = majority_baseline(task.spec, train, split, records)
        out[split] = ({**m, **({"majority_baseline": base} if base is not None else {})}, rows)
    return out


__all__ = ["zero_shot"]
