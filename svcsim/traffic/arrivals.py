"""Open-loop Poisson arrivals at a piecewise-constant rate, independent of how time is cut.

Arrivals are generated block by block on a fixed grid (``block_s``, split further at rate
changes): per piece of constant rate ``r`` and length ``L``, the count is ``Poisson(r L)`` and
the times are sorted uniforms, each with a uniform that later picks the client. The engine asks
for ``[t0, t1)`` windows whose bounds follow the control plane's events; because the grid does
not, the arrivals (and so the run) do not depend on where those events fall, nor on whether
windows are resolved one by one or merged.

Memory is bounded by count as well as by time: a piece expected to hold more than
:data:`PIECE_MAX_ARRIVALS` arrivals is cut into equal parts (still on the fixed grid: the cut
depends on the rate schedule only), and pieces are drawn only as far as a window needs. Pieces
under the cap are drawn exactly as before the cap existed, so runs below it keep their draws.
(A Poisson process restricted to disjoint intervals is independent Poisson processes, so the
cut changes which numbers are drawn, not the distribution of the arrivals.)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

PIECE_MAX_ARRIVALS: Final = 1_000_000
"""Most arrivals one piece is expected to hold (about 16 MB of times and client uniforms);
a piece of constant rate expected to hold more is cut into equal parts."""

AHEAD_PIECES: Final = 16
"""Pieces drawn past the end a window asks for (at most; fewer past the piece cap's
expected arrivals): per-piece work is then done in batches, not per window."""

AHEAD_MAX_ARRIVALS: Final = 1 << 15
"""Expected arrivals drawn ahead at most, and never more than one piece's cap (a piece
expected to hold more is not drawn ahead)."""

Piece = tuple[float, float, float]
"""``(start_s, end_s, rate_per_s)``: an interval of constant rate on the generation grid."""


class ArrivalStream:
    """The arrivals of one workload, handed out in consecutive windows."""

    def __init__(
        self,
        rate: tuple[tuple[float, float], ...],
        rng: np.random.Generator,
        block_s: float = 1.0,
        *,
        piece_max_arrivals: int = PIECE_MAX_ARRIVALS,
    ) -> None:
        if not block_s > 0:
            raise ValueError(f"block_s must be > 0, got {block_s!r}")
        if piece_max_arrivals < 1:
            raise ValueError(f"piece_max_arrivals must be >= 1, got {piece_max_arrivals!r}")
        self._rate = rate
        self._rng = rng
        self._block_s = block_s
        self._piece_max = piece_max_arrivals
        self._grid = self._grid_pieces()
        self._generated_to = 0.0
        self._times: FloatArray = np.empty(0)
        self._u: FloatArray = np.empty(0)

    def rate_at(self, t_s: float) -> float:
        """The rate in force at ``t_s``."""
        rate = 0.0
        for step_s, value in self._rate:
            if step_s <= t_s:
                rate = value
        return rate

    def _pieces(self, a: float, b: float) -> list[tuple[float, float, float]]:
        """``[a, b)`` split at rate changes: ``(start, end, rate)``."""
        last_step, last_rate = self._rate[-1] if self._rate else (math.inf, 0.0)
        if last_step <= a:  # past the last change (a constant rate: always)
            return [(a, b, last_rate)]
        cuts = [a] + [t for t, _ in self._rate if a < t < b] + [b]
        return [(s, e, self.rate_at(s)) for s, e in itertools.pairwise(cuts)]

    def max_rate(self, t0: float, t1: float) -> float:
        """The highest rate in force anywhere in ``[t0, t1)``."""
        if self._rate and self._rate[-1][0] <= t0:  # past the last change (as _pieces)
            return self._rate[-1][1]
        return max(rate for _, _, rate in self._pieces(t0, t1))

    def _grid_pieces(self) -> Iterator[Piece]:
        """Every piece of the generation grid, in time order, without end.

        Blocks of ``block_s``, cut at rate changes; a piece expected to hold more than the
        cap is cut into the fewest equal parts that each stay under it.
        """
        a = 0.0
        while True:
            b = (math.floor(a / self._block_s + 1e-9) + 1) * self._block_s
            for start, end, rate in self._pieces(a, b):
                parts = math.ceil(rate * (end - start) / self._piece_max) if rate > 0 else 1
                if parts <= 1:
                    yield start, end, rate
                    continue
                # The last part ends exactly at `end`, so the next piece starts where it ends.
                cuts = [start + (end - start) * j / parts for j in range(parts)] + [end]
                for s, e in itertools.pairwise(cuts):
                    yield s, e, rate
            a = b

    def _generate(self, until_s: float) -> None:
        """Draw pieces up to ``until_s``, and on for up to :data:`AHEAD_PIECES` more.

        Each piece draws its count, then its times' uniforms, then its clients' uniforms
        (one ``random(2 n)``: the same numbers as two ``random(n)``); drawing ahead only
        moves draws earlier, never reorders them. Pieces are sorted together: they cover
        disjoint, increasing intervals, so one sort gives what one sort per piece gives
        (checked; otherwise piece by piece).
        """
        rng = self._rng
        starts: list[float] = []
        lengths: list[float] = []
        counts: list[int] = []
        draws: list[FloatArray] = []
        us: list[FloatArray] = []
        ahead = 0
        expected = last = 0.0
        while self._generated_to < until_s or (
            ahead < AHEAD_PIECES and expected + last <= min(AHEAD_MAX_ARRIVALS, self._piece_max)
        ):
            start, end, rate = next(self._grid)
            if self._generated_to >= until_s:
                ahead += 1
            self._generated_to = end
            if rate > 0 and end > start:
                last = rate * (end - start)
                n = int(rng.poisson(last))
                both = rng.random(2 * n)
                draws.append(both[:n])
                us.append(both[n:])
                starts.append(start)
                lengths.append(end - start)
                counts.append(n)
                if ahead:
                    expected += last
        if not draws:
            return
        if len(draws) == 1:
            times = np.sort(starts[0] + lengths[0] * draws[0])
        else:
            n_all = np.array(counts)
            times = _sorted_pieces(
                np.repeat(np.array(starts), n_all)
                + np.repeat(np.array(lengths), n_all) * np.concatenate(draws),
                n_all,
            )
        self._times = np.concatenate([self._times, times])
        self._u = np.concatenate([self._u, *us])

    def take(self, t0: float, t1: float) -> tuple[FloatArray, FloatArray]:
        """Arrival times in ``[t0, t1)`` and their client uniforms; windows must not go back.

        Arrivals before ``t0`` that were never taken are discarded.
        """
        if t1 > self._generated_to:
            self._generate(t1)
        times, u = self._times, self._u
        if not len(times):
            return times, u
        stop = int(times.searchsorted(t1, side="left"))
        # Windows follow each other: what is left usually starts in this one.
        start = 0 if times[0] >= t0 else int(times.searchsorted(t0, side="left"))
        self._times, self._u = times[stop:], u[stop:]
        return times[start:stop], u[start:stop]


def _sorted_pieces(times: FloatArray, counts: npt.NDArray[np.int64]) -> FloatArray:
    """``times`` (consecutive pieces of ``counts`` each) sorted within each piece.

    The pieces' intervals follow each other, so sorting all at once gives the same array
    unless rounding put a time of one piece past one of the next (then piece by piece).
    """
    bounds = np.concatenate([[0], np.cumsum(counts)])
    filled = counts > 0
    starts = bounds[:-1][filled]
    if len(starts) > 1:
        highs = np.maximum.reduceat(times, starts)
        lows = np.minimum.reduceat(times, starts)
        if not bool((highs[:-1] <= lows[1:]).all()):
            return np.concatenate(
                [np.sort(times[a:b]) for a, b in itertools.pairwise(bounds.tolist())]
            )
    return np.sort(times)
