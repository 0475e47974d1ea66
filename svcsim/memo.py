"""The one memo helper: a named, size-capped cache for a pure function of frozen inputs.

Every node recompiles and replans the whole ruleset at every sync, although between two syncs
almost nothing changed; the netfilter, proxy and sim layers therefore memoise pure functions of
frozen values. Each such cache is one :class:`BoundedMemo`, named after what it holds, with its
cap stated where it is made, and a named field of the cache object that owns it for one run
(:class:`svcsim.sim.caches.RunCaches` lists them all). No memo lives at module level: two runs
in one process share none, and a run's memos go with it (DESIGN.md decision 8).

This module imports nothing of svcsim's, so every layer may use it.

Eviction is first-in first-out, the one idiom for every owned cache: when the memo is full, the
oldest eighth of its entries (by insertion, not recency of use) goes before a new one is
stored. Dropping them in one batch keeps eviction cheap: a dict iterates from its first slot,
over the slots of entries deleted since it last resized, so dropping the oldest entry one at a
time costs a scan of all those slots each time (quadratic; seconds for a 10,000-Service
ruleset). Memoised results are the results the function would compute afresh, so a cache's
contents never change what a caller sees, only how fast it sees it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedMemo(Generic[K, V]):
    """At most ``limit`` entries ``key -> value``; storing into a full memo drops the oldest.

    A memo keyed by object identity (a key with ``id(x)`` parts) passes the keyed objects as
    ``holds`` when it stores: the memo keeps them alive with the entry, so their ids cannot be
    taken by other objects while the entry lives, and a hit means the very same objects.
    """

    __slots__ = ("_entries", "_held", "get", "limit", "name")

    def __init__(self, name: str, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"memo {name!r} needs a limit >= 1, got {limit!r}")
        self.name = name
        """What the memo holds, for readers and debugging."""
        self.limit = limit
        """Entries kept before the oldest are dropped."""
        self._entries: dict[K, V] = {}
        self._held: dict[K, object] = {}
        """What each identity-keyed entry keeps alive (see the class docstring)."""
        self.get: Callable[[K], V | None] = self._entries.get
        """The stored value for a key, or None. The dict's own ``get`` (entries are only ever
        deleted from that one dict, never replaced): memos are asked in the compiler's
        per-service-port loops, where a Python call per lookup shows."""

    def put(self, key: K, value: V, holds: object = None) -> V:
        """Store ``value`` for ``key`` (dropping the oldest entries first if full); return it.

        ``holds``: the objects whose ids the key names (kept alive with the entry).
        """
        entries = self._entries
        if len(entries) >= self.limit and key not in entries:
            held = self._held
            for doomed in list(itertools.islice(entries, max(1, self.limit // 8))):
                del entries[doomed]
                if held:
                    held.pop(doomed, None)
        entries[key] = value
        if holds is not None:
            self._held[key] = holds
        return value

    def values(self) -> Iterator[V]:
        """The stored values, oldest first."""
        return iter(self._entries.values())

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"BoundedMemo({self.name!r}, {len(self._entries)}/{self.limit})"
