"""`svcsim trace --iptables-save FILE`: one packet through a real node's own rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from svcsim.cli.main import app
from tests.netfilter.node_dumps import CLUSTER, DUMPS

runner = CliRunner()
NODE = ["--node-ip", "10.0.0.11", "--cluster-cidr", "10.244.0.0/16"]
CALICO_SETS = ["cali40masq-ipam-pools", "cali40all-ipam-pools", "cali40blocked-cidrs"]


def trace(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["trace", *args])
    return result.exit_code, result.stdout, result.stderr


def test_dockers_forward_drop_policy_drops_pod_traffic_to_a_service() -> None:
    code, out, _ = trace("--iptables-save", str(DUMPS["docker"]), *NODE, "--src", "10.244.1.5",
                         "--dst", "10.96.0.60:443")  # fmt: skip
    assert code == 0
    assert "DNAT 10.244.2.30:8443" in out
    assert "1: -j DOCKER-USER  => jump DOCKER-USER" in out
    assert out.rstrip().endswith("policy DROP\nverdict: DROP at 10.244.2.30:8443")


def test_what_the_rules_cannot_decide_gives_one_walk_per_answer() -> None:
    args = ["--iptables-save", str(DUMPS["calico"]), *NODE, "--pod-interface", "cali1f2e3d4c5b6"]
    code, out, err = trace(*args, "--src", "10.244.1.5", "--dst", "10.96.0.60:443")
    assert code == 0
    assert "5 possible walks follow" in out
    assert "--- walk 1: the reverse-path route lookup (-m rpfilter): yes" in out
    assert "the members of ipset 'cali40blocked-cidrs' (give --ipset" in out
    assert "iptables-legacy tables" in err
    ipsets = [f"--ipset={name}=" for name in CALICO_SETS]
    code, out, _ = trace(*args, *ipsets, "--src", "10.244.1.5", "--dst", "10.96.0.60:443")
    assert code == 0 and "2 possible walks follow" in out
    ipsets[2] = "--ipset=cali40blocked-cidrs=10.244.2.0/24"
    code, out, _ = trace(*args, *ipsets, "--src", "10.244.1.5", "--dst", "10.96.0.60:443")
    assert "Drop traffic to blocked CIDRs" in out and "verdict: DROP at 10.244.2.30:8443" in out


def test_manifests_give_the_node_ip_and_the_packets_origin() -> None:
    flannel = ["--iptables-save", str(DUMPS["flannel"])]
    code, out, _ = trace(str(CLUSTER), "--node", "node-1", *flannel, "--src", "10.0.0.11",
                         "--dst", "10.96.0.60:443")  # fmt: skip
    assert code == 0
    assert "from host" in out.splitlines()[0]
    # kube-proxy's MASQUERADE ends the nat table before Flannel's jump is reached.
    assert "=> MASQUERADE" in out and "FLANNEL-POSTRTG" not in out
    assert "verdict: ACCEPT: forwarded to 10.244.2.30:8443 (DNAT), masqueraded" in out


def _with_unknown(tmp_path: Path, chain: str) -> Path:
    text = (
        DUMPS["flannel"]
        .read_text()
        .replace(
            "-A FLANNEL-FWD -s 10.244.0.0/16",
            f"-A {chain} -m frobnicate --level 3 -j ACCEPT\n-A FLANNEL-FWD -s 10.244.0.0/16",
        )
    )
    path = tmp_path / "node.save"
    path.write_text(text)
    return path


def test_an_unknown_extension_the_packet_reaches_is_an_error(tmp_path: Path) -> None:
    path = _with_unknown(tmp_path, "FLANNEL-FWD")
    code, out, err = trace("--iptables-save", str(path), *NODE, "--src", "10.244.1.5",
                           "--dst", "10.96.0.60:443")  # fmt: skip
    assert code == 2 and out == ""
    line = path.read_text().splitlines().index("-A FLANNEL-FWD -m frobnicate --level 3 -j ACCEPT")
    assert err == (
        f"{path}:{line + 1}: *filter FLANNEL-FWD: -m frobnicate is not known to svcsim, "
        "and the traced packet reaches this rule\n"
    )


def test_an_unknown_extension_elsewhere_is_a_warning(tmp_path: Path) -> None:
    path = _with_unknown(tmp_path, "FLANNEL-FWD")
    code, out, err = trace("--iptables-save", str(path), *NODE, "--src", "10.0.0.11",
                           "--dst", "10.96.0.60:443")  # fmt: skip
    assert code == 0 and "verdict: ACCEPT" in out
    assert "-m frobnicate is not known to svcsim; kept, never evaluated" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--node-ip", "10.0.0.11"], "not iptables-save output"),
        ([], "--node-ip: the node's IPs"),
        (["--node-ip", "10.0.0.300"], "--node-ip: '10.0.0.300' is not an IPv4 address"),
        (["--node-ip", "10.0.0.11", "--ipset", "noequals"], "--ipset: 'noequals' is not NAME="),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    bad = tmp_path / "bad.save"
    bad.write_text("this is not iptables\n")
    path = bad if "not iptables-save" in message else DUMPS["docker"]
    code, out, err = trace("--iptables-save", str(path), *args, "--src", "10.244.1.5",
                           "--dst", "10.96.0.60:443")  # fmt: skip
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err


def test_the_manifest_form_still_needs_manifests_and_a_node() -> None:
    code, _, err = trace("--src", "10.244.1.5", "--dst", "10.96.0.60:443")
    assert code == 2
    assert "give MANIFEST files or folders, or --iptables-save FILE" in err
    code, _, err = trace(str(CLUSTER), "--node", "node-1", "--ipset", "a=1.2.3.4",
                         "--src", "10.244.1.5", "--dst", "10.96.0.60:443")  # fmt: skip
    assert code == 2 and "--ipset: only used with --iptables-save" in err


def test_a_packet_no_rule_translates_is_said_to_leave_unchanged() -> None:
    code, out, _ = trace("--iptables-save", str(DUMPS["flannel"]), "--node-ip", "10.0.0.11",
                         "--src", "10.0.0.11", "--dst", "192.0.2.53:53/udp")  # fmt: skip
    assert code == 0
    assert out.splitlines()[-2:] == [
        "verdict: ACCEPT: forwarded to 192.0.2.53:53, mark 0x0",
        "no rule translated the packet: it leaves the node unchanged",
    ]
