"""kube-proxy's userspace proxier (last shipped in v1.25): proxy ports and portal rules.

In userspace mode kube-proxy itself is the load balancer: for every Service port it listens on
a *proxy port* of the node and writes iptables "portal" rules that send the Service's addresses
to that port; the connection is then accepted by kube-proxy, which dials an endpoint (round
robin, :mod:`svcsim.proxy.userspace_lb`) and copies bytes both ways. Sources: kubernetes
``pkg/proxy/userspace/proxier.go`` @0096f4a4 (the v1.2x line), ``port_allocator.go``
@04791b49; the proxier was removed in v1.26 (kubernetes PR #112133).

What :func:`compile_userspace` returns, as a clean node holds it after the first sync:

* a proxy port per Service port (``mergeService``: every port of a Service kube-proxy does not
  skip). kube-proxy asks for port 0 unless ``--proxy-port-range`` is set, so the kernel picks a
  free ephemeral port (``net.ipv4.ip_local_port_range`` 32768-60999; modelled as a seeded
  uniform draw of a free port); with a range, ``rangeAllocator`` draws a random port in it and
  scans upwards (wrapping) past used ones;
* the portal rules (``openPortal``): per ClusterIP and LoadBalancer ingress IP a REDIRECT rule
  in KUBE-PORTALS-CONTAINER (traffic from Pods) and a DNAT rule to ``hostIP:proxyPort`` in
  KUBE-PORTALS-HOST (traffic from the node); per external IP three rules (from off-node not via
  a bridge, from Pods to a local address, from the node to a local address); per NodePort a
  REDIRECT in KUBE-NODEPORT-CONTAINER, a DNAT in KUBE-NODEPORT-HOST and an ACCEPT for the proxy
  port in filter KUBE-NODEPORT-NON-LOCAL; plus ``iptablesInit``'s jumps from the built-in chains.
  kube-proxy listens on ``--bind-address`` 0.0.0.0 (the default), hence REDIRECT for Pods.
  Rules are appended in Service-port-name order (kube-proxy walks a Go map: random order).
  Each rule is built as data from :mod:`svcsim.proxy.iptables_rules` parts (the words
  ``iptablesCommonPortalArgs`` and its callers write, and what iptables stores for them), never
  written as text and parsed back (DESIGN decision 7); the tests hold every rule to
  ``parse_rule`` of its own text.

Traffic policies and topology do not exist in this mode: every ready endpoint is used.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from socket import inet_aton
from typing import Final, TypeAlias

import numpy as np

from svcsim.k8s.objects import EndpointSlice, Service
from svcsim.netfilter.model import Rule, Ruleset
from svcsim.netfilter.text import RulesetBuilder
from svcsim.proxy.context import NodeContext
from svcsim.proxy.endpoints import (
    EndpointsMap,
    ServicePortInfo,
    build_endpoints_map,
    build_service_port_map,
)
from svcsim.proxy.gcpause import collector_paused, promote_to_oldest
from svcsim.proxy.iptables_rules import (
    addrtype,
    comment,
    destination,
    dnat,
    jump,
    physdev_is_in,
    protocol_dport,
    redirect,
    rule,
    state,
)
from svcsim.proxy.names import ServicePortName

EPHEMERAL_PORTS: Final = (32768, 60999)
"""``net.ipv4.ip_local_port_range`` default: where the kernel finds a port for ``bind(…, 0)``."""

PORTALS_CONTAINER: Final = "KUBE-PORTALS-CONTAINER"
PORTALS_HOST: Final = "KUBE-PORTALS-HOST"
NODEPORT_CONTAINER: Final = "KUBE-NODEPORT-CONTAINER"
NODEPORT_HOST: Final = "KUBE-NODEPORT-HOST"
NODEPORT_NON_LOCAL: Final = "KUBE-NODEPORT-NON-LOCAL"

_CLUSTER_IPS_COMMENT: Final = "handle ClusterIPs; NOTE: this must be before the NodePort rules"
_NODEPORTS_COMMENT: Final = (
    "handle service NodePorts; NOTE: this must be the last rule in the chain"
)
_NON_LOCAL_COMMENT: Final = "Ensure that non-local NodePort traffic can flow"


@dataclass(frozen=True, slots=True)
class ProxyPort:
    """One row of the proxy's port table: a Service port, where it listens, what it serves."""

    service_port: str
    """``ServicePortName.String()``: ``ns/name:port`` (``ns/name`` for an unnamed port)."""
    protocol: str
    proxy_port: int
    portals: tuple[str, ...]
    """``IP:port`` addresses redirected to the proxy port (ClusterIP, external, LB IPs)."""
    node_port: int
    endpoints: tuple[str, ...]
    """Ready endpoints ``IP:port`` the balancer chooses from (in "IP:port" order here; the
    balancer shuffles them)."""
    session_affinity_s: int
    """ClientIP affinity timeout (0: no affinity)."""


