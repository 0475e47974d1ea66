"""The per-flow path through an IPVS-mode node: the kernel's IPVS schedules every new flow.

IPVS keeps state across flows - rr's per-service pointer, lc/wlc's active and inactive counts,
persistence templates, the connection table - so an IPVS node's attempts are resolved one at
a time, in time order, by :class:`IpvsFlows` (both engines use it, so they agree). A new flow
is walked as :func:`~svcsim.netfilter.ipvs_trace.trace_ipvs` walks it (the helper rules'
verdicts memoised per installed state: :class:`IpvsWalks`) through the node's installed
helper rules and its live :class:`~svcsim.netfilter.ipvs_kernel.IpvsKernel` at the attempt's
time; what the IPVS entry goes through afterwards is told to the table as it happens or, for a
time ahead (a request's end), planned (:meth:`IpvsKernel.plan`), so that every later read
(the next connect, kube-proxy's graceful-termination check) sees exactly the connections
live then:

* anonymous TCP: SYN_RECV at connect, ESTABLISHED once answered, TIME_WAIT at the request's
  end (the client closes; counted inactive for 120 s); a RST from the Pod: CLOSE (10 s); no
  answer: SYN_RECV refreshed by the last retransmission. UDP: the entry's 300 s timer restarts
  with the answer;
* keep-alive: ESTABLISHED (counted active) while the connection is open, each request
  restarting the 900 s idle timer; closed with FIN (TIME_WAIT) or RST (CLOSE). A request on a
  connection whose entry expired, or whose real server was deleted, is reset
  (``ipvs-entry-expired`` / ``real-server-deleted``);
* UDP with a fixed source port: while its IPVS entry lives, datagrams follow it (not
  rescheduled, even at weight 0: ``is_new_conn`` is false for UDP); a deleted real server
  loses one datagram and the entry (``expire_nodest_conn``), the next one is scheduled anew.

Conntrack is kept as for the other modes (``net.ipv4.vs.conntrack=1``: IPVS connections have
conntrack entries), through the engine's :class:`~svcsim.traffic.flows.KernelPath`, so a full
table drops new flows alike. Source ports come from :class:`IpvsPorts`, which skips ports with
an open IPVS entry to the same virtual server (the same in both engines).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from svcsim.netfilter.conntrack_states import FlowTuple
from svcsim.netfilter.ipvs import IpvsState
from svcsim.netfilter.ipvs_kernel import ConnKey, ConnState, Decision, IpvsKernel, Verdict
from svcsim.netfilter.ipvs_trace import ipvs_hook, ipvs_network, walk_after, walk_before
from svcsim.netfilter.packet import NodeNetwork, Packet, VerdictKind
from svcsim.netfilter.packet import Outcome as NfOutcome
from svcsim.results.schema import Cause, Outcome
from svcsim.sim.kernel import Kernel
from svcsim.traffic.attempts import Client, Vocab
from svcsim.traffic.classify import Resolution, Wait, at_destination, classify
from svcsim.traffic.context import TrafficContext
from svcsim.traffic.flows import (
    FIXED_UDP_PORT_BASE,
    Connection,
    FlowResult,
    KernelPath,
    PerFlow,
    _Pool,
)
from svcsim.traffic.spec import KeepAlive, NameTarget, WorkloadSpec
from svcsim.traffic.targets import Dial

TCP_RTO_MIN_S: Final = 0.2
"""Linux ``TCP_RTO_MIN`` (HZ/5, include/net/tcp.h): a dropped data segment's first resend."""
EPHEMERAL_FIRST: Final = 32768
EPHEMERAL_LAST: Final = 60999
"""Linux' default ``ip_local_port_range``."""


@dataclass(frozen=True, slots=True)
class IpvsHandle:
    """An anonymous flow through IPVS: its IPVS entry and the kernel path's own handle."""

    key: ConnKey
    inner: object


@dataclass(frozen=True, slots=True)
class IpvsDispatch:
    """A new flow's walk: the verdict as the data path reads it, IPVS's decision, its key."""

    outcome: NfOutcome
    decision: Decision | None
    key: ConnKey | None
    """The IPVS entry created (None unless forwarded)."""


_REUSABLE: Final = frozenset({None, ConnState.TIME_WAIT, ConnState.CLOSE})
"""Entry states a new connection may reuse the 5-tuple of (``conn_reuse_mode``)."""


