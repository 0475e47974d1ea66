"""Rules built as data equal what iptables reads from their text (the parts of iptables_rules)."""

from __future__ import annotations

import pytest

from svcsim.netfilter.model import Rule
from svcsim.netfilter.parse import parse_rule
from svcsim.proxy.iptables_rules import (
    NOTHING,
    Part,
    addrtype,
    comment,
    conntrack,
    destination,
    detector,
    dnat,
    dnat_head,
    dnat_rule,
    dnat_to,
    in_interface,
    joined,
    jump,
    mark,
    mark_or,
    mark_xor,
    masquerade,
    matched_jump,
    nfacct,
    physdev_is_in,
    protocol_dport,
    protocol_port,
    recent_rcheck,
    recent_set,
    redirect,
    reject,
    rule,
    source,
    sourced,
    state,
    statistic,
    verdict,
)

CASES: list[tuple[Part, ...]] = [
    (comment("ns/svc:p cluster IP"), protocol_port("tcp", 80, dst="10.96.0.1"), jump("KUBE-SVC-X")),
    (comment("ns/svc:p", quote=False), source("10.0.0.1"), jump("KUBE-MARK-MASQ")),
    (comment("ns/svc:p", quote=False), protocol_port("udp", None), dnat("10.0.0.1:53")),
    (NOTHING, protocol_port("sctp", None), dnat("10.0.0.1:99")),
    (comment("a -> b"), statistic("0.3333333333"), jump("KUBE-SEP-Y")),
    (comment("a -> b"), recent_rcheck("KUBE-SEP-Y", 10800), jump("KUBE-SEP-Y")),
    (comment("ns/svc:p", quote=False), recent_set("KUBE-SEP-Y"), protocol_port("tcp", None)),
    (comment("x"), addrtype(dst_type="LOCAL"), protocol_port("tcp", 30001), reject()),
    (comment("x"), addrtype(src_type="LOCAL"), jump("KUBE-SVC-X")),
    (comment("x"), protocol_port("tcp", 30001, dst="127.0.0.0/8"), nfacct("n"), jump("X")),
    (mark("0x4000/0x4000", negated=True), jump("RETURN")),
    (mark("0x4000/0x4000"), jump("ACCEPT")),
    (mark_xor("0x4000"),),
    (mark_or("0x4000"),),
    (comment("snat"), masquerade(random_fully=True)),
    (comment("snat"), masquerade(random_fully=False)),
    (conntrack("INVALID"), nfacct("ct_state_invalid_dropped_pkts"), verdict("DROP")),
    (
        destination("127.0.0.0/8"),
        source("127.0.0.0/8", negated=True),
        conntrack("NEW", negated=True),
    ),
    (destination("127.0.0.0/8", negated=True), verdict("REJECT")),
    (detector(("!", "-s", "10.0.0.0/8")), jump("KUBE-MARK-MASQ")),
    (detector(("-s", "10.0.0.0/8")), jump("KUBE-SVC-X")),
    (detector(("!", "-i", "veth+")), jump("KUBE-MARK-MASQ")),
    (in_interface("cbr0"), jump("KUBE-SVC-X")),
    (detector(()), comment("only a comment")),
    (source("10.0.0.0/8"), source("10.1.0.0/16"), jump("X")),  # a later -s replaces an earlier
]


@pytest.mark.parametrize("parts", CASES, ids=lambda parts: rule(*parts).text)
def test_rule_built_as_data_is_what_iptables_reads_from_its_text(parts: tuple[Part, ...]) -> None:
    built = rule(*parts)
    assert "  " not in built.text and built.text == built.text.strip()
    assert built == parse_rule(built.text)


@pytest.mark.parametrize("words", [("-d", "10.0.0.1"), ("!", "-o", "eth0"), ("-s",)])
def test_detector_refuses_words_that_are_no_detector(words: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="not a local-traffic detector"):
        detector(words)


USERSPACE_CASES: list[tuple[Part, ...]] = [
    (comment("ns/svc:p"), protocol_dport("tcp", 80), destination("10.0.0.1/32"), redirect(4000)),
    (comment("ns/svc"), protocol_dport("udp", 53), destination("10.0.0.1/32"), dnat("1.2.3.4:40")),
    (
        comment("ns/svc:p"),
        protocol_dport("sctp", 80),
        destination("192.168.99.11/32"),
        physdev_is_in(negated=True),
        redirect(4000),
    ),
    (comment("x"), protocol_dport("tcp", 80), addrtype(dst_type="LOCAL"), redirect(1)),
    (physdev_is_in(), jump("ACCEPT")),
    (comment("ns/svc:p"), protocol_dport("tcp", 40000), state("NEW"), jump("ACCEPT")),
    (state("NEW,ESTABLISHED"), jump("ACCEPT")),
]


