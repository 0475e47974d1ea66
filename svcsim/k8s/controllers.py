"""The control plane's part of the Service data plane, as pure functions.

* :func:`endpoint_slices_for_service` — the EndpointSlice controller (kube-controller-manager,
  staging/src/k8s.io/endpointslice ``Reconciler``) for a Service with a selector.
* :func:`mirror_endpoints` — the EndpointSliceMirroring controller
  (pkg/controller/endpointslicemirroring) for hand-made legacy Endpoints.
* :func:`effective_endpoint_slices` — the slices kube-proxy would watch for a set of manifests.

Real controllers name new slices with ``generateName`` (a random 5-character suffix) and
pick endpoints out of sets in random order; here names are a hash of what the slice holds
and endpoints are sorted, so the same input always gives the same slices.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace

from svcsim.k8s.fields import ip_family, normalize_ip
from svcsim.k8s.load import Manifests
from svcsim.k8s.objects import (
    SERVICE_NAME_LABEL,
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
    Service,
    ServicePort,
    ServiceType,
)
from svcsim.k8s.selectors import PodIndex
from svcsim.k8s.selectors import selector_matches as selector_matches  # its home until now
from svcsim.k8s.topology_hints import hint_endpoints

MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
ENDPOINTSLICE_CONTROLLER = "endpointslice-controller.k8s.io"
MIRRORING_CONTROLLER = "endpointslicemirroring-controller.k8s.io"
SKIP_MIRROR_LABEL = "endpointslice.kubernetes.io/skip-mirror"
HEADLESS_LABEL = "service.kubernetes.io/headless"
LEADER_ELECTION_ANNOTATION = "control-plane.alpha.kubernetes.io/leader"
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"

DEFAULT_MAX_ENDPOINTS_PER_SLICE = 100
"""``--max-endpoints-per-slice`` default (endpointslice config v1alpha1 defaults.go)."""
MAX_MAX_ENDPOINTS_PER_SLICE = 1000
"""Largest value the flag accepts (kube-controller-manager endpointslicecontroller.go)."""
DEFAULT_MIRRORING_MAX_ENDPOINTS_PER_SUBSET = 1000
"""``--mirroring-max-endpoints-per-subset`` default (endpointslicemirroring config defaults.go)."""

_RESERVED_LABELS = frozenset({SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL})
# apimachinery util/rand alphabet, used by generateName (no vowels, no confusable digits).
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_MAX_GENERATED_BASE = 58  # 63-character names minus the 5-character random suffix


def resolve_target_port(port: ServicePort, pod: Pod) -> int | None:
    """The Pod port a Service port sends to, or None when the Pod has no such port.

    An int ``targetPort`` is used as-is (None means "same as ``port``"); a name is looked
    up among the Pod's container ports with the same protocol (``findPort`` in
    k8s.io/endpointslice utils.go).
    """
    target = port.target_port
    if target is None:
        return port.port
    if isinstance(target, int):
        return target
    for cp in pod.container_ports:
        if cp.name == target and cp.protocol == port.protocol:
            return cp.container_port
    return None


def generated_name(base: str, *content: str) -> str:
    """A ``generateName``-shaped name ``<base>-xxxxx`` whose suffix is a hash of ``content``."""
    prefix = f"{base}-"[:_MAX_GENERATED_BASE]
    digest = hashlib.sha256("\x00".join(content).encode()).digest()
    return prefix + "".join(_NAME_ALPHABET[b % len(_NAME_ALPHABET)] for b in digest[:5])


def endpoint_slices_for_service(
    service: Service,
    pods: Sequence[Pod],
    max_endpoints_per_slice: int = DEFAULT_MAX_ENDPOINTS_PER_SLICE,
    *,
    nodes: Sequence[Node] | None = None,
    notes: list[str] | None = None,
) -> tuple[EndpointSlice, ...]:
    """The EndpointSlices the EndpointSlice controller keeps for ``service``.

    Nothing for an ExternalName Service or one without a selector (the controller's
    ``syncService`` returns early). Otherwise, per address family of the Service:

    * Pods in the Service's namespace whose labels match the selector, not Succeeded or
      Failed, with an IP (``ShouldPodBeInEndpoints(pod, includeTerminating=true)``);
      terminating Pods are included.
    * Conditions (``podToEndpoint``): ``serving`` = Pod Ready, ``terminating`` =
      deletionTimestamp set, ``ready`` = publishNotReadyAddresses or (serving and not
      terminating). ``nodeName``, ``targetRef`` (``namespace/name``), and ``zone`` from the
      Node's ``topology.kubernetes.io/zone`` label when ``nodes`` is given.
    * Ports: one per Service port, named and with the protocol of the Service port, number
      = resolved targetPort (:func:`resolve_target_port`). A Pod lacking a named port just
      lacks that entry (``getEndpointPorts`` skips it), so Pods with different port sets go
      to different slices, and a Pod with none of the ports sits in a slice whose ``ports``
      is empty, which kube-proxy cannot use.
    * At most ``max_endpoints_per_slice`` endpoints per slice (1..1000, default 100); a
      family with no endpoints gets one empty placeholder slice, as the reconciler keeps.
    * When ``nodes`` is given, a Pod whose Node is not among them is left out unless
      publishNotReadyAddresses (the reconciler's "Node not found" rule); with ``nodes``
      None no Node check is made.

    Labels: the Service's labels, ``kubernetes.io/service-name``,
    ``endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`` and, for a
    Service without a cluster IP, ``service.kubernetes.io/headless``. Address families come
    from the cluster IPs; a headless Service gets IPv4, or IPv6 when the selected Pods only
    have IPv6 addresses (the API server would have set ``ipFamilies`` to the cluster's family).

    Hints: as :func:`svcsim.k8s.topology_hints.hint_endpoints` gives them, over each family's
    endpoints in slice order; why ``topology-mode: Auto`` hints were removed, if they were,
    is appended to ``notes``.
    """
    if not 1 <= max_endpoints_per_slice <= MAX_MAX_ENDPOINTS_PER_SLICE:
        raise ValueError(
            f"max_endpoints_per_slice must be 1..1000, got {max_endpoints_per_slice!r}"
        )
    if service.type is ServiceType.EXTERNAL_NAME or service.selector is None:
        return ()
    ns = service.meta.namespace
    selected = [
        p
        for p in pods
        if p.meta.namespace == ns and selector_matches(service.selector, p.meta.labels)
    ]
    node_by_name = None if nodes is None else {n.meta.name: n for n in nodes}
    labels = _controller_labels(service)
    out: list[EndpointSlice] = []
    for family in _service_families(service, selected):
        groups: dict[tuple[EndpointPort, ...], dict[Endpoint, None]] = {}
        for pod in selected:
            if pod.phase in ("Succeeded", "Failed") or not pod.pod_ips:
                continue
            node = None
            if node_by_name is not None:
                node = node_by_name.get(pod.node_name or "")
                if node is None and not service.publish_not_ready_addresses:
                    continue
            ports = _endpoint_ports(service, pod)
            group = groups.setdefault(ports, {})
            addresses = tuple(ip for ip in pod.pod_ips if ip_family(ip) == family)
            if addresses:
                group[_pod_endpoint(service, pod, node, addresses)] = None
        family_slices: list[EndpointSlice] = []
        for ports, endpoints in sorted(groups.items(), key=lambda kv: repr(kv[0])):
            ordered = sorted(endpoints, key=lambda e: (e.addresses, e.target_ref or ""))
            for start in range(0, len(ordered), max_endpoints_per_slice):
                chunk = tuple(ordered[start : start + max_endpoints_per_slice])
                name = generated_name(
                    service.meta.name, ns, service.meta.name, family, repr(ports), str(start)
                )
                meta = ObjectMeta(name, ns, labels, source=service.meta.source)
                family_slices.append(EndpointSlice(meta, family, chunk, ports))
        family_slices = _with_hints(service, family_slices, nodes, notes)
        if not family_slices:
            name = generated_name(service.meta.name, ns, service.meta.name, family, "placeholder")
            family_slices.append(
                EndpointSlice(ObjectMeta(name, ns, labels, source=service.meta.source), family)
            )
        out.extend(family_slices)
    return tuple(out)


def _with_hints(
    service: Service,
    slices: list[EndpointSlice],
    nodes: Sequence[Node] | None,
    notes: list[str] | None,
) -> list[EndpointSlice]:
    """``slices`` with the hints the Service asks for (topology_hints.hint_endpoints)."""
    endpoints = [e for s in slices for e in s.endpoints]
    hinted, why = hint_endpoints(service, endpoints, nodes)
    if why is not None and notes is not None:
        notes.append(why)
    out: list[EndpointSlice] = []
    start = 0
    for s in slices:
        chunk = hinted[start : start + len(s.endpoints)]
        start += len(s.endpoints)
        out.append(s if chunk == s.endpoints else replace(s, endpoints=chunk))
    return out


def _controller_labels(service: Service) -> tuple[tuple[str, str], ...]:
    labels = {k: v for k, v in service.meta.labels if k not in _RESERVED_LABELS}
    if service.cluster_ip in ("", "None"):
        labels[HEADLESS_LABEL] = ""
    labels[SERVICE_NAME_LABEL] = service.meta.name
    labels[MANAGED_BY_LABEL] = ENDPOINTSLICE_CONTROLLER
    return tuple(sorted(labels.items()))


def _service_families(service: Service, pods: Sequence[Pod]) -> list[str]:
    families: list[str] = []
    for ip in service.cluster_ips or (service.cluster_ip,):
        if ip and ip != "None" and ip_family(ip) not in families:
            families.append(ip_family(ip))
    if families:
        return families
    pod_families = {ip_family(ip) for p in pods for ip in p.pod_ips}
    return ["IPv6"] if pod_families == {"IPv6"} else ["IPv4"]


def _endpoint_ports(service: Service, pod: Pod) -> tuple[EndpointPort, ...]:
    ports: list[EndpointPort] = []
    for sp in service.ports:
        number = resolve_target_port(sp, pod)
        if number is not None:
            ports.append(EndpointPort(number, sp.protocol, sp.name))
    return tuple(ports)


def _pod_endpoint(
    service: Service, pod: Pod, node: Node | None, addresses: tuple[str, ...]
) -> Endpoint:
    serving = pod.ready
    terminating = pod.terminating
    ready = service.publish_not_ready_addresses or (serving and not terminating)
    return Endpoint(
        addresses=addresses,
        conditions=EndpointConditions(ready=ready, serving=serving, terminating=terminating),
        node_name=pod.node_name,
        zone=node.zone if node is not None else None,
        target_ref=pod.meta.key,
    )


# --- EndpointSliceMirroring ------------------------------------------------------------------


def mirror_endpoints(
    endpoints: Sequence[Endpoints],
    services: Sequence[Service],
    max_endpoints_per_subset: int = DEFAULT_MIRRORING_MAX_ENDPOINTS_PER_SUBSET,
) -> tuple[EndpointSlice, ...]:
    """The EndpointSlices the EndpointSliceMirroring controller makes from legacy Endpoints.

    Mirrored (endpointslicemirroring_controller.go ``syncEndpoints``/``shouldMirror``): an
    Endpoints whose Service of the same namespace/name exists and has no selector, without
    the label ``endpointslice.kubernetes.io/skip-mirror: "true"`` and without the
    leader-election annotation ``control-plane.alpha.kubernetes.io/leader``.

    Per Endpoints (reconciler.go ``reconcile``): subsets are first canonicalised
    (:func:`repack_subsets`); then for each subset ready ``addresses`` (ready=True) and
    then ``notReadyAddresses`` (ready=False) are taken until ``max_endpoints_per_subset``
    (``--mirroring-max-endpoints-per-subset``, default 1000) addresses of that subset are
    mirrored: the cap is **per subset**, not per Endpoints, and the rest are dropped.
    One slice per (subset ports, address family); ``serving``/``terminating`` stay nil.
    Labels: the Endpoints' labels plus ``kubernetes.io/service-name`` and
    ``endpointslice.kubernetes.io/managed-by: endpointslicemirroring-controller.k8s.io``;
    annotations are copied except the trigger-time and last-applied ones (utils.go
    ``newEndpointSlice``).
    """
    if max_endpoints_per_subset < 1:
        raise ValueError(f"max_endpoints_per_subset must be >= 1, got {max_endpoints_per_subset!r}")
    by_key = {s.meta.key: s for s in services}
    out: list[EndpointSlice] = []
    for ep in endpoints:
        if (
            ep.meta.label(SKIP_MIRROR_LABEL) == "true"
            or ep.meta.annotation(LEADER_ELECTION_ANNOTATION) is not None
        ):
            continue
        service = by_key.get(ep.meta.key)
        if service is None or service.selector is not None:
            continue
        out.extend(_mirror_one(ep, max_endpoints_per_subset))
    return tuple(out)


def _mirror_one(ep: Endpoints, cap: int) -> list[EndpointSlice]:
    desired: dict[tuple[str, tuple[EndpointPort, ...]], dict[Endpoint, None]] = {}
    for subset in repack_subsets(ep.subsets):
        added = 0
        candidates = [(a, True) for a in subset.addresses] + [
            (a, False) for a in subset.not_ready_addresses
        ]
        for address, ready in candidates:
            if added >= cap:
                break
            try:
                ip = normalize_ip(address.ip)
            except ValueError:
                continue  # invalid IPs are skipped and do not count towards the cap
            endpoint = Endpoint(
                addresses=(ip,),
                conditions=EndpointConditions(ready=ready),
                node_name=address.node_name,
                target_ref=address.target_ref,
            )
            desired.setdefault((ip_family(ip), subset.ports), {})[endpoint] = None
            added += 1
    labels = dict(ep.meta.labels)
    labels[SERVICE_NAME_LABEL] = ep.meta.name
    labels[MANAGED_BY_LABEL] = MIRRORING_CONTROLLER
    annotations = tuple(
        (k, v)
        for k, v in ep.meta.annotations
        if k not in (TRIGGER_TIME_ANNOTATION, LAST_APPLIED_ANNOTATION)
    )
    slices: list[EndpointSlice] = []
    for (family, ports), endpoints in desired.items():
        name = generated_name(ep.meta.name, ep.meta.namespace, ep.meta.name, family, repr(ports))
        meta = ObjectMeta(
            name, ep.meta.namespace, tuple(sorted(labels.items())), annotations, ep.meta.source
        )
        slices.append(EndpointSlice(meta, family, tuple(endpoints)[:cap], ports))
    return slices


def repack_subsets(subsets: Sequence[EndpointSubset]) -> tuple[EndpointSubset, ...]:
    """Endpoints subsets in canonical form (pkg/api/v1/endpoints/util.go ``RepackSubsets``).

    Each address (keyed by IP and targetRef) is mapped to the ports it serves; when an
    address is both ready and not ready for a port, not ready wins. Ports serving the
    same addresses with the same readiness become one subset. Addresses sort by IP, ports
    by (name, port, protocol). A subset without ports keeps its addresses with no ports.
    """
    owners: dict[tuple[str, str | None], EndpointAddress] = {}
    by_port: dict[EndpointPort | None, dict[tuple[str, str | None], bool]] = {}
    for subset in subsets:
        for port in subset.ports or (None,):
            readiness = by_port.setdefault(port, {})
            for address, ready in [(a, True) for a in subset.addresses] + [
                (a, False) for a in subset.not_ready_addresses
            ]:
                key = (address.ip, address.target_ref)
                owners.setdefault(key, address)
                if readiness.get(key, True):
                    readiness[key] = ready
    groups: dict[frozenset[tuple[tuple[str, str | None], bool]], list[EndpointPort | None]] = {}
    for port, readiness in by_port.items():
        groups.setdefault(frozenset(readiness.items()), []).append(port)
    out: list[EndpointSubset] = []
    for members, ports in groups.items():
        ready_keys = sorted((k for k, r in members if r), key=lambda k: (k[0], k[1] or ""))
        not_ready_keys = sorted((k for k, r in members if not r), key=lambda k: (k[0], k[1] or ""))
        real_ports = sorted(
            (p for p in ports if p is not None), key=lambda p: (p.name, p.port, p.protocol)
        )
        out.append(
            EndpointSubset(
                tuple(owners[k] for k in ready_keys),
                tuple(owners[k] for k in not_ready_keys),
                tuple(real_ports),
            )
        )
    return tuple(
        sorted(out, key=lambda s: (repr(s.ports), repr(s.addresses), repr(s.not_ready_addresses)))
    )


# --- what kube-proxy sees ----------------------------------------------------------------------


def effective_endpoint_slices(manifests: Manifests) -> tuple[EndpointSlice, ...]:
    """The EndpointSlices kube-proxy would watch, given a set of manifests.

    The rule: **EndpointSlices in the input are the complete truth for the Service they
    name** (label ``kubernetes.io/service-name``): a ``kubectl get ... -o yaml`` dump
    already holds every controller-made and mirrored slice, and deriving more would
    duplicate them. For a Service with no slice in the input, the control plane's work is
    derived:

    * selector Services (not ExternalName) with at least one matching Pod in the input get
      :func:`endpoint_slices_for_service` (with the input's Nodes, when it has any, so Pods
      on unknown Nodes are left out as the controller leaves them out);
    * legacy Endpoints get :func:`mirror_endpoints` (selector-less Services only).

    A selector Service without matching Pods and without slices gets nothing (the
    controller's placeholder slice has no endpoints and changes nothing for kube-proxy).
    Order: input slices, then derived ones in Service order, then mirrored ones.
    """
    given = manifests.endpoint_slices
    covered = {(s.meta.namespace, s.service_name) for s in given if s.service_name}
    out = list(given)
    nodes = manifests.nodes or None
    index = PodIndex(enumerate(manifests.pods))
    for service in manifests.services:
        ns = service.meta.namespace
        if (ns, service.meta.name) in covered or service.selector is None:
            continue
        # The controller walks only the matching Pods (as it lists them by selector).
        selected = [pod for _, pod in index.select(ns, service.selector)]
        if selected:
            out.extend(endpoint_slices_for_service(service, selected, nodes=nodes))
    legacy = [e for e in manifests.endpoints if (e.meta.namespace, e.meta.name) not in covered]
    out.extend(mirror_endpoints(legacy, manifests.services))
    return tuple(out)
