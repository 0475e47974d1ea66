"""Packet-flow tests from kubernetes pkg/proxy/nftables/proxier_test.go, on the nf_tables evaluator.

Upstream checks behaviour by tracing packets through the generated table with a simple tracer
(helpers_test.go ``tracePacket``); here the packets go through svcsim's evaluator
(:mod:`svcsim.netfilter.nft_eval`) instead, hook by hook, once per probe draw so that every
numgen choice is taken (:func:`tests.proxy.nftables_support.assert_nft_flows`). Inputs and
expected outputs are upstream's (IPv4 cases only); a failing case prints the walk.
"""

from __future__ import annotations

import pytest

from svcsim.k8s.objects import (
    LoadBalancerIngress,
    ServicePort,
    ServiceType,
    TrafficPolicy,
)
from svcsim.netfilter.nftables import NftTable
from svcsim.proxy.nftables import compile_nftables
from tests.proxy.flow_cases import (
    CLUSTER_TERMINATING_CASES,
    LOCAL_TERMINATING_CASES,
    MASQUERADE_CONFIGS,
    NO_LOCAL_DETECTOR,
    P80,
    cluster_ip_general,
    lb_with_policy,
    masquerade,
    masquerade_flows,
    overridden,
    terminating,
)
from tests.proxy.nftables_support import FAKE_SERVICE_CIDRS, assert_nft_flows, nft_fake_context
from tests.proxy.test_iptables_support import (
    TEST_EXTERNAL_CLIENT,
    TEST_EXTERNAL_CLIENT_BLOCKED,
    TEST_NODE_IP,
    TEST_NODE_IP_ALT,
    TEST_NODE_NAME,
    Flow,
    ep,
    make_service,
    make_slice,
    port,
)


def _compile(services: list, slices: list, **ctx: object) -> NftTable:  # type: ignore[type-arg]
    return compile_nftables(services, slices, nft_fake_context(**ctx), FAKE_SERVICE_CIDRS)


def test_cluster_ip_general() -> None:
    """TestClusterIPGeneral."""
    two = "10.180.0.1:{0}, 10.180.2.1:{0}"
    assert_nft_flows(
        _compile(*cluster_ip_general()),
        [
            Flow("simple clusterIP", "10.180.0.2", "172.30.0.41", 80, "10.180.0.1:80"),
            Flow("hairpin to cluster IP", "10.180.0.1", "172.30.0.41", 80, "10.180.0.1:80", True),
            Flow("multiple endpoints", "10.180.0.2", "172.30.0.42", 80, two.format(80)),
            Flow("TargetPort", "10.180.0.2", "172.30.0.42", 443, two.format(8443)),
            Flow("same port (TCP)", "10.180.0.2", "172.30.0.42", 53, two.format(5353)),
            Flow("same port (UDP)", "10.180.0.2", "172.30.0.42", 53, two.format(53), proto="udp"),
            Flow("same port (SCTP)", "10.180.0.2", "172.30.0.42", 53, two.format(53), proto="sctp"),
            Flow("TCP-only port vs UDP", "10.180.0.2", "172.30.0.42", 80, "REJECT", proto="udp"),
            Flow("svc1 does not accept svc2's ports", "10.180.0.2", "172.30.0.41", 443, "REJECT"),
            Flow("packet to unallocated cluster ip", "10.180.0.2", "172.30.0.50", 80, "DROP"),
        ],
    )


def test_load_balancer() -> None:
    """TestLoadBalancer."""
    services = [
        make_service(
            "ns1",
            "svc1",
            type=ServiceType.LOAD_BALANCER,
            cluster_ip="172.30.0.41",
            ports=(ServicePort(80, name="p80", node_port=3001),),
            load_balancer_ingress=(
                LoadBalancerIngress(ip="1.2.3.4"),
                LoadBalancerIngress(ip="5.6.7.8"),
            ),
            load_balancer_source_ranges=("192.168.0.0/24", " 203.0.113.0/25"),
        )
    ]
    table = _compile(services, [make_slice("ns1", "svc1", (ep("10.180.0.1"),), P80)])
    out, x, blocked = "10.180.0.1:80", TEST_EXTERNAL_CLIENT, TEST_EXTERNAL_CLIENT_BLOCKED
    assert_nft_flows(
        table,
        [
            Flow("pod to cluster IP", "10.0.0.2", "172.30.0.41", 80, out),
            Flow("external to nodePort", x, TEST_NODE_IP, 3001, out, masq=True),
            Flow("nodePort bypasses sourceRanges", blocked, TEST_NODE_IP, 3001, out, masq=True),
            Flow("accepted external to LB1", x, "1.2.3.4", 80, out, masq=True),
            Flow("accepted external to LB2", x, "5.6.7.8", 80, out, masq=True),
            Flow("blocked external to LB1", blocked, "1.2.3.4", 80, "DROP"),
            Flow("blocked external to LB2", blocked, "5.6.7.8", 80, "DROP"),
            Flow("pod to LB1 (blocked)", "10.0.0.2", "1.2.3.4", 80, "DROP"),
            Flow("pod to LB2 (blocked)", "10.0.0.2", "5.6.7.8", 80, "DROP"),
            Flow("node to LB1 (allowed)", TEST_NODE_IP, "1.2.3.4", 80, out, masq=True),
            Flow("node to LB2 (allowed)", TEST_NODE_IP, "5.6.7.8", 80, out, masq=True),
            Flow("same node to LB1, SNATted to LB1", "1.2.3.4", "1.2.3.4", 80, out, masq=True),
            Flow("same node to LB2, SNATted to LB2", "5.6.7.8", "5.6.7.8", 80, out, masq=True),
        ],
    )


