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

Traffic policies and topology do not exist in this mode: every ready endpoint is used.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from svcsim.k8s.objects import EndpointSlice, Service
from svcsim.netfilter.model import Rule, Ruleset
from svcsim.netfilter.parse import parse_rule
from svcsim.netfilter.text import RulesetBuilder
from svcsim.proxy.context import NodeContext
from svcsim.proxy.endpoints import ServicePortInfo, build_endpoints_map, build_service_port_map
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


def portal_ruleset(
    entries: Iterable[tuple[ServicePortName, ServicePortInfo, int]], host_ip: str
) -> Ruleset:
    """The chains of :func:`init_ruleset` plus the portal rules of ``entries``.

    ``entries`` are (Service port, its info, its proxy port), in the order kube-proxy opened
    them (``EnsureRule(Append)`` per rule).
    """
    b = _init_chains()
    for spn, svc, proxy_port in entries:
        _portal_rules(b, svc, spn, proxy_port, host_ip)
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
    """The port table and portal rules after the first sync (see the module docstring)."""
    port_map = build_service_port_map(services)
    endpoints_map = build_endpoints_map(endpoint_slices, ctx.node_name)
    names = sorted(port_map, key=lambda n: (n.text, str(n.protocol)))
    proxy_ports = allocate_proxy_ports(len(names), rng, port_range)
    host_ip = ctx.node_ip or "127.0.0.1"
    b = _init_chains()
    rows = []
    for spn, proxy_port in zip(names, proxy_ports, strict=True):
        svc = port_map[spn]
        ready = sorted(
            {(ep.ip, ep.port) for ep in endpoints_map.get(spn, ()) if ep.ready},
            # Dotted-quad octets as numbers order IPv4 addresses as their integers do.
            key=lambda e: (tuple(map(int, e[0].split("."))), e[1]),
        )
        rows.append(
            ProxyPort(
                service_port=spn.text,
                protocol=str(spn.protocol),
                proxy_port=proxy_port,
                portals=_portal_addresses(svc),
                node_port=svc.node_port,
                endpoints=tuple(f"{ip}:{port}" for ip, port in ready),
                session_affinity_s=svc.sticky_max_age_s if svc.client_ip_affinity else 0,
            )
        )
        _portal_rules(b, svc, spn, proxy_port, host_ip)
    return UserspaceState(tuple(rows), b.build(), host_ip)


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
    portals = f'-m comment --comment "{_CLUSTER_IPS_COMMENT}"'
    nodeports = f'-m addrtype --dst-type LOCAL -m comment --comment "{_NODEPORTS_COMMENT}"'
    non_local = f'-m comment --comment "{_NON_LOCAL_COMMENT}"'
    return (
        InitJump("nat", "PREROUTING", parse_rule(f"{portals} -j {PORTALS_CONTAINER}"), True),
        InitJump("nat", "OUTPUT", parse_rule(f"{portals} -j {PORTALS_HOST}"), True),
        InitJump("nat", "PREROUTING", parse_rule(f"{nodeports} -j {NODEPORT_CONTAINER}"), False),
        InitJump("nat", "OUTPUT", parse_rule(f"{nodeports} -j {NODEPORT_HOST}"), False),
        InitJump("filter", "INPUT", parse_rule(f"{non_local} -j {NODEPORT_NON_LOCAL}"), True),
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
    for jump in INIT_JUMPS:
        if jump.prepend:
            b.insert(jump.table, jump.chain, jump.rule)
        else:
            b.append(jump.table, jump.chain, jump.rule)
    return b


def _common(spn: ServicePortName, port: int, dst: str | None, bridge: bool, local: bool) -> str:
    """``iptablesCommonPortalArgs``."""
    proto = str(spn.protocol).lower()
    words = f'-m comment --comment "{spn.text}" -p {proto} -m {proto} --dport {port}'
    if dst is not None:
        words += f" -d {dst}/32"
    if bridge:
        words += " -m physdev ! --physdev-is-in"
    if local:
        words += " -m addrtype --dst-type LOCAL"
    return words


def _portal_rules(
    b: RulesetBuilder, svc: ServicePortInfo, spn: ServicePortName, proxy_port: int, host_ip: str
) -> None:
    redirect = f"-j REDIRECT --to-ports {proxy_port}"
    dnat = f"-j DNAT --to-destination {host_ip}:{proxy_port}"

    def plain(ip: str) -> None:
        b.rule("nat", PORTALS_CONTAINER, f"{_common(spn, svc.port, ip, False, False)} {redirect}")
        b.rule("nat", PORTALS_HOST, f"{_common(spn, svc.port, ip, False, False)} {dnat}")

    plain(svc.cluster_ip)
    for ip in svc.external_ips:
        b.rule("nat", PORTALS_CONTAINER, f"{_common(spn, svc.port, ip, True, False)} {redirect}")
        b.rule("nat", PORTALS_CONTAINER, f"{_common(spn, svc.port, ip, False, True)} {redirect}")
        b.rule("nat", PORTALS_HOST, f"{_common(spn, svc.port, ip, False, True)} {dnat}")
    for ip in svc.load_balancer_vips:
        plain(ip)
    if svc.node_port:
        b.rule(
            "nat",
            NODEPORT_CONTAINER,
            f"{_common(spn, svc.node_port, None, False, False)} {redirect}",
        )
        b.rule("nat", NODEPORT_HOST, f"{_common(spn, svc.node_port, None, False, False)} {dnat}")
        b.rule(
            "filter",
            NODEPORT_NON_LOCAL,
            f"{_common(spn, proxy_port, None, False, False)} -m state --state NEW -j ACCEPT",
        )
