"""kube-proxy's BoundedFrequencyRunner as a SimPy process: it alone decides *when* a sync runs.

Modelled on kubernetes ``pkg/proxy/runner/bounded_frequency_runner.go`` (the "new" runner, @95cca0b3
/ 0b467ff5; used by the iptables proxier @531be812 as
``NewBoundedFrequencyRunner("sync-runner", syncProxyRules, minSyncPeriod, syncPeriod,
proxyutil.FullSyncPeriod)``). Its ``Loop``:

1. waits until one of: a ``Run()`` request (a 1-slot channel, so any number of requests while
   one is queued coalesce), the max-interval timer, the retry timer;
2. runs ``fn``; timers are stopped while it runs, so a request made during the run is kept and
   served by the *next* run;
3. on error arms the retry timer (``retryInterval`` from the run's end), on success stops it;
   re-arms the max timer (``maxInterval`` from the run's end);
4. waits for ``minInterval`` measured from the run's **end** before going back to 1.

Consequences the tests pin down: a run starts no sooner than ``minInterval`` after the previous
run ended (no burst); a request during the retry wait runs at once (after the cool-down) and, if
it succeeds, cancels the retry; a retry shorter than ``minInterval`` fires when the cool-down
ends; the loop's first wait has no cool-down, so the first request runs at once. ``Run()``
before the loop is ready is dropped, as upstream does.

One deliberate simplification: when a request and a timer are both due at the same instant,
one run serves both (Go's ``select`` would pick one at random and leave the request queued for
one extra run after the cool-down).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Literal

import simpy

from svcsim.sim.alarms import Alarm, SharedAlarms

SyncFn = Callable[[], Generator[simpy.Event, Any, bool]]
"""A run: a SimPy generator that takes simulated time and returns True on success."""

Trigger = Literal["request", "retry", "periodic"]


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run of ``fn``: when it started and ended, whether it succeeded, what started it."""

    start_s: float
    end_s: float
    ok: bool
    trigger: Trigger


