"""``svcsim run``: replay a scenario, print what happened, write the run folder."""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from svcsim.cli.common import console, fail, interrupted, note, warn
from svcsim.cli.scenario import ALLOW_OUTSIDE_PATHS_HELP, SET_HELP

if TYPE_CHECKING:
    from svcsim.results import Run
    from svcsim.runs import RunOutcome, RunPhase
    from svcsim.scenario.load import LoadedScenario

# The simulation's modules (numpy, pandas, simpy, matplotlib) are imported inside the command,
# so that ``svcsim --help`` and the other commands start fast.

BUILTIN_SCENARIO = "rolling-update.yaml"
"""What ``svcsim run`` replays when given no scenario (shipped inside the package)."""

MAX_WINDOW_ROWS = 15
MAX_SPREAD_ROWS = 20
"""Endpoints listed per Service: beyond it, the busiest and the idlest half each."""
MAX_NODE_ROWS = 30
"""Nodes listed in the programming-latency table (the slowest ones beyond it)."""


def builtin_scenario() -> Path:
    """Path of the built-in default scenario."""
    return Path(str(resources.files("svcsim.builtin").joinpath(BUILTIN_SCENARIO)))


def run(
    scenario: Annotated[
        Path | None,
        typer.Argument(
            help="Scenario YAML (default: the built-in rolling update).", show_default=False
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", min=0, help="Seed (default: the scenario's, or new).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Run folder (default: runs/<scenario>-seed<seed>, where a re-run replaces "
            "the previous run of the same scenario and seed).",
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace a previous svcsim run in the --out folder."),
    ] = False,
    allow_outside_paths: Annotated[
        bool, typer.Option("--allow-outside-paths", help=ALLOW_OUTSIDE_PATHS_HELP)
    ] = False,
    sets: Annotated[
        list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help=SET_HELP)
    ] = None,
    records: Annotated[
        str | None,
        typer.Option(
            "--records",
            metavar="LEVEL",
            help="What the run folder keeps: every-request, or failures-and-aggregates (failed "
            "attempts and counts: same summary, windows and figures). Same as --set records=LEVEL.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Replay a scenario: where every request went, which failed, when, and why."""
    if records is not None:
        sets = [*(sets or []), f"records={records}"]
    try:
        loaded = _load(scenario if scenario is not None else builtin_scenario(),
                       allow_outside_paths=allow_outside_paths, sets=sets or [])  # fmt: skip
        outcome = _simulate(loaded, seed=seed, out=out, overwrite=overwrite)
    except KeyboardInterrupt:  # before the simulation started (importing, loading)
        _interrupted(None, out)
    if outcome.removed_stale:
        warn(f"removed {p}: left by an interrupted run" for p in outcome.removed_stale)
    if outcome.replaced_previous_run:
        note([f"replaced the previous run in {outcome.path}"])
    print_summary(outcome.run, console(), wall_s=outcome.wall_s)
    warn(str(n) for n in outcome.run.manifest.get("notices", []))


def _load(path: Path, *, allow_outside_paths: bool, sets: list[str]) -> LoadedScenario:
    """The scenario, or its problems and exit 2; its warnings and, if large, its cost on stderr.

    A run folder stands for the self-contained scenario it keeps (``scenario.yaml``): the
    run is replayed, with its seed unless ``--seed`` says otherwise.
    """
    from svcsim.scenario.cost import estimate
    from svcsim.scenario.errors import ScenarioErrors
    from svcsim.scenario.load import load_scenario
    from svcsim.scenario.overrides import OverrideError, parse_settings, single_overrides

    if path.is_dir():
        from svcsim.results.layout import MANIFEST, SCENARIO

        if not (path / MANIFEST).is_file():
            fail([f"{path}: a directory, but not a svcsim run folder (no {MANIFEST})"])
        if not (path / SCENARIO).is_file():
            fail([f"{path}: this run folder keeps no {SCENARIO} (older svcsim runs did not): "
                  "run its scenario file instead"])  # fmt: skip
        path = path / SCENARIO
    try:
        overrides = single_overrides(parse_settings(sets))
        loaded = load_scenario(path, allow_outside_paths=allow_outside_paths, overrides=overrides)
    except OverrideError as exc:
        fail([str(exc)])
    except ScenarioErrors as exc:
        fail(exc.problems)
    warn(loaded.warnings)
    cost = estimate(loaded.scenario)
    if cost.large:  # the limits refused what cannot fit; say what this one will take
        warn([f"{path}: large run: {cost.describe()}"])
    return loaded


def _simulate(
    loaded: LoadedScenario, *, seed: int | None, out: Path | None, overwrite: bool
) -> RunOutcome:
    """Run the scenario with its progress on stderr; problems and Ctrl-C end the command."""
    # A Ctrl-C while importing is the caller's to report (nothing has started).
    from svcsim.results import RunFolderError
    from svcsim.runs import run_scenario
    from svcsim.scenario.errors import ScenarioErrors

    reached: list[RunPhase] = []
    try:
        with _progress(loaded) as (advance, show_phase):

            def on_phase(phase: RunPhase) -> None:
                reached.append(phase)
                show_phase(phase)

            return run_scenario(
                loaded, seed=seed, out_dir=out, overwrite=overwrite,
                progress=advance, on_phase=on_phase,
            )  # fmt: skip
    except ScenarioErrors as exc:
        fail(exc.problems)
    except RunFolderError as exc:
        fail([str(exc)])
    except KeyboardInterrupt:
        _interrupted(reached[-1] if reached else None, out)


@contextmanager
def _progress(
    loaded: LoadedScenario,
) -> Iterator[tuple[Callable[[float], None], Callable[[RunPhase], None]]]:
    """A progress bar for simulated time, then a status line per phase (on a terminal only)."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn

    from svcsim.runs import RunPhase

    err = console(stderr=True)
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}[/]"),
        BarColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        name = loaded.scenario.metadata.name
        task = bar.add_task(f"simulating {name}", total=loaded.scenario.duration_s, detail="")

        total_s = loaded.scenario.duration_s

        def advance(simulated_s: float) -> None:
            detail = f"{simulated_s:.0f}/{total_s:.0f} s simulated"
            bar.update(task, completed=simulated_s, detail=detail)

        def show_phase(phase: RunPhase) -> None:
            if phase is not RunPhase.SIMULATING:
                # No fraction to show: an indeterminate (pulsing) bar with the phase's name.
                bar.update(task, description=f"{phase.value}…", total=None, detail="")

        yield advance, show_phase


def _interrupted(phase: RunPhase | None, out: Path | None) -> NoReturn:
    """Say what Ctrl-C left behind, in one line, and exit with 130 (as shells do for SIGINT)."""
    from svcsim.runs import RunPhase

    if phase is RunPhase.WRITTEN:
        interrupted(f"the run folder {out} is complete" if out else "the run folder is complete")
    if out is not None and out.is_dir() and any(out.iterdir()):
        interrupted(f"nothing was written ({out} is unchanged)")
    interrupted("nothing was written")


def print_summary(run: Run, out: Console, *, wall_s: float | None = None) -> None:
    """The run's summary as a user reads it: outcomes, failure windows, spread, latency."""
    from svcsim.results.uniformity import uniformity_verdict

    summary: dict[str, Any] = run.summary
    manifest = run.manifest
    requests = summary["requests"]
    total = requests["total"]
    speed = f", {total / wall_s:,.0f} requests/s" if wall_s else ""
    out.print(
        f"[bold]{manifest.get('name', '')}[/]: {manifest.get('duration_s', 0):g} s simulated, "
        + (f"kube-proxy {manifest['proxy_mode']} mode, " if "proxy_mode" in manifest else "")
        + f"seed {summary['seed']}, {total:,} requests"
        + (f" in {wall_s:.1f} s wall{speed}" if wall_s else "")
    )
    outcomes = Table("outcome", "requests", "share", box=box.SIMPLE_HEAD, title="Requests")
    for name, count in sorted(requests["by_outcome"].items(), key=lambda kv: -kv[1]):
        outcomes.add_row(name, f"{count:,}", _share(count / total) if total else "-")
    out.print(outcomes)

    windows = summary["failure_windows"]
    if windows:
        shown = sorted(windows, key=lambda w: (-w["failed"], w["start_s"]))[:MAX_WINDOW_ROWS]
        cut = f": the {len(shown)} largest" if len(windows) > len(shown) else ""
        out.print(f"[bold]Failure windows ({len(windows)}{cut})[/], by Service")
        for table in _window_tables(shown):
            out.print(table)
    else:
        out.print("No failure windows: every request succeeded.\n")
    events = run.events
    retried = int((events["kind"].astype(str) == "dns-retry").sum()) if len(events) else 0
    if retried:
        out.print(
            f"[bold]DNS[/]: {retried:,} lookups lost a query to the conntrack insert race and "
            "waited out the resolver's timeout (dns-retry events; svcsim explain; docs/dns.md)\n"
        )

    out.print("[bold]Spread over endpoints[/], by Service")
    for service, endpoints in sorted(summary["endpoints"].items()):
        if not any(row["requests"] for row in endpoints.values()):
            continue  # no workload dialled it (kube-dns behind dns: lookups, say)
        shares = _narrow_table(service, ("endpoint", "requests", "share"))
        rows = sorted(endpoints.items(), key=lambda kv: natural_key(kv[0]))
        if len(rows) > MAX_SPREAD_ROWS:
            busy = sorted(rows, key=lambda kv: (-kv[1]["requests"], natural_key(kv[0])))
            half = MAX_SPREAD_ROWS // 2
            first, last = busy[:half], busy[-half:]
            for endpoint, row in first:
                shares.add_row(endpoint, f"{row['requests']:,}", _share(row["share"]))
            shares.add_row(f"... {len(rows) - 2 * half:,} more", "", "")
            for endpoint, row in last:
                shares.add_row(endpoint, f"{row['requests']:,}", _share(row["share"]))
            shares.caption = (
                f"{len(rows):,} endpoints: the {half} busiest, the {half} idlest "
                "(all: svcsim report)"
            )
        else:
            for endpoint, row in rows:
                shares.add_row(endpoint, f"{row['requests']:,}", _share(row["share"]))
        out.print(shares)

    uniformity = summary.get("uniformity") or {}
    if uniformity:
        out.print("[bold]Uniformity in stable intervals[/], by Service")
        for row in _keyed_rows(uniformity, "service"):
            if not row.get("flows"):
                continue  # nothing dialled it: nothing to test, nothing to say
            table = _narrow_table(row["service"], ("new flows", "chi-square", "p-value", "verdict"))
            p = row.get("p_value")
            # summary.json holds the verdict; older run folders only the p-value.
            verdict = row.get("verdict") or uniformity_verdict(p)
            table.add_row(f"{row.get('flows', 0):,}", _num(row.get("statistic")), _num(p), verdict)
            out.print(table)

    latency = summary.get("programming_latency") or {}
    syncs = summary.get("syncs") or {}
    if latency or syncs:
        table = Table("node", "syncs run", "failed", "with trigger time", "p50 s", "p90 s",
                      "max s", box=box.SIMPLE_HEAD,
                      title="Network programming latency (trigger → rules in the kernel)",
                      caption="syncs run: every sync; p50/p90/max over the syncs with a "
                              "trigger time (docs/results.md)")  # fmt: skip
        nodes = sorted(set(latency) | set(syncs), key=natural_key)
        if len(nodes) > MAX_NODE_ROWS:
            # The nodes a user looks for: the slowest to program their rules.
            slowest = sorted(nodes, key=lambda n: -(latency.get(n, {}).get("max_s") or 0.0))
            kept = set(slowest[:MAX_NODE_ROWS])
            nodes = [n for n in nodes if n in kept]
            table.caption = (
                f"the {MAX_NODE_ROWS} nodes (of {len(slowest):,}) "
                "with the largest max latency; syncs run: every sync; p50/p90/max over the "
                "syncs with a trigger time (docs/results.md)"
            )
        for node in nodes:
            lat, run_syncs = latency.get(node, {}), syncs.get(node, {})
            table.add_row(node, _count(run_syncs.get("total")), _count(run_syncs.get("failed")),
                          _count(lat.get("syncs_with_trigger")), _num(lat.get("p50_s")),
                          _num(lat.get("p90_s")), _num(lat.get("max_s")))  # fmt: skip
        out.print(table)
    out.print(f"Run folder: {run.path}  (svcsim report {run.path} for an HTML page)")
    sys.stdout.flush()


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders the numbers inside names by value.

    ``node-2`` before ``node-10``, ``10.244.2.9:8080`` before ``10.244.2.10:8080``.
    """
    return tuple((0, int(part)) if part.isdigit() else (1, part)
                 for part in re.split(r"(\d+)", name) if part)  # fmt: skip


def _narrow_table(service: str, headers: tuple[str, ...]) -> Table:
    """A table of one Service's rows, titled with its name.

    Service names are long (``namespace/name:port``): as a title, not a column, they show
    whole in an 80-column terminal and leave the columns room for the numbers, which never
    wrap.
    """
    table = Table(box=box.SIMPLE_HEAD, title=service, title_justify="left")
    for header in headers:
        table.add_column(header, no_wrap=header != "outcomes", overflow="fold")
    return table


def _window_tables(windows: list[dict[str, Any]]) -> list[Table]:
    """One table per Service of the given failure windows, each in start order."""
    tables = []
    for service in sorted({w["service"] for w in windows}):
        table = _narrow_table(
            service, ("from node", "start s", "end s", "failed", "cause", "outcomes")
        )
        rows = sorted((w for w in windows if w["service"] == service),
                      key=lambda w: (w["start_s"], w["node"]))  # fmt: skip
        for w in rows:
            mix = "\n".join(f"{k} {v:,}" for k, v in sorted(w["outcomes"].items()))
            table.add_row(w["node"], f"{w['start_s']:.3f}", f"{w['end_s']:.3f}",
                          f"{w['failed']:,}", w["cause"], mix)  # fmt: skip
        tables.append(table)
    return tables


def _keyed_rows(by_key: dict[str, dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """``{name: {...}}`` from summary.json as rows carrying the name under ``key``."""
    return [{key: name, **row} for name, row in sorted(by_key.items())]


def _count(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def _share(fraction: float) -> str:
    """A fraction as a percentage; one that is not zero never reads as ``0.00%``."""
    return "<0.01%" if 0 < fraction < 0.00005 else f"{fraction:.2%}"


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}"
