"""``svcsim validate`` and ``svcsim schema`` through the real Typer app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import svcsim.scenario
import svcsim.scenario.load
from svcsim.cli.main import app
from svcsim.scenario import ScenarioErrors

GOOD = """\
apiVersion: svcsim/v1
kind: Scenario
cluster: {nodes: 2}
manifests:
  - inline: |
      {apiVersion: v1, kind: Service, metadata: {name: web},
       spec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}}
workloads:
  - {name: fe, from: {host: node-1}, to: web, rate: 5}
timeline:
  - {at: 1s, action: crash-proxy, node: node-2}
  - {at: 2s, action: restart-proxy, node: node-2}
"""
BAD = """\
apiVersion: svcsim/v1
kind: Scenario
duration: soon
workloads:
  - {name: fe, from: {host: node-1}, to: web, rate: -5}
"""


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_validate_ok(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    code, out, err = run("validate", str(path))
    assert code == 0
    assert out == f"{path}: ok (2 nodes, 1 workload, 2 timeline actions)\n"
    assert err == ""


def test_validate_reports_every_problem_and_exits_2(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD)
    bad.write_text(BAD)
    code, out, err = run("validate", str(bad), str(good))
    assert code == 2
    assert out == f"{good}: ok (2 nodes, 1 workload, 2 timeline actions)\n"
    assert err.splitlines() == [
        f"{bad}:3: duration: invalid duration 'soon': use e.g. 250ms, 30s, 2m",
        f"{bad}:5: workloads[0].rate: must be > 0, got -5",
    ]
    assert "Traceback" not in out + err


def test_validate_missing_file_exits_2_without_traceback(tmp_path: Path) -> None:
    code, out, err = run("validate", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert err == f"{tmp_path}/nope.yaml: cannot read file: No such file or directory\n"
    assert "Traceback" not in out + err


def test_validate_needs_a_file() -> None:
    code, _, _ = run("validate")
    assert code == 2


def test_schema_prints_json_schema() -> None:
    code, out, _ = run("schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"apiVersion", "cluster", "timeline"} <= set(schema["properties"])


def test_schema_output_file(tmp_path: Path) -> None:
    target = tmp_path / "scenario.schema.json"
    code, out, _ = run("schema", "--output", str(target))
    assert code == 0
    assert out == ""
    assert json.loads(target.read_text())["$id"] == "urn:svcsim:schema:scenario:v1"


def test_validate_unknown_tag_is_a_problem_line_not_an_internal_error(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("apiVersion: svcsim/v1\nkind: Scenario\nduration: !custom 5s\n")
    code, _, err = run("validate", str(path))
    assert code == 2
    assert err == f"{path}:3: duration: yaml: unknown tag !custom\n"


def test_validate_internal_error_is_one_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: Path, **_: object) -> None:
        raise KeyError("a bug\nsecond line")

    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    # The commands import the loader when they run (a fast start): patch where they find it.
    monkeypatch.setattr(svcsim.scenario, "load_scenario", broken)
    code, out, err = run("validate", str(good))
    assert code == 1
    assert err == f"{good}: internal error (please report): KeyError: 'a bug\\nsecond line'\n"
    assert "Traceback" not in out + err


@pytest.mark.parametrize("command", ["validate", "run"])
def test_allow_outside_paths_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    outside = tmp_path / "web.yaml"
    outside.write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
        "spec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}\n"
    )
    (tmp_path / "scn").mkdir()
    scenario = tmp_path / "scn" / "s.yaml"
    scenario.write_text(
        "apiVersion: svcsim/v1\nkind: Scenario\nmanifests:\n  - path: ../web.yaml\n"
    )
    code, _, err = run(command, str(scenario))
    assert code == 2
    assert err.startswith(f"{scenario}:4: manifests[0].path: outside the scenario's directory")
    seen: list[object] = []

    def stop(path: Path, *, allow_outside_paths: bool, **_overrides: object) -> None:
        seen.append(allow_outside_paths)
        raise ScenarioErrors(["stop here"])

    monkeypatch.setattr(svcsim.scenario.load, "load_scenario", stop)  # run's
    monkeypatch.setattr(svcsim.scenario, "load_scenario", stop)  # validate's
    code, _, err = run(command, str(scenario), "--allow-outside-paths")
    assert (code, err, seen) == (2, "stop here\n", [True])


def test_validate_prints_the_manifest_warnings(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(
        "apiVersion: svcsim/v1\nkind: Scenario\nmanifests:\n  - inline: |\n"
        "      apiVersion: v1\n      kind: ConfigMap\n      metadata: {name: cfg}\n"
    )
    code, out, err = run("validate", str(path))
    assert code == 0
    assert out == f"{path}: ok (3 nodes, 0 workloads, 0 timeline actions)\n"
    assert err == f"warning: {path}:5: skipping kind ConfigMap (cfg)\n"
