"""Per-attempt randomness: one 64-bit seed per attempt, everything else derived from it.

Every attempt takes one raw 64-bit value from its source node's ``kernel/<node>/statistic``
stream, in chronological order of the node's attempts. Its draws and the uniform that picks its
service time are pure functions of that seed: SplitMix64's finaliser (Steele, Lea, Flood, "Fast
splittable pseudorandom number generators", OOPSLA 2014) applied to ``seed + (j + 1) x golden``
gives draw slot ``j``'s 32-bit value ``d32`` (the top half). nf_tables' ``numgen`` takes one
``get_random_u32()`` per numgen reached: ``d32`` of slots 0, 1, ... in walk order. iptables'
statistic match takes ``get_random_u32() & 0x7fffffff`` per ``-m statistic`` rule reached: here
``d32 >> 1`` of the same slots (31 uniform bits either way), so ``draw31 < threshold`` exactly
when ``d32 < 2 x threshold`` and the batched engine compares 32-bit draws for both modes. So
the batched path (a draws matrix, row = attempt) and the per-request reference (a draw
callable per attempt) see identical values however many draws the rules need, and a ruleset
change never shifts another attempt's draws.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np
import numpy.typing as npt

_MASK64: Final = (1 << 64) - 1
_GOLDEN: Final = 0x9E3779B97F4A7C15
_M1: Final = 0xBF58476D1CE4E5B9
_M2: Final = 0x94D049BB133111EB
SERVICE_SLOT: Final = 1 << 20
"""Index of the service-time uniform in an attempt's sequence (beyond any statistic draw)."""

U64 = npt.NDArray[np.uint64]


def _mix(z: U64) -> U64:
    """SplitMix64's output function on an array (uint64 arithmetic wraps, as in C)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


def _mix_int(z: int) -> int:
    z &= _MASK64
    z = ((z ^ (z >> 30)) * _M1) & _MASK64
    z = ((z ^ (z >> 27)) * _M2) & _MASK64
    return z ^ (z >> 31)


def draws32_i64(seeds: U64, k: int) -> npt.NDArray[np.int64]:
    """The ``(len(seeds), k)`` matrix of 32-bit draws ``d32`` as int64: row i is attempt i's."""
    return _draws_shifted(seeds, k, 32)


def statistic_draws(seeds: U64, k: int) -> npt.NDArray[np.uint32]:
    """The ``(len(seeds), k)`` matrix of 31-bit draws: row i is attempt i's draw sequence."""
    draws: npt.NDArray[np.uint32] = statistic_draws_i64(seeds, k).astype(np.uint32)
    return draws


def statistic_draws_i64(seeds: U64, k: int) -> npt.NDArray[np.int64]:
    """:func:`statistic_draws` as int64 (no conversion: ready to compare with thresholds)."""
    return _draws_shifted(seeds, k, 33)


def _draws_shifted(seeds: U64, k: int, shift: int) -> npt.NDArray[np.int64]:
    steps = np.arange(1, k + 1, dtype=np.uint64) * np.uint64(_GOLDEN)
    z = np.add.outer(seeds, steps)
    # _mix in place (the matrix is the chunk's largest array; no temporaries but one).
    t = z >> np.uint64(30)
    z ^= t
    z *= np.uint64(_M1)
    np.right_shift(z, np.uint64(27), out=t)
    z ^= t
    z *= np.uint64(_M2)
    np.right_shift(z, np.uint64(31), out=t)
    z ^= t
    z >>= np.uint64(shift)
    draws: npt.NDArray[np.int64] = z.view(np.int64)
    return draws


def statistic_draw(seed: int, j: int) -> int:
    """Draw ``j`` (0-based) of the attempt with ``seed``; equal to ``statistic_draws``' cell."""
    return _mix_int(seed + (j + 1) * _GOLDEN) >> 33


def draw32(seed: int, j: int) -> int:
    """32-bit draw ``j`` (0-based) of the attempt with ``seed``; ``statistic_draw`` is it >> 1."""
    return _mix_int(seed + (j + 1) * _GOLDEN) >> 32


class SeedDraws:
    """A draw source for :func:`~svcsim.netfilter.interpreter.trace`: an attempt's draws."""

    __slots__ = ("_next", "_seed")

    def __init__(self, seed: int) -> None:
        self._seed = int(seed)
        self._next = 0

    def __call__(self) -> int:
        """The next draw."""
        value = statistic_draw(self._seed, self._next)
        self._next += 1
        return value


