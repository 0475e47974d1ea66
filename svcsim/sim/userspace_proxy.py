"""The userspace proxier inside one kube-proxy process: proxy sockets, balancers, portals.

kube-proxy's userspace mode (last shipped in v1.25), kubernetes ``pkg/proxy/userspace``
@0096f4a4 (``proxier.go``, ``roundrobin.go``, ``proxysocket.go``). One
:class:`UserspaceProcess` lives as long as one kube-proxy process
(:class:`~svcsim.sim.kubeproxy.KubeProxy` creates it with each life); the runner, informers,
change tracking and failure handling are the shared ones of :mod:`svcsim.sim.kubeproxy`.

* **Start** (``createProxier``): ``iptablesInit`` then ``iptablesFlush``: the portal chains are
  emptied at once, because the ports of the previous process are gone; nothing is redirected
  until the first sync opens portals again (:meth:`UserspaceProcess.flush`). A process that was
  already running when the simulation starts adopts the node's state instead
  (:meth:`UserspaceProcess.adopt`).
* **Endpoints** (``LoadBalancerRR.OnEndpointsAdd/Update/Delete``): the balancer of each Service
  port is updated *in the watch handler*, at once, independent of any sync: a changed set of
  ready endpoints is shuffled and the round robin starts over; a port whose endpoints are gone is
  reset. A balancer made by an endpoint event before its Service was synced keeps the default
  affinity TTL (``newServiceInternal`` only sets the affinity *type* of an existing one).
  Upstream's userspace mode reads ``Endpoints`` objects (it does not support EndpointSlices);
  the simulation has no Endpoints controller, so the ready endpoints of the EndpointSlices stand
  in for the Endpoints' ``addresses`` (the same Pods, one watch apart).
* **Sync** (``syncProxyRules``): for each changed Service, ``mergeService`` keeps a Service
  port whose configuration is the same (:func:`~svcsim.proxy.userspace.same_config`), else
  closes its socket and portal and opens a new socket on a new port
  (:class:`~svcsim.proxy.userspace.ProxyPortAllocator`) and its portal; ``unmergeService``
  closes removed ports, deletes their balancers and clears the UDP conntrack entries of removed
  UDP ClusterIPs; then ``iptablesInit`` re-adds a missing jump from a built-in chain (prepended
  or appended as it first wrote it) and ``ensurePortals`` re-adds any portal rule missing for the
  open sockets. Closing a portal (``closePortal``) deletes only that portal's rules.
  Portal rules are edited in place (``EnsureRule`` / ``DeleteRule``): rules that are not the
  proxier's (a hand edit) stay. Sockets change whatever happens to iptables; if the sync's
  iptables calls fail (the xtables lock is held: ``block-sync``) no rule changes, the closes are
  lost (upstream only logs them), and the next sync ensures the open ports' portals.
* **Exit** (crash, restart, node failure): the kernel closes every socket of the process and
  every connection through it (:meth:`~svcsim.sim.proxy_sockets.SocketTable.process_exited`);
  the portal rules stay, redirecting to ports nobody listens on.

Cost: a sync costs the iptables mode's model (``syncCost``: base + per rule) over every portal
rule the sync ensures (``ensurePortals`` checks each one with its own ``iptables`` call). That
is the simple documented choice; no measurement of userspace syncs was found.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from svcsim.k8s.objects import EndpointSlice
from svcsim.netfilter.model import Rule, Ruleset, Table
from svcsim.proxy.caches import CompileCaches
from svcsim.proxy.endpoints import (
    EndpointsMap,
    ServicePortInfo,
    build_endpoints_map,
)
from svcsim.proxy.names import ServicePortName
from svcsim.proxy.userspace import (
    INIT_JUMPS,
    INIT_RULES,
    PortalRule,
    ProxyPortAllocator,
    init_ruleset,
    portal_rule_count,
    portal_rules,
    same_config,
)
from svcsim.proxy.userspace_lb import DEFAULT_AFFINITY_S, UDP_IDLE_TIMEOUT_S, RoundRobinBalancer
from svcsim.sim.changes import slice_service_key
from svcsim.sim.kernel import Kernel
from svcsim.sim.proxy_sockets import ProxySocket


@dataclass(frozen=True, slots=True)
class UserspaceConfig:
    """A node's userspace-mode settings and its process's random streams.

    ``port_range``: ``portRange`` / ``--proxy-port-range`` (None: the kernel picks ephemeral
    ports). ``udp_idle_timeout_s``: ``udpIdleTimeout`` / ``--udp-timeout``. ``ports_rng`` draws
    the proxy ports, ``shuffle_rng`` the balancers' ``ShuffleStrings`` (Go's ``math/rand``).
    """

    ports_rng: np.random.Generator
    shuffle_rng: np.random.Generator
    port_range: tuple[int, int] | None = None
    udp_idle_timeout_s: float = UDP_IDLE_TIMEOUT_S


EndpointSetListener = Callable[[ServicePortName, frozenset[str]], None]
"""Told ``(service port, endpoints)`` whenever a balancer's set of endpoints changes."""


