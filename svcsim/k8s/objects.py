"""Frozen Kubernetes objects: what the Service data plane depends on.

Service, EndpointSlice, Endpoints, Pod and Node, reduced to the fields that matter. Field names
follow the Kubernetes API (snake_cased); values keep Kubernetes' meaning, including "nil"
(``None``) where the API distinguishes unset from false. Objects are plain values: no behaviour
beyond derived properties, no SimPy, no numpy.
"""

from __future__ import annotations

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
        return dict(self.labels).get(key)

    def annotation(self, key: str) -> str | None:
        """The value of annotation ``key``, or None."""
        return dict(self.annotations).get(key)


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
    health_check_node_port: int = 0
    publish_not_ready_addresses: bool = False

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


@dataclass(frozen=True, slots=True)
class Node:
    """A Node (``v1``)."""

    meta: ObjectMeta
    internal_ips: tuple[str, ...] = ()
    external_ips: tuple[str, ...] = ()
    pod_cidrs: tuple[str, ...] = ()

    @property
    def zone(self) -> str | None:
        """The ``topology.kubernetes.io/zone`` label, if any."""
        return self.meta.label("topology.kubernetes.io/zone")
