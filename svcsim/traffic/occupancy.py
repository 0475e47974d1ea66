"""How many conntrack entries the nodes' anonymous flows hold at a time, without one object each.

A per-request TCP connection or an ephemeral-port UDP exchange needs its entry only for the
capacity check of later flows and the table-size samples (nothing else ever looks it up), so the
batched engine keeps just each entry's node and expiry time. :class:`OccupancyBook` counts
entries live at ``t`` (``expiry > t``, as ``nf_ct_is_expired``) exactly; queries must not go
back in time. Expiries are kept in time bins so that old ones are dropped in bulk and a count
only scans the bin holding ``t``.
"""

from __future__ import annotations

import heapq
import math

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


class OccupancyBook:
    """Every node's anonymous entries, binned by expiry for all nodes at once.

    The batched engine adds a whole chunk's expiries at once (all nodes together, no sorting);
    they are sorted into time bins - each bin holding (node, expiry) pairs of every node - only
    when an exact count is needed, so counting every node at ``t`` is a few array operations
    over the bin holding ``t``. Counts are exact; queries must not go back in time (across
    nodes: the engine's queries follow simulated time). :meth:`bound` is a cheap upper bound
    per node: entries counted at the last exact count plus all added since.
    """

    def __init__(self, nodes: int, bin_s: float = 0.25) -> None:
        if not bin_s > 0:
            raise ValueError(f"bin_s must be > 0, got {bin_s!r}")
        self._n = nodes
        self._bin_s = bin_s
        self._bins: dict[int, list[tuple[npt.NDArray[np.intp], F64]]] = {}
        self._heap: list[int] = []  # the bins' indices, lowest first (dropping needs no scan)
        self._floor = -(1 << 62)  # bins below this index are gone
        self._held = np.zeros(nodes, dtype=np.int64)  # entries in the bins, per node
        self._pending: list[tuple[npt.NDArray[np.intp], F64]] = []
        self._loose: list[list[float]] = [[] for _ in range(nodes)]  # one-by-one additions
        self._bound = np.zeros(nodes, dtype=np.int64)

    def add(self, nodes: npt.NDArray[np.intp], expiries: F64) -> None:
        """Add entries of many nodes at once."""
        if len(nodes):
            self._pending.append((nodes, expiries))
            self._bound += np.bincount(nodes, minlength=self._n)

    def add_one(self, node: int, expiry: float) -> None:
        """Add one entry."""
        self._loose[node].append(expiry)
        self._bound[node] += 1

    def bounds(self) -> npt.NDArray[np.int64]:
        """:meth:`bound` of every node, by node index (read only)."""
        return self._bound

    def bound(self, node: int) -> int:
        """At least as many as the node's live entries, now and later (barring additions)."""
        return int(self._bound[node])

    def _bin(self, t: float) -> int:
        return math.floor(t / self._bin_s)

    def _sort_in(self) -> None:
        pending = self._pending
        for node, loose in enumerate(self._loose):
            if loose:
                pending.append((np.full(len(loose), node, dtype=np.intp), np.array(loose)))
                self._loose[node] = []
        if not pending:
            return
        nodes = np.concatenate([p[0] for p in pending])
        expiries = np.concatenate([p[1] for p in pending])
        self._pending = []
        bins = np.floor(expiries / self._bin_s).astype(np.int64)
        keep = bins >= self._floor  # the others expired before the last count
        if not keep.all():
            nodes, expiries, bins = nodes[keep], expiries[keep], bins[keep]
        if not len(nodes):
            return
        order = np.argsort(bins, kind="stable")
        nodes, expiries, bins = nodes[order], expiries[order], bins[order]
        starts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])
        ends = np.r_[starts[1:], len(bins)]
        for b, i, j in zip(bins[starts].tolist(), starts.tolist(), ends.tolist(), strict=True):
            self._part(b).append((nodes[i:j], expiries[i:j]))
        self._held += np.bincount(nodes, minlength=self._n)

    def _part(self, b: int) -> list[tuple[npt.NDArray[np.intp], F64]]:
        found = self._bins.get(b)
        if found is None:
            found = self._bins[b] = []
            heapq.heappush(self._heap, b)
        return found

    def _advance(self, t: float) -> None:
        current = self._bin(t)
        if current < self._floor:
            raise ValueError(f"occupancy query at {t!r} s goes back in time")
        if current == self._floor:
            return
        heap = self._heap
        while heap and heap[0] < current:
            for nodes, _ in self._bins.pop(heapq.heappop(heap)):
                self._held -= np.bincount(nodes, minlength=self._n)
        self._floor = current

    def live_all(self, t: float) -> npt.NDArray[np.int64]:
        """Every node's entries live at ``t`` (expiry after ``t``), exact, by node index."""
        self._sort_in()
        self._advance(t)
        counts = self._held.copy()
        for nodes, expiries in self._bins.get(self._bin(t), ()):
            gone = nodes[expiries <= t]
            if len(gone):
                counts -= np.bincount(gone, minlength=self._n)
        self._bound = counts.copy()
        return counts

    def live(self, node: int, t: float) -> int:
        """The node's entries live at ``t`` (exact; ``t`` must not go back)."""
        return int(self.live_all(t)[node])

    def clear(self, node: int) -> None:
        """Forget every entry of ``node`` (its table was flushed)."""
        self._sort_in()
        for parts in self._bins.values():
            parts[:] = [(n[n != node], e[n != node]) for n, e in parts]
        self._held[node] = 0
        self._bound[node] = 0

    def shorten(self, node: int, old: float, new: float) -> None:
        """An entry of ``node`` that was to expire at ``old`` now expires at ``new``."""
        self._sort_in()
        parts = self._bins.get(self._bin(old), [])
        for k, (nodes, expiries) in enumerate(parts):
            hit = np.flatnonzero((expiries == old) & (nodes == node))
            if len(hit):
                parts[k] = (np.delete(nodes, hit[0]), np.delete(expiries, hit[0]))
                self._held[node] -= 1
                self.add_one(node, new)
                self._bound[node] -= 1  # the entry moved; it was counted already
                return
        # Already expired and dropped: nothing to shorten.
