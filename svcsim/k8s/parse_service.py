"""Turn one Service manifest into a :class:`Service`, with the API server's defaults.

Defaults follow pkg/apis/core/v1/defaults.go ``SetDefaults_Service``: ``type`` ClusterIP,
``sessionAffinity`` None (its config dropped), ClientIP timeout 10800 s, port ``protocol``
TCP, ``targetPort`` = ``port`` when unset/0/"", traffic policies Cluster, and
``ipMode: VIP`` for a LoadBalancer ingress that has an ``ip`` and no ``ipMode``.
Validation follows the parts of pkg/apis/core/validation ``ValidateService`` that change
what kube-proxy does.
"""

from __future__ import annotations

from typing import Final

from svcsim.k8s.fields import (
    Reader,
    YMap,
    describe,
    dns1035_label_problem,
    dns1123_label_problem,
    dns1123_subdomain_problem,
    ip_family,
    join,
    port_name_problem,
)
from svcsim.k8s.objects import (
    DEFAULT_CLIENT_IP_AFFINITY_SECONDS,
    LoadBalancerIngress,
    Service,
    ServicePort,
    ServiceType,
    SessionAffinity,
    TrafficPolicy,
)
from svcsim.k8s.parse import parse_meta, protocol

MAX_CLIENT_IP_AFFINITY_SECONDS = 86400
"""``MaxClientIPServiceAffinitySeconds`` (pkg/apis/core/types.go)."""

_SPEC_KEYS = frozenset(
    {
        "ports",
        "selector",
        "clusterIP",
        "clusterIPs",
        "type",
        "externalIPs",
        "sessionAffinity",
        "loadBalancerIP",
        "loadBalancerSourceRanges",
        "externalName",
        "externalTrafficPolicy",
        "healthCheckNodePort",
        "publishNotReadyAddresses",
        "sessionAffinityConfig",
        "ipFamilies",
        "ipFamilyPolicy",
        "allocateLoadBalancerNodePorts",
        "loadBalancerClass",
        "internalTrafficPolicy",
        "trafficDistribution",
    }
)
TRAFFIC_DISTRIBUTIONS = ("PreferClose", "PreferSameZone", "PreferSameNode")
"""``spec.trafficDistribution`` values the API server takes (PreferSameZone/PreferSameNode
since Kubernetes 1.33, KEP-3015)."""
_PORT_KEYS = frozenset({"name", "protocol", "appProtocol", "port", "targetPort", "nodePort"})
_EXTERNAL = (ServiceType.NODE_PORT, ServiceType.LOAD_BALANCER)
_SERVICE_TYPES: Final = tuple(t.value for t in ServiceType)
_AFFINITIES: Final = tuple(a.value for a in SessionAffinity)
_POLICIES: Final = tuple(p.value for p in TrafficPolicy)
"""The spellings ``r.choice`` accepts (the enums' values, listed once)."""
_TOLERATED = "ignored, as kube-proxy ignores it (the API server would refuse the object)"
"""Start of the warning for fields the API server refuses and kube-proxy does not use."""


