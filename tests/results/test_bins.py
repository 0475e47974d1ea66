"""Tests for svcsim.results.bins: the figures' bins and the cuts that keep counts inside them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcsim.results.bins import (
    COUNT_BIN_S,
    SHARES_BINS,
    TIMELINE_BINS,
    bin_edges,
    figure_bins_s,
    grid_cuts,
    time_bin_s,
)


@pytest.mark.parametrize(
    ("span_s", "expected"),
    [(10.0, (0.05, 0.1, 1.0)), (600.0, (1.0, 5.0, 10.0)), (86400.0, (1.0, 600.0, 900.0))],
)
def test_figure_bins_are_the_figures_widths_and_whole_seconds(
    span_s: float, expected: tuple[float, ...]
) -> None:
    assert figure_bins_s(span_s) == expected
    assert set(expected) == {
        COUNT_BIN_S,
        time_bin_s(span_s, TIMELINE_BINS),
        time_bin_s(span_s, SHARES_BINS),
    }


@pytest.mark.parametrize("span_s", [3.0, 10.0, 24.0, 30.0, 100.0, 700.0])
def test_cuts_hold_each_floor_quotient_start(span_s: float) -> None:
    """Every bin k of every width: a cut at the smallest t with floor(t / bin_s) >= k."""
    cuts = grid_cuts(span_s)
    for bin_s in figure_bins_s(span_s):
        quotient = np.floor(cuts / bin_s)
        for k in range(1, int(span_s / bin_s)):
            first = cuts[quotient >= k].min()
            assert np.floor(first / bin_s) == k
            assert np.floor(np.nextafter(first, -np.inf) / bin_s) < k


@settings(max_examples=200, deadline=None)
@given(span_s=st.floats(1.0, 5000.0), fraction=st.floats(0.0, 1.0))
def test_no_bin_edge_or_quotient_change_between_a_time_and_its_last_cut(
    span_s: float, fraction: float
) -> None:
    cuts = grid_cuts(span_s)
    t = fraction * span_s
    start = cuts[np.searchsorted(cuts, t, side="right") - 1]
    for bin_s in figure_bins_s(span_s):
        assert np.floor(start / bin_s) == np.floor(t / bin_s)
        edges = bin_edges(span_s, bin_s)
        assert np.searchsorted(edges, start, "right") == np.searchsorted(edges, t, "right")
