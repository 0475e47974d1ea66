"""iptables text: rule arguments -> the exact iptables-save spelling, round trips, restore."""

from __future__ import annotations

import dataclasses
import gc

import pytest

from svcsim.netfilter.model import Rule, Ruleset
from svcsim.netfilter.text import (
    SAVE_STAMP,
    IptablesSyntaxError,
    RulesetBuilder,
    apply_restore,
    parse_rule,
    parse_save,
    render_restore,
    render_save,
)

# (what kube-proxy writes to iptables-restore, what iptables-save prints back). The save
# spellings are the real ones (kube-proxy-facts.md §0 and dumps of live nodes): generic matches
# first, /32 suffixes, probabilities re-printed from the 31-bit threshold, --set-xmark, REJECT
# with its type, recent with --mask and --rsource, quoted comments.
SAVE_SPELLINGS = [
    (
        '-m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 '
        "-j KUBE-SVC-XPGD46QRK7WJZT7O",
        '-d 172.30.0.41/32 -p tcp -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp '
        "--dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O",
    ),
    (
        '-m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 '
        "! -s 10.0.0.0/8 -j KUBE-MARK-MASQ",
        '! -s 10.0.0.0/8 -d 172.30.0.41/32 -p tcp -m comment --comment "ns1/svc1:p80 cluster IP" '
        "-m tcp --dport 80 -j KUBE-MARK-MASQ",
    ),
    (
        '-m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random '
        "--probability 0.3333333333 -j KUBE-SEP-SXIVWICOYRO3J4NJ",
        '-m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random '
        "--probability 0.33333333349 -j KUBE-SEP-SXIVWICOYRO3J4NJ",
    ),
    (
        "-m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ",
        '-s 10.180.0.1/32 -m comment --comment "ns1/svc1:p80" -j KUBE-MARK-MASQ',
    ),
    (
        "-m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80",
        '-p tcp -m comment --comment "ns1/svc1:p80" -m tcp -j DNAT --to-destination 10.180.0.1:80',
    ),
    ("-j MARK --or-mark 0x4000", "-j MARK --set-xmark 0x4000/0x4000"),
    ("-j MARK --xor-mark 0x4000", "-j MARK --set-xmark 0x4000/0x0"),
    ("-j MARK --set-mark 0x1", "-j MARK --set-xmark 0x1/0xffffffff"),
    ("-j MARK --and-mark 0xff", "-j MARK --set-xmark 0x0/0xffffff00"),
    ("-m mark ! --mark 0x4000/0x4000 -j RETURN", "-m mark ! --mark 0x4000/0x4000 -j RETURN"),
    (
        '-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE '
        "--random-fully",
        '-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE '
        "--random-fully",
    ),
    (
        '-m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.46 '
        "--dport 80 -j REJECT",
        '-d 172.30.0.46/32 -p tcp -m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp '
        "--dport 80 -j REJECT --reject-with icmp-port-unreachable",
    ),
    (
        '-m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" -m recent --name '
        "KUBE-SEP-I77PXRDZVX7PMWMN --rcheck --seconds 10800 --reap -j KUBE-SEP-I77PXRDZVX7PMWMN",
        '-m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" -m recent --rcheck --seconds 10800 '
        "--reap --name KUBE-SEP-I77PXRDZVX7PMWMN --mask 255.255.255.255 --rsource "
        "-j KUBE-SEP-I77PXRDZVX7PMWMN",
    ),
    (
        "-m comment --comment ns5/svc5:p80 -m recent --name KUBE-SEP-I77PXRDZVX7PMWMN --set "
        "-m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80",
        '-p tcp -m comment --comment "ns5/svc5:p80" -m recent --set --name '
        "KUBE-SEP-I77PXRDZVX7PMWMN --mask 255.255.255.255 --rsource -m tcp -j DNAT "
        "--to-destination 10.180.0.3:80",
    ),
    (
        '-m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in '
        'this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS',
        '-m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in '
        'this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS',
    ),
    (
        "-m comment --comment ns2/svc2:p80 -m tcp -p tcp -d 127.0.0.0/8 --dport 3001 "
        "-m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-GNZBNJ2PO5MGZ6GT",
        '-d 127.0.0.0/8 -p tcp -m comment --comment "ns2/svc2:p80" -m tcp --dport 3001 '
        "-m nfacct --nfacct-name  localhost_nps_accepted_pkts -j KUBE-EXT-GNZBNJ2PO5MGZ6GT",
    ),
    (
        '-m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 '
        "! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
        '! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet '
        'connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP',
    ),
    (
        "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ),
    ("-m conntrack --ctstate INVALID -j DROP", "-m conntrack --ctstate INVALID -j DROP"),
    ("-p udp --dport 53 -j ACCEPT", "-p udp -m udp --dport 53 -j ACCEPT"),
    ("-p tcp --sport 1000:2000 ! --dport 22", "-p tcp -m tcp --sport 1000:2000 ! --dport 22"),
    ("-s 10.1.2.3/8 -i veth+ -g KUBE-X", "-s 10.0.0.0/8 -i veth+ -g KUBE-X"),
    ("-o eth0 -j ACCEPT", "-o eth0 -j ACCEPT"),
    ("-m comment --comment plain-word -j ACCEPT", "-m comment --comment plain-word -j ACCEPT"),
]


@pytest.mark.parametrize(("restore_text", "save_text"), SAVE_SPELLINGS)
def test_rule_save_spelling(restore_text: str, save_text: str) -> None:
    rule = parse_rule(restore_text)
    assert rule.save_text() == save_text
    assert rule.text == restore_text


def _structure(rule: Rule) -> Rule:
    return dataclasses.replace(rule, text="")


@pytest.mark.parametrize(("restore_text", "save_text"), SAVE_SPELLINGS)
def test_save_text_parses_back_to_the_same_rule(restore_text: str, save_text: str) -> None:
    assert _structure(parse_rule(save_text)) == _structure(parse_rule(restore_text))
    assert parse_rule(save_text).save_text() == save_text


def _kube_proxy_like() -> Ruleset:
    builder = RulesetBuilder()
    builder.table("filter")
    builder.table("nat")
    builder.rule(
        "nat", "PREROUTING", '-m comment --comment "kubernetes service portals"', "-j KUBE-SERVICES"
    )
    for restore_text, _ in SAVE_SPELLINGS:
        builder.rule("nat", "KUBE-TEST", restore_text)
    builder.chain("nat", "KUBE-EMPTY")
    builder.rule("filter", "FORWARD", "-j KUBE-FORWARD")
    builder.rule("filter", "KUBE-FORWARD", "-m conntrack --ctstate INVALID -j DROP")
    builder.set_policy("filter", "FORWARD", "DROP")
    return builder.build()


def _shape(ruleset: Ruleset) -> dict[tuple[str, str], tuple[str | None, list[Rule]]]:
    return {
        (t.name, c.name): (c.policy, [_structure(r) for r in c.rules])
        for t in ruleset.tables
        for c in t.chains
    }


def test_save_round_trip_is_structural_identity() -> None:
    ruleset = _kube_proxy_like()
    saved = render_save(ruleset)
    again = parse_save(saved)
    assert _shape(again) == _shape(ruleset)
    assert render_save(again) == saved


def test_render_save_layout() -> None:
    lines = render_save(_kube_proxy_like(), tables=["filter"]).splitlines()
    assert lines == [
        f"# Generated by iptables-save v1.8.9 (nf_tables) on {SAVE_STAMP}",
        "*filter",
        ":INPUT ACCEPT [0:0]",
        ":FORWARD DROP [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":KUBE-FORWARD - [0:0]",
        "-A FORWARD -j KUBE-FORWARD",
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
        "COMMIT",
        f"# Completed on {SAVE_STAMP}",
    ]


def test_render_restore_keeps_kube_proxy_text_and_skips_builtins() -> None:
    text = render_restore(_kube_proxy_like(), tables=("nat",))
    lines = text.splitlines()
    assert lines[0] == "*nat" and lines[-1] == "COMMIT"
    assert ":KUBE-TEST - [0:0]" in lines and ":KUBE-EMPTY - [0:0]" in lines
    assert not any(line.startswith((":PREROUTING", "-A PREROUTING")) for line in lines)
    assert f"-A KUBE-TEST {SAVE_SPELLINGS[0][0]}" in lines


BASE = """*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-A - [0:0]
:KUBE-SEP-A - [0:0]
:KUBE-SEP-OLD - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-A
-A KUBE-SVC-A -j KUBE-SEP-A
-A KUBE-SEP-A -p tcp -m tcp -j DNAT --to-destination 10.0.0.1:80
-A KUBE-SEP-OLD -p tcp -m tcp -j DNAT --to-destination 10.0.0.9:80
COMMIT
"""


def _rules(ruleset: Ruleset, chain: str) -> list[str]:
    found = ruleset.chain("nat", chain)
    assert found is not None, chain
    return [r.save_text() for r in found.rules]


def test_noflush_replaces_only_declared_chains_and_x_deletes() -> None:
    base = parse_save(BASE)
    update = """*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-A - [0:0]
:KUBE-SEP-B - [0:0]
:KUBE-SEP-OLD - [0:0]
-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-A
-A KUBE-SVC-A -j KUBE-SEP-B
-A KUBE-SEP-B -p tcp -m tcp -j DNAT --to-destination 10.0.0.2:80
-X KUBE-SEP-OLD
COMMIT
"""
    after = apply_restore(base, update, noflush=True)
    assert _rules(after, "KUBE-SVC-A") == ["-j KUBE-SEP-B"]
    assert _rules(after, "KUBE-SEP-B") == ["-p tcp -m tcp -j DNAT --to-destination 10.0.0.2:80"]
    # KUBE-SEP-A was not named: it stays as it was (a partial sync leaves it in the kernel).
    assert _rules(after, "KUBE-SEP-A") == ["-p tcp -m tcp -j DNAT --to-destination 10.0.0.1:80"]
    assert after.chain("nat", "KUBE-SEP-OLD") is None
    assert _rules(after, "PREROUTING") == ["-j KUBE-SERVICES"]


def test_without_noflush_the_named_table_is_replaced() -> None:
    base = parse_save(BASE)
    after = apply_restore(
        base, "*nat\n:KUBE-NEW - [0:0]\n-A KUBE-NEW -j RETURN\nCOMMIT\n", noflush=False
    )
    assert after.chain("nat", "KUBE-SEP-A") is None
    assert _rules(after, "PREROUTING") == []
    assert _rules(after, "KUBE-NEW") == ["-j RETURN"]


def test_restore_insert_and_flush_and_policy() -> None:
    base = parse_save(BASE)
    after = apply_restore(
        base,
        "*nat\n-I PREROUTING -j KUBE-FIRST\n-I PREROUTING 2 -j KUBE-SECOND\n-F KUBE-SEP-A\n"
        ":KUBE-FIRST - [0:0]\n:KUBE-SECOND - [0:0]\n:POSTROUTING DROP [0:0]\nCOMMIT\n",
    )
    assert _rules(after, "PREROUTING") == ["-j KUBE-FIRST", "-j KUBE-SECOND", "-j KUBE-SERVICES"]
    assert _rules(after, "KUBE-SEP-A") == []
    postrouting = after.chain("nat", "POSTROUTING")
    assert postrouting is not None and postrouting.policy == "DROP"


def test_noflush_builtin_chain_line_sets_policy_without_flushing() -> None:
    after = apply_restore(parse_save(BASE), "*nat\n:PREROUTING DROP [0:0]\nCOMMIT\n")
    prerouting = after.chain("nat", "PREROUTING")
    assert prerouting is not None and prerouting.policy == "DROP"
    assert _rules(after, "PREROUTING") == ["-j KUBE-SERVICES"]


def test_set_mark_with_mask_clears_value_or_mask() -> None:
    assert parse_rule("-j MARK --set-mark 0x40/0x32").save_text() == (
        "-j MARK --set-xmark 0x40/0x72"
    )


@pytest.mark.parametrize(
    "text",
    [
        "-m bogus --foo 1 -j ACCEPT",  # unknown extension
        "-m tcp --dport 80 -j ACCEPT",  # -m tcp without -p tcp
        "-p tcp --dport",  # missing value
        "-s 10.0.0.0/8 !",  # dangling negation
        "-s 10.0.0.300 -j ACCEPT",  # bad address
        "-m statistic --mode random --probability 1.5 -j X",  # out of range
        "-m statistic --mode nth --every 2 -j X",  # unmodelled mode
        "-m recent --name X -j ACCEPT",  # no command
        "-p tcp --dport 70000 -j ACCEPT",  # bad port
        "-j MARK",  # no mark option
        "-j DNAT",  # no destination
        "--frobnicate 1",  # unknown option
        "stray -j ACCEPT",  # stray argument
        '-m comment --comment "unterminated -j ACCEPT',  # quote
    ],
)
def test_parse_rule_refuses(text: str) -> None:
    with pytest.raises(IptablesSyntaxError):
        parse_rule(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("*nat\n-A KUBE-X -j ACCEPT\n", "without COMMIT"),
        ("-A KUBE-X -j ACCEPT\n", "line 1"),
        ("*nat\n-Z KUBE-X\nCOMMIT\n", "line 2"),
        ("*nat\n-A KUBE-X -m bogus -j ACCEPT\nCOMMIT\n", "line 2"),
        ("*bogus\nCOMMIT\n", "line 1"),
        ("*nat\n-X PREROUTING\nCOMMIT\n", "built-in"),
        ("*nat\n:KUBE-X\nCOMMIT\n", "line 2"),
    ],
)
def test_restore_refuses_with_line_numbers(text: str, message: str) -> None:
    with pytest.raises(IptablesSyntaxError, match=message):
        parse_save(text)


def test_render_save_leaves_nothing_per_chain_for_the_cyclic_collector() -> None:
    """Containers kept per chain while rendering (~110,000 chains at 10,000 Services) count
    towards a collection; past a quarter of the long-lived objects they set off a full one,
    a walk of the whole compiled state. The render keeps strings only."""
    b = RulesetBuilder()
    for i in range(2000):
        b.rule(
            "nat", f"KUBE-SEP-{i:05d}", "-s", f"10.0.{i // 250}.{i % 250}", "-j", "KUBE-MARK-MASQ"
        )
    ruleset = b.build()
    was = gc.isenabled()
    gc.disable()
    try:
        before = gc.get_count()[0]
        text = render_save(ruleset)
        kept = gc.get_count()[0] - before
    finally:
        if was:
            gc.enable()
    assert text.count("\n-A KUBE-SEP-") == 2000
    assert kept < 100
