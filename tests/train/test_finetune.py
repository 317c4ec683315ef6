"""Fine-tuning end to end on a bundled task: beats the majority class, results.json shape, the best params kept."""

import json
import pathlib

import jax
import numpy as np
import pytest

from llm_jax import cli
from llm_jax.train.finetune import BestKeeper, FinetuneTrain, oversample_indices

ROOT = pathlib.Path(__file__).resolve().parents[2]


def finetune(workdir, model, task, *overrides):
    return cli.main(["finetune", "--config", f"{ROOT / 'configs' / 'finetune.py'}:model={model},task={task}",
                     "--workdir", str(workdir), "--config.train.progress=False", *overrides])


RUN = ("--config.data.seq_len=32", "--config.train.steps=160", "--config.train.eval_every=40",
       "--config.train.eval_examples=500", "--config.optim.learning_rate=1e-3", "--config.train.log_every=40")


@pytest.fixture(scope="module")
def supersense_run(tmp_path_factory, small_tokenizer):
    workdir = tmp_path_factory.mktemp("ft")
    assert finetune(workdir, "bert-tiny", "wordnet-supersense", f"--config.data.tokenizer={small_tokenizer}", *RUN) == 0
    return workdir


def test_beats_the_majority_class_on_test(supersense_run):
    results = json.loads((supersense_run / "results.json").read_text())
    assert results["test"]["majority_baseline"] == pytest.approx(0.1)  # 10 balanced classes
    assert results["test"]["accuracy"] > results["test"]["majority_baseline"] + 0.1
    assert results["validation"]["accuracy"] > 0.2


def test_results_and_prediction_files(supersense_run):
    results = json.loads((supersense_run / "results.json").read_text())
    assert set(results) == {"validation", "test"}
    for split, n in (("validation", 2000), ("test", 2000)):
        assert set(results[split]) == {"accuracy", "macro_f1", "majority_baseline"}
        assert all(isinstance(v, float) and 0 <= v <= 1 for v in results[split].values())
        rows = [json.loads(line) for line in (supersense_run / "predictions" / f"{split}.jsonl").open()]
        assert len(rows) == n and {"idx", "label", "prediction", "prediction_name", "probabilities"} <= set(rows[0])
        acc = np.mean([r["label"] == r["prediction"] for r in rows])
        assert acc == pytest.approx(results[split]["accuracy"])
    metrics = [json.loads(line) for line in (supersense_run / "metrics.jsonl").open()]
    assert [m["step"] for m in metrics if "eval_accuracy" in m] == [40, 80, 120, 160]


def test_the_best_params_are_kept_and_scored(supersense_run):
    summary = json.loads((supersense_run / "summary.json").read_text())
    history = summary["eval_history"]
    best = max(history, key=lambda h: h["accuracy"])
    assert summary["best_step"] == best["step"] and summary["best_validation"] == best["accuracy"]
    assert (supersense_run / "best" / "params").is_dir()


def test_rerun_only_rescores(supersense_run, small_tokenizer):
    before = json.loads((supersense_run / "results.json").read_text())
    assert finetune(supersense_run, "bert-tiny", "wordnet-supersense", f"--config.data.tokenizer={small_tokenizer}",
                    *RUN) == 0
    assert json.loads((supersense_run / "results.json").read_text()) == before
    summary = json.loads((supersense_run / "summary.json").read_text())
    assert summary["start_step"] == summary["end_step"] == 160


def test_a_workdir_of_another_run_is_refused(supersense_run, capsys):
    assert finetune(supersense_run, "bert-tiny", "wordnet-wic", "--config.data.seq_len=32") == 1
    assert "holds a run with a different" in capsys.readouterr().err


class _State:
    def __init__(self, value):
        self.params = {"w": np.full(3, value, np.float32)}


def test_best_keeper_keeps_the_best_and_stops_after_patience(tmp_path):
    keeper = BestKeeper(tmp_path / "best", "accuracy", patience=2)
    seq = [(10, 0.5), (20, 0.7), (30, 0.6), (40, 0.69)]
    stops = [keeper.update(step, {"eval_accuracy": acc}, _State(step)) for step, acc in seq]
    assert stops == [False, False, False, True]  # two evaluations without improvement
    assert keeper.meta["step"] == 20 and keeper.meta["value"] == 0.7
    np.testing.assert_array_equal(keeper.load(None)["w"], np.full(3, 20.0))
    # A resumed run reads the record and the params from disk.
    again = BestKeeper(tmp_path / "best", "accuracy", patience=2)
    assert again.exhausted and again.meta["step"] == 20
    abstract = {"w": jax.ShapeDtypeStruct((3,), np.float32)}
    np.testing.assert_array_equal(np.asarray(again.load(abstract)["w"]), np.full(3, 20.0))
    lower = BestKeeper(tmp_path / "mse", "mse", patience=0)  # lower is better; patience 0 never stops
    assert not any(lower.update(s, {"eval_mse": v}, _State(s)) for s, v in ((1, 3.0), (2, 1.0), (3, 2.0)))
    assert lower.meta["step"] == 2


def test_oversampling_balances_classes():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 1)
    idx = oversample_indices(labels, seed=0)
    assert np.bincount(labels[idx]).tolist() == [10, 10, 10]
    assert set(idx[labels[idx] == 1].tolist()) == {10, 11, 12}
    np.testing.assert_array_equal(idx, oversample_indices(labels, seed=0))


def test_reloaded_run_reproduces_its_test_results(supersense_run):
    # `load_finetuned` (what compression benchmarks score transformed models with) encodes and scores the test
    # split exactly as the run did: its best params give the run's results.json.
    from llm_jax.eval.finetuned import load_finetuned

    run = load_finetuned(supersense_run)
    metrics, rows = run.score(run.params, "test")
    results = json.loads((supersense_run / "results.json").read_text())["test"]
    assert metrics["accuracy"] == results["accuracy"] and len(rows) == len(run.task.splits["test"])
    with pytest.raises(FileNotFoundError, match="checkpoints/config.json is missing: point at the directory"):
        load_finetuned(supersense_run / "checkpoints")


def test_final_eval_examples_must_not_be_negative():
    assert FinetuneTrain(final_eval_examples=100).validate().final_eval_examples == 100
    with pytest.raises(ValueError, match="final_eval_examples"):
        FinetuneTrain(final_eval_examples=-1).validate()
