"""Inputs for the nftables compiler's tests: a few manifests covering each kind of rule.

Each :class:`NftCase` is one node's view (Services, EndpointSlices, context, Service CIDRs).
Used by the real-kernel round trip (tests/proxy/test_nftables_real_kernel.py) and the
targeted rule checks (tests/proxy/test_nftables_cases.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from svcsim.k8s.objects import (
    EndpointSlice,
    LoadBalancerIngress,
    Protocol,
    Service,
    ServicePort,
    ServiceType,
    SessionAffinity,
    TrafficPolicy,
)
from svcsim.netfilter.nftables import NftTable
from svcsim.proxy.context import NodeContext
from svcsim.proxy.nftables import compile_nftables
from tests.proxy.nftables_support import FAKE_SERVICE_CIDRS, nft_fake_context
from tests.proxy.test_iptables_support import TEST_NODE_NAME, ep, make_service, make_slice, port
from tests.proxy.test_iptables_upstream import overall_inputs

P80 = (port(80, "p80"),)


@dataclass(frozen=True)
class NftCase:
    """One compile: name, inputs, and the node context (upstream's fake proxier by default)."""

    name: str
    services: tuple[Service, ...]
    slices: tuple[EndpointSlice, ...]
    context: NodeContext = field(default_factory=nft_fake_context)
    service_cidrs: tuple[str, ...] = FAKE_SERVICE_CIDRS

    def compile(self) -> NftTable:
        """The compiled table."""
        return compile_nftables(self.services, self.slices, self.context, self.service_cidrs)


def _svc(name: str, ip: str, **spec: Any) -> Service:
    spec.setdefault("ports", (ServicePort(80, name="p80"),))
    return make_service("ns1", name, cluster_ip=ip, **spec)


_overall_services, _overall_slices = overall_inputs()

KERNEL_CASES = (
    NftCase("overall", tuple(_overall_services), tuple(_overall_slices)),
    NftCase(
        "clusterip-all-addresses-no-cidrs",
        (_svc("web", "172.30.0.10"),),
        (make_slice("ns1", "web", (ep("10.180.0.1"), ep("10.180.0.2")), P80),),
        context=nft_fake_context(node_port_addresses=()),
        service_cidrs=(),
    ),
    NftCase(
        "nodeport-primary-two-cidrs",
        (
            _svc(
                "np",
                "172.30.0.11",
                type=ServiceType.NODE_PORT,
                ports=(ServicePort(80, name="p80", node_port=30080),),
            ),
        ),
        (make_slice("ns1", "np", (ep("10.180.0.3", TEST_NODE_NAME),), P80),),
        service_cidrs=("172.30.0.0/16", "10.96.0.0/12"),
    ),
    NftCase(
        "affinity-three-endpoints",
        (
            _svc(
                "sticky",
                "172.30.0.12",
                session_affinity=SessionAffinity.CLIENT_IP,
                session_affinity_timeout_s=90,
            ),
        ),
        (make_slice("ns1", "sticky", (ep("10.180.0.4"), ep("10.180.0.5"), ep("10.180.0.6")), P80),),
    ),
    NftCase(
        "no-endpoints-loadbalancer",
        (
            _svc(
                "empty",
                "172.30.0.13",
                type=ServiceType.LOAD_BALANCER,
                external_ips=("192.168.99.44",),
                load_balancer_ingress=(LoadBalancerIngress(ip="1.2.3.5"),),
                ports=(ServicePort(80, name="p80", node_port=30081),),
            ),
        ),
        (),
    ),
    NftCase(
        "etp-local-itp-local-with-local-endpoint",
        (
            _svc(
                "local",
                "172.30.0.14",
                type=ServiceType.LOAD_BALANCER,
                external_traffic_policy=TrafficPolicy.LOCAL,
                internal_traffic_policy=TrafficPolicy.LOCAL,
                load_balancer_ingress=(LoadBalancerIngress(ip="1.2.3.6"),),
                ports=(ServicePort(80, name="p80", node_port=30082),),
                health_check_node_port=30001,
            ),
        ),
        (
            make_slice(
                "ns1", "local", (ep("10.180.0.7", TEST_NODE_NAME), ep("10.180.0.8", "node2")), P80
            ),
        ),
    ),
    NftCase(
        "source-ranges-with-node-ip",
        (
            _svc(
                "fw",
                "172.30.0.15",
                type=ServiceType.LOAD_BALANCER,
                load_balancer_ingress=(
                    LoadBalancerIngress(ip="1.2.3.7"),
                    LoadBalancerIngress(ip="5.6.7.9"),
                ),
                load_balancer_source_ranges=("203.0.113.0/25", "192.168.0.0/24"),
                ports=(ServicePort(80, name="p80", node_port=30083),),
            ),
        ),
        (make_slice("ns1", "fw", (ep("10.180.0.9"),), P80),),
    ),
    NftCase(
        "udp-sctp-masquerade-all-many-endpoints",
        (
            _svc(
                "dns",
                "172.30.0.16",
                ports=(
                    ServicePort(53, name="dns-udp", protocol=Protocol.UDP),
                    ServicePort(53, name="dns-sctp", protocol=Protocol.SCTP),
                ),
            ),
        ),
        (
            make_slice(
                "ns1",
                "dns",
                tuple(ep(f"10.180.1.{i}") for i in range(1, 13)),
                (port(53, "dns-udp", Protocol.UDP), port(53, "dns-sctp", Protocol.SCTP)),
            ),
        ),
        context=nft_fake_context(masquerade_all=True, masquerade_bit=3),
    ),
    NftCase(
        "terminating-fallback",
        (_svc("term", "172.30.0.17"),),
        (
            make_slice(
                "ns1",
                "term",
                (ep("10.180.0.10", ready=False, serving=True, terminating=True),),
                P80,
            ),
        ),
    ),
)