def parse_service(doc: YMap, r: Reader, origin: str) -> Service:
    """A Service (``v1``) with API defaults applied; every problem goes to ``r``.

    ``selector: {}`` reads as no selector: the API server stores an empty map as nil,
    and the controllers treat such a Service as selector-less. An unset cluster IP or
    nodePort stays unset here: the API server allocates them, and so does
    :mod:`svcsim.k8s.allocate` for whoever replays the objects. Fields the API server
    refuses but kube-proxy merely ignores (``healthCheckNodePort`` without LoadBalancer +
    Local, ``loadBalancerSourceRanges`` on another type, a ``nodePort`` on a ClusterIP
    Service, which kube-proxy programs) are warnings, read as kube-proxy reads them.
    """
    meta, _ = parse_meta(doc, r, origin, namespaced=True, name_rule=dns1035_label_problem)
    r.known(doc, "", ("apiVersion", "kind", "metadata", "spec", "status"))
    spec = r.mapping(doc, "spec", "")
    if spec is None:
        if "spec" not in doc:
            r.error(doc.line, "spec", "required")
        spec = YMap(doc.line)
    r.known(spec, "spec", _SPEC_KEYS)
    types = _SERVICE_TYPES
    svc_type = ServiceType(r.choice(spec, "type", "spec", types, ServiceType.CLUSTER_IP))
    # With a misspelt type, checks that depend on the type would only add noise.
    type_ok = spec.get("type") in (None, "", *types)
    cluster_ip, cluster_ips = _cluster_ips(r, spec, svc_type if type_ok else None)
    headless = cluster_ip == "None"
    external_name = r.string(spec, "externalName", "spec") or ""
    if svc_type is ServiceType.EXTERNAL_NAME:
        if not external_name:
            r.error(
                spec.line_of("externalName"), "spec.externalName", "required for type ExternalName"
            )
        elif (problem := dns1123_subdomain_problem(external_name.removesuffix("."))) is not None:
            r.error(spec.line_of("externalName"), "spec.externalName", problem)
    selector = r.string_map(spec, "selector", "spec") or None
    ports = _ports(r, spec, svc_type if type_ok else None, headless)

    external_ips: list[str] = []
    for field, value, line in r.strings(spec, "externalIPs", "spec"):
        if (ip := r.check_ip(value, line, field)) is not None:
            external_ips.append(ip)
    source_ranges: list[str] = []
    for field, value, line in r.strings(spec, "loadBalancerSourceRanges", "spec"):
        # kube-proxy trims whitespace around each range before parsing it.
        if (cidr := r.check_cidr(value.strip(), line, field)) is not None:
            source_ranges.append(cidr)
    if source_ranges and type_ok and svc_type is not ServiceType.LOAD_BALANCER:
        # The API server refuses it; kube-proxy filters only load-balancer IPs by it.
        r.warn(
            spec.line_of("loadBalancerSourceRanges"),
            "spec.loadBalancerSourceRanges",
            f"{_TOLERATED}: it applies only when type is LoadBalancer, not {svc_type.value}",
        )

    affinity = SessionAffinity(r.choice(spec, "sessionAffinity", "spec", _AFFINITIES, "None"))
    timeout_s = DEFAULT_CLIENT_IP_AFFINITY_SECONDS
    if affinity is SessionAffinity.CLIENT_IP:
        timeout_s = _affinity_timeout(r, spec)

    policies = _POLICIES
    etp = TrafficPolicy(r.choice(spec, "externalTrafficPolicy", "spec", policies, "Cluster"))
    itp = TrafficPolicy(r.choice(spec, "internalTrafficPolicy", "spec", policies, "Cluster"))
    distribution = r.choice(spec, "trafficDistribution", "spec", TRAFFIC_DISTRIBUTIONS, "") or None
    hc_port = _optional_port(r, spec, "healthCheckNodePort", "spec")
    lb_local = svc_type is ServiceType.LOAD_BALANCER and etp is TrafficPolicy.LOCAL
    if hc_port and type_ok and not lb_local:
        # The API server refuses it; kube-proxy serves a health check only for LoadBalancer
        # Services with externalTrafficPolicy Local (apiservice.NeedsHealthCheck).
        r.warn(
            spec.line_of("healthCheckNodePort"),
            "spec.healthCheckNodePort",
            f"{_TOLERATED}: it applies only when type is LoadBalancer and "
            "externalTrafficPolicy is Local",
        )
        hc_port = 0
    allocate_lb_node_ports = r.boolean(spec, "allocateLoadBalancerNodePorts", "spec")

    return Service(
        meta=meta,
        type=svc_type,
        cluster_ip=cluster_ip,
        cluster_ips=cluster_ips,
        selector=selector,
        ports=ports,
        external_ips=tuple(external_ips),
        external_name=external_name,
        load_balancer_ip=r.ip(spec, "loadBalancerIP", "spec") or "",
        load_balancer_source_ranges=tuple(source_ranges),
        load_balancer_ingress=_ingress(r, doc, svc_type),
        session_affinity=affinity,
        session_affinity_timeout_s=timeout_s,
        external_traffic_policy=etp,
        internal_traffic_policy=itp,
        traffic_distribution=distribution,
        health_check_node_port=hc_port,
        publish_not_ready_addresses=bool(r.boolean(spec, "publishNotReadyAddresses", "spec")),
        allocate_load_balancer_node_ports=allocate_lb_node_ports is not False,
    )


