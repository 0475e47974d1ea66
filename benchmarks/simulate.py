"""Speed of the whole simulation: simulated requests per wall second, against a baseline.

The reference scenario (issue 3): 20 nodes, 10 Services x 10 Pods, a client Pod on every
node, 5,000 requests/s of per-request TCP traffic spread over the Services, churn (one Pod of
a Service deleted every 10 s, round robin over the Services, and a rolling update of one
Service every 2 minutes), 10 simulated minutes, every node's kube-proxy syncing with the
default 1 s minSyncPeriod.

The same scenario is also run with a straightforward per-request baseline: a SimPy event per
request and each request resolved on its own through the kernel interpreter
(:class:`~svcsim.traffic.reference.ReferenceEngine`). That baseline is several hundred times
slower, so it runs a shorter stretch (``--baseline-s`` simulated seconds) and its rate is
compared per request. Wall times and memory peaks are printed; nothing is asserted. The last
line reads ``simulated_requests_per_s=N baseline_requests_per_s=M ratio=R``.

``--mode nftables`` runs the same scenario with every node's kube-proxy in nftables mode.

Run: ``make bench`` or ``.venv/bin/python benchmarks/simulate.py [--duration 600]
[--mode nftables]``.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import simpy

from svcsim.scenario.build import build_world
from svcsim.scenario.load import load_scenario
from svcsim.scenario.world import World
from svcsim.traffic.reference import ReferenceEngine


def reference_yaml(
    duration_s: float,
    nodes: int = 20,
    services: int = 10,
    pods: int = 10,
    rate: float = 5000.0,
    mode: str = "iptables",
    *,
    rollout_every: int = 12,
    name: str = "benchmark",
) -> str:
    """The reference scenario as scenario YAML.

    One Pod is deleted every 10 s (round robin over the Services) and one Service rolled out
    at every ``rollout_every``-th deletion (12: every 2 minutes).
    """
    docs = []
    for s in range(services):
        docs.append(f"""apiVersion: v1
kind: Service
metadata: {{name: svc{s}}}
spec:
  selector: {{app: svc{s}}}
  clusterIP: 10.96.1.{s + 10}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: svc{s}}}
spec:
  replicas: {pods}
  selector: {{matchLabels: {{app: svc{s}}}}}
  template:
    metadata: {{labels: {{app: svc{s}}}}}
    spec:
      containers:
        - name: app
          ports: [{{name: http, containerPort: 8080}}]
          readinessProbe: {{httpGet: {{port: http}}, periodSeconds: 2}}
""")
    docs.append(f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: client}}
spec:
  replicas: {nodes}
  selector: {{matchLabels: {{app: client}}}}
  template:
    metadata: {{labels: {{app: client}}}}
    spec:
      containers: [{{name: client}}]
""")
    manifest = "---\n".join(docs)
    inline = "\n".join("      " + line for line in manifest.splitlines())
    workloads = "\n".join(
        f"  - {{name: load-{s}, from: {{pods: {{app: client}}}}, to: svc{s}:http, "
        f"rate: {rate / services}}}"
        for s in range(services)
    )
    timeline = []
    t = 10.0
    k = 0
    while t < duration_s:
        victim = f"svc{k % services}"
        timeline.append(f"  - {{at: {t:g}s, action: delete-pod, selector: {{app: {victim}}}}}")
        if k % rollout_every == rollout_every - 1:
            rolled = f"svc{(k // rollout_every) % services}"
            timeline.append(f"  - {{at: {t:g}s, action: rollout, deployment: {rolled}}}")
        t += 10.0
        k += 1
    return f"""apiVersion: svcsim/v1
kind: Scenario
metadata:
  name: {name}
  description: "{nodes} nodes, {services} Services x {pods} Pods, {rate:g} req/s, churn"
seed: 1
duration: {duration_s:g}s
cluster:
  nodes: {nodes}
  proxy: {{mode: {mode}}}
manifests:
  - inline: |
{inline}
workloads:
{workloads}
timeline:
{chr(10).join(timeline) if timeline else "  []"}
"""


def per_request_events(world: World, rate: float) -> Generator[simpy.Event, Any, None]:
    """One SimPy event per request (the baseline's straightforward per-request scheduling)."""
    rng = np.random.default_rng(0)
    while True:
        yield world.env.timeout(float(rng.exponential(1.0 / rate)))


def measure(path: Path, *, baseline: bool) -> tuple[int, float, float]:
    """Run the scenario at ``path``; returns (requests, wall seconds, peak RSS MiB)."""
    loaded = load_scenario(path)
    engine = ReferenceEngine if baseline else None
    world = build_world(loaded, 1, engine=engine) if engine else build_world(loaded, 1)
    if baseline:
        rate = sum(w.rate_per_s or 0.0 for w in loaded.scenario.workloads)
        world.env.process(per_request_events(world, rate))
    started = time.perf_counter()
    world.run()
    wall = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return world.recorder.request_count, wall, peak_mib


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="simulated seconds")
    parser.add_argument(
        "--baseline-s",
        type=float,
        default=20.0,
        help="simulated seconds for the per-request baseline",
    )
    parser.add_argument(
        "--mode",
        choices=("iptables", "nftables"),
        default="iptables",
        help="kube-proxy's mode on every node",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        batched_path = Path(tmp) / "benchmark.yaml"
        batched_path.write_text(reference_yaml(args.duration, mode=args.mode))
        base_path = Path(tmp) / "baseline.yaml"
        base_path.write_text(reference_yaml(args.baseline_s, mode=args.mode))
        n, wall, peak = measure(batched_path, baseline=False)
        rate = n / wall
        print(f"kube-proxy mode: {args.mode}")
        print(
            f"batched:  {n:,} requests in {args.duration:g} simulated s, wall {wall:.2f} s, "
            f"{rate:,.0f} requests/s, peak RSS {peak:,.0f} MiB"
        )
        bn, bwall, bpeak = measure(base_path, baseline=True)
        brate = bn / bwall
        print(
            f"baseline: {bn:,} requests in {args.baseline_s:g} simulated s, wall {bwall:.2f} s, "
            f"{brate:,.0f} requests/s, peak RSS {bpeak:,.0f} MiB"
        )
    print(
        f"simulated_requests_per_s={rate:.0f} baseline_requests_per_s={brate:.0f} "
        f"ratio={rate / brate:.1f}"
    )


if __name__ == "__main__":
    main()