@pytest.mark.parametrize("parts", USERSPACE_CASES, ids=lambda parts: rule(*parts).text)
def test_userspace_parts_are_what_iptables_reads_from_their_text(parts: tuple[Part, ...]) -> None:
    built = rule(*parts)
    assert "  " not in built.text and built.text == built.text.strip()
    assert built == parse_rule(built.text)


# The shapes the service writer builds directly, each with the parts whose join it replaces.
_HEAD = comment("ns/svc:p", quote=False)
_AFFINITY = joined(_HEAD, recent_set("KUBE-SEP-Y"))
SHAPES: list[tuple[Rule, tuple[Part, ...]]] = [
    (
        sourced(_HEAD, "10.0.0.1", jump("KUBE-MARK-MASQ")),
        (_HEAD, source("10.0.0.1"), jump("KUBE-MARK-MASQ")),
    ),
    (
        sourced(NOTHING, "10.0.0.1", jump("KUBE-MARK-MASQ")),
        (source("10.0.0.1"), jump("KUBE-MARK-MASQ")),
    ),
    (
        dnat_to(_HEAD, protocol_port("tcp", None), "10.0.0.1", 8080),
        (_HEAD, protocol_port("tcp", None), dnat("10.0.0.1:8080")),
    ),
    (
        dnat_to(NOTHING, protocol_port("udp", None), "10.0.0.1", 53),
        (protocol_port("udp", None), dnat("10.0.0.1:53")),
    ),
    (
        dnat_to(_AFFINITY, protocol_port("sctp", None), "10.0.0.1", 99),
        (_HEAD, recent_set("KUBE-SEP-Y"), protocol_port("sctp", None), dnat("10.0.0.1:99")),
    ),
    (
        dnat_to(
            joined(NOTHING, recent_set("KUBE-SEP-Y")), protocol_port("tcp", None), "10.0.0.1", 1
        ),
        (recent_set("KUBE-SEP-Y"), protocol_port("tcp", None), dnat("10.0.0.1:1")),
    ),
    (
        dnat_rule(dnat_head(_HEAD, protocol_port("tcp", None)), "10.0.0.2", 80),
        (_HEAD, protocol_port("tcp", None), dnat("10.0.0.2:80")),
    ),
    (
        dnat_rule(dnat_head(_AFFINITY, protocol_port("udp", None)), "10.0.0.2", 53),
        (_HEAD, recent_set("KUBE-SEP-Y"), protocol_port("udp", None), dnat("10.0.0.2:53")),
    ),
    (
        matched_jump(comment("a -> b"), statistic("0.3333333333"), jump("KUBE-SEP-Y")),
        (comment("a -> b"), statistic("0.3333333333"), jump("KUBE-SEP-Y")),
    ),
    (
        matched_jump(comment("a -> b"), NOTHING, jump("KUBE-SEP-Y")),
        (comment("a -> b"), jump("KUBE-SEP-Y")),
    ),
    (
        matched_jump(NOTHING, statistic("0.5000000000"), jump("KUBE-SEP-Y")),
        (statistic("0.5000000000"), jump("KUBE-SEP-Y")),
    ),
    (matched_jump(NOTHING, NOTHING, jump("KUBE-SEP-Y")), (jump("KUBE-SEP-Y"),)),
    (
        matched_jump(comment("a -> b"), recent_rcheck("KUBE-SEP-Y", 10800), jump("KUBE-SEP-Y")),
        (comment("a -> b"), recent_rcheck("KUBE-SEP-Y", 10800), jump("KUBE-SEP-Y")),
    ),
]


@pytest.mark.parametrize(("built", "parts"), SHAPES, ids=lambda case: getattr(case, "text", ""))
def test_rule_shapes_built_directly_equal_the_joined_parts_and_the_parsed_text(
    built: Rule, parts: tuple[Part, ...]
) -> None:
    assert built == rule(*parts)
    assert built == parse_rule(built.text)
    assert type(built) is Rule and type(built.matches) is tuple


@pytest.mark.parametrize("first", [NOTHING, _HEAD, statistic("0.5000000000")])
@pytest.mark.parametrize("second", [NOTHING, recent_set("KUBE-SEP-Y")])
def test_joined_parts_write_both_parts_words(first: Part, second: Part) -> None:
    both = joined(first, second)
    assert rule(both) == rule(first, second)
