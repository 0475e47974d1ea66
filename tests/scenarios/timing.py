"""Reading a run's control-plane timing back from its tables, for the scenario tests.

Expected failure windows are derived from what the run recorded (events, syncs) and the
scenario's configured delays, never from hard-coded times, so the tests check the mechanism.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from svcsim.k8s.objects import Deployment
from svcsim.results import Run
from svcsim.scenario.cluster import for_node
from svcsim.scenario.load import LoadedScenario, load_scenario, parse_manifests
from tests.scenarios.conftest import scenario_path

EPS_S = 1e-6
"""Float slack for comparing simulated instants that should coincide."""

ARITH_TOL_S = 2e-3
"""Tolerance of the timing arithmetic (a few ms, as the brief asks)."""


@dataclass(frozen=True, slots=True)
class Timing:
    """A shipped scenario's configured delays, as the tests need them."""

    loaded: LoadedScenario

    @property
    def api_watch_s(self) -> float:
        """API server -> watchers (the EndpointSlice controller, the Deployment controller)."""
        return self.loaded.scenario.cluster.delays.api_watch_s

    def kube_proxy_watch_s(self, node: str) -> float:
        """API server -> kube-proxy's informers on ``node``."""
        return for_node(self.loaded.scenario.cluster.delays.kube_proxy_watch_s, node)

    def informer_sync_s(self, node: str) -> float:
        """kube-proxy (re)start -> informers synced, on ``node``."""
        return for_node(self.loaded.scenario.cluster.delays.informer_sync_s, node)

    def min_sync_period_s(self, node: str) -> float:
        """kube-proxy's minSyncPeriod on ``node``."""
        return self.loaded.scenario.cluster.proxy.for_node(node).min_sync_period_s

    def sync_duration_s(self, node: str, rules_written: int) -> float:
        """The sync cost model's duration for ``rules_written`` rules on ``node``."""
        cost = self.loaded.scenario.cluster.proxy.for_node(node).sync_cost
        return cost.base_s + cost.per_rule_s * rules_written

    @property
    def nodes(self) -> list[str]:
        """Node names, in order."""
        return list(self.loaded.scenario.cluster.node_names)

    def deployment(self, name: str) -> Deployment:
        """The Deployment called ``name`` among the scenario's manifests."""
        found = [
            d for d in parse_manifests(self.loaded.manifests).deployments if d.meta.name == name
        ]
        assert len(found) == 1, name
        return found[0]


def timing(name: str) -> Timing:
    """The configured delays of shipped scenario ``name``."""
    return Timing(load_scenario(scenario_path(name)))


def events(run: Run, kind: str, object_prefix: str = "", node: str | None = None) -> pd.DataFrame:
    """Events of ``kind`` whose object starts with ``object_prefix`` (and on ``node``)."""
    e = run.events
    mask = (e["kind"] == kind).to_numpy(dtype=bool)
    mask = mask & e["object"].str.startswith(object_prefix).to_numpy(dtype=bool)
    if node is not None:
        mask = mask & (e["node"] == node).to_numpy(dtype=bool)
    return e.loc[mask].reset_index(drop=True)


def event_times(
    run: Run, kind: str, object_prefix: str = "", node: str | None = None
) -> list[float]:
    """Times of :func:`events`, in order."""
    return [float(t) for t in events(run, kind, object_prefix, node)["t_s"]]


def node_syncs(run: Run, node: str) -> pd.DataFrame:
    """Syncs of ``node`` in start order (failed ones included)."""
    s = run.syncs
    return (
        s.loc[(s["node"] == node).to_numpy(dtype=bool)]
        .sort_values("start_s")
        .reset_index(drop=True)
    )


def first_sync(run: Run, node: str, not_before_s: float) -> pd.Series:
    """The first sync (any outcome) on ``node`` starting at or after ``not_before_s``."""
    syncs = node_syncs(run, node)
    later = syncs.loc[(syncs["start_s"] >= not_before_s - EPS_S).to_numpy(dtype=bool)]
    assert len(later), f"no sync on {node} from {not_before_s}"
    return later.iloc[0]


def previous_sync_end_s(run: Run, node: str, sync: pd.Series) -> float:
    """End of the sync on ``node`` just before ``sync`` (-inf if none)."""
    syncs = node_syncs(run, node)
    before = syncs.loc[(syncs["start_s"] < sync["start_s"] - EPS_S).to_numpy(dtype=bool)]
    return float(before["end_s"].max()) if len(before) else -np.inf


def failures(run: Run, *, node: str | None = None, workload: str | None = None) -> pd.DataFrame:
    """Failed attempts (optionally of one source node / workload), in send order."""
    return requests(run, node=node, workload=workload, failed=True)


def requests(
    run: Run,
    *,
    node: str | None = None,
    workload: str | None = None,
    service: str | None = None,
    failed: bool | None = None,
    since_s: float = -np.inf,
    until_s: float = np.inf,
) -> pd.DataFrame:
    """Attempts matching every given filter, sent in ``[since_s, until_s)``, in send order."""
    r = run.requests
    t = r["t_s"].to_numpy(dtype=np.float64)
    mask = (t >= since_s) & (t < until_s)
    if node is not None:
        mask = mask & (r["src_node"] == node).to_numpy(dtype=bool)
    if workload is not None:
        mask = mask & (r["workload"] == workload).to_numpy(dtype=bool)
    if service is not None:
        mask = mask & (r["service"] == service).to_numpy(dtype=bool)
    if failed is not None:
        mask = mask & ((r["outcome"] != "ok").to_numpy(dtype=bool) == failed)
    return r.loc[mask].sort_values("t_s", kind="stable").reset_index(drop=True)


def windows_on(run: Run, node: str, start_s: float, within_s: float) -> pd.DataFrame:
    """Failure windows of ``node`` opening in ``[start_s, start_s + within_s)``."""
    w = run.windows
    mask = (w["node"] == node).to_numpy(dtype=bool)
    mask = mask & (w["start_s"] >= start_s).to_numpy(dtype=bool)
    mask = mask & (w["start_s"] < start_s + within_s).to_numpy(dtype=bool)
    return w.loc[mask].reset_index(drop=True)


def released_ips(run: Run) -> dict[str, float]:
    """Pod IP -> when it was released (``ip-released`` events, detail ``ip=...``)."""
    out: dict[str, float] = {}
    for row in events(run, "ip-released").itertuples(index=False):
        out[str(row.detail).removeprefix("ip=")] = float(row.t_s)
    return out


def scheduled_ips(run: Run, object_prefix: str, since_s: float = 0.0) -> dict[str, str]:
    """Pod key -> IP of Pods scheduled at or after ``since_s`` (``pod-scheduled`` events)."""
    found = events(run, "pod-scheduled", object_prefix)
    found = found.loc[(found["t_s"] >= since_s).to_numpy(dtype=bool)]
    return {str(r.object): str(r.detail).removeprefix("ip=") for r in found.itertuples(index=False)}
