"""kube-proxy's nftables endpoint choice, ``numgen random mod N vmap``, exactly and by simulation.

For a Service with N endpoints, kube-proxy's nftables proxier writes one rule
``numgen random mod N vmap { 0 : goto endpoint-..., ..., N-1 : goto endpoint-... }``
(kubernetes ``pkg/proxy/nftables/proxier.go`` @b0f823e6, ``writeServiceToEndpointRules``). The
kernel maps one 32-bit draw to an index with ``reciprocal_scale``
(:mod:`svcsim.netfilter.numgen`), so endpoint ``k`` is chosen with probability exactly
``count_k / 2^32``: one rounding, where iptables mode's chain has two
(:mod:`svcsim.proxy.probability`).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Final

import numpy as np
import numpy.typing as npt

from svcsim.netfilter.numgen import (
    RANDOM_SCALE,
    draw_u32,
    first_draw,
    scale_many,
    value_counts,
)

CHUNK_DRAWS: Final = 1 << 20
"""Draws per vectorised chunk in :func:`simulate_numgen_picks` (bounds memory)."""


@dataclass(frozen=True, slots=True)
class NumgenChoice:
    """One element of the numgen vmap: which draws pick it, how many, and its exact share."""

    index: int
    first_draw: int
    """The smallest 32-bit draw mapped to this index: ``ceil(index * 2^32 / N)``."""
    count: int
    """How many of the 2^32 draws map here."""
    probability: Fraction
    deviation: float
    """``probability - 1/N`` as a float (computed exactly, then rounded once)."""


def numgen_rule(n: int) -> str:
    """The rule text for N endpoints, with endpoint chains shown as ``ep0``..."""
    choices = " , ".join(f"{k} : goto ep{k}" for k in range(n))
    return f"numgen random mod {n} vmap {{ {choices} }}"


def analyse_numgen(n: int) -> tuple[NumgenChoice, ...]:
    """Every endpoint's exact share for ``numgen random mod n``; ValueError for n < 1."""
    counts = value_counts(n)
    return tuple(
        NumgenChoice(
            index=k,
            first_draw=first_draw(k, n),
            count=count,
            probability=Fraction(count, RANDOM_SCALE),
            deviation=float(Fraction(count, RANDOM_SCALE) - Fraction(1, n)),
        )
        for k, count in enumerate(counts)
    )


def simulate_numgen_picks(
    n: int, samples: int, rng: np.random.Generator, chunk_draws: int = CHUNK_DRAWS
) -> npt.NDArray[np.int64]:
    """Picks per endpoint over ``samples`` new connections, drawn the kernel's way."""
    if samples < 0:
        raise ValueError(f"samples {samples!r} must be >= 0")
    counts = np.zeros(n, dtype=np.int64)
    left = samples
    while left > 0:
        size = min(left, chunk_draws)
        counts += np.bincount(scale_many(draw_u32(rng, size), n), minlength=n)
        left -= size
    return counts