@pytest.mark.parametrize(
    ("addresses", "allow_alt_node_ip"),
    [
        (("192.168.0.2/32",), False),
        (("192.168.0.0/24", "192.168.1.0/24", "2001:db8::/64"), True),
    ],
    ids=["ipv4", "ipv4, multiple nodeport-addresses"],
)
def test_node_ports(addresses: tuple[str, ...], allow_alt_node_ip: bool) -> None:
    """TestNodePorts (IPv4 cases; upstream's nil nodePortAddresses is the node IP's /32)."""
    services = [
        make_service(
            "ns1",
            "svc1",
            type=ServiceType.NODE_PORT,
            cluster_ip="172.30.0.41",
            ports=(ServicePort(80, name="p80", node_port=3001),),
        )
    ]
    slices = [make_slice("ns1", "svc1", (ep("10.180.0.1"), ep("10.180.2.1", TEST_NODE_NAME)), P80)]
    table = _compile(services, slices, node_port_addresses=addresses)
    out = "10.180.0.1:80, 10.180.2.1:80"
    alt = (out, True) if allow_alt_node_ip else ("", False)
    assert_nft_flows(
        table,
        [
            Flow("pod to cluster IP", "10.0.0.2", "172.30.0.41", 80, out),
            Flow("external to nodePort", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001, out, True),
            Flow("node to nodePort", TEST_NODE_IP, TEST_NODE_IP, 3001, out, masq=True),
            Flow("nodePort on secondary IP", TEST_EXTERNAL_CLIENT, TEST_NODE_IP_ALT, 3001, *alt),
        ],
    )


BOTH = "10.180.0.1:80, 10.180.2.1:80"
LOCAL_ONLY = "10.180.2.1:80"


@pytest.mark.parametrize(
    ("policy", "flows"),
    [
        (
            TrafficPolicy.LOCAL,
            [
                Flow("pod to cluster IP", "10.0.0.2", "172.30.0.41", 80, BOTH),
                Flow("pod to external IP", "10.0.0.2", "192.168.99.11", 80, BOTH),
                Flow(
                    "external to external IP", TEST_EXTERNAL_CLIENT, "192.168.99.11", 80, LOCAL_ONLY
                ),
                Flow("pod to LB IP", "10.0.0.2", "1.2.3.4", 80, BOTH),
                Flow("external to LB IP", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, LOCAL_ONLY),
                Flow("pod to NodePort", "10.0.0.2", TEST_NODE_IP, 3001, BOTH),
                Flow("external to NodePort", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001, LOCAL_ONLY),
            ],
        ),
        (
            TrafficPolicy.CLUSTER,
            [
                Flow("pod to cluster IP", "10.0.0.2", "172.30.0.41", 80, BOTH),
                Flow("pod to external IP", "10.0.0.2", "192.168.99.11", 80, BOTH, True),
                Flow(
                    "external to external IP", TEST_EXTERNAL_CLIENT, "192.168.99.11", 80, BOTH, True
                ),
                Flow("pod to LB IP", "10.0.0.2", "1.2.3.4", 80, BOTH, True),
                Flow("external to LB IP", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, BOTH, True),
                Flow("pod to NodePort", "10.0.0.2", TEST_NODE_IP, 3001, BOTH, True),
                Flow("external to NodePort", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001, BOTH, True),
            ],
        ),
    ],
    ids=["TestExternalTrafficPolicyLocal", "TestExternalTrafficPolicyCluster"],
)
def test_external_traffic_policy(policy: TrafficPolicy, flows: list[Flow]) -> None:
    """TestExternalTrafficPolicyLocal and TestExternalTrafficPolicyCluster."""
    assert_nft_flows(_compile(*lb_with_policy(policy)), flows)