def _cluster_ips(
    r: Reader, spec: YMap, svc_type: ServiceType | None
) -> tuple[str, tuple[str, ...]]:
    """``clusterIP`` and ``clusterIPs`` made consistent, as the API server keeps them.

    ``svc_type`` None (a misspelt type) skips the checks that depend on the type.
    """

    def one(value: str, line: int, field: str) -> str | None:
        return value if value == "None" else r.check_ip(value, line, field)

    raw = r.string(spec, "clusterIP", "spec") or ""
    cluster_ip = one(raw, spec.line_of("clusterIP"), "spec.clusterIP") if raw else ""
    ips: list[str] = []
    for field, value, line in r.strings(spec, "clusterIPs", "spec"):
        if value and (ip := one(value, line, field)) is not None:
            ips.append(ip)
    if len(ips) > 2:
        r.error(
            spec.line_of("clusterIPs"),
            "spec.clusterIPs",
            f"must have at most 2 items, got {len(ips)}",
        )
    elif len(ips) == 2 and ("None" in ips or ip_family(ips[0]) == ip_family(ips[1])):
        r.error(
            spec.line_of("clusterIPs"), "spec.clusterIPs", "must be one IPv4 and one IPv6 address"
        )
    if cluster_ip and ips and ips[0] != cluster_ip:
        r.error(
            spec.line_of("clusterIPs"),
            "spec.clusterIPs[0]",
            f"must match spec.clusterIP ({cluster_ip}), got {ips[0]}",
        )
    cluster_ip = cluster_ip or (ips[0] if ips else "")
    cluster_ips = tuple(ips) if ips else ((cluster_ip,) if cluster_ip else ())
    line = spec.line_of("clusterIP" if "clusterIP" in spec else "clusterIPs")
    if svc_type is ServiceType.EXTERNAL_NAME:
        if cluster_ip:
            r.error(line, "spec.clusterIP", "must be empty for type ExternalName")
        return "", ()
    if cluster_ip == "None" and svc_type in _EXTERNAL:
        r.error(line, "spec.clusterIP", f"may not be None for type {svc_type.value}")
    return cluster_ip or "", cluster_ips


def _optional_port(r: Reader, m: YMap, key: str, path: str) -> int:
    """A port where 0/unset means "not set" (nodePort, healthCheckNodePort)."""
    value = r.integer(m, key, path)
    if value is None or value == 0:
        return 0
    if not 1 <= value <= 65535:
        r.error(m.line_of(key), join(path, key), f"must be 1..65535, got {value}")
        return 0
    return value


def _ports(
    r: Reader, spec: YMap, svc_type: ServiceType | None, headless: bool
) -> tuple[ServicePort, ...]:
    """``spec.ports``; ``svc_type`` None (a misspelt type) skips type-dependent checks."""
    items = r.maps(spec, "ports", "spec")
    given = spec.get("ports")
    no_ports = given is None or (isinstance(given, list) and not given)
    if no_ports and not headless and svc_type not in (ServiceType.EXTERNAL_NAME, None):
        r.error(spec.line_of("ports"), "spec.ports", "required (at least one port)")
    out: list[ServicePort] = []
    seen: dict[tuple[int, str], str] = {}
    names: dict[str, str] = {}
    node_ports: dict[tuple[int, str], str] = {}
    for path, pm in items:
        r.known(pm, path, _PORT_KEYS)
        name = r.string(pm, "name", path) or ""
        if name:
            if (problem := dns1123_label_problem(name)) is not None:
                r.error(pm.line_of("name"), join(path, "name"), problem)
            elif name in names:
                r.error(
                    pm.line_of("name"),
                    join(path, "name"),
                    f"duplicate name {name!r} (also {names[name]})",
                )
            names.setdefault(name, path)
        elif len(items) > 1:
            r.error(
                pm.line_of("name"),
                join(path, "name"),
                "required when the Service has more than one port",
            )
        port = r.ranged(pm, "port", path, 1, 65535)
        if port is None and pm.get("port") is None:
            r.error(pm.line_of("port"), join(path, "port"), "required")
        proto = protocol(r, pm, path)
        if port is not None:
            if (port, proto) in seen:
                r.error(
                    pm.line_of("port"),
                    join(path, "port"),
                    f"duplicate port {port}/{proto.value} (also {seen[port, proto]})",
                )
            seen.setdefault((port, proto), path)
        node_port = _optional_port(r, pm, "nodePort", path)
        if node_port and svc_type is ServiceType.EXTERNAL_NAME:
            r.warn(
                pm.line_of("nodePort"),
                join(path, "nodePort"),
                f"{_TOLERATED}: kube-proxy skips ExternalName Services",
            )
            node_port = 0
        elif node_port and svc_type is ServiceType.CLUSTER_IP:
            # kube-proxy takes port.NodePort whatever the type (newBaseServiceInfo), so it
            # writes NodePort rules for it: do the same, but say the object is not a real one.
            r.warn(
                pm.line_of("nodePort"),
                join(path, "nodePort"),
                "kept, as kube-proxy programs it whatever the type (the API server would refuse "
                "the object: nodePort may not be used when type is ClusterIP)",
            )
        if node_port:
            if (node_port, proto) in node_ports:
                r.error(
                    pm.line_of("nodePort"),
                    join(path, "nodePort"),
                    f"duplicate nodePort {node_port}/{proto.value} "
                    f"(also {node_ports[node_port, proto]})",
                )
            node_ports.setdefault((node_port, proto), path)
        target = _target_port(r, pm, path, port or 0)
        out.append(ServicePort(port or 0, proto, name, target, node_port))
    return tuple(out)