@dataclass(frozen=True, slots=True)
class UserspaceState:
    """The node's userspace-mode state: the port table and the portal rules."""

    ports: tuple[ProxyPort, ...]
    ruleset: Ruleset
    host_ip: str


@dataclass(slots=True)
class ProxyPortAllocator:
    """Where kube-proxy's proxy sockets listen: the kernel's pick or ``rangeAllocator``'s.

    ``port_range`` is ``--proxy-port-range`` / ``portRange`` as (first, last), inclusive; None
    asks for port 0, so the kernel picks a free ephemeral port. Either way a uniform draw of a
    port in the range, then a scan upwards (wrapping) past ports in use (``nextFreePort``);
    :meth:`release` gives a port back when its Service port stops (``stopProxy``).
    """

    rng: np.random.Generator
    port_range: tuple[int, int] | None = None
    used: set[int] = field(default_factory=set)

    def allocate(self) -> int:
        """A free port, now in use."""
        first, last = self.port_range if self.port_range is not None else EPHEMERAL_PORTS
        size = last - first + 1
        if len(self.used) >= size:
            raise ValueError(f"{len(self.used) + 1} proxy ports do not fit in {first}-{last}")
        j = int(self.rng.integers(size))
        while first + j in self.used:
            j = (j + 1) % size  # rangeAllocator.nextFreePort: scan on, wrapping
        self.used.add(first + j)
        return first + j

    def release(self, port: int) -> None:
        """The port's socket closed: free for another Service port."""
        self.used.discard(port)


def allocate_proxy_ports(
    count: int, rng: np.random.Generator, port_range: tuple[int, int] | None = None
) -> list[int]:
    """``count`` distinct proxy ports, as the kernel (no range) or ``rangeAllocator`` picks them.

    ``port_range`` is ``--proxy-port-range`` as (first, last), inclusive.
    """
    first, last = port_range if port_range is not None else EPHEMERAL_PORTS
    if count > last - first + 1:
        raise ValueError(f"{count} proxy ports do not fit in {first}-{last}")
    allocator = ProxyPortAllocator(rng, port_range)
    return [allocator.allocate() for _ in range(count)]


def init_ruleset() -> Ruleset:
    """The portal chains and their jumps, no portal yet.

    What ``iptablesInit`` + ``iptablesFlush`` leave when a kube-proxy process starts
    (``createProxier``).
    """
    return _init_chains().build()


PortalRule: TypeAlias = tuple[str, str, Rule]
"""A rule as ``(table, chain, rule)``."""


def portal_ruleset(
    entries: Iterable[tuple[ServicePortName, ServicePortInfo, int]], host_ip: str
) -> Ruleset:
    """The chains of :func:`init_ruleset` plus the portal rules of ``entries``.

    ``entries`` are (Service port, its info, its proxy port), in the order kube-proxy opened
    them (``EnsureRule(Append)`` per rule).
    """
    b = _init_chains()
    _append(b, (r for spn, svc, port in entries for r in portal_rules(spn, svc, port, host_ip)))
    return b.build()


def portal_rule_count(svc: ServicePortInfo) -> int:
    """Rules ``openPortal`` writes for one Service port (as :func:`portal_ruleset` renders).

    Two per ClusterIP and LoadBalancer ingress IP, three per external IP, three for a
    NodePort.
    """
    return (
        2 * (1 + len(svc.load_balancer_vips))
        + 3 * len(svc.external_ips)
        + (3 if svc.node_port else 0)
    )


