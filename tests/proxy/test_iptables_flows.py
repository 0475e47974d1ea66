"""Packet-flow tests from kubernetes pkg/proxy/iptables/proxier_test.go @531be812.

Upstream checks most behaviour by tracing packets through the generated rules with a simple
tracer (``tracePacket``); :func:`assert_flows` re-implements it over our Ruleset, and the cases
below copy upstream's inputs and expected outputs (IPv4 cases only).
"""

from __future__ import annotations

import pytest

from svcsim.k8s.objects import (
    LoadBalancerIngress,
    ServicePort,
    ServiceType,
    TrafficPolicy,
)
from svcsim.proxy.iptables import compile_iptables
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
from tests.proxy.test_iptables_support import (
    TEST_EXTERNAL_CLIENT,
    TEST_EXTERNAL_CLIENT_BLOCKED,
    TEST_NODE_IP,
    TEST_NODE_IP_ALT,
    TEST_NODE_NAME,
    Flow,
    assert_flows,
    ep,
    fake_context,
    make_service,
    make_slice,
    port,
)


def test_cluster_ip_general() -> None:
    """TestClusterIPGeneral."""
    rs = compile_iptables(*cluster_ip_general(), fake_context())
    assert_flows(
        rs,
        [
            Flow("simple clusterIP", "10.180.0.2", "172.30.0.41", 80, "10.180.0.1:80"),
            Flow(
                "hairpin to cluster IP", "10.180.0.1", "172.30.0.41", 80, "10.180.0.1:80", masq=True
            ),
            Flow(
                "multiple endpoints",
                "10.180.0.2",
                "172.30.0.42",
                80,
                "10.180.0.1:80, 10.180.2.1:80",
            ),
            Flow(
                "TargetPort", "10.180.0.2", "172.30.0.42", 443, "10.180.0.1:8443, 10.180.2.1:8443"
            ),
            Flow("TCP", "10.180.0.2", "172.30.0.42", 53, "10.180.0.1:5353, 10.180.2.1:5353"),
            Flow(
                "UDP", "10.180.0.2", "172.30.0.42", 53, "10.180.0.1:53, 10.180.2.1:53", proto="udp"
            ),
            Flow(
                "SCTP",
                "10.180.0.2",
                "172.30.0.42",
                53,
                "10.180.0.1:53, 10.180.2.1:53",
                proto="sctp",
            ),
            Flow("TCP-only port vs UDP", "10.180.0.2", "172.30.0.42", 80, "", proto="udp"),
            Flow("svc1 does not accept svc2's ports", "10.180.0.2", "172.30.0.41", 443, ""),
        ],
    )


def test_load_balancer_source_ranges() -> None:
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
    rs = compile_iptables(
        services, [make_slice("ns1", "svc1", (ep("10.180.0.1"),), P80)], fake_context()
    )
    out = "10.180.0.1:80"
    assert_flows(
        rs,
        [
            Flow("pod to cluster IP", "10.0.0.2", "172.30.0.41", 80, out),
            Flow("external to nodePort", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001, out, masq=True),
            Flow(
                "nodePort bypasses sourceRanges",
                TEST_EXTERNAL_CLIENT_BLOCKED,
                TEST_NODE_IP,
                3001,
                out,
                masq=True,
            ),
            Flow("accepted external to LB1", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, out, masq=True),
            Flow("accepted external to LB2", TEST_EXTERNAL_CLIENT, "5.6.7.8", 80, out, masq=True),
            Flow("blocked external to LB1", TEST_EXTERNAL_CLIENT_BLOCKED, "1.2.3.4", 80, "DROP"),
            Flow("blocked external to LB2", TEST_EXTERNAL_CLIENT_BLOCKED, "5.6.7.8", 80, "DROP"),
            Flow("pod to LB1 (blocked)", "10.0.0.2", "1.2.3.4", 80, "DROP"),
            Flow("pod to LB2 (blocked)", "10.0.0.2", "5.6.7.8", 80, "DROP"),
            Flow("node to LB1 (allowed)", TEST_NODE_IP, "1.2.3.4", 80, out, masq=True),
            Flow("node to LB2 (allowed)", TEST_NODE_IP, "5.6.7.8", 80, out, masq=True),
            Flow("same node to LB1, SNATted to LB1", "1.2.3.4", "1.2.3.4", 80, out, masq=True),
            Flow("same node to LB2, SNATted to LB2", "5.6.7.8", "5.6.7.8", 80, out, masq=True),
        ],
    )


