"""``cluster.proxy.ipvs`` and IPVS mode in scenarios: checked at their lines, run as written."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from svcsim.cli.main import app
from svcsim.netfilter.ipvs_kernel import IpvsSysctls
from svcsim.scenario.build import build_world
from svcsim.scenario.load import load_scenario
from tests.scenario.texts import (
    FRONTEND_2,
    TO_WEB,
    WEB,
    problems_of,
    scenario_text,
    stale,
    warnings_of,
    write,
)

BOTH = WEB + "---\n" + FRONTEND_2


def test_an_unknown_scheduler_is_a_problem_at_its_line(tmp_path: Path) -> None:
    text = scenario_text(
        BOTH, TO_WEB, cluster="\n  nodes: 2\n  proxy:\n    mode: ipvs\n    ipvs: {scheduler: fifo}"
    )
    (problem,) = problems_of(tmp_path, text)
    assert problem.startswith("s.yaml:8: cluster.proxy.ipvs.scheduler: 'fifo' is not an IPVS")
    assert "rr, wrr, lc, wlc, sh, dh, mh" in problem


def test_ipvs_settings_under_another_mode_are_a_problem(tmp_path: Path) -> None:
    text = scenario_text(BOTH, TO_WEB, cluster="{nodes: 2, proxy: {ipvs: {scheduler: lc}}}")
    assert problems_of(tmp_path, text) == [
        "s.yaml:4: cluster.proxy.ipvs: an IPVS-mode setting, not for mode iptables"
    ]


def test_settings_ipvs_mode_does_not_read_are_warned(tmp_path: Path) -> None:
    text = scenario_text(
        BOTH, TO_WEB, cluster="{nodes: 2, proxy: {mode: ipvs, nfacct: false, syncCost: {base: 1s}}}"
    )
    warnings = [w for w in warnings_of(tmp_path, text) if "cluster.proxy" in w]
    assert warnings == [
        "s.yaml:4: cluster.proxy.nfacct: ignored in ipvs mode: IPVS mode writes no nfacct "
        "counter matches",
        "s.yaml:4: cluster.proxy.syncCost: ignored in ipvs mode (iptables mode's cost); ipvs "
        "syncs cost ipvsSyncCost",
    ]


def test_inject_stale_rule_is_not_available_on_an_ipvs_node(tmp_path: Path) -> None:
    text = scenario_text(BOTH, TO_WEB, stale(), cluster="{nodes: 2, proxy: {mode: ipvs}}")
    (problem,) = problems_of(tmp_path, text)
    line = text.splitlines().index(stale().rstrip("\n")) + 1
    assert problem.startswith(f"s.yaml:{line}: timeline[0]: not available in ipvs mode")


def test_a_node_override_runs_that_node_in_ipvs_mode(tmp_path: Path) -> None:
    text = scenario_text(
        BOTH,
        TO_WEB,
        cluster="\n  nodes: 2\n  proxy:\n    nodes:\n      node-2:\n        mode: ipvs\n"
        "        ipvs: {scheduler: lc, tcpTimeout: 10s}\n        ipvsSyncCost: {perChange: 1ms}",
    )
    world = build_world(load_scenario(write(tmp_path, text)), 1)
    one, two = world.kernels["node-1"], world.kernels["node-2"]
    assert one.mode == "iptables" and one.ipvs_table is None
    assert two.mode == "ipvs" and two.ipvs_table is not None
    assert two.ipvs_table.sysctls == IpvsSysctls(tcp_timeout_s=10.0)
    assert {vs.scheduler for vs in two.ipvs.virtual_servers} == {"lc"}  # type: ignore[union-attr]
    config = world.proxies["node-2"].config
    assert config.ipvs_scheduler == "lc"
    assert config.ipvs_cost is not None and config.ipvs_cost.per_change_s == 0.001
    world.run()
    requests = world.recorder.frames()["requests"]
    assert len(requests) > 500 and (requests["outcome"] == "ok").all()


def test_validate_and_run_agree_on_ipvs_mode(tmp_path: Path) -> None:
    path = write(tmp_path, scenario_text(BOTH, TO_WEB, cluster="{nodes: 2, proxy: {mode: ipvs}}"))
    runner = CliRunner()
    validated = runner.invoke(app, ["validate", str(path)])
    assert validated.exit_code == 0, validated.stderr
    ran = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "run")])
    assert ran.exit_code == 0, ran.stderr
    assert (tmp_path / "run" / "summary.json").exists()
    # The run folder's readers: explain shows the virtual server; --at says it cannot.
    explained = runner.invoke(app, ["explain", str(tmp_path / "run"), "--request", "0"])
    assert explained.exit_code == 0, explained.output
    assert "IPVS virtual server" in explained.stdout and "(rr)" in explained.stdout
    at = runner.invoke(app, ["diff", str(tmp_path / "run"), "--node", "node-1", "--at", "5s"])
    assert at.exit_code == 2
    assert at.stderr.strip().endswith("--at reads iptables and nftables nodes only "
                                      "(svcsim rules --mode ipvs prints a node's IPVS state "
                                      "from manifests)")  # fmt: skip


def test_cluster_ipvs_settings_serve_a_node_that_runs_ipvs(tmp_path: Path) -> None:
    text = scenario_text(
        BOTH,
        TO_WEB,
        cluster="\n  nodes: 2\n  proxy:\n    ipvs: {scheduler: wrr}\n    nodes:\n"
        "      node-2: {mode: ipvs}",
    )
    world = build_world(load_scenario(write(tmp_path, text)), 1)
    assert world.proxies["node-2"].config.ipvs_scheduler == "wrr"
    assert world.kernels["node-1"].mode == "iptables"
