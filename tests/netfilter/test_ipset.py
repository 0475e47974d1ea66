"""ip sets as kube-proxy spells their members, and ``-m set`` lookups as xt_set builds them."""

from __future__ import annotations

import ipaddress

import pytest

from svcsim.netfilter.ipset import (
    Ipset,
    IpsetTable,
    PacketFields,
    SetMatch,
    parse_member,
    render_ipset_list,
    render_ipset_restore,
)
from svcsim.netfilter.parse import IptablesSyntaxError, parse_rule

TABLE = IpsetTable.of(
    [
        Ipset("CIP", "hash:ip,port", members=("10.20.30.41,tcp:80", "10.20.30.41,udp:53")),
        Ipset("LOOP", "hash:ip,port,ip", members=("10.1.0.5,tcp:8080,10.1.0.5",)),
        Ipset("CIDR", "hash:ip,port,net", members=("1.2.3.4,tcp:80,203.0.113.0/25",)),
        Ipset("NP", "bitmap:port", members=("30080",)),
        Ipset("IPS", "hash:ip", members=("10.20.30.41",)),
    ]
)


def fields(src: str, sport: int, dst: str, dport: int, proto: str = "tcp") -> PacketFields:
    return PacketFields(ipaddress.IPv4Address(src), ipaddress.IPv4Address(dst), sport, dport, proto)


@pytest.mark.parametrize(
    ("name", "flags", "packet", "hit"),
    [
        ("CIP", "dst,dst", fields("10.1.0.9", 40000, "10.20.30.41", 80), True),
        ("CIP", "dst,dst", fields("10.1.0.9", 40000, "10.20.30.41", 80, "udp"), False),
        ("CIP", "dst,dst", fields("10.1.0.9", 40000, "10.20.30.41", 53, "udp"), True),
        ("CIP", "src,dst", fields("10.20.30.41", 40000, "10.9.9.9", 80), True),
        ("CIP", "dst", fields("10.1.0.9", 40000, "10.20.30.41", 80), False),  # too few flags
        ("LOOP", "dst,dst,src", fields("10.1.0.5", 40000, "10.1.0.5", 8080), True),
        ("LOOP", "dst,dst,src", fields("10.1.0.6", 40000, "10.1.0.5", 8080), False),
        ("CIDR", "dst,dst,src", fields("203.0.113.9", 1, "1.2.3.4", 80), True),
        ("CIDR", "dst,dst,src", fields("203.0.113.200", 1, "1.2.3.4", 80), False),
        ("NP", "dst", fields("8.8.8.8", 1, "192.168.0.2", 30080, "udp"), True),
        ("NP", "dst", fields("8.8.8.8", 30080, "192.168.0.2", 30081), False),
        ("IPS", "dst", fields("8.8.8.8", 1, "10.20.30.41", 9999), True),
    ],
)
def test_set_match_builds_the_element_from_the_flags(
    name: str, flags: str, packet: PacketFields, hit: bool
) -> None:
    assert TABLE.matches(SetMatch(name, tuple(flags.split(","))), packet) is hit
    assert TABLE.matches(SetMatch(name, tuple(flags.split(",")), negated=True), packet) is not hit


def test_a_missing_set_is_an_error() -> None:
    with pytest.raises(KeyError, match="NOPE"):
        TABLE.matches(SetMatch("NOPE", ("dst",)), fields("1.1.1.1", 1, "2.2.2.2", 2))


@pytest.mark.parametrize(
    ("set_type", "member"),
    [
        ("hash:ip,port", "10.0.0.1,80"),
        ("hash:ip,port", "10.0.0.1,icmp:80"),
        ("hash:ip,port,ip", "10.0.0.1,tcp:80"),
        ("bitmap:port", "70000"),
        ("hash:ip", "10.0.0.300"),
    ],
)
def test_malformed_members_are_refused(set_type: str, member: str) -> None:
    with pytest.raises(ValueError):
        parse_member(set_type, member)


def test_ipset_list_and_restore_text() -> None:
    table = IpsetTable.of(
        [
            Ipset("KUBE-CLUSTER-IP", "hash:ip,port", members=("10.96.0.1,tcp:443",)),
            Ipset("KUBE-NODE-PORT-TCP", "bitmap:port"),
        ]
    )
    assert render_ipset_list(table) == (
        "Name: KUBE-CLUSTER-IP\nType: hash:ip,port\n"
        "Header: family inet hashsize 1024 maxelem 65536\nNumber of entries: 1\nMembers:\n"
        "10.96.0.1,tcp:443\n\n"
        "Name: KUBE-NODE-PORT-TCP\nType: bitmap:port\nHeader: range 0-65535\n"
        "Number of entries: 0\nMembers:\n"
    )
    assert render_ipset_restore(table).splitlines() == [
        "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536 -exist",
        "add KUBE-CLUSTER-IP 10.96.0.1,tcp:443 -exist",
        "create KUBE-NODE-PORT-TCP bitmap:port range 0-65535 -exist",
    ]


@pytest.mark.parametrize(
    ("given", "saved"),
    [
        (
            "-m comment --comment x -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT",
            "-m comment --comment x -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT",
        ),
        (
            "-m set ! --match-set S dst -j RETURN",
            "-m set ! --match-set S dst -j RETURN",
        ),
        (
            "-m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT",
            "-m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT",
        ),
        (
            "-s 1.2.3.4 -m ipvs --vaddr 1.2.3.4 --vproto tcp --vport 80 -j DROP",
            "-s 1.2.3.4/32 -m ipvs --vaddr 1.2.3.4/32 --vproto tcp --vport 80 -j DROP",
        ),
        (
            "-p tcp -m tcp --dport 80 -m state --state NEW -j ACCEPT",
            "-p tcp -m tcp --dport 80 -m state --state NEW -j ACCEPT",
        ),
        (
            "-p tcp -m tcp --dport 80 -d 10.0.0.1/32 -j REDIRECT --to-ports 40000",
            "-d 10.0.0.1/32 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 40000",
        ),
    ],
)
def test_ipvs_and_userspace_extensions_parse_and_save(given: str, saved: str) -> None:
    assert parse_rule(given).save_text() == saved


@pytest.mark.parametrize(
    "bad",
    [
        "-m set --match-set S sideways -j ACCEPT",
        "-m physdev --physdev-is-out -j ACCEPT",
        "-m ipvs --vaddr 1.2.3.4 -j DROP",
        "-j REDIRECT --to-ports 1000-2000",
    ],
)
def test_unmodelled_forms_are_refused(bad: str) -> None:
    with pytest.raises(IptablesSyntaxError):
        parse_rule(bad)
