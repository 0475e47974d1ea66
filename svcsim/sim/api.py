"""The API server: the object store every controller and kube-proxy watches.

Writers call :meth:`ApiServer.apply` / :meth:`ApiServer.delete`; each watcher receives the
resulting :class:`WatchEvent` after its own delivery delay (a watch is a stream, so a watcher sees
events in the order the API server accepted them). Handlers only record changes (as kube-proxy's
do); nothing here decides when work happens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import simpy


class HasMeta(Protocol):
    """Any Kubernetes object of :mod:`svcsim.k8s.objects` (they all carry ``meta``)."""

    @property
    def meta(self) -> Any:  # noqa: D102 - protocol member
        ...


class EventType(StrEnum):
    """Watch event types, as Kubernetes names them."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change of one object: ``old`` is None for ADDED, ``new`` is None for DELETED."""

    kind: str
    type: EventType
    key: str
    old: Any
    new: Any
    t_s: float
    """Simulated time at which the API server accepted the change."""


Handler = Callable[[WatchEvent], None]


class Watch:
    """A subscription; :meth:`stop` ends delivery (events already in flight are dropped)."""

    def __init__(self, kinds: frozenset[str], handler: Handler, delay_s: float) -> None:
        if delay_s < 0:
            raise ValueError(f"negative watch delay {delay_s!r}")
        self.kinds = kinds
        self.handler = handler
        self.delay_s = delay_s
        self.active = True

    def stop(self) -> None:
        """Stop delivering events to this watcher."""
        self.active = False


class ApiServer:
    """Current objects by kind and ``namespace/name`` key, and the watches on them."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self._objects: dict[str, dict[str, Any]] = {}
        self._watches: list[Watch] = []

    def get(self, kind: str, key: str) -> Any:
        """The current object, or None."""
        return self._objects.get(kind, {}).get(key)

    def list(self, kind: str) -> list[Any]:
        """All current objects of ``kind``, sorted by key (deterministic iteration)."""
        objects = self._objects.get(kind, {})
        return [objects[k] for k in sorted(objects)]

    def apply(self, kind: str, obj: HasMeta) -> WatchEvent | None:
        """Create or replace an object; returns the event, or None if nothing changed."""
        key = obj.meta.key
        store = self._objects.setdefault(kind, {})
        old = store.get(key)
        if old == obj:
            return None
        store[key] = obj
        event_type = EventType.ADDED if old is None else EventType.MODIFIED
        return self._publish(WatchEvent(kind, event_type, key, old, obj, self.env.now))

    def delete(self, kind: str, key: str) -> WatchEvent | None:
        """Delete an object; returns the event, or None if it did not exist."""
        old = self._objects.get(kind, {}).pop(key, None)
        if old is None:
            return None
        return self._publish(WatchEvent(kind, EventType.DELETED, key, old, None, self.env.now))

    def watch(self, kinds: Iterable[str], handler: Handler, delay_s: float = 0.0) -> Watch:
        """Deliver future events of ``kinds`` to ``handler``, each ``delay_s`` after it happened.

        Like a Kubernetes informer started now: the caller lists current objects itself
        (:meth:`list`) when it needs the initial state.
        """
        w = Watch(frozenset(kinds), handler, delay_s)
        self._watches.append(w)
        return w

    def _publish(self, event: WatchEvent) -> WatchEvent:
        self._watches = [w for w in self._watches if w.active]
        # Watchers with equal delays share one timer; they are told in subscription order,
        # as their own timers (scheduled one after the other) would have fired.
        by_delay: dict[float, list[Watch]] = {}
        for w in self._watches:
            if event.kind in w.kinds:
                by_delay.setdefault(w.delay_s, []).append(w)
        for delay_s, watchers in by_delay.items():
            self._deliver(watchers, event, delay_s)
        return event

    def _deliver(self, watchers: Iterable[Watch], event: WatchEvent, delay_s: float) -> None:
        def fire(_: simpy.Event) -> None:
            for w in watchers:
                if w.active:
                    w.handler(event)

        # Even a zero delay is asynchronous: the writer finishes its step before anyone reacts.
        self.env.timeout(delay_s).callbacks.append(fire)
