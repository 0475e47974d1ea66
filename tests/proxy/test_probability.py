"""kube-proxy's --probability chain: the strings, the exact shares, and kernel-way sampling."""

from __future__ import annotations

import dataclasses
import itertools
import tracemalloc
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from svcsim.netfilter.statistic import THRESHOLD_SCALE, threshold_from_probability
from svcsim.proxy.probability import (
    ChainAnalysis,
    analyse_chain,
    binomial_confidence_intervals,
    chain_probabilities,
    compute_probability,
    exact_selection_probabilities,
    naive_chain_probabilities,
    selection_probabilities,
    simulate_picks,
    thresholds_for,
    uniformity_test,
)

# kubernetes pkg/proxy/iptables/proxier_test.go TestComputeProbability.
UPSTREAM_CASES = {
    1: "1.0000000000",
    2: "0.5000000000",
    10: "0.1000000000",
    100: "0.0100000000",
    1000: "0.0010000000",
    10000: "0.0001000000",
    100000: "0.0000100000",
    100001: "0.0000099999",
}


@pytest.mark.parametrize(("n", "expected"), sorted(UPSTREAM_CASES.items()))
def test_compute_probability_upstream_cases(n: int, expected: str) -> None:
    assert compute_probability(n) == expected


def _go_percent_f(x: float, decimals: int) -> str:
    """What Go's %.<decimals>f prints: the exact binary value, rounded half to even (bigFtoa)."""
    exact = Decimal(x)  # exact conversion of the double
    return str(exact.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_EVEN))


def test_compute_probability_matches_go_rounding_up_to_100001() -> None:
    mismatches = [
        n for n in range(1, 100_002) if compute_probability(n) != _go_percent_f(1.0 / n, 10)
    ]
    assert mismatches == []


def test_compute_probability_exact_tie_rounds_to_even() -> None:
    # 1/2048 = 0.00048828125 exactly: a tie at the 10th decimal in both Go and Python.
    assert compute_probability(2048) == "0.0004882812"


def test_compute_probability_strictly_increasing_as_n_falls() -> None:
    # The second half of upstream TestComputeProbability.
    values = [float(compute_probability(n)) for n in range(100_000, 1, -1)]
    assert all(b > a for a, b in itertools.pairwise(values))


@pytest.mark.parametrize("n", [0, -3])
def test_n_must_be_positive(n: int) -> None:
    for fn in (compute_probability, chain_probabilities, naive_chain_probabilities, analyse_chain):
        with pytest.raises(ValueError, match="must be >= 1"):
            fn(n)


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (1, []),
        (2, ["0.5000000000"]),
        (4, ["0.2500000000", "0.3333333333", "0.5000000000"]),
    ],
)
def test_chain_probabilities(n: int, expected: list[str]) -> None:
    assert chain_probabilities(n) == expected


def test_naive_chain_probabilities() -> None:
    assert naive_chain_probabilities(1) == []
    assert naive_chain_probabilities(4) == ["0.2500000000"] * 3


@pytest.mark.parametrize(
    ("n", "stored", "saved"),
    [
        (2, 1073741824, "0.50000000000"),
        (3, 715827883, "0.33333333349"),
        (4, 536870912, "0.25000000000"),
        (5, 429496730, "0.20000000019"),
        (6, 357913941, "0.16666666651"),
        (7, 306783378, "0.14285714272"),
        (8, 268435456, "0.12500000000"),
        (9, 238609294, "0.11111111101"),
        (10, 214748365, "0.10000000009"),
    ],
)
def test_first_rule_worked_values(n: int, stored: int, saved: str) -> None:
    first = analyse_chain(n).rules[0]
    assert first.written == compute_probability(n)
    assert first.threshold == stored
    assert first.saved == saved
    assert first.selection_probability == stored / THRESHOLD_SCALE