@dataclass(slots=True)
class IpvsPorts:
    """Ephemeral source ports per client IP, taken in turn (Linux' range).

    A port whose IPVS entry to the same virtual server is still open is skipped; one whose
    entry is closing (TIME_WAIT, CLOSE) may be taken again: IPVS then expires the entry and
    schedules the new connection afresh (``conn_reuse_mode``, :meth:`IpvsKernel.connect`).
    """

    next: dict[str, int] = field(default_factory=dict)

    def allocate(self, table: IpvsKernel, key: ConnKey, t: float) -> int:
        """The next port of ``key.src`` free towards ``key``'s virtual server at ``t``."""
        port = self.next.get(key.src, EPHEMERAL_FIRST)
        for _ in range(EPHEMERAL_LAST - EPHEMERAL_FIRST + 1):
            candidate = port
            port = EPHEMERAL_FIRST if port >= EPHEMERAL_LAST else port + 1
            probe = ConnKey(key.protocol, key.src, candidate, key.vaddr, key.vport)
            if table.entry(probe, t) in _REUSABLE:
                self.next[key.src] = port
                return candidate
        raise RuntimeError(f"ephemeral ports of {key.src} to {key.vaddr}:{key.vport} exhausted")


def ipvs_outcome(
    decision: Decision | None, before: NfOutcome, after: NfOutcome | None
) -> NfOutcome:
    """The walk's verdict as the data path reads it (:func:`~svcsim.traffic.classify.classify`).

    Forwarded: accepted and DNAT-ed to the real server (IPVS NAT rewrites the destination).
    No real server: ICMP port unreachable (``ip_vs_leave``), a REJECT. Dropped: a DROP. Never
    seen by IPVS (dropped by the helper rules, or no virtual server): the iptables walk's.
    """
    d = decision
    if d is None or d.verdict is Verdict.NO_SERVICE:
        return before
    if d.verdict is Verdict.FORWARDED and d.real_server is not None:
        last = after if after is not None else before
        return NfOutcome(
            VerdictKind.ACCEPT,
            d.real_server,
            dnat=d.real_server,
            masquerade=last.masquerade,
            mark=last.mark,
        )
    if d.verdict is Verdict.REFUSED:
        return NfOutcome(
            VerdictKind.REJECT,
            before.destination,
            reject_with="icmp-port-unreachable",
            decided_in=("ipvs", "ip_vs_leave"),
        )
    return NfOutcome(VerdictKind.DROP, before.destination, decided_in=("ipvs", "ip_vs_in"))


_BeforeKey = tuple[str, str, str, str, int]
"""(source, origin, destination, protocol, port) of a new flow's first packet."""
_AfterKey = tuple[str, str, str, str, int, int]
"""(source, origin, real server, protocol, port, mark) of the packet IPVS rewrote."""


@dataclass(slots=True)
class _NodeWalks:
    """One node's helper-rule walks under one installed IPVS state."""

    state: IpvsState
    network: NodeNetwork
    """The node's network with the ``kube-ipvs0`` addresses local."""
    before: dict[_BeforeKey, NfOutcome] = field(default_factory=dict)
    after: dict[_AfterKey, NfOutcome] = field(default_factory=dict)


class IpvsWalks:
    """The run's memo of the helper iptables walks around IPVS, per node and installed state.

    Those walks depend only on the packet's addresses, ports' protocol, origin and mark, and
    on the state (no draws, no time-dependent match: see
    :func:`~svcsim.netfilter.ipvs_trace.walk_before`); IPVS's own decision is never memoised.
    Owned by whoever owns the run (DESIGN decision 8); a node's walks go when its state does.
    """

    def __init__(self) -> None:
        self._nodes: dict[str, _NodeWalks] = {}

    def of(self, kernel: Kernel) -> _NodeWalks:
        """``kernel``'s walks under its current IPVS state."""
        state = kernel.ipvs
        if state is None:
            raise ValueError(f"node {kernel.node} is not in IPVS mode")
        found = self._nodes.get(kernel.node)
        if found is None or found.state is not state:
            found = self._nodes[kernel.node] = _NodeWalks(
                state, ipvs_network(state, kernel.network)
            )
        return found


