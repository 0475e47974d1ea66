"""kube-proxy's IPVS-mode sync: virtual servers, real servers, ip sets and their rules."""

from __future__ import annotations

from typing import Any

import pytest

from svcsim.k8s.objects import TrafficPolicy
from svcsim.netfilter.ipvs import RealServer, VirtualServer
from svcsim.netfilter.text import render_save
from svcsim.proxy.context import NodeContext
from svcsim.proxy.ipvs import compile_ipvs
from tests.proxy.ipvs_cases import AFFINITY, NODE_IP, UDP_PORT, cluster_service, everything_service
from tests.proxy.test_iptables_support import TEST_NODE_NAME

CTX = NodeContext.with_cluster_cidr(TEST_NODE_NAME, "10.0.0.0/8", node_ips=(NODE_IP,))


def servers(state: Any) -> dict[str, VirtualServer]:
    return {f"{vs.protocol} {vs.hostport}": vs for vs in state.virtual_servers}


def test_cluster_ip_gets_a_bound_virtual_server_with_weight_1_and_draining_weight_0() -> None:
    state = compile_ipvs(*cluster_service(), CTX)
    (vs,) = state.virtual_servers
    assert (vs.protocol, vs.hostport, vs.scheduler, vs.persistent_timeout_s) == (
        "TCP",
        "172.30.0.41:80",
        "rr",
        None,
    )
    # Added in (IP, port) order, each at the head: the kernel list is the reverse.
    assert vs.real_servers == (
        RealServer("10.180.2.1", 8080, 0),
        RealServer("10.180.1.1", 8080, 1),
        RealServer("10.180.0.1", 8080, 1),
    )
    assert state.dummy_addresses == ("172.30.0.41",)
    sets = state.ipsets.as_dict()
    assert sets["KUBE-CLUSTER-IP"] == ("172.30.0.41,tcp:80",)
    assert sets["KUBE-LOOP-BACK"] == ("10.180.0.1,tcp:8080,10.180.0.1",)
    assert sets["KUBE-IPVS-IPS"] == ("172.30.0.41",)


def test_udp_real_servers_are_deleted_at_once_not_drained() -> None:
    state = compile_ipvs(*cluster_service(ports=UDP_PORT), CTX)
    (vs,) = state.virtual_servers
    assert [rs.address for rs in vs.real_servers] == ["10.180.1.1", "10.180.0.1"]
    assert state.ipsets.as_dict()["KUBE-CLUSTER-IP"] == ("172.30.0.41,udp:53",)


@pytest.mark.parametrize(
    ("spec", "scheduler", "timeout", "flags"),
    [
        (AFFINITY, "rr", 300, ()),
        ({}, "mh", None, ("mh-port",)),
        (AFFINITY, "lc", 300, ()),
    ],
)
def test_scheduler_persistence_and_flags(
    spec: dict[str, Any], scheduler: str, timeout: int | None, flags: tuple[str, ...]
) -> None:
    state = compile_ipvs(*cluster_service(**spec), CTX, scheduler)
    (vs,) = state.virtual_servers
    assert (vs.scheduler, vs.persistent_timeout_s, vs.sched_flags) == (scheduler, timeout, flags)


def test_every_address_of_a_load_balancer_gets_a_virtual_server() -> None:
    state = compile_ipvs(*everything_service(), CTX)
    assert sorted(servers(state)) == [
        "TCP 1.2.3.4:80",
        "TCP 172.30.0.41:80",
        "TCP 192.168.0.2:30080",
        "TCP 192.168.99.11:80",
    ]
    # The node's own address is never bound to kube-ipvs0.
    assert state.dummy_addresses == ("1.2.3.4", "172.30.0.41", "192.168.99.11")
    sets = state.ipsets.as_dict()
    assert sets["KUBE-EXTERNAL-IP"] == ("192.168.99.11,tcp:80",)
    assert sets["KUBE-LOAD-BALANCER"] == ("1.2.3.4,tcp:80",)
    assert sets["KUBE-NODE-PORT-TCP"] == ("30080",)
    assert sets["KUBE-NODE-PORT-LOCAL-TCP"] == ()


def test_external_policy_local_uses_local_endpoints_and_the_local_sets() -> None:
    state = compile_ipvs(*everything_service(TrafficPolicy.LOCAL), CTX)
    by = servers(state)
    local = [rs.address for rs in by["TCP 1.2.3.4:80"].real_servers if rs.weight]
    assert local == ["10.180.0.1"]
    assert [rs.address for rs in by["TCP 172.30.0.41:80"].real_servers if rs.weight] == [
        "10.180.1.1",
        "10.180.0.1",
    ]
    sets = state.ipsets.as_dict()
    assert sets["KUBE-EXTERNAL-IP-LOCAL"] == ("192.168.99.11,tcp:80",)
    assert sets["KUBE-LOAD-BALANCER-LOCAL"] == ("1.2.3.4,tcp:80",)
    assert sets["KUBE-NODE-PORT-LOCAL-TCP"] == ("30080",)
    assert sets["KUBE-HEALTH-CHECK-NODE-PORT"] == ("32000",)


