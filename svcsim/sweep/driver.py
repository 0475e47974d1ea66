"""A sweep end to end: check every grid point, skip finished runs, run the rest, write tables.

Every grid point's scenario is loaded and validated here before anything runs (a bad value
stops the sweep with the scenario's problem lines, nothing written). Runs whose folders
already hold them finished (:func:`~svcsim.sweep.task.finished_row`) are not run again; the
others go to the executor. When every run has a row, ``runs.parquet``, ``points.parquet``
(:mod:`svcsim.sweep.table`) and ``sweep.png`` are written into the sweep's folder, each
replaced atomically. This module only sequences the layers (DESIGN.md: ``runs``/``sweep``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from svcsim.scenario.errors import ScenarioErrors
from svcsim.scenario.load import LoadedScenario, load_scenario
from svcsim.scenario.overrides import Setting
from svcsim.sweep.execute import run_in_pool, run_in_process, run_on_dask
from svcsim.sweep.grid import Point, checked_seeds, expand_grid, run_folder
from svcsim.sweep.table import points_frame, runs_frame
from svcsim.sweep.task import RunTask, TaskResult, finished_row

RUNS_TABLE: Final = "runs.parquet"
POINTS_TABLE: Final = "points.parquet"
FIGURE: Final = "sweep.png"

DEFAULT_SWEEPS_DIR: Final = Path("sweeps")
"""Where a sweep's folder goes unless told otherwise: ``sweeps/<scenario name>``."""


class SweepError(Exception):
    """Some runs of a sweep failed; ``problems`` holds one line each (their folders stay).

    ``bug`` is set when a simulation raised (svcsim's fault, not the input's).
    """

    def __init__(self, problems: Sequence[str], *, bug: bool = False) -> None:
        self.problems = list(problems)
        self.bug = bug
        super().__init__("\n".join(self.problems))


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a sweep; ``finished`` of ``total`` runs are in ``out`` (no tables)."""

    def __init__(self, out: Path, finished: int, total: int) -> None:
        self.out = out
        self.finished = finished
        self.total = total
        super().__init__(f"{finished} of {total} runs finished in {out}")


@dataclass(slots=True)
class SweepPlan:
    """A checked sweep: its folder, keys, points, and every run (finished or to run)."""

    out: Path
    keys: tuple[str, ...]
    points: tuple[Point, ...]
    tasks: tuple[RunTask, ...]
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Rows of the runs found finished, by task index."""
    warnings: tuple[str, ...] = ()

    @property
    def todo(self) -> tuple[RunTask, ...]:
        """The runs still to do."""
        return tuple(t for t in self.tasks if t.index not in self.rows)


@dataclass(frozen=True, slots=True)
class SweepOutcome:
    """A finished sweep: its tables, where they are, and how many runs were done now."""

    out: Path
    keys: tuple[str, ...]
    runs: pd.DataFrame
    points: pd.DataFrame
    ran: int
    reused: int
    figure: Path


def plan_sweep(
    scenario: str | Path,
    settings: Sequence[Setting],
    seeds: Sequence[int],
    out: str | Path | None = None,
    *,
    allow_outside_paths: bool = False,
) -> SweepPlan:
    """Load every grid point (ScenarioErrors with all their problems), find finished runs."""
    seeds = checked_seeds(seeds)
    points = expand_grid(settings)
    loaded: list[LoadedScenario] = []
    problems: list[str] = []
    warnings: list[str] = []
    for point in points:
        try:
            one = load_scenario(
                scenario, allow_outside_paths=allow_outside_paths, overrides=point.overrides
            )
        except ScenarioErrors as exc:
            problems.extend(p for p in exc.problems if p not in problems)
            continue
        loaded.append(one)
        warnings.extend(w for w in one.warnings if w not in warnings)
    if problems:
        raise ScenarioErrors(problems)
    folder = Path(out) if out is not None else DEFAULT_SWEEPS_DIR / loaded[0].scenario.metadata.name
    tasks: list[RunTask] = []
    for point, one in zip(points, loaded, strict=True):
        for seed in seeds:
            path = run_folder(folder, point, seed)
            labels = tuple(point.labels().items())
            relative = path.relative_to(folder).as_posix()
            tasks.append(RunTask(len(tasks), one, labels, seed, path, relative))
    plan = SweepPlan(folder, tuple(s.key for s in settings), points, tuple(tasks))
    plan.warnings = tuple(warnings)
    for task in tasks:
        row = finished_row(task)
        if row is not None:
            plan.rows[task.index] = row
    return plan


