"""The per-flow path: one attempt at a time, for flows whose identity matters.

Keep-alive connections, UDP flows with a fixed source port and session-affinity lookups depend
on what earlier packets left behind (an open connection, a conntrack entry, an xt_recent
list), so they are resolved in chronological order, one attempt at a time. The batched engine
sends only those attempts here (and, near a full conntrack table, the anonymous ones too); the
reference engine sends everything. Where the node's rules are asked and where an anonymous
flow's conntrack entry lives is a :class:`KernelPath`: the dispatch index and an occupancy
count for the batched engine, the interpreter and the real table for the reference.

Keep-alive (per workload and client Pod): ``connections`` slots used round-robin, each opened
on first use (a new flow: capacity check, rules, conntrack entry) and pinned to the Pod its
DNAT chose. A Backend that starts draining closes its idle connections gracefully (the client
reconnects on its next request, without failure); one that crashes or exits leaves them broken:
the next request on a broken connection is ``reset`` / ``backend-exited`` and the slot reopens
afterwards. Requests on a connection run concurrently (HTTP/2-like; no head-of-line queueing).

UDP with a fixed source port: one flow per client and workload. While its conntrack entry
lives, datagrams follow it without consulting the rules; one that gets no answer leaves the
entry UNREPLIED and each new datagram refreshes its 30 s timeout, so a client that keeps asking
a dead endpoint stays black-holed (``stale-conntrack``) until kube-proxy's clean-up deletes the
entry or the client pauses longer than the timeout.

userspace mode: a flow the portal rules redirected to kube-proxy's proxy port is resolved by
:class:`~svcsim.traffic.userspace_path.ProxyPath` (kube-proxy's balancer and dials) instead of
:func:`~svcsim.traffic.classify.classify`. The client's conntrack entry is to the proxy port
(its reply tuple from the node); kube-proxy's own connection to the endpoint, from the node's
address, is a second entry (:meth:`PerFlow._upstream`; with no room for it, the dial's SYN is
dropped and the dial times out). A keep-alive connection through the process is pinned to the
endpoint kube-proxy dialled, pays the copy cost on every request, and breaks when the process
exits (:meth:`PerFlow.proxy_exited`: ``reset`` / ``proxy-exited`` on its next request).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from svcsim.netfilter.conntrack import ConntrackTable
from svcsim.netfilter.conntrack_states import Direction, FlowTuple
from svcsim.netfilter.packet import Origin
from svcsim.netfilter.packet import Outcome as NfOutcome
from svcsim.results.schema import Cause, Outcome
from svcsim.sim.network import Backend, BackendState
from svcsim.traffic.attempts import Client, Vocab
from svcsim.traffic.classify import Resolution, Wait, at_destination, classify, on_connection
from svcsim.traffic.context import TrafficContext
from svcsim.traffic.draws import service_uniforms
from svcsim.traffic.fate import finish
from svcsim.traffic.resolver import Resolver
from svcsim.traffic.spec import KeepAlive, NameTarget, WorkloadSpec
from svcsim.traffic.targets import Dial
from svcsim.traffic.userspace_path import ProxyPath

FIXED_UDP_PORT_BASE = 20000
"""Source port of workload ``w``'s fixed-port UDP socket: ``FIXED_UDP_PORT_BASE + w``."""


class KernelPath(Protocol):
    """How a new flow meets a node's kernel (engine-specific)."""

    def room(self, node: str, t: float) -> bool:
        """True if conntrack can take one more entry now (no early drop is modelled)."""
        ...

    def dispatch(
        self, node: str, src: str, origin: Origin, dial: Dial, seed: int, t: float
    ) -> NfOutcome:
        """The rules' verdict for a new flow, using the attempt's draws and the recent lists."""
        ...

    def anonymous(
        self, node: str, client: Client, dial: Dial, res: Resolution, t: float, latency: float
    ) -> object:
        """Account an anonymous flow's conntrack entry; the handle for a later reset."""
        ...

    def reset_anonymous(self, node: str, handle: object, t: float) -> None:
        """An anonymous TCP flow was reset by its backend at ``t``."""
        ...


