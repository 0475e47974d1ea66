"""One new connection through an IPVS-mode node: iptables with ip sets, IPVS, POSTROUTING."""

from __future__ import annotations

import pytest

from svcsim.netfilter.ipvs_kernel import IpvsKernel, Verdict
from svcsim.netfilter.ipvs_trace import trace_ipvs
from svcsim.netfilter.packet import NodeNetwork, Packet
from svcsim.proxy.context import NodeContext
from svcsim.proxy.ipvs import compile_ipvs
from tests.proxy.ipvs_cases import NODE_IP, everything_service
from tests.proxy.test_iptables_support import TEST_NODE_NAME

CTX = NodeContext.with_cluster_cidr(TEST_NODE_NAME, "10.0.0.0/8", node_ips=(NODE_IP,))
NETWORK = NodeNetwork(node_ips=(NODE_IP,), pod_cidr="10.0.0.0/8")


@pytest.mark.parametrize(
    ("src", "origin", "dst", "dport", "masquerade"),
    [
        ("10.0.0.9", "pod", "172.30.0.41", 80, False),  # a local Pod: no mark
        ("203.0.113.7", "external", "172.30.0.41", 80, True),  # off-cluster to a ClusterIP
        ("203.0.113.7", "external", NODE_IP, 30080, True),  # NodePort: KUBE-NODE-PORT-TCP
        ("203.0.113.7", "external", "1.2.3.4", 80, True),  # LB: KUBE-LOAD-BALANCER marks
        (NODE_IP, "host", "172.30.0.41", 80, True),  # the node itself: not from a Pod
    ],
)
def test_service_traffic_is_scheduled_and_masqueraded_as_marked(
    src: str, origin: str, dst: str, dport: int, masquerade: bool
) -> None:
    state = compile_ipvs(*everything_service(), CTX)
    kernel = IpvsKernel()
    kernel.install(state.virtual_servers)
    packet = Packet(src, dst, "tcp", dport, sport=40000, origin=origin)  # type: ignore[arg-type]
    walk = trace_ipvs(state, kernel, packet, NETWORK)
    assert walk.decision is not None and walk.decision.verdict is Verdict.FORWARDED
    assert walk.after is not None
    assert walk.after.outcome.masquerade is masquerade
    text = walk.format()
    assert "ipvs: forwarded -> 10.180." in text


def test_hairpin_to_the_local_endpoint_is_masqueraded_by_kube_loop_back() -> None:
    state = compile_ipvs(*everything_service(), CTX)
    kernel = IpvsKernel()
    kernel.install(state.virtual_servers)
    results = []
    for sport in (1, 2):  # rr: one of the two goes to the Pod itself
        packet = Packet("10.180.0.1", "172.30.0.41", "tcp", 80, sport=sport)
        walk = trace_ipvs(state, kernel, packet, NETWORK)
        assert walk.decision is not None and walk.after is not None
        results.append((walk.decision.real_server, walk.after.outcome.masquerade))
    assert (("10.180.0.1", 8080), True) in results
    assert (("10.180.1.1", 8080), False) in results


def test_a_cluster_ip_on_an_unknown_port_is_rejected_by_kube_ipvs_filter() -> None:
    state = compile_ipvs(*everything_service(), CTX)
    kernel = IpvsKernel()
    kernel.install(state.virtual_servers)
    walk = trace_ipvs(state, kernel, Packet("10.0.0.9", "172.30.0.41", "tcp", 81), NETWORK)
    assert walk.decision is None
    assert walk.before.verdict == "REJECT"
    assert walk.before.outcome.decided_in == ("filter", "KUBE-IPVS-FILTER")


def test_traffic_to_other_addresses_never_meets_ipvs() -> None:
    state = compile_ipvs(*everything_service(), CTX)
    walk = trace_ipvs(state, IpvsKernel(), Packet("10.0.0.9", "8.8.8.8", "tcp", 53), NETWORK)
    assert walk.decision is None and walk.before.verdict == "ACCEPT"


@pytest.mark.parametrize("origin", ["pod", "external", "host"])
@pytest.mark.parametrize("scheduler", ["rr", "mh"])
def test_every_virtual_server_is_reachable_through_the_iptables_rules(
    origin: str, scheduler: str
) -> None:
    """Invariant: the helper rules never stop a packet addressed to a virtual server."""
    state = compile_ipvs(*everything_service(), CTX, scheduler)
    kernel = IpvsKernel()
    kernel.install(state.virtual_servers)
    src = {"pod": "10.0.0.9", "external": "203.0.113.7", "host": NODE_IP}[origin]
    for vs in state.virtual_servers:
        packet = Packet(src, vs.address, vs.protocol.lower(), vs.port, origin=origin)  # type: ignore[arg-type]
        walk = trace_ipvs(state, kernel, packet, NETWORK)
        assert walk.decision is not None, walk.format()
        assert walk.decision.verdict is Verdict.FORWARDED
