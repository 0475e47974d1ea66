"""Reading real nodes' iptables-save output: every table, counters, other software's rules."""

# ruff: noqa: E501 - the case tables hold iptables lines as long as they are

from __future__ import annotations

import pytest

from svcsim.netfilter.model import (
    CommentMatch,
    ConntrackMatch,
    JumpTarget,
    MarkMatch,
    MasqueradeTarget,
    OtherMatch,
    OtherTarget,
    PortMatch,
    UnknownMatch,
    UnknownTarget,
)
from svcsim.netfilter.node_save import NodeDumpError, parse_node_save
from svcsim.netfilter.parse import IptablesSyntaxError, parse_node_rule, parse_rule
from tests.netfilter.node_dumps import DUMPS, chains_of, without_counters


@pytest.mark.parametrize("name", sorted(DUMPS))
def test_every_rule_prints_back_as_the_node_printed_it(name: str) -> None:
    text = without_counters(DUMPS[name].read_text())
    dump = parse_node_save(text)
    lines = text.splitlines()
    for site in dump.sites:
        chain = dump.ruleset.chain(site.table, site.chain)
        assert chain is not None
        assert lines[site.line - 1] == f"-A {site.chain} {chain.rules[site.index].save_text()}"
    assert not dump.unknown_rules()


@pytest.mark.parametrize("name", ["calico", "docker"])
def test_counters_are_read_and_dropped(name: str) -> None:
    text = DUMPS[name].read_text()
    assert text.count("] -A ") > 10
    with_c, without = parse_node_save(text), parse_node_save(without_counters(text))
    assert chains_of(with_c.ruleset) == chains_of(without.ruleset)


def test_header_variant_and_legacy_tables_note() -> None:
    calico = parse_node_save(DUMPS["calico"].read_text())
    assert calico.variant == "nf_tables"
    assert any("iptables-legacy" in note for note in calico.notes)
    flannel = parse_node_save(DUMPS["flannel"].read_text())
    assert flannel.variant is None and not flannel.notes


def test_every_table_is_read() -> None:
    cilium = parse_node_save(DUMPS["cilium"].read_text()).ruleset
    assert {t.name for t in cilium.tables} == {"raw", "mangle", "nat", "filter", "security"}
    raw = cilium.chain("raw", "CILIUM_PRE_raw")
    assert raw is not None and raw.rules[0].save_text().endswith("-j CT --notrack")


@pytest.mark.parametrize(
    ("text", "matches", "target"),
    [
        (
            "-m comment --comment x -m mark --mark 0x10000/0x10000 -j ACCEPT",
            [CommentMatch, MarkMatch],
            JumpTarget,
        ),
        ("-m conntrack --ctstate INVALID -j DROP", [ConntrackMatch], JumpTarget),
        ("-m conntrack --ctstate DNAT --ctorigdstport 80 -j ACCEPT", [OtherMatch], JumpTarget),
        ("-p tcp -m tcp --dport 80 -j ACCEPT", [PortMatch], JumpTarget),
        ("-p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu", [OtherMatch], OtherTarget),
        ("-m set --match-set a src -m set ! --match-set b dst -j MASQUERADE --random-fully", [OtherMatch, OtherMatch], MasqueradeTarget),
        ("-j MASQUERADE --to-ports 1000-2000", [], OtherTarget),
        ("-m statistic --mode nth --every 2 --packet 0 -j ACCEPT", [OtherMatch], JumpTarget),
        ("-j DNAT --to-destination 10.0.0.1-10.0.0.3:80", [], OtherTarget),
        ("-m socket --transparent -j TPROXY --on-port 1 --on-ip 127.0.0.1 --tproxy-mark 0x1/0x1", [OtherMatch], OtherTarget),
        ("-j NOTRACK", [], OtherTarget),
        ("-m frobnicate --level 3 ! --deep -j ACCEPT", [UnknownMatch], JumpTarget),
        ("-p tcp -m mark --mark 0x1 -m tcp --dport 80 --weird 3 -j ACCEPT", [MarkMatch, UnknownMatch], JumpTarget),
        ("-j NFQUEUE --queue-num 3 --queue-bypass", [], UnknownTarget),
    ],
)  # fmt: skip
def test_node_rules_keep_typed_other_and_unknown_extensions(
    text: str, matches: list[type], target: type
) -> None:
    rule = parse_node_rule(text)
    assert [type(m) for m in rule.matches] == matches
    assert type(rule.target) is target
    assert rule.save_text() == text


def test_kube_proxys_own_parser_still_refuses_what_it_does_not_know() -> None:
    # (-m set is kube-proxy's own since IPVS mode; -m owner never is.)
    with pytest.raises(IptablesSyntaxError, match="unknown match extension 'owner'"):
        parse_rule("-m owner --uid-owner 0 -j ACCEPT")


def test_a_jump_to_no_chain_is_an_unknown_target() -> None:
    dump = parse_node_save("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j QUEUE\nCOMMIT\n")
    ((site, rule),) = dump.unknown_rules()
    assert site.line == 3 and rule.target == UnknownTarget("QUEUE")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("hello world\n", 1, "not iptables-save output"),
        ("", 1, "no '*table' line"),
        ("# just a comment\n", 1, "no '*table' line"),
        ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\n", 3, "without COMMIT: truncated"),
        ("*bogus\nCOMMIT\n", 1, "unknown table 'bogus'"),
        ("*filter\n-A NOPE -j ACCEPT\nCOMMIT\n", 2, "chain not declared"),
        ("*filter\n:X - [0:0]\n:X - [0:0]\nCOMMIT\n", 3, "declared twice"),
        ("*filter\n:X ACCEPT [0:0]\nCOMMIT\n", 2, "cannot have policy"),
        ("*filter\n:INPUT - [0:0]\nCOMMIT\n", 2, "not ACCEPT or DROP"),
        ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m comment --comment \"x -j ACCEPT\nCOMMIT\n", 3, "unterminated quote"),
        ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s 10.0.0.300 -j ACCEPT\nCOMMIT\n", 3, "invalid address"),
        ("*filter\n:INPUT ACCEPT [0:0]\n[1:x] -A INPUT -j ACCEPT\nCOMMIT\n", 3, "bad counters"),
        ("*filter\n:INPUT ACCEPT [0:0]\n-I INPUT -j ACCEPT\nCOMMIT\n", 3, "is not ':CHAIN' or '-A'"),
        ("*filter\n*nat\nCOMMIT\n", 2, "starts before *filter"),
    ],
)  # fmt: skip
def test_bad_input_names_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(NodeDumpError) as caught:
        parse_node_save(text)
    assert any(n == line and message in p for n, p in caught.value.problems), caught.value.problems
