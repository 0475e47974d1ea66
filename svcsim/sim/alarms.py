"""One SimPy timer per instant for the run's sync runners: nodes in step share their timers.

Every kube-proxy's :class:`~svcsim.sim.runner.BoundedFrequencyRunner` arms a timer each time it
waits: the max-interval timer (``FullSyncPeriod``, one hour after the run's end) or the retry
timer. A request almost always comes first, and the timer stays in SimPy's queue until it is
due. With 100 nodes syncing every few seconds that is ~70,000 timers pending at any time of an
hour-long run, one per node and sync: memory that grows with the simulated time for the first
hour and a deep heap for every event.

Nodes in step end their syncs at the same instant and so arm timers due at the very same time.
:class:`SharedAlarms` keeps one timer per due time (the instant SimPy itself would compute,
``now + delay``); each waiter joins it and leaves when something else woke it first. The set of
instants in the queue is the same as with one timer per waiter, so ``env.peek()`` (where the
main loop stops to resolve traffic) stops at the same times; only the timers that no one waits
for any more are merged.
"""

from __future__ import annotations

from collections.abc import Callable

import simpy

Waiter = Callable[[], None]
"""Called (without arguments) when an alarm a waiter joined becomes due."""


class Alarm:
    """One timer and its waiters (in the order they joined).

    :attr:`rang` is True once the timer has been processed (its waiters have been told).
    """

    __slots__ = ("_owner", "_waiters", "timer", "when")

    def __init__(self, owner: SharedAlarms, timer: simpy.Timeout, when: float) -> None:
        self._owner = owner
        self._waiters: dict[object, Waiter] = {}
        self.timer = timer
        """The SimPy timer (due at :attr:`when`)."""
        self.when = when
        """The simulated time it is due at."""
        timer.callbacks.append(self._ring)

    @property
    def rang(self) -> bool:
        """True once the timer has been processed."""
        return self.timer.callbacks is None

    def join(self, who: object, waiter: Waiter) -> None:
        """Call ``waiter()`` when the alarm rings (``who`` names the waiter for :meth:`leave`)."""
        self._waiters[who] = waiter

    def leave(self, who: object) -> None:
        """``who`` no longer waits (a no-op if it never joined or the alarm has rung)."""
        self._waiters.pop(who, None)

    def _ring(self, _: simpy.Event) -> None:
        self._owner.forget(self)
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            waiter()


class SharedAlarms:
    """The pending :class:`Alarm` of each due time, for the runners of one SimPy environment.

    Owned by the run (:class:`~svcsim.sim.caches.RunCaches`, DESIGN.md decision 8); an alarm
    is forgotten when it rings, so what is held is what is pending.
    """

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: dict[float, Alarm] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def alarm(self, env: simpy.Environment, delay_s: float) -> Alarm:
        """The pending alarm due ``delay_s`` from now (made if there is none)."""
        when = env.now + delay_s  # exactly where SimPy queues a timeout of that delay
        found = self._pending.get(when)
        if found is not None and found.timer.env is env:
            return found
        made = Alarm(self, env.timeout(delay_s), when)
        self._pending[when] = made
        return made

    def forget(self, alarm: Alarm) -> None:
        """Drop ``alarm`` (it rang)."""
        if self._pending.get(alarm.when) is alarm:
            del self._pending[alarm.when]
