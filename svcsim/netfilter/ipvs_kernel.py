"""The IPVS kernel at run time: services with live destinations, schedulers, connection table.

:class:`IpvsKernel` holds one node's IPVS state as the kernel does and answers "what happens to
the first packet of this new connection" (:meth:`IpvsKernel.connect`), with the connection
table's own timeouts, persistence templates and the sysctls kube-proxy sets. It is mutable and
owned by whoever owns the node (a run's World, or a ``trace`` command); it draws nothing at
random (IPVS schedulers are deterministic).

The model follows the kernel line kube-proxy targets today (>= 5.9, where
``IPVSConnReuseModeFixedKernelVersion`` leaves ``conn_reuse_mode`` at its default 1); set
:attr:`IpvsSysctls.old_conntrack_drops` for the older kernels' behaviour. Sources
(torvalds/linux net/netfilter/ipvs/, the versions the search tool stored):

* Timeouts (``ip_vs_proto_tcp.c`` ``tcp_timeouts``, ``ip_vs_proto_udp.c`` ``udp_timeouts``):
  ESTABLISHED 900 s, FIN_WAIT 120 s, TIME_WAIT 120 s, CLOSE 10 s, SYN_RECV 60 s; UDP 300 s. They
  are what ``ipvsadm --set tcp tcpfin udp`` (kube-proxy ``--ipvs-tcp-timeout`` etc.) changes.
* Counts: a new TCP connection counts as inactive until ESTABLISHED, active while established,
  inactive again after; UDP connections are always inactive (``ip_vs_bind_dest``,
  ``set_tcp_state``). Templates count as neither.
* Persistence (``ip_vs_sched_persist``, ``ip_vs_check_template`` in ip_vs_core.c/ip_vs_conn.c):
  a template (client address, VIP, port) points at the chosen real server; it lives while
  connections it controls exist, plus ``persistent_timeout_s`` after its last use. A template
  whose server is gone, or at weight 0 with ``expire_quiescent_template`` (kube-proxy sets 1),
  is invalidated and the connection scheduled afresh.
* Port reuse (``ip_vs_in_hook``): a new connection (SYN) whose 5-tuple still has an entry is
  rescheduled when the entry's server is at weight 0 and ``expire_nodest_conn`` is 1, or, with
  ``conn_reuse_mode`` != 0, when the entry is in TIME_WAIT or CLOSE and controls nothing; a
  controlled (persistent) entry is never rescheduled. On kernels < 5.9 with
  ``net.ipv4.vs.conntrack=1`` (kube-proxy sets it) rescheduling drops the SYN instead
  (``ip_vs_conn_uses_old_conntrack``): the client retries after its SYN timeout (1 s) — the
  "1 second delay" of kubernetes #81775 that made kube-proxy set ``conn_reuse_mode=0`` on
  4.1 <= kernel < 5.9, where a reused port then stays with the old (maybe deleted) server.
* No destination (``ip_vs_leave``): the scheduler found nothing (all weights 0, or empty):
  ICMP port unreachable to the client, the packet dropped — "connection refused".
* A server that was deleted (not just weight 0) while an entry still points at it: with
  ``expire_nodest_conn=1`` (kube-proxy sets it) the entry is expired and the packet dropped;
  the client's retransmission is scheduled afresh.
"""

from __future__ import annotations

import enum
import heapq
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import compress
from typing import Final

from svcsim.netfilter.ipvs import VirtualServer
from svcsim.netfilter.ipvs_sched import Destination, Flow, Scheduler, make_scheduler

SYN_RECV_TIMEOUT_S: Final = 60.0
TIME_WAIT_TIMEOUT_S: Final = 120.0
CLOSE_TIMEOUT_S: Final = 10.0
"""``tcp_timeouts`` entries ``ipvsadm --set`` does not change."""


