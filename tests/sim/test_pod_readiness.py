"""Readiness probes that fail on a schedule while the app keeps serving (fail_readiness)."""

from __future__ import annotations

import pytest

from svcsim.k8s.objects import Probe
from svcsim.sim.network import BackendState
from tests.sim.test_pods import make_world, spec


@pytest.mark.parametrize(
    ("period", "failure", "success", "start", "for_s", "not_ready", "ready"),
    [
        # Probes on the grid k*P from the container start (t=0 for a running Pod).
        (10, 3, 1, 15.0, 60.0, 40.0, 80.0),  # fails at 20, 30, 40; passes at 80
        (10, 1, 1, 15.0, 60.0, 20.0, 80.0),
        (10, 3, 2, 15.0, 60.0, 40.0, 90.0),  # two passes in a row: 80, 90
        (5, 2, 1, 12.0, 3.0, None, None),  # heals at 15, before the second failure
        (2, 3, 1, 0.5, 10.0, 6.0, 12.0),  # probes at 2, 4, 6 fail; heals at 10.5, passes at 12
    ],
)
def test_readiness_falls_and_comes_back_on_the_probe_grid(
    period: int,
    failure: int,
    success: int,
    start: float,
    for_s: float,
    not_ready: float | None,
    ready: float | None,
) -> None:
    w = make_world()
    probe = Probe(period_s=period, failure_threshold=failure, success_threshold=success)
    runner = w.fleet.start(spec(probe), "n1", running=True)
    w.at(start, lambda: runner.fail_readiness(start + for_s))
    w.env.run(until=start + for_s + 5 * period)
    assert w.times("pod-not-ready") == ([] if not_ready is None else [pytest.approx(not_ready)])
    became_ready = [t for t in w.times("pod-ready") if t > 0]  # a running Pod is ready at 0
    assert became_ready == ([] if ready is None else [pytest.approx(ready)])
    # The app never stopped serving: only the endpoint's readiness flapped.
    assert w.state_times(BackendState.DRAINING) == []
    assert runner.backend.state is BackendState.SERVING


def test_a_pod_without_probe_cannot_fail_readiness() -> None:
    w = make_world()
    runner = w.fleet.start(spec(None), "n1", running=True)
    assert runner.fail_readiness(10.0) is False
