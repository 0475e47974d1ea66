"""``svcsim sweep``, and ``--set`` on ``run`` and ``validate``, from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from svcsim.cli.main import app
from svcsim.sweep import execute as execute_module
from svcsim.sweep.task import RunTask, TaskResult
from tests.sweep.sweep_cases import line_of, tiny_scenario

runner = CliRunner()


def test_a_sweep_end_to_end_then_resumed(tmp_path: Path) -> None:
    scenario = tiny_scenario(tmp_path)
    out = tmp_path / "sw"
    args = ["sweep", str(scenario), "--set", "cluster.proxy.minSyncPeriod=0s,2s",
            "--seeds", "1-2", "--jobs", "1", "--out", str(out)]  # fmt: skip
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert f"note: 2 points x 2 seeds = 4 runs into {out}; 0 already there, 4 to run" in (
        first.stderr
    )
    table = first.stdout
    assert "cluster.proxy.minSyncPeriod" in table
    rows = [line.split() for line in table.splitlines() if line.strip().startswith(("0s", "2s"))]
    assert [r[:2] for r in rows] == [["0s", "2"], ["2s", "2"]]
    assert "ran 4 runs, reused 0" in table
    points = pd.read_parquet(out / "points.parquet")
    assert list(points["cluster.proxy.minSyncPeriod"]) == ["0s", "2s"]
    assert (out / "sweep.png").exists()

    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "4 already there, 0 to run" in again.stderr
    assert "ran 0 runs, reused 4" in again.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "cluster.proxy..x=1"], '--set "cluster.proxy..x": not a field path'),
        (["--set", "a=1", "--set", "a=2"], "--set a: key given twice"),
        (["--seeds", "3-1"], "--seeds '3-1': range '3-1' runs backwards"),
        (["--jobs", "2", "--scheduler", "tcp://h:8786"], "--jobs and --scheduler: give one"),
        (
            ["--set", "workloads[0].rate=100,-5"],
            "{path}:{rate}: workloads[0].rate: must be > 0, got -5 "
            "(from --set workloads[0].rate=-5)",
        ),
    ],
)
def test_bad_sweeps_are_refused_before_anything_runs(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    scenario = tiny_scenario(tmp_path)
    out = tmp_path / "sw"
    result = runner.invoke(app, ["sweep", str(scenario), "--out", str(out), *extra])
    assert result.exit_code == 2, result.output
    expected = message.format(path=scenario, rate=line_of("rate: 100"))
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(expected)
    assert not out.exists()


def test_ctrl_c_exits_130_and_says_what_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = tiny_scenario(tmp_path)
    real = execute_module.run_task

    def interrupted_second(task: RunTask) -> TaskResult:
        if task.seed == 2:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(execute_module, "run_task", interrupted_second)
    out = tmp_path / "sw"
    args = ["sweep", str(scenario), "--seeds", "1-3", "--jobs", "1", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 130, result.output
    assert f"interrupted; 1 of 3 runs are finished in {out}" in result.stderr
    assert "Traceback" not in result.output
    assert not (out / "runs.parquet").exists()


def test_run_with_set_records_the_override(tmp_path: Path) -> None:
    scenario = tiny_scenario(tmp_path)
    out = tmp_path / "run"
    args = ["run", str(scenario), "--set", "workloads[0].rate=50", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["overrides"] == ["workloads[0].rate=50"]
    assert manifest["scenario"]["workloads"][0]["rate"] == 50


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["workloads[0].rate=-5"],
         "{path}:{rate}: workloads[0].rate: must be > 0, got -5 (from --set workloads[0].rate=-5)"),
        (["workloads[0].rate=1,2"], "--set workloads[0].rate: 2 values given; a single run takes"),
        (["nope"], '--set "nope": expected KEY=VALUE'),
    ],
)  # fmt: skip
def test_run_with_a_bad_set_is_one_line_and_exit_2(
    tmp_path: Path, sets: list[str], message: str
) -> None:
    scenario = tiny_scenario(tmp_path)
    args = ["run", str(scenario), "--out", str(tmp_path / "run")]
    result = runner.invoke(app, args + [a for s in sets for a in ("--set", s)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(message.format(path=scenario, rate=line_of("rate: 100")))
    assert not (tmp_path / "run").exists()


def test_validate_checks_every_value_of_a_set(tmp_path: Path) -> None:
    scenario = tiny_scenario(tmp_path)
    good = runner.invoke(app, ["validate", str(scenario), "--set", "workloads[0].rate=5,50"])
    assert good.exit_code == 0, good.output
    assert "each of 2 --set combinations" in good.stdout
    bad = runner.invoke(app, ["validate", str(scenario), "--set", "workloads[0].rate=5,-5,-6"])
    assert bad.exit_code == 2
    assert [line.split(": ", 1)[1] for line in bad.stderr.strip().splitlines()] == [
        "workloads[0].rate: must be > 0, got -5 (from --set workloads[0].rate=-5)",
        "workloads[0].rate: must be > 0, got -6 (from --set workloads[0].rate=-6)",
    ]
