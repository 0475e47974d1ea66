"""``svcsim run``: replay a scenario, print what happened, write the run folder."""

from __future__ import annotations

import math
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from svcsim.cli.common import console, fail, warn
from svcsim.cli.scenario import ALLOW_OUTSIDE_PATHS_HELP
from svcsim.results import Run, RunFolderError
from svcsim.results.uniformity import uniformity_verdict
from svcsim.runs import run_scenario
from svcsim.scenario.cost import estimate
from svcsim.scenario.errors import ScenarioErrors
from svcsim.scenario.load import load_scenario

BUILTIN_SCENARIO = "rolling-update.yaml"
"""What ``svcsim run`` replays when given no scenario (shipped inside the package)."""

MAX_WINDOW_ROWS = 15


def builtin_scenario() -> Path:
    """Path of the built-in default scenario."""
    return Path(str(resources.files("svcsim.builtin").joinpath(BUILTIN_SCENARIO)))


def run(
    scenario: Annotated[
        Path | None,
        typer.Argument(help="Scenario YAML (default: the built-in rolling update).",
                       show_default=False),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", min=0, help="Seed (default: the scenario's, or new).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Run folder (default: runs/<scenario>-seed<seed>)."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing run folder.")
    ] = False,
    allow_outside_paths: Annotated[
        bool, typer.Option("--allow-outside-paths", help=ALLOW_OUTSIDE_PATHS_HELP)
    ] = False,
) -> None:
    """Replay a scenario: where every request went, which failed, when, and why."""
    path = scenario if scenario is not None else builtin_scenario()
    try:
        loaded = load_scenario(path, allow_outside_paths=allow_outside_paths)
    except ScenarioErrors as exc:
        fail(exc.problems)
    warn(loaded.warnings)
    cost = estimate(loaded.scenario)
    if cost.large:  # the limits refused what cannot fit; say what this one will take
        warn([f"{path}: large run: {cost.describe()}"])
    err = console(stderr=True)
    duration = loaded.scenario.duration_s
    with Progress(
        TextColumn("[bold]simulating[/] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s simulated"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task(loaded.scenario.metadata.name, total=duration)
        try:
            outcome = run_scenario(
                loaded, seed=seed, out_dir=out, overwrite=overwrite,
                progress=lambda t: bar.update(task, completed=t),
            )
        except (ScenarioErrors, RunFolderError) as exc:
            fail(exc.problems if isinstance(exc, ScenarioErrors) else [str(exc)])
    print_summary(outcome.run, console(), wall_s=outcome.wall_s)


def print_summary(run: Run, out: Console, *, wall_s: float | None = None) -> None:
    """The run's summary as a user reads it: outcomes, failure windows, spread, latency."""
    summary: dict[str, Any] = run.summary
    manifest = run.manifest
    requests = summary["requests"]
    total = requests["total"]
    speed = f", {total / wall_s:,.0f} requests/s" if wall_s else ""
    out.print(
        f"[bold]{manifest.get('name', '')}[/]: {manifest.get('duration_s', 0):g} s simulated, "
        f"seed {summary['seed']}, {total:,} requests"
        + (f" in {wall_s:.1f} s wall{speed}" if wall_s else "")
    )
    outcomes = Table("outcome", "requests", "share", box=box.SIMPLE_HEAD, title="Requests")
    for name, count in sorted(requests["by_outcome"].items(), key=lambda kv: -kv[1]):
        outcomes.add_row(name, f"{count:,}", f"{count / total:.2%}" if total else "-")
    out.print(outcomes)

    windows = summary["failure_windows"]
    if windows:
        table = Table("service", "from node", "start s", "end s", "failed", "cause", "outcomes",
                      box=box.SIMPLE_HEAD, title=f"Failure windows ({len(windows)})")
        shown = sorted(windows, key=lambda w: (-w["failed"], w["start_s"]))[:MAX_WINDOW_ROWS]
        for w in sorted(shown, key=lambda w: (w["start_s"], w["service"], w["node"])):
            mix = ", ".join(f"{k} {v}" for k, v in sorted(w["outcomes"].items()))
            table.add_row(w["service"], w["node"], f"{w['start_s']:.3f}", f"{w['end_s']:.3f}",
                          f"{w['failed']:,}", w["cause"], mix)
        if len(windows) > MAX_WINDOW_ROWS:
            table.caption = f"the {MAX_WINDOW_ROWS} largest of {len(windows)} windows"
        out.print(table)
    else:
        out.print("No failure windows: every request succeeded.\n")

    shares = Table("service", "endpoint", "requests", "share", box=box.SIMPLE_HEAD,
                   title="Spread over endpoints")
    for service, endpoints in sorted(summary["endpoints"].items()):
        for endpoint, row in sorted(endpoints.items()):
            shares.add_row(service, endpoint, f"{row['requests']:,}", f"{row['share']:.2%}")
    out.print(shares)

    uniformity = summary.get("uniformity") or {}
    if uniformity:
        table = Table("service", "new flows", "chi-square", "p-value", "verdict",
                      box=box.SIMPLE_HEAD, title="Uniformity in stable intervals")
        for row in _keyed_rows(uniformity, "service"):
            p = row.get("p_value")
            # summary.json holds the verdict; older run folders only the p-value.
            verdict = row.get("verdict") or uniformity_verdict(p)
            table.add_row(row["service"], f"{row.get('flows', 0):,}",
                          _num(row.get("statistic")), _num(p), verdict)
        out.print(table)

    latency = summary.get("programming_latency") or {}
    syncs = summary.get("syncs") or {}
    if latency or syncs:
        table = Table("node", "syncs run", "failed", "with trigger time", "p50 s", "p90 s",
                      "max s", box=box.SIMPLE_HEAD,
                      title="Network programming latency (trigger → rules in the kernel)",
                      caption="syncs run: every sync; p50/p90/max over the syncs with a "
                              "trigger time (docs/results.md)")
        for node in sorted(set(latency) | set(syncs)):
            lat, run_syncs = latency.get(node, {}), syncs.get(node, {})
            table.add_row(node, _count(run_syncs.get("total")), _count(run_syncs.get("failed")),
                          _count(lat.get("syncs_with_trigger")), _num(lat.get("p50_s")),
                          _num(lat.get("p90_s")), _num(lat.get("max_s")))
        out.print(table)
    out.print(f"Run folder: {run.path}  (svcsim report {run.path} for an HTML page)")
    sys.stdout.flush()


def _keyed_rows(by_key: dict[str, dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """``{name: {...}}`` from summary.json as rows carrying the name under ``key``."""
    return [{key: name, **row} for name, row in sorted(by_key.items())]


def _count(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}"
