"""Rulesets built with one interner from the same rule objects are the same objects.

Different parts give different objects, and without a shared interner (a pure call) equal
rulesets are equal values but not the same objects.
"""

from __future__ import annotations

import pytest

from svcsim.netfilter.model import Ruleset
from svcsim.netfilter.text import (
    RULESETS_KEPT,
    RulesetBuilder,
    RulesetInterner,
    apply_restore,
    parse_save,
)

BASE = """*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-A - [0:0]
:KUBE-SVC-B - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-A
-A KUBE-SERVICES -d 10.96.0.2/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-B
-A KUBE-SVC-A -j DNAT --to-destination 10.0.0.1:80 -p tcp
-A KUBE-SVC-B -j DNAT --to-destination 10.0.0.2:80 -p tcp
COMMIT
"""


def test_same_parts_give_the_same_objects() -> None:
    interner = RulesetInterner()
    a, b = parse_save(BASE, interner), parse_save(BASE, interner)
    assert a is b
    copy = RulesetBuilder.from_ruleset(a, interner).build()
    assert copy is a


def test_without_a_shared_interner_equal_rulesets_are_new_objects() -> None:
    a, b = parse_save(BASE), parse_save(BASE)
    assert a == b and a is not b
    other = RulesetInterner()
    assert parse_save(BASE, RulesetInterner()) is not parse_save(BASE, other)


@pytest.mark.parametrize(
    ("edit", "changed"),
    [
        (
            "*nat\n:KUBE-SVC-B - [0:0]\n-A KUBE-SVC-B -j DNAT --to-destination 10.0.0.3:80 -p tcp\n"
            "COMMIT\n",
            "KUBE-SVC-B",
        ),
        ("*nat\n:PREROUTING DROP [0:0]\nCOMMIT\n", "PREROUTING"),
        ("*nat\n-A KUBE-SVC-A -j RETURN\nCOMMIT\n", "KUBE-SVC-A"),
    ],
)
def test_an_edit_makes_new_objects_only_for_what_it_changed(edit: str, changed: str) -> None:
    interner = RulesetInterner()
    base = parse_save(BASE, interner)
    after = apply_restore(base, edit, noflush=True, interner=interner)
    assert after is not base and after != base
    base_nat, after_nat = base.table("nat"), after.table("nat")
    assert base_nat is not None and after_nat is not None
    for chain in base_nat.chains:
        new = after_nat.chain(chain.name)
        assert (new is chain) == (chain.name != changed)
        assert (new == chain) == (chain.name != changed)


def test_empty_rulesets_compare_equal() -> None:
    assert RulesetBuilder().build() == Ruleset()


def test_the_interner_keeps_a_bounded_number_of_rulesets() -> None:
    # Every sync makes a new ruleset; the interner must not keep every superseded one (and its
    # index) alive for the whole run: at most RULESETS_KEPT, the newest still handed out again.
    interner = RulesetInterner()
    made = []
    for i in range(RULESETS_KEPT + 40):
        edit = (
            f"*nat\n-A KUBE-SVC-A -j DNAT --to-destination 10.0.{i // 250}.{i % 250}:80\nCOMMIT\n"
        )
        made.append(
            apply_restore(parse_save(BASE, interner), edit, noflush=True, interner=interner)
        )
    assert len(interner.rulesets) <= RULESETS_KEPT < len({id(r) for r in made})
    newest = made[-1]
    assert RulesetBuilder.from_ruleset(newest, interner).build() is newest
