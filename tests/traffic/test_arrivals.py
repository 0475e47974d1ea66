"""Arrival generation bounded by count: pieces under the cap keep their draws, larger ones split."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcsim.traffic.arrivals import PIECE_MAX_ARRIVALS, ArrivalStream, _sorted_pieces
from tests.traffic.arrival_reference import uncapped_arrivals


class SizeSpy:
    """A Generator stand-in that records the size of every ``random`` draw."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.sizes: list[int] = []

    def poisson(self, lam: float) -> Any:
        return self.rng.poisson(lam)

    def random(self, n: int) -> Any:
        self.sizes.append(n)
        return self.rng.random(n)


UNDER_CAP = [
    pytest.param(((0.0, 50.0),), id="constant"),
    pytest.param(((0.0, 50.0), (3.3, 0.0), (4.0, 200.0)), id="schedule-with-pause"),
    pytest.param(((2.5, 5000.0),), id="late-start"),
    pytest.param(((0.0, float(PIECE_MAX_ARRIVALS)),), id="exactly-the-cap-per-block"),
]


@pytest.mark.parametrize("schedule", UNDER_CAP)
def test_under_the_cap_the_draws_are_those_of_the_uncapped_generator(
    schedule: tuple[tuple[float, float], ...],
) -> None:
    want_t, want_u = uncapped_arrivals(schedule, np.random.default_rng(5), 6.0)
    got_t, got_u = ArrivalStream(schedule, np.random.default_rng(5)).take(0.0, 6.0)
    assert np.array_equal(got_t, want_t)
    assert np.array_equal(got_u, want_u)


CAP = 1_000


@pytest.mark.parametrize(
    ("rate", "window_s"),
    [
        pytest.param(100_000.0, 0.005, id="short-window"),
        pytest.param(100_000.0, 1.0, id="whole-block"),
        pytest.param(3_000_000.0, 0.25, id="many-parts"),
    ],
)
def test_no_draw_is_larger_than_the_cap_needs(rate: float, window_s: float) -> None:
    spy = SizeSpy(3)
    stream = ArrivalStream(((0.0, rate),), spy, piece_max_arrivals=CAP)  # type: ignore[arg-type]
    times, _ = stream.take(0.0, window_s)
    # A part's count is Poisson(<= CAP): 8 standard deviations above is never reached.
    # (One draw holds a part's times' and clients' uniforms: twice its count.)
    assert max(spy.sizes) < 2 * (CAP + 8 * math.sqrt(CAP))
    # Only what the window needs was drawn: at most one part beyond it.
    assert sum(spy.sizes) / 2 < rate * window_s + 2 * CAP
    assert abs(len(times) - rate * window_s) < 6 * math.sqrt(rate * window_s)


@settings(deadline=None, max_examples=40)
@given(st.lists(st.floats(0.0, 3.0), max_size=8))
def test_capped_arrivals_do_not_depend_on_the_windows(cuts: list[float]) -> None:
    schedule = ((0.0, 20_000.0), (1.3, 0.0), (1.7, 5_000.0))
    whole, u_whole = ArrivalStream(schedule, np.random.default_rng(1), piece_max_arrivals=CAP).take(
        0.0, 3.0
    )
    stream = ArrivalStream(schedule, np.random.default_rng(1), piece_max_arrivals=CAP)
    bounds = [0.0, *sorted(cuts), 3.0]
    taken = [stream.take(a, b) for a, b in itertools.pairwise(bounds)]
    assert np.array_equal(whole, np.concatenate([t for t, _ in taken]))
    assert np.array_equal(u_whole, np.concatenate([u for _, u in taken]))
    assert np.all(np.diff(whole) >= 0)
    assert not np.any((whole >= 1.3) & (whole < 1.7))


def test_capped_counts_keep_the_poisson_mean() -> None:
    counts = [
        len(
            ArrivalStream(
                ((0.0, 40_000.0),), np.random.default_rng(seed), piece_max_arrivals=CAP
            ).take(0.0, 0.5)[0]
        )
        for seed in range(100)
    ]
    # Mean 20,000 over 100 runs: within 4 standard errors.
    assert abs(np.mean(counts) - 20_000) < 4 * math.sqrt(20_000 / 100)


def test_max_rate_over_a_window() -> None:
    stream = ArrivalStream(((0.0, 10.0), (2.0, 50.0), (4.0, 5.0)), np.random.default_rng(0))
    assert stream.max_rate(0.0, 1.0) == 10.0
    assert stream.max_rate(1.0, 3.0) == 50.0
    assert stream.max_rate(4.5, 9.0) == 5.0


def test_a_cap_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="piece_max_arrivals"):
        ArrivalStream(((0.0, 1.0),), np.random.default_rng(0), piece_max_arrivals=0)


@settings(deadline=None, max_examples=30)
@given(
    cuts=st.lists(st.floats(0.0, 40.0), max_size=12),
    schedule=st.sampled_from(
        [((0.0, 50.0),), ((0.0, 30.0), (7.25, 0.0), (9.5, 400.0)), ((3.3, 5.0), (20.0, 80.0))]
    ),
)
def test_arrivals_drawn_ahead_are_those_drawn_piece_by_piece(
    cuts: list[float], schedule: tuple[tuple[float, float], ...]
) -> None:
    # Windows take what they need; the stream draws pieces ahead in batches: the same numbers.
    want_t, want_u = uncapped_arrivals(schedule, np.random.default_rng(3), 40.0)
    stream = ArrivalStream(schedule, np.random.default_rng(3))
    bounds = [0.0, *sorted(cuts), 40.0]
    taken = [stream.take(a, b) for a, b in itertools.pairwise(bounds)]
    assert np.array_equal(np.concatenate([t for t, _ in taken]), want_t)
    assert np.array_equal(np.concatenate([u for _, u in taken]), want_u)


def test_pieces_sorted_together_only_when_their_times_do_not_overlap() -> None:
    counts = np.array([3, 0, 2, 2])
    apart = np.array([0.5, 0.1, 0.9, 1.7, 1.2, 2.0, 2.5])
    assert np.array_equal(_sorted_pieces(apart, counts), np.sort(apart))
    # Rounding put a time of the first piece past one of the next: sorted piece by piece.
    overlapping = np.array([0.5, 1.0000001, 0.9, 1.7, 1.0, 2.0, 2.5])
    assert np.array_equal(
        _sorted_pieces(overlapping, counts), [0.5, 0.9, 1.0000001, 1.0, 1.7, 2.0, 2.5]
    )
