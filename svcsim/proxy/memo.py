"""A bounded memo: one named, size-capped cache for a pure function of frozen inputs.

Every node recompiles and replans the whole ruleset at every sync, although between two syncs
almost nothing changed; the proxy and sim layers therefore memoise pure functions of frozen
values. Each such cache is one :class:`BoundedMemo` object, named after what it holds and with
its cap stated where it is made, instead of a bare module-level dict.

Eviction is first-in first-out: when the memo is full, the oldest eighth of its entries (by
insertion, not recency of use) goes before a new one is stored. Dropping them in one batch keeps
eviction cheap: a dict iterates from its first slot, over the slots of entries deleted since it
last resized, so dropping the oldest entry one at a time costs a scan of all those slots each
time (quadratic; seconds for a 10,000-Service ruleset). Memoised results are the
results the function would compute afresh, so a cache's contents never change what a caller
sees, only how fast it sees it.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedMemo(Generic[K, V]):
    """At most ``limit`` entries ``key -> value``; storing into a full memo drops the oldest.

    Callers that key by object identity (``id(x)``) store the keyed objects inside the value,
    so those ids cannot be reused by other objects while the entry lives.
    """

    __slots__ = ("_entries", "limit", "name")

    def __init__(self, name: str, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"memo {name!r} needs a limit >= 1, got {limit!r}")
        self.name = name
        """What the memo holds, for readers and debugging."""
        self.limit = limit
        """Entries kept before the oldest is dropped."""
        self._entries: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        """The stored value for ``key``, or None."""
        return self._entries.get(key)

    def put(self, key: K, value: V) -> V:
        """Store ``value`` for ``key`` (dropping the oldest entries first if full); return it."""
        entries = self._entries
        if len(entries) >= self.limit and key not in entries:
            drop_oldest(entries, self.limit)
        entries[key] = value
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"BoundedMemo({self.name!r}, {len(self._entries)}/{self.limit})"


def drop_oldest(entries: dict[Any, Any], limit: int) -> None:
    """Drop the oldest eighth of ``limit`` entries (at least one) from ``entries``."""
    doomed = list(itertools.islice(entries, max(1, limit // 8)))
    for key in doomed:
        del entries[key]
