"""Invariants of reading and walking real nodes' rules."""

from __future__ import annotations

import pytest

from svcsim.netfilter.node_save import parse_node_save
from svcsim.netfilter.packet import NodeNetwork, Packet
from svcsim.netfilter.parse import parse_node_rule, parse_rule
from svcsim.netfilter.paths import enumerate_walks
from tests.netfilter.node_dumps import DUMPS, without_counters

NETWORK = NodeNetwork(("10.0.0.11",), pod_cidr="10.244.1.0/24")
PROBES = [
    Packet("10.244.1.5", "10.96.0.50", "tcp", 80, origin="pod"),
    Packet("10.0.0.11", "10.96.0.50", "tcp", 80, origin="host"),
    Packet("203.0.113.7", "10.0.0.11", "tcp", 30090, origin="external"),
]


@pytest.mark.parametrize("name", sorted(DUMPS))
def test_the_lenient_parser_reads_kube_proxys_rules_as_its_own_parser_does(name: str) -> None:
    text = without_counters(DUMPS[name].read_text())
    kube_lines = [line for line in text.splitlines() if line.startswith("-A KUBE-")]
    assert kube_lines
    for line in kube_lines:
        args = line.split(" ", 2)[2]
        strict, lenient = parse_rule(args), parse_node_rule(args)
        assert (strict.matches, strict.target) == (lenient.matches, lenient.target)


@pytest.mark.parametrize("name", sorted(DUMPS))
def test_a_node_rule_reads_back_from_what_it_prints(name: str) -> None:
    for _table, _chain, rule in parse_node_save(DUMPS[name].read_text()).ruleset.rules():
        again = parse_node_rule(rule.save_text())
        assert (again.matches, again.target, again.save_text()) == (
            rule.matches,
            rule.target,
            rule.save_text(),
        )


@pytest.mark.parametrize("name", sorted(DUMPS))
@pytest.mark.parametrize("packet", PROBES, ids=lambda p: p.origin)
def test_the_paths_cover_every_draw_and_every_answer(name: str, packet: Packet) -> None:
    walks = enumerate_walks(parse_node_save(DUMPS[name].read_text()).ruleset, packet, NETWORK)
    assert walks.complete
    # Weigh each unknown answer as a coin toss: complete enumeration then sums to exactly 1.
    total = sum(p.probability / 2 ** len(p.assumptions) for p in walks.paths)
    assert total == 1
