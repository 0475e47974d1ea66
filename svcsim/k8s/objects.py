"""Frozen Kubernetes objects: what the Service data plane depends on.

Service, EndpointSlice, Endpoints, Pod and Node, reduced to the fields that matter. Field names
follow the Kubernetes API (snake_cased); values keep Kubernetes' meaning, including "nil"
(``None``) where the API distinguishes unset from false. Objects are plain values: no behaviour
beyond derived properties, no SimPy, no numpy.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class Protocol(StrEnum):
    """L4 protocol of a Service or endpoint port (Kubernetes spelling)."""

    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


class ServiceType(StrEnum):
    """``spec.type`` of a Service."""

    CLUSTER_IP = "ClusterIP"
    NODE_PORT = "NodePort"
    LOAD_BALANCER = "LoadBalancer"
    EXTERNAL_NAME = "ExternalName"


class TrafficPolicy(StrEnum):
    """``spec.externalTrafficPolicy`` / ``spec.internalTrafficPolicy``."""

    CLUSTER = "Cluster"
    LOCAL = "Local"


class SessionAffinity(StrEnum):
    """``spec.sessionAffinity``."""

    NONE = "None"
    CLIENT_IP = "ClientIP"


DEFAULT_CLIENT_IP_AFFINITY_SECONDS = 10800
"""API default for ``sessionAffinityConfig.clientIP.timeoutSeconds`` (3 h)."""

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
"""Label tying an EndpointSlice to its Service."""

LAST_CHANGE_TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
"""Annotation kube-proxy uses to measure network programming latency."""


def pair_value(pairs: Iterable[tuple[str, str]], key: str) -> str | None:
    """The value paired with ``key`` (the last one, as ``dict(pairs)`` would), or None."""
    found = None
    for k, v in pairs:
        if k == key:
            found = v
    return found


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """Identity and labels of an object, plus where it was read from (for error messages)."""

    name: str
    namespace: str = "default"
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    source: str = ""
    """``file:line`` of the document the object came from, or ``""`` if built in code."""

    @property
    def key(self) -> str:
        """``namespace/name``, as Kubernetes' NamespacedName prints it."""
        return f"{self.namespace}/{self.name}"

    def label(self, key: str) -> str | None:
        """The value of label ``key``, or None."""
        return pair_value(self.labels, key)

    def annotation(self, key: str) -> str | None:
        """The value of annotation ``key``, or None."""
        return pair_value(self.annotations, key)


@dataclass(frozen=True, slots=True)
class ServicePort:
    """One entry of ``spec.ports``.

    ``target_port`` is an int, or a str naming a container port; it defaults to ``port``.
    ``node_port`` is 0 when unset (as kube-proxy treats it).
    """

    port: int
    protocol: Protocol = Protocol.TCP
    name: str = ""
    target_port: int | str | None = None
    node_port: int = 0


@dataclass(frozen=True, slots=True)
class LoadBalancerIngress:
    """One entry of ``status.loadBalancer.ingress``; ``ip_mode`` is "VIP", "Proxy" or None."""

    ip: str = ""
    hostname: str = ""
    ip_mode: str | None = None


@dataclass(frozen=True, slots=True)
class Service:
    """A Service (``v1``). ``cluster_ip`` is ``"None"`` for headless Services."""

    meta: ObjectMeta
    type: ServiceType = ServiceType.CLUSTER_IP
    cluster_ip: str = ""
    cluster_ips: tuple[str, ...] = ()
    selector: tuple[tuple[str, str], ...] | None = None
    """None when the Service has no selector (its endpoints are managed by hand)."""
    ports: tuple[ServicePort, ...] = ()
    external_ips: tuple[str, ...] = ()
    external_name: str = ""
    load_balancer_ip: str = ""
    load_balancer_source_ranges: tuple[str, ...] = ()
    load_balancer_ingress: tuple[LoadBalancerIngress, ...] = ()
    session_affinity: SessionAffinity = SessionAffinity.NONE
    session_affinity_timeout_s: int = DEFAULT_CLIENT_IP_AFFINITY_SECONDS
    external_traffic_policy: TrafficPolicy = TrafficPolicy.CLUSTER
    internal_traffic_policy: TrafficPolicy = TrafficPolicy.CLUSTER
    traffic_distribution: str | None = None
    """``spec.trafficDistribution`` (``PreferClose``, ``PreferSameZone``, ``PreferSameNode``)."""
    health_check_node_port: int = 0
    publish_not_ready_addresses: bool = False
    allocate_load_balancer_node_ports: bool = True
    """``spec.allocateLoadBalancerNodePorts`` (unset means true): LoadBalancer NodePorts."""

    @property
    def is_headless(self) -> bool:
        """True for ``clusterIP: None``."""
        return self.cluster_ip == "None"

    @property
    def has_selector(self) -> bool:
        """True when the control plane manages this Service's EndpointSlices."""
        return self.selector is not None


