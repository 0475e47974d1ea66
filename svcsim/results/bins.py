"""The time bins of the figures, and the instants that separate them.

One source of truth for the bins the outcome timeline and the endpoint-share figure count
attempts in (:mod:`svcsim.plots`), and for the instants at which the record level
``failures-and-aggregates`` cuts its counts (:mod:`svcsim.results.aggregate`), so that counts
never straddle a bin edge and the figures drawn from them are those drawn from every request.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

NICE_BINS_S: Final[tuple[float, ...]] = (
    0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0,
    300.0, 600.0, 900.0, 1800.0, 3600.0,
)  # fmt: skip
"""Bin widths a figure may use (seconds)."""

TIMELINE_BINS: Final = 120
"""About how many bins the outcome timeline has over a run."""
SHARES_BINS: Final = 60
"""About how many bins the endpoint-share figure has: coarser than the outcome timeline, as a
share needs a few requests per bin to mean anything."""
COUNT_BIN_S: Final = 1.0
"""Counts of ``failures-and-aggregates`` are at least per whole simulated second."""


def time_bin_s(span_s: float, target_bins: int = TIMELINE_BINS) -> float:
    """A round bin width giving about ``target_bins`` bins over ``span_s`` seconds.

    Picks the largest "nice" width (1, 2, 5 × a power of ten, or a whole number of minutes)
    that gives at least ``target_bins`` bins, so short runs still show sub-second detail.
    """
    if not span_s > 0 or not math.isfinite(span_s):
        return 1.0
    ideal = span_s / target_bins
    fitting = [b for b in NICE_BINS_S if b <= ideal]
    return fitting[-1] if fitting else NICE_BINS_S[0]


def figure_bins_s(span_s: float) -> tuple[float, ...]:
    """The bin widths any reader of a run of ``span_s`` seconds counts attempts in."""
    return tuple(
        sorted({COUNT_BIN_S, time_bin_s(span_s, TIMELINE_BINS), time_bin_s(span_s, SHARES_BINS)})
    )


def bin_edges(span_s: float, bin_s: float) -> npt.NDArray[np.float64]:
    """The edges a figure's histogram uses: ``0, bin_s, 2 bin_s, ...`` up to past ``span_s``."""
    return np.arange(0.0, span_s + bin_s, bin_s)


def grid_cuts(span_s: float, widths: Sequence[float] | None = None) -> npt.NDArray[np.float64]:
    """Every instant in ``[0, span_s]`` where a figure bin of a ``span_s`` run may start.

    For each width of :func:`figure_bins_s` (or of ``widths``): the histogram edges
    :func:`bin_edges` and, for readers that bin by ``floor(t / bin_s)``, the smallest float
    ``t`` with each next quotient (rounding puts it a few ulps off ``k * bin_s``). Sorted,
    unique.
    """
    parts = []
    for bin_s in figure_bins_s(span_s) if widths is None else widths:
        edges = bin_edges(span_s, bin_s)
        parts.append(edges)
        parts.append(_floor_starts(edges, bin_s))
    cuts = np.unique(np.concatenate(parts))
    return cuts[(cuts >= 0.0) & (cuts <= span_s)]


def _floor_starts(edges: npt.NDArray[np.float64], bin_s: float) -> npt.NDArray[np.float64]:
    """For ``edges[k] ~ k * bin_s``: the smallest float ``t`` with ``floor(t / bin_s) >= k``."""
    k = np.arange(len(edges), dtype=np.float64)
    t = edges.copy()
    for _ in range(64):  # a few ulps at most
        low = np.floor(t / bin_s) < k
        t = np.where(low, np.nextafter(t, np.inf), t)
        before = np.nextafter(t, -np.inf)
        high = (np.floor(before / bin_s) >= k) & ~low
        t = np.where(high, before, t)
        if not (low.any() or high.any()):
            break
    return t
