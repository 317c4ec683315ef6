"""Word and sentence vectors (`llm_jax.eval.embeddings`) from every registered family, through the contract only:
shapes, the static table rows, padding invariance of the contextual vectors, and the templates."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llm_jax import models, objectives
from llm_jax.data import load_documents
from llm_jax.data.tokenizer import special_ids
from llm_jax.eval import embeddings

WORDS = ["aster", "caterpillar", "Harry"]


@pytest.fixture(scope="module")
def texts():
    return load_documents("bundled", "validation")[:60]


def _tiny(family, texts):
    fam = models.family_module(family)
    tok = fam.TOKENIZER.train(texts, 400)
    preset = next(cfg for name, cfg in fam.PRESETS.items() if name.endswith("tiny"))
    cfg = preset.with_vocabulary(tok.get_vocab_size(), special_ids(tok, fam.TOKENIZER.roles))
    objective = objectives.make_objective(objectives.config_for(fam.DEFAULT_OBJECTIVE),
                                          special_ids(tok, fam.TOKENIZER.roles), cfg.vocab_size)
    args, kwargs = objective.init_inputs(objective.dummy_batch(1, 8))
    model = models.build(family, cfg)
    params = nn.meta.unbox(jax.jit(lambda k: model.init(k, *args, **kwargs))(jax.random.key(0))["params"])
    return cfg, params, tok


# The families that declare where their vectors are (the optional representation members, models/family.py).
WITH_VECTORS = [f for f in models.FAMILIES if hasattr(models.family_module(f), "TOKEN_EMBEDDING")]


def test_a_family_without_the_members_is_a_clear_error(texts):
    """Transformer-XL (adaptive input: no single `[V, E]` table) and XLNet do not declare them yet: one line."""
    without = [f for f in models.FAMILIES if f not in WITH_VECTORS]
    assert set(WITH_VECTORS) >= {"bert", "roberta", "albert", "distilbert", "electra", "gpt", "gpt1", "t5"}
    for family in without:
        cfg, params, tok = _tiny(family, texts)
        with pytest.raises(ValueError, match="declares no TOKEN_EMBEDDING"):
            embeddings.TextEncoder(family, cfg, params, tok)


@pytest.mark.parametrize("family", WITH_VECTORS)
def test_every_family_gives_vectors(family, texts):
    cfg, params, tok = _tiny(family, texts)
    enc = embeddings.TextEncoder(family, cfg, params, tok)
    fam = models.family_module(family)
    table = params[fam.TRUNK_NAME]
    for key in fam.TOKEN_EMBEDDING:
        table = table[key]
    static = enc.static(WORDS, piece="first")
    first_ids = [tok.encode(w, add_special_tokens=False) for w in WORDS]
    first_ids = [e.ids[embeddings._word_pieces(e, w)[0]] for e, w in zip(first_ids, WORDS)]
    np.testing.assert_array_equal(static, np.asarray(table, np.float64)[first_ids])
    assert enc.static(WORDS, piece="mean").shape == static.shape

    word = enc.word(WORDS)
    assert word.shape == (3, cfg.width) and np.isfinite(word).all()
    # Padding invariance: the padded batch equals the first word run alone, unpadded.
    e = tok.encode(WORDS[0])
    trunk = fam.build_trunk(cfg, "classification")
    tokens = jnp.asarray([e.ids], jnp.int32)
    out = trunk.apply({"params": params[fam.TRUNK_NAME]}, tokens, segment_ids_BT=jnp.zeros_like(tokens),
                      deterministic=True)
    pieces = embeddings._word_pieces(e, WORDS[0])
    at = pieces[-1] if fam.LM_KIND == "causal" else pieces[0]
    np.testing.assert_allclose(word[0], np.asarray(out.hidden_BTD[0, at]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(enc.sentence([WORDS[0]], pooling="classifier")[0],
                               np.asarray(fam.pooled_features(cfg, out)[0]), rtol=1e-5, atol=1e-5)

    layer1 = enc.word(WORDS, layer=1, piece="mean")
    assert layer1.shape == word.shape and not np.allclose(layer1, word)


def test_templates_and_errors():
    assert embeddings.sentences_for("aster")[0] == "This is an aster."
    assert embeddings.sentences_for("caterpillar")[4] == "A caterpillar is here."
    assert embeddings.sentences_for("Harry") == [t.format(w="Harry") for t in embeddings.NAME_TEMPLATES]
    assert embeddings.sentences_for("This is a sentence.") == ["This is a sentence."]
    assert len(set(embeddings.WORD_TEMPLATES)) == len(embeddings.NAME_TEMPLATES) == 5
