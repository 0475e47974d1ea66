"""iptables' encoding of --probability and the kernel's 31-bit decision (xt_statistic)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from svcsim.netfilter.statistic import (
    RANDOM_BITS,
    THRESHOLD_SCALE,
    draw_u31,
    format_saved_probability,
    matches,
    parse_c_double,
    probability_from_threshold,
    threshold_from_probability,
)

# kube-proxy-facts.md §2 worked values: written text, stored u32, iptables-save text, exact P.
WORKED = [
    ("0.5000000000", 1073741824, "0.50000000000", 0.5),
    ("0.3333333333", 715827883, "0.33333333349", 0.33333333348855376),
    ("0.2500000000", 536870912, "0.25000000000", 0.25),
    ("0.2000000000", 429496730, "0.20000000019", 0.20000000018626451),
    ("0.1666666667", 357913941, "0.16666666651", 0.16666666651144624),
    ("0.1428571429", 306783378, "0.14285714272", 0.14285714272409678),
    ("0.1250000000", 268435456, "0.12500000000", 0.125),
    ("0.1111111111", 238609294, "0.11111111101", 0.11111111100763083),
    ("0.1000000000", 214748365, "0.10000000009", 0.10000000009313226),
]


def test_constants() -> None:
    assert RANDOM_BITS == 31
    assert THRESHOLD_SCALE == 0x80000000


@pytest.mark.parametrize(("written", "stored", "saved", "exact"), WORKED)
def test_worked_values(written: str, stored: int, saved: str, exact: float) -> None:
    assert threshold_from_probability(written) == stored
    assert threshold_from_probability(float(written)) == stored
    assert format_saved_probability(stored) == saved
    assert probability_from_threshold(stored) == exact


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (0.0, 0),
        (-0.0, 0),
        (1.0, THRESHOLD_SCALE),
        (0.5, 1 << 30),
        # Exact halves: C lround goes away from zero, unlike Python's round() (half to even).
        (0.5 / THRESHOLD_SCALE, 1),
        (2.5 / THRESHOLD_SCALE, 3),
        (4.5 / THRESHOLD_SCALE, 5),
        # Just below a half must round down (floor(x + 0.5) would get this wrong).
        (math.nextafter(0.5, 0.0) / THRESHOLD_SCALE, 0),
        (math.nextafter(2.5, 0.0) / THRESHOLD_SCALE, 2),
    ],
)
def test_threshold_rounds_like_c_lround(p: float, expected: int) -> None:
    assert threshold_from_probability(p) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.5", 0.5),
        ("  0.5", 0.5),  # strtod skips leading white space
        ("1", 1.0),
        ("+.25", 0.25),
        ("5e-1", 0.5),
        ("0x1p-1", 0.5),
        ("0X.8", 0.5),
        ("-0", -0.0),
    ],
)
def test_parse_c_double(text: str, expected: float) -> None:
    assert parse_c_double(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "0.5 ", "1_0", "0.5x", "--1", "0x", "."])
def test_parse_c_double_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a C double"):
        parse_c_double(text)


@pytest.mark.parametrize("p", ["1.5", "-0.1", "nan", "inf", 1.0000001, -1e-300, float("nan")])
def test_threshold_rejects_out_of_range(p: float | str) -> None:
    with pytest.raises(ValueError, match="outside"):
        threshold_from_probability(p)


@pytest.mark.parametrize("t", [-1, THRESHOLD_SCALE + 1])
def test_threshold_bounds(t: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        probability_from_threshold(t)
    with pytest.raises(ValueError, match="outside"):
        format_saved_probability(t)


def test_saved_format_ties_round_to_even() -> None:
    # 2^19 / 2^31 = 0.000244140625 exactly: a tie at the 11th decimal. glibc printf (and
    # Python) round exact ties to even.
    assert format_saved_probability(1 << 19) == "0.00024414062"
    assert format_saved_probability(3 << 19) == "0.00073242188"


@given(st.floats(min_value=0.0, max_value=1.0))
def test_threshold_is_nearest(p: float) -> None:
    t = threshold_from_probability(p)
    assert 0 <= t <= THRESHOLD_SCALE
    assert abs(t - p * THRESHOLD_SCALE) <= 0.5


@given(st.integers(min_value=0, max_value=THRESHOLD_SCALE))
def test_saved_text_restores_same_threshold(t: int) -> None:
    # iptables-save | iptables-restore must not drift: 11 decimals resolve 2^-31 steps.
    assert threshold_from_probability(format_saved_probability(t)) == t
    assert threshold_from_probability(probability_from_threshold(t)) == t


def test_draw_u31_range_and_type() -> None:
    rng = np.random.default_rng(7)
    draws = draw_u31(rng, 200_000)
    assert draws.dtype == np.uint32
    assert draws.shape == (200_000,)
    assert int(draws.max()) < THRESHOLD_SCALE
    # Bit 30 (the highest kept bit) is set about half the time, so the range is really 31 bits.
    high = np.count_nonzero(draws >= np.uint32(1 << 30)) / draws.size
    assert 0.49 < high < 0.51
    assert abs(float(draws.mean()) / (1 << 30) - 1.0) < 0.01


@pytest.mark.parametrize("size", [0, 1, 7, (3, 5)])
def test_draw_u31_shapes(size: int | tuple[int, ...]) -> None:
    draws = draw_u31(np.random.default_rng(1), size)
    assert draws.shape == ((size,) if isinstance(size, int) else size)


def test_draw_u31_is_seeded() -> None:
    a = draw_u31(np.random.default_rng(42), 1000)
    b = draw_u31(np.random.default_rng(42), 1000)
    c = draw_u31(np.random.default_rng(43), 1000)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    ("draw", "threshold", "expected"),
    [
        (0, 0, False),
        (0, 1, True),
        (715827882, 715827883, True),
        (715827883, 715827883, False),
        (THRESHOLD_SCALE - 1, THRESHOLD_SCALE, True),
        (THRESHOLD_SCALE - 1, THRESHOLD_SCALE - 1, False),
    ],
)
def test_matches_scalar(draw: int, threshold: int, expected: bool) -> None:
    assert matches(draw, threshold) is expected
    assert bool(matches(np.array([draw], dtype=np.uint32), threshold)[0]) is expected


def test_matches_extremes_on_arrays() -> None:
    draws = draw_u31(np.random.default_rng(3), 10_000)
    assert matches(draws, THRESHOLD_SCALE).all()
    assert not matches(draws, 0).any()
    with pytest.raises(ValueError, match="outside"):
        matches(draws, THRESHOLD_SCALE + 1)


def test_match_rate_is_threshold_over_2_31() -> None:
    draws = draw_u31(np.random.default_rng(5), 1_000_000)
    rate = np.count_nonzero(matches(draws, 715827883)) / draws.size
    # Binomial standard deviation ~4.7e-4; 5 sigma.
    assert abs(rate - 715827883 / THRESHOLD_SCALE) < 2.4e-3
