# ruff: noqa: E501 -- expected rules are kept whole, as kube-proxy writes them.
"""Targeted checks of the nftables compiler, rule by rule, against proxier.go @b0f823e6.

Each case names one chain or container of one compiled table (tests/proxy/nftables_cases.py)
and the rules or elements kube-proxy's ``syncProxyRules`` writes there for that input.
"""

from __future__ import annotations

import pytest

from svcsim.k8s.objects import Protocol
from svcsim.netfilter.nftables import NftTable, dump
from svcsim.proxy.names import ServicePortName
from svcsim.proxy.nftables import compile_nftables
from svcsim.proxy.nftables_names import (
    CHAIN_NAME_BASE_LENGTH_MAX,
    hash_and_truncate,
    service_chain_base,
)
from svcsim.proxy.nftables_rules import UnsupportedContextError
from tests.proxy.nftables_cases import KERNEL_CASES
from tests.proxy.nftables_support import nft_fake_context

CASES = {case.name: case for case in KERNEL_CASES}


def _table(name: str) -> NftTable:
    return CASES[name].compile()


def _base(service: str, port: str = "p80", protocol: Protocol = Protocol.TCP) -> str:
    return service_chain_base(ServicePortName("ns1", service, port, protocol))


def _rules(table: NftTable, chain: str) -> list[str]:
    return [
        r.rule + (f' comment "{r.comment}"' if r.comment else "") for r in table.chain_rules(chain)
    ]


def _elements(table: NftTable, container: str) -> list[str]:
    prefix = f"add element ip kube-proxy {container} "
    return [line[len(prefix) :] for line in dump(table).splitlines() if line.startswith(prefix)]


EMPTY = _base("empty")
LOCAL = _base("local")
FW = _base("fw")


@pytest.mark.parametrize(
    ("case", "container", "expected"),
    [
        (
            "no-endpoints-loadbalancer",
            "no-endpoint-services",
            [
                '{ 172.30.0.13 . tcp . 80 comment "ns1/empty:p80" : goto reject-chain }',
                '{ 192.168.99.44 . tcp . 80 comment "ns1/empty:p80" : goto reject-chain }',
                '{ 1.2.3.5 . tcp . 80 comment "ns1/empty:p80" : goto reject-chain }',
            ],
        ),
        (
            "no-endpoints-loadbalancer",
            "no-endpoint-nodeports",
            ['{ tcp . 30081 comment "ns1/empty:p80" : goto reject-chain }'],
        ),
        ("no-endpoints-loadbalancer", "service-ips", []),
        ("no-endpoints-loadbalancer", "service-nodeports", []),
        (
            "etp-local-itp-local-with-local-endpoint",
            "service-ips",
            [
                f"{{ 172.30.0.14 . tcp . 80 : goto local-{LOCAL} }}",
                f"{{ 1.2.3.6 . tcp . 80 : goto external-{LOCAL} }}",
            ],
        ),
        (
            "source-ranges-with-node-ip",
            "firewall-ips",
            [
                f"{{ 1.2.3.7 . tcp . 80 : goto firewall-{FW} }}",
                f"{{ 5.6.7.9 . tcp . 80 : goto firewall-{FW} }}",
            ],
        ),
        ("clusterip-all-addresses-no-cidrs", "nodeport-ips", []),
    ],
)
def test_elements(case: str, container: str, expected: list[str]) -> None:
    assert _elements(_table(case), container) == expected


