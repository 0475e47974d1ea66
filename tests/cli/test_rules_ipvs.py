"""`svcsim rules|trace --mode ipvs|userspace` on the seed article's manifests, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from svcsim.cli.ipvs_rules import _json_text
from svcsim.cli.main import app
from svcsim.cli.mode_options import SCHEDULER_NAMES
from svcsim.netfilter.ipvs import RealServer, VirtualServer
from svcsim.netfilter.ipvs_sched import SCHEDULERS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "seed-article"
NODE = ["--node", "node-1", "--cluster-cidr", "172.200.0.0/16"]
runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_the_cli_scheduler_list_is_the_kernel_models() -> None:
    assert SCHEDULER_NAMES == SCHEDULERS


def test_ipvs_json_has_the_documented_shape() -> None:
    code, out, err = run("rules", str(EXAMPLES), *NODE, "--mode", "ipvs", "--ipvs-scheduler", "lc")
    assert (code, err) == (0, "")
    doc = json.loads(out)
    assert set(doc) == {"virtual_servers", "ipsets"}
    first = doc["virtual_servers"][0]
    assert set(first) == {
        "address",
        "port",
        "protocol",
        "scheduler",
        "persistent_timeout_s",
        "real_servers",
    }
    assert first["scheduler"] == "lc"
    assert set(first["real_servers"][0]) == {"address", "port", "weight"}
    assert "10.0.171.239,tcp:80" in doc["ipsets"]["KUBE-CLUSTER-IP"]
    assert doc["ipsets"]["KUBE-NODE-PORT-TCP"] == ["30007", "30081", "31380"]


def test_ipvsadm_format_prints_ipvsadm_ipset_and_iptables() -> None:
    code, out, err = run("rules", str(EXAMPLES), *NODE, "--mode", "ipvs", "--format", "ipvsadm")
    assert (code, err) == (0, "")
    assert out.startswith("IP Virtual Server version 1.2.1 (size=4096)\n")
    assert "\nName: KUBE-CLUSTER-IP\nType: hash:ip,port\n" in out
    assert "\n*nat\n" in out and "-j KUBE-MARK-MASQ" in out


def test_userspace_prints_rules_then_the_port_table_as_comments() -> None:
    code, out, err = run("rules", str(EXAMPLES), *NODE, "--mode", "userspace", "--seed", "3")
    assert (code, err) == (0, "")
    assert "-j REDIRECT --to-ports" in out
    comments = [line for line in out.splitlines() if line.startswith("# default/")]
    assert any(line.startswith("# default/my-service TCP ") for line in comments)
    again = run("rules", str(EXAMPLES), *NODE, "--mode", "userspace", "--seed", "3")[1]
    assert again == out  # the proxy ports come from the seed
    code, out, _ = run("rules", str(EXAMPLES), *NODE, "--mode", "userspace", "--format", "json")
    assert code == 0 and json.loads(out)["proxy_ports"][0]["proxy_port"] > 0


def test_userspace_needs_no_cluster_cidr() -> None:
    code, _, err = run("rules", str(EXAMPLES), "--node", "node-1", "--mode", "userspace")
    assert (code, err) == (0, "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--mode", "ipvs", "--format", "save"],
            "--format save: --mode ipvs prints json or ipvsadm",
        ),
        (
            ["--mode", "userspace", "--format", "ipvsadm"],
            "--format ipvsadm: --mode userspace prints save or json",
        ),
        (
            ["--mode", "ipvs", "--ipvs-scheduler", "sed"],
            "--ipvs-scheduler 'sed': not a scheduler svcsim models (rr, wrr, lc, wlc, sh, dh, mh)",
        ),
        (
            ["--ipvs-scheduler", "rr"],
            "--ipvs-scheduler: an IPVS-mode flag, not for --mode iptables",
        ),
        (
            ["--mode", "ipvs", "--proxy-port-range", "1000-2000"],
            "--proxy-port-range: a userspace-mode flag, not for --mode ipvs",
        ),
        (
            ["--mode", "userspace", "--proxy-port-range", "2000-1000"],
            "--proxy-port-range '2000-1000': not FIRST-LAST (1..65535)",
        ),
    ],
)
def test_mode_and_flag_mismatches_are_one_line_errors(args: list[str], message: str) -> None:
    for command in (
        ["rules", str(EXAMPLES), *NODE],
        ["trace", str(EXAMPLES), *NODE, "--src", "172.200.6.5", "--dst", "10.0.171.239:80"],
    ):
        if command[0] == "trace" and "--format" in args:
            continue
        code, out, err = run(*command, *args)
        assert (code, out, err) == (2, "", message + "\n")


def test_ignored_switches_are_named() -> None:
    code, _, err = run("rules", str(EXAMPLES), *NODE, "--mode", "ipvs", "--no-nfacct")
    assert code == 0
    assert (
        err
        == "warning: --nfacct/--no-nfacct: IPVS mode writes no nfacct counter matches: ignored\n"
    )


def test_trace_ipvs_shows_the_scheduler_choice_and_masquerade() -> None:
    code, out, err = run(
        "trace", str(EXAMPLES), *NODE, "--mode", "ipvs", "--src", "8.8.8.8",
        "--dst", "192.168.0.11:31380",
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert "ipvs: forwarded -> 172.200." in out and "(rr chose " in out
    assert out.rstrip().endswith("masqueraded, mark 0x0")


def test_trace_userspace_shows_the_portal_and_the_endpoint_dialled() -> None:
    code, out, err = run(
        "trace", str(EXAMPLES), *NODE, "--mode", "userspace", "--src", "172.200.6.5",
        "--dst", "10.0.171.239:80",
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert "REDIRECT 192.168.0.11:" in out
    assert "kube-proxy dials 172.200." in out


def _reference_json(servers: list[VirtualServer], ipsets: dict[str, tuple[str, ...]]) -> str:
    """What ``--format json`` prints, as the json module writes the document."""
    doc = {
        "virtual_servers": [
            {
                "address": vs.address,
                "port": vs.port,
                "protocol": vs.protocol,
                "scheduler": vs.scheduler,
                "persistent_timeout_s": vs.persistent_timeout_s,
                "real_servers": [
                    {"address": rs.address, "port": rs.port, "weight": rs.weight}
                    for rs in vs.real_servers
                ],
            }
            for vs in servers
        ],
        "ipsets": {name: list(members) for name, members in ipsets.items()},
    }
    return json.dumps(doc, indent=2) + "\n"


_WEB = VirtualServer(
    "TCP", "10.96.0.10", 80, "rr", (RealServer("10.1.0.1", 8080), RealServer("10.1.0.2", 8080, 0))
)
_STICKY = VirtualServer("UDP", "10.96.0.11", 53, "sh", persistent_timeout_s=10800)


@pytest.mark.parametrize(
    ("servers", "ipsets"),
    [
        ([], {}),
        ([_WEB], {}),
        ([], {"KUBE-CLUSTER-IP": ("10.96.0.10,tcp:80",)}),
        ([_WEB, _STICKY], {"KUBE-CLUSTER-IP": ("10.96.0.10,tcp:80", "x"), "KUBE-EMPTY": ()}),
        ([_STICKY, _WEB], {"KUBE-EMPTY": (), "KUBE-LOOP-BACK": ('a"b\\c\u00e9',)}),
    ],
)
def test_ipvs_json_is_what_the_json_module_writes(
    servers: list[VirtualServer], ipsets: dict[str, tuple[str, ...]]
) -> None:
    assert _json_text(servers, ipsets) == _reference_json(servers, ipsets)


def test_ipvs_json_of_the_seed_article_is_what_the_json_module_writes() -> None:
    # The files, not the folder (telling a folder from a run folder imports the simulator).
    files = [str(p) for p in sorted(EXAMPLES.glob("*.yaml"))]
    code, out, _ = run("rules", *files, *NODE, "--mode", "ipvs", "--ipvs-scheduler", "sh")
    assert code == 0
    doc = json.loads(out)
    assert out == json.dumps(doc, indent=2) + "\n"
    assert doc["virtual_servers"] and doc["ipsets"]
