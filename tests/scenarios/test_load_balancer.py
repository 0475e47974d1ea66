"""lb-drain-local(-prestop): an eTP Local load balancer steers away only after its health checks.

Bounds come from the scenario's settings and the run's events: the drained node's window opens
at the drain and closes when the load balancer drops the node, which happens at its
unhealthyThreshold-th failed probe after the node's kube-proxy synced the terminating endpoint.
"""

from __future__ import annotations

import math

from svcsim.results import Outcome
from svcsim.scenario.load import load_scenario
from tests.scenarios.conftest import ShippedRun, scenario_path
from tests.scenarios.timing import EPS_S, event_times, first_sync, requests


def test_drained_node_fails_until_the_load_balancer_drops_it(shipped_run: ShippedRun) -> None:
    run = shipped_run("lb-drain-local")
    lb = load_scenario(scenario_path("lb-drain-local")).scenario.cluster.load_balancer
    t_drain = event_times(run, "node-drained")[0]
    sync = first_sync(run, "node-2", t_drain + EPS_S)  # the sync that sees the terminating Pod
    first_failing_probe = (
        math.ceil(float(sync["end_s"]) / lb.check_interval_s) * lb.check_interval_s
    )
    dropped = first_failing_probe + (lb.unhealthy_threshold - 1) * lb.check_interval_s
    assert event_times(run, "lb-node-unhealthy", node="node-2") == [dropped]
    windows = list(run.windows.itertuples(index=False))
    assert [w.node for w in windows] == ["node-2"]
    (w,) = windows
    assert t_drain <= w.start_s < t_drain + 1.0
    assert dropped - 1.0 <= w.end_s <= dropped + EPS_S
    # node-4 has no endpoint until the replacement is ready: nothing reaches it before then.
    ready = [t for t in event_times(run, "pod-ready", node="node-4") if t > 0]
    joined = event_times(run, "lb-node-healthy", node="node-4")
    assert len(ready) == 1 and len(joined) == 1 and joined[0] > ready[0]
    assert len(requests(run, node="node-4", until_s=joined[0])) == 0


def test_a_prestop_sleep_longer_than_detection_loses_nothing(shipped_run: ShippedRun) -> None:
    run = shipped_run("lb-drain-local-prestop")
    assert (run.requests["outcome"] == Outcome.OK.value).all()
    t_drain = event_times(run, "node-drained")[0]
    dropped = event_times(run, "lb-node-unhealthy", node="node-2")[0]
    # The terminating Pod on node-2 kept serving what still arrived in between.
    served = requests(run, node="node-2", since_s=t_drain, until_s=dropped)
    assert len(served) > 100
