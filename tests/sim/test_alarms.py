"""Shared runner timers: runners in step arm one timer per due instant, and nothing else changes.

The World's main loop stops wherever ``env.peek()`` says (decision 3), so the test compares,
with shared timers and with one timer per runner, both the runs of every runner and the
instants the loop would stop at.
"""

from __future__ import annotations

import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from svcsim.sim.alarms import SharedAlarms
from tests.sim.alarm_cases import Outcome, in_step

# (requests per runner, sync durations, oks): runners 0 and 1 in step, runner 2 on its own.
CASES = [
    ([[0.0, 5.0], [0.0, 5.0], [2.0]], [0.25], [True]),
    # failed runs arm retry timers in step (30 s after their ends)
    ([[0.0], [0.0], [1.0]], [0.25], [False, True]),
    # nothing after the first run: the max-interval timer (100 s) fires for all
    ([[0.0], [0.0], [0.0]], [0.5], [True]),
    ([[1.0, 1.1, 1.7, 40.0], [1.0, 1.1, 1.7, 40.0], [1.7, 3.0]], [0.25, 1.0], [True, False]),
]


def test_cases_are_the_same_with_shared_timers() -> None:
    for requests, durations, oks in CASES:
        shared = in_step(requests, durations, oks, share=True)
        alone = in_step(requests, durations, oks, share=False)
        assert shared.histories == alone.histories, requests
        assert shared.stops == alone.stops, requests
        # Runners in step armed one timer per instant between them.
        assert shared.timers < alone.timers, requests


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0.0, 150.0, allow_nan=False), max_size=6),
    st.lists(st.floats(0.0, 150.0, allow_nan=False), max_size=6),
    st.lists(st.sampled_from([0.0, 0.25, 2.0]), min_size=1, max_size=3),
    st.lists(st.booleans(), min_size=1, max_size=3),
)
def test_shared_timers_change_no_run_and_no_stop(
    common: list[float], own: list[float], durations: list[float], oks: list[bool]
) -> None:
    requests = [common, list(common), own]
    shared: Outcome = in_step(requests, durations, oks, share=True)
    alone: Outcome = in_step(requests, durations, oks, share=False)
    assert shared.histories == alone.histories
    assert shared.stops == alone.stops


def test_an_alarm_is_forgotten_when_it_rings_and_tells_only_who_still_waits() -> None:
    env = simpy.Environment()
    alarms = SharedAlarms()
    told: list[str] = []
    first = alarms.alarm(env, 5.0)
    assert alarms.alarm(env, 5.0) is first  # due at the same instant: the same timer
    later = alarms.alarm(env, 6.0)
    assert later is not first and len(alarms) == 2
    first.join("a", lambda: told.append("a"))
    first.join("b", lambda: told.append("b"))
    first.leave("a")
    env.run(until=5.5)
    assert told == ["b"] and first.rang and not later.rang
    assert len(alarms) == 1
    # A new alarm for the instant that rang is a new timer.
    env2 = simpy.Environment()
    assert alarms.alarm(env2, 6.0) is not later  # another environment's timers are its own
