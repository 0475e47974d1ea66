"""A rule's iptables-save words with a render's memo are the words of its structure, joined."""

from __future__ import annotations

import pytest

from svcsim.k8s.objects import TrafficPolicy
from svcsim.netfilter.model import (
    DnatTarget,
    JumpTarget,
    MarkTarget,
    MasqueradeTarget,
    RejectTarget,
    Ruleset,
    Target,
    save_string,
    target_words,
)
from svcsim.netfilter.node_save import parse_node_save
from svcsim.netfilter.parse import parse_rule
from svcsim.proxy.iptables import compile_iptables
from tests.netfilter.node_dumps import DUMPS
from tests.proxy.flow_cases import cluster_ip_general, lb_with_policy, masquerade
from tests.proxy.test_iptables_cases import CTX


def _rulesets() -> dict[str, Ruleset]:
    out = {name: parse_node_save(path.read_text()).ruleset for name, path in DUMPS.items()}
    for name, (services, slices) in {
        "cluster_ip_general": cluster_ip_general(),
        "lb_local": lb_with_policy(TrafficPolicy.LOCAL),
        "masquerade": masquerade(),
    }.items():
        out[name] = compile_iptables(services, slices, CTX)
    return out


RULESETS = _rulesets()


@pytest.mark.parametrize("name", sorted(RULESETS))
def test_memoised_save_text_is_the_joined_save_args(name: str) -> None:
    ruleset = RULESETS[name]
    memo: dict[int, str] = {}  # one for the whole ruleset, as render_save keeps it
    rules = [rule for _, _, rule in ruleset.rules()]
    assert rules
    for rule in rules:
        want = " ".join(rule.save_args())
        assert rule.save_text(memo) == want
        assert rule.save_text() == want


@pytest.mark.parametrize(
    "target",
    [
        JumpTarget("KUBE-SEP-X"),
        JumpTarget("KUBE-SEP-X", goto=True),
        JumpTarget("ACCEPT"),
        DnatTarget("10.0.0.1", 8080),
        DnatTarget("10.0.0.1"),
        DnatTarget("fd00::1", 53),
        MarkTarget(0x4000, 0x4000),
        MasqueradeTarget(random_fully=True),
        RejectTarget(),
    ],
    ids=repr,
)
def test_target_words_are_the_joined_save_args(target: Target) -> None:
    assert target_words(target) == " ".join(target.save_args())


@pytest.mark.parametrize(
    "comment", ["plain", "ns/svc:p -> 10.0.0.1:80", 'say "hi"', "a\\b", "it's", ""]
)
def test_saved_comment_is_escaped_as_iptables_escapes_it(comment: str) -> None:
    escaped = "".join("\\" + c if c in "\"\\'" else c for c in comment)
    bare = bool(comment) and all(c.isascii() and (c.isalnum() or c in "_-") for c in comment)
    assert save_string(comment) == (comment if bare else f'"{escaped}"')


@pytest.mark.parametrize(
    "text",
    [
        "-s 10.0.0.1 -j KUBE-MARK-MASQ",
        "! -s 10.0.0.0/8 -j KUBE-MARK-MASQ",
        "! -s 10.0.0.0/8",
        "-s 10.0.0.1 -m comment --comment ns/svc:p -j KUBE-MARK-MASQ",
        "-m tcp -p tcp -j DNAT --to-destination 10.0.0.1:80",
        "! -p udp -j DROP",
        "-p tcp",
        "-m comment --comment x -m udp -p udp -j DNAT --to-destination 10.0.0.1:53",
        "-s 10.0.0.1 -p tcp -j ACCEPT",
        "-d 10.96.0.1 -j ACCEPT",
        "-m statistic --mode random --probability 0.5 -j KUBE-SEP-X",
    ],
)
def test_save_text_of_each_shape_is_the_joined_save_args(text: str) -> None:
    rule = parse_rule(text)
    memo: dict[int, str] = {}
    want = " ".join(rule.save_args())
    assert rule.save_text(memo) == want
    assert rule.save_text(memo) == want  # memo hits give the same words
