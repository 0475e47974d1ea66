"""The userspace sync's rule edits written the plain way (whole rulesets, list scans).

What :mod:`svcsim.sim.userspace_proxy` did before it kept each portal's rules and looked
rules up by identity, and before it planned from ports indexed by Service; the tests compare
the two.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from svcsim.netfilter.model import BUILTIN_CHAINS, Rule, Ruleset, Table
from svcsim.proxy.endpoints import ServicePortInfo
from svcsim.proxy.names import ServicePortName
from svcsim.proxy.userspace import same_config
from svcsim.sim.userspace_proxy import UserspacePlan, UserspaceProcess


def chain_rules(ruleset: Ruleset, *, with_init: bool = True) -> tuple[tuple[str, str, Rule], ...]:
    """Every rule of ``ruleset`` as ``(table, chain, rule)`` in order; the built-in chains'
    (``iptablesInit``'s jumps) only ``with_init``."""
    return tuple(
        (t.name, c.name, r)
        for t in ruleset.tables
        for c in t.chains
        for r in c.rules
        if with_init or c.name not in BUILTIN_CHAINS[t.name]
    )


def _with_chain(ruleset: Ruleset, table: str, chain: str, rules: tuple[Rule, ...]) -> Ruleset:
    tables = []
    for t in ruleset.tables:
        if t.name == table:
            t = Table(
                t.name, tuple(replace(c, rules=rules) if c.name == chain else c for c in t.chains)
            )
        tables.append(t)
    return Ruleset(tuple(tables))


def ensure_rules(ruleset: Ruleset, wanted: Ruleset) -> Ruleset:
    """``EnsureRule(Append)`` for each rule of ``wanted``, by value."""
    out = ruleset
    for t in wanted.tables:
        for c in t.chains:
            current = out.chain(t.name, c.name)
            if current is None:
                continue
            missing = tuple(r for r in c.rules if r not in current.rules)
            if missing:
                out = _with_chain(out, t.name, c.name, current.rules + missing)
    return out


def delete_rules(ruleset: Ruleset, doomed: Ruleset) -> Ruleset:
    """``DeleteRule`` for each rule of ``doomed`` (its first occurrence by value)."""
    out = ruleset
    for t in doomed.tables:
        for c in t.chains:
            current = out.chain(t.name, c.name)
            if current is None or not c.rules:
                continue
            kept = list(current.rules)
            for rule in c.rules:
                if rule in kept:
                    kept.remove(rule)
            if len(kept) != len(current.rules):
                out = _with_chain(out, t.name, c.name, tuple(kept))
    return out


def scan_plan(
    process: UserspaceProcess,
    service_ports: Mapping[ServicePortName, ServicePortInfo],
    changed: Iterable[str],
) -> UserspacePlan:
    """``mergeService`` / ``unmergeService`` by scanning every port and every open portal."""
    wanted = set(changed)
    order = lambda spn: (spn.text, str(spn.protocol))  # noqa: E731
    close, open_ = [], []
    for spn in sorted((s for s in service_ports if s.service in wanted), key=order):
        portal = process.portals.get(spn)
        if portal is not None and same_config(portal.info, service_ports[spn]):
            continue
        if portal is not None:
            close.append(spn)
        open_.append((spn, service_ports[spn]))
    removed = sorted(
        (s for s in process.portals if s.service in wanted and s not in service_ports), key=order
    )
    return UserspacePlan((*close, *removed), tuple(open_), tuple(removed))
