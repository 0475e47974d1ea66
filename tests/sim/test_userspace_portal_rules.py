"""The userspace sync's portal-rule edits == the plain whole-ruleset version (random cases).

:func:`_ensure_rules` and :func:`_delete_rules` look rules up by identity first and take each
portal's rules as made when it opened; on random kernels (portals' rules in any order, some
missing, some as equal copies that are not the same objects, duplicates) they must do exactly
what the plain value-comparing versions in tests/sim/userspace_naive.py do.
"""

from __future__ import annotations

import numpy as np
import pytest

from svcsim.netfilter.model import Rule, Ruleset, Table
from svcsim.netfilter.parse import _parse
from svcsim.proxy.endpoints import build_service_port_map
from svcsim.sim.userspace_proxy import (
    _INIT_RULES,
    Portal,
    _chain_rules,
    _delete_rules,
    _ensure_rules,
    _portal_rules,
)
from tests.sim.nft_splice_cases import services
from tests.sim.userspace_naive import delete_rules, ensure_rules

HOST = "192.168.0.2"


def _portals(rng: np.random.Generator) -> list[Portal]:
    ports = build_service_port_map(services())
    names = sorted(ports, key=lambda n: n.text)
    order = rng.permutation(len(names))
    return [Portal(names[i], ports[names[i]], 30000 + int(i)) for i in order]


def _kernel(rng: np.random.Generator, portals: list[Portal]) -> Ruleset:
    """Some portals' rules shuffled per chain, some re-made as equal copies, some twice."""
    base = _portal_rules([p for p in portals if rng.random() < 0.7], HOST)
    tables = []
    for t in base.tables:
        chains = []
        for c in t.chains:
            rules = [r for r in c.rules if rng.random() < 0.8]
            rules = [_parse(r.text, lenient=False) if rng.random() < 0.3 else r for r in rules]
            if rules and rng.random() < 0.2:
                rules.append(rules[int(rng.integers(0, len(rules)))])
            chains.append(
                type(c)(c.name, tuple(rng.permutation(np.array(rules, dtype=object))), c.policy)
                if rules
                else c
            )
        tables.append(Table(t.name, tuple(chains)))
    return Ruleset(tuple(tables))


def _grouped(rules: tuple[tuple[str, str, Rule], ...]) -> dict[tuple[str, str], list[Rule]]:
    out: dict[tuple[str, str], list[Rule]] = {}
    for table, chain, rule in rules:
        out.setdefault((table, chain), []).append(rule)
    return out


@pytest.mark.parametrize("seed", range(8))
def test_ensure_and_delete_match_the_plain_edits(seed: int) -> None:
    """Same rulesets after ensuring every portal and after deleting one portal's rules."""
    rng = np.random.default_rng(seed)
    portals = _portals(rng)
    kernel = _kernel(rng, portals)
    wanted = _INIT_RULES + tuple(
        r for p in portals for r in _chain_rules(_portal_rules([p], HOST), with_init=False)
    )
    full = _portal_rules(portals, HOST)
    assert _grouped(wanted) == _grouped(_chain_rules(full))  # each chain's rules, in order
    assert _ensure_rules(kernel, wanted) == ensure_rules(kernel, full)
    gone = portals[int(rng.integers(0, len(portals)))]
    doomed = _INIT_RULES + _chain_rules(_portal_rules([gone], HOST), with_init=False)
    assert _delete_rules(kernel, doomed) == delete_rules(kernel, _portal_rules([gone], HOST))
