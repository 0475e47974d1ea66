"""Running a scenario end to end: determinism, the run folder as interface, the CLI."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from svcsim import runs
from svcsim.cli.main import app
from svcsim.cli.run import builtin_scenario
from svcsim.results import RunFolderError, load
from svcsim.runs import proxy_mode_text, run_scenario
from svcsim.scenario.build import build_world
from svcsim.scenario.load import load_scenario
from svcsim.scenario.schema import Scenario

ROLLING = Path(__file__).resolve().parents[1] / "scenarios" / "rolling-update.yaml"
WALL_CLOCK_FIELDS = {"wall_time_s"}


@pytest.fixture(scope="module")
def twice(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("runs")
    first = run_scenario(ROLLING, seed=11, out_dir=base / "a").path
    second = run_scenario(ROLLING, seed=11, out_dir=base / "b").path
    return first, second


def test_same_scenario_and_seed_give_an_identical_run_folder(twice: tuple[Path, Path]) -> None:
    a, b = twice
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert any(str(f).startswith("figures/") for f in files)
    for name in files:
        if name.name == "manifest.json":
            ma, mb = (json.loads((d / name).read_text()) for d in (a, b))
            for field in WALL_CLOCK_FIELDS:
                ma.pop(field), mb.pop(field)
            assert ma == mb
        else:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_another_seed_changes_the_requests(tmp_path: Path, twice: tuple[Path, Path]) -> None:
    other = run_scenario(ROLLING, seed=12, out_dir=tmp_path / "c").run
    assert not other.requests.equals(load(twice[0]).requests)


def test_loaded_frames_agree_with_summary_json(twice: tuple[Path, Path]) -> None:
    run = load(twice[0])
    summary = json.loads((twice[0] / "summary.json").read_text())
    assert summary["seed"] == 11 == run.manifest["seed"]
    assert summary["requests"]["total"] == len(run.requests) > 10_000
    by_outcome = run.requests["outcome"].astype(str).value_counts().to_dict()
    assert {k: v for k, v in summary["requests"]["by_outcome"].items() if v} == by_outcome
    windows = summary["failure_windows"]
    assert windows and len(windows) == len(run.windows)
    assert {"service", "start_s", "end_s", "failed", "cause", "node"} <= set(windows[0])
    assert sum(w["failed"] for w in windows) == int((run.requests["outcome"] != "ok").sum())
    shares = summary["endpoints"]["default/web:http"]
    assert sum(e["requests"] for e in shares.values()) == len(run.requests)
    manifest = run.manifest
    assert manifest["scenario"]["metadata"]["name"] == "rolling-update"
    assert manifest["duration_s"] == 60.0
    assert {"svcsim", "simpy", "numpy"} <= set(manifest["versions"])
    assert "workload/frontend-to-web" in manifest["random_streams"]


def test_a_failing_run_leaves_no_complete_looking_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(run: object) -> dict[str, bytes]:
        raise RuntimeError("figure drawing failed")

    monkeypatch.setattr(runs, "render_all", broken)
    with pytest.raises(RuntimeError, match="figure drawing failed"):
        run_scenario(ROLLING, seed=1, out_dir=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_builtin_default_is_the_shipped_rolling_update() -> None:
    assert builtin_scenario().read_text() == ROLLING.read_text()


def test_cli_run_prints_the_summary_and_writes_the_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["run", str(ROLLING), "--seed", "3", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for heading in (
        "Requests",
        "Failure windows",
        "Spread over endpoints",
        "Network programming latency",
        f"Run folder: {tmp_path / 'r'}",
    ):
        assert heading in out
    assert "stale-rule" in out
    assert load(tmp_path / "r").summary["seed"] == 3


def test_cli_run_refuses_to_overwrite_without_the_flag(tmp_path: Path) -> None:
    target = tmp_path / "r"
    target.mkdir()
    (target / "something").write_text("keep me")
    result = CliRunner().invoke(app, ["run", str(ROLLING), "--out", str(target)])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert (target / "something").read_text() == "keep me"


def test_cli_run_bad_scenario_lists_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: svcsim/v1\nkind: Scenario\nduration: 10s\nworkloads:\n"
        "  - name: w\n    from: {host: node-1}\n    to: web:http\n    rate: -5\n"
        "timeline:\n  - {at: 20s, action: crash-proxy, node: node-9}\n"
    )
    result = CliRunner().invoke(app, ["run", str(bad)])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) >= 2
    assert any(line.startswith(f"{bad}:8: workloads[0].rate") for line in lines)
    assert all(line.startswith(f"{bad}:") for line in lines)


def test_a_crashing_simulation_keeps_its_exception_in_an_incomplete_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from svcsim.scenario.world import World

    def explode(self: World, progress: object = None) -> None:
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(World, "run", explode)
    with pytest.raises(ZeroDivisionError):
        run_scenario(ROLLING, seed=1, out_dir=tmp_path / "x")
    manifest = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert manifest["exception"] == "ZeroDivisionError: simulated bug"
    assert manifest["seed"] == 1
    with pytest.raises(RunFolderError, match="the run failed: ZeroDivisionError: simulated bug"):
        load(tmp_path / "x")


def test_a_run_leaves_the_garbage_collector_as_it_found_it(monkeypatch: pytest.MonkeyPatch) -> None:
    world = build_world(load_scenario(ROLLING), 1)
    frozen_inside: list[int] = []
    advance = world.traffic.advance_to  # type: ignore[union-attr]

    def spy(t_s: float) -> None:
        frozen_inside.append(gc.get_freeze_count())
        if t_s > 5.0:
            raise RuntimeError("boom")
        advance(t_s)

    monkeypatch.setattr(world.traffic, "advance_to", spy)
    with pytest.raises(RuntimeError, match="boom"):
        world.run()
    assert frozen_inside and min(frozen_inside) > 0  # the pre-run heap was frozen
    assert gc.get_freeze_count() == 0  # and is given back, even when the run fails


AFFINITY_SCENARIO = """
apiVersion: svcsim/v1
kind: Scenario
metadata: {name: sticky}
duration: 5s
cluster: {nodes: 2}
manifests:
  - inline: |
      apiVersion: v1
      kind: Service
      metadata: {name: web}
      spec:
        selector: {app: web}
        clusterIP: 10.96.0.10
        sessionAffinity: ClientIP
        ports: [{name: http, port: 80, targetPort: 8080}]
      ---
      apiVersion: apps/v1
      kind: Deployment
      metadata: {name: web}
      spec:
        replicas: 3
        selector: {matchLabels: {app: web}}
        template:
          metadata: {labels: {app: web}}
          spec:
            containers: [{name: web, image: web, ports: [{name: http, containerPort: 8080}]}]
      ---
      apiVersion: apps/v1
      kind: Deployment
      metadata: {name: client}
      spec:
        replicas: 2
        selector: {matchLabels: {app: client}}
        template:
          metadata: {labels: {app: client}}
          spec:
            containers: [{name: client, image: client}]