def same_config(a: ServicePortInfo, b: ServicePortInfo) -> bool:
    """``sameConfig``: ``b`` needs no new proxy socket and portal where ``a`` has them.

    Protocol, port, NodePort, ClusterIP, external IPs, load-balancer IPs and the affinity
    *type* (upstream compares ``SessionAffinity`` only: a new ``timeoutSeconds`` alone is not
    taken until the port is re-created).
    """
    return (
        a.protocol == b.protocol
        and a.port == b.port
        and a.node_port == b.node_port
        and a.cluster_ip == b.cluster_ip
        and a.external_ips == b.external_ips
        and a.load_balancer_vips == b.load_balancer_vips
        and a.client_ip_affinity == b.client_ip_affinity
    )


def compile_userspace(
    services: Iterable[Service],
    endpoint_slices: Iterable[EndpointSlice],
    ctx: NodeContext,
    rng: np.random.Generator,
    port_range: tuple[int, int] | None = None,
) -> UserspaceState:
    """The port table and portal rules after the first sync (see the module docstring).

    Built with the cyclic garbage collector paused (:mod:`svcsim.proxy.gcpause`).
    """
    with collector_paused():
        port_map = build_service_port_map(services)
        endpoints_map = build_endpoints_map(endpoint_slices, ctx.node_name)
        return _from_maps(port_map, endpoints_map, ctx, rng, port_range)


def _from_maps(
    port_map: Mapping[ServicePortName, ServicePortInfo],
    endpoints_map: EndpointsMap,
    ctx: NodeContext,
    rng: np.random.Generator,
    port_range: tuple[int, int] | None,
) -> UserspaceState:
    """:func:`compile_userspace` from the proxier's service-port and endpoints maps."""
    names = sorted(port_map, key=lambda n: (n.text, str(n.protocol)))
    proxy_ports = allocate_proxy_ports(len(names), rng, port_range)
    host_ip = ctx.node_ip or "127.0.0.1"
    rows = []
    rules: list[PortalRule] = []
    for spn, proxy_port in zip(names, proxy_ports, strict=True):
        svc = port_map[spn]
        # The map holds each "IP:port" once; the table lists them in address order (the
        # packed address orders IPv4 addresses as their integers do).
        ready = sorted(
            (ep for ep in endpoints_map.get(spn, ()) if ep.ready),
            key=lambda ep: (inet_aton(ep.ip), ep.port),
        )
        rows.append(
            ProxyPort(
                service_port=spn.text,
                protocol=str(spn.protocol),
                proxy_port=proxy_port,
                portals=_portal_addresses(svc),
                node_port=svc.node_port,
                endpoints=tuple(ep.text for ep in ready),
                session_affinity_s=svc.sticky_max_age_s if svc.client_ip_affinity else 0,
            )
        )
        rules += portal_rules(spn, svc, proxy_port, host_ip)
    b = _init_chains()
    _append(b, rules)
    state = UserspaceState(tuple(rows), b.build(), host_ip)
    # A whole node's state, which lives on: not worth a young collection's walk.
    promote_to_oldest()
    return state


def _portal_addresses(svc: ServicePortInfo) -> tuple[str, ...]:
    ips = (svc.cluster_ip, *svc.external_ips, *svc.load_balancer_vips)
    return tuple(f"{ip}:{svc.port}" for ip in ips)


@dataclass(frozen=True, slots=True)
class InitJump:
    """One jump ``iptablesInit`` ensures from a built-in chain to a portal chain."""

    table: str
    chain: str
    rule: Rule
    prepend: bool
    """``EnsureRule(Prepend)`` (inserted first when missing) rather than ``Append``."""


def _init_jumps() -> tuple[InitJump, ...]:
    portals = comment(_CLUSTER_IPS_COMMENT)
    nodeports = (addrtype(dst_type="LOCAL"), comment(_NODEPORTS_COMMENT))
    non_local = comment(_NON_LOCAL_COMMENT)
    return (
        InitJump("nat", "PREROUTING", rule(portals, jump(PORTALS_CONTAINER)), True),
        InitJump("nat", "OUTPUT", rule(portals, jump(PORTALS_HOST)), True),
        InitJump("nat", "PREROUTING", rule(*nodeports, jump(NODEPORT_CONTAINER)), False),
        InitJump("nat", "OUTPUT", rule(*nodeports, jump(NODEPORT_HOST)), False),
        InitJump("filter", "INPUT", rule(non_local, jump(NODEPORT_NON_LOCAL)), True),
    )


