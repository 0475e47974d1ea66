"""A run's cluster at any instant: its control plane re-simulated from the run folder.

A run folder keeps the scenario as it ran (``scenario.yaml``, :mod:`svcsim.scenario.replay`)
and its seed (``manifest.json``). The simulation is deterministic and its control plane
(Pods, controllers, kube-proxy syncs, the rules each node's kernel holds) never depends on the
traffic, so building the same world without workloads and running it to an instant gives
exactly the state the run had then, through the same code. That is how svcsim keeps "every
ruleset of every node" compactly: as the scenario that made them. The cost is re-simulating
the control plane up to the instant (well under a second for the shipped scenarios).

"At T" means just after everything that happened at T (a sync that ended at T is installed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from svcsim.results.layout import MANIFEST, SCENARIO
from svcsim.scenario.build import build_world
from svcsim.scenario.load import load_scenario
from svcsim.scenario.world import World
from svcsim.traffic.engine import TrafficEngine
from svcsim.traffic.spec import WorkloadSpec

if TYPE_CHECKING:
    from svcsim.proxy.node_diff import NodeDiff

_AFTER = 1e-9
"""How far past T the re-simulation runs, so that events at exactly T are included."""


class InstantError(ValueError):
    """The run folder cannot be re-simulated to that instant; the message is one line."""


@dataclass(frozen=True, slots=True)
class RunAt:
    """A run's world, re-simulated to ``t_s`` (no traffic)."""

    run_dir: Path
    t_s: float
    seed: int
    world: World


def is_run_folder(path: Path) -> bool:
    """True if ``path`` is a run folder that keeps its scenario (it can be re-simulated)."""
    return path.is_dir() and (path / MANIFEST).is_file() and (path / SCENARIO).is_file()


def _no_traffic(specs: list[WorkloadSpec], world: World) -> TrafficEngine:
    # The control plane never reads the traffic: without it the state is the same, sooner.
    return TrafficEngine([], world)


def run_at(run_dir: Path, t_s: float) -> RunAt:
    """Re-simulate ``run_dir``'s control plane to just after ``t_s`` (see the module docstring)."""
    if not is_run_folder(run_dir):
        raise InstantError(f"{run_dir}: not a run folder with its {SCENARIO}")
    try:
        manifest = json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))
        seed = int(manifest["seed"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InstantError(f"{run_dir / MANIFEST}: unreadable ({exc})") from None
    loaded = load_scenario(run_dir / SCENARIO)
    end = loaded.scenario.duration_s
    if not 0 <= t_s <= end:
        raise InstantError(f"--at {t_s:g}s: the run lasted {end:g}s")
    world = build_world(loaded, seed, engine=_no_traffic)
    world.env.run(until=t_s + _AFTER)
    return RunAt(run_dir, t_s, seed, world)


def node_diff(state: RunAt, node: str) -> NodeDiff:
    """``node``'s rules at the instant against what kube-proxy should have written.

    The expected rules are compiled for the node (its kube-proxy's flags and facts) from the
    API's Services and EndpointSlices at that instant; the node's are its kernel's then
    (:func:`svcsim.proxy.node_diff.diff_node` compares them per Service). A userspace-mode
    node has no per-endpoint rule to compare: :class:`InstantError`.
    """
    from svcsim.netfilter.node_save import parse_node_save
    from svcsim.netfilter.text import render_save
    from svcsim.proxy.iptables import compile_iptables
    from svcsim.proxy.node_diff import diff_node

    world = state.world
    kernel = world.kernels[node]
    if kernel.mode == "userspace":
        raise InstantError(
            f"--node {node}: kube-proxy ran in userspace mode there; its portal rules send each "
            "Service to kube-proxy, which picks the endpoint: no per-endpoint rule to compare "
            "(the run's endpoint_sets hold its balancers' endpoints)"
        )
    proxy = world.proxies[node]
    services = world.api.list("Service")
    slices = world.api.list("EndpointSlice")
    local = [p.pod_ip for p in world.api.list("Pod") if p.node_name == node and p.pod_ip]
    pod_source = local[0] if local else None
    if kernel.nft is not None:
        from svcsim.netfilter.nft_parse import parse_table
        from svcsim.proxy.nft_node_diff import diff_nft_node
        from svcsim.proxy.nftables import compile_nftables

        wanted = compile_nftables(services, slices, proxy.ctx, proxy.service_cidrs)
        return diff_nft_node(
            services, parse_table(wanted), kernel.nft.parsed, kernel.network, pod_source=pod_source
        )
    expected = compile_iptables(services, slices, proxy.ctx, proxy.caches.compile)
    dump = parse_node_save(render_save(kernel.ruleset))
    return diff_node(services, expected, dump, kernel.network, pod_source=pod_source)
