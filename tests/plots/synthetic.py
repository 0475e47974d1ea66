"""A plausible synthetic run, made with the results API only (Recorder -> write_run -> load).

Three nodes with different watch delays and sync costs; Services ``default/web:80`` and
``default/api:8080``. ``web`` has a rolling update without preStop (old Pods exit 0.4 s after
they are removed from the slice), node-2's syncs are blocked for a while during one step, and
node-3's kube-proxy crashes through another step. Requests pick an endpoint uniformly from what
their node last *programmed*, so failures follow from the timing, as in the simulator:
refused while a gone Pod's IP is still held, timeout once it is released.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from svcsim.results import (
    EndpointSetChange,
    Recorder,
    Run,
    build_summary,
    endpoint_shares,
    failure_windows,
    load,
    stable_intervals,
    write_run,
)
from svcsim.results.load import WINDOW_COLUMNS

NODES = ("node-1", "node-2", "node-3")
WATCH_DELAY_S = {"node-1": 0.1, "node-2": 0.4, "node-3": 1.2}
SYNC_BASE_S = {"node-1": 0.03, "node-2": 0.05, "node-3": 0.08}
MIN_SYNC_PERIOD_S = 1.0
INFORMER_SYNC_S = 2.0
CLIENTS_START_S = 2.0


@dataclass
class Pod:
    name: str
    service: str
    ip: str
    port: int
    node: str
    ready_s: float
    exit_s: float = math.inf
    released_s: float = math.inf

    @property
    def endpoint(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass
class Spec:
    """What to put in the run."""

    services: tuple[tuple[str, int], ...] = (("web", 80), ("api", 8080))
    pods_per_service: int = 3
    rate_per_s: float = 60.0
    duration_s: float = 60.0
    rollout: bool = True
    crash: bool = True
    block: bool = True
    conntrack_max: int = 4096
    seed: int = 7
    manifest_extra: dict[str, Any] = field(default_factory=dict)


def _slice_name(service: str) -> str:
    return f"endpointslice/default/{service}-x7k2p"


def build_run(out_dir: Path, spec: Spec | None = None) -> Run:
    """Write the synthetic run folder at ``out_dir`` and load it back."""
    spec = spec or Spec()
    rng = np.random.default_rng(spec.seed)
    rec = Recorder()
    pods: list[Pod] = []
    # (api time, service port, endpoint set after the update)
    updates: list[tuple[float, str, frozenset[str]]] = []
    ip_counter = [10]

    def new_pod(service: str, port: int, name: str, t_s: float, index: int) -> Pod:
        node = NODES[index % len(NODES)]
        ip = f"10.244.{NODES.index(node)}.{ip_counter[0]}"
        ip_counter[0] += 1
        pod = Pod(name, service, ip, port, node, ready_s=t_s)
        pods.append(pod)
        return pod

    def live(service: str, t_s: float) -> frozenset[str]:
        return frozenset(
            p.endpoint
            for p in pods
            if p.service == service and p.ready_s <= t_s and not _removed(p, t_s)
        )

    removed_at: dict[str, float] = {}

    def _removed(p: Pod, t_s: float) -> bool:
        return removed_at.get(p.name, math.inf) <= t_s

    for service, port in spec.services:
        svc = f"default/{service}:{port}"
        for j in range(spec.pods_per_service):
            pod = new_pod(svc, port, f"{service}-old-{j}", 0.0, j)
            rec.add_event(0.0, "pod-scheduled", node=pod.node, object=f"pod/default/{pod.name}")
            rec.add_event(0.0, "pod-ready", node=pod.node, object=f"pod/default/{pod.name}")
        updates.append((0.0, svc, live(svc, 0.0)))
        rec.add_event(0.0, "slice-updated", object=_slice_name(service), detail=f"service={svc}")

    crash = (36.5, 44.0) if spec.crash else None
    if spec.rollout and spec.services:
        service, port = spec.services[0]
        svc = f"default/{service}:{port}"
        rec.add_event(14.0, "rollout", object=f"deployment/default/{service}")
        old = [p for p in pods if p.service == svc]
        for i, old_pod in enumerate(old):
            t0 = 15.0 + 10.0 * i
            fresh = new_pod(svc, port, f"{service}-new-{i}", t0 + 2.0, i + 1)
            ref = f"pod/default/{fresh.name}"
            rec.add_event(t0, "pod-scheduled", node=fresh.node, object=ref)
            rec.add_event(t0 + 2.0, "pod-ready", node=fresh.node, object=ref)
            updates.append((t0 + 2.05, svc, live(svc, t0 + 2.05)))
            rec.add_event(t0 + 2.05, "slice-updated", object=_slice_name(service),
                          detail=f"service={svc}")  # fmt: skip
            ref = f"pod/default/{old_pod.name}"
            rec.add_event(t0 + 2.1, "pod-terminating", node=old_pod.node, object=ref)
            removed_at[old_pod.name] = t0 + 2.2
            updates.append((t0 + 2.2, svc, live(svc, t0 + 2.2)))
            rec.add_event(t0 + 2.2, "slice-updated", object=_slice_name(service),
                          detail=f"service={svc}")  # fmt: skip
            old_pod.exit_s, old_pod.released_s = t0 + 2.6, t0 + 3.6
            rec.add_event(t0 + 2.6, "pod-exited", node=old_pod.node, object=ref)
            rec.add_event(t0 + 3.6, "ip-released", node=old_pod.node, object=ref)
    if crash is not None:
        rec.add_event(crash[0], "proxy-crashed", node="node-3")
        rec.add_event(crash[1], "proxy-restarted", node="node-3")
    blocked = (27.0, 29.0) if spec.block else None

    # Each node's syncs: changes arrive after the watch delay, coalesce, and take effect at
    # the end of a sync that starts no sooner than minSyncPeriod after the previous one.
    programmed: dict[str, list[EndpointSetChange]] = {}
    for node in NODES:
        arrivals = []
        for u, svc, eps in updates:
            a = u + WATCH_DELAY_S[node]
            if node == "node-3" and crash is not None and crash[0] <= a:
                a = max(a, crash[1] + INFORMER_SYNC_S)
            arrivals.append((a, u, svc, eps))
        arrivals.sort(key=lambda x: x[0])
        changes: list[EndpointSetChange] = []
        last_end, i, first, full_next = -math.inf, 0, True, False
        while i < len(arrivals):
            start = max(arrivals[i][0], last_end + MIN_SYNC_PERIOD_S)
            if node == "node-2" and blocked and blocked[0] <= start < blocked[1]:
                end = start + 0.05
                rec.add_sync(node=node, start_s=start, end_s=end, full=False, ok=False,
                             rules_written=40)  # fmt: skip
                rec.add_event(end, "sync-failed", node=node, detail="xtables lock held")
                last_end, full_next = end, True
                continue
            batch = [x for x in arrivals[i:] if x[0] <= start]
            i += len(batch)
            full = first or full_next or (node == "node-3" and crash is not None
                                          and start >= crash[1])  # fmt: skip
            end = start + SYNC_BASE_S[node] + 0.002 * len(batch) + (0.05 if full else 0.0)
            latency = end - min(x[1] for x in batch)
            rec.add_sync(
                node=node,
                start_s=start,
                end_s=end,
                full=full,
                ok=True,
                rules_written=120 if full else 30,
                programming_latency_s=latency,
            )
            for _, _, svc, eps in batch:
                changes.append(EndpointSetChange(end, node, svc, eps))
            last_end, first, full_next = end, False, False
        # A periodic resync with nothing to apply (NaN latency) after the last change.
        if last_end + 10.0 < spec.duration_s:
            rec.add_sync(node=node, start_s=last_end + 10.0, end_s=last_end + 10.04, full=False,
                         ok=True, rules_written=12)  # fmt: skip
        programmed[node] = changes

    _add_requests(rec, spec, rng, pods, programmed, crash, blocked)
    _add_conntrack(rec, spec)

    frames = rec.frames()
    windows = failure_windows(frames["requests"])
    all_changes = [c for changes in programmed.values() for c in changes]
    intervals = stable_intervals(all_changes, start_s=CLIENTS_START_S, end_s=spec.duration_s)
    summary = build_summary(frames, windows, seed=spec.seed, intervals=intervals)
    manifest = {
        "scenario": {
            "apiVersion": "svcsim/v1",
            "kind": "Scenario",
            "metadata": {
                "name": "synthetic-rolling-update",
                "description": "A rolling update without preStop; node-3's kube-proxy crashes "
                "& restarts <during> a step.",
            },
            "seed": spec.seed,
            "duration": f"{spec.duration_s:g}s",
        },
        "seed": spec.seed,
        "versions": {"svcsim": "0.1.0"},
        **spec.manifest_extra,
    }
    write_run(out_dir, manifest, frames, summary, windows=windows)
    return load(out_dir)


def _programmed_set(changes: list[EndpointSetChange], svc: str, t_s: float) -> frozenset[str]:
    current: frozenset[str] = frozenset()
    for change in changes:
        if change.service == svc and change.t_s <= t_s:
            current = change.endpoints
    return current


def _add_requests(
    rec: Recorder,
    spec: Spec,
    rng: np.random.Generator,
    pods: list[Pod],
    programmed: dict[str, list[EndpointSetChange]],
    crash: tuple[float, float] | None,
    blocked: tuple[float, float] | None,
) -> None:
    by_endpoint = {p.endpoint: p for p in pods}
    for service, port in spec.services:
        svc = f"default/{service}:{port}"
        n = int(rng.poisson(spec.rate_per_s * (spec.duration_s - CLIENTS_START_S)))
        if n == 0:
            continue
        t = np.sort(rng.uniform(CLIENTS_START_S, spec.duration_s - 1.0, n))
        node_index = rng.integers(0, len(NODES), n)
        draws = rng.random(n)
        cols: dict[str, list[Any]] = {k: [] for k in ("latency", "endpoint", "pod", "out", "cause")}
        for k in range(n):
            node = NODES[int(node_index[k])]
            eps = sorted(_programmed_set(programmed[node], svc, float(t[k])))
            if not eps:
                cols["latency"].append(0.001)
                cols["endpoint"].append("")
                cols["pod"].append("")
                cols["out"].append("refused")
                cols["cause"].append("no-service-rule")
                continue
            endpoint = eps[int(draws[k] * len(eps))]
            pod = by_endpoint[endpoint]
            cols["endpoint"].append(endpoint)
            if t[k] < pod.exit_s:
                cols["latency"].append(0.005 + 0.01 * draws[k])
                cols["pod"].append(pod.name)
                cols["out"].append("ok")
                cols["cause"].append("")
                continue
            cols["pod"].append("")
            gone = t[k] >= pod.released_s
            cols["latency"].append(1.0 if gone else 0.001)
            cols["out"].append("timeout" if gone else "refused")
            if crash is not None and node == "node-3" and crash[0] <= t[k]:
                cols["cause"].append("proxy-down")
            elif blocked is not None and node == "node-2" and blocked[0] <= t[k] < blocked[1] + 1:
                cols["cause"].append("sync-blocked")
            else:
                cols["cause"].append("stale-rule")
        latency = np.asarray(cols["latency"], dtype=np.float64)
        rec.add_requests(
            t_s=t,
            end_s=t + latency,
            latency_s=latency,
            workload="clients",
            client=np.array([f"client@{NODES[int(i)]}" for i in node_index]),
            src_node=np.array([NODES[int(i)] for i in node_index]),
            service=svc,
            attempt=np.zeros(n, dtype=np.int16),
            conn_id=np.full(n, -1, dtype=np.int64),
            new_flow=np.ones(n, dtype=bool),
            endpoint=np.array(cols["endpoint"]),
            pod=np.array(cols["pod"]),
            outcome=np.array(cols["out"]),
            cause=np.array(cols["cause"]),
        )


def _add_conntrack(rec: Recorder, spec: Spec) -> None:
    """Entries ramp up like TIME_WAIT entries of a steady connection rate (120 s lifetime)."""
    per_node_rate = spec.rate_per_s * len(spec.services) / len(NODES)
    for second in range(int(spec.duration_s) + 1):
        for i, node in enumerate(NODES):
            active = max(0.0, second - CLIENTS_START_S) * per_node_rate * (0.8 + 0.2 * i)
            entries = min(int(active) + 40, spec.conntrack_max)
            rec.add_conntrack_sample(float(second), node, entries, spec.conntrack_max)


def mem_run(
    rec: Recorder | None = None,
    *,
    manifest: dict[str, Any] | None = None,
    path: Path = Path("in-memory"),
) -> Run:
    """A :class:`Run` straight from a Recorder's frames, without a folder (for unit tests)."""
    frames = (rec or Recorder()).frames()
    windows = failure_windows(frames["requests"])
    window_frame = pd.DataFrame(
        [{c: w.to_dict()[c] for c in WINDOW_COLUMNS} for w in windows],
        columns=list(WINDOW_COLUMNS),
    )
    return Run(
        path=path,
        manifest=manifest or {},
        summary=build_summary(frames, windows, seed=None),
        requests=frames["requests"],
        events=frames["events"],
        syncs=frames["syncs"],
        conntrack=frames["conntrack"],
        windows=window_frame,
        endpoints=endpoint_shares(frames["requests"]),
        figures={},
    )
