"""Where a workload's packets go: the address a client dials, and how failures are attributed.

A Pod or host client dials the Service's ClusterIP; an external client dials what reaches the
cluster from outside through its node (load-balancer IP, NodePort, external IP). A Service
that is deleted keeps being dialled at its last-known address (clients cache DNS answers), so
its traffic meets whatever rules the nodes still hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from svcsim.k8s.objects import Service, ServicePort
from svcsim.netfilter.packet import Origin
from svcsim.proxy.names import ServicePortName
from svcsim.traffic.spec import (
    AddressTarget,
    ExternalSource,
    HostSource,
    LoadBalancerSource,
    NameTarget,
    Protocol,
    ServiceTarget,
    Source,
)


@dataclass(frozen=True, slots=True)
class Dial:
    """What a client sends to: address, port, protocol, and the records' ``service`` label.

    ``service`` (``namespace/name``) and ``service_port`` (ServicePortName text) identify the
    Service for failure attribution; both None for a literal address of no Service.
    """

    ip: str
    port: int
    protocol: Protocol
    label: str
    service: str | None
    service_port: str | None


def origin_of(source: Source) -> Origin:
    """Where the source's packets enter the node."""
    if isinstance(source, ExternalSource | LoadBalancerSource):
        return "external"
    return "host" if isinstance(source, HostSource) else "pod"


def _pick_port(service: Service, wanted: str | int | None) -> ServicePort | None:
    for sp in service.ports:
        if wanted is None or sp.name == wanted or sp.port == wanted:
            return sp
    return None


def _external_address(
    service: Service, sp: ServicePort, source: ExternalSource, node_ip: str
) -> tuple[str, int] | None:
    lb = [i.ip for i in service.load_balancer_ingress if i.ip and i.ip_mode != "Proxy"]
    options: dict[str, tuple[str, int] | None] = {
        "loadbalancer": (lb[0], sp.port) if lb else None,
        "nodeport": (node_ip, sp.node_port) if sp.node_port else None,
        "externalip": (service.external_ips[0], sp.port) if service.external_ips else None,
        "clusterip": (service.cluster_ip, sp.port) if _has_vip(service) else None,
    }
    if source.via != "auto":
        return options[source.via]
    for choice in ("loadbalancer", "nodeport", "externalip", "clusterip"):
        if options[choice] is not None:
            return options[choice]
    return None


def _has_vip(service: Service) -> bool:
    return service.cluster_ip not in ("", "None")


def service_port_at(
    ip: str, port: int, protocol: Protocol, services: Iterable[Service], node_ips: Iterable[str]
) -> str | None:
    """The ServicePortName text of the Service port kube-proxy writes rules for at this address.

    kube-proxy sends ``ip:port/protocol`` to a Service port when ``ip`` is its ClusterIP, one
    of its external IPs or load-balancer IPs (not ``ipMode: Proxy``) and ``port`` its port, or
    when ``ip`` is a node's IP (``node_ips``) and ``port`` its NodePort. None if no Service
    port matches; the first match in ``services`` order otherwise.
    """
    nodes = set(node_ips)
    for service in services:
        if not _has_vip(service):
            continue  # headless and ExternalName Services get no rules
        vips = {service.cluster_ip, *service.cluster_ips, *service.external_ips}
        vips.update(i.ip for i in service.load_balancer_ingress if i.ip and i.ip_mode != "Proxy")
        for sp in service.ports:
            if str(sp.protocol).lower() != protocol:
                continue
            if (ip in vips and port == sp.port) or (
                ip in nodes and sp.node_port and port == sp.node_port
            ):
                return ServicePortName(
                    service.meta.namespace, service.meta.name, sp.name, sp.protocol
                ).text
    return None


def dial_for(
    target: ServiceTarget | AddressTarget | NameTarget,
    source: Source,
    protocol: Protocol,
    service: Service | None,
    node_ip: str,
) -> Dial | None:
    """The dial for ``target`` now, or None if the client cannot name an address.

    ``service`` is the API's Service for a :class:`ServiceTarget` (None if absent);
    ``node_ip`` is the source node's first IP (for NodePorts). A Service port whose protocol
    is not the workload's is not a match. A :class:`NameTarget` has no address before its
    lookup: its dial only labels the records (address ``""``; the resolver dials per attempt).
    """
    if isinstance(target, NameTarget):
        return Dial("", target.port, protocol, target.label, target.service, target.service_port)
    if isinstance(target, AddressTarget):
        spn = target.service_port
        svc_key = spn.partition(":")[0] if spn else None
        label = spn or f"{target.ip}:{target.port}/{target.protocol}"
        return Dial(target.ip, target.port, target.protocol, label, svc_key, spn)
    if service is None:
        return None
    sp = _pick_port(service, target.port)
    if sp is None or str(sp.protocol).lower() != protocol:
        return None
    spn = ServicePortName(service.meta.namespace, service.meta.name, sp.name, sp.protocol).text
    if isinstance(source, ExternalSource):
        address = _external_address(service, sp, source, node_ip)
    elif isinstance(source, LoadBalancerSource):
        lb = [i.ip for i in service.load_balancer_ingress if i.ip and i.ip_mode != "Proxy"]
        address = (lb[0], sp.port) if lb else None
    else:
        address = (service.cluster_ip, sp.port) if _has_vip(service) else None
    if address is None:
        return None
    return Dial(address[0], address[1], protocol, spn, service.meta.key, spn)
