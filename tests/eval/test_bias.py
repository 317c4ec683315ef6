"""WEAT statistics (`llm_jax.eval.bias`): the worked check of the data README, equality with WEFE (fixtures made by
`tests/eval/fixtures/make_wefe_fixtures.py` in WEFE's own environment) and with a transcription of sent-bias's
formulas, the permutation test's two regimes, the loader, and the shipped lists."""

import itertools
import json
import math
import pathlib

import numpy as np
import pytest

from llm_jax.eval import bias

FIXTURES = pathlib.Path(__file__).parent / "fixtures"

# The data README's worked check.
X = [(1, 0, 0), (1, 1, 0)]
Y = [(0, 1, 1), (0, 0, 1)]
A = [(1, .5, 0), (1, 0, .5)]
B = [(0, 1, .5), (.5, 0, 1)]


def test_worked_check():
    for std, d in (("population", 1.933981617506), ("sample", 1.674877211212)):
        r = bias.weat(X, Y, A, B, std=std)
        assert r.statistic == pytest.approx(1.908603403792, abs=1e-12)
        assert r.effect_size == pytest.approx(d, abs=1e-12)
        assert r.p_value == 1 / 6 and r.exact and r.partitions == 6  # ties counted: the observed one itself
    assert bias.weat(X, Y, A, B, ties="caliskan").p_value == 0.0  # strict >


def test_population_and_sample_differ_by_the_known_factor():
    rng = np.random.default_rng(1)
    x, y, a, b = (rng.normal(size=(n, 12)) for n in (9, 9, 5, 6))
    d0 = bias.weat(x, y, a, b, std="population").effect_size
    d1 = bias.weat(x, y, a, b, std="sample").effect_size
    assert d0 == pytest.approx(d1 * math.sqrt(18 / 17), rel=1e-12)


# ------------------------------------------------------------------------- sent-bias, transcribed


def _sentbias_cossim(x, y):
    return np.dot(x, y) / math.sqrt(np.dot(x, x) * np.dot(y, y))


def _sentbias(x, y, a, b):
    """sent-bias's `weat.py` (May et al. 2019): a cosine table, s(w) per target, sample std, an exact test that
    counts ties — transcribed loop for loop, so nothing is shared with the implementation under test."""
    xy, ab = list(x) + list(y), list(a) + list(b)
    cossims = np.zeros((len(xy), len(ab)))
    for i, u in enumerate(xy):
        for j, v in enumerate(ab):
            cossims[i, j] = _sentbias_cossim(u, v)
    ai, bi = list(range(len(a))), list(range(len(a), len(ab)))
    s_wab = cossims[:, ai].mean(axis=1) - cossims[:, bi].mean(axis=1)
    xi, yi = list(range(len(x))), list(range(len(x), len(xy)))
    effect = (np.mean(s_wab[xi]) - np.mean(s_wab[yi])) / np.std(s_wab[xi + yi], ddof=1)
    s = s_wab[xi].sum()
    total_true = total = 0
    for part in itertools.combinations(xi + yi, len(xi)):
        si = s_wab[np.array(part)].sum()
        total_true += si >= s
        total += 1
    return effect, total_true / total, s_wab[xi].sum() - s_wab[yi].sum()


@pytest.mark.parametrize("sizes,dim", [((8, 8, 8, 8), 16), ((6, 6, 7, 7), 24), ((5, 5, 3, 4), 7)])
def test_equals_sentbias_transcription(sizes, dim):
    rng = np.random.default_rng(sum(sizes) + dim)
    x, y, a, b = (rng.normal(size=(n, dim)) for n in sizes)
    d, p, stat = _sentbias(x, y, a, b)
    r = bias.weat(x, y, a, b, std="sample")
    assert r.exact
    assert abs(r.effect_size - d) < 1e-9 and abs(r.statistic - stat) < 1e-9
    assert r.p_value == p


# ----------------------------------------------------------------------------------------- WEFE


def test_equals_wefe():
    cases = json.loads((FIXTURES / "wefe_weat.json").read_text())
    assert len(cases["cases"]) >= 3 and cases["wefe_version"]
    for case in cases["cases"]:
        x, y, a, b = (np.asarray(case["vectors"][k], np.float64) for k in bias.SETS)
        r = bias.weat(x, y, a, b, std="population", n_samples=1000)
        assert abs(r.effect_size - case["effect_size"]) < 1e-6, case["name"]
        # WEFE's `result` is the statistic Σ_X s − Σ_Y s.
        assert abs(r.statistic - case["statistic"]) < 1e-6, case["name"]


# ------------------------------------------------------------------------------- permutation test


def test_sampled_p_value_is_seeded_and_near_the_exact_one():
    rng = np.random.default_rng(3)
    s_x, s_y = rng.normal(0.3, 1, 9), rng.normal(0, 1, 9)  # C(18, 9) = 48,620: exact
    exact, is_exact, total = bias.permutation_p_value(s_x, s_y)
    assert is_exact and total == 48620 and 0.01 < exact < 0.99
    p1, ex1, n1 = bias.permutation_p_value(s_x, s_y, n_samples=20000, seed=7, exact_limit=1000)
    p2, _, _ = bias.permutation_p_value(s_x, s_y, n_samples=20000, seed=7, exact_limit=1000)
    p3, _, _ = bias.permutation_p_value(s_x, s_y, n_samples=20000, seed=8, exact_limit=1000)
    assert not ex1 and n1 == 20000 and p1 == p2 and p1 != p3
    sigma = math.sqrt(exact * (1 - exact) / 20000)
    assert abs(p1 - exact) < 4 * sigma and abs(p3 - exact) < 4 * sigma


