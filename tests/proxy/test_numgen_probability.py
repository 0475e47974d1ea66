"""Exact numgen shares and a Monte Carlo drawn the kernel's way."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from svcsim.netfilter.numgen import RANDOM_SCALE
from svcsim.proxy.numgen_probability import analyse_numgen, numgen_rule, simulate_numgen_picks
from svcsim.proxy.probability import uniformity_test
from svcsim.results.uniformity import UNIFORMITY_ALPHA


@pytest.mark.parametrize("n", [1, 2, 3, 7, 100])
def test_exact_shares_sum_to_one(n: int) -> None:
    choices = analyse_numgen(n)
    assert sum(c.probability for c in choices) == 1
    assert all(c.probability == Fraction(c.count, RANDOM_SCALE) for c in choices)
    assert all(abs(c.deviation) < 1 / RANDOM_SCALE for c in choices)


def test_seven_endpoints_known_counts() -> None:
    """2^32 = 7 * 613566756 + 4: four of the seven values get one draw more."""
    counts = [c.count for c in analyse_numgen(7)]
    assert sorted(counts) == [613566756] * 3 + [613566757] * 4
    assert [c.first_draw for c in analyse_numgen(7)][:3] == [0, 613566757, 1227133514]


@pytest.mark.parametrize("n", [3, 7, 100])
def test_monte_carlo_agrees_with_the_exact_shares(n: int) -> None:
    """Fixed seed; the chi-square must not reject at the level svcsim run reports with."""
    samples = 400_000
    counts = simulate_numgen_picks(n, samples, np.random.default_rng(20261207), chunk_draws=65_536)
    assert counts.sum() == samples
    chi2, p_value = uniformity_test(counts)
    assert p_value > UNIFORMITY_ALPHA
    assert chi2 < stats.chi2.ppf(1 - UNIFORMITY_ALPHA, n - 1)


def test_rule_text_is_the_compilers_shape() -> None:
    assert numgen_rule(2) == "numgen random mod 2 vmap { 0 : goto ep0 , 1 : goto ep1 }"
