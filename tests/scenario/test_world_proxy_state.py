"""The World tells the traffic path of every kube-proxy state change, failed syncs included."""

from __future__ import annotations

from svcsim.scenario.build import build_world
from svcsim.scenario.load import load_scenario
from tests.scenarios.conftest import scenario_path


def test_a_sync_failing_or_recovering_is_a_new_state() -> None:
    world = build_world(load_scenario(scenario_path("stale-rules")), 1)
    world.end_s = 5.0
    world.run()
    proxy = world.proxies["node-1"]
    assert world.proxy_state("node-1") == "up"
    before = world.state_version()
    proxy.last_error = "iptables-restore: another app is currently holding the xtables lock"
    assert world.proxy_state("node-1") == "blocked"
    failed = world.state_version()
    assert failed != before
    proxy.last_error = "a second failure in a row"  # still failing: the same state
    assert world.state_version() == failed
    proxy.last_error = None
    assert world.proxy_state("node-1") == "up"
    assert world.state_version() not in (before, failed)