class Balancers:
    """``LoadBalancerRR``: one :class:`RoundRobinBalancer` per Service port, by its name."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.states: dict[ServicePortName, RoundRobinBalancer] = {}
        self._ttl_s: dict[ServicePortName, int] = {}
        """Each balancer's affinity TTL, fixed when it was made (``newServiceInternal``)."""
        self._may_remember: set[ServicePortName] = set()
        """Ports whose balancer may hold ClientIP affinity records: made sticky since it was
        last seen with neither records nor affinity (a balancer records clients only while it
        is sticky). The sync's cleanup visits these, not every balancer."""

    def new_service(self, spn: ServicePortName, info: ServicePortInfo) -> RoundRobinBalancer:
        """``NewService``: make the balancer, or set the affinity type of an existing one."""
        state = self._ensure(spn, info.sticky_max_age_s)
        state.affinity_s = self._ttl_s[spn] if info.client_ip_affinity else 0
        if state.affinity_s:
            self._may_remember.add(spn)
        return state

    def _ensure(self, spn: ServicePortName, ttl_s: int) -> RoundRobinBalancer:
        state = self.states.get(spn)
        if state is None:
            state = self.states[spn] = RoundRobinBalancer()
            self._ttl_s[spn] = ttl_s or DEFAULT_AFFINITY_S
        return state

    def update(self, spn: ServicePortName, endpoints: list[str]) -> bool:
        """``OnEndpointsUpdate`` for one port with ready endpoints: a changed set reshuffles.

        True if the set changed.
        """
        state = self.states.get(spn)
        if state is None:
            state = self._ensure(spn, 0)
        return state.set_endpoints(endpoints, self.rng)

    def reset(self, spn: ServicePortName) -> bool:
        """``resetService``: the port lost its endpoints (the balancer stays, empty).

        True if it had any.
        """
        state = self.states.get(spn)
        if state is None:
            return False
        had = bool(state.endpoints)
        state.endpoints = []
        state.index = 0
        state.affinity = {}
        return had

    def delete(self, spn: ServicePortName) -> None:
        """``DeleteService``."""
        self.states.pop(spn, None)
        self._ttl_s.pop(spn, None)
        self._may_remember.discard(spn)

    def cleanup(self, now_s: float) -> None:
        """``CleanupStaleStickySessions``: expired affinity records dropped, every balancer."""
        for spn in tuple(self._may_remember):
            state = self.states[spn]
            if state.affinity:  # nothing to expire otherwise
                state.cleanup(now_s)
            if not state.affinity and not state.affinity_s:
                self._may_remember.discard(spn)  # no records, and none can come


@dataclass(frozen=True, slots=True)
class Portal:
    """One open portal: the Service port, its info when opened, the proxy port it sends to."""

    spn: ServicePortName
    info: ServicePortInfo
    proxy_port: int


@dataclass(frozen=True, slots=True)
class UserspacePlan:
    """What one sync changes, decided from the changes it took at its start."""

    close: tuple[ServicePortName, ...]
    """Open Service ports whose socket and portal close (changed or removed)."""
    open: tuple[tuple[ServicePortName, ServicePortInfo], ...]
    """Service ports that get a new socket and portal."""
    removed: tuple[ServicePortName, ...]
    """Service ports that are gone (their balancers are deleted)."""


