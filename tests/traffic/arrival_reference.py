"""The arrival generator as it was before pieces were capped by count, kept to compare draws.

Below the cap the current :class:`~svcsim.traffic.arrivals.ArrivalStream` must draw exactly
these numbers, so that runs at ordinary rates keep their records byte for byte.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from svcsim.traffic.arrivals import FloatArray


def uncapped_arrivals(
    rate: tuple[tuple[float, float], ...],
    rng: np.random.Generator,
    until_s: float,
    block_s: float = 1.0,
) -> tuple[FloatArray, FloatArray]:
    """Every arrival in whole blocks up to ``until_s`` (times, client uniforms), block by block."""

    def rate_at(t_s: float) -> float:
        current = 0.0
        for step_s, value in rate:
            if step_s <= t_s:
                current = value
        return current

    times, us = [np.empty(0)], [np.empty(0)]
    a = 0.0
    while a < until_s:
        b = (math.floor(a / block_s + 1e-9) + 1) * block_s
        cuts = [a] + [t for t, _ in rate if a < t < b] + [b]
        for start, end in itertools.pairwise(cuts):
            r = rate_at(start)
            if r <= 0 or end <= start:
                continue
            n = int(rng.poisson(r * (end - start)))
            times.append(np.sort(start + (end - start) * rng.random(n)))
            us.append(rng.random(n))
        a = b
    return np.concatenate(times), np.concatenate(us)
