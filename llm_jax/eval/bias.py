"""Social-bias tests on vectors: the Word Embedding Association Test (WEAT) and its sentence version (SEAT).

WEAT (Caliskan, Bryson & Narayanan 2017, "Semantics derived automatically from language corpora contain
human-like biases", Science 356:183, and its supplement) asks whether two sets of target words X, Y (flowers,
insects) differ in their association with two sets of attribute words A, B (pleasant, unpleasant), measured by
cosine similarity between vectors:

    s(w, A, B) = mean_{a∈A} cos(w, a) − mean_{b∈B} cos(w, b)
    statistic  = Σ_{x∈X} s(x, A, B) − Σ_{y∈Y} s(y, A, B)
    d          = (mean_{x∈X} s(x) − mean_{y∈Y} s(y)) / std_{w∈X∪Y} s(w)

A positive d means X goes with A and Y with B. Peers differ in the standard deviation: Caliskan's code and
sent-bias (May et al. 2019, "On Measuring Social Biases in Sentence Encoders", NAACL) take the sample std
(ddof = 1, `std="sample"`), WEFE (`wefe.metrics.WEAT`) and Wambsganss et al. 2022 the population std (ddof = 0,
`std="population"`); on the same vectors they differ by the factor √(N/(N−1)), N = |X| + |Y|. Every table says
which one it uses.

The p-value is one-sided, from a permutation test: the share of partitions (X_i, Y_i) of X∪Y with |X_i| = |X|
whose statistic reaches the observed one. All partitions are enumerated when there are at most
`EXACT_LIMIT` = 100,000 of them (WEAT 6–10); otherwise `n_samples` partitions are drawn with a seeded generator.
Ties follow the chosen peer (`ties`): sent-bias counts a partition whose statistic *equals* the observed one
(≥, so the observed partition counts itself) and, when sampling, counts the observed partition as the first of
its `n_samples` draws; Caliskan's paper writes a strict > (the observed partition never counts). Everything is
computed in float64 whatever the input dtype: float32 cosines move d by up to 3e-7 on 768-d vectors.

Any `[N, D]` vectors work: word vectors, contextual vectors, sentence vectors (SEAT puts each word into
semantically bleached sentences; `llm_jax.eval.embeddings`). The tests themselves are files in the schema of
sent-bias (`{"targ1": {"category", "examples"}, "targ2", "attr1", "attr2"}`): `load_test` reads ours (WEAT 1–10,
shipped with the package) and the sent-bias repository's `tests/*.jsonl` alike.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import itertools
import json
import math
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

STDS = ("sample", "population")
TIES = ("sent-bias", "caliskan")
EXACT_LIMIT = 100_000
SETS = ("targ1", "targ2", "attr1", "attr2")
# The WEAT 1–10 word lists (Caliskan et al. 2017, supplement), shipped as package data with their README.
WEAT_NAMES = tuple(f"weat{i}" for i in range(1, 11))
_BUNDLED = ("data", "bundled", "bias")


# ---------------------------------------------------------------------------------------------- tests


@dataclasses.dataclass(frozen=True)
class WordSet:
    """One side of a test: its category name and its words (or sentences)."""

    category: str
    examples: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class BiasTest:
    """An association test: targets X (`targ1`) and Y (`targ2`), attributes A (`attr1`) and B (`attr2`)."""

    name: str
    targ1: WordSet
    targ2: WordSet
    attr1: WordSet
    attr2: WordSet
    source: str = ""

    def sets(self) -> tuple[WordSet, WordSet, WordSet, WordSet]:
        return self.targ1, self.targ2, self.attr1, self.attr2


def bias_test_from_dict(data: Mapping[str, Any], name: str, where: str = "the test") -> BiasTest:
    """A `BiasTest` from a dict in the sent-bias schema (extra keys such as `name`, `source` are allowed).

    Raises:
      ValueError: a missing set, a set without `examples`, an empty set, or a non-string example.
    """
    sets = {}
    for key in SETS:
        part = data.get(key)
        if not isinstance(part, Mapping) or not isinstance(part.get("examples"), list):
            raise ValueError(f"{where} lacks {key} = {{\"category\": ..., \"examples\": [...]}}; a bias test needs "
                             f"all of {list(SETS)} (the sent-bias schema).")
        examples = part["examples"]
        if not examples or not all(isinstance(e, str) and e.strip() for e in examples):
            raise ValueError(f"{where}: {key}.examples must be a non-empty list of non-empty strings.")
        sets[key] = WordSet(str(part.get("category", key)), tuple(e.strip() for e in examples))
    return BiasTest(name=str(data.get("name", name)), source=str(data.get("source", "")), **sets)


def load_test(path: str | os.PathLike) -> BiasTest:
    """Reads a test file: ours (`weat1.json`, …) or a sent-bias `tests/*.jsonl` (one JSON object, same keys).

    Raises:
      FileNotFoundError: no such file.
      ValueError: the file is not one JSON object in the schema.
    """
    p = pathlib.Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{p} does not exist; pass a test file in the sent-bias schema (targ1, targ2, attr1, "
                                f"attr2), or a bundled test name such as weat1.")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{p} is not one JSON object ({e.msg} at line {e.lineno}); a bias test file holds "
                         f"{{\"targ1\": {{\"category\", \"examples\"}}, \"targ2\", \"attr1\", \"attr2\"}}.") from None
    if not isinstance(data, dict):
        raise ValueError(f"{p} holds a JSON {type(data).__name__}, not an object with targ1, targ2, attr1, attr2.")
    return bias_test_from_dict(data, p.name.split(".")[0], str(p))


def bundled_tests_dir() -> pathlib.Path:
    """The folder of the shipped WEAT 1–10 lists (`weat1.json` … `weat10.json`, README.md with the attribution)."""
    return pathlib.Path(str(importlib.resources.files("llm_jax").joinpath(*_BUNDLED)))


def resolve_tests(specs: Sequence[str] | None = None) -> list[BiasTest]:
    """Tests by bundled name (`weat1` … `weat10`) or path to a file; None: WEAT 1–10.

    Raises:
      ValueError: a name that is neither a bundled test nor a file.
    """
    out = []
    for spec in specs or WEAT_NAMES:
        if spec in WEAT_NAMES:
            out.append(load_test(bundled_tests_dir() / f"{spec}.json"))
        elif pathlib.Path(spec).expanduser().is_file():
            out.append(load_test(spec))
        else:
            raise ValueError(f"Unknown bias test {spec!r}: use one of {', '.join(WEAT_NAMES)} or a path to a test "
                             f"file (sent-bias schema).")
    return out


# ----------------------------------------------------------------------------------------- statistics


@dataclasses.dataclass(frozen=True)
class WeatResult:
    """One test's outcome.

    Attributes:
      statistic: Σ_X s − Σ_Y s.
      effect_size: d, with the `std` convention.
      p_value: one-sided permutation p-value.
      std: "sample" (ddof 1) or "population" (ddof 0).
      exact: whether every partition was enumerated (else `partitions` were sampled).
      partitions: how many partitions the p-value counts over.
      sizes: (|X|, |Y|, |A|, |B|).
    """

    statistic: float
    effect_size: float
    p_value: float
    std: str
    exact: bool
    partitions: int
    sizes: tuple[int, int, int, int]


def _unit(v_ND: np.ndarray, what: str) -> np.ndarray:
    v = np.asarray(v_ND, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] == 0:
        raise ValueError(f"{what} must be a non-empty [N, D] array of vectors (got shape {v.shape}).")
    if not np.isfinite(v).all():
        raise ValueError(f"{what} holds NaN or infinite values; check the model's outputs.")
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{what} holds {int((norms == 0).sum())} zero vector(s), whose cosine is undefined; drop "
                         "those words or use vectors that are not zero.")
    return v / norms


def association(w_ND, a_MD, b_KD) -> np.ndarray:
    """s(w, A, B) = mean_a cos(w, a) − mean_b cos(w, b) for each row w: `[N]` float64 (Caliskan et al. 2017).

    Raises:
      ValueError: shapes that are not `[·, D]` with one D, a zero vector, or a NaN.
    """
    w, a, b = _unit(w_ND, "the target vectors"), _unit(a_MD, "attribute set A"), _unit(b_KD, "attribute set B")
    if not w.shape[1] == a.shape[1] == b.shape[1]:
        raise ValueError(f"The vectors have different widths ({w.shape[1]}, {a.shape[1]}, {b.shape[1]}); embed all "
                         "four sets with one model and level.")
    return (w @ a.T).mean(axis=1) - (w @ b.T).mean(axis=1)


def effect_size_from_associations(s_x: np.ndarray, s_y: np.ndarray, std: str = "sample") -> float:
    """d = (mean s_X − mean s_Y) / std(s over X∪Y), ddof 1 for `"sample"`, 0 for `"population"`.

    Raises:
      ValueError: an unknown `std`, or fewer than two target vectors (a sample std needs two).
    """
    if std not in STDS:
        raise ValueError(f"std={std!r}: choose one of {STDS} (sample = Caliskan/sent-bias, population = WEFE).")
    s_xy = np.concatenate([s_x, s_y])
    if len(s_xy) < 2:
        raise ValueError("An effect size needs at least two target vectors in X ∪ Y.")
    return float((s_x.mean() - s_y.mean()) / s_xy.std(ddof=1 if std == "sample" else 0))


def _partition_sums(s_n: np.ndarray, idx_KX: np.ndarray) -> np.ndarray:
    """Σ_{i∈X_k} s_i for each row of indices `[K, |X|]`."""
    return s_n[idx_KX].sum(axis=1)


def permutation_p_value(s_x: np.ndarray, s_y: np.ndarray, *, n_samples: int = EXACT_LIMIT, seed: int = 0,
                        ties: str = "sent-bias", exact_limit: int = EXACT_LIMIT) -> tuple[float, bool, int]:
    """One-sided p-value of the WEAT statistic over partitions of X∪Y into sets of |X| and |Y|.

    The statistic of a partition is 2 Σ_{X_i} s − Σ_{X∪Y} s, so comparing Σ_{X_i} s suffices (sent-bias's
    shortcut). Partitions whose sums are equal in exact arithmetic (the observed one drawn again, or repeated
    vectors, e.g. words that share one embedding) may differ by rounding when summed in another order, so sums
    within n·ε·Σ|s| of the observed one count as equal.

    Args:
      s_x / s_y: s(w, A, B) of the targets `[|X|]`, `[|Y|]`.
      n_samples: partitions drawn when there are more than `EXACT_LIMIT` (and at least this many).
      seed: seed of the drawn partitions.
      ties: "sent-bias" (≥; a sample counts the observed partition as its first draw) or "caliskan" (strict >).
      exact_limit: enumerate every partition when there are at most this many.

    Returns:
      `(p, exact, partitions counted)`.

    Raises:
      ValueError: an unknown `ties`, or `n_samples` < 1.
    """
    if ties not in TIES:
        raise ValueError(f"ties={ties!r}: choose one of {TIES} (sent-bias counts equal partitions, Caliskan's paper "
                         f"does not).")
    if n_samples < 1:
        raise ValueError(f"n_samples={n_samples} must be ≥ 1.")
    s_n = np.concatenate([np.asarray(s_x, np.float64), np.asarray(s_y, np.float64)])
    n, nx = len(s_n), len(s_x)
    observed = _partition_sums(s_n, np.arange(nx)[None])[0]
    tol = n * np.finfo(np.float64).eps * np.abs(s_n).sum()

    def reaching(sums):
        return int((sums > observed + tol).sum() + (0 if ties == "caliskan" else (np.abs(sums - observed) <= tol).sum()))

    total = math.comb(n, nx)
    if total <= exact_limit:
        idx_KX = np.fromiter(itertools.chain.from_iterable(itertools.combinations(range(n), nx)), np.int64,
                             count=total * nx).reshape(total, nx)
        return reaching(_partition_sums(s_n, idx_KX)) / total, True, total
    rng = np.random.default_rng(seed)
    count = 1 if ties == "sent-bias" else 0  # sent-bias: the observed partition is one of the n_samples
    draws = n_samples - 1 if ties == "sent-bias" else n_samples
    done, chunk = 0, max(1, min(draws, 1_000_000 // n))
    while done < draws:
        k = min(chunk, draws - done)
        # A uniform |X|-subset per row: the positions of the |X| smallest of n uniform keys.
        idx_KX = np.argpartition(rng.random((k, n)), nx - 1, axis=1)[:, :nx]
        count += reaching(_partition_sums(s_n, idx_KX))
        done += k
    return count / n_samples, False, n_samples


def weat(x_ND, y_ND, a_ND, b_ND, *, std: str = "sample", n_samples: int = EXACT_LIMIT, seed: int = 0,
         ties: str = "sent-bias") -> WeatResult:
    """The WEAT of four sets of vectors (Caliskan et al. 2017; formulas in the module docstring).

    Args:
      x_ND, y_ND: target vectors `[|X|, D]`, `[|Y|, D]` (words or sentences).
      a_ND, b_ND: attribute vectors `[|A|, D]`, `[|B|, D]`.
      std: "sample" (ddof 1: Caliskan, sent-bias) or "population" (ddof 0: WEFE).
      n_samples / seed / ties: the permutation test's (see `permutation_p_value`).

    Returns:
      A `WeatResult` (float64 statistics).

    Raises:
      ValueError: see `association`, `effect_size_from_associations`, `permutation_p_value`.
    """
    s_x, s_y = association(x_ND, a_ND, b_ND), association(y_ND, a_ND, b_ND)
    d = effect_size_from_associations(s_x, s_y, std)
    p, exact, partitions = permutation_p_value(s_x, s_y, n_samples=n_samples, seed=seed, ties=ties)
    sizes = (len(s_x), len(s_y), len(np.asarray(a_ND)), len(np.asarray(b_ND)))
    return WeatResult(float(s_x.sum() - s_y.sum()), d, p, std, exact, partitions, sizes)


# ------------------------------------------------------------------------------------------- reporting


def result_row(test: BiasTest, result: WeatResult, level: str) -> dict[str, Any]:
    """The JSON object `llm-jax bias --json` prints for one test."""
    return {"test": test.name, "targets": f"{test.targ1.category} vs {test.targ2.category}",
            "attributes": f"{test.attr1.category} vs {test.attr2.category}", "effect_size": result.effect_size,
            "p_value": result.p_value, "std": result.std, "level": level, "statistic": result.statistic,
            "exact": result.exact, "partitions": result.partitions, "n": list(result.sizes)}


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows of `result_row` as an aligned text table: test, targets, attributes, d, p, n (|X|, |Y|, |A|, |B|)."""
    header = f"{'test':<8} {'targets':<48} {'attributes':<30} {'d':>7} {'p':>8}  n (X/Y, A/B)"
    lines = [header, "-" * len(header)]
    for r in rows:
        nx, ny, na, nb = r["n"]
        p = f"{r['p_value']:.4f}" + ("" if r["exact"] else "*")
        lines.append(f"{r['test']:<8} {r['targets'][:48]:<48} {r['attributes'][:30]:<30} {r['effect_size']:>7.3f} "
                     f"{p:>8}  {nx}/{ny}, {na}/{nb}")
    return "\n".join(lines)


__all__ = ["BiasTest", "EXACT_LIMIT", "STDS", "TIES", "WEAT_NAMES", "WeatResult", "WordSet", "association",
           "bundled_tests_dir", "effect_size_from_associations", "format_table", "load_test",
           "permutation_p_value", "resolve_tests", "result_row", "bias_test_from_dict", "weat"]
