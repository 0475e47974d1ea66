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
        times, us = [self._times], [self._u]
        while self._generated_to < until_s:
            start, end, rate = next(self._grid)
            if rate > 0 and end > start:
                n = int(self._rng.poisson(rate * (end - start)))
                times.append(np.sort(start + (end - start) * self._rng.random(n)))
                us.append(self._rng.random(n))
            self._generated_to = end
        self._times, self._u = np.concatenate(times), np.concatenate(us)

    def take(self, t0: float, t1: float) -> tuple[FloatArray, FloatArray]:
        """Arrival times in ``[t0, t1)`` and their client uniforms; windows must not go back.

        Arrivals before ``t0`` that were never taken are discarded.
        """
        if t1 > self._generated_to:
            self._generate(t1)
        start = int(np.searchsorted(self._times, t0, side="left"))
        stop = int(np.searchsorted(self._times, t1, side="left"))
        out = self._times[start:stop], self._u[start:stop]
        self._times, self._u = self._times[stop:], self._u[stop:]
        return out
