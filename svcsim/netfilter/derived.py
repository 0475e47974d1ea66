"""Read-only containers made from others' parts without copying them whole.

A partial nftables sync changes a few chains of a 10,000-Service table (~110,000 chains,
~220,000 rules): the table after it, and its parse, are the last ones with a few parts
replaced. Copying a whole tuple or dict per sync would make the sync's cost follow the table's
size, not the change's. Two containers let a sync share what did not change:

* :class:`LazyTuple`: a tuple known by how to make it, made on first use (a sync the
  simulation installs is mostly never listed rule by rule);
* :class:`LayeredMap`: a mapping read through a shared base dict (never changed once shared)
  and its own changes to it; deriving one from another copies only the changes, and once those
  grow to an eighth of the base they are folded into a new base, so each change is copied a
  bounded number of times on average.

Both compare equal to the plain tuple / any mapping with the same contents, and pickle as one.
"""

from __future__ import annotations

from collections.abc import (
    Callable,
    Hashable,
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    Sequence,
    ValuesView,
)
from typing import Any, Final, TypeVar, overload

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

FOLD_MIN: Final = 1024
"""Changes a :class:`LayeredMap` keeps on its own before folding them into a new base, at least
(more for big bases: an eighth of the base)."""


class LazyTuple(Sequence[T]):
    """The tuple ``make()`` returns, made on first use and kept.

    Equal (and hashing equal) to that tuple; ``+`` with any sequence is another lazy tuple.
    """

    __slots__ = ("_flat", "_make")

    def __init__(self, make: Callable[[], tuple[T, ...]]) -> None:
        self._make: Callable[[], tuple[T, ...]] | None = make
        self._flat: tuple[T, ...] = ()

    def flat(self) -> tuple[T, ...]:
        """The tuple itself (made now if not yet)."""
        make = self._make
        if make is not None:
            self._flat = make()
            self._make = None  # frees what the maker held
        return self._flat

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[T, ...]: ...

    def __getitem__(self, index: int | slice) -> T | tuple[T, ...]:
        return self.flat()[index]

    def __len__(self) -> int:
        return len(self.flat())

    def __iter__(self) -> Iterator[T]:
        return iter(self.flat())

    def __contains__(self, item: object) -> bool:
        return item in self.flat()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyTuple):
            return other is self or self.flat() == other.flat()
        if isinstance(other, tuple):
            return self.flat() == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.flat())

    def __add__(self, other: Sequence[T]) -> LazyTuple[T]:
        return LazyTuple(lambda: self.flat() + tuple(other))

    def __radd__(self, other: Sequence[T]) -> LazyTuple[T]:
        return LazyTuple(lambda: tuple(other) + self.flat())

    def __repr__(self) -> str:
        return repr(self.flat())

    def __reduce__(self) -> tuple[Any, ...]:
        return (tuple, (self.flat(),))


