"""GPT-1's fine-tuning (Radford et al. 2018 §3.2–3.3): the task input transformations' token layouts, the task
tokens added to the vocabulary and the token table grown with them, the similarity head's symmetry, the auxiliary
LM loss and its exact accumulation, and `llm-jax finetune` from a GPT-1 run on a bundled text and pair task."""

import json
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llm_jax import cli, models
from llm_jax.data import features
from llm_jax.data.input_format import InputFormat, finetuning_tokenizer, pad_id
from llm_jax.models import bert, gpt, gpt1, heads
from llm_jax.objectives.finetune import TaskObjective
from llm_jax.train.metrics import read_metrics

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ["the cat sat on the mat.\nthe dog ran to the park.", "a bird flew over the hill.\nthe sun was warm."] * 10
TASK_TOKENS = ("_start_", "_delimiter_", "_classify_")
A, B = "the cat sat", "a dog ran to the hill"


@pytest.fixture(scope="module")
def gpt1_tok():
    base = gpt1.TOKENIZER.train(DOCS, 120)
    return base, finetuning_tokenizer(base, gpt1.INPUT_FORMAT, gpt1.TOKENIZER.roles)


def _plain(tok, text):
    return tok.encode(text, add_special_tokens=False).ids


def _rows(arrays):
    """The real tokens of every row (any leading shape)."""
    inputs, mask = arrays["inputs"], arrays["mask"]
    return [row[m].tolist() for row, m in zip(inputs.reshape(-1, inputs.shape[-1]), mask.reshape(-1, mask.shape[-1]))]


# ------------------------------------------------------------------------------------- input transformations


def test_task_tokens_are_appended_to_the_vocabulary_once(gpt1_tok):
    base, ready = gpt1_tok
    v = base.get_vocab_size()
    assert ready.added == TASK_TOKENS
    assert [ready.tokenizer.token_to_id(t) for t in TASK_TOKENS] == [v, v + 1, v + 2]
    assert base.token_to_id("_start_") is None and base.post_processor is None  # the caller's copy is untouched
    assert {ready.roles[r] for r in ("bos", "sep", "cls")} == set(TASK_TOKENS)
    # A tokenizer saved by a fine-tuning run already has them: nothing is added, the ids stay.
    again = finetuning_tokenizer(ready.tokenizer, gpt1.INPUT_FORMAT, gpt1.TOKENIZER.roles)
    assert again.added == () and again.tokenizer.get_vocab_size() == v + 3
    assert [again.tokenizer.token_to_id(t) for t in TASK_TOKENS] == [v, v + 1, v + 2]
    # In task inputs, text that spells a task token stays text.
    encoder = features.task_tokenizer(ready.tokenizer, 16, roles=ready.roles)
    assert encoder.encode("_start_ the cat").ids.count(v) == 1  # the template's, not the text's


def test_gpt1_layouts_of_section_3_3(gpt1_tok):
    """Figure 1: start text extract; start premise delim hypothesis extract; similarity in both orders; start
    context delim answer extract per choice. Padding is the family's end-of-text token; truncation keeps the
    extract token last, where the classifier reads."""
    _, ready = gpt1_tok
    tok, roles, fmt = ready.tokenizer, ready.roles, gpt1.INPUT_FORMAT
    s, d, e = (tok.token_to_id(t) for t in TASK_TOKENS)
    a, b = _plain(tok, A), _plain(tok, B)
    kw = {"fmt": fmt, "roles": roles, "type_vocab_size": 1}

    single = features.encode("classification", tok, [{"idx": 0, "text_a": A, "label": 1}], 16, **kw).arrays
    assert _rows(single) == [[s, *a, e]]
    assert set(single["inputs"][0][~single["mask"][0]].tolist()) == {tok.token_to_id("<|endoftext|>")}
    assert pad_id(tok, roles) == tok.token_to_id("<|endoftext|>")

    pair = [{"idx": 0, "text_a": A, "text_b": B, "label": 0}]
    entail = features.encode("classification", tok, pair, 16, **kw).arrays
    assert entail["inputs"].shape == (1, 16) and _rows(entail) == [[s, *a, d, *b, e]]

    similar = features.encode("classification", tok, pair, 16, symmetric=True, **kw).arrays
    assert similar["inputs"].shape == (1, 2, 16) and similar["labels"].shape == (1,)
    assert _rows(similar) == [[s, *a, d, *b, e], [s, *b, d, *a, e]]

    mc = [{"idx": 0, "context": A, "choices": ["the dog", "the sun", "a bird"], "label": 2}]
    choices = features.encode("multiple_choice", tok, mc, 16, **kw).arrays
    assert choices["inputs"].shape == (1, 3, 16)
    assert _rows(choices) == [[s, *a, d, *_plain(tok, c), e] for c in mc[0]["choices"]]

    cut = features.encode("classification", tok, pair, 8, **kw).arrays
    assert cut["mask"].all() and cut["inputs"][0, 0] == s and cut["inputs"][0, -1] == e


