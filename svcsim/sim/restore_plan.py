"""A sync's restore input worked out from where chains are, and applied as data.

kube-proxy's partial sync (kubernetes ``pkg/proxy/iptables/proxier.go`` @531be812,
``syncProxyRules`` with ``MinimizeIPTablesRestore``) writes the filter table, the fixed nat
chains, and the ``KUBE-SVC/SVL/EXT/FW/SEP`` chains of the Services that changed. Which lines
those are follows from the compiled assembly (:class:`~svcsim.proxy.iptables_assembled.Assembly`
knows which fragment declares which chain), so :func:`plan_shape` finds the chains a plan
declares and the rules it writes without reading every line of the compiled input, and
:func:`rewritten` applies them to the kernel's table by replacing those chains in it
(:mod:`svcsim.netfilter.table_splice`). Both give exactly what reading the text gives
(:mod:`svcsim.sim.restore` keeps that path for compiled states of another shape; tests compare
the two).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import NamedTuple

from svcsim.netfilter.model import Chain, Ruleset, Table
from svcsim.netfilter.table_splice import rewrite_chains
from svcsim.netfilter.text import RulesetBuilder, RulesetInterner
from svcsim.proxy.iptables import IptablesSync
from svcsim.proxy.names import is_service_chain


class PlanShape(NamedTuple):
    """What a restore input declares, writes and deletes (its text aside)."""

    full: bool
    filter_declared: tuple[str, ...]
    """Filter chains declared (all of kube-proxy's, also in a partial sync), in order."""
    nat_declared: tuple[str, ...]
    """nat chains declared, in order: the fixed ones and the changed Services' (all, in a
    full sync), then the stale ones."""
    rules_written: int
    """``-A`` lines."""
    stale: tuple[str, ...]
    """Stale service chains (declared, then deleted with ``-X``), by name."""


def plan_shape(
    compiled: IptablesSync,
    changed: frozenset[str],
    *,
    full: bool,
    existing: Sequence[str],
    stale: bool,
    kernel_nat: Table | None = None,
) -> PlanShape | None:
    """The shape of the restore input for ``compiled`` (see :func:`svcsim.sim.restore.plan_sync`).

    ``stale``: delete stale chains; ``kernel_nat``: the kernel's nat table ``existing`` lists
    (None: unknown), which lets them be found without a scan (:func:`stale_chains`). None
    when the compiled state is not of the plain shape (no layout, a line holding a line
    break, a changed chain shared by several fragments).
    """
    assembly = compiled.assembly
    layout = assembly.nat
    nat_table = compiled.ruleset.table("nat")
    if layout is None or assembly.filter is None or nat_table is None:
        return None
    if not assembly.single_lines:
        return None
    if full:
        declared = [c for part in assembly.parts for c in part.nat_chains]
        rules = assembly.counts.filter_rules + assembly.counts.nat_rules
    else:
        holders = set(assembly.nat_fixed_parts)
        rules = assembly.counts.filter_rules + assembly.nat_fixed_rules
        for name in changed:
            holder = layout.owner(name)
            if holder is None:
                if name in nat_table:
                    return None  # written by several fragments: only the text tells
                continue  # not active: stale, or never there
            holders.add(holder)
            held = nat_table.chain(name)
            if held is not None and is_service_chain(name):
                rules += len(held.rules)
        parts = assembly.parts
        declared = [
            c
            for holder in sorted(holders)
            for c in parts[holder].nat_chains
            if c in changed or not is_service_chain(c)
        ]
    gone = stale_chains(existing, nat_table, kernel_nat) if stale else ()
    return PlanShape(full, assembly.filter_declared, (*declared, *gone), rules, gone)


def stale_chains(
    existing: Sequence[str], active: Table, kernel_nat: Table | None = None
) -> tuple[str, ...]:
    """The service chains of ``existing`` (the kernel's nat chains) not in ``active``, sorted.

    ``active`` is the compiled nat table (in the plain shape its service chains are exactly the
    active ones). When ``kernel_nat`` (the table ``existing`` lists) and ``active`` are both
    derived from the same shared by-name map (:meth:`~svcsim.netfilter.model.Table.index_parts`:
    a partial restore's table and an incremental compile's keep the map of the full sync they
    come from, with their own changes beside it), a name in neither table's changes is in both
    or in neither, so only the changed names can be stale: a few dozen lookups instead of one
    per chain (~110,000 at 10,000 Services). Otherwise every name is checked. Same result.
    """
    if kernel_nat is not None:
        kernel_shared, kernel_changes = kernel_nat.index_parts()
        active_shared, active_changes = active.index_parts()
        if kernel_shared is active_shared:
            candidates = kernel_changes.keys() | active_changes.keys()
            return tuple(
                sorted(
                    c
                    for c in candidates
                    if c in kernel_nat and c not in active and is_service_chain(c)
                )
            )
    inactive = itertools.filterfalse(active.by_name.__contains__, existing)
    return tuple(sorted(c for c in inactive if is_service_chain(c)))


def rewritten(
    kernel_ruleset: Ruleset,
    compiled: Ruleset,
    declared: tuple[tuple[str, tuple[str, ...]], ...],
    deleted: tuple[str, ...],
    interner: RulesetInterner,
) -> Ruleset:
    """``kernel_ruleset`` with the ``declared`` chains rewritten and the ``deleted`` ones gone.

    Each declared chain is flushed and refilled with ``compiled``'s rules (a new one is
    added after the existing chains, in declaration order), as iptables-restore does. Chains
    come from the run's ``interner`` (a rewritten chain equal to a compiled one is that
    object); untouched chains stay the kernel's own objects.
    """
    tables = {t.name: t for t in kernel_ruleset.tables}
    if any(name not in tables for name, _ in declared):
        return _rebuilt(kernel_ruleset, compiled, declared, deleted, interner)
    for name, chains in declared:
        base = tables[name]
        replaced: dict[str, Chain] = {}
        appended: dict[str, Chain] = {}
        for chain in chains:
            source = compiled.chain(name, chain)
            rules = source.rules if source is not None else ()
            held = base.chain(chain)
            policy = held.policy if held is not None else None
            if source is not None and source.policy == policy:
                new = source  # what the builder would intern: the compiled chain's very rules
            else:
                new = interner.chain(chain, rules, policy)
            if held is not None:
                replaced[chain] = new
            else:
                appended[chain] = new
        gone = [c for c in deleted if c in base] if name == "nat" else []
        for chain in deleted if name == "nat" else ():
            appended.pop(chain, None)  # declared, then deleted: never there
        tables[name] = rewrite_chains(base, replaced, gone, list(appended.values()))
    return interner.ruleset(tuple(tables.values()))


def _rebuilt(
    kernel_ruleset: Ruleset,
    compiled: Ruleset,
    declared: tuple[tuple[str, tuple[str, ...]], ...],
    deleted: tuple[str, ...],
    interner: RulesetInterner,
) -> Ruleset:
    """:func:`rewritten` through a builder (when the kernel lacks a table the input names)."""
    builder = RulesetBuilder.from_ruleset(kernel_ruleset, interner)
    for table, chains in declared:
        builder.table(table)
        for name in chains:
            builder.flush(table, name)
            source = compiled.chain(table, name)
            if source is not None:
                builder.extend(table, ((name, rule) for rule in source.rules))
    for name in deleted:
        builder.delete_chain("nat", name)
    return builder.build()