workloads:
  - name: sticky-clients
    from: {pods: {app: client}}
    to: web:http
    rate: 100
"""


def test_client_ip_affinity_is_not_tested_for_uniformity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs, "render_all", lambda run: {})
    path = tmp_path / "sticky.yaml"
    path.write_text(AFFINITY_SCENARIO, encoding="utf-8")
    row = run_scenario(path, seed=1, out_dir=tmp_path / "run").run.summary["uniformity"]
    assert row["default/web:http"]["verdict"] == "not tested (sessionAffinity ClientIP)"
    assert row["default/web:http"]["p_value"] is None
    assert row["default/web:http"]["flows"] > 0


def test_a_folder_problem_does_not_hide_the_simulations_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from svcsim.scenario.world import World

    def explode(self: World, progress: object = None) -> None:
        raise ZeroDivisionError("simulated bug")

    def folder_gone(*args: object, **kwargs: object) -> None:
        raise RunFolderError("x: cannot move the run folder into place: gone")

    monkeypatch.setattr(World, "run", explode)
    monkeypatch.setattr(runs, "write_failed_run", folder_gone)
    with pytest.raises(ZeroDivisionError, match="simulated bug") as info:
        run_scenario(ROLLING, seed=1, out_dir=tmp_path / "x")
    assert info.value.__notes__ == [
        "and its run folder could not be written: x: cannot move the run folder into place: gone"
    ]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("proxy", "expected"),
    [
        ({}, "iptables"),
        ({"mode": "nftables"}, "nftables"),
        ({"nodes": {"node-2": {"mode": "nftables"}}}, "mixed: node-1 iptables, node-2 nftables"),
    ],
)
def test_the_manifest_records_the_proxy_mode(proxy: dict[str, object], expected: str) -> None:
    scenario = Scenario.model_validate(
        {"apiVersion": "svcsim/v1", "kind": "Scenario", "metadata": {"name": "m"},
         "cluster": {"nodes": 2, "proxy": proxy}}
    )  # fmt: skip
    assert proxy_mode_text(scenario) == expected