def test_gpt2_reads_plain_text_and_pads_with_end_of_text():
    """No classifier token and no template needed (the last real token is read); a pair is joined by
    <|endoftext|>; the padding token comes from the family's role map, not from guessed spellings."""
    base = gpt.TOKENIZER.train(DOCS, 300)
    ready = finetuning_tokenizer(base, gpt.INPUT_FORMAT, gpt.TOKENIZER.roles)
    assert ready.added == () and ready.tokenizer.get_vocab_size() == base.get_vocab_size()
    eot, kw = base.token_to_id("<|endoftext|>"), {"fmt": gpt.INPUT_FORMAT, "roles": ready.roles, "type_vocab_size": 1}
    single = features.encode("classification", ready.tokenizer, [{"idx": 0, "text_a": A, "label": 0}], 12, **kw)
    assert _rows(single.arrays) == [_plain(base, A)]
    assert set(single.arrays["inputs"][0][~single.arrays["mask"][0]].tolist()) == {eot}
    pair = features.encode("classification", ready.tokenizer, [{"idx": 0, "text_a": A, "text_b": B, "label": 0}],
                           16, symmetric=True, **kw)  # GPT-2 does not run both orders
    assert _rows(pair.arrays) == [[*_plain(base, A), eot, *_plain(base, B)]]
    # A family whose classifier reads a template's token still refuses a tokenizer without one.
    with pytest.raises(ValueError, match="no post-processor template"):
        features.encode("classification", base, [{"idx": 0, "text_a": A, "label": 0}], 12, fmt=InputFormat(),
                        roles=gpt.TOKENIZER.roles)


def test_the_contract_checks_the_fine_tuning_template_against_the_roles():
    import types

    fake = types.ModuleType("llm_jax.models.fake")
    for name in ("NAME", "Config", "PRESETS", "PRETRAINING_MODEL", "DEFAULT_OBJECTIVE", "LM_KIND", "TOKENIZER",
                 "TRUNK_NAME", "build_trunk", "sequence_head", "towers"):
        setattr(fake, name, getattr(gpt1, name))
    fake.INPUT_FORMAT = InputFormat(template="start_delim_extract", task_tokens=(("cls", "_classify_"),))
    assert models.check_family(fake) == ["llm_jax.models.fake.INPUT_FORMAT's template 'start_delim_extract' needs "
                                         "the roles ['bos', 'sep'], which neither TOKENIZER.roles nor "
                                         "INPUT_FORMAT.task_tokens give"]
    with pytest.raises(ValueError, match="task_tokens=...\\) names the roles \\['start'\\]"):
        InputFormat(task_tokens=(("start", "_start_"),))


def test_formats_without_both_orders_keep_one_row_per_pair():
    tok = bert.TOKENIZER.train(DOCS, 200)
    enc = features.encode("classification", tok, [{"idx": 0, "text_a": A, "text_b": B, "label": 0}], 16,
                          fmt=bert.INPUT_FORMAT, roles=bert.TOKENIZER.roles, symmetric=True)
    assert enc.arrays["inputs"].shape == (1, 16) and enc.arrays["inputs"][0, 0] == tok.token_to_id("[CLS]")


# -------------------------------------------------------------------------------------------- the model

V, T = 67, 12
CFG = gpt1.Config(vocab_size=V, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=128,
                  max_position_embeddings=T, hidden_dropout=0.0, attention_dropout=0.0)


def _batch():
    """Two examples as [B, 2, T]: (A, B) then (B, A), right-padded."""
    rng = np.random.default_rng(3)
    x = rng.integers(1, V, (2, T)).astype(np.int32)
    lengths = np.array([[12, 9], [7, 10]])
    mask = np.arange(T)[None, None, :] < lengths[:, :, None]
    tokens = np.where(mask, np.stack([x, x[::-1]], 1), 0).astype(np.int32)
    return {"inputs": tokens, "mask": mask, "segment_ids": np.zeros_like(tokens), "labels": np.array([2, 0], np.int32),
            "weight": np.ones(2, np.float32)}


