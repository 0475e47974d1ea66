"""Upstream's packet-flow cases shared by the iptables and nftables flow tests.

kube-proxy's iptables and nftables proxier_test.go build the same Services and EndpointSlices
for these tests and expect the same outputs (nftables mode has no localhost NodePorts); both
modes' tests take the objects and case tables from here and compile them with their own mode.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

import pytest

from svcsim.k8s.objects import (
    EndpointSlice,
    LoadBalancerIngress,
    Protocol,
    Service,
    ServicePort,
    ServiceType,
    TrafficPolicy,
)
from tests.proxy.test_iptables_support import (
    TEST_EXTERNAL_CLIENT,
    TEST_NODE_IP,
    TEST_NODE_NAME,
    Flow,
    ep,
    make_service,
    make_slice,
    port,
)

T, F = True, False
Row = tuple[str, bool, bool, bool, str]
"""(address, ready, serving, terminating, "local" or "remote")."""

LOCAL_TERMINATING_CASES: dict[str, tuple[list[Row], str, str]] = {
    "ready endpoints exist": (
        [
            ("10.0.1.1", T, T, F, "local"),
            ("10.0.1.2", T, T, F, "local"),
            ("10.0.1.3", F, T, T, "local"),
            ("10.0.1.4", F, F, T, "local"),
            ("10.0.1.5", T, T, F, "remote"),
        ],
        "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80",
        "10.0.1.1:80, 10.0.1.2:80",
    ),
    "only terminating endpoints exist": (
        [
            ("10.0.1.2", F, T, T, "local"),
            ("10.0.1.3", F, T, T, "local"),
            ("10.0.1.4", F, F, T, "local"),
            ("10.0.1.5", T, T, F, "remote"),
        ],
        "10.0.1.5:80",
        "10.0.1.2:80, 10.0.1.3:80",
    ),
    "terminating endpoints on remote node": (
        [("10.0.1.5", F, T, T, "remote")],
        "10.0.1.5:80",
        "DROP",
    ),
    "no usable endpoints on any node": (
        [("10.0.1.5", F, F, T, "local"), ("10.0.1.5", F, F, T, "remote")],
        "REJECT",
        "REJECT",
    ),
}
"""TestTerminatingEndpointsTrafficPolicyLocal: rows, pod-to-ClusterIP and external-to-LB outputs."""

CLUSTER_TERMINATING_CASES: dict[str, tuple[list[Row], str]] = {
    "ready endpoints exist": (
        [
            ("10.0.1.1", T, T, F, "local"),
            ("10.0.1.2", T, T, F, "local"),
            ("10.0.1.3", F, T, T, "remote"),
            ("10.0.1.4", F, F, T, "remote"),
            ("10.0.1.5", T, T, F, "remote"),
        ],
        "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80",
    ),
    "only terminating endpoints exist": (
        [
            ("10.0.1.2", F, T, T, "local"),
            ("10.0.1.3", F, T, T, "local"),
            ("10.0.1.4", F, F, T, "remote"),
            ("10.0.1.5", F, T, T, "remote"),
        ],
        "10.0.1.2:80, 10.0.1.3:80, 10.0.1.5:80",
    ),
    "terminating endpoints on remote node": ([("10.0.1.5", F, T, T, "remote")], "10.0.1.5:80"),
    "no usable endpoints on any node": (
        [("10.0.1.5", F, F, T, "local"), ("10.0.1.5", F, F, T, "remote")],
        "REJECT",
    ),
}
"""TestTerminatingEndpointsTrafficPolicyCluster: rows and the output of both flows."""


NO_DETECTOR: dict[str, tuple[str | None, bool | None]] = {
    "node to ClusterIP": (None, False),
    "node to ClusterIP with eTP:Local": (None, False),
    "node to ClusterIP with iTP:Local": (None, False),
    "external to ClusterIP": (None, False),
    "external to ClusterIP with eTP:Local": (None, False),
    "external to ClusterIP with iTP:Local": (None, False),
    "pod to NodePort with eTP:Local": ("10.180.0.2:80", None),
    "pod to LB with eTP:Local": ("10.180.0.2:80", None),
}
"""TestInternalExternalMasquerade: the flows whose result differs without a local-traffic
detector, as (output, or None if unchanged; masquerade, or None if unchanged)."""

MASQ_ALL: dict[str, tuple[str | None, bool | None]] = {
    "pod to ClusterIP": (None, True),
    "pod to ClusterIP with eTP:Local": (None, True),
    "pod to ClusterIP with iTP:Local": (None, True),
}
"""The flows whose result differs with masqueradeAll, in the same form."""


# --- the objects of upstream's flow tests (the same for both modes) ------------------------

Objects = tuple[list[Service], list[EndpointSlice]]
"""A test's Services and EndpointSlices, for either mode's compiler."""

P80 = (port(80, "p80"),)


def cluster_ip_general() -> Objects:
    """TestClusterIPGeneral: two ClusterIP Services, one with TCP/UDP/SCTP ports."""
    services = [
        make_service(
            "ns1", "svc1", cluster_ip="172.30.0.41", ports=(ServicePort(80, name="http"),)
        ),
        make_service(
            "ns2",
            "svc2",
            cluster_ip="172.30.0.42",
            ports=(
                ServicePort(80, name="http"),
                ServicePort(443, name="https", target_port=8443),
                ServicePort(53, Protocol.UDP, name="dns-udp"),
                ServicePort(53, name="dns-tcp", target_port=5353),
                ServicePort(53, Protocol.SCTP, name="dns-sctp"),
            ),
        ),
    ]
    slices = [
        make_slice("ns1", "svc1", (ep("10.180.0.1", TEST_NODE_NAME),), (port(80, "http"),)),
        make_slice(
            "ns2",
            "svc2",
            (ep("10.180.0.1", TEST_NODE_NAME), ep("10.180.2.1", "node2")),
            (
                port(80, "http"),
                port(8443, "https"),
                port(53, "dns-udp", Protocol.UDP),
                port(5353, "dns-tcp"),
                port(53, "dns-sctp", Protocol.SCTP),
            ),
        ),
    ]
    return services, slices


def lb_with_policy(policy: TrafficPolicy) -> Objects:
    """TestExternalTrafficPolicy*: a LoadBalancer with an externalIP and one local endpoint."""
    service = make_service(
        "ns1",
        "svc1",
        type=ServiceType.LOAD_BALANCER,
        external_traffic_policy=policy,
        cluster_ip="172.30.0.41",
        external_ips=("192.168.99.11",),
        ports=(ServicePort(80, name="p80", node_port=3001, target_port=80),),
        health_check_node_port=30000,
        load_balancer_ingress=(LoadBalancerIngress(ip="1.2.3.4"),),
    )
    endpoints = (ep("10.180.0.1"), ep("10.180.2.1", TEST_NODE_NAME))
    return [service], [make_slice("ns1", "svc1", endpoints, P80)]


def terminating(policy: TrafficPolicy, rows: list[Row]) -> Objects:
    """TestTerminatingEndpointsTrafficPolicy*: a LoadBalancer whose endpoints are ``rows``."""
    service = make_service(
        "ns1",
        "svc1",
        type=ServiceType.LOAD_BALANCER,
        cluster_ip="172.30.1.1",
        external_traffic_policy=policy,
        ports=(ServicePort(80, target_port=80),),
        health_check_node_port=30000,
        load_balancer_ingress=(LoadBalancerIngress(ip="1.2.3.4"),),
    )
    endpoints = tuple(
        ep(ip, TEST_NODE_NAME if where == "local" else "node-1", ready=r, serving=s, terminating=t)
        for ip, r, s, t, where in rows
    )
    return [service], [make_slice("ns1", "svc1", endpoints, (port(80),))]


def masquerade() -> Objects:
    """TestInternalExternalMasquerade: three LoadBalancers (plain, eTP Local, iTP Local)."""

    def lb(i: int, ingress: str, **spec: object) -> Service:
        return make_service(
            f"ns{i}",
            f"svc{i}",
            type=ServiceType.LOAD_BALANCER,
            cluster_ip=f"172.30.0.4{i}",
            ports=(ServicePort(80, name="p80", node_port=3000 + i),),
            health_check_node_port=30000 + i,
            load_balancer_ingress=(LoadBalancerIngress(ip=ingress),),
            **spec,
        )

    services = [
        lb(1, "1.2.3.4"),
        lb(2, "5.6.7.8", external_traffic_policy=TrafficPolicy.LOCAL),
        lb(3, "9.10.11.12", internal_traffic_policy=TrafficPolicy.LOCAL),
    ]
    slices = [
        make_slice(
            f"ns{i}",
            f"svc{i}",
            (ep(f"10.180.0.{i}", TEST_NODE_NAME), ep(f"10.180.1.{i}", "remote")),
            P80,
        )
        for i in (1, 2, 3)
    ]
    return services, slices


NO_LOCAL_DETECTOR: Final = {"local_detector": None, "local_detector_value": ""}
"""Context fields of a kube-proxy without a local-traffic detector."""


def masquerade_flows(*, localhost: bool) -> list[Flow]:
    """Upstream's flowTests of TestInternalExternalMasquerade (``localhost``: with its
    localhost-to-NodePort flows, which nftables mode has no rules for)."""
    a1, a2, a3 = (f"10.180.0.{i}:80, 10.180.1.{i}:80" for i in (1, 2, 3))
    n, x, lo = TEST_NODE_IP, TEST_EXTERNAL_CLIENT, "127.0.0.1"
    flows = [
        Flow("pod to ClusterIP", "10.0.0.2", "172.30.0.41", 80, a1),
        Flow("pod to NodePort", "10.0.0.2", n, 3001, a1, True),
        Flow("pod to LB", "10.0.0.2", "1.2.3.4", 80, a1, True),
        Flow("node to ClusterIP", n, "172.30.0.41", 80, a1, True),
        Flow("node to NodePort", n, n, 3001, a1, True),
        Flow("localhost to NodePort", lo, lo, 3001, a1, True),
        Flow("node to LB", n, "1.2.3.4", 80, a1, True),
        Flow("external to ClusterIP", x, "172.30.0.41", 80, a1, True),
        Flow("external to NodePort", x, n, 3001, a1, True),
        Flow("external to LB", x, "1.2.3.4", 80, a1, True),
        Flow("pod to ClusterIP with eTP:Local", "10.0.0.2", "172.30.0.42", 80, a2),
        Flow("pod to NodePort with eTP:Local", "10.0.0.2", n, 3002, a2),
        Flow("pod to LB with eTP:Local", "10.0.0.2", "5.6.7.8", 80, a2),
        Flow("node to ClusterIP with eTP:Local", n, "172.30.0.42", 80, a2, True),
        Flow("node to NodePort with eTP:Local", n, n, 3001, a1, True),
        Flow("localhost to NodePort with eTP:Local", lo, lo, 3002, a2, True),
        Flow("node to LB with eTP:Local", n, "5.6.7.8", 80, a2, True),
        Flow("external to ClusterIP with eTP:Local", x, "172.30.0.42", 80, a2, True),
        Flow("external to NodePort with eTP:Local", x, n, 3002, "10.180.0.2:80"),
        Flow("external to LB with eTP:Local", x, "5.6.7.8", 80, "10.180.0.2:80"),
        Flow("pod to ClusterIP with iTP:Local", "10.0.0.2", "172.30.0.43", 80, "10.180.0.3:80"),
        Flow("pod to NodePort with iTP:Local", "10.0.0.2", n, 3003, a3, True),
        Flow("pod to LB with iTP:Local", "10.0.0.2", "9.10.11.12", 80, a3, True),
        Flow("node to ClusterIP with iTP:Local", n, "172.30.0.43", 80, "10.180.0.3:80", True),
        Flow("node to NodePort with iTP:Local", n, n, 3003, a3, True),
        Flow("localhost to NodePort with iTP:Local", lo, lo, 3003, a3, True),
        Flow("node to LB with iTP:Local", n, "9.10.11.12", 80, a3, True),
        Flow("external to ClusterIP with iTP:Local", x, "172.30.0.43", 80, "10.180.0.3:80", True),
        Flow("external to NodePort with iTP:Local", x, n, 3003, a3, True),
        Flow("external to LB with iTP:Local", x, "9.10.11.12", 80, a3, True),
    ]
    return [f for f in flows if localhost or f.src != lo]


def overridden(
    flows: list[Flow], overrides: dict[str, tuple[str | None, bool | None]]
) -> list[Flow]:
    """``flows`` with upstream's per-configuration overrides (output, masquerade) applied."""
    out = []
    for f in flows:
        output, masq = overrides.get(f.name, (None, None))
        out.append(
            replace(
                f,
                output=f.output if output is None else output,
                masq=f.masq if masq is None else masq,
            )
        )
    return out


MASQUERADE_CONFIGS: Final = [
    pytest.param(False, True, {}, id="base"),
    pytest.param(False, False, NO_DETECTOR, id="no LocalTrafficDetector"),
    pytest.param(True, True, MASQ_ALL, id="masqueradeAll"),
    pytest.param(
        True,
        False,
        MASQ_ALL | {k: v for k, v in NO_DETECTOR.items() if v[0] is not None},
        id="masqueradeAll, no detector",
    ),
]
"""(masquerade_all, local_detector, overrides) of TestInternalExternalMasquerade's four runs."""
