"""A bounded memo: one named, size-capped cache for a pure function of frozen inputs.

Every node recompiles and replans the whole ruleset at every sync, although between two syncs
almost nothing changed; the proxy and sim layers therefore memoise pure functions of frozen
values. Each such cache is one :class:`BoundedMemo` object, named after what it holds and with
its cap stated where it is made, instead of a bare module-level dict.

Eviction is first-in first-out: when the memo is full, the entry inserted longest ago goes
before a new one is stored (insertion order, not recency of use). Memoised results are the
results the function would compute afresh, so a cache's contents never change what a caller
sees, only how fast it sees it.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

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
        """Store ``value`` for ``key`` (dropping the oldest entry first if full); return it."""
        entries = self._entries
        if len(entries) >= self.limit:
            del entries[next(iter(entries))]  # oldest first
        entries[key] = value
        return value

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"BoundedMemo({self.name!r}, {len(self._entries)}/{self.limit})"