@pytest.fixture(scope="module")
def similarity():
    """Everything the head and loss tests read, from one jitted function (one compilation): the outputs with LM
    logits, the same pairs swapped, the trunk's pooled states, and the loss on the whole batch and on each example
    normalised by the whole batch's denominators."""
    model = heads.build("gpt1", CFG, "classification", num_labels=3, classifier_dropout=0.0)
    batch = _batch()
    params = nn.meta.unbox(jax.jit(model.init)(jax.random.key(0), batch["inputs"], mask_BT=batch["mask"])["params"])
    objective = TaskObjective("classification", aux_lm_weight=0.5)
    loss_fn = objective.make_loss(model)
    trunk = gpt1.OpenAIGPTModel(CFG)

    @jax.jit
    def run(p, b):
        out = model.apply({"params": p}, b["inputs"], mask_BT=b["mask"], with_lm_logits=True)
        swapped = model.apply({"params": p}, b["inputs"][:, ::-1], mask_BT=b["mask"][:, ::-1])
        pooled = trunk.apply({"params": p["transformer"]}, b["inputs"].reshape(4, T),
                             mask_BT=b["mask"].reshape(4, T)).pooled_BD
        loss, (m, _) = loss_fn(p, b, jax.random.key(0), deterministic=True)
        den = objective.loss_denominators(b)
        parts = [loss_fn(p, {k: v[i:i + 1] for k, v in b.items()}, jax.random.key(0), denominators=den,
                         deterministic=True)[1][0] for i in range(2)]
        return out, swapped.logits_BC, pooled, loss, m, parts

    return params, batch, jax.device_get(run(params, batch))


def test_similarity_head_sums_both_orders_and_is_symmetric(similarity):
    params, _, (out, swapped, pooled, *_) = similarity
    np.testing.assert_array_equal(out.logits_BC, swapped)
    # By hand: the last real token's state of each order, added, through the bias-free `score` layer.
    kernel = np.asarray(params["score"]["kernel"])
    np.testing.assert_allclose(out.logits_BC, pooled.reshape(2, 2, -1).sum(1) @ kernel, rtol=1e-5, atol=1e-6)
    assert not np.allclose(out.logits_BC, pooled.reshape(2, 2, -1)[:, 0] @ kernel, atol=1e-3)  # not one order


def _np_ce(logits, targets):
    logits = np.asarray(logits, np.float64)
    top = logits.max(-1, keepdims=True)
    logp = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
    return -np.take_along_axis(logp, targets[..., None], -1)[..., 0]


def test_auxiliary_lm_loss_and_its_exact_accumulation(similarity):
    """loss = task + λ·LM (§3.2, λ = 0.5); the LM term is next-token cross-entropy over every real position of
    both orders, and micro-batches normalised by the global counts add up to the full batch's values."""
    _, batch, (out, _, _, loss, m, parts) = similarity
    assert out.lm_logits_RTV.shape == (4, T, V)
    tokens, mask = batch["inputs"].reshape(4, T), batch["mask"].reshape(4, T)
    nll = _np_ce(out.lm_logits_RTV[:, :-1], tokens[:, 1:])
    w = mask[:, :-1] & mask[:, 1:]
    assert float(m["lm_loss"]) == pytest.approx((nll * w).sum() / w.sum(), rel=1e-5)
    assert float(m["task_loss"]) == pytest.approx(_np_ce(out.logits_BC, batch["labels"]).mean(), rel=1e-5)
    assert float(loss) == pytest.approx(float(m["task_loss"]) + 0.5 * float(m["lm_loss"]), rel=1e-6)
    for key in ("loss", "task_loss", "lm_loss"):  # exact accumulation
        assert float(parts[0][key] + parts[1][key]) == pytest.approx(float(m[key]), rel=1e-5), key
    with pytest.raises(ValueError, match="aux_lm_weight=-1"):
        TaskObjective("classification", aux_lm_weight=-1)


def test_auxiliary_lm_loss_needs_a_causal_family():
    cfg = bert.Config(vocab_size=V, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                      max_position_embeddings=T)
    model = heads.build("bert", cfg, "classification", num_labels=2)
    with pytest.raises(ValueError, match="reads a causal LM head"):
        jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, T), jnp.int32), with_lm_logits=True))


