"""The node-failure and node-partition scenarios: windows follow from the control plane's timers.

Every bound is derived from the scenario's own settings and the run's recorded events and
syncs: a failed node's window opens when it fails and closes once the lifecycle controller's
NotReady (first tick strictly after last Lease renewal + grace) has reached every node's rules
(that node's first sync ending after it); a partitioned node's closes with its first sync
after the heal.
"""

from __future__ import annotations

import math

import pytest

from svcsim.results import Cause, Outcome
from svcsim.scenario.load import load_scenario
from tests.scenarios.conftest import ShippedRun, scenario_path
from tests.scenarios.timing import EPS_S, event_times, first_sync, requests


def not_ready_s(name: str, t_fault: float) -> float:
    """NotReady time the scenario's nodeLifecycle settings give for a fault at ``t_fault``."""
    lc = load_scenario(scenario_path(name)).scenario.cluster.node_lifecycle
    renew = lc.node_lease_duration_seconds * 0.25
    last = math.floor(t_fault / renew) * renew
    k = math.floor((last + lc.node_monitor_grace_period_s) / lc.node_monitor_period_s) + 1
    return k * lc.node_monitor_period_s


def test_node_failure_windows_close_when_not_ready_reaches_the_rules(
    shipped_run: ShippedRun,
) -> None:
    run = shipped_run("node-failure")
    t_fail = event_times(run, "node-failed")[0]
    t_nr = not_ready_s("node-failure", t_fail)
    assert event_times(run, "node-not-ready") == pytest.approx([t_nr])
    windows = list(run.windows.itertuples(index=False))
    assert {w.node for w in windows} == {"node-1", "node-3", "node-4"}
    for w in windows:
        assert w.cause == Cause.NODE_DOWN.value
        assert t_fail - 1.0 <= w.start_s <= t_fail + 1.0  # in-flight requests fail too
        sync = first_sync(run, w.node, t_nr)
        assert t_nr - EPS_S <= w.end_s <= float(sync["end_s"]) + EPS_S
    # node-2's own client sent nothing while its node was down.
    down = requests(
        run, node="node-2", since_s=t_fail, until_s=event_times(run, "node-recovered")[0]
    )
    assert len(down) == 0
    failed = requests(run, failed=True)
    assert set(failed["outcome"]) == {Outcome.TIMEOUT.value}


def test_node_failure_evicts_and_replaces_after_the_toleration(shipped_run: ShippedRun) -> None:
    run = shipped_run("node-failure")
    lc = load_scenario(scenario_path("node-failure")).scenario.cluster.node_lifecycle
    t_nr = event_times(run, "node-not-ready")[0]
    t_evict = t_nr + lc.default_unreachable_toleration_seconds
    assert event_times(run, "pods-evicted") == pytest.approx([t_evict])
    replaced = [t for t in event_times(run, "pod-scheduled") if t > t_evict - EPS_S]
    assert len(replaced) == 2  # web's and frontend's Pods on node-2, elsewhere
    scheduled = run.events.loc[run.events["kind"] == "pod-scheduled"]
    late = scheduled.loc[scheduled["t_s"] > t_evict - EPS_S]
    assert "node-2" not in set(late["node"])  # tainted NoSchedule


def test_node_partition_fails_only_the_partitioned_nodes_clients(shipped_run: ShippedRun) -> None:
    run = shipped_run("node-partition")
    t_cut = event_times(run, "node-partitioned")[0]
    t_heal = event_times(run, "node-recovered")[0]
    assert t_heal == pytest.approx(t_cut + 90.0)
    windows = list(run.windows.itertuples(index=False))
    assert [w.node for w in windows] == ["node-3"]
    (w,) = windows
    assert w.cause == Cause.NODE_PARTITIONED.value
    assert w.start_s > t_cut
    sync = first_sync(run, "node-3", t_heal)
    assert float(sync["start_s"]) == pytest.approx(t_heal)  # the relist triggers it at once
    assert t_heal - EPS_S <= w.end_s <= float(sync["end_s"]) + EPS_S
    # The controller marked node-3 NotReady, and nothing was evicted (300 s > the partition).
    assert event_times(run, "node-not-ready") == pytest.approx(
        [not_ready_s("node-partition", t_cut)]
    )
    assert event_times(run, "pods-evicted") == []


def test_node_outages_for_the_timeline_figure(shipped_run: ShippedRun) -> None:
    from svcsim.plots.events import NodeOutage, node_outages

    run = shipped_run("node-failure")
    assert node_outages(run, 180.0) == [NodeOutage("node-2", 23.0, 150.0, "failed")]
    run = shipped_run("node-partition")
    assert node_outages(run, 150.0) == [NodeOutage("node-3", 20.0, 110.0, "partitioned")]