class UserspaceProcess:
    """The userspace proxier of one kube-proxy process on ``kernel``'s node."""

    def __init__(
        self,
        kernel: Kernel,
        host_ip: str,
        config: UserspaceConfig,
        on_endpoint_set: EndpointSetListener | None = None,
        caches: CompileCaches | None = None,
    ) -> None:
        self.kernel = kernel
        self.caches = caches if caches is not None else CompileCaches()
        """The run's compiler memos (endpoints maps of the same slices are built once)."""
        self.on_endpoint_set = on_endpoint_set
        """Told each change of a balancer's endpoints (the set this node spreads over)."""
        self.host_ip = host_ip
        self.config = config
        self.balancers = Balancers(config.shuffle_rng)
        self.allocator = ProxyPortAllocator(config.ports_rng, config.port_range)
        self.portals: dict[ServicePortName, Portal] = {}
        """``serviceMap``: the open Service ports, with their sockets' ports."""
        self._open_by_service: dict[str, set[ServicePortName]] = {}
        """The keys of :attr:`portals` by Service (a plan looks at its changed Services only)."""
        self._port_index: tuple[Mapping[ServicePortName, ServicePortInfo], int, PortIndex] | None
        self._port_index = None
        """The last service-port map planned from, its size, and its ports by Service."""
        self._open_rule_count = 0
        """:func:`portal_rule_count` summed over :attr:`portals` (kept as they open and close)."""
        self.sockets: dict[ServicePortName, ProxySocket] = {}
        self._slices: dict[str, dict[str, EndpointSlice]] = {}
        """The informer's EndpointSlices by Service, then by slice key."""
        self._ready_ports: dict[str, set[ServicePortName]] = {}
        """Per Service, the ports its last update gave ready endpoints."""
        self._rules_by_portal: dict[ServicePortName, tuple[Portal, PortalRules]] = {}
        """Each open portal's rules, made once when it opens (a sync ensures them all)."""
        self._ensured: Ruleset | None = None
        """The ruleset the last successful sync left in the kernel, every wanted rule in it."""

    # --- start and exit ---------------------------------------------------------------------

    def flush(self, now_s: float) -> None:
        """``iptablesInit`` + ``iptablesFlush`` at process start: no portal rule is left."""
        self.kernel.install(init_ruleset(), now_s)
        self._ensured = None

    def adopt(self, service_ports: Mapping[ServicePortName, ServicePortInfo], now_s: float) -> None:
        """Start as a process that has long been running: every port open, its portals set."""
        self.flush(now_s)
        self._apply(self.plan(service_ports, {spn.service for spn in service_ports}), now_s, True)

    def exit(self, now_s: float) -> None:
        """The process ends: the kernel closes its sockets and their connections."""
        self.kernel.sockets.process_exited(now_s)
        self.sockets.clear()

    # --- endpoints (watch handlers) ---------------------------------------------------------

    def slice_seen(self, endpoint_slice: EndpointSlice, *, removed: bool) -> None:
        """An EndpointSlice event reached the informer: update its Service's balancers now."""
        service = slice_service_key(endpoint_slice)
        if service is None:
            return
        slices = self._slices.setdefault(service, {})
        if removed:
            slices.pop(endpoint_slice.meta.key, None)
        else:
            slices[endpoint_slice.meta.key] = endpoint_slice
        self._endpoints_changed(service, slices.values())

    def _endpoints_changed(self, service: str, slices: Iterable[EndpointSlice]) -> None:
        ready = _ready_endpoints(build_endpoints_map(slices, self.kernel.node, self.caches))
        for spn in sorted(ready, key=_order):
            if self.balancers.update(spn, ready[spn]):
                self._set_changed(spn)
        for spn in sorted(self._ready_ports.get(service, set()) - ready.keys(), key=_order):
            if self.balancers.reset(spn):
                self._set_changed(spn)
        self._ready_ports[service] = set(ready)

    def _set_changed(self, spn: ServicePortName) -> None:
        if self.on_endpoint_set is not None:
            self.on_endpoint_set(spn, frozenset(self.balancers.states[spn].endpoints))

    def add_stale_endpoint(self, spn: ServicePortName, endpoint: str) -> None:
        """A hand-made fault: the balancer of ``spn`` also holds ``endpoint`` (reshuffled)."""
        state = self.balancers.states.get(spn)
        current = list(state.endpoints) if state is not None else []
        if endpoint not in current and self.balancers.update(spn, sorted([*current, endpoint])):
            self._set_changed(spn)

    # --- syncs ------------------------------------------------------------------------------

    def plan(
        self, service_ports: Mapping[ServicePortName, ServicePortInfo], changed: Iterable[str]
    ) -> UserspacePlan:
        """``mergeService`` / ``unmergeService`` for the ``changed`` Services (by key)."""
        wanted = set(changed)
        by_service = self._ports_by_service(service_ports)
        close: list[ServicePortName] = []
        open_: list[tuple[ServicePortName, ServicePortInfo]] = []
        merged = (s for svc in wanted for s in by_service.get(svc, ()) if s in service_ports)
        for spn in sorted(merged, key=_order):
            info = service_ports[spn]
            portal = self.portals.get(spn)
            if portal is not None and same_config(portal.info, info):
                continue
            if portal is not None:
                close.append(spn)
            open_.append((spn, info))
        gone = (s for svc in wanted for s in self._open_by_service.get(svc, ()))
        removed = sorted((s for s in gone if s not in service_ports), key=_order)
        return UserspacePlan((*close, *removed), tuple(open_), tuple(removed))

    def _ports_by_service(
        self, service_ports: Mapping[ServicePortName, ServicePortInfo]
    ) -> PortIndex:
        """``service_ports``' keys by Service, made again only for another map (or size).

        kube-proxy's maps are made anew when a Service changes, never edited, and the nodes in
        step share one (:mod:`svcsim.proxy.shared_maps`); an endpoint-only sync plans from the
        very map it planned from before. A map edited in place is indexed again when its size
        changed (:meth:`plan` skips indexed keys no longer in it); an edit that swaps keys at
        the same size must come as a new map.
        """
        held = self._port_index
        if held is not None and held[0] is service_ports and held[1] == len(service_ports):
            return held[2]
        index: dict[str, list[ServicePortName]] = {}
        for spn in service_ports:
            found = index.get(spn.service)
            if found is None:
                index[spn.service] = [spn]
            else:
                found.append(spn)
        self._port_index = (service_ports, len(service_ports), index)
        return index

    def rules_ensured(self, plan: UserspacePlan) -> int:
        """Portal rules the sync checks or writes (what its cost is counted in)."""
        closed = sum(portal_rule_count(self.portals[s].info) for s in set(plan.close))
        opened = sum(portal_rule_count(info) for _, info in plan.open)
        return INIT_RULES + self._open_rule_count - closed + opened

    def apply(self, plan: UserspacePlan, now_s: float, *, iptables_ok: bool) -> None:
        """End of a sync: sockets change; portal rules too unless ``iptables_ok`` is False."""
        self._apply(plan, now_s, iptables_ok)

    def _rules_of(self, portal: Portal) -> PortalRules:
        """``portal``'s rules as ``(table, chain, rule)``, in the order ``openPortal`` adds them."""
        found = self._rules_by_portal.get(portal.spn)
        if found is not None and found[0] is portal:
            return found[1]
        rules = portal_rules(portal.spn, portal.info, portal.proxy_port, self.host_ip)
        self._rules_by_portal[portal.spn] = (portal, rules)
        return rules

    def _wanted_rules(self) -> PortalRules:
        """What ``ensurePortals`` checks: every open portal's rules."""
        out: list[tuple[str, str, Rule]] = []
        for portal in self.portals.values():
            out += self._rules_of(portal)
        return tuple(out)

    def _apply(self, plan: UserspacePlan, now_s: float, iptables_ok: bool) -> None:
        kernel = self.kernel
        rules = kernel.ruleset
        # Nobody touched the ruleset since the last ensure left every open portal's rules and
        # the init jumps in it: only the ports opened now can miss rules (same result as
        # ensuring all, without walking every portal).
        untouched = rules is self._ensured
        opened: list[Portal] = []
        removed = set(plan.removed)
        stale_udp_ips: set[str] = set()
        for spn in plan.close:
            portal = self.portals.pop(spn)
            still_open = self._open_by_service[spn.service]
            still_open.discard(spn)
            if not still_open:
                del self._open_by_service[spn.service]
            self._open_rule_count -= portal_rule_count(portal.info)
            sock = self.sockets.pop(spn, None)
            if sock is not None:
                kernel.sockets.close(sock)
            self.allocator.release(portal.proxy_port)
            if iptables_ok:
                # closePortal deletes the portal's own rules only, never iptablesInit's jumps
                # (proxier.go @0096f4a4: closeOnePortal / closeNodePort).
                rules = _delete_rules(rules, self._rules_of(portal))
            self._rules_by_portal.pop(spn, None)
            if spn in removed:
                self.balancers.delete(spn)
                if sock is not None and sock.protocol == "udp":
                    stale_udp_ips.add(portal.info.cluster_ip)
        if stale_udp_ips:
            # unmergeService: conntrack.ClearEntriesForIP(portal IP, UDP) per removed UDP port.
            kernel.conntrack.delete(
                lambda e: e.original.proto == "udp" and e.original.dst_ip in stale_udp_ips
            )
        for spn, info in plan.open:
            try:
                port = self.allocator.allocate()
            except ValueError:
                continue  # upstream logs "failed to allocate proxy port" and skips the port
            sock = ProxySocket(
                spn,
                spn.protocol.value.lower(),
                port,
                self.balancers.new_service(spn, info),
                self.config.udp_idle_timeout_s,
            )
            kernel.sockets.listen(sock)
            self.sockets[spn] = sock
            self.portals[spn] = portal = Portal(spn, info, port)
            self._open_by_service.setdefault(spn.service, set()).add(spn)
            opened.append(portal)
            self._open_rule_count += portal_rule_count(info)
        if iptables_ok:
            if untouched:
                ensured = _ensure_rules(rules, tuple(r for p in opened for r in self._rules_of(p)))
            else:
                ensured = _ensure_rules(_ensure_init(rules), self._wanted_rules())
            if ensured is not kernel.ruleset:
                kernel.install(ensured, now_s)
            self._ensured = kernel.ruleset
        else:
            self._ensured = None  # the new portals' rules are missing: ensure all next time
        self.balancers.cleanup(now_s)


