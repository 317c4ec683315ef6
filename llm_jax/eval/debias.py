"""Hard debiasing of static word vectors by projection (Bolukbasi et al. 2016), measured with WEAT.

Bolukbasi, Chang, Zou, Saligrama & Kalai, "Man is to Computer Programmer as Woman is to Homemaker? Debiasing
Word Embeddings", NeurIPS 2016, §5–6:

* **the bias direction** g: the first principal component of the definitional pairs' differences — each pair
  (she, he), (woman, man), … centred on its own mean, the 2·n centred vectors stacked, g the top right-singular
  vector (§5, "Identifying the gender subspace", with k = 1);
* **neutralize**: every gender-neutral word w (unit length) loses its component along g and is renormalised,
  w ← (w − (w·g) g) / ‖w − (w·g) g‖ (§6, "Hard de-biasing");

Their second step, *equalize* (each equality pair made to differ only along g), is left out: WEAT 7 and 8 list
their male and female terms as such pairs, and after both steps every s(w, A, B) is exactly 0 — the effect size
becomes 0/0 and measures nothing. The projection alone is what is measured here: the gender-neutral sets of a
gender test (WEAT 6: career and family words; 7 and 8: the math, science and arts words) are neutralized and the
gendered sets (names, male and female terms) kept.

Everything is float64 on unit vectors (WEAT reads cosines only, so the normalisation does not change it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Bolukbasi et al. 2016, the ten definitional pairs of their gender direction (§5; their `definitional_pairs.json`).
DEFINITIONAL_PAIRS = (("woman", "man"), ("girl", "boy"), ("she", "he"), ("mother", "father"), ("daughter", "son"),
                      ("gal", "guy"), ("female", "male"), ("her", "his"), ("herself", "himself"), ("Mary", "John"))


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float64)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("A zero vector cannot be debiased (its direction is undefined); drop that word.")
    return v / norms


def bias_direction(a_PD: np.ndarray, b_PD: np.ndarray) -> np.ndarray:
    """The unit direction `[D]` of the first principal component of the pairs' centred vectors (§5).

    Args:
      a_PD / b_PD: the two words of P definitional pairs (row p of each is one pair), any length.

    Returns:
      g, oriented so that the mean of a − b projects positively on it.

    Raises:
      ValueError: shapes that differ, or fewer than one pair.
    """
    a, b = _unit(a_PD), _unit(b_PD)
    if a.shape != b.shape or a.ndim != 2 or len(a) < 1:
        raise ValueError(f"The definitional pairs need two [P, D] arrays of one shape (got {a.shape}, {b.shape}).")
    mid = (a + b) / 2
    centred = np.concatenate([a - mid, b - mid])
    g = np.linalg.svd(centred, full_matrices=False)[2][0]
    return g if (a - b).mean(0) @ g >= 0 else -g


def neutralize(w_ND: np.ndarray, g_D: np.ndarray) -> np.ndarray:
    """Unit vectors `[N, D]` with no component along the unit direction g (§6, hard de-biasing)."""
    w, g = _unit(w_ND), _unit(g_D)
    return _unit(w - np.outer(w @ g, g))


def gendered_sides(categories: Sequence[str]) -> tuple[bool, bool]:
    """Which of a test's two pairs of sets, (X, Y) and (A, B), is the gendered one: the pair whose categories name
    Male/Female (WEAT 6: the names; WEAT 7 and 8: the attribute terms). `categories` = the four set categories.

    Raises:
      ValueError: a test with no Male/Female pair.
    """
    def is_gendered(c1, c2):
        c1, c2 = c1.lower(), c2.lower()
        return {c1.startswith("male") or c1.startswith("female"), c2.startswith("male") or c2.startswith("female")} \
            == {True}

    targets, attributes = is_gendered(*categories[:2]), is_gendered(*categories[2:])
    if not (targets or attributes):
        raise ValueError(f"No Male/Female pair of sets among {list(categories)}: hard debiasing along a gender "
                         "direction applies to the gender tests (WEAT 6–8).")
    return targets, attributes


def debias_sets(sets: Sequence[np.ndarray], categories: Sequence[str], g_D: np.ndarray) -> list[np.ndarray]:
    """A gender test's four sets (X, Y, A, B) after hard debiasing by projection: the gender-neutral pair of sets
    neutralized, the gendered pair (`gendered_sides`) kept (as unit vectors).

    Raises:
      ValueError: a test with no Male/Female pair of sets.
    """
    targets, _ = gendered_sides(categories)
    neutral = (2, 3) if targets else (0, 1)
    return [neutralize(s, g_D) if i in neutral else _unit(s) for i, s in enumerate(sets)]


__all__ = ["DEFINITIONAL_PAIRS", "bias_direction", "debias_sets", "gendered_sides", "neutralize"]
