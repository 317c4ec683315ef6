"""`llm-jax evaluate`: perplexity and zero- / few-shot prompting from the command line, for a masked LM, a causal LM
and an encoder-decoder (tiny, random weights: the numbers are the scorers', checked elsewhere against transformers)."""

import json
import pathlib

import flax.linen as nn
import jax
import numpy as np
import pytest

from llm_jax import cli, models, objectives
from llm_jax.data.corpus import load_documents
from llm_jax.data.tokenizer import special_ids
from llm_jax.data.tasks import TaskConfig, load_task
from llm_jax.eval import in_context, score
from llm_jax.interop.native import load_pretrained, save_model_dir

PRESETS = {"gpt": "gpt2-tiny", "bert": "bert-tiny", "t5": "t5-tiny"}
LIMIT = "12"


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """family → a model directory of ours (config, params, tokenizer): a tiny random-weight model with a tokenizer
    trained on 300 bundled documents (what the CLI reads is the same as from a pretraining run)."""
    docs = load_documents("bundled", "train", max_documents=300)
    out = {}
    for family, preset in PRESETS.items():
        fam = models.family_module(family)
        tok = fam.TOKENIZER.train(docs, 1000)
        special = special_ids(tok, fam.TOKENIZER.roles)
        config = models.get_preset(preset)[1].with_vocabulary(tok.get_vocab_size(), special)
        objective = objectives.make_objective(objectives.config_for(fam.DEFAULT_OBJECTIVE), special,
                                              config.vocab_size)
        args, kwargs = objective.init_inputs(objective.dummy_batch(1, 8))
        model = models.build(family, config)
        params = nn.meta.unbox(jax.jit(lambda k: model.init(k, *args, **kwargs))(jax.random.key(0))["params"])
        out[family] = save_model_dir(family, config, params, tmp_path_factory.mktemp("eval_models") / family,
                                     tokenizer=tok)
    return out


def _evaluate(capsys, *args) -> dict:
    capsys.readouterr()
    assert cli.main(["evaluate", *map(str, args), "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


def test_perplexity_from_the_cli_equals_the_scorer(runs, tmp_path, capsys):
    text = "In the beginning God created the heaven and the earth. " * 8
    (tmp_path / "t.txt").write_text(text)
    family, config, params, tok = load_pretrained(runs["gpt"])
    ids = tok.encode(text, add_special_tokens=False).ids
    out = _evaluate(capsys, "--model", runs["gpt"], "--task", "perplexity", "--data", tmp_path / "t.txt",
                    "--window", 32, "--stride", 16)
    assert out["tokens"] == len(ids) - 1 and out["window"] == 32 and out["stride"] == 16
    want = score.causal_perplexity(family, config, params, ids, window=32, stride=16)
    np.testing.assert_allclose(out["nll_per_token"], want.nll_per_token, rtol=1e-6)
    np.testing.assert_allclose(out["perplexity"], np.exp(out["nll_per_token"]), rtol=1e-9)
    eos = _evaluate(capsys, "--model", runs["gpt"], "--task", "perplexity", "--data", tmp_path / "t.txt",
                    "--window", 32, "--stride", 16, "--prepend-eos")
    assert eos["tokens"] == len(ids)  # the first word is scored too
    assert cli.main(["evaluate", "--model", str(runs["bert"]), "--task", "perplexity", "--data",
                     str(tmp_path / "t.txt")]) == 1  # a masked LM has no perplexity: a one-line error


@pytest.mark.parametrize("family", sorted(PRESETS))
def test_zero_and_few_shot_from_the_cli(runs, family, capsys):
    results = {}
    for shots in (0, 3):
        out = _evaluate(capsys, "--model", runs[family], "--task", "wordnet-wic", "--shots", shots, "--seed", 1,
                        "--limit", LIMIT)
        assert out["shots"] == shots and out["n"] == int(LIMIT) and out["main_metric"] == "accuracy"
        assert 0.0 <= out["accuracy"] <= 1.0 and out["majority_baseline"] is not None
        assert out["scorer"] == ("cloze" if family == "bert" else "loglikelihood")
        assert out["demonstrations_used_mean"] == shots  # 64-token BERT prompts too: see the overflow test below
        results[shots] = out
    if family == "gpt":  # the CLI's number is the library's
        fam, config, params, tok = load_pretrained(runs[family])
        task = load_task(TaskConfig("wordnet-wic"))
        again = in_context.evaluate_in_context(fam, config, params, tok, task, in_context.InContextConfig(
            shots=3, seed=1, limit=int(LIMIT)))
        assert again["accuracy"] == results[3]["accuracy"]


def test_demonstrations_that_do_not_fit_are_dropped_and_reported(runs, capsys):
    """BERT-tiny reads 512 positions: 64 WordNet definitions as demonstrations do not fit, so some are dropped."""
    out = _evaluate(capsys, "--model", runs["bert"], "--task", "wordnet-supersense", "--shots", 64, "--limit", 4)
    over = out["context_overflow"]
    assert over["examples_with_dropped_demonstrations"] == 4 and over["demonstrations_dropped"] > 0
    assert 0 < out["demonstrations_used_mean"] < 64
    assert out["demonstrations_used_mean"] * 4 + over["demonstrations_dropped"] == 64 * 4


def test_demonstrations_are_seeded_and_class_balanced():
    task = load_task(TaskConfig("wordnet-supersense"))
    a, b = in_context.demonstrations(task, 20, 0), in_context.demonstrations(task, 20, 1)
    assert [r["idx"] for r in a] == [r["idx"] for r in in_context.demonstrations(task, 20, 0)]
    assert [r["idx"] for r in a] != [r["idx"] for r in b]
    assert sorted(np.bincount([r["label"] for r in a], minlength=10).tolist()) == [2] * 10
    assert in_context.split_template("Q: {text_a}\nA: {answer}.") == ("Q: {text_a}\nA:", " ", ".")
    with pytest.raises(ValueError, match="exactly one"):
        in_context.split_template("{text_a}")
    with pytest.raises(ValueError, match="names {nope}"):
        in_context.fill("{nope} {answer}", {"text_a": "x"}, "y")