PortIndex = dict[str, list[ServicePortName]]
"""Service ports by their Service's ``namespace/name``."""


def _order(spn: ServicePortName) -> tuple[str, str]:
    return spn.text, str(spn.protocol)


def _ready_endpoints(endpoints_map: EndpointsMap) -> dict[ServicePortName, list[str]]:
    """Each port's ready endpoints as ``IP:port`` (an Endpoints object's ``addresses``)."""
    out: dict[ServicePortName, list[str]] = {}
    for spn, eps in endpoints_map.items():
        ready = sorted({f"{ep.ip}:{ep.port}" for ep in eps if ep.ready})
        if ready:
            out[spn] = ready
    return out


PortalRules = tuple[PortalRule, ...]
"""Rules as ``(table, chain, rule)``, in the order they are appended."""


def _ensure_init(ruleset: Ruleset) -> Ruleset:
    """``iptablesInit`` at the start of a sync: each missing jump prepended or appended.

    Upstream runs it before ``ensurePortals`` on every sync; a jump already present stays
    where it is.
    """
    out = ruleset
    for jump in INIT_JUMPS:
        current = out.chain(jump.table, jump.chain)
        if current is None or jump.rule in current.rules:
            continue
        rules = (jump.rule, *current.rules) if jump.prepend else (*current.rules, jump.rule)
        out = _with_chain(out, jump.table, jump.chain, rules)
    return out


