"""Issue #10 item 3: the masking rate does not silently drop with the sequence length."""

import logging

import numpy as np
import pytest

from llm_jax import config as config_lib
from llm_jax.data.tokenizer import SpecialIds
from llm_jax.objectives import config_for, make_objective
from llm_jax.objectives.mlm import derived_max_predictions

SPECIAL = SpecialIds(pad=1, unk=3, cls=0, sep=2, mask=4)


def _docs(n_docs=40, sentences=8, length=30, seed=0):
    rng = np.random.default_rng(seed)
    return [[rng.integers(5, 1000, length).astype(np.int32) for _ in range(sentences)] for _ in range(n_docs)]


def test_bert_ratio():
    assert [derived_max_predictions(t, 0.15) for t in (128, 256, 512)] == [20, 40, 80]


@pytest.mark.parametrize("seq_len", [128, 256, 512])
def test_roberta_recipe_predicts_fifteen_percent_at_every_length(seq_len):
    run = config_lib.from_dict(config_lib.load_config_file("configs/roberta.py:size=tiny",
                                                          {"data.seq_len": seq_len}))
    objective = make_objective(run.objective, SPECIAL, 1000)
    examples = objective.build_examples(_docs(), seq_len, seed=0)
    n = min(16, len(examples["tokens"]))
    rows = {k: v[:n] for k, v in examples.items()}
    batch = objective.prepare({**rows, "epoch": np.zeros(n, np.int64), "example_index": np.arange(n)}, seed=0)
    real = batch["mask"].sum() - 2 * n  # <s> and </s> are never predicted
    rate = batch["mlm_weights"].sum() / real
    assert 0.14 < rate < 0.16, rate


def test_a_set_cap_that_binds_is_reported(caplog):
    objective = make_objective(config_for("mlm", max_predictions=20), SPECIAL, 1000)
    with caplog.at_level(logging.WARNING):
        objective.build_examples(_docs(n_docs=4), 512, seed=0)
    assert "caps masking at 3.9 % of 512 positions" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        objective.build_examples(_docs(n_docs=4), 128, seed=0)
    assert "caps masking" not in caplog.text
