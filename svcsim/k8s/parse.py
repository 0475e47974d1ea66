"""Turn one manifest object (a :class:`YMap`) into a frozen Kubernetes object.

Each ``parse_*`` function validates what the Service data plane depends on, applies the
defaults the API server applies (pkg/apis/core/v1/defaults.go ``SetDefaults_Service``,
``SetDefaults_Endpoints``; pkg/apis/discovery/v1/defaults.go ``SetDefaults_EndpointPort``),
records every problem through the :class:`Reader`, and always returns an object (with
defaults in place of bad values) so that one pass reports every problem.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Final

from svcsim.k8s.errors import MAX_EXCERPT_CHARS, shorten
from svcsim.k8s.fields import (
    Reader,
    YList,
    YMap,
    dns1123_label_problem,
    dns1123_subdomain_problem,
    ip_family,
    is_canonical_ipv4,
    join,
    port_name_problem,
    special_ip_problem,
)
from svcsim.k8s.objects import (
    ContainerPort,
    Endpoint,
    EndpointAddress,
    EndpointConditions,
    EndpointPort,
    Endpoints,
    EndpointSlice,
    EndpointSubset,
    Node,
    ObjectMeta,
    Pod,
    Protocol,
    ServiceCIDR,
)
from svcsim.k8s.pod_dns import parse_pod_dns

PROTOCOLS = tuple(p.value for p in Protocol)
PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
MAX_SLICE_ENDPOINTS = 1000
"""EndpointSlice validation limit (pkg/apis/discovery/validation: maxEndpoints)."""
MAX_ENDPOINT_ADDRESSES = 100
"""EndpointSlice validation limit per endpoint (maxAddresses)."""
MAX_SLICE_PORTS = 100
"""EndpointSlice validation limit (maxPorts)."""

NameRule = Callable[[str], "str | None"]


def object_label(kind: str, doc: YMap, *, namespaced: bool) -> str:
    """``Kind/namespace/name`` (``Kind/name`` if cluster-scoped) read leniently for messages."""
    md = doc.get("metadata")
    name = md.get("name") if isinstance(md, YMap) else None
    ns = md.get("namespace") if isinstance(md, YMap) else None
    # Excerpts: the label starts every problem line of the object, however long the name.
    name_s = shorten(name, MAX_EXCERPT_CHARS) if isinstance(name, str) and name else "<unnamed>"
    if not namespaced:
        return f"{kind}/{name_s}"
    ns_s = shorten(ns, MAX_EXCERPT_CHARS) if isinstance(ns, str) and ns else "default"
    return f"{kind}/{ns_s}/{name_s}"


def parse_meta(
    doc: YMap, r: Reader, origin: str, *, namespaced: bool, name_rule: NameRule
) -> tuple[ObjectMeta, bool]:
    """The object's metadata, and whether ``metadata.deletionTimestamp`` is set.

    ``namespace`` defaults to ``"default"`` (what kubectl sends when none is given);
    cluster-scoped objects (Node) ignore it. ``generateName`` is not supported: a
    simulation needs the name the API server would have picked.
    """
    md = r.mapping(doc, "metadata", "")
    if md is None:
        if "metadata" not in doc:
            r.error(doc.line, "metadata", "required")
        return ObjectMeta(name="", source=origin), False
    name = r.string(md, "name", "metadata") or ""
    if not name and md.get("name") is None:
        why = "required"
        if md.get("generateName"):
            why += " (generateName is not supported: give the name the API server assigned)"
        r.error(md.line_of("name"), "metadata.name", why)
    elif name and (problem := name_rule(name)) is not None:
        r.error(md.line_of("name"), "metadata.name", problem)
    namespace = "default"
    if namespaced:
        namespace = r.string(md, "namespace", "metadata") or "default"
        if (problem := dns1123_label_problem(namespace)) is not None:
            r.error(md.line_of("namespace"), "metadata.namespace", problem)
    labels = r.string_map(md, "labels", "metadata") or ()
    annotations = r.string_map(md, "annotations", "metadata", label_values=False) or ()
    deleting = md.get("deletionTimestamp") is not None
    meta = ObjectMeta(name, namespace, labels, annotations, source=origin)
    return meta, deleting


def protocol(r: Reader, m: YMap, path: str) -> Protocol:
    """``protocol`` of a port, defaulted to TCP."""
    return Protocol(r.choice(m, "protocol", path, PROTOCOLS, Protocol.TCP.value))


def target_ref(r: Reader, m: YMap, path: str, namespace: str) -> str | None:
    """``targetRef`` as ``namespace/name`` (the referrer's namespace when omitted)."""
    ref = r.mapping(m, "targetRef", path)
    if ref is None:
        return None
    ref_path = join(path, "targetRef")
    name = r.string(ref, "name", ref_path)
    if not name:
        return None
    return f"{r.string(ref, 'namespace', ref_path) or namespace}/{name}"


def endpoint_ip(r: Reader, value: str, line: int, field: str) -> str | None:
    """An endpoint address: a valid IP outside the ranges validation refuses."""
    ip = r.check_ip(value, line, field)
    if ip is not None and (why := special_ip_problem(ip)) is not None:
        r.error(line, field, why)
        return None
    return ip


# --- EndpointSlice ---------------------------------------------------------------------------

_SLICE_ENDPOINT_KEYS = frozenset(
    {
        "addresses",
        "conditions",
        "hostname",
        "targetRef",
        "nodeName",
        "zone",
        "hints",
        "deprecatedTopology",
        "topology",
    }
)
_SLICE_PORT_KEYS = frozenset({"name", "protocol", "port", "appProtocol"})
_CONDITION_KEYS = frozenset({"ready", "serving", "terminating"})


_IGNORED_ADDRESS_TYPES: Final = {
    "IPv6": "IPv6: ignored (svcsim models kube-proxy's IPv4 proxier; a dual-stack node's IPv6 "
    "proxier would program this slice in ip6tables)",
    "FQDN": "FQDN: ignored, as kube-proxy ignores FQDN slices",
}
"""Slices the (IPv4) proxier never reads, and what the user is told about them
(``SUPPORTED_ADDRESS_TYPES`` in svcsim/sim/changes.py; endpointslicecache.go)."""


def parse_endpoint_slice(doc: YMap, r: Reader, origin: str) -> EndpointSlice:
    """An EndpointSlice (``discovery.k8s.io/v1``, or ``v1beta1`` with its ``topology`` map).

    ``addressType`` is required (IPv4, IPv6 or FQDN). Each endpoint needs 1..100
    addresses of that type. Conditions keep the API's nil (None). A port without
    ``port`` reads as 0, which kube-proxy ignores (endpointslicecache.go: "Ignoring
    invalid endpoint port"). A slice without the ``kubernetes.io/service-name`` label
    is loaded with a warning: kube-proxy cannot tie it to a Service.
    """
    meta, _ = parse_meta(doc, r, origin, namespaced=True, name_rule=dns1123_subdomain_problem)
    address_type = r.choice(doc, "addressType", "", ("IPv4", "IPv6", "FQDN"), "")
    if doc.get("addressType") is None:
        r.error(doc.line_of("addressType"), "addressType", "required (IPv4, IPv6 or FQDN)")
    endpoints: list[Endpoint] = []
    items = r.maps(doc, "endpoints", "")
    if len(items) > MAX_SLICE_ENDPOINTS:
        r.error(
            doc.line_of("endpoints"),
            "endpoints",
            f"must have at most {MAX_SLICE_ENDPOINTS} items, got {len(items)}",
        )
    for path, em in items:
        endpoint = plain_endpoint(em) if address_type == "IPv4" else None
        if endpoint is None:
            r.known(em, path, _SLICE_ENDPOINT_KEYS)
            endpoint = _slice_endpoint(r, em, path, address_type, meta.namespace)
        endpoints.append(endpoint)
    ports: list[EndpointPort] = []
    port_items = r.maps(doc, "ports", "")
    if len(port_items) > MAX_SLICE_PORTS:
        r.error(
            doc.line_of("ports"),
            "ports",
            f"must have at most {MAX_SLICE_PORTS} items, got {len(port_items)}",
        )
    for path, pm in port_items:
        r.known(pm, path, _SLICE_PORT_KEYS)
        name = r.string(pm, "name", path) or ""
        if name and (problem := dns1123_label_problem(name)) is not None:
            r.error(pm.line_of("name"), join(path, "name"), problem)
        number = r.ranged(pm, "port", path, 0, 65535)
        ports.append(EndpointPort(number or 0, protocol(r, pm, path), name))
    if meta.label("kubernetes.io/service-name") is None:
        r.warn(
            doc.line,
            "metadata.labels",
            "no kubernetes.io/service-name label: kube-proxy ignores this slice",
        )
    if address_type in _IGNORED_ADDRESS_TYPES:
        r.warn(doc.line_of("addressType"), "addressType", _IGNORED_ADDRESS_TYPES[address_type])
    return EndpointSlice(meta, address_type or "IPv4", tuple(endpoints), tuple(ports))


_PLAIN_ENDPOINT_KEYS: Final = frozenset({"addresses", "conditions", "hostname", "nodeName", "zone"})
"""The keys of the endpoints :func:`plain_endpoint` reads (a subset of the known ones)."""


def plain_endpoint(em: YMap) -> Endpoint | None:
    """An IPv4 slice's endpoint of the usual shape, which no check can fault; else None.

    The usual shape (100,000 endpoints in a 10,000-Service manifest): one canonical IPv4
    address outside the ranges validation refuses, ``nodeName`` and ``zone`` strings,
    ``conditions`` of booleans, nothing else but ``hostname``. For it, :func:`_slice_endpoint`
    records no problem and no warning and returns this same Endpoint; anything else (None
    here) goes through it, which says what is wrong.
    """
    if not em.keys() <= _PLAIN_ENDPOINT_KEYS:
        return None
    addresses = em.get("addresses")
    if addresses.__class__ is not YList or len(addresses) != 1:
        return None
    ip = addresses[0]
    if ip.__class__ is not str or not is_canonical_ipv4(ip) or special_ip_problem(ip) is not None:
        return None
    node_name, zone = em.get("nodeName"), em.get("zone")
    if (node_name is not None and node_name.__class__ is not str) or (
        zone is not None and zone.__class__ is not str
    ):
        return None
    cond = em.get("conditions")
    conditions = _NO_CONDITIONS
    if cond is not None:
        if cond.__class__ is not YMap or not cond.keys() <= _CONDITION_KEYS:
            return None
        given = (cond.get("ready"), cond.get("serving"), cond.get("terminating"))
        for value in given:
            if value is not None and value.__class__ is not bool:
                return None
        conditions = _CONDITIONS[given]
    return _plain_endpoint(ip, conditions, node_name or None, zone or None)


_NO_CONDITIONS: Final = EndpointConditions()
"""An endpoint without ``conditions`` (frozen: one object serves them all)."""

_CONDITIONS: Final = MappingProxyType(
    {
        (ready, serving, terminating): EndpointConditions(ready, serving, terminating)
        for ready in (None, True, False)
        for serving in (None, True, False)
        for terminating in (None, True, False)
    }
)
"""Every ``conditions`` of booleans and nulls, made once (frozen values: 100,000 endpoints
of a 10,000-Service manifest share the few they use)."""

_SET_ENDPOINT_FIELDS: Final = tuple(
    getattr(Endpoint, name).__set__
    for name in (
        "addresses",
        "conditions",
        "node_name",
        "zone",
        "hint_zones",
        "hint_nodes",
        "target_ref",
    )
)


def _plain_endpoint(
    ip: str, conditions: EndpointConditions, node_name: str | None, zone: str | None
) -> Endpoint:
    """``Endpoint((ip,), conditions, node_name, zone)`` stored through its slots' descriptors.

    The frozen dataclass's ``__init__`` stores each field through ``object.__setattr__``
    (Endpoint has no ``__post_init__``); the other fields get their defaults. The tests
    compare the two.
    """
    made = object.__new__(Endpoint)
    set_addresses, set_conditions, set_node, set_zone, set_hint_zones, set_hint_nodes, set_ref = (
        _SET_ENDPOINT_FIELDS
    )
    set_addresses(made, (ip,))
    set_conditions(made, conditions)
    set_node(made, node_name)
    set_zone(made, zone)
    set_hint_zones(made, ())
    set_hint_nodes(made, ())
    set_ref(made, None)
    return made


def _slice_endpoint(r: Reader, em: YMap, path: str, address_type: str, ns: str) -> Endpoint:
    addresses: list[str] = []
    raw = r.strings(em, "addresses", path)
    given = em.get("addresses")
    if given is None or (isinstance(given, list) and not given):
        r.error(em.line_of("addresses"), join(path, "addresses"), "must have at least one address")
    if len(raw) > MAX_ENDPOINT_ADDRESSES:
        r.error(
            em.line_of("addresses"),
            join(path, "addresses"),
            f"must have at most {MAX_ENDPOINT_ADDRESSES} items, got {len(raw)}",
        )
    for field, value, line in raw:
        if address_type == "FQDN":
            if (problem := dns1123_subdomain_problem(value)) is not None:
                r.error(line, field, problem)
            addresses.append(value)
            continue
        ip = endpoint_ip(r, value, line, field)
        if ip is None:
            continue
        if address_type and ip_family(ip) != address_type:
            r.error(line, field, f"must be an {address_type} address (addressType), got {ip}")
        addresses.append(ip)
    cond = r.mapping(em, "conditions", path)
    conditions = EndpointConditions()
    if cond is not None:
        cpath = join(path, "conditions")
        r.known(cond, cpath, _CONDITION_KEYS)
        conditions = EndpointConditions(
            ready=r.boolean(cond, "ready", cpath),
            serving=r.boolean(cond, "serving", cpath),
            terminating=r.boolean(cond, "terminating", cpath),
        )
    node_name = r.string(em, "nodeName", path)
    zone = r.string(em, "zone", path)
    # v1beta1 carried node and zone in `topology`; v1 keeps it as deprecatedTopology.
    for key in ("topology", "deprecatedTopology"):
        if key not in em:
            continue
        topo = r.string_map(em, key, path) or ()
        node_name = node_name or dict(topo).get("kubernetes.io/hostname")
        zone = zone or dict(topo).get("topology.kubernetes.io/zone")
    hint_zones: list[str] = []
    hint_nodes: list[str] = []
    hints = r.mapping(em, "hints", path)
    if hints is not None:
        hpath = join(path, "hints")
        for key, found in (("forZones", hint_zones), ("forNodes", hint_nodes)):
            for zpath, zm in r.maps(hints, key, hpath):
                zname = r.string(zm, "name", zpath, required=True)
                if zname:
                    found.append(zname)
    return Endpoint(
        addresses=tuple(addresses),
        conditions=conditions,
        node_name=node_name or None,
        zone=zone or None,
        hint_zones=tuple(hint_zones),
        hint_nodes=tuple(hint_nodes),
        target_ref=target_ref(r, em, path, ns),
    )


# --- Endpoints (legacy) -------------------------------------------------------------------


def parse_endpoints(doc: YMap, r: Reader, origin: str) -> Endpoints:
    """A legacy Endpoints object (``v1``); ports default to TCP (``SetDefaults_Endpoints``).

    Addresses must be valid IPs outside loopback, link-local, multicast and unspecified
    (ValidateNonSpecialIP); ports need 1..65535 and a name when a subset has several.
    """
    meta, _ = parse_meta(doc, r, origin, namespaced=True, name_rule=dns1123_subdomain_problem)
    subsets: list[EndpointSubset] = []
    for spath, sm in r.maps(doc, "subsets", ""):
        r.known(sm, spath, ("addresses", "notReadyAddresses", "ports"))
        ready = _endpoint_addresses(r, sm, "addresses", spath, meta.namespace)
        not_ready = _endpoint_addresses(r, sm, "notReadyAddresses", spath, meta.namespace)
        ports: list[EndpointPort] = []
        port_items = r.maps(sm, "ports", spath)
        for ppath, pm in port_items:
            r.known(pm, ppath, _SLICE_PORT_KEYS)
            name = r.string(pm, "name", ppath) or ""
            if name and (problem := dns1123_label_problem(name)) is not None:
                r.error(pm.line_of("name"), join(ppath, "name"), problem)
            elif not name and len(port_items) > 1:
                r.error(
                    pm.line_of("name"),
                    join(ppath, "name"),
                    "required when the subset has more than one port",
                )
            number = r.ranged(pm, "port", ppath, 1, 65535)
            if number is None and pm.get("port") is None:
                r.error(pm.line_of("port"), join(ppath, "port"), "required")
            ports.append(EndpointPort(number or 0, protocol(r, pm, ppath), name))
        subsets.append(EndpointSubset(tuple(ready), tuple(not_ready), tuple(ports)))
    return Endpoints(meta, tuple(subsets))


def _endpoint_addresses(
    r: Reader, sm: YMap, key: str, spath: str, ns: str
) -> list[EndpointAddress]:
    out: list[EndpointAddress] = []
    for apath, am in r.maps(sm, key, spath):
        r.known(am, apath, ("ip", "hostname", "nodeName", "targetRef"))
        raw = r.string(am, "ip", apath, required=True)
        ip = endpoint_ip(r, raw, am.line_of("ip"), join(apath, "ip")) if raw else None
        if ip is not None:
            out.append(
                EndpointAddress(
                    ip, r.string(am, "nodeName", apath) or None, target_ref(r, am, apath, ns)
                )
            )
    return out


# --- Pod -------------------------------------------------------------------------------------


def parse_pod(doc: YMap, r: Reader, origin: str) -> Pod:
    """A Pod (``v1``): node, IPs, readiness, termination and container ports.

    * ``ready`` is the ``Ready`` entry of ``status.conditions`` (``status: "True"``). When
      the manifest has no ``status.conditions`` at all (a hand-written Pod), a Pod with an
      IP is taken as Ready: that is what a running Pod without readiness gates reports.
    * ``terminating`` is ``metadata.deletionTimestamp`` being set.
    * ``pod_ips`` comes from ``status.podIPs`` (else ``[status.podIP]``); ``pod_ip`` is the
      first. ``phase`` defaults to Running when the Pod has an IP, else Pending.
    * ``container_ports`` lists ``spec.containers[].ports`` and the ports of sidecars
      (``initContainers`` with ``restartPolicy: Always``), which named targetPorts also
      resolve against (k8s.io/endpointslice utils.go ``findPort``).
    """
    meta, deleting = parse_meta(
        doc, r, origin, namespaced=True, name_rule=dns1123_subdomain_problem
    )
    spec = r.mapping(doc, "spec", "") or YMap(doc.line)
    ports: list[ContainerPort] = []
    for key in ("containers", "initContainers"):
        for cpath, cm in r.maps(spec, key, "spec"):
            if key == "initContainers" and cm.get("restartPolicy") != "Always":
                continue
            for ppath, pm in r.maps(cm, "ports", cpath):
                number = r.ranged(pm, "containerPort", ppath, 1, 65535)
                if number is None:
                    if pm.get("containerPort") is None:
                        r.error(
                            pm.line_of("containerPort"), join(ppath, "containerPort"), "required"
                        )
                    continue
                name = r.string(pm, "name", ppath) or ""
                if name and (problem := port_name_problem(name)) is not None:
                    r.error(pm.line_of("name"), join(ppath, "name"), problem)
                ports.append(ContainerPort(number, protocol(r, pm, ppath), name))
    status = r.mapping(doc, "status", "") or YMap(doc.line)
    pod_ip = r.ip(status, "podIP", "status")
    pod_ips: list[str] = []
    for ipath, im in r.maps(status, "podIPs", "status"):
        ip = r.ip(im, "ip", ipath)
        if ip is not None:
            pod_ips.append(ip)
    if pod_ip and pod_ips and pod_ips[0] != pod_ip:
        r.error(
            status.line_of("podIPs"),
            "status.podIPs[0]",
            f"must match status.podIP ({pod_ip}), got {pod_ips[0]}",
        )
    if not pod_ips and pod_ip:
        pod_ips = [pod_ip]
    phase_default = "Running" if pod_ips else "Pending"
    phase = r.choice(status, "phase", "status", PHASES, phase_default)
    if status.get("conditions") is None:
        ready = bool(pod_ips)
    else:
        ready = False
        for cpath, cm in r.maps(status, "conditions", "status"):
            if r.string(cm, "type", cpath) == "Ready":
                ready = (
                    r.choice(cm, "status", cpath, ("True", "False", "Unknown"), "Unknown") == "True"
                )
    return Pod(
        meta=meta,
        node_name=r.string(spec, "nodeName", "spec") or None,
        pod_ip=pod_ips[0] if pod_ips else None,
        pod_ips=tuple(pod_ips),
        phase=phase,
        ready=ready,
        terminating=deleting,
        container_ports=tuple(ports),
        host_network=bool(r.boolean(spec, "hostNetwork", "spec")),
        dns=parse_pod_dns(r, spec, "spec"),
    )


# --- Node ------------------------------------------------------------------------------------


def parse_node(doc: YMap, r: Reader, origin: str) -> Node:
    """A Node (``v1``), cluster-scoped.

    ``InternalIP``/``ExternalIP`` come from ``status.addresses``, Pod CIDRs from
    ``spec.podCIDRs`` (else ``spec.podCIDR``).
    """
    meta, _ = parse_meta(doc, r, origin, namespaced=False, name_rule=dns1123_subdomain_problem)
    spec = r.mapping(doc, "spec", "") or YMap(doc.line)
    cidrs: list[str] = []
    for field, value, line in r.strings(spec, "podCIDRs", "spec"):
        if (cidr := r.check_cidr(value, line, field)) is not None:
            cidrs.append(cidr)
    single = r.string(spec, "podCIDR", "spec")
    if single:
        cidr = r.check_cidr(single, spec.line_of("podCIDR"), "spec.podCIDR")
        if cidr is not None and not cidrs:
            cidrs.append(cidr)
    internal: list[str] = []
    external: list[str] = []
    status = r.mapping(doc, "status", "") or YMap(doc.line)
    cpu = 0
    allocatable = r.mapping(status, "allocatable", "status")
    if allocatable is not None:
        text = allocatable.get("cpu")
        if text is not None:
            cpu = cpu_millis(str(text))
            if cpu < 0:
                at = allocatable.line_of("cpu")
                r.error(at, "status.allocatable.cpu", f"not a CPU quantity: {str(text)!r}")
                cpu = 0
    for apath, am in r.maps(status, "addresses", "status"):
        kind = r.string(am, "type", apath, required=True)
        target = {"InternalIP": internal, "ExternalIP": external}.get(kind or "")
        if target is not None:
            ip = r.ip(am, "address", apath)
            if ip is None and am.get("address") is None:
                r.error(am.line_of("address"), join(apath, "address"), "required")
            elif ip is not None:
                target.append(ip)
    return Node(meta, tuple(internal), tuple(external), tuple(cidrs), cpu_millis=cpu)


def cpu_millis(text: str) -> int:
    """A CPU quantity (``4``, ``3500m``, ``0.5``) in millicores; -1 if it is not one."""
    try:
        if text.endswith("m"):
            return int(text[:-1])
        return round(float(text) * 1000)
    except (ValueError, OverflowError):
        return -1


def parse_service_cidr(doc: YMap, r: Reader, origin: str) -> ServiceCIDR:
    """A ServiceCIDR (``networking.k8s.io/v1``, cluster-scoped), checked as the API server does.

    kubernetes ``pkg/apis/networking/validation/validation.go`` @1758d176
    (``ValidateServiceCIDR``): ``spec.cidrs`` is required, holds one or two valid CIDRs, and
    two must be one IPv4 and one IPv6.
    """
    meta, _ = parse_meta(doc, r, origin, namespaced=False, name_rule=dns1123_subdomain_problem)
    spec = r.mapping(doc, "spec", "")
    if spec is None:
        if "spec" not in doc:
            r.error(doc.line, "spec", "required")
        return ServiceCIDR(meta)
    items = r.strings(spec, "cidrs", "spec")
    if not items:
        if spec.get("cidrs") is None or isinstance(spec.get("cidrs"), YList):
            r.error(spec.line_of("cidrs"), "spec.cidrs", "at least one CIDR required")
        return ServiceCIDR(meta)
    if len(items) > 2:
        r.error(spec.line_of("cidrs"), "spec.cidrs", "may only hold up to 2 values")
        return ServiceCIDR(meta)
    cidrs: list[str] = []
    for field, value, line in items:
        cidr = r.check_cidr(value, line, field)
        if cidr is not None:
            cidrs.append(cidr)
    if len(cidrs) == 2 and (":" in cidrs[0]) == (":" in cidrs[1]):
        r.error(
            spec.line_of("cidrs"),
            "spec.cidrs",
            "may specify no more than one CIDR for each IP family, i.e. 192.168.0.0/24 and "
            "2001:db8::/64",
        )
    return ServiceCIDR(meta, tuple(cidrs))
