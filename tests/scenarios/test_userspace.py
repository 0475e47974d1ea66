"""userspace mode end to end: every shipped scenario runs in it, and what only it does shows.

Each shipped scenario's ``cluster.proxy.mode`` is overridden to ``userspace`` and the run cut
short as in test_nftables.py: the batched engine (which sends every attempt from a userspace
node through the per-flow path) must give the very records of the per-request reference, and
failures must carry documented causes. ``userspace-dead-pod`` (seed 3) then shows the mode's
own behaviour: exact round robin, dial retries that turn a dead Pod into latency, and a
kube-proxy crash that resets what ran through it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pytest

from svcsim.scenario.build import build_world
from svcsim.scenario.load import load_scenario
from svcsim.scenario.proxy import ProxyOverride
from svcsim.scenario.replay import replayable_scenario
from svcsim.traffic import ReferenceEngine, TrafficEngine
from tests.scenarios.causes import check_causes, min_ok_share
from tests.scenarios.conftest import SCENARIOS_DIR, ShippedRun
from tests.scenarios.engines import shipped_requests, with_proxy_mode

REFERENCE_SKIPPED = {
    "thousand-services-rollout": "1,000 Services walked per request by the reference takes "
    "~20 s; the other scenarios hold the two engines' per-flow paths to the same records",
}
"""Scenarios whose userspace run is not repeated by the per-request reference, and why."""

MIN_OK_SHARE = 0.8
"""Lowest share of ok requests in a cut-short userspace run: proxy-crash loses node-3's third
of the traffic (nothing listens on its proxy port) for the rest of the run, ~18 %."""


@pytest.mark.parametrize("path", sorted(SCENARIOS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_scenarios_run_in_userspace_mode(path: Path) -> None:
    batched = shipped_requests(path, TrafficEngine, mode="userspace")
    assert len(batched) > 100
    assert (batched["outcome"] == "ok").mean() > min_ok_share(path.stem, MIN_OK_SHARE)
    check_causes(batched)
    if path.stem not in REFERENCE_SKIPPED:
        reference = shipped_requests(path, ReferenceEngine, mode="userspace")
        pd.testing.assert_frame_equal(batched, reference, check_exact=True)


def _between(frame: pd.DataFrame, start_s: float, end_s: float) -> pd.DataFrame:
    return frame[(frame["t_s"] >= start_s) & (frame["t_s"] < end_s)]


def test_round_robin_spreads_new_connections_exactly(shipped_run: ShippedRun) -> None:
    """All three Pods answer from ~22.5 s (the crashed one is back) to 40 s (node-3 fails)."""
    run = shipped_run("userspace-dead-pod")
    verdict = run.summary["uniformity"]["default/web:http"]["verdict"]
    assert verdict == "not tested (userspace round robin)"
    requests = _between(run.requests, 23.0, 40.0)
    new = requests[requests["new_flow"] & (requests["workload"] == "frontend-to-web")]
    for node, flows in new.groupby("src_node", observed=True):
        counts = flows["endpoint"].astype(str).value_counts()
        assert len(counts) == 3, node
        assert counts.max() - counts.min() <= 1, (node, counts.to_dict())


def test_a_dead_pod_costs_latency_not_failures(shipped_run: ShippedRun) -> None:
    """node-3 failed at 40 s; its Pod leaves the balancers at ~65.15 s."""
    run = shipped_run("userspace-dead-pod")
    window = _between(run.requests, 41.0, 65.0)
    assert (window["outcome"] == "ok").all()
    slow = window[window["latency_s"] >= 0.25]  # the first dial's timeout, then the next Pod
    assert len(slow) > 0.3 * len(window[window["workload"] == "frontend-to-web"])
    retries = _between(run.events, 41.0, 65.0)
    retries = retries[retries["kind"] == "proxy-dial-retry"]
    assert len(retries) == len(slow)
    assert retries["detail"].str.contains(" timeout 0.25s, ").all()
    # node-3's Pod (its Pod CIDR is 10.244.2.0/24) answers nothing: it never serves, and
    # every retry starts with it.
    assert set(window["endpoint"].astype(str)) == {"10.244.0.2:8080", "10.244.1.2:8080"}
    assert retries["detail"].str.contains(" 10.244.2.2:8080 timeout 0.25s, ").all()


def test_a_proxy_crash_resets_its_connections_and_refuses_new_ones(
    shipped_run: ShippedRun,
) -> None:
    """crash-proxy node-1 at 90 s, restart at 100 s (informers 2 s, first sync ~0.16 s)."""
    requests = shipped_run("userspace-dead-pod").requests
    failed = requests[requests["outcome"] != "ok"]
    down = _between(failed, 90.0, 100.0)
    assert set(down["src_node"]) == {"node-1"}
    assert set(down["cause"]) == {"proxy-not-listening", "proxy-exited"}
    exited = down[down["cause"] == "proxy-exited"]
    assert set(exited["outcome"]) == {"reset"}
    # Both keep-alive connections of node-1's frontend died with the process.
    assert set(exited[exited["workload"] == "frontend-keepalive"]["conn_id"]) == set(
        _between(requests, 85.0, 90.0).query(
            "workload == 'frontend-keepalive' and src_node == 'node-1'"
        )["conn_id"]
    )
    refused = down[down["cause"] == "proxy-not-listening"]
    assert set(refused["outcome"]) == {"refused"}
    # The restarted process flushed the portals: unredirected until its first sync ends.
    flushed = _between(failed, 100.0, 110.0)
    assert set(flushed["cause"]) == {"no-service-rule"}
    assert flushed["t_s"].max() < 102.2
    assert _between(failed, 102.2, 120.0).empty


def test_the_same_faults_fail_requests_in_iptables_mode() -> None:
    """The comparison the scenario's header makes: iptables fails where userspace retried."""
    path = SCENARIOS_DIR / "userspace-dead-pod.yaml"
    requests = shipped_requests(path, TrafficEngine, mode="iptables")  # cut at 20 s
    crashed = requests[(requests["outcome"] != "ok") & (requests["cause"] == "pod-crashed")]
    assert len(crashed) > 100
    userspace = shipped_requests(path, TrafficEngine, mode="userspace")
    assert set(userspace.loc[userspace["outcome"] != "ok", "cause"]) == {"backend-exited"}


