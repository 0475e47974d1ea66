"""``svcsim trace --nft-list FILE``: one packet through a nftables-mode node's own table."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from svcsim.cli.main import app
from tests.proxy.test_nftables_real_kernel import OVERALL_LIST

runner = CliRunner()
ARGS = ["--node-ip", "192.168.0.2", "--cluster-cidr", "10.0.0.0/8", "--src", "10.0.1.7"]


def test_a_real_listing_is_walked(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["trace", "--nft-list", str(OVERALL_LIST), *ARGS, "--dst", "172.30.0.41:80"]
    )
    assert result.exit_code == 0, result.output
    assert "DNAT 10.180.0.1:80" in result.stdout
    assert "numgen random mod 1 vmap" in result.stdout


def test_other_tables_are_said_to_be_skipped(tmp_path: Path) -> None:
    listing = tmp_path / "ruleset.txt"
    other = "table inet firewalld {\n\tchain x {\n\t}\n}\n"
    listing.write_text(other + OVERALL_LIST.read_text(), encoding="utf-8")
    result = runner.invoke(
        app, ["trace", "--nft-list", str(listing), *ARGS, "--dst", "172.30.0.41:80"]
    )
    assert result.exit_code == 0, result.output
    assert "tables inet firewalld are not evaluated" in result.output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("table inet filter {\n}\n", "no 'table ip kube-proxy' in it"),
        ("nonsense\n", "ruleset.txt:1: expected 'table FAMILY NAME {'"),
    ],
)
def test_bad_listings_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    listing = tmp_path / "ruleset.txt"
    listing.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["trace", "--nft-list", str(listing), *ARGS, "--dst", "1.2.3.4:80"])
    assert result.exit_code == 2
    assert message in result.output


def test_node_ip_is_needed(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["trace", "--nft-list", str(OVERALL_LIST), "--src", "10.0.1.7", "--dst", "1.2.3.4:80"]
    )
    assert result.exit_code == 2
    assert "--node-ip" in result.output


SEED = Path(__file__).resolve().parents[2] / "examples" / "seed-article"
NODE = ["--node", "node-1", "--node-ip", "192.168.0.11", "--cluster-cidr", "10.244.0.0/16"]


def test_diff_of_a_nftables_node_agrees_then_finds_a_stale_endpoint(tmp_path: Path) -> None:
    listed = runner.invoke(
        app, ["rules", str(SEED), *NODE, "--mode", "nftables", "--format", "list"]
    )
    assert listed.exit_code == 0, listed.output
    listing = tmp_path / "ruleset.txt"
    listing.write_text(listed.stdout, encoding="utf-8")
    same = runner.invoke(app, ["diff", str(SEED), *NODE, "--nft-list", str(listing)])
    assert same.exit_code == 0, same.output
    assert "node-1 agrees with what kube-proxy should have written" in same.stdout
    # The cluster moves on (an endpoint gets a new address); the node's table does not.
    moved = tmp_path / "cluster"
    shutil.copytree(SEED, moved)
    for f in moved.rglob("*.yaml"):
        f.write_text(f.read_text(encoding="utf-8").replace("172.200.7.36", "172.200.7.99"))
    stale = runner.invoke(app, ["diff", str(moved), *NODE, "--nft-list", str(listing)])
    assert stale.exit_code == 1, stale.output
    assert "stale endpoint 172.200.7.36:80" in stale.stdout
    assert "missing endpoint 172.200.7.99:80" in stale.stdout
