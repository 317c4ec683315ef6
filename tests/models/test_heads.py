"""Fine-tuning heads: shapes and losses on tiny inputs, trunk transplant, and numerical parity with Hugging Face's
task models (BertFor*/RobertaFor* SequenceClassification, TokenClassification, QuestionAnswering, MultipleChoice)."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llm_jax import models
from llm_jax.models import heads
from llm_jax.objectives import finetune as losses
from llm_jax.objectives import weighted_cross_entropy

VOCAB, WIDTH, LAYERS, N_HEADS, FFN, T, C = 101, 64, 2, 4, 128, 12, 3
LENGTHS = (12, 8, 5)
TOL = dict(rtol=1e-4, atol=1e-4)
# Every BERT kind; for RoBERTa the two heads that differ from BERT's (no pooler → dense-tanh; the MC pooler).
COMBOS = [("bert", k) for k in heads.KINDS] + [("roberta", "classification"), ("roberta", "span"),
                                              ("roberta", "multiple_choice")]


def _cfg(family):
    """The tiny config, exactly what `config_from_hf` makes of the Hugging Face config in `_hf_model`."""
    if family == "bert":
        return models.bert.Config(vocab_size=VOCAB, hidden_size=WIDTH, num_layers=LAYERS, num_heads=N_HEADS,
                                  intermediate_size=FFN, max_position_embeddings=T + 4)
    return models.roberta.Config(vocab_size=VOCAB, hidden_size=WIDTH, num_layers=LAYERS, num_heads=N_HEADS,
                                 intermediate_size=FFN, max_position_embeddings=T + 2)


def _inputs(family, kind):
    pad_id = _cfg(family).pad_token_id
    rng = np.random.default_rng(0)
    mask = np.arange(T)[None, :] < np.array(LENGTHS)[:, None]
    tokens = np.where(mask, rng.integers(3, VOCAB, (len(LENGTHS), T)), pad_id)
    segments = ((np.arange(T)[None, :] >= 6) & mask) if family == "bert" else np.zeros_like(mask)
    tokens, segments = tokens.astype(np.int32), segments.astype(np.int32)
    if kind == "multiple_choice":  # 3 examples × 2 choices
        tokens, segments, mask = (np.stack([x, x[::-1]], 1) for x in (tokens, segments, mask))
    return tokens, segments, mask


def _batch(family, kind):
    """Inputs plus labels of the kind; the last row has weight 0 (a padding row that must not count)."""
    tokens, segments, mask = _inputs(family, kind)
    b = len(tokens)
    batch = {"inputs": tokens, "segment_ids": segments, "mask": mask, "weight": np.array([1, 1, 0], np.float32)}
    if kind == "classification":
        batch["labels"] = np.array([2, 0, 1], np.int32)
    elif kind == "regression":
        batch["labels"] = np.array([0.5, -1.0, 9.0], np.float32)
    elif kind == "token_classification":
        batch["labels"] = np.tile(np.arange(T) % C, (b, 1)).astype(np.int32)
        batch["label_weights"] = mask.astype(np.float32)
    elif kind == "span":
        batch["start_positions"], batch["end_positions"] = np.array([1, 0, 3], np.int32), np.array([4, 0, 3], np.int32)
    else:
        batch["labels"] = np.array([1, 0, 1], np.int32)
    return batch


@pytest.fixture(scope="module")
def compiled():
    """(family, kind) → (model, random params, jitted `run(params, batch) -> (loss, metrics, outputs)`).

    Why random params from the abstract shapes and one jitted function per head: each head compiles once, for the
    loss and the Hugging Face comparison together (this file must stay fast on 2 CPU cores). Gradients are
    exercised by the fine-tuning tests.
    """
    out = {}
    for family, kind in COMBOS:
        model = heads.build(family, _cfg(family), kind, num_labels=C)
        batch = _batch(family, kind)
        abstract = nn.meta.unbox(jax.eval_shape(lambda: model.init(
            jax.random.key(0), batch["inputs"], mask_BT=batch["mask"], segment_ids_BT=batch["segment_ids"])["params"]))
        rng = np.random.default_rng(7)
        params = jax.tree.map(lambda a: (0.1 * rng.standard_normal(a.shape)).astype(np.float32), abstract)
        loss_fn = losses.make_loss(model, kind)

        def run(p, b, loss_fn=loss_fn, model=model):
            loss, (metrics, _) = loss_fn(p, b, jax.random.key(0), deterministic=True)
            outputs = model.apply({"params": p}, b["inputs"], mask_BT=b["mask"], segment_ids_BT=b["segment_ids"])
            return loss, metrics, outputs

        out[family, kind] = (model, params, jax.jit(run))
    return out


@pytest.mark.parametrize("family,kind", COMBOS)
def test_head_output_shape_and_finite(compiled, family, kind):
    model, params, run = compiled[family, kind]
    _, _, o = run(params, _batch(family, kind))
    b = len(LENGTHS)
    want = {"classification": {"logits_BC": (b, C)}, "regression": {"logits_BC": (b, 1)},
            "token_classification": {"logits_BTC": (b, T, C)},
            "span": {"start_logits_BT": (b, T), "end_logits_BT": (b, T)},
            "multiple_choice": {"logits_BN": (b, 2)}}[kind]
    assert {k: v.shape for k, v in vars(o).items() if v is not None and k != "hidden_BTD"} == want
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(o))


def _np_ce(logits, labels):
    logits = np.asarray(logits, np.float64)
    top = logits.max(-1, keepdims=True)
    logp = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
    return -logp[np.arange(len(labels)), labels]


@pytest.mark.parametrize("kind", heads.KINDS)
def test_each_head_loss_equals_a_hand_computation(compiled, kind):
    model, params, run = compiled["bert", kind]
    batch = _batch("bert", kind)
    loss, metrics, out = run(params, batch)
    b, w = len(batch["inputs"]), batch["weight"]
    if kind == "classification":
        want = _np_ce(out.logits_BC, batch["labels"])[:2].mean()
    elif kind == "regression":
        want = ((np.asarray(out.logits_BC[:, 0]) - batch["labels"]) ** 2)[:2].mean()
    elif kind == "token_classification":
        nll = np.stack([_np_ce(out.logits_BTC[i], batch["labels"][i]) for i in range(b)])
        lw = batch["label_weights"] * w[:, None]
        want = (nll * lw).sum() / lw.sum()
    elif kind == "span":
        neg = np.where(batch["mask"], 0.0, -1e9)
        s = _np_ce(np.asarray(out.start_logits_BT) + neg, batch["start_positions"])
        e = _np_ce(np.asarray(out.end_logits_BT) + neg, batch["end_positions"])
        want = ((s + e) / 2)[:2].mean()
    else:
        want = _np_ce(out.logits_BN, batch["labels"])[:2].mean()
    assert float(loss) == pytest.approx(float(want), rel=1e-5)
    assert float(metrics["loss"]) == float(loss)


def test_class_weights_reweight_the_loss():
    logits = jnp.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    labels, w = jnp.array([0, 1, 1]), jnp.ones(3)
    cw = losses.class_weights(np.array([0, 0, 0, 1]), 2)  # inverse frequency: N / (C n_c)
    np.testing.assert_allclose(cw, [4 / 6, 4 / 2])
    nll = _np_ce(logits, np.asarray(labels))
    loss, acc = weighted_cross_entropy(logits, labels, w, class_weights_V=jnp.asarray(cw))
    want = (nll * cw[np.asarray(labels)]).sum() / cw[np.asarray(labels)].sum()
    assert float(loss) == pytest.approx(want, rel=1e-6) and float(acc) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="no training example"):
        losses.class_weights(np.array([0, 0]), 2)


def test_dropout_is_active_only_in_training(compiled):
    model, params, _ = compiled["roberta", "classification"]
    batch = _batch("roberta", "classification")
    loss_fn = losses.make_loss(model, "classification")
    both = jax.jit(lambda p, r: (loss_fn(p, batch, r)[0], loss_fn(p, batch, r, deterministic=True)[0]))
    (train_a, eval_a), (train_b, eval_b) = both(params, jax.random.key(1)), both(params, jax.random.key(2))
    assert float(train_a) != float(train_b)
    assert float(eval_a) == float(eval_b)


def test_transplant_copies_the_trunk_only(compiled):
    _, task_params, _ = compiled["roberta", "multiple_choice"]
    cfg = _cfg("roberta")
    shapes = lambda c: nn.meta.unbox(jax.eval_shape(
        lambda: models.build("roberta", c).init(jax.random.key(0), np.ones((1, 4), np.int32))["params"]))
    pre = jax.tree.map(lambda a: np.full(a.shape, 0.5, np.float32), shapes(cfg))
    merged, fresh = heads.transplant_trunk("roberta", task_params, pre)
    # RoBERTa's MLM model has no pooler; the multiple-choice head needs one: it keeps its init and is reported.
    assert sorted(fresh) == ["roberta/pooler/dense/bias", "roberta/pooler/dense/kernel"]
    np.testing.assert_array_equal(merged["roberta"]["embeddings"]["word_embeddings"]["embedding"],
                                  pre["roberta"]["embeddings"]["word_embeddings"]["embedding"])
    np.testing.assert_array_equal(merged["roberta"]["pooler"]["dense"]["kernel"],
                                  task_params["roberta"]["pooler"]["dense"]["kernel"])
    np.testing.assert_array_equal(merged["classifier"]["kernel"], task_params["classifier"]["kernel"])
    assert "mlm_head" not in merged
    wide_cfg = dataclasses.replace(cfg, intermediate_size=2 * FFN)
    wide = jax.tree.map(lambda a: np.zeros(a.shape, np.float32), shapes(wide_cfg))
    with pytest.raises(ValueError, match="architecture differs"):
        heads.transplant_trunk("roberta", task_params, wide)
    with pytest.raises(ValueError, match="no 'bert' subtree"):
        heads.transplant_trunk("bert", task_params, pre)


def test_unknown_kind_and_too_few_labels_are_errors():
    with pytest.raises(ValueError, match="Unknown task kind"):
        heads.build("bert", _cfg("bert"), "ranking")
    with pytest.raises(ValueError, match="num_labels ≥ 2"):
        heads.build("bert", _cfg("bert"), "classification", num_labels=1)


# ------------------------------------------------------------------------------------ Hugging Face parity


@pytest.fixture(scope="module")
def torch(require):
    return require("torch")


@pytest.fixture(scope="module")
def transformers(require, torch):
    return require("transformers")


def _hf_model(torch, transformers, family, cls_name):
    # HF's QA head is `Linear(hidden, num_labels)` split into start / end: it needs num_labels=2.
    common = dict(vocab_size=VOCAB, hidden_size=WIDTH, num_hidden_layers=LAYERS, num_attention_heads=N_HEADS,
                  intermediate_size=FFN, attn_implementation="eager",
                  num_labels=2 if cls_name.endswith("QuestionAnswering") else C)
    if family == "bert":
        config = transformers.BertConfig(**common, max_position_embeddings=T + 4)
    else:
        config = transformers.RobertaConfig(**common, max_position_embeddings=T + 2, type_vocab_size=1,
                                            layer_norm_eps=1e-5)
    torch.manual_seed(0)
    model = getattr(transformers, cls_name)(config)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # every weight random (HF would start biases at 0, norms at 1)
        for name, p in model.named_parameters():
            noise = 0.1 * torch.randn(p.shape, generator=g)
            p.copy_(1 + noise if name.endswith("LayerNorm.weight") else noise)
    return model.eval()


def _our_params(family, cfg, hf_model, like):
    """transformers' weights in our layout, with exactly the tree of `like` (so the compiled run is reused)."""
    from llm_jax.interop import state_dict

    tensors = {k: v.detach().numpy() for k, v in hf_model.state_dict().items()}
    trunk, _ = state_dict.from_hf_state_dict(family, cfg, tensors)
    params = {family: {k: v for k, v in trunk[family].items() if k in like[family]}}
    linear = lambda name: {"kernel": tensors[f"{name}.weight"].T, "bias": tensors[f"{name}.bias"]}
    if "classifier.dense.weight" in tensors:
        params["classifier"] = {"dense": linear("classifier.dense"), "out_proj": linear("classifier.out_proj")}
    elif "classifier.weight" in tensors:
        params["classifier"] = linear("classifier")
    if "qa_outputs.weight" in tensors:
        params["qa_outputs"] = linear("qa_outputs")
    if f"{family}.pooler.dense.weight" in tensors:  # RoBERTa's loader ignores the pooler its MLM model lacks
        params[family]["pooler"] = {"dense": linear(f"{family}.pooler.dense")}
    return params