def test_n3_exact_shares() -> None:
    analysis = analyse_chain(3)
    q0 = Fraction(715827883, THRESHOLD_SCALE)
    exact = [q0, (1 - q0) / 2, (1 - q0) / 2]
    assert list(analysis.selection_probabilities) == [float(p) for p in exact]
    assert [r.deviation for r in analysis.rules] == [float(p - Fraction(1, 3)) for p in exact]
    assert analysis.max_abs_deviation == float(q0 - Fraction(1, 3))
    assert 1.5e-10 < analysis.max_abs_deviation < 1.6e-10
    last = analysis.rules[-1]
    assert (last.written, last.threshold, last.saved) == (None, None, None)
    assert analysis.thresholds == (715827883, 1 << 30)


def test_single_endpoint_has_no_statistic_rule() -> None:
    analysis = analyse_chain(1)
    assert len(analysis.rules) == 1
    assert analysis.rules[0].written is None
    assert analysis.selection_probabilities == (1.0,)
    assert analysis.max_abs_deviation == 0.0
    assert analysis.thresholds == ()


def test_analysis_is_frozen() -> None:
    analysis = analyse_chain(2)
    assert isinstance(analysis, ChainAnalysis)
    with pytest.raises(dataclasses.FrozenInstanceError):
        analysis.n = 3  # type: ignore[misc]


def test_every_n_up_to_1000_is_within_1e9_of_uniform() -> None:
    worst = 0.0
    for n in range(1, 1001):
        shares = selection_probabilities(thresholds_for(chain_probabilities(n)))
        assert len(shares) == n
        assert abs(sum(shares) - 1.0) < 1e-12
        worst = max(worst, max(abs(p - 1.0 / n) for p in shares))
    assert worst < 1e-9
    # ...but not exactly uniform: the roundings leave a visible trace.
    assert worst > 1e-11


def test_analysis_max_deviation_for_1000() -> None:
    analysis = analyse_chain(1000)
    assert len(analysis.rules) == 1000
    assert analysis.max_abs_deviation < 1e-9
    assert analysis.max_abs_deviation == max(abs(r.deviation) for r in analysis.rules)


@pytest.mark.parametrize("n", [2, 3, 4, 10, 50])
def test_naive_chain_shares(n: int) -> None:
    analysis = analyse_chain(n, naive=True)
    q = Fraction(threshold_from_probability(compute_probability(n)), THRESHOLD_SCALE)
    expected = [q * (1 - q) ** k for k in range(n - 1)] + [(1 - q) ** (n - 1)]
    assert list(analysis.selection_probabilities) == [float(p) for p in expected]
    assert analysis.naive
    if n > 2:
        assert analysis.max_abs_deviation > 0.05


def test_naive_n4_is_exact_binary() -> None:
    shares = analyse_chain(4, naive=True).selection_probabilities
    assert shares == (0.25, 0.1875, 0.140625, 0.421875)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(min_value=0, max_value=THRESHOLD_SCALE),
            st.sampled_from([0, 1, THRESHOLD_SCALE - 1, THRESHOLD_SCALE, 1 << 30]),
        ),
        max_size=60,
    )
)
def test_selection_probabilities_are_correctly_rounded_exact_values(thresholds: list[int]) -> None:
    exact = exact_selection_probabilities(thresholds)
    assert sum(exact) == 1
    assert all(p >= 0 for p in exact)
    assert selection_probabilities(thresholds) == [float(p) for p in exact]


def test_selection_rejects_bad_threshold() -> None:
    with pytest.raises(ValueError, match="outside"):
        selection_probabilities([THRESHOLD_SCALE + 1])


def test_simulate_picks_deterministic_and_chunk_independent() -> None:
    thresholds = analyse_chain(5).thresholds
    a = simulate_picks(thresholds, 10_001, np.random.default_rng(9))
    b = simulate_picks(thresholds, 10_001, np.random.default_rng(9), chunk_draws=2)
    c = simulate_picks(thresholds, 10_001, np.random.default_rng(10))
    assert a.dtype == np.int64
    assert a.sum() == 10_001
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    ("thresholds", "expected"),
    [
        ([], [1000]),
        ([THRESHOLD_SCALE, 0], [1000, 0, 0]),
        ([0, 0], [0, 0, 1000]),
        ([0, THRESHOLD_SCALE, 0], [0, 1000, 0, 0]),
    ],
)
def test_simulate_picks_degenerate_rules(thresholds: list[int], expected: list[int]) -> None:
    counts = simulate_picks(thresholds, 1000, np.random.default_rng(0))
    assert counts.tolist() == expected


