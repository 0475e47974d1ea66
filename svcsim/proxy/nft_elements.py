"""The map and set elements of an nftables table assembled block by block, and their updates.

The compiler (:mod:`svcsim.proxy.nftables`) assembles its table from blocks: the fixed part
(block 0), then one block per service port in sync order. Each block lists the elements it
writes, ``(container, key) -> element``; the table holds them as ``dict.update`` over the blocks
in order would: a key's element is the one the *last* block writing it wrote, in the place of
the *first* block writing it. Usually each key has one writer; a Service's ports share its
cluster IP's ``cluster-ips`` element, and Services sharing an external IP and port (allowed by
the API) share a ``service-ips`` key.

:func:`replaced_elements` gives the elements after a few blocks are replaced from the last
ones, touching only the keys those blocks wrote before or write now: the keys with more than
one writer are kept with their writers, so the last writer of each touched key is known.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain

from svcsim.netfilter.derived import LayeredMap
from svcsim.netfilter.nftables import NftElement

ElementKey = tuple[str, tuple[str, ...]]
"""``(container, key parts)``: what one element is found by."""
ElementItems = tuple[tuple[ElementKey, NftElement], ...]
"""The elements one block writes, in the order it writes them."""


@dataclass(frozen=True, slots=True, eq=False)
class TableElements:
    """The elements of an assembled table, by key, and the keys written by several blocks."""

    by_key: LayeredMap[ElementKey, NftElement]
    """Each key's element: the one its last writer wrote (read only)."""
    shared: Mapping[ElementKey, tuple[int, ...]]
    """Keys written by two blocks or more: their writers' block numbers, ascending."""


def assembled_elements(
    by_key: dict[ElementKey, NftElement], blocks: Sequence[ElementItems]
) -> TableElements:
    """The elements of the table assembled from ``blocks``.

    ``by_key`` is their ``dict.update`` (taken over: not to be changed afterwards).
    """
    shared: dict[ElementKey, tuple[int, ...]] = {}
    if sum(map(len, blocks)) != len(by_key):  # some key has two writers (or one writes twice)
        writers: dict[ElementKey, list[int]] = {}
        for number, block in enumerate(blocks):
            for key, _ in block:
                found = writers.setdefault(key, [])
                if not found or found[-1] != number:
                    found.append(number)
        shared = {k: tuple(w) for k, w in writers.items() if len(w) > 1}
    return TableElements(LayeredMap(by_key), shared)


def flat_elements(blocks: Iterable[ElementItems]) -> tuple[NftElement, ...]:
    """The table's elements in order: ``dict.update`` over the blocks' items."""
    return tuple(dict(chain.from_iterable(blocks)).values())


def replaced_elements(
    old: TableElements,
    old_blocks: Sequence[ElementItems],
    new_blocks: Sequence[ElementItems],
    replaced: Sequence[int],
) -> TableElements:
    """The elements after the blocks numbered ``replaced`` (ascending) changed.

    ``old_blocks`` and ``new_blocks`` are every block's items before and after (the same
    objects where a block did not change). Work follows the replaced blocks' elements, plus a
    pass over the keys one of them writes and another block also does.
    """
    replaced_set = frozenset(replaced)
    old_own = {n: dict(old_blocks[n]) for n in replaced}
    new_own = {n: dict(new_blocks[n]) for n in replaced}
    touched: dict[ElementKey, None] = {}
    for n in replaced:
        touched.update(dict.fromkeys(old_own[n]))
        touched.update(dict.fromkeys(new_own[n]))
    before, shared = old.by_key, old.shared
    changes: dict[ElementKey, NftElement] = {}
    removed: list[ElementKey] = []
    shared_changes: dict[ElementKey, tuple[int, ...] | None] = {}
    for key in touched:
        new_writers = [n for n in replaced if key in new_own[n]]
        old_shared = shared.get(key)
        if old_shared is not None:
            kept = [n for n in old_shared if n not in replaced_set]
        elif key in before and not any(key in old_own[n] for n in replaced):
            # One writer, not replaced: it stays the key's last writer unless a replaced
            # block after it writes the key too, which needs its number: find it.
            kept = [] if not new_writers else [_writer(key, old_blocks, replaced_set)]
        else:
            kept = []
        writers = sorted((*kept, *new_writers))
        if not writers:
            removed.append(key)
            continue
        last = writers[-1]
        element = new_own[last][key] if last in replaced_set else dict(old_blocks[last])[key]
        if before.get(key) is not element:
            changes[key] = element
        wanted = tuple(writers) if len(writers) > 1 else None
        if wanted != old_shared:
            shared_changes[key] = wanted
    new_shared = shared
    if shared_changes:
        merged = dict(shared)
        for key, found in shared_changes.items():
            if found is None:
                merged.pop(key, None)
            else:
                merged[key] = found
        new_shared = merged
    if not changes and not removed:
        return TableElements(before, new_shared)
    return TableElements(before.derive(changes, removed), new_shared)


def _writer(key: ElementKey, blocks: Sequence[ElementItems], skip: frozenset[int]) -> int:
    """The one block (not in ``skip``) writing ``key``: a pass over the blocks (rare)."""
    for number, block in enumerate(blocks):
        if number not in skip and any(k == key for k, _ in block):
            return number
    raise KeyError(key)
