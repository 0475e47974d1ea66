"""Cluster IPs and NodePorts filled in as the API server would, but deterministically."""

from __future__ import annotations

import ipaddress

import pytest

from svcsim.k8s.allocate import NODE_PORT_RANGE, ServiceAllocator
from svcsim.k8s.objects import (
    ObjectMeta,
    Protocol,
    Service,
    ServicePort,
    ServiceType,
    TrafficPolicy,
)

CIDR = "10.96.0.0/12"


def svc(name: str, cluster_ip: str = "", **kw: object) -> Service:
    ports = kw.pop("ports", (ServicePort(80, Protocol.TCP, "http"),))
    return Service(
        ObjectMeta(name, source=f"m.yaml:{len(name)}"),
        cluster_ip=cluster_ip,
        cluster_ips=(cluster_ip,) if cluster_ip else (),
        ports=ports,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def test_unset_cluster_ip_comes_from_the_dynamic_band_and_is_reported() -> None:
    admitted = ServiceAllocator(CIDR).admit(svc("web"))
    ip = ipaddress.IPv4Address(admitted.service.cluster_ip)
    # KEP-3070: a /12 keeps min(max(16, 2^20/16), 256) = 256 addresses after .0 for static IPs.
    assert ip in ipaddress.IPv4Network(CIDR)
    assert int(ip) >= int(ipaddress.IPv4Address("10.96.1.1"))
    assert admitted.service.cluster_ips == (str(ip),)
    assert [str(a) for a in admitted.allocations] == [
        f"m.yaml:3: Service/default/web: spec.clusterIP: not set: allocated {ip} "
        "(the API server picks at random, svcsim by a hash of the name)"
    ]
    assert admitted.problems == ()


def test_same_services_same_values_whatever_the_order_of_unrelated_ones() -> None:
    first = ServiceAllocator(CIDR).admit(svc("web")).service.cluster_ip
    other = ServiceAllocator(CIDR)
    other.admit(svc("db"))
    assert other.admit(svc("web")).service.cluster_ip == first


def test_collisions_are_probed_past() -> None:
    # A /28: 14 usable addresses, no static band (size 16 <= 16), first one is kubernetes'.
    alloc = ServiceAllocator("10.96.0.0/28")
    ips = [alloc.admit(svc(f"s{i}")).service.cluster_ip for i in range(13)]
    assert len(set(ips)) == 13
    assert "10.96.0.1" not in ips  # the kubernetes Service's
    full = alloc.admit(svc("one-more"))
    assert full.problems == (
        "m.yaml:8: Service/default/one-more: spec.clusterIP: cannot allocate: "
        "serviceCIDR 10.96.0.0/28 is full",
    )


def test_the_static_band_is_used_when_the_dynamic_one_is_full() -> None:
    # A /26: 64 addresses, static band 16 (offsets 0-15 = .1-.16), dynamic .17-.62.
    alloc = ServiceAllocator("10.96.0.0/26")
    ips = [
        int(ipaddress.IPv4Address(alloc.admit(svc(f"s{i}")).service.cluster_ip)) for i in range(46)
    ]
    assert min(ips) == int(ipaddress.IPv4Address("10.96.0.17"))
    spill = alloc.admit(svc("spill")).service.cluster_ip
    assert ipaddress.IPv4Address(spill) <= ipaddress.IPv4Address("10.96.0.16")


GIVEN = [
    pytest.param(
        [svc("a", "10.96.0.10"), svc("b", "10.96.0.10")],
        "m.yaml:1: Service/default/b: spec.clusterIP: 10.96.0.10: provided IP is already "
        "allocated (to Service default/a)",
        id="two-given-ips",
    ),
    pytest.param(
        [svc("web", "10.96.0.1")],
        "m.yaml:3: Service/default/web: spec.clusterIP: 10.96.0.1: provided IP is already "
        "allocated (to Service default/kubernetes)",
        id="the-kubernetes-service-ip",
    ),
    pytest.param(
        [
            svc(
                "a",
                "10.96.0.10",
                type=ServiceType.NODE_PORT,
                ports=(ServicePort(80, Protocol.TCP, "", 80, 30080),),
            ),
            svc(
                "b",
                "10.96.0.11",
                type=ServiceType.NODE_PORT,
                ports=(ServicePort(81, Protocol.UDP, "", 81, 30080),),
            ),
        ],
        "m.yaml:1: Service/default/b: spec.ports[0].nodePort: 30080: provided port is already "
        "allocated (to Service default/a)",
        id="two-given-node-ports",
    ),
]


@pytest.mark.parametrize(("services", "problem"), GIVEN)
def test_given_values_already_in_use_are_refused(services: list[Service], problem: str) -> None:
    alloc = ServiceAllocator(CIDR)
    results = [alloc.admit(s) for s in services]
    assert results[-1].problems == (problem,)
    assert results[-1].service == services[-1]  # nothing filled in, nothing reserved


def test_the_kubernetes_service_keeps_its_own_address() -> None:
    kubernetes = Service(
        ObjectMeta("kubernetes"), cluster_ip="10.96.0.1", ports=(ServicePort(443),)
    )
    assert ServiceAllocator(CIDR).admit(kubernetes).problems == ()


def test_release_frees_the_values_for_others() -> None:
    alloc = ServiceAllocator(CIDR)
    a = alloc.admit(svc("a", "10.96.0.10")).service
    alloc.release(a)
    assert alloc.admit(svc("b", "10.96.0.10")).problems == ()


def test_an_update_keeps_the_stored_values() -> None:
    alloc = ServiceAllocator(CIDR)
    stored = alloc.admit(svc("web", type=ServiceType.NODE_PORT)).service
    alloc.release(stored)
    again = alloc.admit(svc("web", type=ServiceType.NODE_PORT), stored)
    assert again.service.cluster_ip == stored.cluster_ip
    assert again.service.ports[0].node_port == stored.ports[0].node_port
    assert again.allocations == ()


PORTS = [
    pytest.param(dict(type=ServiceType.NODE_PORT), 1, 0, id="nodeport"),
    pytest.param(dict(type=ServiceType.LOAD_BALANCER), 1, 0, id="loadbalancer"),
    pytest.param(
        dict(type=ServiceType.LOAD_BALANCER, allocate_load_balancer_node_ports=False),
        0,
        0,
        id="loadbalancer-without-node-ports",
    ),
    pytest.param(
        dict(type=ServiceType.LOAD_BALANCER, external_traffic_policy=TrafficPolicy.LOCAL),
        1,
        1,
        id="loadbalancer-local-gets-a-health-check-port",
    ),
    pytest.param(dict(type=ServiceType.CLUSTER_IP), 0, 0, id="clusterip"),
]


@pytest.mark.parametrize(("kw", "node_ports", "hc_ports"), PORTS)
def test_node_ports_as_the_type_asks(kw: dict[str, object], node_ports: int, hc_ports: int) -> None:
    admitted = ServiceAllocator(CIDR).admit(svc("web", **kw))
    port = admitted.service.ports[0].node_port
    assert (port != 0) == bool(node_ports)
    assert (admitted.service.health_check_node_port != 0) == bool(hc_ports)
    if port:
        # KEP-3668: the 2768 ports keep min(max(16, 2768/32), 128) = 86 for static use.
        assert NODE_PORT_RANGE.first + 86 <= port <= NODE_PORT_RANGE.last
    fields = [a.field for a in admitted.allocations]
    assert fields.count("spec.ports[0].nodePort") == node_ports
    assert fields.count("spec.healthCheckNodePort") == hc_ports


@pytest.mark.parametrize(
    "kw",
    [
        pytest.param(dict(cluster_ip="None"), id="headless"),
        pytest.param(
            dict(type=ServiceType.EXTERNAL_NAME, external_name="db.example.com"), id="externalname"
        ),
    ],
)
def test_headless_and_external_name_get_no_cluster_ip(kw: dict[str, object]) -> None:
    cluster_ip = kw.pop("cluster_ip", "")
    admitted = ServiceAllocator(CIDR).admit(svc("web", str(cluster_ip), **kw))
    assert admitted.service.cluster_ip == cluster_ip
    assert admitted.allocations == ()


def test_one_node_port_may_serve_tcp_and_udp_of_one_service() -> None:
    ports = (
        ServicePort(53, Protocol.UDP, "dns", 53, 30053),
        ServicePort(53, Protocol.TCP, "dns-tcp", 53, 30053),
    )
    admitted = ServiceAllocator(CIDR).admit(svc("dns", type=ServiceType.NODE_PORT, ports=ports))
    assert admitted.problems == ()


def test_an_update_to_cluster_ip_type_drops_the_node_ports() -> None:
    alloc = ServiceAllocator(CIDR)
    stored = alloc.admit(svc("web", type=ServiceType.NODE_PORT)).service
    alloc.release(stored)
    again = alloc.admit(svc("web"), stored)
    assert again.service.cluster_ip == stored.cluster_ip
    assert again.service.ports[0].node_port == 0


@pytest.mark.parametrize(
    ("given", "same"),
    [
        (svc("web", "10.96.0.10"), True),  # every value given: the object as it was
        (svc("web"), False),  # a cluster IP filled in
        (svc("web", "10.96.0.10", type=ServiceType.NODE_PORT), False),  # a NodePort filled in
        (
            svc(
                "web",
                "10.96.0.10",
                type=ServiceType.NODE_PORT,
                ports=(ServicePort(80, Protocol.TCP, "http", node_port=30080),),
            ),
            True,
        ),
    ],
)
def test_admitted_service_is_the_given_object_when_nothing_is_filled_in(
    given: Service, same: bool
) -> None:
    admitted = ServiceAllocator(CIDR).admit(given)
    assert (admitted.service is given) is same
    assert bool(admitted.allocations) is not same
