"""How many conntrack entries a node's anonymous flows hold at a time, without one object each.

A per-request TCP connection or an ephemeral-port UDP exchange needs its entry only for the
capacity check of later flows (nothing else ever looks it up), so the batched engine keeps just
each entry's expiry time. :class:`Occupancy` counts entries live at ``t`` (``expiry > t``, as
``nf_ct_is_expired``) exactly; queries must not go back in time. Expiries are kept in time bins
so that old ones are dropped in bulk and a count only scans the bin holding ``t``.
"""

from __future__ import annotations

import bisect
import heapq
import math

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


class Occupancy:
    """Expiry times of one node's anonymous conntrack entries."""

    def __init__(self, bin_s: float = 0.25) -> None:
        if not bin_s > 0:
            raise ValueError(f"bin_s must be > 0, got {bin_s!r}")
        self.bin_s = bin_s
        self._bins: dict[int, list[F64]] = {}
        self._heap: list[int] = []  # the bins' indices, lowest first (dropping needs no scan)
        self._total = 0
        self._floor = -(1 << 62)  # bins below this index are gone
        self._loose: list[float] = []  # sorted; one-by-one additions not yet binned

    def __len__(self) -> int:
        """Entries held (some may have expired since the last query)."""
        return self._total + len(self._loose)

    def _bin(self, t: float) -> int:
        return math.floor(t / self.bin_s)

    def _advance(self, t: float) -> None:
        current = self._bin(t)
        if current <= self._floor:
            return
        heap = self._heap
        while heap and heap[0] < current:
            self._total -= sum(len(a) for a in self._bins.pop(heapq.heappop(heap)))
        self._floor = current

    def live(self, t: float) -> int:
        """Entries whose expiry is after ``t``."""
        self._advance(t)
        held = self._bins.get(self._bin(t), ())
        expired = sum(int(np.count_nonzero(a <= t)) for a in held)
        loose = len(self._loose) - bisect.bisect_right(self._loose, t)
        return self._total - expired + loose

    def add(self, expiries: F64) -> None:
        """Add many entries at once (their expiries)."""
        if not len(expiries):
            return
        self.commit()
        self._add_array(np.asarray(expiries, dtype=np.float64))

    def _add_array(self, expiries: F64) -> None:
        bins = np.floor(expiries / self.bin_s).astype(np.int64)
        keep = bins >= self._floor
        expiries, bins = expiries[keep], bins[keep]
        if not len(expiries):
            return
        if bins.min() == bins.max():
            self._part(int(bins[0])).append(expiries)
        else:
            order = np.argsort(bins, kind="stable")
            expiries, bins = expiries[order], bins[order]
            starts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])
            for part, b in zip(np.split(expiries, starts[1:]), bins[starts], strict=True):
                self._part(int(b)).append(part)
        self._total += len(expiries)

    def add_binned(self, bins: list[int], parts: list[F64]) -> None:
        """Add entries already split by bin: ``parts[i]`` all fall in bin ``bins[i]``."""
        self.commit()
        for b, part in zip(bins, parts, strict=True):
            if b >= self._floor:
                self._part(b).append(part)
                self._total += len(part)

    def _part(self, b: int) -> list[F64]:
        found = self._bins.get(b)
        if found is None:
            found = self._bins[b] = []
            heapq.heappush(self._heap, b)
        return found

    def add_one(self, expiry: float) -> None:
        """Add one entry (kept aside until :meth:`commit`, so adding is cheap)."""
        bisect.insort(self._loose, expiry)

    def commit(self) -> None:
        """Move one-by-one additions into the bins."""
        if self._loose:
            loose, self._loose = np.array(self._loose), []
            self._add_array(loose)

    def shorten(self, old: float, new: float) -> None:
        """An entry that was to expire at ``old`` now expires at ``new`` (e.g. reset by RST)."""
        i = bisect.bisect_left(self._loose, old)
        if i < len(self._loose) and self._loose[i] == old:
            del self._loose[i]
        else:
            parts = self._bins.get(self._bin(old), [])
            for k, part in enumerate(parts):
                hit = np.flatnonzero(part == old)
                if len(hit):
                    parts[k] = np.delete(part, hit[0])
                    self._total -= 1
                    break
            else:
                return  # already expired and dropped
        self.add_one(new)


class OccupancyBook:
    """Every node's :class:`Occupancy`, fed in bulk, with a cheap upper bound per node.

    The batched engine adds a whole chunk's expiries at once (all nodes together, no sorting);
    they are sorted into the nodes' bins only when an exact count is needed, which is only when
    the bound - entries counted at the last exact count plus all added since - comes near a
    node's limit.
    """

    def __init__(self, nodes: int, bin_s: float = 0.25) -> None:
        self._occupancy = [Occupancy(bin_s) for _ in range(nodes)]
        self._bin_s = bin_s
        self._pending_nodes: list[npt.NDArray[np.intp]] = []
        self._pending_expiries: list[F64] = []
        self._bound = np.zeros(nodes, dtype=np.int64)

    def add(self, nodes: npt.NDArray[np.intp], expiries: F64) -> None:
        """Add entries of many nodes at once."""
        if len(nodes):
            self._pending_nodes.append(nodes)
            self._pending_expiries.append(expiries)
            self._bound += np.bincount(nodes, minlength=len(self._bound))

    def add_one(self, node: int, expiry: float) -> None:
        """Add one entry."""
        self._occupancy[node].add_one(expiry)
        self._bound[node] += 1

    def bound(self, node: int) -> int:
        """At least as many as the node's live entries, now and later (barring additions)."""
        return int(self._bound[node])

    def _sort_in(self) -> None:
        if not self._pending_nodes:
            return
        nodes = np.concatenate(self._pending_nodes)
        expiries = np.concatenate(self._pending_expiries)
        self._pending_nodes, self._pending_expiries = [], []
        # One sort by (node, bin) for every node at once (as each node's Occupancy.add would).
        bins = np.floor(expiries / self._bin_s).astype(np.int64)
        order = np.lexsort((bins, nodes))
        nodes, bins, expiries = nodes[order], bins[order], expiries[order]
        starts = np.flatnonzero(np.r_[True, (nodes[1:] != nodes[:-1]) | (bins[1:] != bins[:-1])])
        parts = np.split(expiries, starts[1:])
        part_nodes, part_bins = nodes[starts].tolist(), bins[starts].tolist()
        first = 0
        for i in range(1, len(parts) + 1):
            if i == len(parts) or part_nodes[i] != part_nodes[first]:
                self._occupancy[part_nodes[first]].add_binned(part_bins[first:i], parts[first:i])
                first = i

    def live(self, node: int, t: float) -> int:
        """The node's entries live at ``t`` (exact; ``t`` must not go back)."""
        self._sort_in()
        count = self._occupancy[node].live(t)
        self._bound[node] = count
        return count

    def clear(self, node: int) -> None:
        """Forget every entry of ``node`` (its table was flushed)."""
        self._sort_in()
        self._occupancy[node] = Occupancy(self._occupancy[node].bin_s)
        self._bound[node] = 0

    def shorten(self, node: int, old: float, new: float) -> None:
        """See :meth:`Occupancy.shorten`."""
        self._sort_in()
        self._occupancy[node].shorten(old, new)
