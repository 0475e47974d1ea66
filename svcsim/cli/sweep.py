"""``svcsim sweep``: a scenario over a grid of ``--set`` values and seeds, in parallel."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Table

from svcsim.cli.common import console, fail, interrupted, note, warn
from svcsim.cli.scenario import ALLOW_OUTSIDE_PATHS_HELP, EXIT_INTERNAL_ERROR, SET_HELP

if TYPE_CHECKING:
    from svcsim.sweep import SweepOutcome, SweepPlan

# svcsim.sweep (pandas, scipy, the simulation) is imported inside the command.

SHOWN_METRICS = (
    ("requests_total", "requests", "{:,.0f}"),
    ("requests_failed", "failed", "{:,.1f}"),
    ("failure_windows", "windows", "{:.2f}"),
    ("failed_in_windows", "failed in windows", "{:,.1f}"),
    ("programming_latency_p50_s", "latency p50 s", "{:.3f}"),
    ("programming_latency_p99_s", "latency p99 s", "{:.3f}"),
)
"""Columns of the printed table: points.parquet metric, header, number format."""


def sweep(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML.", show_default=False)],
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=V1,V2",
            help=SET_HELP + ' V1,V2: one run each; [a,b] or "a,b" is one value.',
        ),
    ] = None,
    seeds: Annotated[
        str, typer.Option("--seeds", help="Seeds: 1-20, 7, 1,5,9 or 1-5,10-12.")
    ] = "1-20",
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs", min=1, help="Local processes (default: every core).", show_default=False
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", help="Run on this Dask scheduler (tcp://HOST:8786)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Sweep folder (default: sweeps/<scenario name>).", show_default=False
        ),
    ] = None,
    allow_outside_paths: Annotated[
        bool, typer.Option("--allow-outside-paths", help=ALLOW_OUTSIDE_PATHS_HELP)
    ] = False,
) -> None:
    """Run a scenario for every combination of --set values and every seed; compare them."""
    if jobs is not None and scheduler is not None:
        fail(["--jobs and --scheduler: give one (the Dask cluster decides its own workers)"])
    try:
        outcome = _sweep(scenario, sets or [], seeds, jobs, scheduler, out, allow_outside_paths)
    except KeyboardInterrupt:  # while importing or checking: nothing ran
        interrupted("nothing was run")
    print_points(outcome)


def _sweep(
    scenario: Path,
    sets: list[str],
    seeds_text: str,
    jobs: int | None,
    scheduler: str | None,
    out: Path | None,
    allow_outside_paths: bool,
) -> SweepOutcome:
    from svcsim.scenario.errors import ScenarioErrors
    from svcsim.scenario.overrides import OverrideError, parse_settings
    from svcsim.sweep import (
        ExecutorError,
        SweepError,
        SweepInterrupted,
        execute_plan,
        parse_seeds,
        plan_sweep,
    )
    from svcsim.sweep.grid import SeedsError

    try:
        settings = parse_settings(sets)
        seeds = parse_seeds(seeds_text)
        plan = plan_sweep(scenario, settings, seeds, out, allow_outside_paths=allow_outside_paths)
    except (OverrideError, SeedsError) as exc:
        fail([str(exc)])
    except ScenarioErrors as exc:
        fail(exc.problems)
    warn(plan.warnings)
    _warn_large(plan)
    total, reused = len(plan.tasks), len(plan.rows)
    points = len(plan.points)
    where = f"the Dask cluster at {scheduler}" if scheduler else _jobs_text(jobs)
    grid = f"{points} point{'s' if points != 1 else ''} x {len(seeds)} seeds = {total} runs"
    note([f"{grid} into {plan.out}; {reused} already there, {total - reused} to run on {where}"])
    try:
        with _progress(total) as advance:
            return execute_plan(plan, jobs=jobs, scheduler=scheduler, on_progress=advance)
    except SweepInterrupted as exc:
        interrupted(f"{exc.finished} of {exc.total} runs are finished in {exc.out} "
                    "(run the same command again to continue; no tables written)")  # fmt: skip
    except SweepError as exc:
        lines = [*exc.problems, "no tables written: the other runs' folders are kept"]
        if exc.bug:  # a simulation raised: svcsim's fault (docs/errors.md), not the input's
            for line in lines:
                print(f"internal error (please report): {line}", file=sys.stderr)
            raise typer.Exit(EXIT_INTERNAL_ERROR) from None
        fail(lines)
    except ExecutorError as exc:
        fail([str(exc)])


def _warn_large(plan: SweepPlan) -> None:
    """Say what each large grid point's runs will take (as ``svcsim run`` does for one)."""
    from svcsim.scenario.cost import estimate

    seen: set[str] = set()
    for task in plan.tasks:
        point = " ".join(f"{k}={v}" for k, v in task.labels) or "the scenario"
        if point in seen:
            continue
        seen.add(point)
        cost = estimate(task.loaded.scenario)
        if cost.large:
            warn([f"{point}: large run (each of its seeds): {cost.describe()}"])


def _jobs_text(jobs: int | None) -> str:
    from svcsim.sweep.driver import default_jobs

    n = jobs or default_jobs()
    return "this process" if n == 1 else f"{n} local processes"


@contextmanager
def _progress(total: int) -> Iterator[Callable[[int, int], None]]:
    """A progress bar of runs done (on a terminal only)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    err = console(stderr=True)
    with Progress(
        "[bold]runs[/]",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task("runs", total=total)

        def advance(done: int, _total: int) -> None:
            bar.update(task, completed=done)

        yield advance


def print_points(outcome: SweepOutcome) -> None:
    """Each grid point's means with their 95 % intervals, then where the tables are."""
    out = console()
    table = Table(
        box=box.SIMPLE_HEAD,
        title="Sweep: mean ± half-width of its 95 % confidence interval, per grid point",
        caption="± -: no interval with one run; - : no latency sample (docs/sweep.md)",
    )
    for key in outcome.keys:
        table.add_column(key, no_wrap=True)
    table.add_column("runs", justify="right")
    for _metric, header, _fmt in SHOWN_METRICS:
        table.add_column(header, justify="right", no_wrap=True)
    for row in outcome.points.to_dict("records"):
        cells = [str(row[k]) for k in outcome.keys] + [str(row["runs"])]
        cells += [_estimate(row, metric, fmt) for metric, _header, fmt in SHOWN_METRICS]
        table.add_row(*cells)
    out.print(table)
    out.print(f"ran {outcome.ran} runs, reused {outcome.reused}")
    out.print(f"Tables: {outcome.out / 'runs.parquet'}, {outcome.out / 'points.parquet'}; "
              f"figure: {outcome.figure}")  # fmt: skip
    sys.stdout.flush()


def _estimate(row: dict[str, Any], metric: str, fmt: str) -> str:
    mean, low, high = (row[f"{metric}_{part}"] for part in ("mean", "ci_low", "ci_high"))
    if _missing(mean):
        return "-"
    text = fmt.format(mean)
    if _missing(low):
        return f"{text} ± -"
    return f"{text} ± {fmt.format((high - low) / 2)}"  # the t interval is symmetric


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
