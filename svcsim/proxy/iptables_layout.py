"""Where each fragment's chains sit in an assembled iptables table, to replace one fragment's.

kube-proxy's partial sync writes only the chains of the Services that changed
(``syncProxyRules`` in kubernetes ``pkg/proxy/iptables/proxier.go`` @531be812: with
``MinimizeIPTablesRestore`` it sends an unchanged Service's ``KUBE-SVC/SVL/EXT/FW/SEP`` lines to
a discard buffer). svcsim's compiler does the same with the kernel state it builds: after a
one-Service change, the new table is the previous one with that service port's chains replaced
(:func:`splice_part`), not every chain of every Service put together again.

A table assembled from fragments (the fixed head, one block per service port, the fixed tail)
holds, in order: the built-in chains, the canary, then each fragment's declared chains, fragment
after fragment, then jump targets nobody declared. A :class:`TableLayout` records how many
chains each fragment placed there and which chains belong to one fragment alone; it exists only
when the table has that plain shape (:func:`layout_of` returns None otherwise, and the caller
assembles afresh).
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import ne
from typing import Final

from svcsim.netfilter.model import BUILTIN_CHAINS, Chain, Table
from svcsim.netfilter.table_splice import splice_range
from svcsim.netfilter.text import RulesetInterner

FOLD_AT: Final = 4096
"""Owner changes kept apart from the full map before a splice folds them in (one copy)."""


@dataclass(frozen=True, slots=True)
class TableLayout:
    """One assembled table and where each fragment's own chains are in it."""

    table: Table
    own: Mapping[str, int]
    """Chains declared, and written only, by one fragment: name -> that fragment's index,
    as of the layout a splice started from (see :attr:`own_changes`)."""
    own_changes: Mapping[str, int | None]
    """What splices since changed in :attr:`own` (None: no longer anyone's). Kept apart so
    that a splice copies this small map, not ~110,000 names; folded in when it grows."""
    counts: tuple[int, ...]
    """Per fragment: how many chains it declares (they follow each other in the table)."""
    first: int
    """Index in :attr:`Table.chains` of the first declared chain (after built-ins, canary)."""

    def owner(self, name: str) -> int | None:
        """The fragment that alone declares and writes chain ``name``, or None."""
        changes = self.own_changes
        if name in changes:
            return changes[name]
        return self.own.get(name)

    def start_of(self, part: int) -> int:
        """Index in :attr:`Table.chains` of fragment ``part``'s first declared chain."""
        return self.first + sum(self.counts[:part])


def layout_of(
    table: Table,
    declared: Sequence[Sequence[str]],
    written: Sequence[Collection[str]],
    fixed_names: Collection[str],
) -> TableLayout | None:
    """The layout of ``table`` assembled from fragments (None if it is not of the plain shape).

    ``declared[i]``: the chains fragment ``i`` declares, in order; ``written[i]``: those it
    writes rules to; ``fixed_names``: the chains placed before any declared one (built-ins, the
    canary). Plain means: no chain is declared twice or declared among ``fixed_names``, every
    written chain is declared (so a restore input of the fragments appends only to chains it
    declares), and the declared chains follow ``fixed_names``.
    """
    # Done with C-level maps over the ~110,000 chains of a 10,000-Service nat table.
    parts = range(len(declared))
    all_declared = tuple(itertools.chain.from_iterable(declared))
    declared_by = dict(zip(all_declared, _places(parts, declared), strict=True))
    if len(declared_by) != len(all_declared) or not declared_by.keys().isdisjoint(fixed_names):
        return None
    all_written = list(itertools.chain.from_iterable(written))
    owners = list(map(declared_by.get, all_written))
    if None in owners:
        return None  # a chain written without a declaration
    # A chain is shared if anyone but its declarer writes to it.
    shared = set(itertools.compress(all_written, map(ne, owners, _places(parts, written))))
    counts = tuple(map(len, declared))
    first = len(fixed_names)
    chain_names = table.names()
    if chain_names[first : first + len(all_declared)] != all_declared:
        return None
    own = declared_by
    for name in shared:
        del own[name]
    return TableLayout(table, own, {}, counts, first)


def _places(parts: range, names: Sequence[Collection[str]]) -> Iterator[int]:
    """Each fragment's index once per name of its ``names[i]``, in order."""
    return itertools.chain.from_iterable(map(itertools.repeat, parts, map(len, names)))


def fixed_chain_names(table: str, canary: str) -> tuple[str, ...]:
    """The chains an assembled ``table`` holds before any declared one."""
    return (*BUILTIN_CHAINS[table], canary)


def splice_part(
    layout: TableLayout,
    part: int,
    old: tuple[tuple[str, ...], Mapping[str, Chain]],
    new: tuple[tuple[str, ...], Mapping[str, Chain]],
    protected: Collection[str],
    interner: RulesetInterner,
) -> TableLayout | None:
    """``layout`` with fragment ``part``'s chains replaced: ``old`` -> ``new``.

    ``old`` and ``new`` are each the fragment's declared chain names and its written chains
    (name -> the chain of the rules it writes there). ``protected``: chains that must not
    leave the declared range (jump targets placed at the end when nobody declares them).
    None when the change is not a plain replacement (the fragment writes differently into a
    chain others write too, declares a chain someone else holds, ...): assemble afresh.
    """
    old_declared, old_written = old
    new_declared, new_written = new
    owner, table = layout.owner, layout.table
    if any(owner(name) != part for name in old_declared):
        return None
    if any(name in protected for name in old_declared):
        return None
    if len(set(new_declared)) != len(new_declared):
        return None
    for name in new_declared:
        if name in table and owner(name) != part:
            return None
    declared_set = set(new_declared)
    for name, chain in old_written.items():
        if owner(name) != part:
            other = new_written.get(name)
            if other is None or other.rules != chain.rules:
                return None
    for name in new_written:
        if name not in declared_set and (owner(name) == part or name not in old_written):
            return None
    chains = [new_written.get(name) or interner.chain(name, ()) for name in new_declared]
    start = layout.start_of(part)
    spliced = splice_range(table, start, start + layout.counts[part], chains)
    changes: dict[str, int | None] = dict(layout.own_changes)
    for name in old_declared:
        changes[name] = None
    for name in new_declared:
        changes[name] = part
    own = layout.own
    if len(changes) > FOLD_AT:
        folded = dict(own)
        for name, holder in changes.items():
            if holder is None:
                folded.pop(name, None)
            else:
                folded[name] = holder
        own, changes = folded, {}
    counts = (*layout.counts[:part], len(new_declared), *layout.counts[part + 1 :])
    return TableLayout(spliced, own, changes, counts, layout.first)