@dataclass(frozen=True, slots=True)
class FlowResult:
    """One attempt's result as the per-flow path produces it."""

    outcome: Outcome
    cause: Cause
    latency: float
    endpoint: str = ""
    pod: str = ""
    new_flow: bool = False
    conn_id: int = -1
    served: bool = False
    handle: object = None
    icmp: bool = False
    """A REJECT's ICMP error answered it (subject to the node's ICMP rate limits)."""


@dataclass(slots=True, eq=False)
class Connection:
    """One keep-alive connection: its conntrack tuples and the Pod it is pinned to."""

    conn_id: int
    node: str
    original: FlowTuple
    reply: FlowTuple
    endpoint: str
    pod: str
    backend_ip: str
    misrouted: bool
    pool: tuple[int, int]
    slot: int
    broken: bool = False
    proxied: bool = False
    """Through a userspace-mode kube-proxy (its copy cost on every request)."""
    upstream: FlowTuple | None = None
    """userspace mode: kube-proxy's own connection to the endpoint (its conntrack entry)."""
    broken_by: Cause = Cause.BACKEND_EXITED
    """What broke it: its Pod, or (userspace mode) the kube-proxy process it ran through."""


@dataclass(slots=True)
class _Pool:
    slots: list[Connection | None]
    next: int = 0


@dataclass(slots=True)
class EphemeralPorts:
    """Ephemeral source ports per client IP, skipping tuples conntrack still tracks."""

    next: dict[str, int] = field(default_factory=dict)

    def allocate(
        self, table: ConntrackTable, proto: str, src: str, dst: str, dport: int, t: float
    ) -> int:
        """The next port of ``src`` (32768-60999, Linux' default range) free towards dst."""
        port = self.next.get(src, 32768)
        for _ in range(60999 - 32768 + 1):
            candidate = port
            port = 32768 if port >= 60999 else port + 1
            if table.lookup(FlowTuple(proto, src, candidate, dst, dport), t) is None:
                self.next[src] = port
                return candidate
        raise RuntimeError(f"ephemeral ports of {src} to {dst}:{dport} exhausted")


