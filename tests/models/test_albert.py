"""ALBERT: parameter counts equal Hugging Face's, HF parity both ways, the family contract, n-gram masking, SOP
pairs, layer-wise LR decay on the shared stack, and a CLI pretraining run exported to transformers."""

import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp
from flax.linen import meta
import numpy as np
import pytest
from flax import traverse_util

from llm_jax import cli, models, objectives
from llm_jax.data.tokenizer import SpecialIds
from llm_jax.interop import load_hf_with_report, save_hf, state_dict
from llm_jax.models import albert
from llm_jax.objectives.masking import maskable, ngram_mask_tokens
from llm_jax.objectives.mlm_sop import is_word_start
from llm_jax.objectives.nsp import IN_ORDER, SWAPPED, make_nsp_examples
from llm_jax.train.optim import layer_depth_factors
from llm_jax.train.step import abstract_params, count_params

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL_TOL = dict(rtol=1e-4, atol=1e-4)
VOCAB, EMB, WIDTH, LAYERS, HEADS, FFN, T = 101, 16, 64, 3, 4, 128, 12
LENGTHS = (12, 8, 5)  # one full row, two padded ones
SEGMENT_STARTS = (6, 4, 2)
SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)


def _count(cfg) -> int:
    objective = objectives.shape_only_objective(albert.DEFAULT_OBJECTIVE, cfg.vocab_size)
    return count_params(abstract_params(models.build("albert", cfg), objective, objective.dummy_batch(1, 8)))


# ---------------------------------------------------------------------------------------- counts, contract


@pytest.mark.parametrize("preset", sorted(albert.PRESETS))
def test_parameter_count_equals_hugging_face(preset, require):
    torch = require("torch")
    transformers = require("transformers")
    cfg = albert.PRESETS[preset]
    hf_cfg = albert.config_to_hf(cfg)
    config = transformers.AutoConfig.for_model(hf_cfg.pop("model_type"), **hf_cfg)
    with torch.device("meta"):  # xxlarge's module tree without allocating its weights
        hf = transformers.AlbertForPreTraining(config)
    assert _count(cfg) == sum(p.numel() for p in hf.parameters())


def test_published_sizes():
    # reference/figures.md §1.2: AlbertForPreTraining, v1 = v2.
    counts = {p: _count(albert.PRESETS[p]) for p in ("albert-base", "albert-large", "albert-xlarge", "albert-xxlarge")}
    assert counts == {"albert-base": 11_813_810, "albert-large": 17_847_474, "albert-xlarge": 59_021_490,
                      "albert-xxlarge": 223_158_450}


def test_family_contract_and_hf_config_round_trip():
    assert models.check_family(albert) == []
    assert models.family_module("albert") is albert
    cfg = albert.PRESETS["albert-base"]
    assert albert.config_from_hf(albert.config_to_hf(cfg)) == cfg
    for bad in ({"num_hidden_groups": 2}, {"inner_group_num": 2}):
        with pytest.raises(ValueError, match="only one layer shared across depth") as e:
            albert.config_from_hf({**albert.config_to_hf(cfg), **bad})
        assert "\n" not in str(e.value)
    tower, = albert.towers(cfg, 128, predicted_positions=20, heads=("mlm", "sop"))
    assert (tower.num_layers, tower.e, tower.d_model, tower.pooler_classes) == (12, 128, 768, 2)


def test_flops_tower_counts_the_shared_layer_l_times():
    from llm_jax.flops import non_embedding_params

    cfg = dataclasses.replace(albert.PRESETS["albert-tiny"], vocab_size=50)
    objective = objectives.shape_only_objective("mlm_sop", cfg.vocab_size)
    flat = traverse_util.flatten_dict(meta.unbox(abstract_params(models.build("albert", cfg), objective,
                                                              objective.dummy_batch(1, 8))), sep="/")
    size = {k: int(np.prod(v.shape)) for k, v in flat.items()}
    tables = sum(v for k, v in size.items() if k.endswith("/embedding"))
    layer = sum(v for k, v in size.items() if "/stack/" in k)
    tower, = albert.towers(cfg, 16, predicted_positions=4, heads=("mlm", "sop"))
    # Applied parameters: the stored ones minus the tables, plus the L − 1 further applications of the one layer.
    assert non_embedding_params(tower) == sum(size.values()) - tables + (cfg.num_layers - 1) * layer


# ------------------------------------------------------------------------------------------- HF parity


def _inputs(pad_id):
    rng = np.random.default_rng(0)
    mask = np.arange(T)[None, :] < np.array(LENGTHS)[:, None]
    tokens = np.where(mask, rng.integers(5, VOCAB, (len(LENGTHS), T)), pad_id)
    segments = (np.arange(T)[None, :] >= np.array(SEGMENT_STARTS)[:, None]) & mask
    return tokens.astype(np.int64), segments.astype(np.int64), mask


