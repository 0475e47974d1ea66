"""The batched engine's per-flow kernel path: cached dispatches, anonymous entries counted.

:class:`IndexPath` is what :class:`~svcsim.traffic.engine.TrafficEngine` gives the shared
per-flow code (:class:`~svcsim.traffic.flows.PerFlow`): the dispatch index's exact ``resolve``
with the node's live recent lists, and anonymous conntrack entries kept as expiry times in an
:class:`~svcsim.traffic.occupancy.OccupancyBook` rather than in the node's table.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from svcsim.netfilter.conntrack import ConntrackTable
from svcsim.netfilter.index import DispatchTooLargeError
from svcsim.netfilter.nft_index import NftDispatch
from svcsim.netfilter.packet import Origin
from svcsim.netfilter.packet import Outcome as NfOutcome
from svcsim.traffic.attempts import Client
from svcsim.traffic.classify import Resolution
from svcsim.traffic.context import TrafficContext
from svcsim.traffic.dispatch import DispatchCache
from svcsim.traffic.draws import SeedDraws, SeedDraws32
from svcsim.traffic.fate import anonymous_expiry
from svcsim.traffic.occupancy import OccupancyBook
from svcsim.traffic.targets import Dial
from svcsim.traffic.walk_rules import walk_installed


class IndexPath:
    """Dispatches from a :class:`DispatchCache` and an occupancy count of anonymous entries."""

    def __init__(
        self,
        ctx: TrafficContext,
        occupancy: OccupancyBook,
        dispatches: DispatchCache,
        node_index: dict[str, int],
    ) -> None:
        self.ctx = ctx
        self.occupancy = occupancy
        self.dispatches = dispatches
        self.node_index = node_index
        self._tables: tuple[Sequence[str], list[str], list[ConntrackTable]] | None = None
        """The nodes asked about last (the object and its names then), and their tables."""
        self._limits = np.zeros(0, dtype=np.int64)

    def has_room(self, node: str, t: float, arriving: int) -> bool:
        """True if ``arriving`` more entries fit in the node's table at ``t``."""
        table = self.ctx.kernels[node].conntrack
        if table.max_entries == 0:
            return True
        i = self.node_index[node]
        if self.occupancy.bound(i) + len(table) + arriving <= table.max_entries:
            return True
        table.expire(t)
        return self.occupancy.live(i, t) + len(table) + arriving <= table.max_entries

    def crowded(self, nodes: Sequence[str], arriving: npt.NDArray[np.int64]) -> list[int]:
        """Indices of ``nodes`` where ``arriving[i]`` more entries might not fit.

        :meth:`has_room`'s first test for every node at once (a limit of 0 or a bound with
        room: it fits); only the nodes it leaves in doubt need :meth:`has_room` itself.
        """
        tables = self._tables_of(nodes)
        limits = self._limits
        held = np.fromiter(map(len, tables), dtype=np.int64, count=len(tables))
        doubt = (arriving > 0) & (limits > 0) & (self.occupancy.bounds() + held + arriving > limits)
        return np.flatnonzero(doubt).tolist()

    def _tables_of(self, nodes: Sequence[str]) -> list[ConntrackTable]:
        """The nodes' conntrack tables (a kernel keeps its table), and their limits."""
        cached = self._tables
        if cached is None or (cached[0] is not nodes and cached[1] != list(nodes)):
            tables = [self.ctx.kernels[n].conntrack for n in nodes]
            self._tables = (nodes, list(nodes), tables)
            self._limits = np.array([table.max_entries for table in tables], dtype=np.int64)
            return tables
        return cached[2]

    def room(self, node: str, t: float) -> bool:
        """Tracked entries plus anonymous ones stay below the table's maximum."""
        return self.has_room(node, t, 1)

    def dispatch(
        self, node: str, src: str, origin: Origin, dial: Dial, seed: int, t: float
    ) -> NfOutcome:
        """``Dispatch.resolve`` with the attempt's draws and the node's recent lists.

        nf_tables: numgen's 32-bit draws and the node's dynamic sets. A key whose rules branch
        beyond the index's bound is walked rule by rule instead (the same outcome, slower).
        """
        kernel = self.ctx.kernels[node]
        try:
            found = self.dispatches.lookup(kernel, src, origin, dial.ip, dial.protocol, dial.port)
        except DispatchTooLargeError:
            return walk_installed(kernel, src, origin, dial, seed, t)
        if isinstance(found, NftDispatch):
            return found.resolve(SeedDraws32(seed), kernel.sets, t)
        return found.resolve(SeedDraws(seed), kernel.recent, t)

    def anonymous(
        self, node: str, client: Client, dial: Dial, res: Resolution, t: float, latency: float
    ) -> object:
        """Count the entry until it expires; its expiry is the handle."""
        timeouts = self.ctx.kernels[node].conntrack.timeouts
        expiry = anonymous_expiry(dial.protocol, res, t, latency, timeouts)
        if expiry is not None:
            self.occupancy.add_one(self.node_index[node], expiry)
        return expiry

    def reset_anonymous(self, node: str, handle: object, t: float) -> None:
        """A RST leaves the entry in CLOSE for ``tcp_close_s``."""
        if isinstance(handle, float):
            close_s = self.ctx.kernels[node].conntrack.timeouts.tcp_close_s
            self.occupancy.shorten(self.node_index[node], handle, t + close_s)