@pytest.mark.parametrize(
    ("case", "chain", "expected"),
    [
        (
            "etp-local-itp-local-with-local-endpoint",
            f"external-{LOCAL}",
            [
                f'ip saddr 10.0.0.0/8 goto service-{LOCAL} comment "short-circuit pod traffic"',
                'fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"',
                f'fib saddr type local goto service-{LOCAL} comment "short-circuit local traffic"',
                f"goto local-{LOCAL}",
            ],
        ),
        (
            "source-ranges-with-node-ip",
            f"firewall-{FW}",
            # The node IP 192.168.0.2 is inside a source range: the LB IPs are allowed too.
            ["ip saddr != { 203.0.113.0/25 , 192.168.0.0/24 , 1.2.3.7 , 5.6.7.9 } drop"],
        ),
        (
            "clusterip-all-addresses-no-cidrs",
            "services",
            [
                "ip daddr . meta l4proto . th dport vmap @service-ips",
                "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap "
                "@service-nodeports",
            ],
        ),
        (
            "clusterip-all-addresses-no-cidrs",
            "cluster-ips-check",
            [
                'ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"'
            ],
        ),
        (
            "nodeport-primary-two-cidrs",
            "cluster-ips-check",
            [
                'ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"',
                "ip daddr { 172.30.0.0/16,10.96.0.0/12 } drop "
                'comment "Drop traffic to unallocated ClusterIPs"',
            ],
        ),
        (
            "udp-sctp-masquerade-all-many-endpoints",
            f"service-{_base('dns', 'dns-udp', Protocol.UDP)}",
            [
                "ip daddr 172.30.0.16 udp dport 53 jump mark-for-masquerade",
                "numgen random mod 12 vmap { "
                + " , ".join(
                    f"{i} : goto endpoint-{hash_and_truncate(f'ns1/dns/udp/dns-udp__10.180.1.{n}/53')}"
                    for i, n in enumerate(sorted(range(1, 13), key=lambda n: f"10.180.1.{n}:53"))
                )
                + " }",
            ],
        ),
        (
            "udp-sctp-masquerade-all-many-endpoints",
            "mark-for-masquerade",
            ["mark set mark or 0x00000008"],
        ),
        (
            "terminating-fallback",
            f"service-{_base('term')}",
            [
                "ip daddr 172.30.0.17 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade",
                "numgen random mod 1 vmap { 0 : goto endpoint-"
                + hash_and_truncate("ns1/term/tcp/p80__10.180.0.10/80")
                + " }",
            ],
        ),
    ],
)
def test_chain_rules(case: str, chain: str, expected: list[str]) -> None:
    assert _rules(_table(case), chain) == expected


def test_affinity_sets_and_rules() -> None:
    table = _table("affinity-three-endpoints")
    sticky = _base("sticky")
    bases = [hash_and_truncate(f"ns1/sticky/tcp/p80__10.180.0.{n}/80") for n in (4, 5, 6)]
    assert [s for s in table.sets if s.name.startswith("affinity-")] == [
        type(table.sets[0])(
            f"affinity-{b}", "ipv4_addr", flags=("dynamic", "timeout"), timeout_s=90
        )
        for b in bases
    ]
    assert _rules(table, f"service-{sticky}")[1:4] == [
        f"ip saddr @affinity-{b} goto endpoint-{b}" for b in bases
    ]
    assert _rules(table, f"endpoint-{bases[0]}") == [
        "ip saddr 10.180.0.4 jump mark-for-masquerade",
        f"update @affinity-{bases[0]} {{ ip saddr }}",
        "meta l4proto tcp dnat to 10.180.0.4:80",
    ]


def test_no_nodeport_ips_set_when_every_address_accepts_nodeports() -> None:
    table = _table("clusterip-all-addresses-no-cidrs")
    assert table.set("nodeport-ips") is None
    assert _rules(table, "nodeport-endpoints-check") == [
        "ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports"
    ]


def test_localhost_is_never_a_nodeport_address() -> None:
    ctx = nft_fake_context(node_port_addresses=("127.0.0.0/8", "192.168.0.0/24"))
    table = compile_nftables((), (), ctx)
    assert _elements(table, "nodeport-ips") == ["{ 192.168.0.2 }"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ns1/svc1/tcp/p80", "ULMVA6XW-ns1/svc1/tcp/p80"),
        ("x" * 300, None),
    ],
)
def test_hash_and_truncate(name: str, expected: str | None) -> None:
    out = hash_and_truncate(name)
    if expected is not None:
        assert out == expected
    else:
        assert len(out) == CHAIN_NAME_BASE_LENGTH_MAX
        assert out.endswith("...")


def test_interface_detectors_are_refused() -> None:
    ctx = nft_fake_context(local_detector="BridgeInterface", local_detector_value="cbr0")
    with pytest.raises(UnsupportedContextError, match="not modelled in nftables mode"):
        compile_nftables((), (), ctx)