@pytest.mark.parametrize(
    ("localhost", "addresses", "allow_alt_node_ip"),
    [
        (True, (), True),
        (False, (), True),
        (False, ("192.168.0.0/24", "127.0.0.1/32"), False),
        (False, ("192.168.0.0/24", "192.168.1.0/24", "2001:db8::/64"), True),
    ],
)
def test_node_ports(localhost: bool, addresses: tuple[str, ...], allow_alt_node_ip: bool) -> None:
    """TestNodePorts (IPv4 cases)."""
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
    ctx = fake_context(localhost_nodeports=localhost, node_port_addresses=addresses)
    rs = compile_iptables(services, slices, ctx)
    out = "10.180.0.1:80, 10.180.2.1:80"
    assert_flows(
        rs,
        [
            Flow("pod to cluster IP", "10.0.0.2", "172.30.0.41", 80, out),
            Flow("external to nodePort", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001, out, masq=True),
            Flow("node to nodePort", TEST_NODE_IP, TEST_NODE_IP, 3001, out, masq=True),
            Flow(
                "localhost to nodePort",
                "127.0.0.1",
                "127.0.0.1",
                3001,
                out if localhost else "",
                masq=localhost,
            ),
            Flow(
                "external to nodePort on secondary IP",
                TEST_EXTERNAL_CLIENT,
                TEST_NODE_IP_ALT,
                3001,
                out if allow_alt_node_ip else "",
                masq=allow_alt_node_ip,
            ),
        ],
    )


def test_health_check_node_port() -> None:
    """TestHealthCheckNodePort (first half: the port is accepted, with no endpoints at all)."""
    services = [
        make_service(
            "ns1",
            "svc1",
            type=ServiceType.LOAD_BALANCER,
            cluster_ip="172.30.0.42",
            ports=(ServicePort(80, name="p80", node_port=3001),),
            health_check_node_port=30000,
            external_traffic_policy=TrafficPolicy.LOCAL,
        )
    ]
    rs = compile_iptables(services, [], fake_context(node_port_addresses=("127.0.0.0/8",)))
    assert_flows(
        rs, [Flow("firewall accepts HealthCheckNodePort", "1.2.3.4", TEST_NODE_IP, 30000, "ACCEPT")]
    )
    assert_flows(
        compile_iptables([], [], fake_context()),
        [
            Flow("no service, no rule", "1.2.3.4", TEST_NODE_IP, 30000, ""),
        ],
    )


def test_external_traffic_policy_local() -> None:
    """TestExternalTrafficPolicyLocal."""
    both, local = "10.180.0.1:80, 10.180.2.1:80", "10.180.2.1:80"
    assert_flows(
        compile_iptables(*lb_with_policy(TrafficPolicy.LOCAL), fake_context()),
        [
            Flow("pod to cluster IP", "10.0.0.2", "172.30.0.41", 80, both),
            Flow("pod to external IP", "10.0.0.2", "192.168.99.11", 80, both),
            Flow("external to external IP", TEST_EXTERNAL_CLIENT, "192.168.99.11", 80, local),
            Flow("pod to LB IP", "10.0.0.2", "1.2.3.4", 80, both),
            Flow("external to LB IP", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, local),
            Flow("pod to NodePort", "10.0.0.2", TEST_NODE_IP, 3001, both),
            Flow("external to NodePort", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001, local),
        ],
    )


def test_external_traffic_policy_cluster() -> None:
    """TestExternalTrafficPolicyCluster."""
    both = "10.180.0.1:80, 10.180.2.1:80"
    assert_flows(
        compile_iptables(*lb_with_policy(TrafficPolicy.CLUSTER), fake_context()),
        [
            Flow("pod to cluster IP", "10.0.0.2", "172.30.0.41", 80, both),
            Flow("pod to external IP", "10.0.0.2", "192.168.99.11", 80, both, masq=True),
            Flow(
                "external to external IP",
                TEST_EXTERNAL_CLIENT,
                "192.168.99.11",
                80,
                both,
                masq=True,
            ),
            Flow("pod to LB IP", "10.0.0.2", "1.2.3.4", 80, both, masq=True),
            Flow("external to LB IP", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, both, masq=True),
            Flow("pod to NodePort", "10.0.0.2", TEST_NODE_IP, 3001, both, masq=True),
            Flow("external to NodePort", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001, both, masq=True),
        ],
    )


