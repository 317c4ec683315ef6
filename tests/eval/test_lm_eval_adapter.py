"""The lm-eval adapter: a local multiple-choice task through `lm_eval.simple_evaluate` (offline) gives the accuracy
`llm-jax evaluate` gives on the same task and prompts; the rolling and generation requests equal our scorers."""

import json

import numpy as np
import pytest

from llm_jax import cli
from llm_jax.data.tasks import TaskConfig, load_task
from llm_jax.eval import score
from llm_jax.generate import GenerationConfig, decoder_for, generate
from llm_jax.interop.native import load_pretrained

WORDS = ("act", "animal", "device", "body", "idea", "message", "food", "place", "person", "plant")


def _write_mc(tmp_path) -> tuple:
    """A 4-choice question per WordNet definition (the gold kind and three others, the gold at varying places)."""
    task = load_task(TaskConfig("wordnet-supersense"))
    rng = np.random.default_rng(0)
    files = {}
    for split, n in (("train", 8), ("validation", 24)):
        rows = []
        for r in task.splits[split][:n]:
            others = [w for i, w in enumerate(WORDS) if i != r["label"]]
            choices = list(rng.choice(others, 3, replace=False))
            at = int(rng.integers(0, 4))
            choices.insert(at, WORDS[r["label"]])
            rows.append({"context": f"Definition: {r['text_a']}.", "choices": choices, "label": at})
        files[split] = tmp_path / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps(row) + "\n" for row in rows))
    yaml = tmp_path / "tasks" / "tiny_mc.yaml"
    yaml.parent.mkdir()
    # Absolute data paths: lm-eval resolves data_files against the working directory, not the YAML's.
    yaml.write_text(f"""task: tiny_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {files['validation']}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - {{metric: acc, aggregation: mean, higher_is_better: true}}
metadata: {{version: 1.0}}
""")
    return files, yaml.parent


@pytest.fixture(scope="module")
def lm_eval(require):
    return require("lm_eval")


def test_simple_evaluate_equals_llm_jax_evaluate(lm_eval, runs, tmp_path, capsys):
    from lm_eval.tasks import TaskManager

    from llm_jax.eval.lm_eval_adapter import LlmJaxLM

    files, task_dir = _write_mc(tmp_path)
    lm = LlmJaxLM(str(runs["gpt"]), batch_size=8)
    out = lm_eval.simple_evaluate(model=lm, tasks=["tiny_mc"], task_manager=TaskManager(include_path=str(task_dir),
                                  include_defaults=False), bootstrap_iters=0, log_samples=False,
                                  torch_random_seed=None)
    theirs = out["results"]["tiny_mc"]["acc,none"]
    capsys.readouterr()
    assert cli.main(["evaluate", "--model", str(runs["gpt"]), "--task", "local", "--task-option",
                     f"train_file={files['train']}", "--task-option", f"validation_file={files['validation']}",
                     "--task-option", "kind=multiple_choice", "--task-option", "text_fields=context",
                     "--shots", "0", "--json"]) == 0
    ours = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ours["n"] == 24 and ours["template"] == "{context}\nAnswer: {answer}"
    assert ours["accuracy"] == pytest.approx(theirs, abs=1e-12)
    # Random weights still prefer some choices over others: the equality is not that of two constants.
    assert 0 < ours["accuracy"] < 1


def test_rolling_and_generation_requests(lm_eval, runs):
    from lm_eval.api.instance import Instance

    from llm_jax.eval.lm_eval_adapter import LlmJaxLM

    family, config, params, tok = load_pretrained(runs["gpt"])
    lm = LlmJaxLM((family, config, params, tok))
    text = "In the beginning God created the heaven and the earth."
    rolling = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)])[0]
    eot = tok.token_to_id("<|endoftext|>")
    ids = [eot, *tok.encode(text, add_special_tokens=False).ids]
    want = score.causal_loglikelihood(family, config, params, [(ids[:1], ids[1:])])[0].total
    np.testing.assert_allclose(rolling, want, rtol=1e-5)
    prompt = "And God said"
    generated = lm.generate_until([Instance("generate_until", {}, (prompt, {"until": ["zzz"], "max_gen_toks": 5}),
                                            0)])[0]
    seq = generate(decoder_for(family, config), params, [tok.encode(prompt).ids],
                   GenerationConfig(max_new_tokens=5)).sequences()[0]
    assert generated == tok.decode(seq)
    cut = lm.generate_until([Instance("generate_until", {}, (prompt, {"until": [generated[2:4]], "max_gen_toks": 5}),
                                      0)])[0]
    assert cut == generated[:generated.index(generated[2:4])]
    with pytest.raises(ValueError, match="masked LM"):
        LlmJaxLM(str(runs["bert"]))
