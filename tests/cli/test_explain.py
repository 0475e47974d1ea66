"""``svcsim explain RUN_FOLDER``: the troubleshooting path for one request of a run."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import svcsim.runs
from svcsim.cli.main import app
from svcsim.results import load
from tests.scenarios.conftest import scenario_path

runner = CliRunner()


@pytest.fixture(scope="module")
def crash_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("explain") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(svcsim.runs, "render_all", lambda run: {})
        result = runner.invoke(app, ["run", str(scenario_path("proxy-crash")), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_the_first_failure_names_the_stale_node_the_deletion_and_the_fix(
    crash_run: Path,
) -> None:
    run = load(crash_run)
    failed = run.requests[run.requests["outcome"].astype(str) != "ok"].iloc[0]
    ip = str(failed["endpoint"]).rpartition(":")[0]
    pod = run.events[run.events["detail"].astype(str) == f"ip={ip}"]["object"].iloc[0]
    deleted = run.events[(run.events["object"] == pod) & (run.events["kind"] == "pod-terminating")]
    syncs = run.syncs[(run.syncs["node"] == "node-3") & run.syncs["ok"].astype(bool)]
    fixed = float(syncs[syncs["end_s"] > float(failed["t_s"])]["end_s"].min())
    result = runner.invoke(app, ["explain", str(crash_run)])
    assert result.exit_code == 0, result.output
    cause = result.stdout.strip().splitlines()[-1]
    assert cause == (
        f"Cause: node-3 still DNATs to {ip}, deleted at {float(deleted['t_s'].iloc[0]):.2f} s "
        f"(node-3's kube-proxy was not running); node-3's kube-proxy applied the change at "
        f"{fixed:.2f} s"
    )
    steps = (
        "Does the Service exist?",
        "Does it have ready endpoints?",
        "What did node-3's kube-proxy last program?",
        "kube-proxy is not running",
        "Where do node-3's rules send it?",
        "What was the destination doing?",
    )
    for step in steps:
        assert step in result.stdout


def test_an_ok_request_has_nothing_wrong(crash_run: Path) -> None:
    result = runner.invoke(app, ["explain", str(crash_run), "--request", "0"])
    assert result.exit_code == 0, result.output
    assert "Cause: nothing went wrong" in result.stdout


@pytest.fixture(scope="module")
def keepalive_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("explain") / "keepalive"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(svcsim.runs, "render_all", lambda run: {})
        args = ["run", str(scenario_path("keepalive-imbalance")), "--out", str(out)]
        result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


def test_a_request_on_a_kept_connection_names_the_request_that_opened_it(
    keepalive_run: Path,
) -> None:
    r = load(keepalive_run).requests
    reused = r[~r["new_flow"].astype(bool) & (r["conn_id"] >= 0)]
    assert len(reused), "keepalive-imbalance sends requests on kept connections"
    row = int(reused.index[len(reused) // 2])
    conn = int(reused.loc[row, "conn_id"])
    opener = r[(r["conn_id"] == conn) & r["new_flow"].astype(bool)].iloc[0]
    result = runner.invoke(app, ["explain", str(keepalive_run), "--request", str(row)])
    assert result.exit_code == 0, result.output
    assert (
        f"the entry was made by the connection's first request at {float(opener['t_s']):.3f} s "
        f"(connection {conn})" in " ".join(result.stdout.split())
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--request", "99999999"], "--request 99999999: the run has requests 0.."),
        (["--service", "default/nope"], "--service default/nope: no request of the run went to it"),
        (["--request", "1", "--first-failure"], "--request: give it alone"),
    ],
)
def test_bad_choices_are_one_line(crash_run: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["explain", str(crash_run), *args])
    assert result.exit_code == 2
    assert message in result.output


def test_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    result = runner.invoke(app, ["explain", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a run folder" in result.output


def test_diff_at_an_instant_finds_the_stale_node(crash_run: Path) -> None:
    stale = runner.invoke(app, ["diff", str(crash_run), "--node", "node-3", "--at", "40s"])
    assert stale.exit_code == 1, stale.output
    run = load(crash_run)
    old = run.events[(run.events["kind"] == "pod-exited") & (run.events["t_s"] < 40)]
    old_ips = {
        str(
            run.events[(run.events["object"] == pod) & (run.events["kind"] == "pod-scheduled")][
                "detail"
            ].iloc[0]
        ).removeprefix("ip=")
        for pod in old["object"]
        if str(pod).startswith("default/web-")
    }
    assert old_ips
    for ip in old_ips:
        assert f"stale endpoint {ip}:8080" in stale.stdout
    fine = runner.invoke(app, ["diff", str(crash_run), "--node", "node-1", "--at", "40s"])
    assert fine.exit_code == 0, fine.output
    assert "node-1 agrees with what kube-proxy should have written" in fine.stdout


def test_diff_at_an_instant_of_a_nftables_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(svcsim.runs, "render_all", lambda run: {})
        args = ["run", str(scenario_path("proxy-crash")), "--out", str(out),
                "--set", "cluster.proxy.mode=nftables"]  # fmt: skip
        assert runner.invoke(app, args).exit_code == 0
    stale = runner.invoke(app, ["diff", str(out), "--node", "node-3", "--at", "40s"])
    assert stale.exit_code == 1, stale.output
    assert "stale endpoint" in stale.stdout and "missing endpoint" in stale.stdout
    fine = runner.invoke(app, ["diff", str(out), "--node", "node-1", "--at", "40s"])
    assert fine.exit_code == 0, fine.output
