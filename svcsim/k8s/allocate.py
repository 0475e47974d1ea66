"""Cluster IPs and NodePorts for Services that leave them unset, as the API server fills them in.

The API server's allocators (pkg/registry/core/service/ipallocator/bitmap.go and
portallocator/allocator.go) keep one bitmap per range and split it in two bands (KEP-3070 for
cluster IPs, KEP-3668 for NodePorts): a lower *static* band of ``min(max(16, size/step), max)``
values meant for values users write, and an upper *dynamic* band that allocation draws from first
(falling back to the static band when the upper one is full). The network address and, for IPv4,
the broadcast address are never allocated; the first address of the range belongs to the
``kubernetes`` Service (``default/kubernetes``).

The API server draws at random within the dynamic band. Here the draw is replaced by a hash of the
object's name with linear probing past values in use, so the same objects always get the same
values, whatever the run's seed. Values a manifest gives win; a given value already in use is an
error, worded as the API server words it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Final

from svcsim.k8s.objects import Service, ServiceType, TrafficPolicy

DEFAULT_SERVICE_CIDR: Final = "10.96.0.0/12"
"""kubeadm's default ``--service-cidr`` (kube-apiserver ``--service-cluster-ip-range``)."""

KUBERNETES_SERVICE: Final = "default/kubernetes"
"""The API server's own Service; it holds the first address of the Service CIDR."""


@dataclass(frozen=True, slots=True)
class PortRange:
    """An inclusive range of ports, as ``--service-node-port-range`` gives it."""

    first: int
    last: int

    @property
    def size(self) -> int:
        """How many ports the range holds."""
        return self.last - self.first + 1

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


NODE_PORT_RANGE: Final = PortRange(30000, 32767)
"""kube-apiserver's default ``--service-node-port-range``."""