def _ours(config, params, tokens, segments, mask):
    model = models.build("albert", config)
    out = jax.jit(lambda p, x, s, m: model.apply({"params": p}, x, segment_ids_BT=s, mask_BT=m))(
        params, jnp.asarray(tokens, jnp.int32), jnp.asarray(segments, jnp.int32), jnp.asarray(mask))
    return jax.tree.map(np.asarray, out)


def _theirs(torch, hf_model, tokens, segments, mask):
    with torch.no_grad():
        out = hf_model(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask.astype(np.int64)),
                       token_type_ids=torch.tensor(segments), output_hidden_states=True)
    return out.hidden_states[-1].numpy(), out.prediction_logits.numpy(), out.sop_logits.numpy()


def _check(ours, theirs):
    hidden, mlm, sop = theirs
    np.testing.assert_allclose(ours.hidden_BTD, hidden, **MODEL_TOL)
    np.testing.assert_allclose(ours.mlm_logits_BTV, mlm, **MODEL_TOL)
    np.testing.assert_allclose(ours.sop_logits_B2, sop, **MODEL_TOL)


def test_from_transformers_matches(require, tmp_path):
    torch = require("torch")
    transformers = require("transformers")
    # E ≠ D (the projection), 3 applications of one layer, exact GELU (v1) so a head that ignores hidden_act shows.
    config = transformers.AlbertConfig(vocab_size=VOCAB, embedding_size=EMB, hidden_size=WIDTH, num_hidden_layers=LAYERS,
                                       num_attention_heads=HEADS, intermediate_size=FFN, max_position_embeddings=T + 4,
                                       hidden_act="gelu", attn_implementation="eager")
    hf_model = transformers.AlbertForPreTraining(config)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # every weight random, LayerNorm scales near 1: no constant hides a swapped tensor
        for name, p in hf_model.named_parameters():
            noise = 0.1 * torch.randn(p.shape, generator=g)
            p.copy_(1 + noise if name.endswith(("LayerNorm.weight", "layer_norm.weight")) else noise)
    hf_model.eval().save_pretrained(tmp_path)
    loaded = load_hf_with_report(tmp_path)
    assert loaded.family == "albert" and loaded.config.hidden_act == "gelu" and loaded.config.embedding_size == EMB
    assert loaded.report.initialized == () and loaded.report.unexpected == ()
    tokens, segments, mask = _inputs(loaded.config.pad_token_id)
    _check(_ours(loaded.config, loaded.params, tokens, segments, mask), _theirs(torch, hf_model, tokens, segments, mask))


def test_ours_to_transformers_loads_cleanly_and_matches(require, tmp_path):
    torch = require("torch")
    transformers = require("transformers")
    config = models.make_config("albert", vocab_size=VOCAB, embedding_size=EMB, hidden_size=WIDTH, num_layers=LAYERS,
                                num_heads=HEADS, intermediate_size=FFN, max_position_embeddings=T + 4)
    rng = np.random.default_rng(4)
    flat = {path: (1 if path.endswith("norm/scale") else 0) + 0.1 * rng.standard_normal(shape).astype(np.float32)
            for path, shape in state_dict.param_shapes("albert", config).items()}
    params = traverse_util.unflatten_dict(flat, sep="/")
    save_hf("albert", config, params, tmp_path)
    hf_model, info = transformers.AlbertForPreTraining.from_pretrained(tmp_path, output_loading_info=True,
                                                                       attn_implementation="eager")
    assert {k: v for k, v in info.items() if v} == {}, info
    hf_model.eval()
    assert hf_model.get_output_embeddings().weight.data_ptr() == hf_model.get_input_embeddings().weight.data_ptr()
    tokens, segments, mask = _inputs(config.pad_token_id)
    _check(_ours(config, params, tokens, segments, mask), _theirs(torch, hf_model, tokens, segments, mask))


# ------------------------------------------------------------------------------------- layer-wise LR decay


def test_layer_decay_on_the_shared_stack():
    cfg = dataclasses.replace(albert.PRESETS["albert-tiny"], vocab_size=50)
    objective = objectives.shape_only_objective("mlm_sop", cfg.vocab_size)
    boxed = abstract_params(models.build("albert", cfg), objective, objective.dummy_batch(1, 8))
    factors = traverse_util.flatten_dict(layer_depth_factors(boxed, 0.5), sep="/")
    block = {k: v for k, v in factors.items() if "/stack/" in k}
    # One set of weights for every depth: one scalar factor (the top layer's), never an array over heads or L.
    assert len(block) == 16 and all(np.shape(v) == () and v == 0.5 for v in block.values())
    # Embeddings (the E → D projection included) one depth below the single stack; heads and pooler on top.
    emb = {k: v for k, v in factors.items() if k.startswith("albert/embeddings/")}
    assert "albert/embeddings/projection/kernel" in emb and all(v == 0.25 for v in emb.values())
    assert all(factors[k] == 1.0 for k in factors if k.startswith(("mlm_head/", "sop_head/", "albert/pooler/")))


