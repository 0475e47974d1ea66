"""The batched engine and the per-request reference give the same records on small scenarios."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from svcsim.sim.kernel import KernelMode
from svcsim.traffic import ReferenceEngine, TrafficEngine
from tests.traffic.scenarios import SCENARIOS, World

KEY = ["t_s", "workload", "client", "attempt"]

# What each scenario must show, so that agreement is not agreement on nothing.
EXPECTED: dict[str, set[tuple[str, str]]] = {
    "cluster_ip_churn": {
        ("ok", ""),
        ("refused", "stale-rule"),
        ("timeout", "stale-rule"),
        ("misrouted", "ip-reused"),
    },
    "no_endpoints": {("ok", ""), ("refused", "no-endpoints")},
    "affinity": {("ok", "")},
    "udp_fixed_port": {("ok", ""), ("timeout", "stale-conntrack")},
    "keepalive": {("ok", ""), ("reset", "backend-exited")},
    "conntrack_full": {("ok", ""), ("dropped", "conntrack-full")},
    "external_and_host": {("ok", ""), ("refused", "no-service-rule")},
    "slow_backend": {("ok", ""), ("timeout", "slow-response")},
    "source_ranges": {("ok", ""), ("timeout", "source-range")},
}


def _records(
    scenario: Callable[..., World], engine: type, mode: KernelMode = "iptables"
) -> pd.DataFrame:
    frame = scenario(engine, mode).finish()
    frame = frame.sort_values(KEY, kind="stable").reset_index(drop=True)
    return frame.astype({c: str for c in frame.columns if str(frame[c].dtype) == "category"})


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_batched_equals_reference(name: str, mode: KernelMode) -> None:
    batched = _records(SCENARIOS[name], TrafficEngine, mode)
    reference = _records(SCENARIOS[name], ReferenceEngine, mode)
    assert len(batched) > 100
    pd.testing.assert_frame_equal(batched, reference, check_exact=True)
    seen = set(zip(batched["outcome"], batched["cause"], strict=True))
    assert EXPECTED[name] <= seen, seen


def test_each_scenario_is_deterministic() -> None:
    first = _records(SCENARIOS["cluster_ip_churn"], TrafficEngine)
    again = _records(SCENARIOS["cluster_ip_churn"], TrafficEngine)
    pd.testing.assert_frame_equal(first, again, check_exact=True)