class PerFlow:
    """Resolves attempts one at a time (see the module docstring)."""

    def __init__(
        self, ctx: TrafficContext, specs: tuple[WorkloadSpec, ...], path: KernelPath, vocab: Vocab
    ) -> None:
        self.ctx = ctx
        self.specs = specs
        self.path = path
        self.vocab = vocab
        self.ports = EphemeralPorts()
        self._pools: dict[tuple[int, int], _Pool] = {}
        self._by_pod: dict[str, dict[int, Connection]] = {}
        self._next_conn = 0
        self._resolver: Resolver | None = None
        self.userspace = ProxyPath(ctx)

    # --- one attempt ----------------------------------------------------------------------

    def resolve(
        self, w: int, client_id: int, client: Client, dial: Dial, seed: int, t: float
    ) -> FlowResult:
        """The result of attempt ``(w, client)`` at ``t`` with the attempt's ``seed``."""
        spec = self.specs[w]
        if isinstance(spec.target, NameTarget):
            return self._named(w, client_id, client, seed, t)
        if isinstance(spec.connection, KeepAlive):
            return self._keepalive(w, client_id, client, dial, seed, t, spec.connection)
        if spec.per_flow_udp:
            return self._udp_fixed(w, client, dial, seed, t)
        return self._anonymous(w, client, dial, seed, t)

    # --- a name first (DNS), then the address it gave -----------------------------------------

    def _named(self, w: int, client_id: int, client: Client, seed: int, t: float) -> FlowResult:
        """Look the name up (:mod:`~svcsim.traffic.resolver`), then dial its first address."""
        dns = self.ctx.coredns
        if dns is None:
            raise RuntimeError(f"workload {self.specs[w].name} dials a name, but no CoreDNS runs")
        if self._resolver is None:
            self._resolver = Resolver(self.ctx, self.specs, dns)
        found = self._resolver.lookup(self._new, self.ports, w, client_id, client, seed, t)
        if not found.ips:
            outcome = Outcome.TIMEOUT if found.cause is Cause.DNS_TIMEOUT else Outcome.REFUSED
            return FlowResult(outcome, found.cause, found.elapsed_s)
        dial = self._resolver.dial(w, found)
        r = self._anonymous(w, client, dial, seed, t)
        endpoint = r.endpoint or (f"{dial.ip}:{dial.port}" if r.pod else "")
        cause = r.cause
        if found.headless and cause is Cause.NO_SERVICE_RULE:
            cause = Cause.DNS_STALE  # a Pod IP from an answer that no Pod holds any more
        return FlowResult(
            r.outcome,
            cause,
            found.elapsed_s + r.latency,
            endpoint,
            r.pod,
            r.new_flow,
            r.conn_id,
            r.served,
            r.handle,
            r.icmp,
        )

    def _service_s(self, res: Resolution, seed: int) -> float:
        if res.app is None:
            return 0.0
        u = service_uniforms(np.array([seed], dtype=np.uint64))
        return float(self.ctx.service_time_of(res.app).quantile(u)[0])

    def _result(
        self,
        w: int,
        res: Resolution,
        seed: int,
        *,
        new_flow: bool,
        conn_id: int = -1,
        handle: object = None,
    ) -> FlowResult:
        outcome, cause, latency = finish(res, self.specs[w], self._service_s(res, seed))
        return FlowResult(
            outcome,
            cause,
            latency,
            res.endpoint,
            res.pod,
            new_flow,
            conn_id,
            res.served,
            handle,
            res.icmp,
        )

    def _dropped(self, w: int) -> FlowResult:
        wait = self.specs[w].failure_wait_s("connect")
        return FlowResult(Outcome.DROPPED, Cause.CONNTRACK_FULL, wait)

    def _new(
        self, w: int, client: Client, dial: Dial, seed: int, t: float, sport: int | None = None
    ) -> tuple[NfOutcome, Resolution] | None:
        """Capacity check, then the rules: the verdict and what it leads to; None if dropped."""
        if not self.path.room(client.node, t):
            return None
        nf = self.path.dispatch(client.node, client.ip, client.origin, dial, seed, t)
        if self.userspace.redirected(client.node, nf):
            port = nf.destination[1]
            res = self.userspace.accept(client.node, port, client, dial, t, sport, self.path.room)
            return nf, res
        return nf, classify(nf, dial, client.node, self.ctx)

    def _table(self, node: str) -> ConntrackTable:
        return self.ctx.kernels[node].conntrack

    # --- anonymous flows --------------------------------------------------------------------

    def _anonymous(self, w: int, client: Client, dial: Dial, seed: int, t: float) -> FlowResult:
        new = self._new(w, client, dial, seed, t)
        if new is None:
            return self._dropped(w)
        nf, res = new
        result = self._result(w, res, seed, new_flow=True)
        handle = self.path.anonymous(client.node, client, dial, res, t, result.latency)
        if self.userspace.redirected(client.node, nf):
            self._upstream(client.node, dial, res, t, result.latency)
        return FlowResult(
            result.outcome,
            result.cause,
            result.latency,
            result.endpoint,
            result.pod,
            True,
            -1,
            result.served,
            handle,
            result.icmp,
        )

    def _upstream(self, node: str, dial: Dial, res: Resolution, t: float, latency: float) -> None:
        """The entry of kube-proxy's own connection to the endpoint it reached (userspace mode).

        From the node's address to the endpoint, no NAT, the client's lifetime (the copy loop
        closes both sides together). A TCP connection only if it connected; a UDP datagram
        always leaves one (a UDP "dial" never fails).
        """
        if not res.endpoint or (dial.protocol == "tcp" and not res.served):
            return
        ip, _, port = res.endpoint.rpartition(":")
        kernel = self.ctx.kernels[node]
        source = Client(f"kube-proxy@{node}", kernel.network.node_ips[0], node, "host")
        target = Dial(ip, int(port), dial.protocol, dial.label, None, None)
        self.path.anonymous(node, source, target, replace(res, endpoint=""), t, latency)

    # --- UDP, fixed source port -------------------------------------------------------------

    def _udp_fixed(self, w: int, client: Client, dial: Dial, seed: int, t: float) -> FlowResult:
        table = self._table(client.node)
        original = FlowTuple("udp", client.ip, FIXED_UDP_PORT_BASE + w, dial.ip, dial.port)
        entry = table.lookup(original, t)
        if entry is not None:
            table.update(original, "original", t)
            ip, port = entry.dnat_destination
            if self.userspace.local(client.node, ip):
                res = self.userspace.accept(client.node, port, client, dial, t, original.src_port)
            else:
                res = at_destination(
                    ip, port, entry.is_dnat, dial, client.node, self.ctx, via_conntrack=True
                )
            new_flow = False
        else:
            new = self._new(w, client, dial, seed, t, original.src_port)
            if new is None:
                return self._dropped(w)
            nf, res = new
            if res.accepted:
                ip, port = nf.destination
                reply = FlowTuple("udp", ip, port, client.ip, original.src_port)
                entry = table.create(original, reply, t)
            new_flow = True
        result = self._result(w, res, seed, new_flow=new_flow)
        if result.served and entry is not None:
            # The answer comes back at the end (stamped ahead: only its expiry matters).
            table.update(entry.reply, "reply", t + result.latency)
            ip, port = entry.dnat_destination
            if self.userspace.local(client.node, ip):
                self.userspace.answered(
                    client.node, port, client, original.src_port, t + result.latency
                )
        return result

    # --- keep-alive ---------------------------------------------------------------------------

    def _keepalive(
        self,
        w: int,
        client_id: int,
        client: Client,
        dial: Dial,
        seed: int,
        t: float,
        model: KeepAlive,
    ) -> FlowResult:
        key = (w, client_id)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool([None] * model.connections)
        slot = pool.next % model.connections
        pool.next += 1
        conn = pool.slots[slot]
        if conn is not None:
            backend = None if conn.broken else on_connection(conn.backend_ip, conn.pod, self.ctx)
            if backend is None:
                # Writing on a connection whose peer is gone: RST.
                self._close(conn, t, "rst")
                return FlowResult(
                    Outcome.RESET,
                    conn.broken_by,
                    0.0,
                    conn.endpoint,
                    conn.pod,
                    False,
                    conn.conn_id,
                )
            res = self._on_open(conn, backend)
            return self._result(w, res, seed, new_flow=False, conn_id=conn.conn_id, handle=conn)
        new = self._new(w, client, dial, seed, t)
        if new is None:
            return self._dropped(w)
        nf, res = new
        table = self._table(client.node)
        conn_id, handle = -1, None
        if res.accepted:
            sport = self.ports.allocate(table, "tcp", client.ip, dial.ip, dial.port, t)
            original = FlowTuple("tcp", client.ip, sport, dial.ip, dial.port)
            ip, port = nf.destination
            reply = FlowTuple("tcp", ip, port, client.ip, sport)
            entry = table.create(original, reply, t)
            if entry is not None and res.served:
                table.update(reply, "syn_ack", t)
                table.update(original, "ack", t)
                proxied = self.userspace.redirected(client.node, nf)
                conn = Connection(
                    self._next_conn,
                    client.node,
                    original,
                    reply,
                    res.endpoint,
                    res.pod,
                    res.endpoint.rpartition(":")[0] if proxied else ip,
                    res.outcome is Outcome.MISROUTED,
                    key,
                    slot,
                    proxied=proxied,
                    upstream=self._upstream_entry(client.node, res, t) if proxied else None,
                )
                self._next_conn += 1
                pool.slots[slot] = conn
                self._by_pod.setdefault(conn.pod, {})[conn.conn_id] = conn
                conn_id, handle = conn.conn_id, conn
            elif entry is not None and res.outcome is Outcome.REFUSED:
                table.update(reply, "rst", t)
            elif entry is not None and res.wait is Wait.CONNECT:
                # SYN retransmits keep the entry until the client gives up.
                table.update(original, "syn", t + self.specs[w].failure_wait_s("connect"))
        return self._result(w, res, seed, new_flow=True, conn_id=conn_id, handle=handle)

    def _upstream_entry(self, node: str, res: Resolution, t: float) -> FlowTuple | None:
        """kube-proxy's established connection to ``res``'s endpoint (userspace mode)."""
        table = self._table(node)
        source = self.ctx.kernels[node].network.node_ips[0]
        ip, _, port_text = res.endpoint.rpartition(":")
        port = int(port_text)
        sport = self.ports.allocate(table, "tcp", source, ip, port, t)
        original = FlowTuple("tcp", source, sport, ip, port)
        reply = FlowTuple("tcp", ip, port, source, sport)
        if table.create(original, reply, t) is None:
            return None  # pragma: no cover - the dial found room
        table.update(reply, "syn_ack", t)
        table.update(original, "ack", t)
        return original

    def _on_open(self, conn: Connection, backend: Backend) -> Resolution:
        outcome = Outcome.MISROUTED if conn.misrouted else Outcome.OK
        cause = Cause.IP_REUSED if conn.misrouted else Cause.NONE
        extra_s = self.userspace.copy.per_request_s if conn.proxied else 0.0
        return Resolution(
            outcome, cause, conn.endpoint, conn.pod, backend.app, Wait.NONE, True, extra_s
        )

    def _close(self, conn: Connection, t: float, how: str) -> None:
        """Forget ``conn`` and move its conntrack entry as the close does (``fin`` or ``rst``)."""
        pool = self._pools.get(conn.pool)
        if pool is not None and pool.slots[conn.slot] is conn:
            pool.slots[conn.slot] = None
        self._by_pod.get(conn.pod, {}).pop(conn.conn_id, None)
        table = self._table(conn.node)
        for original in (conn.original, conn.upstream):
            entry = table.lookup(original, t) if original is not None else None
            if entry is None:
                continue
            if how == "rst":
                table.update(entry, "rst", t, direction="reply")
            else:
                steps: tuple[tuple[Direction, str], ...] = (
                    ("original", "fin"),
                    ("reply", "fin"),
                    ("original", "ack"),
                )
                for direction, event in steps:
                    table.update(entry, event, t, direction=direction)

    # --- control-plane reactions --------------------------------------------------------------

    def backend_changed(self, backend: Backend, t: float, reset: set[int]) -> None:
        """React to ``backend``'s new state: drain closes, a crash or exit breaks connections.

        ``reset`` holds ids of connections whose in-flight requests were just reset: their
        clients know, so those close at once instead of staying broken.
        """
        conns = list(self._by_pod.get(backend.pod, {}).values())
        if backend.state is BackendState.DRAINING:
            for conn in conns:
                self._close(conn, t, "fin")
        elif backend.state in (BackendState.CRASHED, BackendState.EXITED, BackendState.UNREACHABLE):
            for conn in conns:
                if conn.conn_id in reset:
                    self._close(conn, t, "rst")
                else:
                    conn.broken = True

    def proxy_exited(self, node: str, t: float, reset: set[int]) -> None:
        """The userspace kube-proxy of ``node`` exited: every connection through it breaks.

        ``reset`` holds ids of connections whose in-flight requests were just reset: those
        close at once; the others stay broken until their next request (``proxy-exited``).
        """
        for pool in self._pools.values():
            for conn in pool.slots:
                if conn is None or not conn.proxied or conn.node != node:
                    continue
                if conn.conn_id in reset:
                    self._close(conn, t, "rst")
                else:
                    conn.broken = True
                    conn.broken_by = Cause.PROXY_EXITED

    def drop_clients(self, alive: set[int], t: float) -> None:
        """Close the connections of clients that no longer exist (their sockets are gone)."""
        for key in [k for k in self._pools if k[1] not in alive]:
            for conn in self._pools[key].slots:
                if conn is not None:
                    self._close(conn, t, "fin")
            del self._pools[key]

    def reset_anonymous(self, node: str, handle: object, t: float) -> None:
        """Forward a reset of an anonymous flow to the kernel path."""
        self.path.reset_anonymous(node, handle, t)