@dataclass(frozen=True, slots=True)
class EndpointConditions:
    """``endpoints[].conditions`` of an EndpointSlice, with the API's nil (None) kept."""

    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One entry of an EndpointSlice's ``endpoints``."""

    addresses: tuple[str, ...]
    conditions: EndpointConditions = field(default_factory=EndpointConditions)
    node_name: str | None = None
    zone: str | None = None
    hint_zones: tuple[str, ...] = ()
    hint_nodes: tuple[str, ...] = ()
    """``hints.forNodes`` (``trafficDistribution: PreferSameNode``)."""
    target_ref: str | None = None
    """``namespace/name`` of the Pod behind the endpoint, when known."""

    @property
    def is_ready(self) -> bool:
        """kube-proxy's reading: a nil ``ready`` counts as ready."""
        return self.conditions.ready is None or self.conditions.ready

    @property
    def is_serving(self) -> bool:
        """kube-proxy's reading: a nil ``serving`` counts as serving."""
        return self.conditions.serving is None or self.conditions.serving

    @property
    def is_terminating(self) -> bool:
        """kube-proxy's reading: a nil ``terminating`` counts as not terminating."""
        return bool(self.conditions.terminating)


@dataclass(frozen=True, slots=True)
class EndpointPort:
    """One entry of an EndpointSlice's ``ports``; ``name`` is "" when unnamed."""

    port: int
    protocol: Protocol = Protocol.TCP
    name: str = ""


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    """An EndpointSlice (``discovery.k8s.io/v1``)."""

    meta: ObjectMeta
    address_type: str = "IPv4"
    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[EndpointPort, ...] = ()

    @property
    def service_name(self) -> str | None:
        """The Service this slice belongs to (label ``kubernetes.io/service-name``)."""
        return self.meta.label(SERVICE_NAME_LABEL)


@dataclass(frozen=True, slots=True)
class EndpointAddress:
    """One address of a legacy Endpoints subset."""

    ip: str
    node_name: str | None = None
    target_ref: str | None = None


@dataclass(frozen=True, slots=True)
class EndpointSubset:
    """One ``subsets[]`` entry of a legacy Endpoints object."""

    addresses: tuple[EndpointAddress, ...] = ()
    not_ready_addresses: tuple[EndpointAddress, ...] = ()
    ports: tuple[EndpointPort, ...] = ()


@dataclass(frozen=True, slots=True)
class Endpoints:
    """A legacy Endpoints object (``v1``), mirrored into EndpointSlices for kube-proxy."""

    meta: ObjectMeta
    subsets: tuple[EndpointSubset, ...] = ()


@dataclass(frozen=True, slots=True)
class ContainerPort:
    """One ``containers[].ports[]`` entry of a Pod (named target ports resolve against it)."""

    container_port: int
    protocol: Protocol = Protocol.TCP
    name: str = ""


