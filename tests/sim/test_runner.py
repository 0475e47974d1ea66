"""BoundedFrequencyRunner timing: request times in, run start times out.

Expected values follow kubernetes pkg/proxy/runner/bounded_frequency_runner.go (Loop / Run):
the cool-down counts from a run's end, requests coalesce in a 1-slot channel, a failed run is
retried after retryInterval unless a request comes first, maxInterval re-arms at each run's end.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Sequence
from typing import Any

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from svcsim.sim.runner import BoundedFrequencyRunner, RunRecord

EPS = 1e-9


def simulate(
    requests: Sequence[float],
    *,
    min_s: float = 1.0,
    retry_s: float = 30.0,
    max_s: float = 3600.0,
    durations: Sequence[float] = (0.25,),
    oks: Sequence[bool] = (True,),
    until: float = 100.0,
) -> list[RunRecord]:
    """Run a runner whose k-th run lasts ``durations[k]`` and returns ``oks[k]`` (last repeats)."""
    env = simpy.Environment()
    calls = 0

    def fn() -> Generator[simpy.Event, Any, bool]:
        nonlocal calls
        k = calls
        calls += 1
        yield env.timeout(durations[min(k, len(durations) - 1)])
        return oks[min(k, len(oks) - 1)]

    runner = BoundedFrequencyRunner(
        env,
        fn,
        min_interval_s=min_s,
        retry_interval_s=retry_s,
        max_interval_s=max_s,
        keep_history=True,
    )
    runner.start()
    for t in requests:
        env.timeout(t).callbacks.append(lambda _: runner.run())
    env.run(until=until)
    return runner.history


def starts(history: list[RunRecord]) -> list[tuple[float, str]]:
    return [(r.start_s, r.trigger) for r in history]


@pytest.mark.parametrize(
    ("requests", "kwargs", "expected"),
    [
        # The loop's first wait has no cool-down: the first request runs at once.
        ([0.0], {}, [(0.0, "request")]),
        ([5.0], {}, [(5.0, "request")]),
        # Requests during the run (0.1) and the cool-down (0.5) coalesce into one run when the
        # cool-down (1 s from the end at 0.25) is over.
        ([0.0, 0.1, 0.5], {}, [(0.0, "request"), (1.25, "request")]),
        # After the cool-down a request runs at once.
        ([0.0, 1.5], {}, [(0.0, "request"), (1.5, "request")]),
        # ... also exactly at the end of the cool-down.
        ([0.0, 1.25], {}, [(0.0, "request"), (1.25, "request")]),
        # The cool-down counts from the END of a long run.
        ([0.0, 0.5], {"durations": [3.0]}, [(0.0, "request"), (4.0, "request")]),
        # minSyncPeriod 0: a request made during a run is served right after it.
        ([0.0, 0.1], {"min_s": 0.0}, [(0.0, "request"), (0.25, "request")]),
        # A steady burst: one run per (duration + minInterval), never a burst of two.
        (
            [0.0, 0.3, 0.6, 0.9, 1.2, 1.5, 1.8],
            {},
            [(0.0, "request"), (1.25, "request"), (2.5, "request")],
        ),
        # maxInterval counts from the loop's start, then from each run's end.
        (
            [],
            {"max_s": 10.0, "until": 35.0},
            [(10.0, "periodic"), (20.25, "periodic"), (30.5, "periodic")],
        ),
        (
            [5.0],
            {"max_s": 10.0, "until": 30.0},
            [(5.0, "request"), (15.25, "periodic"), (25.5, "periodic")],
        ),
        # A failed run is retried retryInterval after its end.
        ([0.0], {"oks": [False, True]}, [(0.0, "request"), (30.25, "retry")]),
        # Repeated failures keep retrying; success stops it.
        (
            [0.0],
            {"oks": [False, False, True]},
            [(0.0, "request"), (30.25, "retry"), (60.5, "retry")],
        ),
        # A request during the retry wait runs at once; its success cancels the retry.
        ([0.0, 10.0], {"oks": [False, True]}, [(0.0, "request"), (10.0, "request")]),
        # ... and if it fails too, the retry is re-armed from its end.
        (
            [0.0, 10.0],
            {"oks": [False, False, True]},
            [(0.0, "request"), (10.0, "request"), (40.25, "retry")],
        ),
        # A request queued during the failing run runs after the cool-down, before the retry.
        ([0.0, 0.1], {"oks": [False, True]}, [(0.0, "request"), (1.25, "request")]),
        # A retry shorter than the cool-down fires when the cool-down ends.
        (
            [0.0],
            {"oks": [False, True], "min_s": 5.0, "retry_s": 2.0},
            [(0.0, "request"), (5.25, "retry")],
        ),
        # After a failure the retry replaces nothing else: the periodic run still comes.
        (
            [0.0],
            {"oks": [False, True], "max_s": 50.0},
            [(0.0, "request"), (30.25, "retry"), (80.5, "periodic")],
        ),
    ],
)
def test_run_start_times(
    requests: list[float], kwargs: dict[str, Any], expected: list[tuple[float, str]]
) -> None:
    got = starts(simulate(requests, **kwargs))
    assert [t for t, _ in got] == pytest.approx([t for t, _ in expected], abs=EPS)
    assert [k for _, k in got] == [k for _, k in expected]


def test_run_before_start_is_dropped() -> None:
    env = simpy.Environment()

    def fn() -> Generator[simpy.Event, Any, bool]:
        yield env.timeout(0.25)
        return True

    runner = BoundedFrequencyRunner(
        env, fn, min_interval_s=1.0, retry_interval_s=30.0, max_interval_s=20.0, keep_history=True
    )
    runner.run()  # the loop is not ready: upstream returns without queueing
    assert not runner.requested
    runner.start()
    env.run(until=15.0)
    assert runner.history == []
    env.run(until=21.0)
    assert starts(runner.history) == [(20.0, "periodic")]


def test_stop_interrupts_a_run_in_progress() -> None:
    env = simpy.Environment()
    finished: list[float] = []

    def fn() -> Generator[simpy.Event, Any, bool]:
        yield env.timeout(1.0)
        finished.append(env.now)
        return True

    runner = BoundedFrequencyRunner(
        env, fn, min_interval_s=0.0, retry_interval_s=30.0, max_interval_s=3600.0, keep_history=True
    )
    runner.start()
    runner.run()
    env.timeout(0.5).callbacks.append(lambda _: runner.stop("crash"))
    env.run(until=10.0)
    assert finished == []
    assert runner.history == []
    assert not runner.ready
    runner.run()  # dropped after stop
    assert not runner.requested


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_interval_s": 2.0, "max_interval_s": 1.0}, "must be >="),
        ({"min_interval_s": -1.0}, "negative"),
        ({"retry_interval_s": 0.0}, "retry_interval_s"),
    ],
)
def test_bad_intervals(kwargs: dict[str, float], message: str) -> None:
    env = simpy.Environment()

    def fn() -> Generator[simpy.Event, Any, bool]:
        yield env.timeout(0)
        return True

    args = {"min_interval_s": 1.0, "retry_interval_s": 30.0, "max_interval_s": 3600.0} | kwargs
    with pytest.raises(ValueError, match=message):
        BoundedFrequencyRunner(
            env,
            fn,
            min_interval_s=args["min_interval_s"],
            retry_interval_s=args["retry_interval_s"],
            max_interval_s=args["max_interval_s"],
        )


def test_max_equal_to_min_is_allowed() -> None:
    history = simulate([], min_s=5.0, max_s=5.0, until=16.0)
    assert starts(history) == [(5.0, "periodic"), (10.25, "periodic"), (15.5, "periodic")]


@settings(max_examples=200, deadline=None)
@given(
    requests=st.lists(st.floats(0.0, 40.0), max_size=25),
    durations=st.lists(st.floats(0.01, 3.0), min_size=1, max_size=10),
    oks=st.lists(st.booleans(), min_size=1, max_size=10),
    min_s=st.floats(0.0, 4.0),
    retry_s=st.floats(0.5, 10.0),
    max_extra=st.floats(0.0, 20.0),
)
def test_runner_invariants(
    requests: list[float],
    durations: list[float],
    oks: list[bool],
    min_s: float,
    retry_s: float,
    max_extra: float,
) -> None:
    max_s = min_s + max_extra
    until = 60.0
    history = simulate(
        requests,
        min_s=min_s,
        retry_s=retry_s,
        max_s=max_s,
        durations=durations,
        oks=oks,
        until=until,
    )
    for a, b in itertools.pairwise(history):
        # No burst: the next run starts minInterval after the previous one ENDED, or later.
        assert b.start_s >= a.end_s + min_s - EPS
        # At least once per maxInterval.
        assert b.start_s <= a.end_s + max(max_s, min_s) + EPS
        # A failure is retried within max(retryInterval, minInterval).
        if not a.ok:
            assert b.start_s <= a.end_s + max(retry_s, min_s) + EPS
    for r in requests:
        before = [h for h in history if h.start_s < r]
        after = [h for h in history if h.start_s >= r]
        bound = r if not before else max(r, before[-1].end_s + min_s)
        if bound < until - 5.0:
            # Every request is served: a run starts as soon as allowed after it.
            assert after, f"request at {r} never served"
            assert after[0].start_s <= bound + EPS
    for i, h in enumerate(history):
        if h.trigger == "request":
            lo = history[i - 1].start_s if i else -1.0
            assert any(lo <= r <= h.start_s + EPS for r in requests)


def test_without_history_only_the_count_and_the_last_run_are_kept() -> None:
    """A simulation's runner keeps no list of runs (it would grow with simulated time)."""
    env = simpy.Environment()

    def fn() -> Generator[simpy.Event, Any, bool]:
        yield env.timeout(0.25)
        return env.now < 3.0

    runner = BoundedFrequencyRunner(
        env, fn, min_interval_s=1.0, retry_interval_s=2.0, max_interval_s=3600.0
    )
    runner.start()
    for t in (0.0, 1.5, 3.0):
        env.timeout(t).callbacks.append(lambda _: runner.run())
    env.run(until=9.0)
    # Requests at 0, 1.5 and 3 (the last fails at 3.25), then retries 2 s after each failed
    # run's end: 5.25 and 7.5 (both fail).
    assert runner.history == []
    assert runner.runs == 5
    assert runner.last_run == RunRecord(7.5, 7.75, False, "retry")
