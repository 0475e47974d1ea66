"""Every shipped scenario runs in IPVS mode: both engines agree; lc balances kept connections.

Each scenario's ``cluster.proxy.mode`` is overridden to ``ipvs`` (default scheduler rr) and the
run cut short as in test_causes.py (10 s after the first timeline action). On IPVS nodes both
engines resolve every attempt per flow through the node's live IPVS (schedulers keep state
across flows), so the batched engine must give the very records of the per-request reference;
failures must carry documented causes, and most requests must succeed, as in the other modes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from svcsim.scenario.build import build_world
from svcsim.scenario.load import LoadedScenario, load_scenario
from svcsim.traffic import ReferenceEngine, TrafficEngine
from tests.scenarios.causes import check_causes, min_ok_share
from tests.scenarios.conftest import SCENARIOS_DIR, scenario_path
from tests.scenarios.engines import shipped_requests, with_proxy_mode


@pytest.mark.parametrize("path", sorted(SCENARIOS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_scenarios_run_in_ipvs_mode(path: Path) -> None:
    batched = shipped_requests(path, TrafficEngine, mode="ipvs")
    reference = shipped_requests(path, ReferenceEngine, mode="ipvs")
    assert len(batched) > 100
    assert (batched["outcome"] == "ok").mean() > min_ok_share(path.stem)
    check_causes(batched)
    pd.testing.assert_frame_equal(batched, reference, check_exact=True)


def _with_scheduler(loaded: LoadedScenario, scheduler: str) -> LoadedScenario:
    cluster = loaded.scenario.cluster
    proxy = cluster.proxy
    ipvs = proxy.ipvs.model_copy(update={"scheduler": scheduler})
    cluster = cluster.model_copy(update={"proxy": proxy.model_copy(update={"ipvs": ipvs})})
    return dataclasses.replace(
        loaded, scenario=loaded.scenario.model_copy(update={"cluster": cluster})
    )


def _new_pods_share(loaded: LoadedScenario) -> float:
    """The share of requests after 60 s served by the Pods web's scale-up (30 s) added."""
    world = build_world(loaded, 1)
    world.run()
    frames = world.recorder.frames()
    events = frames["events"]
    scheduled = events[
        (events["kind"] == "pod-scheduled")
        & events["object"].astype(str).str.startswith("default/web-")
        & (events["t_s"] >= 30.0)
    ]
    new = set(scheduled["object"].astype(str))
    assert len(new) == 3
    late = frames["requests"][frames["requests"]["t_s"] > 60.0]
    return float(late["pod"].astype(str).isin(new).mean())


def test_lc_balances_kept_connections_where_rr_and_random_do_not() -> None:
    loaded = load_scenario(scenario_path("ipvs-lc-keepalive"))
    lc = _new_pods_share(loaded)
    rr = _new_pods_share(_with_scheduler(loaded, "rr"))
    random = _new_pods_share(with_proxy_mode(loaded, "iptables"))
    # lc: all 12 connections the new frontends open go to the 3 new web Pods (the new
    # frontends send half of the requests); rr and iptables' random choice split them.
    assert lc == pytest.approx(0.5, abs=0.03)
    assert rr < 0.4 and random < 0.4
