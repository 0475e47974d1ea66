"""``svcsim validate`` and ``svcsim schema`` through the real Typer app."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from svcsim.cli.main import app

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