INIT_JUMPS: Final = _init_jumps()
"""``iptablesInit``'s jumps in the order it ensures them (``pkg/proxy/userspace/proxier.go``
@0096f4a4); every sync ensures them again before ``ensurePortals``."""

INIT_RULES: Final = len(INIT_JUMPS)
"""Rules ``iptablesInit`` writes: the jumps from PREROUTING, OUTPUT (two each) and INPUT."""


def _init_chains() -> RulesetBuilder:
    """``iptablesInit``: the five chains and the jumps to them."""
    b = RulesetBuilder()
    b.chains("nat", (PORTALS_CONTAINER, PORTALS_HOST, NODEPORT_CONTAINER, NODEPORT_HOST))
    b.chains("filter", (NODEPORT_NON_LOCAL,))
    for init in INIT_JUMPS:
        if init.prepend:
            b.insert(init.table, init.chain, init.rule)
        else:
            b.append(init.table, init.chain, init.rule)
    return b


def _append(b: RulesetBuilder, rules: Iterable[PortalRule]) -> None:
    """Append ``rules`` to their chains, in order (the chains exist: :func:`_init_chains`)."""
    by_table: dict[str, list[tuple[str, Rule]]] = {}
    for table, chain, r in rules:
        held = by_table.get(table)
        if held is None:
            held = by_table[table] = []
        held.append((chain, r))
    for table, held in by_table.items():
        b.extend(table, held)


_PHYSDEV_NOT_IN: Final = physdev_is_in(negated=True)
_DST_LOCAL: Final = addrtype(dst_type="LOCAL")
_STATE_NEW_ACCEPT: Final = (state("NEW"), jump("ACCEPT"))


def portal_rules(
    spn: ServicePortName, svc: ServicePortInfo, proxy_port: int, host_ip: str
) -> tuple[PortalRule, ...]:
    """The rules ``openPortal`` (and ``openNodePort``) write for one Service port, in order.

    Built as data (:mod:`svcsim.proxy.iptables_rules`): each rule's text is what
    ``iptablesCommonPortalArgs`` plus the container/host/non-local suffix write, its structure
    what iptables reads from that text. Parts shared by several rules (the comment, the port
    match, a portal address, the two targets) are made once.
    """
    proto = str(spn.protocol).lower()
    named = comment(spn.text)
    port = protocol_dport(proto, svc.port)
    to_proxy = redirect(proxy_port)
    to_host = dnat(f"{host_ip}:{proxy_port}")
    out: list[PortalRule] = []
    add = out.append

    def plain(ip: str) -> None:
        dst = destination(f"{ip}/32")
        add(("nat", PORTALS_CONTAINER, rule(named, port, dst, to_proxy)))
        add(("nat", PORTALS_HOST, rule(named, port, dst, to_host)))

    plain(svc.cluster_ip)
    for ip in svc.external_ips:
        dst = destination(f"{ip}/32")
        add(("nat", PORTALS_CONTAINER, rule(named, port, dst, _PHYSDEV_NOT_IN, to_proxy)))
        add(("nat", PORTALS_CONTAINER, rule(named, port, dst, _DST_LOCAL, to_proxy)))
        add(("nat", PORTALS_HOST, rule(named, port, dst, _DST_LOCAL, to_host)))
    for ip in svc.load_balancer_vips:
        plain(ip)
    if svc.node_port:
        node_port = protocol_dport(proto, svc.node_port)
        add(("nat", NODEPORT_CONTAINER, rule(named, node_port, to_proxy)))
        add(("nat", NODEPORT_HOST, rule(named, node_port, to_host)))
        accept = rule(named, protocol_dport(proto, proxy_port), *_STATE_NEW_ACCEPT)
        add(("filter", NODEPORT_NON_LOCAL, accept))
    return tuple(out)