def test_transplant_grows_the_token_table_with_fresh_rows():
    """The pretrained rows are copied and the task tokens' rows keep the fine-tuning model's initialisation."""
    def tree(vocab, seed):
        r = np.random.default_rng(seed)
        return {"transformer": {"embeddings": {
            "word_embeddings": {"embedding": r.normal(size=(vocab, 8)).astype(np.float32)},
            "position_embeddings": {"embedding": r.normal(size=(T, 8)).astype(np.float32)}}},
            "score": {"kernel": r.normal(size=(8, 2)).astype(np.float32)}}

    pretrained, fresh = tree(V, 1), tree(V + 3, 2)
    params, new = heads.transplant_trunk("gpt1", fresh, pretrained, vocab_sizes=(V, V + 3))
    table = np.asarray(params["transformer"]["embeddings"]["word_embeddings"]["embedding"])
    np.testing.assert_array_equal(table[:V], pretrained["transformer"]["embeddings"]["word_embeddings"]["embedding"])
    np.testing.assert_array_equal(table[V:], fresh["transformer"]["embeddings"]["word_embeddings"]["embedding"][V:])
    np.testing.assert_array_equal(params["transformer"]["embeddings"]["position_embeddings"]["embedding"],
                                  pretrained["transformer"]["embeddings"]["position_embeddings"]["embedding"])
    assert new == [f"transformer/embeddings/word_embeddings/embedding (rows {V}…{V + 2})"]
    np.testing.assert_array_equal(params["score"]["kernel"], fresh["score"]["kernel"])  # the head stays new
    with pytest.raises(ValueError, match="has shape"):
        heads.transplant_trunk("gpt1", fresh, pretrained)  # without the sizes a different table is refused
    with pytest.raises(ValueError, match="has shape"):  # only the vocabulary axis may grow
        heads.transplant_trunk("gpt1", tree(V + 3, 3), tree(V, 4) | {"transformer": {"embeddings": {
            "word_embeddings": {"embedding": np.zeros((V, 9))}}}}, vocab_sizes=(V, V + 3))
    # GPT-1's token table starts at N(0, 0.02²): the rows the task tokens get (the original code's init).
    assert gpt.init(CFG)(jax.random.key(0), (4000,)).std() == pytest.approx(0.02, rel=0.05)


# ------------------------------------------------------------------------------------------------ the CLI


@pytest.fixture(scope="module")
def gpt1_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("gpt1")
    assert cli.main(["pretrain", "--config", f"{ROOT / 'configs' / 'gpt.py'}:version=1,size=tiny",
                     "--workdir", str(workdir), "--config.data.max_documents=200",
                     "--config.data.max_eval_documents=20", "--config.data.seq_len=32",
                     "--config.data.vocab_size=600", "--config.train.batch_size=8", "--config.train.progress=False",
                     "--config.train.steps=2", "--config.train.eval_every=0", "--config.optim.warmup_steps=1"]) == 0
    return workdir


def _finetune(run, workdir, task, *extra):
    return cli.main(["finetune", "--config", f"{ROOT / 'configs' / 'finetune.py'}:model={run},task={task}",
                     "--workdir", str(workdir), "--config.train.progress=False", "--config.data.seq_len=32",
                     "--config.data.train_examples=32", "--config.train.batch_size=8", "--config.train.steps=4",
                     "--config.train.eval_every=4", "--config.train.eval_examples=16", "--config.train.log_every=2",
                     *extra])


def test_finetune_from_the_gpt1_run_on_a_text_task(gpt1_run, tmp_path):
    """start text extract; the vocabulary grows by the three task tokens; the auxiliary LM loss at λ = 0.5 (the
    recipe's GPT-1 default) is logged beside the task loss."""
    assert _finetune(gpt1_run, tmp_path, "wordnet-supersense") == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"validation", "test"} and 0 <= results["test"]["accuracy"] <= 1
    pretrained = json.loads((gpt1_run / "config.json").read_text())["model"]["vocab_size"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"]["vocab_size"] == pretrained + 3 and config["train"]["aux_lm_weight"] == 0.5
    saved = json.loads((tmp_path / "tokenizer.json").read_text())
    assert [t["content"] for t in saved["added_tokens"]][-3:] == list(TASK_TOKENS)
    rows = [r for r in read_metrics(tmp_path) if "task_loss" in r]
    assert rows[-1]["step"] == 4
    for r in rows:
        assert r["loss"] == pytest.approx(r["task_loss"] + 0.5 * r["lm_loss"], rel=1e-5)
        assert r["lm_loss"] > 0


def test_gpt1_style_finetune_on_the_bundled_pair_task(gpt1_run, tmp_path):
    """wordnet-wic is a similarity task (symmetric pairs): both orders through the model, summed."""
    assert _finetune(gpt1_run, tmp_path, "wordnet-wic") == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["test"]) == {"accuracy", "f1", "majority_baseline"}
    rows = [json.loads(line) for line in (tmp_path / "predictions" / "test.jsonl").open()]
    assert len(rows) == 1778 and {"idx", "label", "prediction"} <= set(rows[0])
    assert any("lm_loss" in r for r in read_metrics(tmp_path))
