"""The userspace proxier's proxy ports and portal rules, and a packet through them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from svcsim.k8s.objects import (
    EndpointSlice,
    LoadBalancerIngress,
    Protocol,
    Service,
    ServicePort,
    ServiceType,
)
from svcsim.netfilter.interpreter import trace
from svcsim.netfilter.packet import NodeNetwork, Packet
from svcsim.netfilter.parse import parse_rule
from svcsim.netfilter.text import render_save
from svcsim.proxy.context import NodeContext
from svcsim.proxy.endpoints import build_service_port_map
from svcsim.proxy.userspace import (
    EPHEMERAL_PORTS,
    INIT_RULES,
    allocate_proxy_ports,
    compile_userspace,
    portal_rule_count,
)
from tests.proxy.ipvs_cases import (
    AFFINITY,
    NODE_IP,
    UDP_PORT,
    cluster_service,
    everything_service,
)
from tests.proxy.test_iptables_support import TEST_NODE_NAME

CTX = NodeContext(TEST_NODE_NAME, node_ips=(NODE_IP,))


def compiled(seed: int = 0, **spec: object):  # type: ignore[no-untyped-def]
    return compile_userspace(*everything_service(**spec), CTX, np.random.default_rng(seed))


@given(st.integers(1, 40), st.integers(0, 2**32 - 1), st.integers(1000, 1100))
def test_proxy_ports_are_distinct_and_inside_the_range(count: int, seed: int, first: int) -> None:
    rng = np.random.default_rng(seed)
    ports = allocate_proxy_ports(count, rng, (first, first + 39))
    assert len(set(ports)) == count
    assert all(first <= p <= first + 39 for p in ports)
    default = allocate_proxy_ports(count, np.random.default_rng(seed))
    assert all(EPHEMERAL_PORTS[0] <= p <= EPHEMERAL_PORTS[1] for p in default)


def test_a_full_range_is_refused() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        allocate_proxy_ports(3, np.random.default_rng(0), (1000, 1001))


def test_port_table_lists_portals_ready_endpoints_and_affinity() -> None:
    state = compiled(**AFFINITY)
    (row,) = state.ports
    assert row.service_port == "ns1/svc1:p80"
    assert row.portals == ("172.30.0.41:80", "192.168.99.11:80", "1.2.3.4:80")
    assert row.node_port == 30080
    assert row.endpoints == ("10.180.0.1:8080", "10.180.1.1:8080")  # not the terminating one
    assert row.session_affinity_s == 300
    assert state.host_ip == NODE_IP


def test_portal_rules_as_kube_proxy_writes_them() -> None:
    state = compiled()
    p = state.ports[0].proxy_port
    text = render_save(state.ruleset).splitlines()
    c = '-m comment --comment "ns1/svc1:p80"'
    assert [line for line in text if line.startswith("-A ")] == [
        '-A INPUT -m comment --comment "Ensure that non-local NodePort traffic can flow" '
        "-j KUBE-NODEPORT-NON-LOCAL",
        f"-A KUBE-NODEPORT-NON-LOCAL -p tcp {c} -m tcp --dport {p} -m state --state NEW -j ACCEPT",
        '-A PREROUTING -m comment --comment "handle ClusterIPs; NOTE: this must be before the '
        'NodePort rules" -j KUBE-PORTALS-CONTAINER',
        '-A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment "handle service '
        'NodePorts; NOTE: this must be the last rule in the chain" -j KUBE-NODEPORT-CONTAINER',
        '-A OUTPUT -m comment --comment "handle ClusterIPs; NOTE: this must be before the '
        'NodePort rules" -j KUBE-PORTALS-HOST',
        '-A OUTPUT -m addrtype --dst-type LOCAL -m comment --comment "handle service '
        'NodePorts; NOTE: this must be the last rule in the chain" -j KUBE-NODEPORT-HOST',
        f"-A KUBE-NODEPORT-CONTAINER -p tcp {c} -m tcp --dport 30080 -j REDIRECT --to-ports {p}",
        f"-A KUBE-NODEPORT-HOST -p tcp {c} -m tcp --dport 30080 "
        f"-j DNAT --to-destination {NODE_IP}:{p}",
        f"-A KUBE-PORTALS-CONTAINER -d 172.30.0.41/32 -p tcp {c} -m tcp --dport 80 "
        f"-j REDIRECT --to-ports {p}",
        f"-A KUBE-PORTALS-CONTAINER -d 192.168.99.11/32 -p tcp {c} -m tcp --dport 80 "
        f"-m physdev ! --physdev-is-in -j REDIRECT --to-ports {p}",
        f"-A KUBE-PORTALS-CONTAINER -d 192.168.99.11/32 -p tcp {c} -m tcp --dport 80 "
        f"-m addrtype --dst-type LOCAL -j REDIRECT --to-ports {p}",
        f"-A KUBE-PORTALS-CONTAINER -d 1.2.3.4/32 -p tcp {c} -m tcp --dport 80 "
        f"-j REDIRECT --to-ports {p}",
        f"-A KUBE-PORTALS-HOST -d 172.30.0.41/32 -p tcp {c} -m tcp --dport 80 "
        f"-j DNAT --to-destination {NODE_IP}:{p}",
        f"-A KUBE-PORTALS-HOST -d 192.168.99.11/32 -p tcp {c} -m tcp --dport 80 "
        f"-m addrtype --dst-type LOCAL -j DNAT --to-destination {NODE_IP}:{p}",
        f"-A KUBE-PORTALS-HOST -d 1.2.3.4/32 -p tcp {c} -m tcp --dport 80 "
        f"-j DNAT --to-destination {NODE_IP}:{p}",
    ]


@pytest.mark.parametrize(
    ("origin", "dst", "dport", "expected"),
    [
        ("pod", "172.30.0.41", 80, NODE_IP),  # REDIRECT: the incoming interface's address
        ("host", "172.30.0.41", 80, NODE_IP),  # DNAT to hostIP (REDIRECT would be 127.0.0.1)
        ("external", NODE_IP, 30080, NODE_IP),
    ],
)
def test_a_packet_to_a_service_address_reaches_the_proxy_port(
    origin: str, dst: str, dport: int, expected: str
) -> None:
    state = compiled()
    packet = Packet("10.0.0.9" if origin != "host" else NODE_IP, dst, "tcp", dport, origin=origin)  # type: ignore[arg-type]
    walk = trace(state.ruleset, packet, NodeNetwork(node_ips=(NODE_IP,)))
    assert walk.dnat == (expected, state.ports[0].proxy_port)
    assert walk.verdict == "ACCEPT"


def test_no_traffic_policy_in_userspace_mode() -> None:
    from svcsim.k8s.objects import TrafficPolicy

    state = compile_userspace(
        *everything_service(TrafficPolicy.LOCAL), CTX, np.random.default_rng(0)
    )
    assert state.ports[0].endpoints == ("10.180.0.1:8080", "10.180.1.1:8080")


def test_services_without_ports_of_their_own_are_skipped() -> None:
    services, slices = cluster_service()
    state = compile_userspace(services, slices, CTX, np.random.default_rng(0))
    assert [r.service_port for r in state.ports] == ["ns1/svc1:p80"]


def _two_of_everything() -> tuple[list[Service], list[EndpointSlice]]:
    """SCTP and UDP ports, one unnamed; two external and two ingress IPs; two NodePorts."""
    return cluster_service(
        type=ServiceType.LOAD_BALANCER,
        external_ips=("192.168.99.11", "192.168.99.12"),
        ports=(
            ServicePort(9000, Protocol.SCTP, node_port=30090, target_port=8080),
            ServicePort(53, Protocol.UDP, name="dns", node_port=30053, target_port=8080),
        ),
        load_balancer_ingress=(
            LoadBalancerIngress(ip="1.2.3.4"),
            LoadBalancerIngress(ip="5.6.7.8"),
        ),
    )


RULE_CASES = {
    "cluster IP": cluster_service,
    "udp cluster IP": lambda: cluster_service(ports=UDP_PORT),
    "load balancer, NodePort, external IP": everything_service,
    "two of everything": _two_of_everything,
}


@pytest.mark.parametrize("case", RULE_CASES)
def test_every_rule_the_compiler_writes_is_what_iptables_reads_from_its_text(case: str) -> None:
    services, slices = RULE_CASES[case]()
    state = compile_userspace(services, slices, CTX, np.random.default_rng(0))
    rules = [r for t in state.ruleset.tables for c in t.chains for r in c.rules]
    infos = build_service_port_map(services).values()
    assert len(rules) == INIT_RULES + sum(portal_rule_count(info) for info in infos)
    for built in rules:
        assert built == parse_rule(built.text)