@pytest.mark.parametrize(
    ("policy", "nodes", "output"),
    [
        (
            TrafficPolicy.CLUSTER,
            (TEST_NODE_NAME, "node1", "node2"),
            "10.0.1.1:80, 10.0.1.2:80, 10.0.1.3:80",
        ),
        (TrafficPolicy.LOCAL, (TEST_NODE_NAME, "node1", "node2"), "10.0.1.1:80"),
        (
            TrafficPolicy.LOCAL,
            (TEST_NODE_NAME, TEST_NODE_NAME, "node2"),
            "10.0.1.1:80, 10.0.1.2:80",
        ),
        (TrafficPolicy.LOCAL, ("node0", "node1", "node2"), "DROP"),
    ],
)
def test_internal_traffic_policy(
    policy: TrafficPolicy, nodes: tuple[str, ...], output: str
) -> None:
    """TestInternalTrafficPolicy (and its "endpoints deleted" REJECT check)."""
    svc = make_service(
        "ns1",
        "svc1",
        cluster_ip="172.30.1.1",
        selector=(("foo", "bar"),),
        internal_traffic_policy=policy,
        ports=(ServicePort(80),),
    )
    eps = tuple(ep(f"10.0.1.{i + 1}", n, ready=True) for i, n in enumerate(nodes))
    rs = compile_iptables([svc], [make_slice("ns1", "svc1", eps, (port(80),))], fake_context())
    assert_flows(rs, [Flow("pod to ClusterIP", "10.0.0.2", "172.30.1.1", 80, output)])
    assert_flows(
        compile_iptables([svc], [], fake_context()),
        [Flow("endpoints deleted", "10.0.0.2", "172.30.1.1", 80, "REJECT")],
    )


@pytest.mark.parametrize("case", list(LOCAL_TERMINATING_CASES))
def test_terminating_endpoints_traffic_policy_local(case: str) -> None:
    """TestTerminatingEndpointsTrafficPolicyLocal."""
    rows, cluster_out, external_out = LOCAL_TERMINATING_CASES[case]
    assert_flows(
        compile_iptables(*terminating(TrafficPolicy.LOCAL, rows), fake_context()),
        [
            Flow("pod to clusterIP", "10.0.0.2", "172.30.1.1", 80, cluster_out),
            Flow("external to LB", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, external_out),
        ],
    )


@pytest.mark.parametrize("case", list(CLUSTER_TERMINATING_CASES))
def test_terminating_endpoints_traffic_policy_cluster(case: str) -> None:
    """TestTerminatingEndpointsTrafficPolicyCluster."""
    rows, out = CLUSTER_TERMINATING_CASES[case]
    masq = out != "REJECT"
    assert_flows(
        compile_iptables(*terminating(TrafficPolicy.CLUSTER, rows), fake_context()),
        [
            Flow("pod to clusterIP", "10.0.0.2", "172.30.1.1", 80, out),
            Flow("external to LB", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, out, masq=masq),
        ],
    )


@pytest.mark.parametrize(("masquerade_all", "local_detector", "overrides"), MASQUERADE_CONFIGS)
def test_internal_external_masquerade(
    masquerade_all: bool,
    local_detector: bool,
    overrides: dict[str, tuple[str | None, bool | None]],
) -> None:
    """TestInternalExternalMasquerade, all four configurations with upstream's overrides."""
    detector = {} if local_detector else NO_LOCAL_DETECTOR
    ctx = fake_context(masquerade_all=masquerade_all, **detector)
    flows = overridden(masquerade_flows(localhost=True), overrides)
    assert_flows(compile_iptables(*masquerade(), ctx), flows)


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
    rs = compile_iptables([svc], [], fake_context())
    assert_flows(
        rs,
        [
            Flow("pod to cluster IP", "10.0.0.2", "172.30.0.41", 80, "REJECT"),
            Flow("external to external IP", TEST_EXTERNAL_CLIENT, "192.168.99.11", 80, "REJECT"),
            Flow("pod to NodePort", "10.0.0.2", TEST_NODE_IP, 3001, "REJECT"),
            Flow("external to NodePort", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001, "REJECT"),
            Flow("pod to LB IP", "10.0.0.2", "1.2.3.4", 80, "REJECT"),
            Flow("external to LB IP", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, "REJECT"),
        ],
    )


@pytest.mark.parametrize(
    ("svc_ip", "lb_ip", "ip_mode", "expected"),
    [
        ("10.20.30.41", "1.2.3.4", "Proxy", False),
        ("10.20.30.42", "1.2.3.5", "VIP", True),
        ("10.20.30.43", "1.2.3.6", None, True),
    ],
)
def test_load_balancer_ingress_route_type_proxy(
    svc_ip: str, lb_ip: str, ip_mode: str | None, expected: bool
) -> None:
    """TestLoadBalancerIngressRouteTypeProxy."""
    svc = make_service(
        "ns1",
        "svc1",
        type=ServiceType.LOAD_BALANCER,
        cluster_ip=svc_ip,
        ports=(ServicePort(80, name="p80", node_port=3001),),
        load_balancer_ingress=(LoadBalancerIngress(ip=lb_ip, ip_mode=ip_mode),),
    )
    rs = compile_iptables(
        [svc], [make_slice("ns1", "svc1", (ep("10.180.0.1"),), P80)], fake_context()
    )
    chain = rs.chain("nat", "KUBE-SERVICES")
    assert chain is not None
    has_rule = any(
        r.destination is not None and str(r.destination.network.network_address) == lb_ip
        for r in chain.rules
    )
    assert has_rule == expected