def test_ties_between_repeated_vectors_count():
    # Every target has the same association: every partition ties with the observed one.
    s = np.full(8, 0.3)
    assert bias.permutation_p_value(s[:4], s[4:])[0] == 1.0
    assert bias.permutation_p_value(s[:4], s[4:], ties="caliskan")[0] == 0.0
    # Sampled (C(40, 20) > 1e5): the same, with the observed partition counted once by sent-bias's rule.
    s = np.full(40, 0.1)
    assert bias.permutation_p_value(s[:20], s[20:], n_samples=500) == (1.0, False, 500)
    assert bias.permutation_p_value(s[:20], s[20:], n_samples=500, ties="caliskan")[0] == 0.0


def test_errors_are_one_line_and_helpful():
    with pytest.raises(ValueError, match="std="):
        bias.weat(X, Y, A, B, std="unbiased")
    with pytest.raises(ValueError, match="zero vector"):
        bias.weat([(0, 0, 0), (1, 0, 0)], Y, A, B)
    with pytest.raises(ValueError, match="widths"):
        bias.weat(X, Y, A, [(1, 0)])
    with pytest.raises(ValueError, match="ties="):
        bias.weat(X, Y, A, B, ties="maybe")


# ----------------------------------------------------------------------------------------- loader


def test_shipped_lists_load_with_their_sizes():
    tests = bias.resolve_tests()
    assert [t.name for t in tests] == list(bias.WEAT_NAMES)
    sizes = {t.name: tuple(len(s.examples) for s in t.sets()) for t in tests}
    assert sizes["weat1"] == (25, 25, 25, 25) and sizes["weat3"] == (32, 32, 25, 25)
    assert sizes["weat9"] == (6, 6, 7, 7) and sizes["weat5"] == (16, 16, 8, 8)
    assert tests[0].targ1.category == "Flowers" and tests[0].targ1.examples[0] == "aster"
    assert "Caliskan" in (bias.bundled_tests_dir() / "README.md").read_text()


def test_loader_reads_a_sentbias_file_and_rejects_bad_ones(tmp_path):
    # The layout of sent-bias's tests/sent-weat1.jsonl: one JSON object, sentences as examples, no name.
    doc = {k: {"category": k.upper(), "examples": [f"This is {k} {i}." for i in range(3)]} for k in bias.SETS}
    p = tmp_path / "sent-weat1.jsonl"
    p.write_text(json.dumps(doc))
    (t,) = bias.resolve_tests([str(p)])
    assert t.name == "sent-weat1" and t.attr2.examples[2] == "This is attr2 2."
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"targ1": doc["targ1"]}))
    with pytest.raises(ValueError, match="lacks targ2"):
        bias.load_test(bad)
    with pytest.raises(ValueError, match="Unknown bias test"):
        bias.resolve_tests(["weat11"])


# ------------------------------------------------------------------------------------------- debiasing


def test_hard_debiasing_removes_the_direction_and_the_planted_bias():
    from llm_jax.eval import debias

    rng = np.random.default_rng(5)
    dim = 20
    g = rng.normal(size=dim)
    g /= np.linalg.norm(g)
    # Definitional pairs that differ along g (plus noise); a gender test whose neutral targets lean along g.
    base = rng.normal(size=(10, dim))
    she, he = base + 2 * g + 0.1 * rng.normal(size=(10, dim)), base - 2 * g + 0.1 * rng.normal(size=(10, dim))
    found = debias.bias_direction(she, he)
    assert abs(found @ g) > 0.99 and found @ g > 0  # oriented from he towards she
    x, y = rng.normal(size=(8, dim)) - 1.5 * g, rng.normal(size=(8, dim)) + 1.5 * g  # "math" leans male, "arts" female
    a, b = rng.normal(size=(8, dim)) - 3 * g, rng.normal(size=(8, dim)) + 3 * g  # male terms, female terms
    cats = ("Math", "Arts", "MaleTerms", "FemaleTerms")
    before = bias.weat(x, y, a, b).effect_size
    after_sets = debias.debias_sets([x, y, a, b], cats, found)
    after = bias.weat(*after_sets).effect_size
    assert before > 1.5 and abs(after) < 0.8 * before
    assert np.abs(after_sets[0] @ found).max() < 1e-12 and np.allclose(np.linalg.norm(after_sets[1], axis=1), 1)
    np.testing.assert_allclose(after_sets[2], a / np.linalg.norm(a, axis=1, keepdims=True))  # gendered: kept
    assert debias.gendered_sides(("MaleNames", "FemaleNames", "Career", "Family")) == (True, False)
    with pytest.raises(ValueError, match="gender tests"):
        debias.gendered_sides(("Flowers", "Insects", "Pleasant", "Unpleasant"))