@dataclass(frozen=True, slots=True)
class _Band:
    """``min(max(minimum, size/step), maximum)`` values at the bottom are the static band."""

    minimum: int
    maximum: int
    step: int

    def static_size(self, size: int) -> int:
        """Size of the static band of a range of ``size`` values (0 for a tiny range)."""
        if size <= self.minimum:
            return 0
        return min(max(self.minimum, size // self.step), self.maximum)


_IP_BANDS: Final = _Band(minimum=16, maximum=256, step=16)
"""ipallocator ``calculateRangeOffset`` (its ``size`` is the CIDR's full size)."""
_PORT_BANDS: Final = _Band(minimum=16, maximum=128, step=32)
"""portallocator ``calculateRangeOffset``."""


@dataclass(frozen=True, slots=True)
class Allocation:
    """One value filled in for one Service: where it came from, which field, what value."""

    source: str
    """``file:line`` of the Service's document."""
    service: str
    """``namespace/name``."""
    field: str
    """JSON path of the field (``spec.clusterIP``, ``spec.ports[0].nodePort``)."""
    value: str
    how: str = "the API server picks at random, svcsim by a hash of the name"
    """Who fills the field in and how svcsim does it instead (shown in parentheses)."""

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return (
            f"{where}Service/{self.service}: {self.field}: not set: allocated {self.value} "
            f"({self.how})"
        )


@dataclass(frozen=True, slots=True)
class Admitted:
    """A Service with its unset cluster IP and NodePorts filled in, or the reasons it cannot be.

    ``problems`` are lines ``file:line: Service/ns/name: field: message``; when there are any,
    ``service`` is the Service as given (nothing of it was reserved).
    """

    service: Service
    allocations: tuple[Allocation, ...] = ()
    problems: tuple[str, ...] = ()


class _Pool:
    """Values ``0 .. size-1`` of one range, split in a static and a dynamic band.

    ``owners`` also holds values outside the range (a given cluster IP outside the CIDR), so
    two Services can never share one.
    """

    def __init__(self, size: int, static_size: int) -> None:
        self.size = size
        self.static_size = static_size
        self.owners: dict[int, str] = {}

    def next_free(self, digest: int) -> int | None:
        """The first free value from ``digest``'s place in the dynamic band, then the static."""
        for low, high in ((self.static_size, self.size), (0, self.static_size)):
            span = high - low
            if span <= 0:
                continue
            start = digest % span
            for step in range(span):
                value = low + (start + step) % span
                if value not in self.owners:
                    return value
        return None


def _digest(text: str) -> int:
    """A stable hash (Python's ``hash`` of a str changes from process to process)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def needs_node_ports(svc: Service) -> bool:
    """True when the API server gives the Service's ports NodePorts.

    NodePort Services always; LoadBalancer Services unless ``allocateLoadBalancerNodePorts``
    is false.
    """
    if svc.type is ServiceType.NODE_PORT:
        return True
    return svc.type is ServiceType.LOAD_BALANCER and svc.allocate_load_balancer_node_ports


def needs_health_check_port(svc: Service) -> bool:
    """True for a LoadBalancer Service with ``externalTrafficPolicy: Local``."""
    return (
        svc.type is ServiceType.LOAD_BALANCER and svc.external_traffic_policy is TrafficPolicy.LOCAL
    )


class _Admission:
    """The values one Service reserves, kept until its admission succeeds or is undone."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.key = svc.meta.key
        self.label = f"{svc.meta.source}: " if svc.meta.source else ""
        self.reserved: list[tuple[_Pool, int]] = []
        self.allocations: list[Allocation] = []
        self.problems: list[str] = []

    def claim(self, field: str, pool: _Pool, value: int, given: str) -> None:
        """Reserve a value the manifest gives; another owner's value is a problem."""
        owner = pool.owners.get(value)
        if owner == self.key:
            return  # this Service's own (one nodePort for TCP and UDP of one port)
        if owner is not None:
            what = "IP" if field == "spec.clusterIP" else "port"
            self.problems.append(
                f"{self.label}Service/{self.key}: {field}: {given}: provided {what} is "
                f"already allocated (to Service {owner})"
            )
            return
        pool.owners[value] = self.key
        self.reserved.append((pool, value))

    def fill(self, field: str, pool: _Pool, hint: str, what: str) -> int | None:
        """Reserve a free value for an unset field; None (and a problem) when none is left."""
        value = pool.next_free(_digest(hint))
        if value is None:
            self.problems.append(
                f"{self.label}Service/{self.key}: {field}: cannot allocate: {what} is full"
            )
            return None
        pool.owners[value] = self.key
        self.reserved.append((pool, value))
        return value

    def filled(self, field: str, value: str) -> None:
        """Note a filled-in value for the user."""
        self.allocations.append(Allocation(self.svc.meta.source, self.key, field, value))

    def undo(self) -> None:
        """Give back everything reserved."""
        for pool, value in self.reserved:
            del pool.owners[value]
        self.reserved.clear()


class ServiceAllocator:
    """The cluster-IP and NodePort ranges of one cluster, and which Service holds what.

    Owned by whoever replays the cluster's Services (one scenario, one ``svcsim rules`` call).
    """

    def __init__(self, service_cidr: str, node_ports: PortRange = NODE_PORT_RANGE) -> None:
        self.network = ipaddress.IPv4Network(service_cidr)
        self.node_ports = node_ports
        # Usable addresses: all but the network and the broadcast address.
        size = max(0, self.network.num_addresses - 2)
        self._ips = _Pool(size, _IP_BANDS.static_size(self.network.num_addresses))
        self._ports = _Pool(node_ports.size, _PORT_BANDS.static_size(node_ports.size))
        if size:
            self._ips.owners[0] = KUBERNETES_SERVICE

    # --- IP <-> pool value -------------------------------------------------------------------

    def _ip_value(self, ip: str) -> int:
        """The pool value of ``ip``: its offset in the range, or a value past the range."""
        offset = int(ipaddress.IPv4Address(ip)) - int(self.network.network_address) - 1
        if 0 <= offset < self._ips.size:
            return offset
        return self._ips.size + int(ipaddress.IPv4Address(ip))  # outside: never drawn

    def _ip_text(self, value: int) -> str:
        return str(self.network.network_address + 1 + value)

    def _port_value(self, port: int) -> int:
        return port - self.node_ports.first

    # --- public -----------------------------------------------------------------------------

    def admit(self, svc: Service, previous: Service | None = None) -> Admitted:
        """Reserve ``svc``'s given values and fill in the unset ones.

        ``previous`` is the stored object an update replaces (already released): as the API
        server keeps an object's cluster IP and NodePorts across updates, its values are
        reused where ``svc`` leaves them unset. One NodePort may serve several ports of one
        Service (the TCP and the UDP port of a number); the loader checks other repeats.
        """
        admission = _Admission(svc)
        cluster_ip, cluster_ips = svc.cluster_ip, svc.cluster_ips
        wants_ip = svc.type is not ServiceType.EXTERNAL_NAME and not svc.is_headless
        if wants_ip and not cluster_ip and previous is not None and previous.cluster_ip:
            cluster_ip, cluster_ips = previous.cluster_ip, previous.cluster_ips
        if wants_ip and cluster_ip:
            if ipaddress.ip_address(cluster_ip).version == 4:
                admission.claim("spec.clusterIP", self._ips, self._ip_value(cluster_ip), cluster_ip)
        elif wants_ip:
            value = admission.fill(
                "spec.clusterIP", self._ips, svc.meta.key, f"serviceCIDR {self.network}"
            )
            if value is not None:
                cluster_ip = self._ip_text(value)
                cluster_ips = (cluster_ip,)
                admission.filled("spec.clusterIP", cluster_ip)

        ports = list(svc.ports)
        # The API server clears NodePorts when the type no longer has them.
        kept = previous.ports if previous is not None and needs_node_ports(svc) else ()
        old_ports = {(p.port, p.protocol): p.node_port for p in kept}
        for i, port in enumerate(ports):
            field = f"spec.ports[{i}].nodePort"
            node_port = port.node_port or old_ports.get((port.port, port.protocol), 0)
            if node_port:
                admission.claim(field, self._ports, self._port_value(node_port), str(node_port))
            elif needs_node_ports(svc):
                hint = f"{svc.meta.key}:{port.name or port.port}/{port.protocol.value}"
                value = admission.fill(
                    field, self._ports, hint, f"NodePort range {self.node_ports}"
                )
                if value is None:
                    continue
                node_port = value + self.node_ports.first
                admission.filled(field, str(node_port))
            if node_port != port.node_port:
                ports[i] = dataclasses.replace(port, node_port=node_port)

        field = "spec.healthCheckNodePort"
        hc_port = svc.health_check_node_port
        if not hc_port and previous is not None and needs_health_check_port(svc):
            hc_port = previous.health_check_node_port
        if hc_port:
            admission.claim(field, self._ports, self._port_value(hc_port), str(hc_port))
        elif needs_health_check_port(svc):
            hint = f"{svc.meta.key}:healthCheckNodePort"
            value = admission.fill(field, self._ports, hint, f"NodePort range {self.node_ports}")
            if value is not None:
                hc_port = value + self.node_ports.first
                admission.filled(field, str(hc_port))

        if admission.problems:
            admission.undo()
            return Admitted(svc, (), tuple(admission.problems))
        unchanged = (
            cluster_ip == svc.cluster_ip
            and cluster_ips == svc.cluster_ips
            and hc_port == svc.health_check_node_port
            and all(new is old for new, old in zip(ports, svc.ports, strict=True))
        )
        if unchanged:
            # Every value was given (a manifest from a live cluster): the object as it is.
            return Admitted(svc, tuple(admission.allocations))
        admitted = dataclasses.replace(
            svc,
            cluster_ip=cluster_ip,
            cluster_ips=cluster_ips,
            ports=tuple(ports),
            health_check_node_port=hc_port,
        )
        return Admitted(admitted, tuple(admission.allocations))

    def release(self, svc: Service) -> None:
        """Free what ``svc`` holds (the Service was deleted or is being replaced)."""
        key = svc.meta.key
        for pool in (self._ips, self._ports):
            for value in [v for v, owner in pool.owners.items() if owner == key]:
                if not (pool is self._ips and value == 0 and key == KUBERNETES_SERVICE):
                    del pool.owners[value]
