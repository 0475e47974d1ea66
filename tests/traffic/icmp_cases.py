"""A Service REJECTing one client Pod (and a host client), run by either engine."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from svcsim.netfilter.icmp_limit import IcmpRateLimit, IcmpSysctls
from svcsim.traffic import PodSource, ServiceTarget, TrafficEngine, WorkloadSpec
from svcsim.traffic.core import EngineCore
from svcsim.traffic.spec import HostSource
from tests.traffic.world import World

CLIENTS = {"app": "client"}
WEB = ServiceTarget("default/web")


def rejecting_world(icmp: IcmpSysctls | None = None, protocol: str = "tcp") -> World:
    """One client Pod on node-1; web (``protocol``) has no Pod yet, so every node REJECTs it."""
    w = World(icmp=icmp or IcmpSysctls())
    w.add_pod("client-0", "node-1", CLIENTS, app="client", port=9)
    w.add_service("web", "10.96.0.10", {"app": "web"}, protocol=protocol.upper())
    w.update_slices()
    w.program()
    return w


def pod_load(rate: float, **kw: object) -> WorkloadSpec:
    """``rate`` new connections a second from the client Pod to web."""
    return WorkloadSpec("pod", PodSource(CLIENTS), WEB, ((0.0, rate),), **kw)  # type: ignore[arg-type]


def host_load(rate: float, **kw: object) -> WorkloadSpec:
    """``rate`` new connections a second from node-1's host network namespace to web."""
    return WorkloadSpec("host", HostSource("node-1"), WEB, ((0.0, rate),), **kw)  # type: ignore[arg-type]


def run(
    specs: list[WorkloadSpec],
    until_s: float,
    *,
    engine: type[EngineCore] = TrafficEngine,
    icmp: IcmpSysctls | None = None,
    at: tuple[float, Callable[[World], None]] | None = None,
) -> pd.DataFrame:
    """Run ``specs`` on :func:`rejecting_world` to ``until_s``; ``at``: (time, change)."""
    w = rejecting_world(icmp, specs[0].protocol)
    w.engines.append(engine(specs, w))
    if at is not None:
        w.run_to(at[0])
        at[1](w)
    w.run_to(until_s)
    frame: pd.DataFrame = w.finish()
    return frame.sort_values(["t_s", "workload"], kind="stable").reset_index(drop=True)


def bring_web_back(w: World) -> None:
    """Two ready web Pods, their slices and every node's rules, at the current instant."""
    protocol = w.api.get("Service", "default/web").ports[0].protocol.value.lower()
    for i in range(2):
        w.add_pod(f"web-{i}", w.nodes[i], {"app": "web"}, protocol=protocol)
    w.update_slices()
    w.program()


def expected_sent(times: list[float], icmp: IcmpSysctls | None = None) -> list[bool]:
    """The per-destination verdicts of errors sent to one client at ``times``.

    The host-wide bucket is set out of reach (the runs here stay far below it).
    """
    limit = IcmpRateLimit(icmp or IcmpSysctls(msgs_per_sec=10**6, msgs_burst=10**6))
    rng = np.random.default_rng(0)
    return [limit.send("client", t, loopback=False, rng=rng).sent for t in times]