def execute_plan(
    plan: SweepPlan,
    *,
    jobs: int | None = None,
    scheduler: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> SweepOutcome:
    """Run what ``plan`` has left, then write and return the tables.

    ``jobs`` local processes (default: every core this process may use; 1 runs here, in
    this process), or the Dask cluster at ``scheduler``. ``on_progress(done, total)`` is
    called at the start and after each run. Raises :class:`SweepInterrupted` on Ctrl-C,
    :class:`SweepError` if runs failed (the others' folders stay; no tables written), and
    :class:`~svcsim.sweep.execute.ExecutorError` if the executor cannot start.
    """
    _make_folder(plan.out)
    todo = plan.todo
    reused = len(plan.rows)
    total = len(plan.tasks)
    progress = on_progress or (lambda _done, _total: None)
    errors: dict[int, str] = {}
    bugs: list[int] = []
    progress(reused, total)

    def record(result: TaskResult) -> None:
        if result.row is not None:
            plan.rows[result.index] = result.row
        elif result.error is not None:
            errors[result.index] = result.error
            if result.bug:
                bugs.append(result.index)
        if not result.interrupted:
            progress(len(plan.rows) + len(errors), total)

    try:
        if not todo:
            pass
        elif scheduler is not None:
            run_on_dask(todo, scheduler, record)
        elif (jobs or default_jobs()) == 1:
            run_in_process(todo, record)
        else:
            run_in_pool(todo, jobs or default_jobs(), record)
    except KeyboardInterrupt:
        raise SweepInterrupted(plan.out, len(plan.rows), total) from None
    if errors:
        raise SweepError([errors[i] for i in sorted(errors)], bug=bool(bugs))
    return _write_tables(plan, ran=len(todo), reused=reused)


def default_jobs() -> int:
    """Every core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _make_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SweepError(
            [f"{out}: cannot create the sweep folder: {exc.strerror or exc}"]
        ) from None


def _write_tables(plan: SweepPlan, *, ran: int, reused: int) -> SweepOutcome:
    from svcsim.plots.style import png_bytes
    from svcsim.plots.sweep import sweep_figure

    runs = runs_frame(plan.keys, [plan.rows[t.index] for t in plan.tasks])
    points = points_frame(plan.keys, runs)
    figure = plan.out / FIGURE
    try:
        _replace(plan.out / RUNS_TABLE, lambda tmp: runs.to_parquet(tmp, index=False))
        _replace(plan.out / POINTS_TABLE, lambda tmp: points.to_parquet(tmp, index=False))
        image = png_bytes(sweep_figure(points, plan.keys))
        _replace(figure, lambda tmp: tmp.write_bytes(image))
    except OSError as exc:
        raise SweepError([f"{plan.out}: cannot write the tables: {exc.strerror or exc}"]) from None
    return SweepOutcome(plan.out, plan.keys, runs, points, ran, reused, figure)


def _replace(path: Path, write: Callable[[Path], Any]) -> None:
    """Write ``path`` through a temporary sibling renamed over it (never half a file)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def make_settings(sets: Mapping[str, str | Sequence[object]] | None) -> tuple[Setting, ...]:
    """Settings from ``{key: "v1,v2"}`` (split as ``--set`` does) or ``{key: [v1, v2]}``.

    A list's items are value texts (``"5s"``; a number is written as Python prints it).
    """
    from svcsim.scenario.overrides import make_setting, parse_setting, unique_settings

    settings = []
    for key, values in (sets or {}).items():
        if isinstance(values, str):
            settings.append(parse_setting(f"{key}={values}"))
        else:
            items = [v if isinstance(v, str) else _yaml_text(v) for v in values]
            settings.append(make_setting(key, items))
    return unique_settings(settings)


def _yaml_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
