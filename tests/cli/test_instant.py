"""``svcsim rules|trace RUN_FOLDER --node N --at T``: a node's rules at an instant of a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import svcsim.runs
from svcsim.cli.main import app
from svcsim.instant import run_at
from svcsim.results import load
from tests.scenario.texts import FRONTEND_2, WEB, scenario_text, write

runner = CliRunner()

TIMELINE = "  - {at: 4s, action: delete-pod, selector: {app: web}}\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("instant")
    text = scenario_text(
        WEB + "---\n" + FRONTEND_2,
        "  - {name: fe, from: {pods: {app: frontend}}, to: web:http, rate: 100}\n",
        TIMELINE,
        cluster="{nodes: 2, proxy: {mode: iptables}}",
    ).replace("duration: 10s", "duration: 10s\nseed: 4")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(svcsim.runs, "render_all", lambda run: {})
        result = runner.invoke(app, ["run", str(write(tmp, text)), "--out", str(tmp / "run")])
    assert result.exit_code == 0, result.output
    return tmp / "run"


def sep_targets(save_text: str) -> set[str]:
    return {line.rsplit(" ", 1)[1] for line in save_text.splitlines() if "DNAT" in line}


def test_rules_at_follow_the_runs_syncs(run_dir: Path) -> None:
    run = load(run_dir)
    deleted = run.events[run.events["kind"] == "pod-terminating"].iloc[0]
    synced = run.syncs[(run.syncs["node"] == "node-1") & (run.syncs["start_s"] > 4.0)]
    after = float(synced["end_s"].iloc[0])
    before_text = runner.invoke(app, ["rules", str(run_dir), "--node", "node-1", "--at", "3s"])
    after_text = runner.invoke(
        app, ["rules", str(run_dir), "--node", "node-1", "--at", f"{after + 0.001}s"]
    )
    assert before_text.exit_code == after_text.exit_code == 0
    gone = sep_targets(before_text.stdout) - sep_targets(after_text.stdout)
    assert len(gone) == 1  # the deleted Pod's endpoint left node-1's rules at that sync
    pod_ip = run.events[
        (run.events["kind"] == "pod-scheduled") & (run.events["object"] == deleted["object"])
    ]["detail"].iloc[0]
    assert gone == {pod_ip.removeprefix("ip=") + ":8080"}


def test_the_instant_is_the_runs_own_state(run_dir: Path) -> None:
    state = run_at(run_dir, 6.0)
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    assert state.seed == manifest["seed"] == 4
    run = load(run_dir)
    installed = run.syncs[(run.syncs["node"] == "node-2") & (run.syncs["end_s"] <= 6.0)]
    assert state.world.kernels["node-2"].installed_at_s == pytest.approx(
        float(installed["end_s"].max())
    )


def test_trace_at_walks_the_rules_of_that_instant(run_dir: Path) -> None:
    result = runner.invoke(
        app,
        ["trace", str(run_dir), "--node", "node-1", "--at", "2s",
         "--src", "10.244.0.50", "--dst", f"{cluster_ip(run_dir)}:80"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "DNAT" in result.stdout and "# node-1 at 2s" in result.stdout


def cluster_ip(run_dir: Path) -> str:
    text = (run_dir / "scenario.yaml").read_text(encoding="utf-8")
    state = run_at(run_dir, 0.0)
    service = state.world.api.get("Service", "default/web")
    assert service is not None and "web" in text
    return str(service.cluster_ip)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--node", "node-1", "--at", "99s"], "--at 99s: the run lasted 10s"),
        (["--node", "node-9", "--at", "1s"], "--node node-9: the run has no such node"),
        (["--node", "node-1"], "--at: which instant of the run"),
        (
            ["--node", "node-1", "--at", "1s", "--format", "nft"],
            "--format nft: this node's iptables-mode rules print as save",
        ),
    ],
)
def test_bad_instants_are_one_line(run_dir: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["rules", str(run_dir), *args])
    assert result.exit_code == 2
    assert message in result.output


def test_at_needs_a_run_folder(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(WEB, encoding="utf-8")
    result = runner.invoke(app, ["rules", str(manifest), "--node", "n", "--at", "1s"])
    assert result.exit_code == 2
    assert "--at: give one run folder" in result.output


def test_diff_of_a_userspace_node_is_a_one_line_refusal(tmp_path: Path) -> None:
    text = scenario_text(
        WEB + "---\n" + FRONTEND_2,
        "  - {name: fe, from: {pods: {app: frontend}}, to: web:http, rate: 100}\n",
        "",
        cluster="{nodes: 2, proxy: {mode: iptables, nodes: {node-2: {mode: userspace}}}}",
    ).replace("duration: 10s", "duration: 10s\nseed: 4")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(svcsim.runs, "render_all", lambda run: {})
        result = runner.invoke(
            app, ["run", str(write(tmp_path, text)), "--out", str(tmp_path / "r")]
        )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["diff", str(tmp_path / "r"), "--node", "node-2", "--at", "5s"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("--node node-2: kube-proxy ran in userspace mode there;")
    result = runner.invoke(app, ["diff", str(tmp_path / "r"), "--node", "node-1", "--at", "5s"])
    assert result.exit_code == 0, result.output
