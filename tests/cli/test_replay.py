"""A run folder keeps its scenario self-contained; ``svcsim run RUN_FOLDER`` replays it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import svcsim.runs
from svcsim.cli.main import app
from tests.scenario.texts import FRONTEND_2, WEB, WEB_SERVICE, add_service, scenario_text

runner = CliRunner()

CANARY = WEB_SERVICE.replace("name: web}", "name: canary}")


def test_a_run_replays_byte_for_byte_without_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(svcsim.runs, "render_all", lambda run: {})  # figures: not the point
    src = tmp_path / "src"
    src.mkdir()
    (src / "web.yaml").write_text(WEB + "---\n" + FRONTEND_2, encoding="utf-8")
    text = scenario_text(
        workloads="  - {name: fe, from: {pods: {app: frontend}}, to: web:http, rate: 200}\n",
        timeline=add_service(CANARY, at="3s")
        + "  - {at: 4s, action: delete-pod, selector: {app: web}}\n",
    ).replace("cluster:", "seed: 3\nmanifests: [{path: web.yaml}]\ncluster:")
    (src / "s.yaml").write_text(text, encoding="utf-8")
    first = runner.invoke(app, ["run", str(src / "s.yaml"), "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    shutil.rmtree(src)  # the replay needs nothing but the run folder
    again = runner.invoke(app, ["run", str(tmp_path / "a"), "--out", str(tmp_path / "b")])
    assert again.exit_code == 0, again.output
    for name in ("requests", "events", "syncs", "conntrack", "endpoint_sets"):
        a = (tmp_path / "a" / f"{name}.parquet").read_bytes()
        assert a == (tmp_path / "b" / f"{name}.parquet").read_bytes(), name
    assert (tmp_path / "a" / "summary.json").read_bytes() == (
        tmp_path / "b" / "summary.json"
    ).read_bytes()
    replayed = (tmp_path / "a" / "scenario.yaml").read_text(encoding="utf-8")
    assert "seed: 3" in replayed and "name: canary" in replayed and "path:" not in replayed


def test_a_directory_that_is_not_a_run_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(tmp_path)])
    assert result.exit_code == 2
    assert f"{tmp_path}: a directory, but not a svcsim run folder (no manifest.json)" in (
        result.output
    )