def _with_chain(ruleset: Ruleset, table: str, chain: str, rules: tuple[Rule, ...]) -> Ruleset:
    """``ruleset`` with the rules of ``table``/``chain`` replaced (other chains shared)."""
    tables = []
    for t in ruleset.tables:
        if t.name == table:
            chains = tuple(replace(c, rules=rules) if c.name == chain else c for c in t.chains)
            t = Table(t.name, chains)
        tables.append(t)
    return Ruleset(tuple(tables))


def _by_chain(rules: PortalRules) -> dict[tuple[str, str], list[Rule]]:
    out: dict[tuple[str, str], list[Rule]] = {}
    for table, chain, rule in rules:
        out.setdefault((table, chain), []).append(rule)
    return out


def _delete_rules(ruleset: Ruleset, doomed: PortalRules) -> Ruleset:
    """``DeleteRule`` for each rule of ``doomed`` (its first occurrence, if any)."""
    out = ruleset
    for (table, chain), rules in _by_chain(doomed).items():
        current = out.chain(table, chain)
        if current is None:
            continue
        kept = list(current.rules)
        for rule in rules:
            at = _first(kept, rule)
            if at is not None:
                del kept[at]
        if len(kept) != len(current.rules):
            out = _with_chain(out, table, chain, tuple(kept))
    return out


def _first(rules: list[Rule], rule: Rule) -> int | None:
    """Where ``rule`` first is in ``rules`` (by equality), or None.

    Found by identity first: the kernel's rules are the very objects the portals were made
    with, and comparing rule values one by one is slow on a long chain.
    """
    ids = [id(r) for r in rules]
    if id(rule) in ids:
        same = ids.index(id(rule))
        # An equal rule (not the same object) may come earlier.
        if rule not in rules[:same]:
            return same
    return rules.index(rule) if rule in rules else None


def _ensure_rules(ruleset: Ruleset, wanted: PortalRules) -> Ruleset:
    """``EnsureRule(Append)`` for each rule of ``wanted``: appended where missing."""
    out = ruleset
    for (table, chain), rules in _by_chain(wanted).items():
        current = out.chain(table, chain)
        if current is None:
            continue  # iptablesInit made every portal chain; a missing one is not ours
        held = {id(r) for r in current.rules}
        # By identity first (the kernel holds the objects the portals were made with); a
        # rule not held as such object is looked for by value.
        missing = tuple(r for r in rules if id(r) not in held and r not in current.rules)
        if missing:
            out = _with_chain(out, table, chain, current.rules + missing)
    return out