CASES = [("bert", "BertForSequenceClassification", "classification"),
         ("bert", "BertForTokenClassification", "token_classification"),
         ("bert", "BertForQuestionAnswering", "span"),
         ("bert", "BertForMultipleChoice", "multiple_choice"),
         ("roberta", "RobertaForSequenceClassification", "classification"),
         ("roberta", "RobertaForQuestionAnswering", "span"),
         ("roberta", "RobertaForMultipleChoice", "multiple_choice")]


@pytest.mark.parametrize("family,cls_name,kind", CASES, ids=[c[1] for c in CASES])
def test_heads_match_transformers(compiled, torch, transformers, family, cls_name, kind):
    hf = _hf_model(torch, transformers, family, cls_name)
    cfg = models.family_module(family).config_from_hf(hf.config.to_dict())
    assert cfg == _cfg(family)  # so the compiled model is the one transformers built
    _, like, run = compiled[family, kind]
    batch = _batch(family, kind)
    ours = run(_our_params(family, cfg, hf, like), batch)[2]
    with torch.no_grad():
        kw = dict(input_ids=torch.tensor(batch["inputs"], dtype=torch.long),
                  attention_mask=torch.tensor(batch["mask"].astype(np.int64)))
        if family == "bert":
            kw["token_type_ids"] = torch.tensor(batch["segment_ids"], dtype=torch.long)
        theirs = hf(**kw)
    if kind == "span":
        np.testing.assert_allclose(ours.start_logits_BT, theirs.start_logits.numpy(), **TOL)
        np.testing.assert_allclose(ours.end_logits_BT, theirs.end_logits.numpy(), **TOL)
    else:
        got = {"classification": ours.logits_BC, "token_classification": ours.logits_BTC,
               "multiple_choice": ours.logits_BN}[kind]
        np.testing.assert_allclose(got, theirs.logits.numpy(), **TOL)
