"""`svcsim rules` / `svcsim trace` with kube-proxy's switches set as on the user's node."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from svcsim.cli.main import app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "seed-article"
NODE = ["--node", "node-1"]
CIDR = ["--cluster-cidr", "172.200.0.0/16"]
LAST = '"kubernetes service nodeports; NOTE: this must be the last rule in this chain"'
MASQ = '-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE'
runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def restore(*args: str) -> list[str]:
    code, out, err = run("rules", str(EXAMPLES), *NODE, "--format", "restore", *args)
    assert code == 0, err
    return out.splitlines()


@pytest.mark.parametrize(
    ("args", "present", "absent"),
    [
        ([*CIDR], f"-A KUBE-POSTROUTING {MASQ} --random-fully", "-A KUBE-POSTROUTING -j nothing"),
        ([*CIDR, "--no-random-fully"], f"-A KUBE-POSTROUTING {MASQ}", "--random-fully"),
        (
            [*CIDR, "--no-nfacct"],
            "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
            "nfacct",
        ),
        (
            [*CIDR, "--no-localhost-nodeports"],
            f"-A KUBE-SERVICES -m comment --comment {LAST} -m addrtype --dst-type LOCAL "
            "! -d 127.0.0.0/8 -j KUBE-NODEPORTS",
            "-d 127.0.0.0/8 --dport",
        ),
        (
            [*CIDR, "--nodeport-addresses", "primary"],
            f"-A KUBE-SERVICES -m comment --comment {LAST} -d 192.168.0.11 -j KUBE-NODEPORTS",
            "--dst-type LOCAL -j KUBE-NODEPORTS",
        ),
        (
            [*CIDR, "--nodeport-addresses", "192.168.0.0/24,127.0.0.0/8"],
            f"-A KUBE-SERVICES -m comment --comment {LAST} -d 127.0.0.1 -j KUBE-NODEPORTS",
            "--dst-type LOCAL -j KUBE-NODEPORTS",
        ),
        (
            ["--detect-local-mode", "NodeCIDR"],
            "--dport 30080 ! -s 172.200.6.0/24 -j KUBE-MARK-MASQ",
            "! -s 172.200.0.0/16",
        ),
        (
            ["--detect-local-mode", "BridgeInterface", "--pod-bridge-interface", "cbr0"],
            "--dport 30080 ! -i cbr0 -j KUBE-MARK-MASQ",
            "! -s 172.200.",
        ),
        (
            ["--detect-local-mode", "InterfaceNamePrefix", "--pod-interface-name-prefix", "veth"],
            "--dport 30080 ! -i veth+ -j KUBE-MARK-MASQ",
            "! -s 172.200.",
        ),
    ],
    ids=[
        "defaults",
        "no random-fully",
        "no nfacct",
        "no localhost",
        "primary",
        "cidrs",
        "NodeCIDR",
        "BridgeInterface",
        "InterfaceNamePrefix",
    ],
)
def test_each_switch_changes_the_rules_as_kube_proxy_does(
    args: list[str], present: str, absent: str
) -> None:
    lines = restore(*args)
    assert any(line.endswith(present) or present in line for line in lines), present
    assert not any(absent in line for line in lines), absent


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--detect-local-mode", "BridgeInterface"],
            ["--detect-local-mode BridgeInterface needs --pod-bridge-interface"],
        ),
        (
            ["--detect-local-mode", "InterfaceNamePrefix", "--pod-interface-name-prefix", "x" * 15],
            [
                f"--pod-interface-name-prefix: interface name '{'x' * 15}' is longer than 14 "
                "characters (iptables' limit)"
            ],
        ),
        (
            [*CIDR, "--nodeport-addresses", "primary,10.0.0.0/8"],
            ["--nodeport-addresses: can't use both 'primary' and CIDRs"],
        ),
        (
            [*CIDR, "--nodeport-addresses", "10.0.0.0/40,2001:db8::/64"],
            [
                "--nodeport-addresses: must be a CIDR such as 192.168.0.0/24, or 'primary', "
                "got '10.0.0.0/40'",
                "--nodeport-addresses: only IPv4 is simulated, got '2001:db8::/64'",
            ],
        ),
        (
            ["--detect-local-mode", "NodeCIDR", "--node-ip", "10.0.0.1", "--node", "elsewhere"],
            [
                "--detect-local-mode NodeCIDR: node 'elsewhere' has no IPv4 spec.podCIDRs in the "
                "manifests"
            ],
        ),
    ],
    ids=["bridge missing", "prefix too long", "primary and cidr", "bad cidrs", "no podCIDR"],
)
def test_bad_switches_exit_2_one_line_each(args: list[str], expected: list[str]) -> None:
    code, out, err = run("rules", str(EXAMPLES), *NODE, *args)
    assert (code, out) == (2, "")
    assert [line for line in err.splitlines() if not line.startswith("warning:")] == expected


@pytest.mark.parametrize(
    ("args", "warning"),
    [
        (
            ["--pod-bridge-interface", "cbr0", *CIDR],
            "warning: --pod-bridge-interface not used by the rules: --detect-local-mode is "
            "ClusterCIDR",
        ),
        (
            ["--nodeport-addresses", "192.168.0.0/24", *CIDR],
            "warning: localhost NodePorts are off: --nodeport-addresses leaves out 127.0.0.0/8, "
            "and kube-proxy then turns --iptables-localhost-nodeports off",
        ),
        (
            ["--nodeport-addresses", "10.99.0.0/16", *CIDR],
            "warning: no node address is inside --nodeport-addresses 10.99.0.0/16: kube-proxy "
            "writes no rule that leads to KUBE-NODEPORTS, so no NodePort answers",
        ),
    ],
    ids=["unused option", "localhost off", "no address"],
)
def test_what_kube_proxy_ignores_or_turns_off_is_said(args: list[str], warning: str) -> None:
    code, _, err = run("rules", str(EXAMPLES), *NODE, *args)
    assert code == 0
    assert warning in err.splitlines()


BRIDGE = ["--detect-local-mode", "BridgeInterface", "--pod-bridge-interface", "cbr0", *CIDR]


@pytest.mark.parametrize(
    ("src", "masqueraded"),
    [("172.200.6.21", False), ("203.0.113.7", True)],
    ids=["pod", "outsider"],
)
def test_trace_with_a_bridge_detector_sees_pods_on_the_bridge(src: str, masqueraded: bool) -> None:
    code, out, _ = run(
        "trace",
        str(EXAMPLES),
        *NODE,
        *BRIDGE,
        "--src",
        src,
        "--dst",
        "10.100.160.92:30080",
        "--from",
        "pod" if not masqueraded else "external",
    )
    assert code == 0
    verdict = out.splitlines()[-1]
    assert "(DNAT)" in verdict and ("masqueraded" in verdict) == masqueraded


def test_trace_localhost_nodeport_is_gone_with_primary() -> None:
    args = ["--src", "127.0.0.1", "--dst", "127.0.0.1:30081", "--from", "host"]
    code, out, _ = run("trace", str(EXAMPLES), *NODE, *CIDR, *args)
    assert code == 0 and "(DNAT)" in out.splitlines()[-1]
    code, out, _ = run(
        "trace", str(EXAMPLES), *NODE, *CIDR, "--nodeport-addresses", "primary", *args
    )
    verdict = out.splitlines()[-1]
    assert code == 0 and "(DNAT)" not in verdict and "delivered locally" in verdict


def test_save_format_has_iptables_save_order_and_fixed_stamps() -> None:
    code, out, _ = run("rules", str(EXAMPLES), *NODE, *CIDR)
    assert code == 0
    assert [line for line in out.splitlines() if line.startswith("*")] == [
        "*mangle",
        "*filter",
        "*nat",
    ]
    assert out.splitlines()[0] == (
        "# Generated by iptables-save v1.8.9 (nf_tables) on Thu Jan  1 00:00:00 1970"
    )


def test_help_documents_the_switches() -> None:
    code, out, _ = run("rules", "--help")
    assert code == 0
    text = " ".join(out.split())
    for option in (
        "--detect-local-mode",
        "--pod-bridge-interface",
        "--pod-interface-name-prefix",
        "--nodeport-addresses",
        "--no-localhost-nodeports",
        "--no-random-fully",
        "--no-nfacct",
    ):
        assert option in text
