"""Speed of the traffic layer alone: simulated requests per wall second, batched vs reference.

A hand-built world (no kube-proxy process): ``--nodes`` nodes, ``--services`` Services of
``--pods`` Pods each, one client Pod per node and one per-request workload per Service
totalling ``--rate`` requests/s. The control plane is reduced to what traffic sees: idle
events (``--events`` per second: probes, timers that change nothing) and, every ``--churn-s``
seconds, one Pod replaced (draining, exited, released, a new Pod, slices updated, every node
reprogrammed at once). Prints one line per engine and a last line
``simulated_requests_per_s=N baseline_requests_per_s=M ratio=R``. Not a test: nothing asserted.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from svcsim.sim.network import BackendState
from svcsim.traffic import (
    PodSource,
    ReferenceEngine,
    ServiceTarget,
    TrafficEngine,
    WorkloadSpec,
)
from svcsim.traffic.core import EngineCore
from tests.traffic.world import World


def build(args: argparse.Namespace, engine: Callable[..., EngineCore]) -> World:
    nodes = tuple(f"node-{i + 1}" for i in range(args.nodes))
    w = World(nodes=nodes, seed=1)
    for i, node in enumerate(nodes):
        w.add_pod(f"client-{i}", node, {"role": "client"}, app="client", port=9)
    specs = []
    for s in range(args.services):
        for p in range(args.pods):
            w.add_pod(f"svc{s}-{p}", nodes[(s * args.pods + p) % len(nodes)], {"app": f"svc{s}"})
        w.add_service(f"svc{s}", f"10.96.{s // 250}.{s % 250 + 1}", {"app": f"svc{s}"})
        specs.append(
            WorkloadSpec(
                f"load-{s}",
                PodSource({"role": "client"}),
                ServiceTarget(f"default/svc{s}"),
                ((0.0, args.rate / args.services),),
            )
        )
    w.update_slices()
    w.program()
    w.engines.append(engine(specs, w))
    return w


def churn(w: World, args: argparse.Namespace, k: int) -> None:
    s = k % args.services
    current = sorted(b.pod for b in w.network.backends() if b.pod.startswith(f"default/svc{s}-"))
    victim = w.backend(current[0].split("/")[1])
    w.network.set_state(victim, BackendState.DRAINING, w.env.now)
    w.set_pod(victim.pod.split("/")[1], terminating=True, ready=False)
    w.update_slices()
    w.program()
    w.network.set_state(victim, BackendState.EXITED, w.env.now)
    w.delete_pod(victim.pod.split("/")[1])
    w.network.release(victim.ip)
    w.view.bump()
    w.add_pod(f"svc{s}-new{k}", victim.node, {"app": f"svc{s}"})
    w.update_slices()
    w.program()


def run(
    args: argparse.Namespace, engine: Callable[..., EngineCore], duration_s: float
) -> tuple[int, float, float]:
    """Requests, wall seconds, and wall seconds spent compiling rules (not traffic's work)."""
    w = build(args, engine)
    env = w.env
    compiling = [0.0]
    program = w.program

    def timed_program(*a: object, **kw: object) -> None:
        start = time.perf_counter()
        program(*a, **kw)  # type: ignore[arg-type]
        compiling[0] += time.perf_counter() - start

    w.program = timed_program  # type: ignore[method-assign]

    def idle(env_: object) -> object:
        while True:
            yield env.timeout(1.0 / args.events)

    env.process(idle(env))  # type: ignore[arg-type]
    start = time.perf_counter()
    t, k = 0.0, 0
    while t < duration_s:
        t = min(t + args.churn_s, duration_s)
        w.run_to(t)
        if t < duration_s:
            churn(w, args, k)
            k += 1
    frame = w.finish()
    return len(frame), time.perf_counter() - start, compiling[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--pods", type=int, default=10)
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--events", type=float, default=50.0, help="idle events per second")
    parser.add_argument("--churn-s", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--baseline-duration", type=float, default=5.0)
    args = parser.parse_args()
    n, wall, compiling = run(args, TrafficEngine, args.duration)
    fast = n / wall
    print(
        f"batched: {n} requests in {wall:.2f} s wall ({fast:,.0f} requests/s); "
        f"{compiling:.2f} s of it compiling rules, traffic alone "
        f"{n / (wall - compiling):,.0f} requests/s"
    )
    n_ref, wall_ref, compiling_ref = run(args, ReferenceEngine, args.baseline_duration)
    slow = n_ref / wall_ref
    print(
        f"reference: {n_ref} requests in {wall_ref:.2f} s wall ({slow:,.0f} requests/s); "
        f"traffic alone {n_ref / (wall_ref - compiling_ref):,.0f} requests/s"
    )
    print(
        f"simulated_requests_per_s={fast:.0f} baseline_requests_per_s={slow:.0f} "
        f"ratio={fast / slow:.1f}"
    )


if __name__ == "__main__":
    main()