# -------------------------------------------------------------------------------------------- the objective


def test_word_starts_follow_albert_is_start_piece():
    assert [is_word_start(p) for p in ("\u2581the", "\u2581", "ing", "<pad>", "[CLS]", ",", "s")] == \
        [True, True, False, True, False, True, False]


def test_ngram_spans_are_whole_words_with_albert_length_distribution():
    rng = np.random.default_rng(0)
    spans, rates = [], []
    for row in range(300):
        n_words = 170
        pieces = rng.choice([1, 2, 3], size=n_words, p=[0.6, 0.3, 0.1])
        word_start = np.concatenate([[True] + [False] * (k - 1) for k in pieces])[:254]
        tokens = np.r_[SPECIAL.cls, rng.integers(10, 500, word_start.size), SPECIAL.sep].astype(np.int32)
        word_start = np.r_[True, word_start, True]
        ok = maskable(tokens, SPECIAL)
        inputs, positions, ids, weights, row_spans = ngram_mask_tokens(
            tokens, ok, word_start, np.random.default_rng((7, row)), mask_prob=0.15, max_predictions=256,
            mask_id=SPECIAL.mask, vocab_size=500)
        chosen = positions[weights > 0]
        assert ok[chosen].all() and np.array_equal(ids[weights > 0], tokens[chosen])
        rates.append(chosen.size / ok.sum())
        # Whole words: a word is masked in all its pieces or in none.
        word_id = np.cumsum(word_start)
        hit = np.zeros(tokens.size, bool)
        hit[chosen] = True
        for w in np.unique(word_id[ok]):
            in_word = (word_id == w) & ok
            assert hit[in_word].all() or not hit[in_word].any()
        spans.extend(row_spans)
    freq = np.bincount(spans, minlength=4)[1:] / len(spans)
    np.testing.assert_allclose(freq, [6 / 11, 3 / 11, 2 / 11], atol=0.02)
    assert abs(np.mean(rates) - 0.15) < 0.003


def test_mask_replacement_is_drawn_per_span():
    rng = np.random.default_rng(1)
    mixed = 0
    fractions = []
    for row in range(200):
        word_start = np.ones(200, bool)
        word_start[rng.random(200) < 0.6] = False
        word_start[0] = True
        tokens = rng.integers(10, 500, 200).astype(np.int32)
        inputs, positions, _, weights, spans = ngram_mask_tokens(
            tokens, np.ones(200, bool), word_start, np.random.default_rng((9, row)), mask_prob=0.15,
            max_predictions=200, mask_id=SPECIAL.mask, vocab_size=500)
        # A span's replacement is drawn once: every piece of a chosen word is [MASK], or none is (random ids here
        # are ≥ 10, never the mask id).
        word_id = np.cumsum(word_start)
        chosen = positions[weights > 0]
        for w in np.unique(word_id[chosen]):
            masked = inputs[word_id == w] == SPECIAL.mask
            mixed += masked.any() and not masked.all()
        fractions.append(np.mean(inputs[chosen] == SPECIAL.mask))
    assert mixed == 0
    assert abs(np.mean(fractions) - 0.8) < 0.03


def _sop_docs():
    """Documents whose token ids count up through the document, so order and adjacency are readable."""
    rng = np.random.default_rng(3)
    docs, next_id = [], 10
    for _ in range(200):
        doc = []
        for _ in range(int(rng.integers(2, 12))):
            n = int(rng.integers(1, 15))
            doc.append(np.arange(next_id, next_id + n, dtype=np.int32))
            next_id += n
        docs.append(doc)
        next_id += 1000  # a gap between documents
    return docs