class SeedDraws32:
    """A numgen draw source for :func:`~svcsim.netfilter.nft_eval.walk_nft`: 32-bit draws."""

    __slots__ = ("_next", "_seed")

    def __init__(self, seed: int) -> None:
        self._seed = int(seed)
        self._next = 0

    def __call__(self) -> int:
        """The next draw."""
        value = draw32(self._seed, self._next)
        self._next += 1
        return value


def service_uniforms(seeds: U64) -> npt.NDArray[np.float64]:
    """The uniform in (0, 1) each attempt's service time is drawn with (53-bit, never 0 or 1)."""
    z = _mix(seeds + np.uint64((SERVICE_SLOT * _GOLDEN) & _MASK64))
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


class SeedStream:
    """One node's seeds: the next raw 64-bit outputs of its ``kernel/<node>/statistic`` stream.

    ``take(n)`` returns the same values however the requests are split into calls.
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self._bits = rng.bit_generator

    def take(self, n: int) -> U64:
        """The next ``n`` seeds."""
        if n == 0:
            return np.empty(0, dtype=np.uint64)
        raw = self._bits.random_raw(n)
        return np.asarray(raw, dtype=np.uint64).reshape(n)


SEED_BLOCK: Final = 512
"""Seeds a :class:`SeedBank` fetches ahead per node (at least; more for a larger chunk)."""


class SeedBank:
    """Every node's :class:`SeedStream` at once: each attempt gets its node's next seed.

    The seeds of each node are fetched ahead into one row of a matrix (a stream's values are
    the same however they are split into fetches, and nothing else reads these streams), so a
    chunk's seeds are one gather rather than a call per node. ``open_stream(node)`` gives a
    node's Generator; it is asked the first time the node has an attempt, in node order (as
    taking seed by seed would).
    """

    def __init__(self, nodes: int, open_stream: Callable[[int], np.random.Generator]) -> None:
        self._open = open_stream
        self._bits: list[np.random.BitGenerator | None] = [None] * nodes
        self._width = SEED_BLOCK
        self._rows = np.zeros((nodes, self._width), dtype=np.uint64)
        self._pos = np.full(nodes, self._width, dtype=np.int64)
        """Per node, the first seed of its row not handed out (the width: none left)."""

    def take(self, nodes: npt.NDArray[np.int32]) -> U64:
        """One seed per entry of ``nodes`` (node indices): each node's next, in this order."""
        n = len(self._bits)
        if not len(nodes):
            return np.empty(0, dtype=np.uint64)
        counts = np.bincount(nodes, minlength=n)
        widest = int(counts.max())
        if widest > self._width:
            self._widen(max(2 * self._width, widest))
        for node in np.flatnonzero(self._pos + counts > self._width).tolist():
            self._refill(node)
        # Each attempt's rank among its node's attempts, in chunk order (a stable sort).
        keys = nodes.astype(np.uint16) if n <= 1 << 16 else nodes  # numpy radix-sorts 16 bits
        order = np.argsort(keys, kind="stable")
        starts = np.cumsum(counts) - counts
        rank = np.empty(len(nodes), dtype=np.int64)
        rank[order] = np.arange(len(nodes)) - starts[nodes[order]]
        seeds: U64 = self._rows[nodes, self._pos[nodes] + rank]
        self._pos += counts
        return seeds

    def _refill(self, node: int) -> None:
        """The node's row: its seeds not yet handed out, then fresh ones from its stream."""
        bits = self._bits[node]
        if bits is None:
            bits = self._bits[node] = self._open(node).bit_generator
        left = self._rows[node, self._pos[node] :].copy()
        fresh = np.asarray(bits.random_raw(self._width - len(left)), dtype=np.uint64)
        self._rows[node, : len(left)] = left
        self._rows[node, len(left) :] = fresh
        self._pos[node] = 0

    def _widen(self, width: int) -> None:
        """Rows of ``width`` seeds (for a chunk with more attempts on one node than a row)."""
        rows = np.zeros((len(self._bits), width), dtype=np.uint64)
        pos = np.full(len(self._bits), width, dtype=np.int64)
        for node, bits in enumerate(self._bits):
            if bits is not None:  # keep what it has fetched, in order, at the row's end
                left = self._rows[node, self._pos[node] :]
                rows[node, width - len(left) :] = left
                pos[node] = width - len(left)
        self._rows, self._pos, self._width = rows, pos, width
