"""Sweeps: a scenario run for every combination of ``--set`` values and every seed.

:func:`sweep` is the notebook's entry point and ``svcsim sweep`` the command's; both check
every grid point first, skip runs already finished in the sweep's folder, run the rest in
parallel (a local process pool, or a Dask cluster) and write ``runs.parquet``,
``points.parquet`` and ``sweep.png`` there (docs/sweep.md). The modules: :mod:`.grid` (points,
seeds, folders), :mod:`.task` (one run, and recognising a finished one), :mod:`.execute`
(executors), :mod:`.table` (the tables), :mod:`.driver` (the sequence).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from svcsim.sweep.driver import (
    SweepError,
    SweepInterrupted,
    SweepOutcome,
    SweepPlan,
    execute_plan,
    make_settings,
    plan_sweep,
)
from svcsim.sweep.execute import ExecutorError
from svcsim.sweep.grid import parse_seeds
from svcsim.sweep.table import points_frame

__all__ = [
    "ExecutorError",
    "SweepError",
    "SweepInterrupted",
    "SweepOutcome",
    "SweepPlan",
    "execute_plan",
    "parse_seeds",
    "plan_sweep",
    "points_frame",
    "sweep",
]


def sweep(
    scenario_path: str | Path,
    sets: Mapping[str, str | Sequence[object]] | None = None,
    seeds: Iterable[int] = range(1, 21),
    jobs: int | None = None,
    out: str | Path | None = None,
    *,
    scheduler: str | None = None,
    allow_outside_paths: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Run ``scenario_path`` for every combination of ``sets`` and every seed; the runs table.

    ``sets`` maps a key (``"cluster.proxy.minSyncPeriod"``) to its values: a list of value
    texts (``["0s", "1s", "5s"]``; numbers may be given as numbers) or one ``--set`` text
    (``"0s,1s,5s"``). ``jobs`` local processes (default: every core; 1 runs in this process)
    or the Dask scheduler at ``scheduler`` run them; run folders, ``runs.parquet``,
    ``points.parquet`` and ``sweep.png`` go to ``out`` (default ``sweeps/<scenario name>``),
    and runs already finished there are not run again. Returns the ``runs.parquet`` table:
    one row per run in grid order, then seed order (:mod:`svcsim.sweep.table`).

    Raises :class:`~svcsim.scenario.errors.ScenarioErrors` (a bad value, before anything
    runs), :class:`~svcsim.scenario.overrides.OverrideError` (a bad key),
    :class:`SweepError` (runs failed) and :class:`SweepInterrupted` (Ctrl-C).
    """
    plan = plan_sweep(
        scenario_path,
        make_settings(sets),
        tuple(seeds),
        out,
        allow_outside_paths=allow_outside_paths,
    )
    return execute_plan(plan, jobs=jobs, scheduler=scheduler, on_progress=on_progress).runs
