"""Numerical parity with Hugging Face transformers (PyTorch, CPU, float32, eager attention).

Both directions at the model level (1e-4): random-weight `transformers` models → `save_pretrained` → `load_hf` →
our outputs; and our random params → `save_hf` → `from_pretrained` (no missing / unexpected keys) → their
outputs. One encoder layer against `BertLayer` at 1e-5.

Every weight is randomised, LayerNorm scales and all biases included (HF would initialise those to 1 and 0),
so a swapped or mis-laid-out tensor cannot hide behind a constant. Inputs mix padded rows and, for BERT, both
token types. All positions are compared, padded ones too: both implementations mask only keys, so padded
queries still attend to the real tokens and compute the same (unused) values.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from llm_jax import models
from llm_jax.interop import load_hf, load_hf_with_report, save_hf, state_dict
from llm_jax.models import bert

MODEL_TOL = dict(rtol=1e-4, atol=1e-4)
LAYER_TOL = dict(rtol=1e-5, atol=1e-5)
VOCAB, WIDTH, LAYERS, HEADS, FFN, T = 101, 64, 2, 4, 128, 12
LENGTHS = (12, 8, 5)  # one full row, two padded ones
SEGMENT_STARTS = (6, 4, 2)  # where token type 1 begins in each BERT row


def _randomize(torch, module, seed):
    """Every parameter ~ N(0, 0.1²), LayerNorm scales ~ N(1, 0.1²): attention far from uniform, no constants."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = 0.1 * torch.randn(p.shape, generator=g)
            p.copy_(1 + noise if name.lower().endswith("layernorm.weight") or name.endswith("layer_norm.weight")
                    else noise)
    return module


def _inputs(family, pad_id):
    rng = np.random.default_rng(0)
    mask = np.arange(T)[None, :] < np.array(LENGTHS)[:, None]
    tokens = np.where(mask, rng.integers(3, VOCAB, (len(LENGTHS), T)), pad_id)
    if family == "bert":
        segments = (np.arange(T)[None, :] >= np.array(SEGMENT_STARTS)[:, None]) & mask
    else:
        segments = np.zeros_like(mask)
    return tokens.astype(np.int64), segments.astype(np.int64), mask


def _ours(family, config, params, tokens, segments, mask):
    model = models.build(family, config)
    out = jax.jit(lambda p, x, s, m: model.apply({"params": p}, x, segment_ids_BT=s, mask_BT=m))(
        params, jnp.asarray(tokens, jnp.int32), jnp.asarray(segments, jnp.int32), jnp.asarray(mask))
    return jax.tree.map(np.asarray, out)


def _theirs(torch, hf_model, tokens, segments, mask):
    with torch.no_grad():
        out = hf_model(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask.astype(np.int64)),
                       token_type_ids=torch.tensor(segments), output_hidden_states=True)
    logits = out.prediction_logits if hasattr(out, "prediction_logits") else out.logits
    nsp = out.seq_relationship_logits.numpy() if hasattr(out, "seq_relationship_logits") else None
    return out.hidden_states[-1].numpy(), logits.numpy(), nsp


def _hf_config(transformers, family, **overrides):
    common = dict(vocab_size=VOCAB, hidden_size=WIDTH, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                  intermediate_size=FFN, attn_implementation="eager")
    if family == "bert":
        return transformers.BertConfig(**common, max_position_embeddings=T + 4, **overrides)
    # RoBERTa: positions start after pad_token_id=1 (so T + 2 rows), one token type, eps 1e-5 as published.
    return transformers.RobertaConfig(**common, max_position_embeddings=T + 2, type_vocab_size=1,
                                      layer_norm_eps=1e-5, **overrides)


@pytest.fixture(scope="module")
def hf_bert(torch, transformers, tmp_path_factory):
    torch.manual_seed(0)
    model = _randomize(torch, transformers.BertForPreTraining(_hf_config(transformers, "bert")), seed=1).eval()
    path = tmp_path_factory.mktemp("hf_bert")
    model.save_pretrained(path)
    return model, path


@pytest.fixture(scope="module")
def hf_roberta(torch, transformers, tmp_path_factory):
    torch.manual_seed(0)
    # hidden_act="gelu_new" (tanh GELU) in the encoder, while RobertaLMHead always uses exact GELU: this catches a
    # head that follows hidden_act.
    config = _hf_config(transformers, "roberta", hidden_act="gelu_new")
    model = _randomize(torch, transformers.RobertaForMaskedLM(config), seed=2).eval()
    path = tmp_path_factory.mktemp("hf_roberta")
    model.save_pretrained(path)
    return model, path


# ------------------------------------------------------------------------------------- transformers → ours


def test_bert_from_transformers_matches(torch, hf_bert):
    hf_model, path = hf_bert
    loaded = load_hf_with_report(path)
    assert loaded.family == "bert"
    assert loaded.report.initialized == () and loaded.report.unexpected == ()
    assert all(np.asarray(x).dtype == np.float32 for x in jax.tree.leaves(loaded.params))
    tokens, segments, mask = _inputs("bert", hf_model.config.pad_token_id)
    ours = _ours("bert", loaded.config, loaded.params, tokens, segments, mask)
    hidden, mlm, nsp = _theirs(torch, hf_model, tokens, segments, mask)
    np.testing.assert_allclose(ours.hidden_BTD, hidden, **MODEL_TOL)
    np.testing.assert_allclose(ours.mlm_logits_BTV, mlm, **MODEL_TOL)
    np.testing.assert_allclose(ours.nsp_logits_B2, nsp, **MODEL_TOL)


