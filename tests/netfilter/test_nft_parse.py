"""The nf_tables rule parser: every rule the compiler writes parses; anything else is named."""

from __future__ import annotations

import ipaddress
import re

import pytest

from svcsim.netfilter.nft_parse import NftParseError, parse_rule, parse_table
from svcsim.netfilter.nft_statements import (
    AddrMatch,
    CtState,
    Dnat,
    DportMatch,
    FibLocal,
    MapLookup,
    MarkMatch,
    MarkSet,
    Masquerade,
    Numgen,
    ProtoMatch,
    SetUpdate,
    Verdict,
)
from svcsim.netfilter.nftables import NftChain, NftElement, NftRule, NftSet, NftTable
from svcsim.proxy.nftables import compile_nftables
from tests.proxy.nftables_support import FAKE_SERVICE_CIDRS, nft_fake_context
from tests.proxy.test_iptables_upstream import overall_inputs

NET = ipaddress.IPv4Network


@pytest.mark.parametrize(
    ("rule", "statements"),
    [
        (
            "ct state new jump firewall-check",
            (CtState(frozenset({"new"})), Verdict("jump", "firewall-check")),
        ),
        (
            "ip daddr . meta l4proto . th dport vmap @service-ips",
            (MapLookup(("ip daddr", "meta l4proto", "th dport"), "service-ips"),),
        ),
        (
            "ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports",
            (
                AddrMatch("daddr", True, (NET("127.0.0.0/8"),)),
                MapLookup(("meta l4proto", "th dport"), "no-endpoint-nodeports"),
            ),
        ),
        ("fib daddr type local", (FibLocal("daddr"),)),
        (
            "ip daddr { 172.30.0.0/16,10.96.0.0/12 } drop",
            (
                AddrMatch("daddr", False, (NET("172.30.0.0/16"), NET("10.96.0.0/12"))),
                Verdict("drop"),
            ),
        ),
        (
            "ip saddr != { 192.168.0.0/24 , 1.2.3.4 } drop",
            (AddrMatch("saddr", True, (NET("192.168.0.0/24"), NET("1.2.3.4/32"))), Verdict("drop")),
        ),
        (
            "ip daddr @cluster-ips reject",
            (AddrMatch("daddr", False, set_name="cluster-ips"), Verdict("reject")),
        ),
        (
            "ip daddr 172.30.0.41 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade",
            (
                AddrMatch("daddr", False, (NET("172.30.0.41/32"),)),
                DportMatch("tcp", 80),
                AddrMatch("saddr", True, (NET("10.0.0.0/8"),)),
                Verdict("jump", "mark-for-masquerade"),
            ),
        ),
        (
            "numgen random mod 2 vmap { 0 : goto a/b , 1 : goto c }",
            (Numgen(2, 0, ((0, Verdict("goto", "a/b")), (1, Verdict("goto", "c")))),),
        ),
        ("mark set mark or 0x00004000", (MarkSet("or", 0x4000),)),
        ("meta mark set meta mark xor 0x4000", (MarkSet("xor", 0x4000),)),
        ("mark and 0x4000 == 0 return", (MarkMatch(0x4000, 0), Verdict("return"))),
        ("masquerade fully-random", (Masquerade(True),)),
        ("update @affinity-x { ip saddr }", (SetUpdate("affinity-x", "ip saddr"),)),
        ("meta l4proto tcp dnat to 10.180.0.1:80", (ProtoMatch("tcp"), Dnat("10.180.0.1", 80))),
        (
            "ip daddr . meta l4proto . th dport vmap { 10.0.0.1 . tcp . 80 : drop }",
            (
                MapLookup(
                    ("ip daddr", "meta l4proto", "th dport"),
                    inline=((("10.0.0.1", "tcp", "80"), Verdict("drop")),),
                ),
            ),
        ),
    ],
)
def test_rules_parse_to_statements(rule: str, statements: tuple[object, ...]) -> None:
    assert parse_rule("chain", 1, rule) == statements


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("ip daddr 10.0.0.1 log prefix x", "'log' is not modelled"),
        ("meta l4proto icmp", "meta l4proto 'icmp' is not modelled"),
        ("ip daddr 300.1.1.1 drop", "'300.1.1.1' is not an IPv4 address"),
        ("numgen random mod 0 vmap { }", "at least 1"),
        ("numgen random mod 2 vmap { 0 goto x }", "is not 'N : verdict'"),
        ("jump x drop", "last statement"),
        ("mark set mark and 0x1", "'and' is not modelled"),
        ("ip daddr", "needs a value"),
        ("update @s { tcp dport }", "update key"),
    ],
)
def test_unreadable_rules_name_chain_rule_and_problem(rule: str, message: str) -> None:
    with pytest.raises(NftParseError, match="rule 3 of chain c ") as info:
        parse_rule("c", 3, rule)
    assert message in str(info.value)


def test_every_rule_of_upstreams_overall_table_parses() -> None:
    services, slices = overall_inputs()
    table = compile_nftables(services, slices, nft_fake_context(), FAKE_SERVICE_CIDRS)
    parsed = parse_table(table)
    assert sum(len(rules) for rules in parsed.chains.values()) == len(table.rules)
    assert parsed.maps["service-ips"][("172.30.0.41", "tcp", "80")].kind == "goto"
    assert [c.name for c in parsed.hook_chains("output")] == [
        "filter-output",
        "nat-output",
        "filter-output-post-dnat",
    ]


def test_element_of_a_missing_map_and_rule_of_a_missing_chain_are_errors() -> None:
    table = NftTable(
        "ip", "t", chains=(NftChain("c"),), elements=(NftElement("m", ("1",), ("drop",)),)
    )
    with pytest.raises(NftParseError, match="element 1 of m: its set or map does not exist"):
        parse_table(table)
    with pytest.raises(NftParseError, match="missing chain 'd'"):
        parse_table(NftTable("ip", "t", rules=(NftRule("d", "drop"),)))


def test_an_address_set_element_that_is_not_an_address_is_an_error() -> None:
    table = NftTable(
        "ip",
        "t",
        sets=(NftSet("s", "ipv4_addr"),),
        elements=(NftElement("s", ("10.0.0.0/8",)),),
    )
    with pytest.raises(
        NftParseError, match=re.escape("element 10.0.0.0/8 of s: '10.0.0.0/8' is not an IPv4")
    ):
        parse_table(table)
