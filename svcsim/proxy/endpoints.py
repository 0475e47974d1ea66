"""kube-proxy's view of Services and EndpointSlices: the service-port map and endpoints map.

Mirrors kubernetes ``pkg/proxy/serviceport.go`` (``newBaseServiceInfo``),
``pkg/proxy/servicechangetracker.go`` (``serviceToServiceMap``) and
``pkg/proxy/endpointslicecache.go`` @c2c7d507 (``endpointInfoByServicePort``, ``addEndpoints``,
``byEndpoint``). How a node picks among a port's endpoints (``CategorizeEndpoints``) is
:mod:`svcsim.proxy.topology`.

Only the IPv4 family is modelled: IPv6 cluster IPs, external IPs, load-balancer IPs, source
ranges and EndpointSlices of ``addressType`` other than ``IPv4`` are ignored, exactly as an IPv4
single-stack proxier ignores them.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from svcsim.k8s.fields import is_canonical_ipv4
from svcsim.k8s.objects import (
    EndpointSlice,
    Protocol,
    Service,
    ServiceType,
    SessionAffinity,
    TrafficPolicy,
)
from svcsim.proxy.caches import (
    CompileCaches,
    NodeEndpoints,
    NodeEndpointsKey,
    PlacedEndpoints,
    ServiceSlices,
    ServiceSlicesKey,
)
from svcsim.proxy.names import ServicePortName


def parse_ipv4_sloppy(text: str) -> str | None:
    """``netutils.ParseIPSloppy`` for IPv4: leading zeros are decimal (``010`` is 10).

    Returns the canonical dotted quad, or None if ``text`` is not an IPv4 address (IPv6 included).
    kube-proxy writes the re-printed address, so ``10.180.00.001`` becomes ``10.180.0.1``
    (TestBadIPs). Called for every endpoint of every slice at every sync of every node: an
    address already as kube-proxy prints it is returned as it is, without splitting it; any
    other text takes the full reading.
    """
    if is_canonical_ipv4(text):
        return text  # the common case
    return _parse_ipv4_sloppy_words(text)


@functools.lru_cache(maxsize=1 << 12)
def _parse_ipv4_sloppy_words(text: str) -> str | None:
    """:func:`parse_ipv4_sloppy` read word by word (any text).

    Memoised: a pure function of a string. The memo stays module-level: it holds strings
    only, no objects of a run, and is bounded.
    """
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isascii() and p.isdigit() for p in parts):
        return None
    octets = [int(p) for p in parts]
    if any(o > 255 for o in octets):
        return None
    return ".".join(str(o) for o in octets)


@functools.lru_cache(maxsize=1 << 12)
def parse_ipv4_cidr_sloppy(text: str) -> str | None:
    """``netutils.ParseCIDRSloppy`` + ``IPNet.String()`` for IPv4: the masked network, or None.

    Memoised at module level like :func:`parse_ipv4_sloppy` (strings only, bounded).
    """
    addr, sep, prefix = text.partition("/")
    ip = parse_ipv4_sloppy(addr)
    if ip is None or not sep or not (prefix.isascii() and prefix.isdigit()) or int(prefix) > 32:
        return None
    return str(ipaddress.IPv4Network(f"{ip}/{int(prefix)}", strict=False))


@dataclass(frozen=True, slots=True)
class ServicePortInfo:
    """``BaseServicePortInfo`` for one Service port, IPv4 family, as kube-proxy derives it."""

    name: ServicePortName
    cluster_ip: str
    port: int
    node_port: int = 0
    load_balancer_vips: tuple[str, ...] = ()
    """``status.loadBalancer.ingress[].ip`` in VIP mode (``ipMode`` nil or ``VIP``), IPv4 only."""
    external_ips: tuple[str, ...] = ()
    load_balancer_source_ranges: tuple[str, ...] = ()
    """Whitespace-trimmed, IPv4, re-printed as networks (``203.0.113.000/025`` becomes
    ``203.0.113.0/25``)."""
    client_ip_affinity: bool = False
    sticky_max_age_s: int = 0
    health_check_node_port: int = 0
    """Only for LoadBalancer Services with externalTrafficPolicy Local (``NeedsHealthCheck``)."""
    external_policy_local: bool = False
    internal_policy_local: bool = False

    @property
    def protocol(self) -> Protocol:
        """The port's protocol."""
        return self.name.protocol

    @property
    def externally_accessible(self) -> bool:
        """Reachable other than by ClusterIP: a NodePort, LB VIP or external IP."""
        return self.node_port != 0 or bool(self.load_balancer_vips) or bool(self.external_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        """Ever sends traffic by Cluster policy.

        True for iTP Cluster, or for any external traffic (the eTP=Local short-circuit needs the
        cluster chain).
        """
        return not self.internal_policy_local or self.externally_accessible

    @property
    def uses_local_endpoints(self) -> bool:
        """Ever sends traffic by Local policy (iTP Local, or eTP Local with external access)."""
        return self.internal_policy_local or (
            self.external_policy_local and self.externally_accessible
        )


def _service_externally_accessible(svc: Service) -> bool:
    """``apiservice.ExternallyAccessible`` (pkg/api/v1/service/util.go)."""
    return svc.type in (ServiceType.LOAD_BALANCER, ServiceType.NODE_PORT) or (
        svc.type == ServiceType.CLUSTER_IP and bool(svc.external_ips)
    )


def _cluster_ipv4(svc: Service) -> str | None:
    """``GetClusterIPByFamily(IPv4)``: the first IPv4 of ``clusterIPs``, else ``clusterIP``."""
    candidates = svc.cluster_ips or (svc.cluster_ip,)
    for text in candidates:
        ip = parse_ipv4_sloppy(text)
        if ip is not None:
            return ip
    return None


def should_skip_service(svc: Service) -> bool:
    """``ShouldSkipService``: headless (``None``) or unset ClusterIP, or type ExternalName."""
    return svc.cluster_ip in ("", "None") or svc.type == ServiceType.EXTERNAL_NAME


def service_port_infos(svc: Service, caches: CompileCaches | None = None) -> list[ServicePortInfo]:
    """One :class:`ServicePortInfo` per ``spec.ports`` entry; none if kube-proxy skips ``svc``.

    ``caches``: the run's (:class:`~svcsim.proxy.caches.CompileCaches`); None computes afresh.
    """
    return list(_port_infos(svc, caches if caches is not None else CompileCaches()))


def _port_infos(svc: Service, caches: CompileCaches) -> tuple[ServicePortInfo, ...]:
    """:func:`service_port_infos` as a tuple, memoised by identity.

    Services are frozen values, and every node derives the same Service at every sync and
    every watch event.
    """
    memo = caches.port_infos
    hit = memo.get(id(svc))
    if hit is None:
        hit = memo.put(id(svc), tuple(_derive_port_infos(svc, caches)), holds=svc)
    return hit


def _derive_port_infos(svc: Service, caches: CompileCaches) -> list[ServicePortInfo]:
    if should_skip_service(svc):
        return []
    cluster_ip = _cluster_ipv4(svc)
    if cluster_ip is None:
        return []
    external_local = (
        _service_externally_accessible(svc) and svc.external_traffic_policy == TrafficPolicy.LOCAL
    )
    internal_local = svc.internal_traffic_policy == TrafficPolicy.LOCAL
    external_ips = tuple(ip for ip in map(parse_ipv4_sloppy, svc.external_ips) if ip)
    ranges = tuple(
        c for c in (parse_ipv4_cidr_sloppy(r.strip()) for r in svc.load_balancer_source_ranges) if c
    )
    vips = tuple(
        ip
        for ip in (
            parse_ipv4_sloppy(ing.ip)
            for ing in svc.load_balancer_ingress
            if ing.ip and ing.ip_mode in (None, "VIP")
        )
        if ip
    )
    needs_hc = svc.type == ServiceType.LOAD_BALANCER and external_local
    affinity = svc.session_affinity == SessionAffinity.CLIENT_IP
    return [
        ServicePortInfo(
            name=caches.port_name(svc.meta.namespace, svc.meta.name, p.name, p.protocol),
            cluster_ip=cluster_ip,
            port=p.port,
            node_port=p.node_port,
            load_balancer_vips=vips,
            external_ips=external_ips,
            load_balancer_source_ranges=ranges,
            client_ip_affinity=affinity,
            sticky_max_age_s=svc.session_affinity_timeout_s if affinity else 0,
            health_check_node_port=svc.health_check_node_port if needs_hc else 0,
            external_policy_local=external_local,
            internal_policy_local=internal_local,
        )
        for p in svc.ports
    ]


def build_service_port_map(
    services: Iterable[Service], caches: CompileCaches | None = None
) -> dict[ServicePortName, ServicePortInfo]:
    """The proxier's ``svcPortMap``: every proxied Service port, keyed by ServicePortName.

    Headless and ExternalName Services and Services without an IPv4 ClusterIP contribute nothing
    (TestBuildServiceMapServiceHeadless, TestBuildServiceMapServiceTypeExternalName).
    ``caches``: the run's; None computes afresh.
    """
    caches = caches if caches is not None else CompileCaches()
    out: dict[ServicePortName, ServicePortInfo] = {}
    for svc in services:
        for info in _port_infos(svc, caches):
            out[info.name] = info
    return out


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """``BaseEndpointInfo``: one endpoint address + port of one service port."""

    ip: str
    port: int
    is_local: bool = False
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    zone_hints: frozenset[str] = field(default_factory=frozenset)
    node_hints: frozenset[str] = field(default_factory=frozenset)
    text: str = field(init=False, repr=False, compare=False, hash=False)
    """``String()``: ``net.JoinHostPort(ip, port)``; the sort and dedupe key (read a lot)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", f"{self.ip}:{self.port}")

    def __str__(self) -> str:
        return self.text


_SET_ENDPOINT_FIELDS: Final = tuple(
    getattr(EndpointInfo, name).__set__
    for name in (
        "ip",
        "port",
        "is_local",
        "ready",
        "serving",
        "terminating",
        "zone_hints",
        "node_hints",
        "text",
    )
)


def new_endpoint_info(
    ip: str,
    port: int,
    is_local: bool,
    ready: bool,
    serving: bool,
    terminating: bool,
    zone_hints: frozenset[str],
    node_hints: frozenset[str],
) -> EndpointInfo:
    """``EndpointInfo(ip, port, ...)``: the same value, made through its slots' descriptors.

    The frozen dataclass's ``__init__`` stores each field through ``object.__setattr__``,
    then ``__post_init__`` writes :attr:`EndpointInfo.text`; this stores them directly (one
    per endpoint: 100,000 at 10,000 Services x 10 endpoints; the tests compare the two).
    """
    made = _new_object(EndpointInfo)
    (
        set_ip,
        set_port,
        set_local,
        set_ready,
        set_serving,
        set_term,
        set_zones,
        set_nodes,
        set_text,
    ) = _SET_ENDPOINT_FIELDS
    set_ip(made, ip)
    set_port(made, port)
    set_local(made, is_local)
    set_ready(made, ready)
    set_serving(made, serving)
    set_term(made, terminating)
    set_zones(made, zone_hints)
    set_nodes(made, node_hints)
    set_text(made, f"{ip}:{port}")
    return made


_new_object: Final = object.__new__


EndpointsMap = dict[ServicePortName, tuple[EndpointInfo, ...]]

NO_HINTS: Final[frozenset[str]] = frozenset()
"""The hints of an endpoint without any: one object (CPython makes a new 216-byte empty
frozenset per call; 100,000 endpoints x two hint sets held ~43 MB of them)."""


def build_endpoints_map(
    slices: Iterable[EndpointSlice], node_name: str, caches: CompileCaches | None = None
) -> EndpointsMap:
    """The proxier's ``endpointsMap`` from EndpointSlices (IPv4 slices only).

    A slice belongs to the Service named by its ``kubernetes.io/service-name`` label in its own
    namespace (slices without the label are ignored). Each slice port makes endpoints for the
    ServicePortName ``(namespace, service, port.name, port.protocol)``, so a Service port meets
    its endpoints by port name + protocol, and the DNAT port is the slice port's number; ports
    numbered 0 are ignored. The first address of each endpoint is used, re-printed
    (``ParseIPSloppy``); endpoints without a valid IPv4 address are skipped.

    The same ``IP:port`` seen twice collapses to one entry: a later occurrence replaces an
    earlier one unless the later one is terminating (so a running Pod beats a terminating Pod
    that had the same IP). Upstream visits a Service's slices in Go map order; here slices are
    visited in name order, which only matters for two *non-terminating* duplicates (undefined
    upstream). Each list is sorted by the ``"IP:port"`` string (``byEndpoint``), which is why
    ``10.1.1.11:11`` precedes ``10.1.1.1:11``.

    ``caches``: the run's; None computes afresh.
    """
    caches = caches if caches is not None else CompileCaches()
    out: EndpointsMap = {}
    for group_key, group in _grouped(tuple(slices), caches):
        out.update(_service_endpoints(group_key, group, node_name, caches))
    return out


def _grouped(slices: tuple[EndpointSlice, ...], caches: CompileCaches) -> tuple[ServiceSlices, ...]:
    """The IPv4 slices of each Service (first-seen Service order), memoised by identity.

    Every node's informers hold the very same slice objects at a sync instant; the entry holds
    them, so their ids stay theirs.
    """
    key = tuple(map(id, slices))
    hit = caches.slice_groups.get(key)
    if hit is not None:
        return hit
    by_service: dict[tuple[str, str], list[EndpointSlice]] = {}
    for sl in slices:
        svc_name = sl.service_name
        if sl.address_type != "IPv4" or not svc_name:
            continue
        by_service.setdefault((sl.meta.namespace, svc_name), []).append(sl)
    groups = tuple(
        (ServiceSlicesKey(namespace, svc_name, tuple(map(id, group))), tuple(group))
        for (namespace, svc_name), group in by_service.items()
    )
    return caches.slice_groups.put(key, groups, holds=slices)


def _service_endpoints(
    group_key: ServiceSlicesKey,
    group: tuple[EndpointSlice, ...],
    node_name: str,
    caches: CompileCaches,
) -> NodeEndpoints:
    """The endpoints of one Service's IPv4 slices, per service port, memoised by identity.

    Every node rebuilds its endpoints map at every sync although only one Service's slices
    changed; slices are frozen values, so a Service whose slices are the very same objects has
    the very same endpoints. Keying by identity (the entries hold the slices, so their ids stay
    unique) also hands out the *same* tuples sync after sync, and to every node without a local
    endpoint of the Service, which makes later equality checks identity checks.
    """
    # Asked with the plain tuple equal to the NodeEndpointsKey stored below (proxy/caches.py).
    hit = caches.node_endpoints.get((group_key, node_name))
    if hit is not None:
        return hit
    placed = caches.placed_endpoints.get(group_key)
    if placed is None:
        placed = caches.placed_endpoints.put(
            group_key,
            _build_service_endpoints(group_key.namespace, group_key.service, group, caches),
            holds=group,
        )
    built = tuple((spn, _localize(eps, nodes, node_name)) for spn, eps, nodes in placed)
    key = NodeEndpointsKey(group_key, node_name)
    return caches.node_endpoints.put(key, built, holds=group)


def _localize(
    endpoints: tuple[EndpointInfo, ...], nodes: tuple[str | None, ...], node_name: str
) -> tuple[EndpointInfo, ...]:
    """``endpoints`` as ``node_name`` sees them: those with its ``nodeName`` are local."""
    if not node_name or node_name not in nodes:
        return endpoints
    return tuple(
        _local_twin(ep) if node == node_name else ep
        for ep, node in zip(endpoints, nodes, strict=True)
    )


def _local_twin(ep: EndpointInfo) -> EndpointInfo:
    """``replace(ep, is_local=True)``, spelled out (it runs for every node at every change)."""
    return new_endpoint_info(
        ep.ip, ep.port, True, ep.ready, ep.serving, ep.terminating, ep.zone_hints, ep.node_hints
    )


def _build_service_endpoints(
    namespace: str, svc_name: str, group: tuple[EndpointSlice, ...], caches: CompileCaches
) -> PlacedEndpoints:
    """The endpoints map part of one Service, every endpoint non-local, with its node."""
    sets: dict[ServicePortName, dict[str, tuple[EndpointInfo, str | None]]] = {}
    for sl in sorted(group, key=lambda s: s.meta.name):
        for port in sl.ports:
            if port.port == 0:
                continue
            spn = caches.port_name(namespace, svc_name, port.name, port.protocol)
            endpoint_set = sets.setdefault(spn, {})
            for ep in sl.endpoints:
                if not ep.addresses:
                    continue
                ip = parse_ipv4_sloppy(ep.addresses[0])
                if ip is None:
                    continue
                info = new_endpoint_info(
                    ip,
                    port.port,
                    False,
                    ep.is_ready,
                    ep.is_serving,
                    ep.is_terminating,
                    frozenset(ep.hint_zones) if ep.hint_zones else NO_HINTS,
                    frozenset(ep.hint_nodes) if ep.hint_nodes else NO_HINTS,
                )
                if info.text not in endpoint_set or not info.terminating:
                    endpoint_set[info.text] = (info, ep.node_name)
    out = []
    for spn, eps in sets.items():
        if eps:
            ordered = sorted(eps.values(), key=lambda pair: pair[0].text)
            out.append((spn, tuple(p[0] for p in ordered), tuple(p[1] for p in ordered)))
    return tuple(out)


def total_endpoints(
    service_ports: Mapping[ServicePortName, ServicePortInfo], endpoints_map: EndpointsMap
) -> int:
    """Endpoints summed over proxied service ports, usable or not (the large-cluster-mode count)."""
    return sum(len(endpoints_map.get(spn, ())) for spn in service_ports)
