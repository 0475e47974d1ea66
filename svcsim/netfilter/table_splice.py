"""A table made from another one with a few chains changed, without a pass per chain in Python.

A one-Service change rewrites a dozen chains of a nat table that may hold ~110,000 (10,000
Services x 10 endpoints). Building the changed table afresh costs a Python step per chain (its
by-name index, its names, its jump counts); these functions derive them from the table it is
made from instead: the chain tuple with one C-level copy, the by-name index and jump counts as
the shared maps of the older table plus this table's changes (folded into a copy once they
grow past :data:`FOLD_AT`), plus work per changed chain. The result equals
``Table(name, chains)`` for the same chains: only how fast it is made differs.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Collection, Mapping, Sequence
from typing import Final, TypeVar

from svcsim.netfilter.model import Chain, Table, add_jumps

V = TypeVar("V")

FEW: Final = 16
"""Up to this many chains replaced or deleted, each is found by its place
(:meth:`~svcsim.netfilter.model.Table.position`) instead of mapping every chain of the
table."""

FOLD_AT: Final = 4096
"""Changes kept beside a shared map before a derived table folds them into its own copy."""


def splice_range(base: Table, start: int, stop: int, new: Sequence[Chain]) -> Table:
    """``base`` with its chains ``[start:stop]`` replaced by ``new`` (in that order).

    No name of ``new`` may be held by a chain of ``base`` outside ``[start:stop]``. The names
    and jump counts are left to be derived on use: a compiled table is only asked for them
    once it is the kernel's (after a full sync), and carrying them through every compile
    would cost more.
    """
    old = base.chains[start:stop]
    added = tuple(new)
    # One copy into a list, the slice replaced in place, one copy back: each pass touches
    # every chain's reference count, so fewer passes (not slices concatenated) is faster.
    chain_list = list(base.chains)
    chain_list[start:stop] = added
    shared, changes = base.index_parts()
    index_changes: dict[str, Chain | None] = dict(changes)
    for gone in old:
        index_changes[gone.name] = None
    for chain in added:
        index_changes[chain.name] = chain
    index = _folded(shared, index_changes)
    return Table.derived(base.name, tuple(chain_list), index, None, None)


def rewrite_chains(
    base: Table,
    replaced: Mapping[str, Chain],
    deleted: Collection[str],
    appended: Sequence[Chain],
) -> Table:
    """``base`` with chains replaced in place (by name), some deleted, new ones appended.

    What ``iptables-restore --noflush`` leaves: a declared chain keeps its place with new rules,
    a new chain goes after the existing ones, ``-X`` removes one. Every name of ``replaced``
    and ``deleted`` must be a chain of ``base``; no name of ``appended`` may be.
    """
    replaced = {n: c for n, c in replaced.items() if base.chain(n) is not c}  # really replaced
    names = base.names()
    if len(replaced) + len(deleted) <= FEW:
        chain_list, names = _edited_in_place(base, replaced, deleted)
    else:
        # dict.get(name, chain): the replacement, or the chain itself; one C-level pass.
        chain_list = list(map(replaced.get, names, base.chains))
        if deleted:
            gone = frozenset(deleted)
            keep = list(map(operator.not_, map(gone.__contains__, names)))
            chain_list = list(itertools.compress(chain_list, keep))
            names = tuple(itertools.compress(names, keep))
    if appended:
        chain_list += appended
        names = names + tuple(c.name for c in appended)
    shared, changes = base.index_parts()
    index_changes: dict[str, Chain | None] = dict(changes)
    old: list[Chain] = []
    new: list[Chain] = []
    for name, chain in replaced.items():
        was = base.chain(name)
        assert was is not None  # replaced names are chains of base
        old.append(was)
        new.append(chain)
        index_changes[name] = chain
    for name in deleted:
        was = index_changes[name] if name in index_changes else shared[name]
        assert was is not None  # deleted names are chains of base
        old.append(was)
        index_changes[name] = None
    for chain in appended:
        index_changes[chain.name] = chain
    new += appended
    index = _folded(shared, index_changes)
    jumps = _jumps_after(base, old, new)
    positions = None
    known = base.position_parts()
    if known is not None:
        # Replaced chains keep their places; deleted ones leave their places noted (a later
        # chain's index is its place less the deleted places before it); appended ones
        # follow all places so far: the shared map holds.
        shared_places, added, gone_places = known
        if appended or deleted:
            added = dict(added)
        if deleted:
            places = [p for name in deleted if (p := _place_of(shared_places, added, name)) >= 0]
            gone_places = tuple(sorted((*gone_places, *places)))
            for name in deleted:
                added[name] = None
        first = len(base.chains) + len(known[2])
        for offset, chain in enumerate(appended):
            added[chain.name] = first + offset
        if len(added) + len(gone_places) <= FOLD_AT:
            positions = (shared_places, added, gone_places)
    return Table.derived(base.name, tuple(chain_list), index, names, jumps, positions)


def _place_of(shared: Mapping[str, int], added: Mapping[str, int | None], name: str) -> int:
    """``name``'s place in the shared numbering (-1: none)."""
    place = added[name] if name in added else shared.get(name)
    return -1 if place is None else place


def _edited_in_place(
    base: Table, replaced: Mapping[str, Chain], deleted: Collection[str]
) -> tuple[list[Chain], tuple[str, ...]]:
    """``base``'s chains edited: a list, and their names (a replacement keeps its name)."""
    chain_list = list(base.chains)
    names = base.names()
    for name, chain in replaced.items():
        chain_list[_place(base, name)] = chain
    if deleted:
        name_list = list(names)
        for at in sorted((_place(base, name) for name in deleted), reverse=True):
            del chain_list[at]
            del name_list[at]
        names = tuple(name_list)
    return chain_list, names


def _place(table: Table, name: str) -> int:
    """The index of chain ``name``, which ``table`` holds."""
    at = table.position(name)
    assert at is not None  # replaced and deleted names are chains of the table
    return at


def _jumps_after(
    base: Table, old: Sequence[Chain], new: Sequence[Chain]
) -> tuple[dict[str, int], dict[str, int]] | None:
    """``base``'s jump counts without ``old``'s rules and with ``new``'s (None: not counted)."""
    known = base.jump_parts()
    if known is None:
        return None
    shared, changes = known
    jumps = dict(changes)
    for chain in old:
        add_jumps(jumps, chain.rules, -1)
    for chain in new:
        add_jumps(jumps, chain.rules, 1)
    if len(jumps) <= FOLD_AT:
        return shared, jumps
    merged = shared.copy()
    for name, delta in jumps.items():
        merged[name] = merged.get(name, 0) + delta
    return merged, {}


def _folded(
    shared: dict[str, V], changes: dict[str, V | None]
) -> tuple[dict[str, V], dict[str, V | None]]:
    """``(shared, changes)``, or the two folded into one new map once the changes grew big."""
    if len(changes) <= FOLD_AT:
        return shared, changes
    merged = shared.copy()
    for name, value in changes.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged, {}
