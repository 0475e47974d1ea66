"""A simulated day: how fast, and in how much memory, a long run goes end to end (issue 13).

The scenario: 100 nodes, 20 Services x 10 Pods, a client Pod on every node sending 1,000
requests/s in all (per-request TCP, spread evenly over the Services), one Pod deleted every
10 s (round robin over the Services) and a rollout of one Service every 10 minutes, for 24
simulated hours (``--hours`` to run shorter). It is :func:`simulate.reference_yaml` with other
sizes. The whole of ``svcsim run`` is timed: building the world, simulating, and writing the
run folder (analysing the records, drawing the figures, writing the files), each phase
printed. The last line reads ``simulated_s_per_wall_s=N peak_rss_mib=M`` (peak RSS of this
process, which runs nothing else).

Target (issue 13, item 1): <= 60 s wall and <= 2 GiB peak RSS for the day on a 2-core
machine. Nothing is asserted.

Run: ``make bench-day`` or ``.venv/bin/python benchmarks/day.py [--hours 24]
[--records every-request|failures-and-aggregates]``.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from simulate import reference_yaml

from svcsim.runs import RunPhase, run_scenario
from svcsim.scenario.load import load_scenario

NODES = 100
SERVICES = 20
PODS = 10
RATE_PER_S = 1000.0
ROLLOUT_EVERY = 60
"""Deletions (one every 10 s) per rollout: a rollout every 10 minutes."""


def day_yaml(hours: float, records: str | None = None) -> str:
    """The day scenario as scenario YAML (``records``: the record level, if not the default)."""
    text = reference_yaml(
        hours * 3600.0,
        nodes=NODES,
        services=SERVICES,
        pods=PODS,
        rate=RATE_PER_S,
        rollout_every=ROLLOUT_EVERY,
        name="day",
    )
    if records is not None:
        text = text.replace("\ncluster:\n", f"\nrecords: {records}\ncluster:\n", 1)
    return text


def main() -> None:
    """Run the day and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours")
    parser.add_argument(
        "--records",
        choices=("every-request", "failures-and-aggregates"),
        default=None,
        help="the record level (default: the scenario's default, every-request)",
    )
    parser.add_argument("--no-figures", action="store_true", help="write no figures/")
    args = parser.parse_args()
    marks: dict[str, float] = {}
    peaks: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "day.yaml"
        path.write_text(day_yaml(args.hours, args.records))
        started = time.perf_counter()
        loaded = load_scenario(path)
        marks["load"] = time.perf_counter()

        def progress(_t_s: float) -> None:
            # The first step of the simulation: the world is built.
            marks.setdefault("built", time.perf_counter())

        def on_phase(phase: RunPhase) -> None:
            marks.setdefault(phase.name, time.perf_counter())
            peaks.setdefault(phase.name, _peak_mib())

        outcome = run_scenario(
            loaded,
            out_dir=Path(tmp) / "run",
            progress=progress,
            on_phase=on_phase,
            figures=not args.no_figures,
        )
        done = time.perf_counter()
        folder_mib = sum(f.stat().st_size for f in outcome.path.rglob("*") if f.is_file()) / 2**20
    peak_mib = _peak_mib()
    simulated_s = args.hours * 3600.0
    wall = done - started
    build = marks["built"] - started
    simulate = marks["ANALYSING"] - marks["built"]
    write = marks["WRITTEN"] - marks["ANALYSING"]
    level = outcome.run.manifest.get("records", "every-request")
    print(
        f"day: {NODES} nodes, {SERVICES} Services x {PODS} Pods, {RATE_PER_S:g} requests/s, "
        f"{args.hours:g} simulated h, records {level}"
    )
    print(
        f"requests={outcome.simulated_requests:,} wall_s={wall:.1f} (load+build {build:.1f}, "
        f"simulate {simulate:.1f}, write {write:.1f}: analyse "
        f"{marks.get('DRAWING', marks['WRITING']) - marks['ANALYSING']:.1f}, draw "
        f"{marks['WRITING'] - marks.get('DRAWING', marks['WRITING']):.1f}, files "
        f"{marks['WRITTEN'] - marks['WRITING']:.1f}) run_folder_mib={folder_mib:.0f}"
    )
    print(
        f"peak RSS by the end of: simulating {peaks['ANALYSING']:.0f} MiB, analysing "
        f"{peaks.get('DRAWING', peaks['WRITING']):.0f} MiB, drawing {peaks['WRITING']:.0f} MiB"
    )
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if children:
        # Figures are drawn by forked workers too (svcsim.plots.parallel); their pages are
        # shared with this process until written, so this counts shared pages again.
        print(f"peak RSS of the largest figure-drawing worker: {children:.0f} MiB")
    print(f"simulated_s_per_wall_s={simulated_s / wall:.1f} peak_rss_mib={peak_mib:.0f}")


def _peak_mib() -> float:
    """This process's peak resident set size so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
