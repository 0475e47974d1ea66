"""Services and EndpointSlices the IPVS and userspace compiler tests share."""

from __future__ import annotations

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
from tests.proxy.test_iptables_support import TEST_NODE_NAME, ep, make_service, make_slice, port

NODE_IP = "192.168.0.2"


def cluster_service(**spec: Any) -> tuple[list[Service], list[EndpointSlice]]:
    """ns1/svc1 at 172.30.0.41:80 with two ready endpoints (one local) and one terminating."""
    spec.setdefault("ports", (ServicePort(80, name="p80", target_port=8080),))
    service = make_service("ns1", "svc1", cluster_ip="172.30.0.41", **spec)
    proto, name = spec["ports"][0].protocol, spec["ports"][0].name
    endpoints = (
        ep("10.180.0.1", TEST_NODE_NAME),
        ep("10.180.1.1", "node-2"),
        ep("10.180.2.1", "node-2", ready=False, serving=False, terminating=True),
    )
    return [service], [make_slice("ns1", "svc1", endpoints, (port(8080, name, proto),))]


def everything_service(
    external_policy: TrafficPolicy = TrafficPolicy.CLUSTER, **spec: Any
) -> tuple[list[Service], list[EndpointSlice]]:
    """A LoadBalancer with a NodePort, an external IP, an ingress IP and a health check."""
    return cluster_service(
        type=ServiceType.LOAD_BALANCER,
        external_traffic_policy=external_policy,
        external_ips=("192.168.99.11",),
        ports=(ServicePort(80, name="p80", node_port=30080, target_port=8080),),
        health_check_node_port=32000 if external_policy is TrafficPolicy.LOCAL else 0,
        load_balancer_ingress=(LoadBalancerIngress(ip="1.2.3.4"),),
        **spec,
    )


AFFINITY: dict[str, Any] = {
    "session_affinity": SessionAffinity.CLIENT_IP,
    "session_affinity_timeout_s": 300,
}
UDP_PORT = (ServicePort(53, Protocol.UDP, name="dns", target_port=8080),)