@dataclass(frozen=True, slots=True)
class PodDns:
    """A Pod's ``spec.dnsPolicy`` and ``spec.dnsConfig`` (what the kubelet's resolv.conf uses).

    ``options`` are ``dnsConfig.options`` as ``(name, value)`` pairs (value None for a flag
    such as ``single-request``), in manifest order; :mod:`svcsim.k8s.pod_dns` parses them.
    """

    policy: str = "ClusterFirst"
    options: tuple[tuple[str, str | None], ...] = ()
    searches: tuple[str, ...] = ()
    nameservers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Pod:
    """A Pod (``v1``): where it runs, its IP, and whether it is Ready or being deleted."""

    meta: ObjectMeta
    node_name: str | None = None
    pod_ip: str | None = None
    pod_ips: tuple[str, ...] = ()
    phase: str = "Running"
    ready: bool = True
    """The Pod's ``Ready`` condition."""
    terminating: bool = False
    """True when ``metadata.deletionTimestamp`` is set."""
    container_ports: tuple[ContainerPort, ...] = ()
    host_network: bool = False
    dns: PodDns | None = None
    """``dnsPolicy``/``dnsConfig``; None: neither is set (ClusterFirst, no options)."""


@dataclass(frozen=True, slots=True)
class Node:
    """A Node (``v1``)."""

    meta: ObjectMeta
    internal_ips: tuple[str, ...] = ()
    external_ips: tuple[str, ...] = ()
    pod_cidrs: tuple[str, ...] = ()
    cpu_millis: int = 0
    """``status.allocatable.cpu`` in millicores (0: not given)."""

    @property
    def zone(self) -> str | None:
        """The ``topology.kubernetes.io/zone`` label, if any."""
        return self.meta.label("topology.kubernetes.io/zone")


# --- ServiceCIDR (networking.k8s.io/v1) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceCIDR:
    """A ServiceCIDR (``networking.k8s.io/v1``, cluster-scoped): ranges ClusterIPs come from.

    kube-proxy's nftables mode watches them (``OnServiceCIDRsChanged``) and drops traffic to
    addresses of these ranges that no Service holds.
    """

    meta: ObjectMeta
    cidrs: tuple[str, ...] = ()
    """``spec.cidrs``: one or two CIDRs, at most one per IP family."""

    @property
    def ipv4_cidrs(self) -> tuple[str, ...]:
        """The IPv4 ones (what an IPv4 kube-proxy keeps)."""
        return tuple(c for c in self.cidrs if ":" not in c)


# --- Deployment (apps/v1) ------------------------------------------------------------------------

POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
"""Label the Deployment controller puts on a ReplicaSet's Pods (and selector)."""

DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS = 30
"""API default for ``spec.terminationGracePeriodSeconds`` (pkg/apis/core/v1 defaults)."""

# apimachinery util/rand alphabet: no vowels, no confusable digits (SafeEncodeString, String(n)).
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


class DeploymentStrategyType(StrEnum):
    """``spec.strategy.type`` of a Deployment."""

    ROLLING_UPDATE = "RollingUpdate"
    RECREATE = "Recreate"


@dataclass(frozen=True, slots=True)
class RollingUpdate:
    """``spec.strategy.rollingUpdate``: an int, or a percentage string such as ``"25%"``."""

    max_surge: int | str = "25%"
    max_unavailable: int | str = "25%"


@dataclass(frozen=True, slots=True)
class DeploymentStrategy:
    """``spec.strategy``; ``rolling_update`` is None for Recreate."""

    type: DeploymentStrategyType = DeploymentStrategyType.ROLLING_UPDATE
    rolling_update: RollingUpdate | None = field(default_factory=RollingUpdate)


@dataclass(frozen=True, slots=True)
class Probe:
    """A readiness probe's timing (``SetDefaults_Probe``); the handler kind is kept as a name."""

    initial_delay_s: int = 0
    period_s: int = 10
    timeout_s: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3
    handler: str = "tcpSocket"
    """``exec``, ``httpGet``, ``tcpSocket`` or ``grpc``: every kind succeeds iff the app accepts."""


@dataclass(frozen=True, slots=True)
class PreStopHook:
    """``lifecycle.preStop`` reduced to how long it takes.

    ``handler`` is ``sleep``, ``exec``, ``httpGet`` or ``tcpSocket``; ``duration_s`` is the
    sleep it performs (0 when the parser could not tell, with a warning).
    """

    handler: str
    duration_s: float = 0.0
    command: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Container:
    """One container of a Pod template: its ports, readiness probe and preStop hook."""

    name: str
    ports: tuple[ContainerPort, ...] = ()
    readiness_probe: Probe | None = None
    pre_stop: PreStopHook | None = None
    sidecar: bool = False
    """True for an init container with ``restartPolicy: Always`` (its ports count too)."""


