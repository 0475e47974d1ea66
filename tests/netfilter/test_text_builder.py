"""RulesetBuilder: bulk appends and reuse of untouched chains give what single edits give."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from svcsim.netfilter.model import Ruleset
from svcsim.netfilter.text import RulesetBuilder, apply_restore, parse_rule, parse_save

BASE = parse_save(
    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:KEEP - [0:0]\n"
    ":EDIT - [0:0]\n-A INPUT -j KEEP\n-A KEEP -s 10.0.0.1 -j ACCEPT\n-A EDIT -j RETURN\nCOMMIT\n"
    "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
    ":POSTROUTING ACCEPT [0:0]\n:SVC - [0:0]\n-A SVC -j RETURN\nCOMMIT\n"
)
RULE = parse_rule("-s 10.0.0.9 -j DROP")

Edit = Callable[[RulesetBuilder], object]


def _delete_and_redeclare(b: RulesetBuilder) -> None:
    b.delete_chain("filter", "EDIT")
    b.chain("filter", "EDIT")


EDITS: dict[str, Edit] = {
    "none": lambda b: None,
    "append": lambda b: b.append("filter", "EDIT", RULE),
    "rule": lambda b: b.rule("filter", "EDIT", "-s", "10.0.0.9", "-j", "DROP"),
    "insert": lambda b: b.insert("filter", "EDIT", RULE, 0),
    "extend": lambda b: b.extend("filter", [("EDIT", RULE), ("NEW", RULE)]),
    "flush": lambda b: b.flush("filter", "EDIT"),
    "delete": lambda b: b.delete_chain("filter", "EDIT"),
    "delete+redeclare": _delete_and_redeclare,
    "policy": lambda b: b.set_policy("filter", "FORWARD", "ACCEPT"),
    "declare": lambda b: b.chain("filter", "EDIT"),
    "new table": lambda b: b.chain("mangle", "M"),
}


def rebuilt(ruleset: Ruleset, edit: Edit) -> Ruleset:
    """The edited ruleset built from scratch with single appends (no chain reused)."""
    b = RulesetBuilder()
    for table in ruleset.tables:
        b.table(table.name)
        for chain in table.chains:
            b.chain(table.name, chain.name)
            for rule in chain.rules:
                b.append(table.name, chain.name, rule)
            if chain.policy is not None:
                b.set_policy(table.name, chain.name, chain.policy)
    edit(b)
    return b.build()


@pytest.mark.parametrize("name", list(EDITS))
def test_copied_builder_edits_equal_fresh_builds_and_keep_untouched_chains(name: str) -> None:
    b = RulesetBuilder.from_ruleset(BASE)
    EDITS[name](b)
    got = b.build()
    assert got == rebuilt(BASE, EDITS[name])
    keep = got.chain("filter", "KEEP")
    assert keep is BASE.chain("filter", "KEEP")
    edited = got.chain("filter", "EDIT")
    if name in ("none", "declare", "policy", "new table"):
        assert edited is BASE.chain("filter", "EDIT")
    elif edited is not None:
        assert edited != BASE.chain("filter", "EDIT") or name == "delete+redeclare"


def test_extend_equals_appending_one_by_one() -> None:
    pairs = [("A", RULE), ("B", parse_rule("-j RETURN")), ("A", parse_rule("-j ACCEPT"))]
    bulk, single = RulesetBuilder(), RulesetBuilder()
    bulk.extend("nat", pairs)
    for chain, rule in pairs:
        single.append("nat", chain, rule)
    assert bulk.build() == single.build()
    built = bulk.build().chain("nat", "A")
    assert built is not None and len(built.rules) == 2


def test_restore_on_a_copy_reuses_only_chains_it_does_not_name() -> None:
    after = apply_restore(BASE, "*filter\n:EDIT - [0:0]\n-A EDIT -j ACCEPT\nCOMMIT\n")
    assert after.chain("filter", "KEEP") is BASE.chain("filter", "KEEP")
    assert after.chain("nat", "SVC") is BASE.chain("nat", "SVC")
    edit = after.chain("filter", "EDIT")
    assert edit is not None and [r.text for r in edit.rules] == ["-j ACCEPT"]