@dataclass(frozen=True, slots=True)
class IpvsSysctls:
    """The IPVS sysctls and timeouts that change behaviour, at kube-proxy's values."""

    tcp_timeout_s: float = 900.0
    """ESTABLISHED timeout (``ipvsadm --set`` first value; kube-proxy ``--ipvs-tcp-timeout``,
    0 = leave the kernel's 900 s)."""
    tcp_fin_timeout_s: float = 120.0
    """FIN_WAIT timeout (``--ipvs-tcpfin-timeout``)."""
    udp_timeout_s: float = 300.0
    """UDP timeout (``--ipvs-udp-timeout``)."""
    conn_reuse_mode: int = 1
    """``net.ipv4.vs.conn_reuse_mode`` (kernel default 1; kube-proxy sets 0 on 4.1..5.9)."""
    expire_nodest_conn: int = 1
    """``net.ipv4.vs.expire_nodest_conn`` (kube-proxy sets 1)."""
    expire_quiescent_template: int = 1
    """``net.ipv4.vs.expire_quiescent_template`` (kube-proxy sets 1)."""
    old_conntrack_drops: bool = False
    """Kernel < 5.9 with ``net.ipv4.vs.conntrack=1``: a rescheduled SYN is dropped."""


class ConnState(enum.Enum):
    """IPVS connection states the model distinguishes."""

    SYN_RECV = "SYN_RECV"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT = "FIN_WAIT"
    TIME_WAIT = "TIME_WAIT"
    CLOSE = "CLOSE"
    UDP = "UDP"


class Verdict(enum.Enum):
    """What IPVS did with the first packet of a new connection."""

    FORWARDED = "forwarded"
    """Sent to ``real_server`` (DNAT to it, masqueraded by the nat table if marked)."""
    NO_SERVICE = "no-service"
    """No virtual server for the destination: IPVS lets the packet go on untouched."""
    REFUSED = "refused"
    """No destination available: ICMP port unreachable, packet dropped (``ip_vs_leave``)."""
    DROPPED = "dropped"
    """Dropped without an answer (old-conntrack reschedule, or an entry to a deleted server);
    the client retransmits."""


@dataclass(frozen=True, slots=True)
class ConnKey:
    """An IPVS connection entry's key: protocol, client address and port, VIP and port."""

    protocol: str
    src: str
    sport: int
    vaddr: str
    vport: int


@dataclass(frozen=True, slots=True)
class TemplateKey:
    """A persistence template's key: protocol, client address, VIP and port."""

    protocol: str
    src: str
    vaddr: str
    vport: int


@dataclass(slots=True)
class _Dest:
    address: str
    port: int
    weight: int
    last_weight: int
    active: int = 0
    inactive: int = 0
    """The kernel's ``activeconns`` / ``inactconns``, kept up to date as entries change."""

    @property
    def key(self) -> tuple[str, int]:
        return self.address, self.port


@dataclass(slots=True)
class _Service:
    spec: VirtualServer
    dests: list[_Dest]
    scheduler: Scheduler
    trash: dict[tuple[str, int], _Dest] = field(default_factory=dict)
    """Deleted destinations, kept with their counters (``ip_vs_trash_get_dest``): a real
    server added again is the same object, and entries still bound to it count on it."""


@dataclass(slots=True, eq=False)
class _Conn:
    dest: tuple[str, int]
    state: ConnState
    expires_s: float
    template: TemplateKey | None = None
    owner: _Dest | None = None
    """The destination the entry is bound to and counted on (``cp->dest``)."""
    version: int = 0
    """Bumped by :meth:`IpvsKernel.reset`: transitions planned before it no longer apply."""


@dataclass(order=True, slots=True)
class _Timer:
    """A connection's expiry check, or a state change planned by the traffic model.

    Timers run in (``at_s``, ``seq``) order; one whose entry was replaced, reset or removed
    since it was set is skipped (so a timer is never cancelled, only outdated).
    """

    at_s: float
    seq: int
    key: ConnKey = field(compare=False)
    conn: _Conn = field(compare=False)
    version: int = field(compare=False)
    state: ConnState | None = field(compare=False)
    """The state entered at ``at_s`` (its timer restarts); None: an expiry check."""


@dataclass(slots=True)
class _Template:
    dest: tuple[str, int]
    expires_s: float
    timeout_s: float
    n_control: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    """The result of :meth:`IpvsKernel.connect`, with the reason in words.

    ``persistent``: a persistence template (or the connection it controls) chose the real
    server, not the scheduler; ``weight`` is the chosen real server's weight then (0: a
    draining server still reached through persistence).
    """

    verdict: Verdict
    real_server: tuple[str, int] | None = None
    reason: str = ""
    persistent: bool = False
    weight: int = 1


