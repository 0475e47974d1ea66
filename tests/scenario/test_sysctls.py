"""``cluster.sysctls``: the nodes' kernel settings, checked at their lines, given to the kernels."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from svcsim.cli.main import app
from svcsim.netfilter.icmp_limit import IcmpSysctls
from svcsim.netfilter.tcp_syn import TcpSynSysctls
from svcsim.scenario.build import build_world
from svcsim.scenario.load import load_scenario
from tests.scenario.texts import FRONTEND_2, TO_WEB, WEB, problems_of, scenario_text, write

BOTH = WEB + "---\n" + FRONTEND_2


def _with(sysctls: str) -> str:
    return scenario_text(BOTH, TO_WEB, cluster=f"\n  nodes: 2\n  sysctls:\n{sysctls}")


def test_defaults_are_the_kernels(tmp_path: Path) -> None:
    world = build_world(load_scenario(write(tmp_path, _with("    {}\n"))), 1)
    kernel = world.kernels["node-1"]
    assert kernel.icmp.sysctls == IcmpSysctls(1000, 0x1818, 1000, 50)
    assert kernel.tcp_syn == TcpSynSysctls(6, 4)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("    net.ipv4.icmp_ratelimit: -1\n", '["net.ipv4.icmp_ratelimit"]: must be >= 0, got -1'),
        ("    net.ipv4.icmp_msgs_burst: 1.5\n", '["net.ipv4.icmp_msgs_burst"]: must be an integer'),
        ("    net.ipv4.tcp_syn_retries: 0\n", '["net.ipv4.tcp_syn_retries"]: must be >= 1, got 0'),
        (
            "    net.ipv4.icmp_rate_limit: 5\n",
            "unknown field (did you mean 'net.ipv4.icmp_ratelimit'",
        ),
    ],
)
def test_a_bad_value_is_a_problem_at_its_line(tmp_path: Path, line: str, message: str) -> None:
    text = _with(line)
    problems = problems_of(tmp_path, text)
    lineno = text.splitlines().index(line.rstrip("\n")) + 1
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"s.yaml:{lineno}: cluster.sysctls["), problems
    assert message in problems[0], problems


def test_validate_and_run_refuse_it_alike(tmp_path: Path) -> None:
    path = write(tmp_path, _with("    net.ipv4.icmp_ratemask: -3\n"))
    runner = CliRunner()
    for args in (["validate", str(path)], ["run", str(path), "--out", str(tmp_path / "r")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and 'cluster.sysctls["net.ipv4.icmp_ratemask"]' in lines[0]
        assert "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_the_settings_reach_every_kernel(tmp_path: Path) -> None:
    text = _with(
        "    net.ipv4.icmp_ratelimit: 250\n    net.ipv4.icmp_msgs_burst: 10\n"
        "    net.ipv4.tcp_syn_linear_timeouts: 0\n"
    )
    world = build_world(load_scenario(write(tmp_path, text)), 1)
    for kernel in world.kernels.values():
        assert kernel.icmp.sysctls == IcmpSysctls(250, 0x1818, 1000, 10)
        assert kernel.tcp_syn.schedule().retransmits_s[:3] == (1.0, 3.0, 7.0)