def test_sop_pairs_are_consecutive_and_swapped_half_of_the_time():
    docs = _sop_docs()
    out = make_nsp_examples(docs, 24, SPECIAL, np.random.default_rng(0), short_seq_prob=0.0, negatives="swapped")
    labels = out["nsp_label"]
    assert len(labels) > 300 and set(np.unique(labels)) <= {IN_ORDER, SWAPPED}
    assert abs(np.mean(labels == SWAPPED) - 0.5) < 0.08
    for row, label in zip(out["tokens"], labels):
        seps = np.flatnonzero(row == SPECIAL.sep)
        assert row[0] == SPECIAL.cls and len(seps) == 2
        a, b = row[1:seps[0]], row[seps[0] + 1:seps[1]]
        assert len(a) and len(b)
        # Each side is one contiguous run of its document (truncation only trims the ends) ...
        assert (np.diff(a) == 1).all() and (np.diff(b) == 1).all()
        # ... from the same document, B right after A in the text, or before it when swapped.
        first, second = (a, b) if label == IN_ORDER else (b, a)
        assert 0 < second[0] - first[-1] < 1000
    # The same seed gives the same pairs (host-side numpy, deterministic).
    again = make_nsp_examples(docs, 24, SPECIAL, np.random.default_rng(0), short_seq_prob=0.0, negatives="swapped")
    np.testing.assert_array_equal(again["tokens"], out["tokens"])


def test_mlm_sop_objective_builds_pairs_and_masks(require):
    objective = objectives.make_objective(objectives.config_for("mlm_sop", duplicate_factor=2), SPECIAL, 300_000)
    with pytest.raises(ValueError, match="needs the tokenizer's pieces"):
        objective.build_examples(_sop_docs(), 40, seed=0)
    objective.word_start_V = np.ones(300_000, bool)
    examples = objective.build_examples(_sop_docs(), 40, seed=0)
    assert {"sop_label", "inputs", "mlm_positions", "segment_ids"} <= set(examples)
    n = len(examples["sop_label"])
    batch = objective.prepare({**{k: v[:8] for k, v in examples.items()}, "epoch": np.zeros(8, int),
                               "example_index": np.arange(8)}, seed=0)
    assert set(objective.dummy_batch(8, 40)) == set(batch) and n > 100
    rate = examples["mlm_weights"].sum() / maskable(examples["tokens"], SPECIAL).sum()
    assert abs(rate - 0.15) < 0.02


# ------------------------------------------------------------------------------------ CLI pretrain + export


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("albert") / "run"
    rc = cli.main(["pretrain", "--config", str(ROOT / "configs" / "albert.py:size=tiny"), "--workdir", str(run),
                   "--config.train.steps=30", "--config.train.batch_size=8", "--config.data.seq_len=64",
                   "--config.data.max_documents=60", "--config.data.max_eval_documents=10",
                   "--config.data.vocab_size=1000", "--config.train.progress=False", "--config.train.eval_every=0",
                   "--config.train.log_every=1", "--config.train.checkpoint_every=30", "--config.optim.warmup_steps=3",
                   "--config.optim.learning_rate=3e-3"])
    assert rc == 0
    return run


def test_cli_pretraining_loss_goes_down_and_logs_both_terms(cli_run):
    rows = [json.loads(line) for line in (cli_run / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r]
    assert all({"mlm_loss", "sop_loss", "sop_accuracy", "mlm_accuracy"} <= set(r) for r in rows)
    first, last = np.mean([r["loss"] for r in rows[:5]]), np.mean([r["loss"] for r in rows[-5:]])
    assert last < first - 0.5, (first, last)
    for r in rows:
        np.testing.assert_allclose(r["loss"], r["mlm_loss"] + r["sop_loss"], rtol=1e-5)


def test_convert_to_hf_loads_in_transformers(cli_run, tmp_path, require):
    torch = require("torch")
    transformers = require("transformers")
    assert cli.main(["convert", "--to-hf", str(cli_run), "--out", str(tmp_path / "hf")]) == 0
    model, info = transformers.AlbertForPreTraining.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert {k: v for k, v in info.items() if v} == {}, info
    tok = transformers.AlbertTokenizerFast.from_pretrained(tmp_path / "hf")
    enc = tok("The first sentence.", "The second one.", return_tensors="pt")
    assert enc["input_ids"][0, 0] == tok.cls_token_id == 2 and tok.mask_token_id == 4 and tok.pad_token_id == 0
    with torch.no_grad():
        out = model.eval()(**enc)
    assert out.prediction_logits.shape[-1] == model.config.vocab_size and out.sop_logits.shape == (1, 2)
    assert torch.isfinite(out.prediction_logits).all()


def test_finetune_from_the_albert_run(cli_run, tmp_path):
    """`llm-jax finetune` starts from the pretraining run (its SentencePiece tokenizer and shared stack) and
    finishes a tiny token-classification task, writing its results."""
    assert cli.main(["finetune", "--config", f"{ROOT / 'configs' / 'finetune.py'}:model={cli_run},task=wordnet-supersense",
                     "--workdir", str(tmp_path), "--config.train.progress=False", "--config.data.seq_len=32",
                     "--config.data.train_examples=64", "--config.train.steps=5", "--config.train.eval_every=5",
                     "--config.train.eval_examples=32"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results
