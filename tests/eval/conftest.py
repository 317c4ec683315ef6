"""Fixtures of the evaluation tests: tiny models of each kind, saved as our model directories."""

import flax.linen as nn
import jax
import pytest

from llm_jax import models, objectives
from llm_jax.data.corpus import load_documents
from llm_jax.data.tokenizer import special_ids
from llm_jax.interop.native import save_model_dir

PRESETS = {"gpt": "gpt2-tiny", "bert": "bert-tiny", "t5": "t5-tiny", "electra": "electra-tiny"}


class _Models(dict):
    """family → a model directory of ours, built on first use (a tokenizer and an init cost seconds each)."""

    def __init__(self, root):
        super().__init__()
        self.root = root
        self.docs = None

    def __missing__(self, family):
        if self.docs is None:
            self.docs = load_documents("bundled", "train", max_documents=300)
        fam = models.family_module(family)
        tok = fam.TOKENIZER.train(self.docs, 1000)
        special = special_ids(tok, fam.TOKENIZER.roles)
        config = models.get_preset(PRESETS[family])[1].with_vocabulary(tok.get_vocab_size(), special)
        objective = objectives.make_objective(objectives.config_for(fam.DEFAULT_OBJECTIVE), special,
                                              config.vocab_size)
        args, kwargs = objective.init_inputs(objective.dummy_batch(1, 8))
        model = models.build(family, config)
        params = nn.meta.unbox(jax.jit(lambda k: model.init(k, *args, **kwargs))(jax.random.key(0))["params"])
        self[family] = save_model_dir(family, config, params, self.root / family, tokenizer=tok)
        return self[family]


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """family → a model directory of ours (config, params, tokenizer): a tiny random-weight model with a tokenizer
    trained on 300 bundled documents (the CLI reads it as it reads a pretraining run's)."""
    return _Models(tmp_path_factory.mktemp("eval_models"))
