"""``svcsim trace --nft-list FILE``: one packet through a nftables-mode node's own table."""

from __future__ import annotations

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