def test_simulate_picks_validates() -> None:
    with pytest.raises(ValueError, match="negative samples"):
        simulate_picks([], -1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="chunk_draws"):
        simulate_picks([], 1, np.random.default_rng(0), chunk_draws=0)
    assert simulate_picks([1 << 30], 0, np.random.default_rng(0)).tolist() == [0, 0]


_UNIFORM_SEEDS = np.random.SeedSequence(20240611).spawn(19)


@pytest.mark.parametrize("n", range(2, 21))
def test_million_kernel_picks_are_consistent_with_uniform(n: int) -> None:
    rng = np.random.default_rng(_UNIFORM_SEEDS[n - 2])
    counts = simulate_picks(analyse_chain(n).thresholds, 1_000_000, rng)
    assert counts.sum() == 1_000_000
    _, p_value = uniformity_test(counts)
    assert p_value > 0.001


def test_naive_chain_is_rejected() -> None:
    rng = np.random.default_rng(np.random.SeedSequence(77))
    counts = simulate_picks(analyse_chain(3, naive=True).thresholds, 100_000, rng)
    _, p_value = uniformity_test(counts)
    assert p_value < 1e-6


def test_naive_picks_follow_the_exact_naive_shares() -> None:
    # Goodness of fit against the exact (non-uniform) shares: the walk reproduces them.
    analysis = analyse_chain(4, naive=True)
    counts = simulate_picks(analysis.thresholds, 200_000, np.random.default_rng(11))
    expected = np.asarray(analysis.selection_probabilities) * counts.sum()
    assert stats.chisquare(counts, expected).pvalue > 0.001


def test_large_chain_is_fast_and_bounded_in_memory() -> None:
    thresholds = analyse_chain(1000).thresholds
    tracemalloc.start()
    try:
        counts = simulate_picks(thresholds, 1_000_000, np.random.default_rng(1000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert counts.sum() == 1_000_000
    assert peak < 200 * 2**20
    assert uniformity_test(counts)[1] > 0.001


@pytest.mark.parametrize(
    ("counts", "chi2"),
    [
        ([100, 100, 100], 0.0),
        ([10, 20], 10 / 3),
        ([5], 0.0),
    ],
)
def test_uniformity_test_statistic(counts: list[int], chi2: float) -> None:
    statistic, p_value = uniformity_test(counts)
    assert statistic == pytest.approx(chi2)
    dof = len(counts) - 1
    expected_p = 1.0 if dof == 0 else float(stats.chi2.sf(chi2, dof))
    assert p_value == pytest.approx(expected_p)


@pytest.mark.parametrize("counts", [[], [0, 0], [[1, 2]]])
def test_uniformity_test_rejects_bad_input(counts: list[object]) -> None:
    with pytest.raises(ValueError, match="counts"):
        uniformity_test(counts)  # type: ignore[arg-type]


def test_binomial_confidence_intervals() -> None:
    lower, upper = binomial_confidence_intervals([0, 5, 10, 15])
    total = 30
    shares = np.array([0, 5, 10, 15]) / total
    assert lower[0] == 0.0
    assert np.all(lower <= shares)
    assert np.all(shares <= upper)
    ci = stats.binomtest(5, total).proportion_ci(0.95, method="exact")
    assert lower[1] == pytest.approx(ci.low)
    assert upper[1] == pytest.approx(ci.high)
    lower_all, upper_all = binomial_confidence_intervals([7])
    assert (lower_all[0] < 1.0, upper_all[0]) == (True, 1.0)
    with pytest.raises(ValueError, match="confidence level"):
        binomial_confidence_intervals([1], level=1.0)
