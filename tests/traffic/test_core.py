"""The shared engine core bounds its working memory by count: windows and chunks under a cap."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from svcsim.netfilter.icmp_limit import IcmpSysctls
from svcsim.traffic import PodSource, Retries, ServiceTarget, TrafficEngine, WorkloadSpec
from svcsim.traffic.core import EngineCore
from svcsim.traffic.reference import ReferenceEngine
from tests.traffic.scenarios import SCENARIOS
from tests.traffic.world import World

CLIENTS = {"app": "client"}


def _world(ready: bool = True) -> World:
    # Not ready: every attempt REJECTed; with the ICMP limits off (ratemask 0) each is
    # refused at once, so its retries come within the run.
    w = World(icmp=IcmpSysctls(ratemask=0))
    for i in range(2):
        w.add_pod(f"client-{i}", w.nodes[i], CLIENTS, app="client", port=9)
    for i in range(3):
        w.add_pod(f"web-{i}", w.nodes[i % 2], {"app": "web"}, ready=ready)
    w.add_service("web", "10.96.0.10", {"app": "web"})
    w.update_slices()
    w.program()
    return w


def _chunk_sizes(engine: EngineCore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    resolve = engine._resolve

    def spy(chunk: Any, nodes: Any, seeds: Any) -> Any:
        sizes.append(len(chunk))
        return resolve(chunk, nodes, seeds)

    monkeypatch.setattr(engine, "_resolve", spy)
    return sizes


CASES = [
    pytest.param(TrafficEngine, 20_000.0, 1_000, True, Retries(), id="batched"),
    pytest.param(TrafficEngine, 20_000.0, 1_000, False, Retries(3, 0.05), id="batched-retries"),
    pytest.param(ReferenceEngine, 2_000.0, 150, True, Retries(), id="reference"),
]


@pytest.mark.parametrize(("engine_class", "rate", "cap", "ready", "retries"), CASES)
def test_no_chunk_holds_more_attempts_than_the_cap(
    monkeypatch: pytest.MonkeyPatch,
    engine_class: type[EngineCore],
    rate: float,
    cap: int,
    ready: bool,
    retries: Retries,
) -> None:
    w = _world(ready)
    spec = WorkloadSpec(
        "load", PodSource(CLIENTS), ServiceTarget("default/web"), ((0.0, rate),), retries=retries
    )
    engine = engine_class([spec], w)
    engine.chunk_max_attempts = cap
    w.engines.append(engine)
    sizes = _chunk_sizes(engine, monkeypatch)
    w.run_to(1.5)  # nothing happens in between: one span of 1.5 s to flush
    frame = w.finish()
    assert max(sizes) <= cap
    assert sum(sizes) == len(frame)
    first = frame[frame.attempt == 0]
    assert abs(len(first) - 1.5 * rate) < 6 * np.sqrt(1.5 * rate)
    if ready:
        assert (frame.outcome == "ok").all()
    else:  # every attempt refused (no ready endpoint), each retried up to the limit
        assert set(frame.attempt) == {0, 1, 2, 3}


def test_a_capped_run_is_deterministic() -> None:
    frames = []
    for _ in range(2):
        w = _world()
        engine = TrafficEngine(
            [
                WorkloadSpec(
                    "load", PodSource(CLIENTS), ServiceTarget("default/web"), ((0.0, 5_000.0),)
                )
            ],
            w,
        )
        engine.chunk_max_attempts = 700
        w.engines.append(engine)
        w.run_to(2.0)
        frames.append(w.finish())
    assert frames[0].equals(frames[1])


@pytest.mark.parametrize("name", ["cluster_ip_churn", "keepalive", "conntrack_full"])
def test_conntrack_counts_agree_between_engines(name: str) -> None:
    """Tracked entries plus anonymous ones (batched) are the reference's table sizes.

    (Not after kube-proxy's UDP clean-up: anonymous entries it would delete are counted until
    they expire, as :meth:`EngineCore.conntrack_flushed` says.)
    """
    counts = {}
    for engine in (TrafficEngine, ReferenceEngine):
        world = SCENARIOS[name](engine)
        t_s = world.env.now
        counts[engine] = world.engines[0].conntrack_counts(t_s)
        tables = {node: kernel.conntrack.count(t_s) for node, kernel in world.kernels.items()}
        if engine is ReferenceEngine:  # every flow is in its node's table
            assert counts[engine] == tables
    assert counts[TrafficEngine] == counts[ReferenceEngine]
    assert sum(counts[TrafficEngine].values()) > 0