class BoundedFrequencyRunner:
    """Runs ``fn`` on request, at most once per ``min_interval_s`` after the previous run ended.

    ``retry_interval_s`` is kube-proxy's ``syncPeriod``; ``max_interval_s`` its
    ``FullSyncPeriod`` (1 h). Construct, then :meth:`start`; :meth:`stop` ends the loop
    (interrupting a run in progress, which then never completes).

    ``keep_history``: keep every run in :attr:`history` (tests). A simulation's runners do
    not: the syncs are recorded elsewhere, and a list of every run grows with simulated time
    (DESIGN.md decision 9). :attr:`runs` and :attr:`last_run` are kept either way.

    ``alarms``: the run's shared timers (:mod:`svcsim.sim.alarms`), so that runners in step
    share the timer of each wait; None: the runner's own.
    """

    def __init__(
        self,
        env: simpy.Environment,
        fn: SyncFn,
        *,
        min_interval_s: float,
        retry_interval_s: float,
        max_interval_s: float,
        name: str = "sync-runner",
        keep_history: bool = False,
        alarms: SharedAlarms | None = None,
    ) -> None:
        if min_interval_s < 0:
            raise ValueError(f"negative min_interval_s {min_interval_s!r}")
        if retry_interval_s <= 0:
            raise ValueError(f"retry_interval_s must be > 0, got {retry_interval_s!r}")
        if max_interval_s < min_interval_s:
            # Upstream panics: "maxInterval (%v) must be >= minInterval (%v)".
            raise ValueError(
                f"{name}: max_interval_s {max_interval_s!r} must be >= "
                f"min_interval_s {min_interval_s!r}"
            )
        self.env = env
        self.name = name
        self.min_interval_s = min_interval_s
        self.retry_interval_s = retry_interval_s
        self.max_interval_s = max_interval_s
        self._fn = fn
        self._ready = False
        self._requested = False
        self._wake: simpy.Event | None = None
        """Triggered by :meth:`run` while the loop waits (the request's first hop)."""
        self._resume: simpy.Event | None = None
        """What the waiting loop yields: triggered by the wake or by its alarm."""
        self._alarm: Alarm | None = None
        """The alarm the waiting loop joined."""
        self._alarms = alarms if alarms is not None else SharedAlarms()
        self._process: simpy.Process | None = None
        self._keep_history = keep_history
        self.history: list[RunRecord] = []
        """Every completed run, in order (empty unless ``keep_history``)."""
        self.runs = 0
        """Completed runs so far."""
        self.last_run: RunRecord | None = None
        """The latest completed run, or None before the first."""
        self.running_since_s: float | None = None
        """Start of the run in progress, or None between runs."""

    @property
    def ready(self) -> bool:
        """True while the loop runs (requests are accepted)."""
        return self._ready

    @property
    def requested(self) -> bool:
        """True if a request is queued (the 1-slot channel is full)."""
        return self._requested

    def start(self) -> simpy.Process:
        """Start the loop (``go bfr.Loop(stop)``); it is ready at once."""
        if self._process is not None:
            raise RuntimeError(f"{self.name}: already started")
        self._ready = True
        self._process = self.env.process(self._loop())
        return self._process

    def stop(self, cause: object = None) -> None:
        """End the loop; a run in progress is interrupted with ``cause``."""
        self._ready = False
        process = self._process
        if process is not None and process.is_alive:
            process.interrupt(cause)

    def run(self) -> None:
        """Ask for a run as soon as allowed (``Run()``: a non-blocking send, coalescing)."""
        if not self._ready or self._requested:
            return
        self._requested = True
        wake = self._wake
        if wake is not None and not wake.triggered:
            wake.succeed()

    def _loop(self) -> Generator[simpy.Event, Any, None]:
        env = self.env
        max_at = env.now + self.max_interval_s
        retry_at: float | None = None
        try:
            while True:
                trigger = yield from self._wait(max_at, retry_at)
                self._requested = False
                start = env.now
                self.running_since_s = start
                ok = yield from self._fn()
                self.running_since_s = None
                end = env.now
                record = RunRecord(start, end, ok, trigger)
                self.runs += 1
                self.last_run = record
                if self._keep_history:
                    self.history.append(record)
                retry_at = None if ok else end + self.retry_interval_s
                max_at = end + self.max_interval_s
                if self.min_interval_s > 0:
                    yield env.timeout(self.min_interval_s)
        except simpy.Interrupt:
            self._ready = False
            self.running_since_s = None
            if self._alarm is not None:
                self._alarm.leave(self)
                self._alarm = None

    def _wait(self, max_at: float, retry_at: float | None) -> Generator[simpy.Event, Any, Trigger]:
        """Block until a request or a timer is due; return what is due (requests first)."""
        env = self.env
        while True:
            if self._requested:
                return "request"
            now = env.now
            if retry_at is not None and retry_at <= now:
                return "retry"
            if max_at <= now:
                return "periodic"
            retry = retry_at if retry_at is not None else math.inf
            due: Trigger = "retry" if retry <= max_at else "periodic"
            # Two hops either way, as ``wake | timer`` had: the wake (or the timer) is
            # processed, then the resume event it triggers; other events of the same instant
            # keep their order relative to this loop's.
            alarm = self._alarm = self._alarms.alarm(env, min(retry, max_at) - now)
            resume = self._resume = env.event()
            wake = self._wake = env.event()
            wake.callbacks.append(self._woken)
            alarm.join(self, self._rung)
            yield resume
            alarm.leave(self)
            self._wake = self._resume = self._alarm = None
            if not self._requested and alarm.rang:
                # The timer is due even if float rounding left now a hair before it.
                return due

    def _woken(self, _: simpy.Event) -> None:
        """The wake was processed: resume the waiting loop (unless its alarm did already)."""
        self._rung()

    def _rung(self) -> None:
        resume = self._resume
        if resume is not None and not resume.triggered:
            resume.succeed()
