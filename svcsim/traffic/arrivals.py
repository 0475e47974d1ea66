"""Open-loop Poisson arrivals at a piecewise-constant rate, independent of how time is cut.

Arrivals are generated block by block on a fixed grid (``block_s``, split further at rate
changes): per piece of constant rate ``r`` and length ``L``, the count is ``Poisson(r L)`` and
the times are sorted uniforms, each with a uniform that later picks the client. The engine asks
for ``[t0, t1)`` windows whose bounds follow the control plane's events; because the grid does
not, the arrivals (and so the run) do not depend on where those events fall, nor on whether
windows are resolved one by one or merged.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


class ArrivalStream:
    """The arrivals of one workload, handed out in consecutive windows."""

    def __init__(
        self,
        rate: tuple[tuple[float, float], ...],
        rng: np.random.Generator,
        block_s: float = 1.0,
    ) -> None:
        if not block_s > 0:
            raise ValueError(f"block_s must be > 0, got {block_s!r}")
        self._rate = rate
        self._rng = rng
        self._block_s = block_s
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

    def _generate(self, until_s: float) -> None:
        times, us = [self._times], [self._u]
        while self._generated_to < until_s:
            a = self._generated_to
            b = (math.floor(a / self._block_s + 1e-9) + 1) * self._block_s
            for start, end, rate in self._pieces(a, b):
                if rate <= 0 or end <= start:
                    continue
                n = int(self._rng.poisson(rate * (end - start)))
                times.append(np.sort(start + (end - start) * self._rng.random(n)))
                us.append(self._rng.random(n))
            self._generated_to = b
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