@dataclass(slots=True)
class IpvsKernel:
    """One node's live IPVS state."""

    sysctls: IpvsSysctls = field(default_factory=IpvsSysctls)
    services: dict[tuple[str, str, int], _Service] = field(default_factory=dict)
    conns: dict[ConnKey, _Conn] = field(default_factory=dict)
    templates: dict[TemplateKey, _Template] = field(default_factory=dict)
    clock_s: float = 0.0
    """The latest time the table was brought up to (:meth:`expire`)."""
    _timers: list[_Timer] = field(default_factory=list)
    _seq: int = 0
    installed: tuple[VirtualServer, ...] | None = field(default=None, repr=False, compare=False)
    """The specs of the last :meth:`install`, in its order, when their keys were unique (the
    services hold exactly them); None otherwise."""

    # --- what kube-proxy does: add, update, delete ------------------------------------------

    def install(self, virtual_servers: Iterable[VirtualServer]) -> None:
        """Make the services and real servers ``virtual_servers`` (kube-proxy's sync).

        New real servers are added in the given order (each at the list head, as the kernel
        does); weights are updated in place; real servers and services not given are deleted
        (kube-proxy's graceful termination decides *when* to omit one: keep it at weight 0
        while it has connections).
        """
        specs = tuple(virtual_servers)
        changed = self._changed_in_place(specs)
        if changed is not None:
            # The same keys as the last install, in order: only the specs that changed.
            for vs in changed:
                self._install_one(vs.key, vs)
            self.installed = specs
            return
        wanted = {vs.key: vs for vs in specs}
        for key in [k for k in self.services if k not in wanted]:
            del self.services[key]
        for key, vs in wanted.items():
            self._install_one(key, vs)
        self.installed = specs if len(wanted) == len(specs) else None

    def _changed_in_place(self, specs: tuple[VirtualServer, ...]) -> list[VirtualServer] | None:
        """The specs that differ from the last install's, if only same-key ones do; else None."""
        last = self.installed
        if last is None or len(last) != len(specs) or len(self.services) != len(specs):
            return None
        # The specs that are other objects, found by identity in C (10,000 in a big cluster).
        changed = list(compress(specs, map(operator.is_not, last, specs)))
        olds = compress(last, map(operator.is_not, last, specs))
        if any(old.key != new.key for old, new in zip(olds, changed, strict=True)):
            return None
        return changed

    def _install_one(self, key: tuple[str, str, int], vs: VirtualServer) -> None:
        """Make the service ``key`` hold ``vs`` (added, or its real servers synced)."""
        svc = self.services.get(key)
        if svc is not None and svc.spec is vs:
            return  # its destinations are this very spec's already (_sync_dests)
        if svc is None or svc.spec.scheduler != vs.scheduler:
            svc = _Service(vs, [], make_scheduler(vs.scheduler))
            svc.scheduler.dests_changed([])
            self.services[key] = svc
        svc.spec = vs
        self._sync_dests(svc, vs)

    def _sync_dests(self, svc: _Service, vs: VirtualServer) -> None:
        sched = svc.scheduler
        wanted = {(rs.address, rs.port): rs.weight for rs in vs.real_servers}
        i = 0
        while i < len(svc.dests):
            d = svc.dests[i]
            if d.key not in wanted:
                del svc.dests[i]
                svc.trash[d.key] = d
                sched.dests_changed(self._view(svc), removed_index=i)
                continue
            if d.weight != wanted[d.key]:
                d.weight = wanted[d.key]
                if d.weight:
                    d.last_weight = d.weight
                sched.dests_changed(self._view(svc))
            i += 1
        have = {d.key for d in svc.dests}
        for rs in reversed(vs.real_servers):
            if (rs.address, rs.port) not in have:
                dest = svc.trash.pop((rs.address, rs.port), None)
                if dest is None:
                    dest = _Dest(rs.address, rs.port, rs.weight, rs.weight)
                dest.weight = rs.weight
                if rs.weight:
                    dest.last_weight = rs.weight
                svc.dests.insert(0, dest)
                sched.add_at_head()
                sched.dests_changed(self._view(svc))

    def real_servers(self, key: tuple[str, str, int]) -> tuple[Destination, ...]:
        """The live destinations of the service ``key`` in list order, with their counts."""
        svc = self.services.get(key)
        return self._view(svc) if svc is not None else ()

    def _view(self, svc: _Service) -> tuple[Destination, ...]:
        return tuple(
            Destination(d.address, d.port, d.weight, d.last_weight, d.active, d.inactive)
            for d in svc.dests
        )

    def _count(self, key: ConnKey, conn: _Conn, delta: int) -> None:
        """Add ``delta`` to the counter of the entry's state on the server it is bound to."""
        dest = conn.owner
        if dest is None:
            return
        if conn.state is ConnState.ESTABLISHED:
            dest.active += delta
        else:
            dest.inactive += delta

    # --- the packet path ----------------------------------------------------------------------

    def connect(
        self, protocol: str, src: str, sport: int, vaddr: str, vport: int, now_s: float
    ) -> Decision:
        """The first packet (SYN, or a UDP datagram without an entry) of a new connection."""
        self.expire(now_s)
        proto = protocol.upper()
        key = ConnKey(proto, src, sport, vaddr, vport)
        svc = self.services.get((proto, vaddr, vport))
        conn = self.conns.get(key)
        if conn is not None:
            reused = self._reuse(key, conn, svc)
            if reused is not None:
                return reused
        if svc is None:
            return Decision(Verdict.NO_SERVICE, None, f"no IPVS service {proto} {vaddr}:{vport}")
        flow = Flow(src, sport, vaddr, vport)
        template = None
        if svc.spec.persistent_timeout_s is not None:
            template = TemplateKey(proto, src, vaddr, vport)
            chosen = self._persistent(svc, template, flow, now_s)
        else:
            chosen = self._schedule(svc, flow)
        if chosen is None:
            return Decision(
                Verdict.REFUSED,
                None,
                f"{svc.spec.scheduler}: no destination available (ICMP port unreachable)",
            )
        state = ConnState.UDP if proto == "UDP" else ConnState.SYN_RECV
        owner = next(d for d in svc.dests if d.key == chosen)
        conn = _Conn(chosen, state, now_s + self._timeout(state), template, owner)
        self.conns[key] = conn
        self._arm(key, conn)
        self._count(key, conn, +1)
        if template is not None:
            self.templates[template].n_control += 1
        how = "persistence template" if template is not None else svc.spec.scheduler
        weight = self._weight(svc, chosen)
        return Decision(
            Verdict.FORWARDED,
            chosen,
            f"{how} chose {chosen[0]}:{chosen[1]}",
            persistent=template is not None,
            weight=weight,
        )

    @staticmethod
    def _weight(svc: _Service, dest: tuple[str, int]) -> int:
        return next((d.weight for d in svc.dests if d.key == dest), 0)

    def _reuse(self, key: ConnKey, conn: _Conn, svc: _Service | None) -> Decision | None:
        """An entry exists for this 5-tuple: reuse it, or expire it (None: schedule anew)."""
        dest = None
        if svc is not None:
            dest = next((d for d in svc.dests if d.key == conn.dest), None)
        controlled = conn.template is not None
        if dest is None:
            if self.sysctls.expire_nodest_conn:
                self._drop_conn(key)
                return Decision(
                    Verdict.DROPPED, None, "entry's real server was deleted: entry expired"
                )
            return Decision(Verdict.DROPPED, None, "entry's real server was deleted")
        quiesced = bool(self.sysctls.expire_nodest_conn) and dest.weight == 0
        reusable = bool(self.sysctls.conn_reuse_mode) and conn.state in (
            ConnState.TIME_WAIT,
            ConnState.CLOSE,
        )
        resched = not controlled and (quiesced or reusable)
        if not resched:
            weight = dest.weight
            if conn.state is ConnState.UDP:
                # Every datagram restarts the entry's timer.
                conn.expires_s = self.clock_s + self._timeout(ConnState.UDP)
                self._arm(key, conn)
                return Decision(
                    Verdict.FORWARDED, conn.dest, "existing UDP entry", controlled, weight
                )
            self._count(key, conn, -1)
            conn.state = ConnState.SYN_RECV
            conn.version += 1
            conn.expires_s = self.clock_s + self._timeout(ConnState.SYN_RECV)
            self._arm(key, conn)
            self._count(key, conn, +1)
            return Decision(
                Verdict.FORWARDED,
                conn.dest,
                "source port reused: same real server as before",
                controlled,
                weight,
            )
        self._drop_conn(key)
        if self.sysctls.old_conntrack_drops:
            return Decision(
                Verdict.DROPPED, None, "port reuse on a kernel < 5.9: SYN dropped, client retries"
            )
        return None

    def _persistent(
        self, svc: _Service, tkey: TemplateKey, flow: Flow, now_s: float
    ) -> tuple[str, int] | None:
        tmpl = self.templates.get(tkey)
        if tmpl is not None:
            dest = next((d for d in svc.dests if d.key == tmpl.dest), None)
            quiescent = dest is not None and dest.weight == 0
            if dest is None or (quiescent and self.sysctls.expire_quiescent_template):
                if tmpl.n_control == 0:
                    del self.templates[tkey]
                tmpl = None
            else:
                tmpl.expires_s = now_s + tmpl.timeout_s
                return tmpl.dest
        chosen = self._schedule(svc, flow)
        if chosen is not None:
            timeout = float(svc.spec.persistent_timeout_s or 0)
            old = self.templates.get(tkey)
            n = old.n_control if old is not None else 0
            self.templates[tkey] = _Template(chosen, now_s + timeout, timeout, n)
        return chosen

    def _schedule(self, svc: _Service, flow: Flow) -> tuple[str, int] | None:
        index = svc.scheduler.schedule(self._view(svc), flow)
        return None if index is None else svc.dests[index].key

    # --- the connection's life ------------------------------------------------------------

    def established(self, key: ConnKey, now_s: float) -> None:
        """The TCP handshake completed: the entry is ESTABLISHED (counted active)."""
        self._set_state(key, ConnState.ESTABLISHED, now_s)

    def closed(self, key: ConnKey, now_s: float) -> None:
        """The client closed a TCP connection: FIN_WAIT, then TIME_WAIT after the exchange."""
        self._set_state(key, ConnState.FIN_WAIT, now_s)

    def finished(self, key: ConnKey, now_s: float) -> None:
        """The close completed: TIME_WAIT (reusable at once with ``conn_reuse_mode``)."""
        self._set_state(key, ConnState.TIME_WAIT, now_s)

    def plan(self, key: ConnKey, at_s: float, state: ConnState) -> None:
        """The connection's packets put its entry in ``state`` at ``at_s`` (maybe ahead).

        What a simulation that knows a connection's future tells the table: the handshake,
        the close, a UDP answer (``UDP`` again: its timer restarts). Planned changes apply in
        time order whenever the table is read at or after ``at_s`` (:meth:`expire`), unless
        the entry was replaced, reset or removed in between.
        """
        conn = self.conns.get(key)
        if conn is None:
            raise KeyError(f"no IPVS connection {key}")
        if at_s <= self.clock_s:
            self._enter(key, conn, state, at_s)
            return
        self._seq += 1
        heapq.heappush(self._timers, _Timer(at_s, self._seq, key, conn, conn.version, state))

    def reset(self, key: ConnKey, now_s: float) -> None:
        """A RST ends the connection now: CLOSE; changes planned for it no longer apply."""
        self.settle(key, now_s, ConnState.CLOSE)

    def settle(self, key: ConnKey, now_s: float, state: ConnState) -> None:
        """The TCP connection ends now in ``state``; changes planned for it no longer apply.

        TIME_WAIT after the FIN exchange, CLOSE after a RST. No entry: nothing happens.
        """
        self.expire(now_s)
        conn = self.conns.get(key)
        if conn is None or conn.state is ConnState.UDP:
            return
        conn.version += 1
        self._enter(key, conn, state, now_s)

    def entry(self, key: ConnKey, now_s: float) -> ConnState | None:
        """The state of the entry ``key`` at ``now_s`` (None: there is none, or it expired)."""
        self.expire(now_s)
        conn = self.conns.get(key)
        return None if conn is None else conn.state

    def forward(self, key: ConnKey, now_s: float) -> Decision | None:
        """A packet of an existing connection that opens nothing (UDP, or TCP without SYN).

        None if there is no entry (the packet would be scheduled as a new connection). With
        ``expire_nodest_conn`` (kube-proxy sets 1), an entry whose real server was deleted is
        expired and the packet dropped (``ip_vs_in_hook``: ``!(cp->dest->flags &
        IP_VS_DEST_F_AVAILABLE)``); the next packet is scheduled afresh. Otherwise the
        packet follows the entry (to its server even at weight 0) and restarts its timer.
        """
        self.expire(now_s)
        conn = self.conns.get(key)
        if conn is None:
            return None
        svc = self.services.get((key.protocol, key.vaddr, key.vport))
        dest = None if svc is None else next((d for d in svc.dests if d.key == conn.dest), None)
        if dest is None and self.sysctls.expire_nodest_conn:
            self._drop_conn(key)
            return Decision(
                Verdict.DROPPED, None, "entry's real server was deleted: entry expired, dropped"
            )
        conn.expires_s = now_s + self._timeout(conn.state)
        self._arm(key, conn)
        weight = dest.weight if dest is not None else 0
        return Decision(
            Verdict.FORWARDED, conn.dest, "existing entry", conn.template is not None, weight
        )

    def touch(self, key: ConnKey, now_s: float) -> bool:
        """A packet of an existing connection: its entry's timer restarts; False if none."""
        self.expire(now_s)
        conn = self.conns.get(key)
        if conn is None:
            return False
        conn.expires_s = now_s + self._timeout(conn.state)
        self._arm(key, conn)
        return True

    def _set_state(self, key: ConnKey, state: ConnState, now_s: float) -> None:
        conn = self.conns.get(key)
        if conn is None:
            raise KeyError(f"no IPVS connection {key}")
        self._enter(key, conn, state, now_s)

    def _enter(self, key: ConnKey, conn: _Conn, state: ConnState, at_s: float) -> None:
        if conn.state is not ConnState.UDP:
            self._count(key, conn, -1)
            conn.state = state
            self._count(key, conn, +1)
        conn.expires_s = at_s + self._timeout(conn.state)
        self._arm(key, conn)

    def _arm(self, key: ConnKey, conn: _Conn) -> None:
        """Set the expiry check of ``conn``'s current timer."""
        self._seq += 1
        heapq.heappush(
            self._timers, _Timer(conn.expires_s, self._seq, key, conn, conn.version, None)
        )

    def _timeout(self, state: ConnState) -> float:
        return {
            ConnState.SYN_RECV: SYN_RECV_TIMEOUT_S,
            ConnState.ESTABLISHED: self.sysctls.tcp_timeout_s,
            ConnState.FIN_WAIT: self.sysctls.tcp_fin_timeout_s,
            ConnState.TIME_WAIT: TIME_WAIT_TIMEOUT_S,
            ConnState.CLOSE: CLOSE_TIMEOUT_S,
            ConnState.UDP: self.sysctls.udp_timeout_s,
        }[state]

    def expire(self, now_s: float) -> None:
        """Bring the table to ``now_s``: planned changes and timers due, in time order.

        An entry whose timer ran out goes; a template goes once it controls nothing and its
        own timer ran out.
        """
        self.clock_s = max(self.clock_s, now_s)
        timers = self._timers
        while timers and timers[0].at_s <= now_s:
            timer = heapq.heappop(timers)
            conn = self.conns.get(timer.key)
            if conn is not timer.conn:
                continue  # the entry went (or was replaced) since
            if timer.state is not None:
                if conn.version == timer.version:
                    self._enter(timer.key, conn, timer.state, timer.at_s)
            elif conn.expires_s <= now_s:
                self._drop_conn(timer.key)
        for tkey in [
            k for k, t in self.templates.items() if t.expires_s <= now_s and t.n_control == 0
        ]:
            del self.templates[tkey]

    def _drop_conn(self, key: ConnKey) -> None:
        conn = self.conns.pop(key)
        self._count(key, conn, -1)
        if conn.template is not None and conn.template in self.templates:
            self.templates[conn.template].n_control -= 1

    def connection_counts(self) -> dict[tuple[str, ...], tuple[int, int]]:
        """``(ActiveConn, InActConn)`` per (protocol, vip, vport, rip, rport) as text keys."""
        return {
            (proto, vaddr, str(vport), d.address, str(d.port)): (d.active, d.inactive)
            for (proto, vaddr, vport), svc in self.services.items()
            for d in svc.dests
        }