def test_one_node_in_userspace_mode_among_iptables_nodes() -> None:
    """A per-node override: node-2 alone runs the userspace proxier; both engines agree."""
    loaded = with_proxy_mode(load_scenario(SCENARIOS_DIR / "userspace-dead-pod.yaml"), "iptables")
    proxy = loaded.scenario.cluster.proxy
    nodes = {"node-2": ProxyOverride.model_validate({"mode": "userspace"})}
    cluster = loaded.scenario.cluster.model_copy(
        update={"proxy": proxy.model_copy(update={"nodes": nodes})}
    )
    loaded = dataclasses.replace(
        loaded, scenario=loaded.scenario.model_copy(update={"cluster": cluster})
    )
    frames = []
    for engine in (TrafficEngine, ReferenceEngine):
        world = build_world(loaded, 3, engine=engine)
        assert {n: k.mode for n, k in world.kernels.items()} == {
            "node-1": "iptables",
            "node-2": "userspace",
            "node-3": "iptables",
        }
        world.end_s = 20.0
        world.run()
        events = world.recorder.frames()["events"]
        retried = events[events["kind"] == "proxy-dial-retry"]
        assert set(retried["node"]) == {"node-2"}  # only its kube-proxy dials
        frames.append(world.recorder.frames()["requests"])
    failed = frames[0][frames[0]["outcome"] != "ok"]
    assert "node-2" not in set(failed.loc[failed["cause"] == "pod-crashed", "src_node"])
    assert {"node-1", "node-3"} <= set(failed.loc[failed["cause"] == "pod-crashed", "src_node"])
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=True)


def test_the_run_folders_scenario_loads_again(tmp_path: Path) -> None:
    """The fully defaulted dump writes every field, iptables mode's included: no refusal."""
    loaded = load_scenario(SCENARIOS_DIR / "userspace-dead-pod.yaml")
    for scenario in (loaded, with_proxy_mode(loaded, "iptables")):
        path = tmp_path / "scenario.yaml"
        path.write_text(replayable_scenario(scenario, 3), encoding="utf-8")
        again = load_scenario(path)
        assert again.scenario.cluster.proxy == scenario.scenario.cluster.proxy


def test_kube_proxys_own_connections_fill_conntrack_twice_as_fast() -> None:
    """conntrack-full: each proxied connection is two entries (the client's, kube-proxy's)."""
    first_drop = {}
    for mode in ("iptables", "userspace"):
        loaded = with_proxy_mode(load_scenario(SCENARIOS_DIR / "conntrack-full.yaml"), mode)
        world = build_world(loaded, 1, engine=TrafficEngine)
        world.end_s = 40.0
        world.run()
        requests = world.recorder.frames()["requests"]
        first_drop[mode] = float(requests.loc[requests["outcome"] == "dropped", "t_s"].min())
    assert 25.0 < first_drop["iptables"] < 40.0
    assert first_drop["userspace"] == pytest.approx(first_drop["iptables"] / 2, rel=0.15)