class LayeredMap(Mapping[K, V]):
    """A read-only mapping: a shared ``base`` dict with this map's own changes over it.

    ``order`` (optional) gives the keys in the order iteration should list them (the map's
    keys, each once); without it the base's keys come first, then the added ones. Lookups never
    build anything; ``len``, iteration and the views fold base and changes into one dict once
    (then ``get`` is that dict's own, and the views are its views: a reader going through the
    whole map pays what it would for a dict).
    """

    __slots__ = ("_base", "_flat", "_order", "_removed", "_set", "get")

    def __init__(
        self,
        base: dict[K, V],
        changes: dict[K, V] | None = None,
        removed: frozenset[K] = frozenset(),
        order: Callable[[], Iterable[K]] | None = None,
    ) -> None:
        self._base = base
        """Shared with the maps derived from this one: never changed."""
        self._set: dict[K, V] = {} if changes is None else changes
        """Keys set over the base (never changed once the map is made)."""
        self._removed = removed
        """Base keys this map does not hold (none of them in :attr:`_set`)."""
        self._order = order
        self._flat: dict[K, V] | None = None if self._set or removed or order else base
        self.get: Callable[..., Any] = self._layered_get if self._flat is None else base.get
        """The value for a key, else the default (None): ``dict.get``'s signature."""

    def __getitem__(self, key: K) -> V:
        changes = self._set
        if changes and key in changes:
            return changes[key]
        if key in self._removed:
            raise KeyError(key)
        return self._base[key]

    def _layered_get(self, key: K, default: Any = None) -> Any:
        changes = self._set
        if changes and key in changes:
            return changes[key]
        if key in self._removed:
            return default
        return self._base.get(key, default)

    def __contains__(self, key: object) -> bool:
        if key in self._set:
            return True
        return key in self._base and key not in self._removed

    def flat(self) -> dict[K, V]:
        """The whole mapping as one dict (made once; read only)."""
        flat = self._flat
        if flat is None:
            if self._order is not None:
                flat = {k: self[k] for k in self._order()}
            else:
                removed = self._removed
                flat = {k: v for k, v in self._base.items() if k not in removed}
                flat.update(self._set)
            self._flat = flat
            self._order = None
            self.get = flat.get
        return flat

    def keys(self) -> KeysView[K]:
        """The keys (the folded dict's view)."""
        return self.flat().keys()

    def values(self) -> ValuesView[V]:
        """The values (the folded dict's view)."""
        return self.flat().values()

    def items(self) -> ItemsView[K, V]:
        """The items (the folded dict's view)."""
        return self.flat().items()

    def __len__(self) -> int:
        return len(self.flat())

    def __iter__(self) -> Iterator[K]:
        return iter(self.flat())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return self.flat() == (other.flat() if isinstance(other, LayeredMap) else dict(other))

    __hash__ = None  # type: ignore[assignment]  # a mapping: unhashable like dict

    def __repr__(self) -> str:
        return f"LayeredMap({self.flat()!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (self.flat(),))

    def derive(
        self,
        changes: Mapping[K, V],
        removed: Iterable[K] = (),
        order: Callable[[], Iterable[K]] | None = None,
    ) -> LayeredMap[K, V]:
        """A map of this one's keys with ``changes`` set and ``removed`` keys gone (removed first).

        Copies this map's own changes (not its base), unless they have grown past an eighth of
        the base: then the result gets a base of its own (one pass over the whole map).
        """
        base = self._base
        own = dict(self._set)
        gone = set(self._removed)
        for key in removed:
            own.pop(key, None)
            if key in base:
                gone.add(key)
        for key, value in changes.items():
            own[key] = value
            gone.discard(key)
        if len(own) + len(gone) > max(FOLD_MIN, len(base) >> 3):
            folded = {k: v for k, v in base.items() if k not in gone}
            folded.update(own)
            if order is not None:
                folded = {k: folded[k] for k in order()}
            return LayeredMap(folded)
        return LayeredMap(base, own, frozenset(gone), order)


DIFFERING_RUN: Final = 128
"""Runs of this many items :func:`differing` compares whole before looking inside."""


def differing(before: tuple[Any, ...], after: tuple[Any, ...]) -> list[int]:
    """The positions (ascending) where two tuples of one length hold unequal items.

    The tuples are compared whole, then run by run, and only unequal runs item by item: tuple
    comparison is a C-level pass that takes identical items as equal without asking them, so
    a few changes among 10,000 items cost about two passes, not 10,000 calls.
    """
    if len(before) != len(after):
        raise ValueError(f"tuples of {len(before)} and {len(after)} items")
    if before == after:
        return []
    found: list[int] = []
    step = DIFFERING_RUN
    for lo in range(0, len(before), step):
        hi = lo + step
        if before[lo:hi] != after[lo:hi]:
            found += (i for i in range(lo, min(hi, len(before))) if before[i] != after[i])
    return found


def as_tuple(items: Sequence[T]) -> tuple[T, ...]:
    """``items`` as a tuple (a :class:`LazyTuple`'s own, made if not yet)."""
    if isinstance(items, tuple):
        return items
    return items.flat() if isinstance(items, LazyTuple) else tuple(items)


def layered(mapping: Mapping[K, V]) -> LayeredMap[K, V]:
    """``mapping`` as a :class:`LayeredMap` (itself if it is one).

    A plain dict becomes the base: it must not be changed afterwards.
    """
    if isinstance(mapping, LayeredMap):
        return mapping
    return LayeredMap(mapping if isinstance(mapping, dict) else dict(mapping))
