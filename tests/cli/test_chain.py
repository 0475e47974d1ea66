"""The ``svcsim chain`` command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from svcsim.cli.main import app

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["chain", *args])
    return result.exit_code, result.output


def test_n3_table_shows_written_stored_and_saved() -> None:
    code, out = _run("3", "--samples", "20000", "--seed", "1")
    assert code == 0, out
    assert "0.3333333333" in out  # what kube-proxy writes
    assert "715827883" in out  # what the kernel stores
    assert "0.33333333349" in out  # what iptables-save prints back
    assert "0.33333333348855376" in out  # exact share of the first endpoint
    assert "no statistic match" in out
    assert "Max |deviation| from 1/N" in out
    assert "1.552e-10" in out
    assert "consistent with uniform (p ≥ 0.001)" in out  # the level of svcsim run's verdict
    assert "seed 1" in out


def test_seed_makes_output_identical() -> None:
    first = _run("5", "--samples", "50000", "--seed", "123")
    second = _run("5", "--samples", "50000", "--seed", "123")
    other = _run("5", "--samples", "50000", "--seed", "124")
    assert first[0] == 0
    assert first == second
    assert first[1] != other[1]


def test_missing_seed_is_drawn_printed_and_repeatable() -> None:
    code, out = _run("4", "--samples", "30000")
    assert code == 0, out
    match = re.search(r"repeat with --seed (\d+)", out)
    assert match is not None, out
    again = _run("4", "--samples", "30000", "--seed", match.group(1))
    assert again == (0, out)


def test_naive_chain_is_not_uniform() -> None:
    code, out = _run("3", "--naive", "--samples", "100000", "--seed", "3")
    assert code == 0, out
    assert "NAIVE chain" in out
    assert "(1-1/N)^(N-1) = 0.444444" in out
    assert "NOT uniform (p < 0.001)" in out


def test_single_endpoint() -> None:
    code, out = _run("1", "--samples", "100", "--seed", "0")
    assert code == 0, out
    assert "no statistic match" in out
    assert "uniform by definition" in out


def test_long_tables_are_elided() -> None:
    code, out = _run("60", "--samples", "6000", "--seed", "2")
    assert code == 0, out
    assert "..." in out
    assert "ep59" in out
    assert "ep0 " in out
    assert "ep30 " not in out


def test_plot_writes_png(tmp_path: Path) -> None:
    target = tmp_path / "chain.png"
    code, out = _run("4", "--samples", "10000", "--seed", "4", "--plot", str(target))
    assert code == 0, out
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert target.stat().st_size > 10_000
    assert str(target) in out.replace("\n", "")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["0"], "N"),
        (["-2"], "N"),
        (["3", "--samples", "0"], "--samples"),
        (["3", "--seed", "-1"], "--seed"),
        (["abc"], "N"),
    ],
)
def test_invalid_arguments_exit_2(args: list[str], needle: str) -> None:
    code, out = _run(*args)
    assert code == 2
    assert "Invalid value" in out or "No such option" in out
    assert needle in out


def test_nftables_mode_shows_the_numgen_rule_and_exact_shares() -> None:
    code, out = _run("3", "--mode", "nftables", "--samples", "20000", "--seed", "1")
    assert code == 0, out
    assert "numgen random mod 3 vmap" in out
    assert "1,431,655,766" in out  # draws mapped to endpoint 0: 2^32 = 3 * 1431655765 + 1
    assert "2863311531" in out  # the first draw of endpoint 2: ceil(2 * 2^32 / 3)
    assert "0.33333333348855376" in out and "0.33333333325572312" in out
    assert "reciprocal_scale" in out
    assert "consistent with uniform (p ≥ 0.001)" in out


def test_nftables_tables_fit_80_columns_up_to_n_1000() -> None:
    code, out = _run("1000", "--mode", "nftables", "--samples", "20000", "--seed", "1")
    assert code == 0, out
    table = out[: out.index("Max |deviation|")]
    assert max(len(line) for line in table.splitlines()) <= 80
    assert "999 : ep999" in out and "..." in table


def test_nftables_has_no_naive_variant() -> None:
    result = runner.invoke(app, ["chain", "3", "--mode", "nftables", "--naive"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "--naive: nftables mode has no naive variant (one numgen rule, no chain)"
    ]


def test_nftables_plot_is_labelled_numgen(tmp_path: Path) -> None:
    target = tmp_path / "numgen.png"
    code, out = _run("4", "--mode", "nftables", "--samples", "10000", "--plot", str(target))
    assert code == 0, out
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