def test_source_ranges_fill_the_firewall_sets_and_block_the_node_when_it_is_outside() -> None:
    outside = compile_ipvs(
        *everything_service(load_balancer_source_ranges=("203.0.113.0/25",)), CTX
    )
    sets = outside.ipsets.as_dict()
    assert sets["KUBE-LOAD-BALANCER-FW"] == ("1.2.3.4,tcp:80",)
    assert sets["KUBE-LOAD-BALANCER-SOURCE-CIDR"] == ("1.2.3.4,tcp:80,203.0.113.0/25",)
    assert sets["KUBE-LOAD-BALANCER-SOURCE-IP"] == ()
    assert (
        "-A KUBE-IPVS-OUT-FILTER -s 1.2.3.4/32 -m ipvs --vaddr 1.2.3.4/32 --vproto tcp "
        "--vport 80 -j DROP"
    ) in render_save(outside.ruleset)
    inside = compile_ipvs(*everything_service(load_balancer_source_ranges=("192.168.0.0/16",)), CTX)
    assert inside.ipsets.as_dict()["KUBE-LOAD-BALANCER-SOURCE-IP"] == ("1.2.3.4,tcp:80,1.2.3.4",)
    assert "KUBE-IPVS-OUT-FILTER -s" not in render_save(inside.ruleset)


@pytest.mark.parametrize(
    ("context", "rule"),
    [
        (
            CTX,
            '-A KUBE-SERVICES ! -s 10.0.0.0/8 -m comment --comment "Kubernetes service cluster '
            'ip + port for masquerade purpose" -m set --match-set KUBE-CLUSTER-IP dst,dst '
            "-j KUBE-MARK-MASQ",
        ),
        (
            NodeContext(TEST_NODE_NAME, node_ips=(NODE_IP,), masquerade_all=True),
            '-A KUBE-SERVICES -m comment --comment "Kubernetes service cluster ip + port for '
            'masquerade purpose" -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ',
        ),
        (
            NodeContext(TEST_NODE_NAME, node_ips=(NODE_IP,)),
            '-A KUBE-SERVICES -m comment --comment "Kubernetes service cluster ip + port for '
            'masquerade purpose" -m set --match-set KUBE-CLUSTER-IP src,dst -j KUBE-MARK-MASQ',
        ),
    ],
)
def test_the_cluster_ip_rule_has_kube_proxys_three_forms(context: NodeContext, rule: str) -> None:
    assert rule in render_save(compile_ipvs(*cluster_service(), context).ruleset).splitlines()


def test_the_fixed_rules_and_jumps() -> None:
    text = render_save(compile_ipvs(*everything_service(), CTX).ruleset).splitlines()
    assert [line for line in text if line.startswith("-A INPUT")] == [
        '-A INPUT -m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-FILTER',
        '-A INPUT -m comment --comment "kube-proxy firewall rules" -j KUBE-PROXY-FIREWALL',
        '-A INPUT -m comment --comment "kubernetes health check rules" -j KUBE-NODE-PORT',
    ]
    assert (
        "-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst "
        "-j REJECT --reject-with icmp-port-unreachable"
    ) in text
    assert "-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT" in text
    assert "-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT" in text
    assert (
        '-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port for '
        'masquerade and filter purpose" -m set --match-set KUBE-EXTERNAL-IP dst,dst '
        "-m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT"
    ) in text


def test_empty_sets_write_no_rule() -> None:
    text = render_save(compile_ipvs(*cluster_service(), CTX).ruleset)
    assert "KUBE-LOAD-BALANCER dst,dst -j KUBE-LOAD-BALANCER" not in text
    assert "KUBE-NODE-PORT-TCP" not in text


def test_unknown_scheduler_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown IPVS scheduler"):
        compile_ipvs(*cluster_service(), CTX, "sed")


def test_without_show_draining_the_result_is_the_wanted_set_only() -> None:
    state = compile_ipvs(*cluster_service(), CTX, show_draining=False)
    (vs,) = state.virtual_servers
    assert [(rs.address, rs.weight) for rs in vs.real_servers] == [
        ("10.180.1.1", 1),
        ("10.180.0.1", 1),
    ]
