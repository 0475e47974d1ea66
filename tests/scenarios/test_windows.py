"""Failure windows that follow from kube-proxy's sync timing: rollouts, a crash, a stale rule.

Each expected window end is derived from the run's own records: a Pod's deletion (events),
the configured watch delays, and the first sync on the node that could have seen it (syncs).
"""

from __future__ import annotations

import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pytest

from svcsim.results import Cause, Outcome
from tests.scenarios.conftest import ShippedRun
from tests.scenarios.timing import (
    ARITH_TOL_S,
    EPS_S,
    event_times,
    events,
    failures,
    first_sync,
    previous_sync_end_s,
    released_ips,
    requests,
    timing,
    windows_on,
)

WEB = "default/web:http"
LAST_FAILURE_SLACK_S = 0.3
"""How long before the fixing sync's end the last failure of a window may have been sent.

Sources send 100/s per node here and a quarter or more of them fail during a window, so the
chance of no failure in the last 0.3 s is below 1e-3 (and the seeds are fixed)."""


def _check_sync_arithmetic(
    name: str, run_syncs: pd.Series, node: str, visible_s: float, prev_end_s: float
) -> None:
    """A sync asked for at ``visible_s`` starts when the runner allows, lasts as the cost says."""
    t = timing(name)
    expected_start = max(visible_s, prev_end_s + t.min_sync_period_s(node))
    assert run_syncs["start_s"] == pytest.approx(expected_start, abs=ARITH_TOL_S)
    duration = t.sync_duration_s(node, int(run_syncs["rules_written"]))
    assert run_syncs["duration_s"] == pytest.approx(duration, abs=1e-6)
    assert run_syncs["end_s"] == pytest.approx(run_syncs["start_s"] + duration, abs=1e-6)


# --- rolling-update -------------------------------------------------------------------------


def test_rolling_update_windows_end_with_each_nodes_first_sync(shipped_run: ShippedRun) -> None:
    """Per deletion and node: failing from the deletion until the sync that drops the Pod."""
    run = shipped_run("rolling-update")
    t = timing("rolling-update")
    deletions = event_times(run, "pod-terminating", "default/web-")
    assert len(deletions) == 3
    assert len(run.windows) == 3 * len(t.nodes)
    lengths: dict[float, dict[str, float]] = {}
    for deleted in deletions:
        # The EndpointSlice marks it terminating apiWatch after the deletion.
        slices = events(run, "slice-updated", "default/web-")
        marked = slices.loc[(abs(slices["t_s"] - (deleted + t.api_watch_s)) < EPS_S).to_numpy()]
        assert any("terminating=1" in d for d in marked["detail"])
        lengths[deleted] = {}
        for node in t.nodes:
            visible = deleted + t.api_watch_s + t.kube_proxy_watch_s(node)
            sync = first_sync(run, node, visible)
            assert bool(sync["ok"])
            _check_sync_arithmetic(
                "rolling-update", sync, node, visible, previous_sync_end_s(run, node, sync)
            )
            found = windows_on(run, node, deleted, 0.5)
            assert len(found) == 1, (deleted, node)
            window = found.iloc[0]
            assert window["cause"] == Cause.STALE_RULE.value
            assert window["start_s"] >= deleted
            # Failing right up to the moment the new rules take effect, never after.
            assert sync["end_s"] - LAST_FAILURE_SLACK_S <= window["end_s"] <= sync["end_s"]
            lengths[deleted][node] = float(window["end_s"] - deleted)
    for deleted, per_node in lengths.items():
        # node-3's kube-proxy sees changes 1 s late: its windows are the longest.
        assert max(per_node, key=lambda n: per_node[n]) == "node-3", (deleted, per_node)


def test_rolling_update_times_out_only_once_the_ip_is_gone(shipped_run: ShippedRun) -> None:
    """Before the IP is released the closed port answers RST (refused); after, a black hole."""
    run = shipped_run("rolling-update")
    released = released_ips(run)
    failed = failures(run)
    assert set(failed["outcome"]) == {Outcome.REFUSED.value, Outcome.TIMEOUT.value}
    timeouts = failed.loc[(failed["outcome"] == Outcome.TIMEOUT.value).to_numpy()]
    for row in timeouts.itertuples(index=False):
        assert row.t_s >= released[str(row.endpoint).rpartition(":")[0]] - EPS_S
    refused = failed.loc[(failed["outcome"] == Outcome.REFUSED.value).to_numpy()]
    for row in refused.itertuples(index=False):
        assert row.t_s < released[str(row.endpoint).rpartition(":")[0]] + EPS_S
    # Only node-3's windows (the slow watch) outlast exit + ipTeardown.
    assert set(timeouts["src_node"]) == {"node-3"}


