"""BERT / RoBERTa: parameter counts equal Hugging Face's, shapes, padding invariance, position offsets."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llm_jax import models, objectives
from llm_jax.models import roberta
from llm_jax.train.step import abstract_params, count_params


def _count(family, cfg) -> int:
    objective = objectives.shape_only_objective(models.family_module(family).DEFAULT_OBJECTIVE, cfg.vocab_size)
    return count_params(abstract_params(models.build(family, cfg), objective, objective.dummy_batch(1, 8)))


def _hf_count(family, cfg, require):
    """The family's own HF architecture built from the HF config our `config_to_hf` writes."""
    torch = require("torch")
    transformers = require("transformers")
    fam = models.family_module(family)
    hf_cfg = fam.config_to_hf(cfg)
    config = transformers.AutoConfig.for_model(hf_cfg.pop("model_type"), **hf_cfg)
    # Why the meta device: builds bert-large's module tree without allocating 1.3 GB of weights.
    with torch.device("meta"):
        hf = getattr(transformers, fam.HF_ARCHITECTURE)(config)
    return sum(p.numel() for p in hf.parameters())  # parameters() counts tied weights once


@pytest.mark.parametrize("preset", ["bert-base", "bert-large", "roberta-base", "roberta-large", "bert-tiny",
                                    "roberta-tiny"])
def test_parameter_count_equals_hugging_face(preset, require):
    family, cfg = models.get_preset(preset)
    ours = _count(family, cfg)
    assert ours == _hf_count(family, cfg, require)


def test_known_published_sizes():
    # BertForPreTraining(bert-base-uncased) = 110,106,428; RobertaForMaskedLM(roberta-base) = 124,697,433.
    counts = {p: _count(*models.get_preset(p))
              for p in ("bert-base", "roberta-base")}
    assert counts == {"bert-base": 110_106_428, "roberta-base": 124_697_433}


@pytest.fixture(scope="module")
def tiny_bert():
    cfg = dataclasses.replace(models.get_preset("bert-tiny")[1], vocab_size=97)
    model = models.build("bert", cfg)
    tokens = jax.random.randint(jax.random.key(0), (2, 12), 5, 97)
    params = model.init(jax.random.key(1), tokens)["params"]
    return model, params, tokens


def test_bert_output_shapes_and_finite(tiny_bert):
    model, params, tokens = tiny_bert
    out = model.apply({"params": params}, tokens, segment_ids_BT=jnp.ones_like(tokens))
    assert out.hidden_BTD.shape == (2, 12, 128)
    assert out.mlm_logits_BTV.shape == (2, 12, 97)
    assert out.nsp_logits_B2.shape == (2, 2)
    assert out.pooled_BD.shape == (2, 128)
    assert all(np.isfinite(np.asarray(x)).all() for x in (out.hidden_BTD, out.mlm_logits_BTV, out.nsp_logits_B2))
    gathered = model.apply({"params": params}, tokens, mlm_positions_BP=jnp.array([[0, 5], [3, 11]]))
    full = model.apply({"params": params}, tokens)
    np.testing.assert_allclose(gathered.mlm_logits_BTV[1, 1], full.mlm_logits_BTV[1, 11], atol=1e-5)
    np.testing.assert_allclose(gathered.mlm_logits_BTV[0, 0], full.mlm_logits_BTV[0, 0], atol=1e-5)


def test_bert_padding_invariance(tiny_bert):
    model, params, tokens = tiny_bert
    mask = jnp.array([[1] * 12, [1] * 7 + [0] * 5])
    a = model.apply({"params": params}, tokens, mask_BT=mask).hidden_BTD
    b = model.apply({"params": params}, tokens.at[1, 7:].set(3), mask_BT=mask).hidden_BTD
    np.testing.assert_allclose(a[1, :7], b[1, :7], atol=1e-5)
    short = model.apply({"params": params}, tokens[1:, :7]).hidden_BTD
    np.testing.assert_allclose(a[1, :7], short[0], atol=1e-5)


def test_roberta_positions_skip_padding():
    tokens = jnp.array([[0, 7, 8, 2, 1, 1]])
    np.testing.assert_array_equal(roberta.positions_from_tokens(tokens, 1), [[2, 3, 4, 5, 1, 1]])


def test_sequence_longer_than_positions_is_a_clear_error(tiny_bert):
    model, params, _ = tiny_bert
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model.apply({"params": params}, jnp.zeros((1, 600), jnp.int32))


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="not divisible"):
        models.make_config("bert", hidden_size=100, num_heads=3)
    with pytest.raises(ValueError, match="Unknown model field"):
        models.make_config("bert", hidden=100)
    with pytest.raises(ValueError, match="Unknown preset"):
        models.get_preset("bert-huge")
