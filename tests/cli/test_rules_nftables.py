"""`svcsim rules --mode nftables` and its refusals, on the seed article's manifests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from svcsim.cli.main import app
from tests.netfilter.kernel_nftables import load_and_list, nft_unavailable

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "seed-article"
NODE = ["--node", "node-1", "--cluster-cidr", "172.200.0.0/16"]
NFT = ["--mode", "nftables"]
runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def nft_text() -> str:
    code, out, err = run("rules", str(EXAMPLES), *NODE, *NFT)
    assert (code, err) == (0, "")
    return out


def test_default_format_is_nft_input_with_the_kube_proxy_table(nft_text: str) -> None:
    lines = nft_text.splitlines()
    assert lines[0] == 'add table ip kube-proxy { comment "rules for kube-proxy" ; }'
    assert all(line.startswith("add ") for line in lines)
    # NodePorts default to the primary node IP only (nodePortAddresses "primary").
    assert any(line.startswith("add element ip kube-proxy nodeport-ips {") for line in lines)
    assert "add rule ip kube-proxy masquerading masquerade fully-random" in lines
    # --service-cidr (default 10.96.0.0/12) gives the unallocated-ClusterIP drop rule.
    assert (
        "add rule ip kube-proxy cluster-ips-check ip daddr { 10.96.0.0/12 } drop "
        'comment "Drop traffic to unallocated ClusterIPs"'
    ) in lines


def test_list_format_is_what_nft_lists(nft_text: str) -> None:
    code, out, err = run("rules", str(EXAMPLES), *NODE, *NFT, "--format", "list")
    assert (code, err) == (0, "")
    assert out.startswith("table ip kube-proxy {\n")
    reason = nft_unavailable()
    if reason is not None:
        pytest.skip(reason)
    try:
        assert load_and_list(nft_text) == out
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"nft refused the rules: {exc.stderr}")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["rules", *NFT, "--format", "save"], "--format save: --mode nftables prints nft or list"),
        (
            ["rules", *NFT, "--format", "restore"],
            "--format restore: --mode nftables prints nft or list",
        ),
        (["rules", "--format", "nft"], "--format nft: --mode iptables prints save or restore"),
        (["rules", "--format", "list"], "--format list: --mode iptables prints save or restore"),
        (
            ["trace", *NFT, "--src", "172.200.6.21", "--dst", "10.100.160.92"],
            "--dst: '10.100.160.92' is not IP:PORT[/tcp|udp|sctp]",
        ),
        (
            [
                "rules",
                *NFT,
                "--detect-local-mode",
                "BridgeInterface",
                "--pod-bridge-interface",
                "cbr0",
            ],
            "--detect-local-mode BridgeInterface: not modelled in nftables mode yet "
            "(use ClusterCIDR or NodeCIDR)",
        ),
    ],
    ids=["save", "restore", "nft with iptables", "list with iptables", "trace bad dst", "bridge"],
)
def test_mode_and_format_mismatches_exit_2_with_one_line(args: list[str], expected: str) -> None:
    command, *rest = args
    code, out, err = run(command, str(EXAMPLES), *NODE, *rest)
    assert (code, out) == (2, "")
    assert [line for line in err.splitlines() if not line.startswith("warning:")] == [expected]


@pytest.mark.parametrize(
    ("switch", "warning"),
    [
        (
            "--no-localhost-nodeports",
            "warning: --localhost-nodeports/--no-localhost-nodeports: an iptables-mode setting "
            "(--iptables-localhost-nodeports); nftables mode never accepts NodePorts on "
            "localhost: ignored",
        ),
        (
            "--random-fully",
            "warning: --random-fully/--no-random-fully: an iptables-mode fact; nftables mode "
            "always writes 'masquerade fully-random': ignored",
        ),
        (
            "--no-nfacct",
            "warning: --nfacct/--no-nfacct: nftables mode has no nfacct counter matches: ignored",
        ),
    ],
)
def test_iptables_only_switches_are_warned_about(switch: str, warning: str, nft_text: str) -> None:
    code, out, err = run("rules", str(EXAMPLES), *NODE, *NFT, switch)
    assert code == 0
    assert err.splitlines() == [warning]
    assert out == nft_text


def test_masquerade_bit_changes_the_nftables_mark() -> None:
    code, out, _ = run("rules", str(EXAMPLES), *NODE, *NFT, "--masquerade-bit", "3")
    assert code == 0
    assert "add rule ip kube-proxy mark-for-masquerade mark set mark or 0x00000008" in out


def test_help_documents_the_mode_and_formats() -> None:
    for command in ("rules", "trace"):
        code, out, _ = run(command, "--help")
        assert code == 0
        assert "--mode" in " ".join(out.split())
    _, out, _ = run("rules", "--help")
    text = " ".join(out.split())
    assert "nftables mode: nft" in text
    assert "nft list table ip kube-proxy" in text
