"""The per-request reference: the same attempts, resolved one at a time the straightforward way.

Every attempt goes through :class:`~svcsim.traffic.flows.PerFlow` in chronological order with a
:class:`TracePath`: the node's rules are walked by :func:`~svcsim.netfilter.interpreter.trace`
(fed the attempt's own draws and the node's live xt_recent lists), and every flow, anonymous
ones included, gets a real entry in the node's :class:`~svcsim.netfilter.conntrack.ConntrackTable`
whose packets (SYN, SYN/ACK, ACK, FIN, RST, UDP replies) are applied as the connection goes.
Arrivals, seeds, retries and in-flight handling are the shared
:class:`~svcsim.traffic.core.EngineCore`'s, so on the same world and seed the batched engine
must produce the same records; tests hold them to it. It is also the per-request baseline of
the benchmark.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from svcsim.netfilter.conntrack_states import Direction, FlowTuple
from svcsim.netfilter.packet import Origin
from svcsim.netfilter.packet import Outcome as NfOutcome
from svcsim.results.schema import Outcome
from svcsim.traffic.attempts import Client
from svcsim.traffic.classify import Resolution
from svcsim.traffic.context import TrafficContext
from svcsim.traffic.core import EngineCore
from svcsim.traffic.flows import EphemeralPorts
from svcsim.traffic.spec import WorkloadSpec
from svcsim.traffic.targets import Dial
from svcsim.traffic.walk_rules import walk_installed

_ESTABLISH: Final[tuple[tuple[Direction, str], ...]] = (("reply", "syn_ack"), ("original", "ack"))
_CLOSE: Final[tuple[tuple[Direction, str], ...]] = (
    ("original", "fin"),
    ("reply", "fin"),
    ("original", "ack"),
)


class TracePath:
    """The interpreter and the real conntrack table (see the module docstring)."""

    def __init__(self, ctx: TrafficContext) -> None:
        self.ctx = ctx
        self.ports = EphemeralPorts()

    def room(self, node: str, t: float) -> bool:
        """The table is below its maximum after reaping expired entries."""
        table = self.ctx.kernels[node].conntrack
        table.expire(t)
        return table.max_entries == 0 or len(table) < table.max_entries

    def dispatch(
        self, node: str, src: str, origin: Origin, dial: Dial, seed: int, t: float
    ) -> NfOutcome:
        """Walk the node's installed rules with the attempt's draws."""
        return walk_installed(self.ctx.kernels[node], src, origin, dial, seed, t)

    def anonymous(
        self, node: str, client: Client, dial: Dial, res: Resolution, t: float, latency: float
    ) -> object:
        """Create the flow's entry and play its packets: the original tuple is the handle."""
        if not res.accepted:
            return None
        table = self.ctx.kernels[node].conntrack
        sport = self.ports.allocate(table, dial.protocol, client.ip, dial.ip, dial.port, t)
        original = FlowTuple(dial.protocol, client.ip, sport, dial.ip, dial.port)
        ip, port = _destination(res, dial)
        reply = FlowTuple(dial.protocol, ip, port, client.ip, sport)
        entry = table.create(original, reply, t)
        if entry is None:  # pragma: no cover - room() was checked
            raise RuntimeError("conntrack refused an entry after room() said yes")
        end = t + latency
        if dial.protocol == "udp":
            if res.served:
                table.update(reply, "reply", end)
            return original
        if res.served:
            self._play(node, original, _ESTABLISH, t)
            self._play(node, original, _CLOSE, end)
        elif res.outcome is Outcome.REFUSED:
            table.update(reply, "rst", t)
        else:
            table.update(original, "syn", end)  # the last SYN retransmit
        return original

    def _play(
        self, node: str, original: FlowTuple, steps: Iterable[tuple[Direction, str]], t: float
    ) -> None:
        """Apply packets to the flow's entry (stamped ``t``, possibly ahead of the clock)."""
        table = self.ctx.kernels[node].conntrack
        for direction, event in steps:
            entry = table.lookup(original, t)
            if entry is None:
                return
            table.update(entry, event, t, direction=direction)

    def reset_anonymous(self, node: str, handle: object, t: float) -> None:
        """The backend's RST reaches the flow's entry."""
        if isinstance(handle, FlowTuple) and handle.proto == "tcp":
            self._play(node, handle, (("reply", "rst"),), t)


def _destination(res: Resolution, dial: Dial) -> tuple[str, int]:
    """Where the flow went: the DNAT endpoint, or the dialled address itself."""
    if res.endpoint:
        ip, _, port = res.endpoint.rpartition(":")
        return ip, int(port)
    return dial.ip, dial.port


class ReferenceEngine(EngineCore):
    """Resolves every attempt one at a time with :class:`TracePath`; same API as the engine."""

    def __init__(
        self,
        specs: Iterable[WorkloadSpec],
        ctx: TrafficContext,
        *,
        block_s: float = 1.0,
        flush_rows: int = 1 << 16,
    ) -> None:
        super().__init__(tuple(specs), ctx, TracePath(ctx), block_s=block_s, flush_rows=flush_rows)