@dataclass(frozen=True, slots=True)
class PodTemplate:
    """``spec.template`` of a Deployment (what every Pod of one ReplicaSet is made from).

    The app's lifecycle is driven by the first regular container (``containers[0]``): its
    readiness probe and preStop hook. ``container_ports`` lists every container's ports.
    """

    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    containers: tuple[Container, ...] = ()
    termination_grace_period_s: int = DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS
    dns: PodDns | None = None
    """``dnsPolicy``/``dnsConfig`` of the template; None: neither is set."""

    @property
    def app_container(self) -> Container | None:
        """The first regular (non-sidecar) container, or None."""
        return next((c for c in self.containers if not c.sidecar), None)

    @property
    def readiness_probe(self) -> Probe | None:
        """The app container's readiness probe (None: Ready as soon as it runs)."""
        app = self.app_container
        return app.readiness_probe if app is not None else None

    @property
    def pre_stop_s(self) -> float:
        """How long the app container's preStop hook runs (0 without one)."""
        app = self.app_container
        return app.pre_stop.duration_s if app is not None and app.pre_stop is not None else 0.0

    @property
    def container_ports(self) -> tuple[ContainerPort, ...]:
        """Every container's ports, regular containers first (named targetPorts use them)."""
        regular = [p for c in self.containers if not c.sidecar for p in c.ports]
        sidecars = [p for c in self.containers if c.sidecar for p in c.ports]
        return tuple(regular + sidecars)

    @property
    def template_hash(self) -> str:
        """A stable short hash shaped like kube's ``pod-template-hash`` (:func:`template_hash`)."""
        return template_hash(self)


@dataclass(frozen=True, slots=True)
class Deployment:
    """A Deployment (``apps/v1``): replicas, selector, strategy and Pod template."""

    meta: ObjectMeta
    selector: tuple[tuple[str, str], ...]
    """``spec.selector.matchLabels`` (matchExpressions are refused by the parser)."""
    template: PodTemplate
    replicas: int = 1
    strategy: DeploymentStrategy = field(default_factory=DeploymentStrategy)
    min_ready_s: int = 0
    """``spec.minReadySeconds``; the simulation takes a Pod as available once Ready."""

    @property
    def template_hash(self) -> str:
        """The ``pod-template-hash`` of the current template."""
        return self.template.template_hash


@functools.lru_cache(maxsize=256)
def template_hash(template: PodTemplate) -> str:
    """A deterministic ``pod-template-hash`` for ``template``.

    Shaped as pkg/controller/controller_utils.go ``ComputeHash`` shapes it: a 32-bit FNV-1a
    hash, printed in decimal, each digit mapped onto :data:`SAFE_ALPHABET`
    (``rand.SafeEncodeString``), so it is 1..10 characters of that alphabet. The hashed
    bytes are a canonical text of the template's fields, not Go's spew dump, so the value
    differs from the one a real cluster would compute for the same template. Memoised (every
    Deployment sync asks; templates are frozen values hashed by value, so the module-level
    memo is a bounded pure function holding no run's state).
    """
    text = repr(_canonical(template)).encode()
    h = 0x811C9DC5
    for byte in text:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(SAFE_ALPHABET[ord(d) % len(SAFE_ALPHABET)] for d in str(h))


def _canonical(value: object) -> object:
    """Plain nested tuples of a dataclass value (field names kept; enums as their value)."""
    if isinstance(value, StrEnum):
        return str(value.value)
    slots = getattr(type(value), "__dataclass_fields__", None)
    if slots is not None:
        # An unset ``dns`` is left out, so templates keep the hash they had before it existed.
        return tuple(
            (name, _canonical(getattr(value, name)))
            for name in slots
            if not (name == "dns" and getattr(value, name) is None)
        )
    if isinstance(value, tuple):
        return tuple(_canonical(v) for v in value)
    return value