def ipvs_dispatch(
    kernel: Kernel, client: Client, dial: Dial, sport: int, t: float, walks: IpvsWalks
) -> IpvsDispatch:
    """Walk a new flow's first packet through ``kernel``'s IPVS state at ``t``.

    The same steps as :func:`~svcsim.netfilter.ipvs_trace.trace_ipvs`, with the iptables
    walks memoised in ``walks``.
    """
    table = kernel.ipvs_table
    if table is None:
        raise ValueError(f"node {kernel.node} is not in IPVS mode")
    memo = walks.of(kernel)
    state = memo.state
    packet = Packet(client.ip, dial.ip, dial.protocol, dial.port, sport=sport, origin=client.origin)
    key_b = (client.ip, client.origin, dial.ip, dial.protocol, dial.port)
    before = memo.before.get(key_b)
    if before is None:
        before = memo.before[key_b] = walk_before(state, packet, memo.network, t).outcome
    decision, forwarded = ipvs_hook(state, table, packet, before, t)
    after = None
    if forwarded is not None:
        key_a = (client.ip, client.origin, forwarded.dst, dial.protocol, forwarded.dport,
                 forwarded.mark)  # fmt: skip
        after = memo.after.get(key_a)
        if after is None:
            after = memo.after[key_a] = walk_after(state, forwarded, memo.network, t).outcome
    key = None
    if decision is not None and decision.verdict is Verdict.FORWARDED:
        vaddr, vport = before.destination
        key = ConnKey(dial.protocol.upper(), client.ip, sport, vaddr, vport)
    return IpvsDispatch(ipvs_outcome(decision, before, after), decision, key)


def _deleted(wait: Wait) -> Resolution:
    return Resolution(Outcome.TIMEOUT, Cause.REAL_SERVER_DELETED, "", "", None, wait, False)


