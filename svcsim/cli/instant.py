"""``svcsim rules RUN_FOLDER --node N --at T`` and ``svcsim trace RUN_FOLDER ... --at T``.

The node's rules as its kernel held them at that instant of the run (:mod:`svcsim.instant`),
printed or walked exactly as the manifest forms do.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal, NoReturn

import typer

from svcsim.cli.common import fail, warn

if TYPE_CHECKING:
    from svcsim.instant import RunAt
    from svcsim.proxy.node_diff import NodeDiff
    from svcsim.sim.kernel import Kernel


def _at_seconds(at: str | None) -> float:
    from svcsim.scenario.durations import parse_duration

    if at is None:
        fail(["--at: which instant of the run (e.g. --at 23.5s)"])
    try:
        return parse_duration(at)
    except ValueError as exc:
        fail([f"--at {at}: {exc}"])


def _state(run_dir: Path, node: str, at: str | None) -> tuple[RunAt, Kernel]:
    from svcsim.instant import InstantError, run_at
    from svcsim.scenario.errors import ScenarioErrors

    t_s = _at_seconds(at)
    try:
        state = run_at(run_dir, t_s)
    except InstantError as exc:
        fail([str(exc)])
    except ScenarioErrors as exc:
        fail(exc.problems)
    kernel = state.world.kernels.get(node)
    if kernel is None:
        known = ", ".join(sorted(state.world.kernels))
        fail([f"--node {node}: the run has no such node (nodes: {known})"])
    if kernel.mode == "ipvs":
        fail([f"--node {node}: an ipvs-mode node; --at reads iptables and nftables nodes only "
              "(svcsim rules --mode ipvs prints a node's IPVS state from manifests)"])  # fmt: skip
    return state, kernel


def _no_format(mode: str, chosen: str, formats: tuple[str, ...]) -> NoReturn:
    fail([f"--format {chosen}: this node's {mode}-mode rules print as {' or '.join(formats)}"])


def _origin(state: RunAt, node: str, src: str) -> Literal["pod", "host", "external"]:
    """Where a packet from ``src`` enters ``node``: from the host, a Pod, or outside."""
    kernel = state.world.kernels[node]
    if src in kernel.network.node_ips:
        return "host"
    owner = state.world.network.lookup(src)
    if owner is None:
        return "external"
    if owner.node != node:
        warn([f"{src} is Pod {owner.pod} on node {owner.node} at that instant: its connections "
              f"are processed by that node's rules, not {node}'s"])  # fmt: skip
    return "pod"


def rules_at(run_dir: Path, node: str, at: str | None, output_format: str | None) -> None:
    """Print ``node``'s installed rules at ``at`` (save or nft/list, by the node's mode)."""
    state, kernel = _state(run_dir, node, at)
    if kernel.nft is not None:
        from svcsim.netfilter.nftables import dump
        from svcsim.netfilter.nftables_list import list_table

        chosen = output_format or "nft"
        if chosen not in ("nft", "list"):
            _no_format("nftables", chosen, ("nft", "list"))
        table = kernel.nft.table
        typer.echo(dump(table) if chosen == "nft" else list_table(table), nl=False)
    else:
        from svcsim.netfilter.text import render_save

        chosen = output_format or "save"
        if chosen != "save":
            _no_format("iptables", chosen, ("save",))
        typer.echo(render_save(kernel.ruleset), nl=False)
    typer.echo(
        f"# {node} at {state.t_s:g}s of {run_dir} (seed {state.seed}): installed at "
        f"{kernel.installed_at_s:.6f}s",
        err=True,
    )


def trace_at(
    run_dir: Path,
    node: str,
    at: str | None,
    packet: tuple[str, str, int, str, int],
    origin: Literal["pod", "host", "external"] | None,
    seed: int,
    verbose: bool,
) -> None:
    """Walk one packet through ``node``'s rules as installed at ``at``."""
    import numpy as np

    from svcsim.netfilter.interpreter import draws_from, trace
    from svcsim.netfilter.numgen import u32_draws_from
    from svcsim.netfilter.packet import Packet

    state, kernel = _state(run_dir, node, at)
    src, dst, dport, protocol, sport = packet
    entry = origin or _origin(state, node, src)
    first = Packet(src=src, dst=dst, protocol=protocol, dport=dport, sport=sport, origin=entry)
    rng = np.random.default_rng(seed)
    if kernel.nft is not None:
        from svcsim.netfilter.nft_eval import trace_nft

        walk = trace_nft(kernel.nft.parsed, first, kernel.network, draw=u32_draws_from(rng))
    else:
        walk = trace(kernel.ruleset, first, kernel.network, draw=draws_from(rng))
    typer.echo(f"# {node} at {state.t_s:g}s: rules installed at {kernel.installed_at_s:.6f}s")
    typer.echo(walk.format(verbose=verbose))


def diff_at(run_dir: Path, node: str, at: str | None) -> tuple[NodeDiff, Path]:
    """``node``'s rules at ``at`` against what kube-proxy should have written.

    See :func:`svcsim.instant.node_diff`; returns the diff and the label its findings cite.
    """
    from svcsim.instant import InstantError, node_diff

    state, _ = _state(run_dir, node, at)
    try:
        return node_diff(state, node), Path(f"{run_dir}@{state.t_s:g}s")
    except InstantError as exc:
        fail([str(exc)])