def test_roberta_from_transformers_matches(torch, hf_roberta):
    hf_model, path = hf_roberta
    family, config, params = load_hf(path)
    assert family == "roberta" and config.hidden_act == "gelu_new" and config.pad_token_id == 1
    tokens, segments, mask = _inputs("roberta", config.pad_token_id)
    ours = _ours(family, config, params, tokens, segments, mask)
    hidden, mlm, _ = _theirs(torch, hf_model, tokens, segments, mask)
    np.testing.assert_allclose(ours.hidden_BTD, hidden, **MODEL_TOL)
    np.testing.assert_allclose(ours.mlm_logits_BTV, mlm, **MODEL_TOL)


# ------------------------------------------------------------------------------------- ours → transformers


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_ours_to_transformers_loads_cleanly_and_matches(torch, transformers, random_params, tmp_path, family):
    config = models.make_config(family, vocab_size=VOCAB, hidden_size=WIDTH, num_layers=LAYERS, num_heads=HEADS,
                                intermediate_size=FFN, max_position_embeddings=T + 4)
    params = random_params(family, config, seed=4)
    save_hf(family, config, params, tmp_path)

    hf_cls = transformers.BertForPreTraining if family == "bert" else transformers.RobertaForMaskedLM
    hf_model, info = hf_cls.from_pretrained(tmp_path, output_loading_info=True, attn_implementation="eager")
    assert {k: v for k, v in info.items() if v} == {}, info  # no missing / unexpected / mismatched keys
    hf_model.eval()
    assert hf_model.get_output_embeddings().weight.data_ptr() == hf_model.get_input_embeddings().weight.data_ptr()

    tokens, segments, mask = _inputs(family, config.pad_token_id)
    ours = _ours(family, config, params, tokens, segments, mask)
    hidden, mlm, nsp = _theirs(torch, hf_model, tokens, segments, mask)
    np.testing.assert_allclose(ours.hidden_BTD, hidden, **MODEL_TOL)
    np.testing.assert_allclose(ours.mlm_logits_BTV, mlm, **MODEL_TOL)
    if family == "bert":
        np.testing.assert_allclose(ours.nsp_logits_B2, nsp, **MODEL_TOL)


# ------------------------------------------------------------------------------------------- one layer


def test_encoder_layer_matches_bert_layer(torch, transformers):
    hf_config = _hf_config(transformers, "bert")
    hf_config._attn_implementation = "eager"
    torch.manual_seed(0)
    hf_layer = _randomize(torch, transformers.models.bert.modeling_bert.BertLayer(hf_config), seed=5).eval()
    hf_tensors = {k: v.numpy() for k, v in hf_layer.state_dict().items()}

    config = dataclasses.replace(bert.Config(), vocab_size=VOCAB, hidden_size=WIDTH, num_layers=1, num_heads=HEADS,
                                 intermediate_size=FFN).validate()
    layer = bert.Layer(config)
    x = np.random.default_rng(6).standard_normal((len(LENGTHS), T, WIDTH)).astype(np.float32)
    mask = np.arange(T)[None, :] < np.array(LENGTHS)[:, None]
    mask_BHTS = jnp.asarray(mask)[:, None, None, :]

    # The family's own name map, read per layer: our `…/block/<path>` ↔ HF `encoder.layer.{L}.<name>`.
    abstract = nn.meta.unbox(jax.eval_shape(layer.init, jax.random.key(0), x, mask_BHTS))["params"]
    shapes = {p: tuple(s.shape) for p, s in traverse_util.flatten_dict(abstract, sep="/").items()}
    flat = {}
    for path, (hf_name, kind) in bert.HF_ENCODER_MAP.items():
        if state_dict.LAYER in hf_name:
            ours, theirs = path.removeprefix("encoder/stack/layers/block/"), hf_name.removeprefix("encoder.layer.{L}.")
            assert hf_tensors[theirs].shape == state_dict.hf_shape(kind, shapes[ours]), (ours, theirs)
            flat[ours] = state_dict.to_ours(kind, hf_tensors[theirs], shapes[ours])
    assert set(flat) == set(shapes)
    assert set(hf_tensors) == {n.removeprefix("encoder.layer.{L}.") for n, _ in bert.HF_ENCODER_MAP.values()
                               if state_dict.LAYER in n}
    params = traverse_util.unflatten_dict(flat, sep="/")

    ours = layer.apply({"params": params}, jnp.asarray(x), mask_BHTS)
    additive = torch.tensor(np.where(mask, 0.0, np.finfo(np.float32).min)[:, None, None, :], dtype=torch.float32)
    with torch.no_grad():
        theirs = hf_layer(torch.tensor(x), attention_mask=additive)
    theirs = theirs[0] if isinstance(theirs, tuple) else theirs
    np.testing.assert_allclose(np.asarray(ours), theirs.numpy(), **LAYER_TOL)