class IpvsFlows(PerFlow):
    """:class:`~svcsim.traffic.flows.PerFlow`, with IPVS-mode nodes' flows through IPVS."""

    def __init__(
        self, ctx: TrafficContext, specs: tuple[WorkloadSpec, ...], path: KernelPath, vocab: Vocab
    ) -> None:
        super().__init__(ctx, specs, path, vocab)
        self.ipvs_ports = IpvsPorts()
        self.walks = IpvsWalks()

    def resolve(
        self, w: int, client_id: int, client: Client, dial: Dial, seed: int, t: float
    ) -> FlowResult:
        """As :meth:`PerFlow.resolve`; on an IPVS node, through its IPVS (module docstring)."""
        kernel = self.ctx.kernels[client.node]
        spec = self.specs[w]
        if kernel.ipvs_table is None or isinstance(spec.target, NameTarget):
            # A name: the resolver's queries and the connect after them come back through
            # _new and _anonymous below, which take an IPVS node's IPVS.
            return super().resolve(w, client_id, client, dial, seed, t)
        if isinstance(spec.connection, KeepAlive):
            return self._ipvs_keepalive(w, client_id, client, dial, seed, t, kernel)
        if spec.per_flow:
            return self._ipvs_udp(w, client, dial, seed, t, kernel)
        return self._ipvs_anonymous(w, client, dial, seed, t, kernel)

    # --- new flows ------------------------------------------------------------------------

    def _new(
        self, w: int, client: Client, dial: Dial, seed: int, t: float, sport: int | None = None
    ) -> tuple[NfOutcome, Resolution] | None:
        """:meth:`PerFlow._new`; on an IPVS node, IPVS schedules the flow (a DNS query).

        The query's IPVS entry stays as created (the resolver keeps its conntrack entry, which
        later tries on the same socket follow to the same real server, as IPVS's UDP entry
        would send them).
        """
        kernel = self.ctx.kernels[client.node]
        if kernel.ipvs_table is None:
            return super()._new(w, client, dial, seed, t, sport)
        if not self.path.room(client.node, t):
            return None
        found, res = self._connect(client, dial, sport, t, kernel)
        return found.outcome, res

    def _anonymous(self, w: int, client: Client, dial: Dial, seed: int, t: float) -> FlowResult:
        """:meth:`PerFlow._anonymous`; on an IPVS node, through its IPVS (a name's connect)."""
        kernel = self.ctx.kernels[client.node]
        if kernel.ipvs_table is None:
            return super()._anonymous(w, client, dial, seed, t)
        return self._ipvs_anonymous(w, client, dial, seed, t, kernel)

    def _connect(
        self, client: Client, dial: Dial, sport: int | None, t: float, kernel: Kernel
    ) -> tuple[IpvsDispatch, Resolution]:
        table = kernel.ipvs_table
        assert table is not None
        if sport is None:
            probe = ConnKey(dial.protocol.upper(), client.ip, 0, dial.ip, dial.port)
            sport = self.ipvs_ports.allocate(table, probe, t)
        found = ipvs_dispatch(kernel, client, dial, sport, t, self.walks)
        if found.decision is not None and found.decision.verdict is Verdict.DROPPED:
            return found, _deleted(Wait.CONNECT)
        return found, classify(found.outcome, dial, client.node, self.ctx)

    def _follow(
        self, table: IpvsKernel, key: ConnKey, res: Resolution, w: int, t: float, latency: float
    ) -> None:
        """Tell the table what the new flow's packets do to its entry (module docstring)."""
        if key.protocol == "UDP":
            if res.served:
                table.plan(key, t + latency, ConnState.UDP)
            return
        if res.served:
            table.established(key, t)
            if not isinstance(self.specs[w].connection, KeepAlive):
                table.plan(key, t + latency, ConnState.TIME_WAIT)
            else:
                table.plan(key, t + latency, ConnState.ESTABLISHED)
        elif res.outcome is Outcome.REFUSED:
            table.reset(key, t)
        elif res.wait is Wait.CONNECT:
            last_syn = t + self.specs[w].failure_wait_s("connect")
            table.plan(key, last_syn, ConnState.SYN_RECV)

    def _ipvs_anonymous(
        self, w: int, client: Client, dial: Dial, seed: int, t: float, kernel: Kernel
    ) -> FlowResult:
        if not self.path.room(client.node, t):
            return self._dropped(w)
        found, res = self._connect(client, dial, None, t, kernel)
        r = self._result(w, res, seed, new_flow=True)
        inner = self.path.anonymous(client.node, client, dial, res, t, r.latency)
        handle: object = inner
        if found.key is not None:
            assert kernel.ipvs_table is not None
            self._follow(kernel.ipvs_table, found.key, res, w, t, r.latency)
            handle = IpvsHandle(found.key, inner)
        return FlowResult(
            r.outcome, r.cause, r.latency, r.endpoint, r.pod, True, -1, r.served, handle, r.icmp
        )

    # --- UDP, fixed source port -----------------------------------------------------------

    def _ipvs_udp(
        self, w: int, client: Client, dial: Dial, seed: int, t: float, kernel: Kernel
    ) -> FlowResult:
        table = kernel.ipvs_table
        assert table is not None
        sport = FIXED_UDP_PORT_BASE + w
        entry_key = ConnKey("UDP", client.ip, sport, dial.ip, dial.port)
        key: ConnKey | None = entry_key
        existing = table.forward(entry_key, t)
        if existing is not None and existing.verdict is Verdict.DROPPED:
            res, new_flow, key = _deleted(Wait.CONNECT), False, None
        elif existing is not None and existing.real_server is not None:
            ip, port = existing.real_server
            res = at_destination(ip, port, True, dial, client.node, self.ctx, via_conntrack=True)
            new_flow = False
        else:
            if not self.path.room(client.node, t):
                return self._dropped(w)
            found, res = self._connect(client, dial, sport, t, kernel)
            key, new_flow = found.key, True
        r = self._result(w, res, seed, new_flow=new_flow)
        if key is not None and r.served:
            table.plan(key, t + r.latency, ConnState.UDP)
        self._udp_conntrack(client, dial, sport, res, t, r)
        return r

    def _udp_conntrack(
        self, client: Client, dial: Dial, sport: int, res: Resolution, t: float, r: FlowResult
    ) -> None:
        """The flow's conntrack entry: made by the first accepted datagram, kept by the rest."""
        table = self._table(client.node)
        original = FlowTuple("udp", client.ip, sport, dial.ip, dial.port)
        entry = table.lookup(original, t)
        if entry is not None:
            table.update(original, "original", t)
        elif res.accepted and res.endpoint:
            ip, _, port = res.endpoint.rpartition(":")
            entry = table.create(original, FlowTuple("udp", ip, int(port), client.ip, sport), t)
        if entry is not None and r.served:
            table.update(entry.reply, "reply", t + r.latency)

    # --- keep-alive -----------------------------------------------------------------------

    def _ipvs_keepalive(
        self,
        w: int,
        client_id: int,
        client: Client,
        dial: Dial,
        seed: int,
        t: float,
        kernel: Kernel,
    ) -> FlowResult:
        model = self.specs[w].connection
        assert isinstance(model, KeepAlive)
        table = kernel.ipvs_table
        assert table is not None
        pool = self._pools.get((w, client_id))
        if pool is None:
            pool = self._pools[(w, client_id)] = _Pool([None] * model.connections)
        slot = pool.next % model.connections
        conn = pool.slots[slot]
        if conn is not None:
            return self._on_kept(w, client_id, client, dial, seed, t, table, pool, conn)
        pool.next += 1
        if not self.path.room(client.node, t):
            return self._dropped(w)
        found, res = self._connect(client, dial, None, t, kernel)
        conn_id, handle = -1, None
        if res.accepted and found.key is not None:
            conn = self._open(w, client_id, client, found.key, res, slot, t)
            if conn is not None:
                conn_id, handle = conn.conn_id, conn
        r = self._result(w, res, seed, new_flow=True, conn_id=conn_id, handle=handle)
        if found.key is not None:
            self._follow(table, found.key, res, w, t, r.latency)
        return r

    def _on_kept(
        self,
        w: int,
        client_id: int,
        client: Client,
        dial: Dial,
        seed: int,
        t: float,
        table: IpvsKernel,
        pool: _Pool,
        conn: Connection,
    ) -> FlowResult:
        """A request on an open connection: its IPVS entry first, then as any other mode."""
        key = _key_of(conn)
        existing = table.forward(key, t)
        if existing is None or existing.verdict is Verdict.DROPPED:
            pool.next += 1
            self._close(conn, t, "rst")
            cause = Cause.IPVS_ENTRY_EXPIRED if existing is None else Cause.REAL_SERVER_DELETED
            latency = 0.0 if existing is None else TCP_RTO_MIN_S
            return FlowResult(
                Outcome.RESET, cause, latency, conn.endpoint, conn.pod, False, conn.conn_id
            )
        r = super().resolve(w, client_id, client, dial, seed, t)  # the open-connection path
        if r.served:
            table.plan(key, t + r.latency, ConnState.ESTABLISHED)
        return r

    def _open(
        self,
        w: int,
        client_id: int,
        client: Client,
        key: ConnKey,
        res: Resolution,
        slot: int,
        t: float,
    ) -> Connection | None:
        """The conntrack entry of a new kept connection, and the connection if it was served."""
        table = self._table(client.node)
        original = FlowTuple("tcp", client.ip, key.sport, key.vaddr, key.vport)
        ip, _, port = res.endpoint.rpartition(":")
        reply = FlowTuple("tcp", ip, int(port), client.ip, key.sport)
        entry = table.create(original, reply, t)
        if entry is None:
            return None
        if res.outcome is Outcome.REFUSED:
            table.update(reply, "rst", t)
            return None
        if res.wait is Wait.CONNECT:
            table.update(original, "syn", t + self.specs[w].failure_wait_s("connect"))
            return None
        if not res.served:
            return None
        table.update(reply, "syn_ack", t)
        table.update(original, "ack", t)
        conn = Connection(
            self._next_conn,
            client.node,
            original,
            reply,
            res.endpoint,
            res.pod,
            ip,
            res.outcome is Outcome.MISROUTED,
            (w, client_id),
            slot,
        )
        self._next_conn += 1
        self._pools[(w, client_id)].slots[slot] = conn
        self._by_pod.setdefault(conn.pod, {})[conn.conn_id] = conn
        return conn

    # --- closes and resets ----------------------------------------------------------------

    def _close(self, conn: Connection, t: float, how: str) -> None:
        """As :meth:`PerFlow._close`, and the IPVS entry ends too (TIME_WAIT or CLOSE)."""
        super()._close(conn, t, how)
        table = self.ctx.kernels[conn.node].ipvs_table
        if table is not None:
            state = ConnState.CLOSE if how == "rst" else ConnState.TIME_WAIT
            table.settle(_key_of(conn), t, state)

    def reset_anonymous(self, node: str, handle: object, t: float) -> None:
        """A RST from the Pod: the IPVS entry closes, and the kernel path's entry too."""
        if isinstance(handle, IpvsHandle):
            table = self.ctx.kernels[node].ipvs_table
            if table is not None and handle.key.protocol == "TCP":
                table.reset(handle.key, t)
            super().reset_anonymous(node, handle.inner, t)
            return
        super().reset_anonymous(node, handle, t)


def _key_of(conn: Connection) -> ConnKey:
    """The IPVS entry of a kept connection (its conntrack original tuple is IPVS's key)."""
    o = conn.original
    return ConnKey(o.proto.upper(), o.src_ip, o.src_port, o.dst_ip, o.dst_port)
