"""numgen random mod N: reciprocal_scale, exact counts, and agreement at the boundaries."""

from __future__ import annotations

import bisect
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcsim.netfilter.numgen import (
    MODULUS_MAX,
    RANDOM_SCALE,
    draw_u32,
    first_draw,
    reciprocal_scale,
    scale_many,
    u32_draws_from,
    value_counts,
    value_probabilities,
)

MODULI = (1, 2, 3, 5, 7, 10, 100, 1000, 65537, (1 << 31) + 1)


@pytest.mark.parametrize("n", [m for m in MODULI if m <= 100_000])
def test_counts_sum_to_every_draw_and_differ_by_at_most_one(n: int) -> None:
    counts = value_counts(n)
    assert sum(counts) == RANDOM_SCALE
    assert max(counts) - min(counts) <= 1
    assert sum(value_probabilities(n)) == 1


@pytest.mark.parametrize("n", MODULI)
def test_scale_and_first_draw_agree_at_every_boundary(n: int) -> None:
    """r = floor(k * 2^32 / N) and its neighbours map to the index the counts say."""
    ks = sorted({k for k in (0, 1, n // 2, n - 1) if 0 <= k < n})
    starts = [first_draw(k, n) for k in range(n)] if n <= 100_000 else None
    for k in ks:
        boundary = k * RANDOM_SCALE // n
        for r in (boundary - 1, boundary, boundary + 1):
            if not 0 <= r < RANDOM_SCALE:
                continue
            expected = r * n // RANDOM_SCALE
            assert reciprocal_scale(r, n) == expected
            if starts is not None:
                assert bisect.bisect_right(starts, r) - 1 == expected
        assert reciprocal_scale(first_draw(k, n), n) == k
        if k > 0:
            assert reciprocal_scale(first_draw(k, n) - 1, n) == k - 1


def test_power_of_two_moduli_are_exactly_uniform() -> None:
    for n in (1, 2, 4, 1024):
        assert set(value_counts(n)) == {RANDOM_SCALE // n}


def test_vectorised_scale_matches_the_scalar_one() -> None:
    draws = draw_u32(np.random.default_rng(5), 10_000)
    for n in (3, 7, 1000):
        got = scale_many(draws, n)
        assert got.tolist() == [reciprocal_scale(int(r), n) for r in draws]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: reciprocal_scale(RANDOM_SCALE, 3), "outside"),
        (lambda: reciprocal_scale(-1, 3), "outside"),
        (lambda: reciprocal_scale(0, 0), "modulus"),
        (lambda: value_counts(0), "modulus"),
        (lambda: draw_u32(np.random.default_rng(0), -1), "negative"),
    ],
)
def test_bad_arguments_are_named(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


def test_draw_source_is_deterministic_and_32_bit() -> None:
    a = u32_draws_from(np.random.default_rng(9), block=3)
    b = u32_draws_from(np.random.default_rng(9), block=7)
    first = [a() for _ in range(20)]
    assert first == [b() for _ in range(20)]
    assert all(0 <= v < RANDOM_SCALE for v in first)
    many = list(itertools.islice(iter(u32_draws_from(np.random.default_rng(1)), None), 4096))
    assert max(many) >= 1 << 31  # the top bit is kept (unlike xt_statistic's 31 bits)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, MODULUS_MAX), r=st.integers(0, RANDOM_SCALE - 1))
def test_every_draw_lies_in_the_interval_of_the_value_it_scales_to(n: int, r: int) -> None:
    """For any N and draw r: ceil(k 2^32 / N) <= r < ceil((k+1) 2^32 / N) with k = scale(r)."""
    k = reciprocal_scale(r, n)
    assert 0 <= k < n
    assert first_draw(k, n) <= r
    assert k == n - 1 or r < first_draw(k + 1, n)
