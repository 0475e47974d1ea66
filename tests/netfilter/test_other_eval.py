"""Other software's matches on the first packet of a connection: decided, or honestly not."""

from __future__ import annotations

import pytest

from svcsim.netfilter.model import OtherMatch
from svcsim.netfilter.other_eval import NodeFacts, PacketView, Undecided, evaluate
from svcsim.netfilter.packet import parse_ip
from svcsim.netfilter.parse import parse_node_rule

VIEW = PacketView(
    hook="PREROUTING",
    origin="pod",
    protocol="tcp",
    src=parse_ip("10.244.1.5"),
    sport=40000,
    dst=parse_ip("10.244.2.20"),
    dport=8080,
    orig_dst=parse_ip("10.96.0.50"),
    orig_dport=80,
    states=frozenset({"NEW", "DNAT"}),
    ctmark=0x10,
    untracked=False,
    dst_type="UNICAST",
)
FACTS = NodeFacts(ipsets={"pods": ("10.244.0.0/16",), "svc": ("10.244.2.20,tcp:8080",)})


def _match(text: str) -> OtherMatch:
    (match,) = parse_node_rule(text).matches
    assert isinstance(match, OtherMatch)
    return match


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-m set --match-set pods src", True),
        ("-m set ! --match-set pods src", False),
        ("-m set --match-set pods dst", True),
        ("-m set --match-set svc dst,dst", True),
        ("-m set --match-set svc src,dst", False),
        ("-m connmark --mark 0x10/0xff", True),
        ("-m connmark ! --mark 0x10", False),
        ("-m conntrack --ctstate DNAT --ctorigdst 10.96.0.50/32 --ctorigdstport 80", True),
        ("-m conntrack --ctstate NEW --ctreplsrc 10.244.2.20", True),
        ("-m conntrack --ctstatus CONFIRMED", False),
        ("-m conntrack ! --ctstatus CONFIRMED --ctdir ORIGINAL", True),
        ("-m state --state RELATED,ESTABLISHED", False),
        ("-m multiport --dports 80,8000:8090", True),
        ("-m multiport ! --sports 1:1024", True),
        ("-m iprange --src-range 10.244.1.1-10.244.1.9", True),
        ("-m iprange --dst-range 10.244.1.1-10.244.1.9", False),
        ("-m owner --uid-owner 0", False),
        ("-m owner ! --uid-owner 0", True),
        ("-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN", True),
        ("-p tcp -m tcp --tcp-flags SYN,ACK ACK", False),
        ("-p tcp -m tcp --syn --dport 8080", True),
        ("-m pkttype --pkt-type unicast", True),
    ],
)
def test_decided(text: str, expected: bool) -> None:
    rule = parse_node_rule(text)
    match = rule.matches[-1]
    assert isinstance(match, OtherMatch)
    assert evaluate(match, VIEW, FACTS) is expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("-m set --match-set other src", "the members of ipset 'other' (give --ipset other="),
        ("-m socket --transparent", "local socket"),
        ("-m physdev --physdev-is-bridged", "bridge port"),
        ("-m limit --limit 5/min", "token bucket"),
        ("-m rpfilter --invert", "reverse-path"),
        ("-m policy --dir in --pol ipsec", "IPsec"),
        ("-m statistic --mode nth --every 2 --packet 0", "nth"),
        ("-m conntrack --ctexpire 10:20", "timeout"),
        ("-m addrtype --dst-type LOCAL --limit-iface-in", "one interface"),
    ],
)
def test_undecided_says_what_it_needs(text: str, why: str) -> None:
    result = evaluate(_match(text), VIEW, FACTS)
    assert isinstance(result, Undecided) and why in result.reason


def test_a_host_packets_owner_is_unknown_and_an_untracked_one_has_no_connmark() -> None:
    host = PacketView(**{**{f: getattr(VIEW, f) for f in VIEW.__slots__}, "origin": "host"})  # type: ignore[arg-type]
    assert isinstance(evaluate(_match("-m owner --uid-owner 0"), host, FACTS), Undecided)
    untracked = PacketView(**{**{f: getattr(VIEW, f) for f in VIEW.__slots__}, "untracked": True})  # type: ignore[arg-type]
    assert evaluate(_match("-m connmark --mark 0x10/0xff"), untracked, FACTS) is False
