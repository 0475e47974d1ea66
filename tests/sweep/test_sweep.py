"""Sweeps end to end: identical tables for any executor, resumption, Ctrl-C, failed runs."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from svcsim import runs as runs_module
from svcsim.runs import run_scenario
from svcsim.scenario.overrides import parse_settings
from svcsim.sweep import SweepError, SweepInterrupted, execute_plan, plan_sweep, sweep
from svcsim.sweep import execute as execute_module
from svcsim.sweep.driver import POINTS_TABLE, RUNS_TABLE
from svcsim.sweep.task import RunTask, TaskResult
from tests.sweep.sweep_cases import SEEDS, SETS, tiny_scenario


def table_bytes(out: Path) -> tuple[bytes, bytes]:
    """``runs.parquet`` and ``points.parquet`` of a sweep folder, as bytes."""
    return (out / RUNS_TABLE).read_bytes(), (out / POINTS_TABLE).read_bytes()


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """The tiny sweep run in this process (jobs=1): (scenario, sweep folder)."""
    root = tmp_path_factory.mktemp("sweep")
    scenario = tiny_scenario(root)
    sweep(scenario, SETS, SEEDS, jobs=1, out=root / "one")
    yield scenario, root / "one"


def test_the_runs_table_has_a_row_per_run_in_grid_then_seed_order(
    in_process: tuple[Path, Path],
) -> None:
    _, out = in_process
    runs = pd.read_parquet(out / RUNS_TABLE)
    assert list(runs["cluster.proxy.minSyncPeriod"]) == ["0s", "0s", "2s", "2s"]
    assert list(runs["seed"]) == [1, 2, 1, 2]
    assert (runs["requests_failed"] > 0).all()  # the rollout fails requests on every run
    for row in runs.itertuples():
        folder = out / row.run
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["requests"]["total"] == row.requests_total
        assert not (folder / "figures").exists()  # per-run figures are off in sweeps
    assert (out / "sweep.png").read_bytes().startswith(b"\x89PNG")


def test_a_sweep_run_equals_the_same_run_made_alone(
    in_process: tuple[Path, Path], tmp_path: Path
) -> None:
    scenario, out = in_process
    from svcsim.scenario.load import load_scenario
    from svcsim.scenario.overrides import single_overrides

    overrides = single_overrides(parse_settings(["cluster.proxy.minSyncPeriod=2s"]))
    alone = run_scenario(
        load_scenario(scenario, overrides=overrides), seed=2, out_dir=tmp_path, figures=False
    )
    runs = pd.read_parquet(out / RUNS_TABLE)
    folder = out / runs.loc[3, "run"]
    assert (folder / "summary.json").read_bytes() == (tmp_path / "summary.json").read_bytes()
    assert alone.run.summary["requests"]["total"] == runs.loc[3, "requests_total"]


def test_a_process_pool_gives_the_same_tables(
    in_process: tuple[Path, Path], tmp_path: Path
) -> None:
    scenario, out = in_process
    sweep(scenario, SETS, SEEDS, jobs=2, out=tmp_path)
    assert table_bytes(tmp_path) == table_bytes(out)


def test_dask_worlds_in_threads_of_one_process_give_the_same_tables(
    in_process: tuple[Path, Path], tmp_path: Path
) -> None:
    distributed = pytest.importorskip(
        "distributed", reason="dask[distributed] is not installed (pip install 'svcsim[dask]')"
    )
    scenario, out = in_process
    with distributed.LocalCluster(
        processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None
    ) as cluster:
        sweep(scenario, SETS, SEEDS, out=tmp_path, scheduler=cluster.scheduler_address)
    assert table_bytes(tmp_path) == table_bytes(out)


def test_finished_runs_are_not_run_again(in_process: tuple[Path, Path], tmp_path: Path) -> None:
    scenario, out = in_process
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = table_bytes(copy)
    again = plan_sweep(scenario, parse_settings(["cluster.proxy.minSyncPeriod=0s,2s"]), SEEDS, copy)
    assert again.todo == ()
    outcome = execute_plan(again, jobs=1)
    assert (outcome.ran, outcome.reused) == (0, 4)
    assert table_bytes(copy) == before
    # A new value and a new seed: only their runs are done.
    more = plan_sweep(
        scenario, parse_settings(["cluster.proxy.minSyncPeriod=0s,2s,3s"]), (1, 2, 3), copy
    )
    assert len(more.todo) == 9 - 4
    # An edited scenario is another run: none of its runs is taken as finished.
    scenario.write_text(scenario.read_text().replace("rate: 100", "rate: 90"))
    try:
        edited = plan_sweep(
            scenario, parse_settings(["cluster.proxy.minSyncPeriod=0s,2s"]), SEEDS, copy
        )
    finally:
        scenario.write_text(scenario.read_text().replace("rate: 90", "rate: 100"))
    assert len(edited.todo) == 4


def test_ctrl_c_keeps_finished_runs_writes_no_table_and_the_next_sweep_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = tiny_scenario(tmp_path)
    real = execute_module.run_task
    calls: list[int] = []

    def interrupted_second(task: RunTask) -> TaskResult:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(execute_module, "run_task", interrupted_second)
    with pytest.raises(SweepInterrupted) as caught:
        sweep(scenario, {}, (1, 2, 3), jobs=1, out=tmp_path / "s")
    assert (caught.value.finished, caught.value.total) == (1, 3)
    assert not (tmp_path / "s" / RUNS_TABLE).exists()
    monkeypatch.setattr(execute_module, "run_task", real)
    plan = plan_sweep(scenario, (), (1, 2, 3), tmp_path / "s")
    assert [t.seed for t in plan.todo] == [2, 3]


def test_a_failed_run_fails_the_sweep_after_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = tiny_scenario(tmp_path)
    real = runs_module.build_world

    def broken_for_seed_1(loaded: object, seed: int) -> object:
        if seed == 1:
            raise RuntimeError("boom")
        return real(loaded, seed)  # type: ignore[arg-type]

    monkeypatch.setattr(runs_module, "build_world", broken_for_seed_1)
    out = tmp_path / "s"
    with pytest.raises(SweepError) as caught:
        sweep(scenario, {}, (1, 2), jobs=1, out=out)
    assert caught.value.problems == [f"{out}/runs/base/seed-1: RuntimeError: boom"]
    assert caught.value.bug
    assert not (out / RUNS_TABLE).exists()
    assert (out / "runs" / "base" / "seed-2" / "summary.json").exists()
    failed = json.loads((out / "runs" / "base" / "seed-1" / "manifest.json").read_text())
    assert failed["exception"] == "RuntimeError: boom"
    # A failed run is not finished: the next sweep runs it again.
    assert [t.seed for t in plan_sweep(scenario, (), (1, 2), out).todo] == [1]
