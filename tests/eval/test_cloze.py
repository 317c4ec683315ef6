"""Zero-shot cloze prompts: mask placement, truncation, verbalizer pieces, and scoring with an MLM head."""

import dataclasses

import flax.linen as nn
import jax
import numpy as np
import pytest

from llm_jax import models
from llm_jax.data import load_documents, special_ids, train_tokenizer
from llm_jax.data.tasks import BUNDLED
from llm_jax.eval import cloze


@pytest.fixture(scope="module")
def toks():
    docs = load_documents("bundled", "validation")
    return {"wordpiece": train_tokenizer("wordpiece", docs, 1000), "bpe": train_tokenizer("bytelevel_bpe", docs, 1000)}


def test_prompt_layout_wordpiece(toks):
    tok = toks["wordpiece"]
    sp = special_ids(tok)
    records = [{"text_a": "a small furry animal"}, {"text_a": "word " * 50}]
    inputs, mask, pos, after_space = cloze.build_prompts(tok, "a kind of {mask}: {text_a}.", records, 24, n_masks=2)
    assert inputs.shape == (2, 24) and pos.shape == (2, 2) and after_space
    for i in range(2):
        assert inputs[i, 0] == sp.cls and inputs[i][mask[i]][-1] == sp.sep
        assert (inputs[i, pos[i]] == sp.mask).all() and pos[i, 1] == pos[i, 0] + 1
        assert (inputs[i] == sp.mask).sum() == 2
    assert mask[1].all() and not mask[0].all()  # the long text was cut to fit; the template and masks survive
    words = tok.decode(inputs[0][mask[0]].tolist(), skip_special_tokens=False)
    assert words.startswith("[CLS] a kind of [MASK] [MASK] : a small furry animal") and words.endswith(". [SEP]")


def test_bpe_spaces_belong_to_the_next_word(toks):
    tok = toks["bpe"]
    inputs, mask, pos, after_space = cloze.build_prompts(tok, "{text_a} It was {mask}.", [{"text_a": "Good film"}], 12)
    assert after_space
    pieces = [tok.id_to_token(int(i)) for i in inputs[0][mask[0]]]
    assert pieces[0] == "<s>" and pieces[-1] == "</s>" and pieces[pieces.index("<mask>") + 1] == "."
    # Pieced together, the prompt is tokenized as the whole text would be: no dangling "Ġ" before the mask.
    assert pieces[1:pieces.index("<mask>")] == tok.encode("Good film It was", add_special_tokens=False).tokens
    (great,) = cloze.verbalizer_pieces(tok, ("great",), after_space=True)
    assert tok.id_to_token(great[0]).startswith("Ġ")


def test_verbalizers_split_into_pieces_and_must_differ(toks):
    pieces = cloze.verbalizer_pieces(toks["wordpiece"], ("the", "xylophonequartz"))
    assert len(pieces[0]) == 1 and len(pieces[1]) > 1
    with pytest.raises(ValueError, match="same tokens"):
        cloze.verbalizer_pieces(toks["wordpiece"], ("the", "The"))  # lower-cased: identical


def test_cloze_scores_are_verbalizer_log_probabilities(toks):
    tok = toks["wordpiece"]
    cfg = dataclasses.replace(models.get_preset("bert-tiny")[1], vocab_size=tok.get_vocab_size(), num_layers=1)
    model = models.build("bert", cfg)
    abstract = nn.meta.unbox(jax.eval_shape(lambda: model.init(jax.random.key(0), np.ones((1, 8), np.int32))["params"]))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda a: (0.5 * rng.standard_normal(a.shape)).astype(np.float32), abstract)
    spec = BUNDLED["wordnet-supersense"]
    records = [{"text_a": "a domestic animal"}, {"text_a": "an edible fruit"}, {"text_a": "a tool"}]
    scores = cloze.cloze_scores("bert", cfg, params, tok, spec, records, 24, batch_size=2)
    assert scores.shape == (3, 10) and np.isfinite(scores).all() and (scores <= 0).all()
    # By hand for one single-piece label: log-softmax of the MLM logits at the mask.
    pieces = cloze.verbalizer_pieces(tok, spec.verbalizers)
    c = next(i for i, p in enumerate(pieces) if len(p) == 1)
    inputs, mask, pos, _ = cloze.build_prompts(tok, spec.prompt, records, 24)
    out = model.apply({"params": params}, inputs, mask_BT=mask, mlm_positions_BP=pos)
    want = jax.nn.log_softmax(out.mlm_logits_BTV[:, 0], -1)[:, pieces[c][0]]
    np.testing.assert_allclose(scores[:, c], want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="MLM head"):
        cloze.cloze_scores("bert", cfg, {"bert": params["bert"]}, tok, spec, records, 24)
