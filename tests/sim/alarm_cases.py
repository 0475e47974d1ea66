"""Helpers for tests/sim/test_alarms.py: runners driven by request times, with or without
shared timers, and what the World's loop would see of them."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import simpy

from svcsim.sim.alarms import SharedAlarms
from svcsim.sim.runner import BoundedFrequencyRunner, RunRecord

UNTIL_S = 400.0
MAX_INTERVAL_S = 100.0


@dataclass(frozen=True)
class Outcome:
    """Every runner's runs, the instants a peek-driven loop stops at, and timers armed."""

    histories: list[list[RunRecord]]
    stops: list[float]
    timers: int


def in_step(
    requests: Sequence[Sequence[float]],
    durations: Sequence[float],
    oks: Sequence[bool],
    *,
    share: bool,
) -> Outcome:
    """One runner per request list; the k-th run of each lasts ``durations[k]`` (last repeats).

    ``share``: the runners share one :class:`SharedAlarms` (as a run's kube-proxies do);
    else each has its own. The loop steps like the World's: every event at ``peek()``.
    """
    env = simpy.Environment()
    shared = SharedAlarms()
    timers = 0
    made = env.timeout

    def counting_timeout(delay: float, value: Any = None) -> simpy.Timeout:
        nonlocal timers
        timers += 1
        return made(delay, value)

    runners: list[BoundedFrequencyRunner] = []
    for times in requests:
        calls = [0]

        def fn(calls: list[int] = calls) -> Generator[simpy.Event, Any, bool]:
            k = calls[0]
            calls[0] += 1
            yield made(durations[min(k, len(durations) - 1)])
            return oks[min(k, len(oks) - 1)]

        runner = BoundedFrequencyRunner(
            env,
            fn,
            min_interval_s=1.0,
            retry_interval_s=30.0,
            max_interval_s=MAX_INTERVAL_S,
            keep_history=True,
            alarms=shared if share else SharedAlarms(),
        )
        runner.start()
        runners.append(runner)
        for t in sorted(times):
            made(t).callbacks.append(lambda _, r=runner: r.run())
    # Only the runners' own timers (cool-downs, alarms) are counted: requests and runs use
    # ``made``.
    env.timeout = counting_timeout  # type: ignore[method-assign]
    stops: list[float] = []
    while env.peek() < UNTIL_S:
        t = env.peek()
        stops.append(t)
        while env.peek() == t:
            env.step()
    return Outcome([r.history for r in runners], stops, timers)