def test_no_endpoints_reject() -> None:
    """TestNoEndpointsReject."""
    svc = make_service(
        "ns1",
        "svc1",
        type=ServiceType.LOAD_BALANCER,
        cluster_ip="172.30.0.41",
        external_ips=("192.168.99.11",),
        ports=(ServicePort(80, name="p80", node_port=3001),),
        load_balancer_ingress=(LoadBalancerIngress(ip="1.2.3.4"),),
    )
    x = TEST_EXTERNAL_CLIENT
    assert_nft_flows(
        _compile([svc], []),
        [
            Flow("pod to cluster IP", "10.0.0.2", "172.30.0.41", 80, "REJECT"),
            Flow("external to external IP", x, "192.168.99.11", 80, "REJECT"),
            Flow("pod to NodePort", "10.0.0.2", TEST_NODE_IP, 3001, "REJECT"),
            Flow("external to NodePort", x, TEST_NODE_IP, 3001, "REJECT"),
            Flow("pod to LB IP", "10.0.0.2", "1.2.3.4", 80, "REJECT"),
            Flow("external to LB IP", x, "1.2.3.4", 80, "REJECT"),
        ],
    )


ITP_CASES = {
    "internalTrafficPolicy is cluster": (
        TrafficPolicy.CLUSTER,
        (TEST_NODE_NAME, "node1", "node2"),
        "10.0.1.1:80, 10.0.1.2:80, 10.0.1.3:80",
    ),
    "local, one local endpoint": (
        TrafficPolicy.LOCAL,
        (TEST_NODE_NAME, "node1", "node2"),
        "10.0.1.1:80",
    ),
    "local, multiple local endpoints": (
        TrafficPolicy.LOCAL,
        (TEST_NODE_NAME, TEST_NODE_NAME, "node2"),
        "10.0.1.1:80, 10.0.1.2:80",
    ),
    "local, no local endpoints": (TrafficPolicy.LOCAL, ("node0", "node1", "node2"), "DROP"),
}


@pytest.mark.parametrize("case", list(ITP_CASES))
def test_internal_traffic_policy(case: str) -> None:
    """TestInternalTrafficPolicy, then its "endpoints deleted" REJECT check."""
    policy, nodes, output = ITP_CASES[case]
    svc = make_service(
        "ns1",
        "svc1",
        cluster_ip="172.30.1.1",
        selector=(("foo", "bar"),),
        internal_traffic_policy=policy,
        ports=(ServicePort(80),),
    )
    eps = tuple(ep(f"10.0.1.{i + 1}", n, ready=True) for i, n in enumerate(nodes))
    flow = Flow("pod to ClusterIP", "10.0.0.2", "172.30.1.1", 80, output)
    assert_nft_flows(_compile([svc], [make_slice("ns1", "svc1", eps, (port(80),))]), [flow])
    deleted = Flow("endpoints deleted", "10.0.0.2", "172.30.1.1", 80, "REJECT")
    assert_nft_flows(_compile([svc], []), [deleted])


AFTER_DELETE = [
    Flow("pod to clusterIP after endpoints deleted", "10.0.0.2", "172.30.1.1", 80, "REJECT"),
    Flow("external to LB after endpoints deleted", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, "REJECT"),
]


@pytest.mark.parametrize("case", list(LOCAL_TERMINATING_CASES))
def test_terminating_endpoints_traffic_policy_local(case: str) -> None:
    """TestTerminatingEndpointsTrafficPolicyLocal, then the endpoints deleted."""
    rows, cluster_out, external_out = LOCAL_TERMINATING_CASES[case]
    assert_nft_flows(
        _compile(*terminating(TrafficPolicy.LOCAL, rows)),
        [
            Flow("pod to clusterIP", "10.0.0.2", "172.30.1.1", 80, cluster_out),
            Flow("external to LB", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, external_out),
        ],
    )
    assert_nft_flows(_compile(*terminating(TrafficPolicy.LOCAL, [])), AFTER_DELETE)


@pytest.mark.parametrize("case", list(CLUSTER_TERMINATING_CASES))
def test_terminating_endpoints_traffic_policy_cluster(case: str) -> None:
    """TestTerminatingEndpointsTrafficPolicyCluster, then the endpoints deleted."""
    rows, out = CLUSTER_TERMINATING_CASES[case]
    assert_nft_flows(
        _compile(*terminating(TrafficPolicy.CLUSTER, rows)),
        [
            Flow("pod to clusterIP", "10.0.0.2", "172.30.1.1", 80, out),
            Flow("external to LB", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, out, masq=out != "REJECT"),
        ],
    )
    assert_nft_flows(_compile(*terminating(TrafficPolicy.CLUSTER, [])), AFTER_DELETE)


@pytest.mark.parametrize(("masquerade_all", "local_detector", "overrides"), MASQUERADE_CONFIGS)
def test_internal_external_masquerade(
    masquerade_all: bool,
    local_detector: bool,
    overrides: dict[str, tuple[str | None, bool | None]],
) -> None:
    """TestInternalExternalMasquerade, its four configurations (no localhost NodePorts here)."""
    detector = {} if local_detector else NO_LOCAL_DETECTOR
    table = _compile(*masquerade(), masquerade_all=masquerade_all, **detector)
    assert_nft_flows(table, overridden(masquerade_flows(localhost=False), overrides))
