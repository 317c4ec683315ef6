"""Metrics against their references: scikit-learn, scipy, and the official SQuAD script's rules by hand."""

import numpy as np
import pytest

from llm_jax.eval import metrics


@pytest.fixture(scope="module")
def sklearn_metrics(require):
    return require("sklearn.metrics")


@pytest.fixture(scope="module")
def scipy_stats(require):
    return require("scipy.stats")


def _classification_cases():
    rng = np.random.default_rng(0)
    cases = []
    for c, n in ((2, 50), (3, 80), (10, 200)):
        labels = rng.integers(0, c, n)
        noisy = np.where(rng.random(n) < 0.6, labels, rng.integers(0, c, n))  # correlated, not perfect
        cases.append((labels, noisy))
    labels = rng.integers(0, 2, 40)
    cases += [(labels, labels), (labels, 1 - labels), (labels, np.zeros_like(labels)),  # perfect, inverse, constant
              (np.array([0, 1, 2, 2]), np.array([0, 1, 1, 3]))]  # a predicted class that never occurs
    return cases


@pytest.mark.parametrize("case", range(7))
def test_classification_metrics_match_sklearn(case, sklearn_metrics):
    labels, preds = _classification_cases()[case]
    assert metrics.accuracy(labels, preds) == pytest.approx(sklearn_metrics.accuracy_score(labels, preds))
    assert metrics.f1_macro(labels, preds) == pytest.approx(
        sklearn_metrics.f1_score(labels, preds, average="macro", zero_division=0))
    assert metrics.matthews_corrcoef(labels, preds) == pytest.approx(sklearn_metrics.matthews_corrcoef(labels, preds))
    if set(np.unique(labels)) <= {0, 1} and set(np.unique(preds)) <= {0, 1}:
        assert metrics.f1_binary(labels, preds) == pytest.approx(
            sklearn_metrics.f1_score(labels, preds, zero_division=0))


def test_macro_f1_over_a_fixed_label_set(sklearn_metrics):
    labels, preds = np.array([0, 0, 1, 1]), np.array([0, 0, 1, 0])
    want = sklearn_metrics.f1_score(labels, preds, labels=[0, 1, 2], average="macro", zero_division=0)
    assert metrics.f1_macro(labels, preds, num_classes=3) == pytest.approx(want)


def test_correlations_match_scipy(scipy_stats):
    rng = np.random.default_rng(1)
    x = rng.normal(size=300)
    y = 0.5 * x + rng.normal(size=300)
    assert metrics.pearson(x, y) == pytest.approx(scipy_stats.pearsonr(x, y)[0], abs=1e-12)
    assert metrics.spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y)[0], abs=1e-12)
    # Ties (STS-B gold scores come in steps of 0.2): average ranks, as scipy.
    xt, yt = np.round(x * 2) / 2, np.round(y)
    np.testing.assert_allclose(metrics.rankdata(xt), scipy_stats.rankdata(xt))
    assert metrics.spearman(xt, yt) == pytest.approx(scipy_stats.spearmanr(xt, yt)[0], abs=1e-12)
    assert metrics.pearson(x, np.ones_like(x)) == 0.0  # constant side: defined as 0 (scipy warns, gives NaN)


def test_squad_normalisation_and_scores_by_the_official_rules():
    # normalize_answer: lower → drop punctuation → drop a/an/the as words → collapse white space.
    assert metrics.normalize_answer("  The  Eiffel-Tower, in Paris!") == "eiffeltower in paris"
    assert metrics.normalize_answer("An apple a day") == "apple day"
    assert metrics.normalize_answer("theatre") == "theatre"  # "the" only as a whole word
    preds = ["the Eiffel Tower", "Paris, France", "", "blue whale", "in 1889"]
    golds = [["Eiffel Tower"], ["France", "Paris"], [], ["whale"], ["1889", "March 1889"]]
    # By hand: EM 1,0,1,0,0; F1: 1; max(F1("paris france","france")=2/3, 2/3)=2/3; unanswerable and empty: 1;
    # "blue whale" vs "whale": P=1/2 R=1 → 2/3; "in 1889" vs "1889": 2/3, vs "march 1889": P=1/2 R=1/2 → 1/2.
    scores = metrics.squad_scores(preds, golds)
    assert scores["exact_match"] == pytest.approx(100 * 2 / 5)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1 + 2 / 3 + 2 / 3) / 5)
    # A non-empty answer to an unanswerable question scores 0, and "" to an answerable one 0 (SQuAD 2.0).
    assert metrics.squad_scores(["x"], [[]]) == {"exact_match": 0.0, "f1": 0.0}
    assert metrics.squad_scores([""], [["x"]]) == {"exact_match": 0.0, "f1": 0.0}
    with pytest.raises(ValueError, match="one per example"):
        metrics.squad_scores(["a"], [])


def test_unknown_metric_is_named():
    with pytest.raises(ValueError, match="Unknown metric.*known"):
        metrics.compute(["acc"], np.zeros(2), np.zeros(2))


def test_labels_that_are_not_numbers_are_refused():
    with pytest.raises(ValueError, match="not numbers.*hidden label"):
        metrics.compute(["accuracy"], np.array([1, None]), np.array([1, 0]))
    with pytest.raises(ValueError, match="not numbers.*NaN"):
        metrics.compute(["pearson"], np.array([1.0, np.nan, 2.0]), np.array([1.0, 0.0, 3.0]))
    with pytest.raises(ValueError, match="one prediction per label"):
        metrics.compute(["mse"], np.zeros(3), np.zeros(2))


@pytest.mark.parametrize("scores", [[-1.0, 0.5, 2.0, 4.0], [-1.0, -1.0, 3.0, 0.0]])
def test_a_regression_score_of_minus_one_is_scored(tmp_path, scores):
    """-1 is GLUE's hidden-label marker only in GLUE's test splits; in a validation split it is a score."""
    import json

    from llm_jax.data.features import Encoded
    from llm_jax.data.tasks import TaskConfig, load_task
    from llm_jax.eval import predict

    path = tmp_path / "scores.jsonl"
    path.write_text("".join(json.dumps({"text": f"t{i}", "score": s}) + "\n" for i, s in enumerate(scores)))
    task = load_task(TaskConfig(name="local", kind="regression", label_field="score", train_file=str(path),
                                validation_file=str(path)))
    records = task.splits["validation"]
    preds = np.array([-0.5, 0.0, 2.5, 3.0])
    got, rows = predict.score(task.spec, "validation", records, Encoded({"inputs": np.zeros((4, 1), np.int32)}),
                              {"logits": preds[:, None]})
    gold = np.asarray(scores)
    assert got == pytest.approx({"pearson": metrics.pearson(gold, preds), "spearman": metrics.spearman(gold, preds),
                                 "mse": metrics.mean_squared_error(gold, preds)})
    assert [r["label"] for r in rows] == scores
    assert predict.majority_baseline(task.spec, task.splits["train"], "validation", records) == 0.0


def test_a_metric_a_span_task_cannot_compute_is_named():
    from llm_jax.data.tasks import TaskSpec
    from llm_jax.eval import predict

    spec = TaskSpec("qa", "span", 2, metrics=("accuracy", "f1"))
    with pytest.raises(ValueError, match=r"Span tasks are scored by \['exact_match', 'f1'\], not \['accuracy'\]"):
        predict.score(spec, "validation", [{"id": "q", "context": "c", "answers": []}], None, {})