# --- rolling-update-prestop -----------------------------------------------------------------


def test_prestop_longer_than_programming_latency_means_no_failure(
    shipped_run: ShippedRun,
) -> None:
    run = shipped_run("rolling-update-prestop")
    t = timing("rolling-update-prestop")
    assert run.summary["requests"]["failed"] == 0
    assert run.windows.empty
    pre_stop_s = t.deployment("web").template.pre_stop_s
    assert pre_stop_s == 5.0
    deletions = event_times(run, "pod-terminating", "default/web-")
    assert len(deletions) == 3
    for deleted in deletions:
        for node in t.nodes:
            visible = deleted + t.api_watch_s + t.kube_proxy_watch_s(node)
            sync = first_sync(run, node, visible)
            # Why nothing fails: every node dropped the Pod before its SIGTERM.
            assert bool(sync["ok"]) and sync["end_s"] < deleted + pre_stop_s


# --- proxy-crash ----------------------------------------------------------------------------


def _proxy_crash_recovery(shipped_run: ShippedRun) -> tuple[float, pd.Series]:
    """The restart time on node-3 and its first sync after it."""
    run = shipped_run("proxy-crash")
    (restart,) = event_times(run, "proxy-restarted", node="node-3")
    return restart, first_sync(run, "node-3", restart)


def test_proxy_crash_fails_only_node_3_until_one_sync_after_restart(
    shipped_run: ShippedRun,
) -> None:
    run = shipped_run("proxy-crash")
    t = timing("proxy-crash")
    (crash,) = event_times(run, "proxy-crashed", node="node-3")
    restart, sync = _proxy_crash_recovery(shipped_run)
    failed = failures(run)
    assert len(failed) > 1000
    assert set(failed["src_node"]) == {"node-3"}
    # No sync on node-3 while kube-proxy is down.
    assert first_sync(run, "node-3", crash)["start_s"] == sync["start_s"]
    # Restart: informers sync, then a full sync at once.
    assert sync["start_s"] == pytest.approx(restart + t.informer_sync_s("node-3"), abs=ARITH_TOL_S)
    assert bool(sync["full"]) and bool(sync["ok"])
    _check_sync_arithmetic(
        "proxy-crash",
        sync,
        "node-3",
        restart + t.informer_sync_s("node-3"),
        previous_sync_end_s(run, "node-3", sync),
    )
    # The window closes within one sync after the restart: restart + informerSync + sync.
    last = float(failed["t_s"].max())
    assert sync["end_s"] - 0.1 <= last <= sync["end_s"]
    assert (run.windows["end_s"] <= sync["end_s"]).all()
    after = requests(run, node="node-3", since_s=float(sync["end_s"]))
    assert len(after) > 100 and (after["outcome"] == Outcome.OK.value).all()
    # Nothing fails before the first old Pod stops accepting (SIGTERM after its preStop).
    first_sigterm = event_times(run, "pod-terminating", "default/web-")[0] + 5.0
    assert float(failed["t_s"].min()) >= first_sigterm - EPS_S
    # While kube-proxy is down, every failure is attributed to it.
    before = failed.loc[(failed["t_s"] < restart).to_numpy()]
    assert set(before["cause"]) == {Cause.PROXY_DOWN.value}
    assert run.windows.iloc[0]["cause"] == Cause.PROXY_DOWN.value


def test_proxy_crash_failures_until_first_sync_after_restart_are_proxy_down(
    shipped_run: ShippedRun,
) -> None:
    run = shipped_run("proxy-crash")
    restart, sync = _proxy_crash_recovery(shipped_run)
    during = failures(run).loc[lambda f: (f["t_s"] >= restart) & (f["t_s"] < sync["end_s"])]
    assert len(during) > 50
    assert set(during["cause"]) == {Cause.PROXY_DOWN.value}


# --- stale-rules ----------------------------------------------------------------------------


