"""A table made from another one with a few chains changed, without a pass per chain in Python.

A one-Service change rewrites a dozen chains of a nat table that may hold ~110,000 (10,000
Services x 10 endpoints). Building the changed table afresh costs a Python step per chain (its
by-name index, its names, its jump counts); these functions derive all three from the table it
is made from instead, with C-level copies (tuple slices, ``dict.copy``, ``map`` over
``dict.get``) plus work per changed chain. The result equals ``Table(name, chains)`` for the
same chains: only how fast it is made differs.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Collection, Mapping, Sequence
from typing import Final

from svcsim.netfilter.model import Chain, Table, add_jumps


def splice_range(base: Table, start: int, stop: int, new: Sequence[Chain]) -> Table:
    """``base`` with its chains ``[start:stop]`` replaced by ``new`` (in that order).

    No name of ``new`` may be held by a chain of ``base`` outside ``[start:stop]``. The jump
    counts are left to be counted on use: a compiled table is only asked for them once it
    is the kernel's, and copying ~110,000 counts at every compile would cost more.
    """
    old = base.chains[start:stop]
    added = tuple(new)
    # Tuple slicing and + copy pointers at C speed; star-unpacking would go through a list.
    chains = base.chains[:start] + added + base.chains[stop:]
    index = base._index.copy()
    for gone in old:
        del index[gone.name]
    for chain in added:
        index[chain.name] = chain
    names = base._names
    if names is not None:
        names = names[:start] + tuple(c.name for c in added) + names[stop:]
    return Table.derived(base.name, chains, index, names, None)


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
    index = base._index
    replaced = {n: c for n, c in replaced.items() if index[n] is not c}  # really replaced
    names = base.names()
    chains = base.chains
    if len(replaced) + len(deleted) <= FEW:
        chains, names = _edited_in_place(chains, names, replaced, deleted)
    else:
        if replaced:
            # dict.get(name, chain): the replacement, or the chain itself; one C-level pass.
            chains = tuple(map(replaced.get, names, chains))
        if deleted:
            gone = frozenset(deleted)
            keep = list(map(operator.not_, map(gone.__contains__, names)))
            chains = tuple(itertools.compress(chains, keep))
            names = tuple(itertools.compress(names, keep))
    if appended:
        chains = chains + tuple(appended)
        names = names + tuple(c.name for c in appended)
    index = index.copy()
    old: list[Chain] = []
    new: list[Chain] = []
    for name, chain in replaced.items():
        was = index[name]
        if was is not chain:
            old.append(was)
            new.append(chain)
            index[name] = chain
    for name in deleted:
        old.append(index.pop(name))
    for chain in appended:
        index[chain.name] = chain
    new += appended
    return Table.derived(base.name, chains, index, names, _jumps_after(base, old, new))


FEW: Final = 16
"""Up to this many chains replaced or deleted, each is found by name (``tuple.index``, a
C-level scan that stops at it) instead of mapping every chain of the table."""


def _edited_in_place(
    chains: tuple[Chain, ...],
    names: tuple[str, ...],
    replaced: Mapping[str, Chain],
    deleted: Collection[str],
) -> tuple[tuple[Chain, ...], tuple[str, ...]]:
    """``chains`` (named ``names``) with a few replaced by name and a few deleted."""
    for name, chain in replaced.items():
        at = names.index(name)
        chains = chains[:at] + (chain,) + chains[at + 1 :]  # noqa: RUF005 (C-level copy; same name)
    for name in deleted:
        at = names.index(name)
        chains = chains[:at] + chains[at + 1 :]
        names = names[:at] + names[at + 1 :]
    return chains, names


def _jumps_after(base: Table, old: Sequence[Chain], new: Sequence[Chain]) -> dict[str, int] | None:
    """``base``'s jump counts without ``old``'s rules and with ``new``'s (None: not counted)."""
    known = base.jump_counts_known()
    if known is None:
        return None
    jumps = known.copy()
    for chain in old:
        add_jumps(jumps, chain.rules, -1)
    for chain in new:
        add_jumps(jumps, chain.rules, 1)
    return jumps