def _target_port(r: Reader, pm: YMap, path: str, port: int) -> int | str:
    """``targetPort``: an int 1..65535 or a container port name; unset, 0 or "" -> ``port``."""
    raw = pm.get("targetPort")
    field = join(path, "targetPort")
    line = pm.line_of("targetPort")
    if raw is None or raw == "" or (raw == 0 and not isinstance(raw, bool)):
        return port
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        r.error(line, field, f"must be a port number or a port name, got {describe(raw)}")
        return port
    if isinstance(raw, int):
        if not 1 <= raw <= 65535:
            r.error(line, field, f"must be 1..65535, got {raw}")
            return port
        return raw
    if raw.isdigit():
        r.error(
            line,
            field,
            f"must be a port number or a port name; {describe(raw)} is a string "
            "(write the number without quotes)",
        )
        return port
    if (problem := port_name_problem(raw)) is not None:
        r.error(line, field, problem)
        return port
    return raw


def _affinity_timeout(r: Reader, spec: YMap) -> int:
    cfg = r.mapping(spec, "sessionAffinityConfig", "spec")
    client = r.mapping(cfg, "clientIP", "spec.sessionAffinityConfig") if cfg else None
    if client is None:
        return DEFAULT_CLIENT_IP_AFFINITY_SECONDS
    path = "spec.sessionAffinityConfig.clientIP"
    value = r.ranged(client, "timeoutSeconds", path, 1, MAX_CLIENT_IP_AFFINITY_SECONDS)
    return DEFAULT_CLIENT_IP_AFFINITY_SECONDS if value is None else value


def _ingress(r: Reader, doc: YMap, svc_type: ServiceType) -> tuple[LoadBalancerIngress, ...]:
    status = r.mapping(doc, "status", "")
    lb = r.mapping(status, "loadBalancer", "status") if status else None
    if lb is None:
        return ()
    out: list[LoadBalancerIngress] = []
    for path, im in r.maps(lb, "ingress", "status.loadBalancer"):
        ip = r.ip(im, "ip", path) or ""
        hostname = r.string(im, "hostname", path) or ""
        mode: str | None = r.choice(im, "ipMode", path, ("VIP", "Proxy"), "")
        if mode and not ip:
            r.error(im.line_of("ipMode"), join(path, "ipMode"), "may only be set when ip is set")
        if not mode:
            mode = "VIP" if ip and svc_type is ServiceType.LOAD_BALANCER else None
        if hostname and not ip:
            # An AWS-style load balancer: traffic reaches the nodes on their NodePorts.
            r.warn(
                im.line_of("hostname"),
                join(path, "hostname"),
                f"{hostname}: no ip, so kube-proxy writes no rules for this ingress (it only "
                "programs ingress IPs; such load balancers send to the NodePorts)",
            )
        out.append(LoadBalancerIngress(ip, hostname, mode))
    return tuple(out)