def _stale_rule_action() -> tuple[str, str]:
    """Node and endpoint of the scenario's inject-stale-rule actions (both the same)."""
    actions = [
        a for a in timing("stale-rules").loaded.scenario.timeline if a.action == "inject-stale-rule"
    ]
    assert len(actions) == 2 and len({(a.node, a.endpoint) for a in actions}) == 1
    return actions[0].node, actions[0].endpoint


def test_stale_rule_black_holes_a_quarter_of_one_nodes_flows(shipped_run: ShippedRun) -> None:
    run = shipped_run("stale-rules")
    node, endpoint = _stale_rule_action()
    failed = failures(run)
    assert len(failed) > 500
    assert set(failed["src_node"]) == {node}
    assert set(failed["service"]) == {"default/web:http"}
    assert set(failed["endpoint"]) == {endpoint}
    assert set(failed["outcome"]) == {Outcome.TIMEOUT.value}
    injected = event_times(run, "fault", node=node)
    assert len(injected) == 2
    first = requests(run, node=node, service=WEB, since_s=injected[0], until_s=injected[0] + 25)
    share = (first["outcome"] != Outcome.OK.value).mean()
    # First in a chain of 3 endpoints, with probability 1/(3+1).
    assert share == pytest.approx(0.25, abs=0.04)


def test_stale_rule_goes_with_its_own_services_partial_sync(shipped_run: ShippedRun) -> None:
    """Round 1: web changes; node-1's partial sync rewrites web's KUBE-SVC chain."""
    run = shipped_run("stale-rules")
    t = timing("stale-rules")
    node, _ = _stale_rule_action()
    injected = event_times(run, "fault", node=node)
    web_changes = [x for x in event_times(run, "slice-updated", "default/web-") if x > injected[0]]
    visible = web_changes[0] + t.kube_proxy_watch_s(node)
    sync = first_sync(run, node, visible)
    assert bool(sync["ok"]) and not bool(sync["full"])
    _check_sync_arithmetic("stale-rules", sync, node, visible, previous_sync_end_s(run, node, sync))
    round1 = failures(run).loc[lambda f: f["t_s"] < injected[1]]
    assert float(round1["t_s"].min()) >= injected[0]
    assert sync["end_s"] - LAST_FAILURE_SLACK_S <= float(round1["t_s"].max()) <= sync["end_s"]
    assert set(round1["cause"]) == {Cause.STALE_RULE.value}


def test_stale_rule_breaks_other_services_partial_sync_until_a_full_one(
    shipped_run: ShippedRun,
) -> None:
    """Round 2: api changes; the partial sync's -X of the injected chain fails the restore."""
    run = shipped_run("stale-rules")
    t = timing("stale-rules")
    node, _ = _stale_rule_action()
    injected = event_times(run, "fault", node=node)
    api_changes = [x for x in event_times(run, "slice-updated", "default/api-") if x > injected[1]]
    visible = api_changes[0] + t.kube_proxy_watch_s(node)
    broken = first_sync(run, node, visible)
    assert not bool(broken["ok"]) and not bool(broken["full"])
    for other in t.nodes:
        if other != node:
            assert bool(first_sync(run, other, visible)["ok"])
    assert int((~run.syncs["ok"].to_numpy(dtype=bool)).sum()) == 1, "only that sync fails"
    fixed = first_sync(run, node, float(broken["end_s"]))
    # The next sync, asked for by the next api change, is full and removes the stale rule.
    assert bool(fixed["ok"]) and bool(fixed["full"])
    next_change = min(x for x in api_changes if x + t.kube_proxy_watch_s(node) > broken["end_s"])
    _check_sync_arithmetic(
        "stale-rules", fixed, node, next_change + t.kube_proxy_watch_s(node), float(broken["end_s"])
    )
    round2 = failures(run).loc[lambda f: f["t_s"] >= injected[1]]
    assert fixed["end_s"] - LAST_FAILURE_SLACK_S <= float(round2["t_s"].max()) <= fixed["end_s"]
    # Stale rule while kube-proxy is healthy; sync-blocked once its syncs fail.
    healthy = round2.loc[lambda f: f["t_s"] < broken["end_s"]]
    failing = round2.loc[lambda f: f["t_s"] >= broken["end_s"]]
    assert set(healthy["cause"]) == {Cause.STALE_RULE.value}
    assert set(failing["cause"]) == {Cause.SYNC_BLOCKED.value}
