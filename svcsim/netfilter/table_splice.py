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

import bisect
import itertools
import operator
from collections.abc import Collection, Mapping, Sequence
from typing import Final, TypeVar

from svcsim.netfilter import model
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
    would cost more. Only the pieces of ``base`` (:meth:`~svcsim.netfilter.model.Table.chunks`)
    holding the range are copied; the others are shared.
    """
    added = tuple(new)
    chunks, old = replace_range(base.chunks(), start, stop, added)
    shared, changes = base.index_parts()
    index_changes: dict[str, Chain | None] = dict(changes)
    for gone in old:
        index_changes[gone.name] = None
    for chain in added:
        index_changes[chain.name] = chain
    index = _folded(shared, index_changes)
    return Table.derived(base.name, chunks, index, None, None)


Chunks = tuple[tuple[Chain, ...], ...]
"""A table's chains in consecutive pieces, none empty (:meth:`Table.chunks`)."""


def replace_range(
    chunks: Chunks, start: int, stop: int, new: tuple[Chain, ...]
) -> tuple[Chunks, tuple[Chain, ...]]:
    """``chunks`` with chains ``[start:stop]`` (of all of them, in order) replaced by ``new``.

    Returns the new pieces and the chains replaced. Only the pieces holding the range (or,
    for an empty range, the piece it starts in) are joined and cut again; a piece past
    twice :data:`~svcsim.netfilter.model.CHUNK` is cut into pieces of that size, and no
    piece is left empty.
    """
    ends = list(itertools.accumulate(map(len, chunks)))
    if not ends:
        return _cut(new), ()
    first = min(bisect.bisect_right(ends, start), len(ends) - 1)
    last = max(first, min(bisect.bisect_left(ends, stop), len(ends) - 1))
    begin = ends[first - 1] if first else 0
    held = list(itertools.chain.from_iterable(chunks[first : last + 1]))
    old = tuple(held[start - begin : stop - begin])
    held[start - begin : stop - begin] = new
    return chunks[:first] + _cut(held) + chunks[last + 1 :], old


def _cut(chains: Sequence[Chain]) -> Chunks:
    """``chains`` as one piece, or in pieces of :data:`CHUNK` when past twice that (none empty)."""
    if not chains:
        return ()
    if len(chains) <= 2 * model.CHUNK:
        return (tuple(chains),)
    size = model.CHUNK
    return tuple(tuple(chains[i : i + size]) for i in range(0, len(chains), size))


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
    names: tuple[str, ...] | None
    if len(replaced) + len(deleted) <= FEW:
        chunks, names = _edited_in_place(base, replaced, deleted)
    else:
        names = base.names()
        # dict.get(name, chain): the replacement, or the chain itself; one C-level pass.
        chain_list = list(map(replaced.get, names, base.chains))
        if deleted:
            gone = frozenset(deleted)
            keep = list(map(operator.not_, map(gone.__contains__, names)))
            chain_list = list(itertools.compress(chain_list, keep))
            names = tuple(itertools.compress(names, keep))
        chunks = _cut(chain_list)
    if appended:
        count = sum(map(len, chunks))
        chunks, _ = replace_range(chunks, count, count, tuple(appended))
        names = None  # derived when read, as after a deletion (see _edited_in_place)
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
        first = base.chain_count() + len(known[2])
        for offset, chain in enumerate(appended):
            added[chain.name] = first + offset
        if len(added) + len(gone_places) <= FOLD_AT:
            positions = (shared_places, added, gone_places)
    return Table.derived(base.name, chunks, index, names, jumps, positions)


def _place_of(shared: Mapping[str, int], added: Mapping[str, int | None], name: str) -> int:
    """``name``'s place in the shared numbering (-1: none)."""
    place = added[name] if name in added else shared.get(name)
    return -1 if place is None else place


def _edited_in_place(
    base: Table, replaced: Mapping[str, Chain], deleted: Collection[str]
) -> tuple[Chunks, tuple[str, ...] | None]:
    """``base``'s chains edited, in pieces, and their names (a replacement keeps its name).

    Only the pieces holding an edited chain are copied; the others are shared with ``base``.
    The names are ``base``'s when nothing is deleted; after a deletion they are left to be
    derived when asked (None): copying ~110,000 names at every restore that deletes a stale
    chain would cost more than the edit, and a sync asks for them only on a slow path
    (:func:`svcsim.sim.restore.chain_names` hands out a view that reads them when used).
    """
    chunks = base.chunks()
    ends = list(itertools.accumulate(map(len, chunks)))
    edits: dict[int, list[Chain]] = {}

    def held(at: int) -> tuple[list[Chain], int]:
        """The (copied) piece holding chain ``at`` and ``at``'s index in it."""
        piece = bisect.bisect_right(ends, at)
        copy = edits.get(piece)
        if copy is None:
            copy = edits[piece] = list(chunks[piece])
        return copy, at - (ends[piece - 1] if piece else 0)

    names = None if deleted else base.known_names()
    for name, chain in replaced.items():
        copy, at = held(_place(base, name))
        copy[at] = chain
    if deleted:
        places = sorted((_place(base, name) for name in deleted), reverse=True)
        for place in places:
            copy, at = held(place)
            del copy[at]
    pieces = list(chunks)
    for piece, copy in edits.items():
        pieces[piece] = tuple(copy)
    return tuple([piece for piece in pieces if piece]), names


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
