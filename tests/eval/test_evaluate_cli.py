"""`llm-jax evaluate`: perplexity and zero- / few-shot prompting from the command line, for a masked LM, a causal LM
and an encoder-decoder (tiny, random weights: the numbers are the scorers', checked elsewhere against transformers)."""

import json

import jax
import numpy as np
import pytest

from llm_jax import cli
from llm_jax.data.tasks import TaskConfig, load_task
from llm_jax.eval import in_context, score
from llm_jax.interop.native import load_pretrained

LIMIT = "12"


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


@pytest.mark.parametrize("family", ["bert", "gpt", "t5"])
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


def test_electra_discriminator_as_a_zero_shot_learner(runs, capsys):
    """Each label word filled in at the mask; the prediction is the word whose tokens the discriminator finds least
    "replaced" (highest mean log P(original)) — recomputed here with the model directly."""
    out = _evaluate(capsys, "--model", runs["electra"], "--task", "wordnet-wic", "--scorer", "discriminator",
                    "--limit", LIMIT)
    assert out["scorer"] == "discriminator" and out["n"] == int(LIMIT)
    _, config, params, tok = load_pretrained(runs["electra"])
    task = load_task(TaskConfig("wordnet-wic"))
    records = task.splits["validation"][:int(LIMIT)]
    from llm_jax.data.tokenizer import special_ids
    from llm_jax.models import electra

    sp = special_ids(tok)
    rows, spans = [], []
    for r in records:
        for word in task.spec.verbalizers:
            before, after = task.spec.prompt.split("{mask}")
            head = tok.encode(before.format(**r), add_special_tokens=False).ids
            piece = tok.encode(" " + word, add_special_tokens=False).ids
            tail = tok.encode(after.format(**r), add_special_tokens=False).ids
            rows.append([sp.cls, *head, *piece, *tail, sp.sep])
            spans.append(slice(1 + len(head), 1 + len(head) + len(piece)))
    ids = np.zeros((len(rows), max(map(len, rows))), np.int32)
    mask = np.zeros(ids.shape, bool)
    for i, row in enumerate(rows):
        ids[i, :len(row)], mask[i, :len(row)] = row, True
    logits = np.asarray(jax.jit(electra.replaced_token_logits, static_argnums=0)(config, params, ids, mask))
    scores = np.asarray([np.mean(-np.logaddexp(0, logits[i, at])) for i, at in enumerate(spans)]).reshape(-1, 2)
    want = np.mean(scores.argmax(1) == np.asarray([r["label"] for r in records]))
    assert out["accuracy"] == pytest.approx(want)
    few = _evaluate(capsys, "--model", runs["electra"], "--task", "wordnet-wic", "--scorer", "discriminator",
                    "--shots", 2, "--limit", 4)
    assert few["shots"] == 2 and few["demonstrations_used_mean"] == 2
    assert cli.main(["evaluate", "--model", str(runs["bert"]), "--task", "wordnet-wic", "--scorer",
                     "discriminator", "--limit", "2"]) == 1  # BERT has no replaced-token detector
