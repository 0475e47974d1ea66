"""``svcsim run``'s summary and the HTML report show the same numbers under the same names."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from rich.console import Console

from svcsim.cli.run import print_summary
from svcsim.report.tables import node_table, uniformity_table
from svcsim.results import Run
from tests.plots.synthetic import build_run


def _printed(run: Run) -> str:
    console = Console(record=True, width=250)
    print_summary(run, console)
    return console.export_text()


def test_sync_counts_agree_with_the_report(tmp_path: Path) -> None:
    run = build_run(tmp_path / "run")
    text = _printed(run)
    table = node_table(run.summary)
    assert table.headers[1:4] == ("syncs run", "failed", "with trigger time")
    assert "syncs run" in text and "with trigger time" in text
    for node, run_syncs, failed, with_trigger, *_ in table.rows:
        # The synthetic run has periodic syncs without a trigger time: the two counts differ.
        assert int(run_syncs) > int(with_trigger)
        assert re.search(rf"{node}\s+{run_syncs}\s+{failed}\s+{with_trigger}\s", text), text


def test_uniformity_verdicts_agree_with_the_report(tmp_path: Path) -> None:
    run = build_run(tmp_path / "run")
    text = _printed(run)
    table = uniformity_table(run.summary)
    assert table.headers[-1] == "verdict"
    assert table.rows
    for row in table.rows:
        verdict = row[-1]
        assert verdict == run.summary["uniformity"][row[0]]["verdict"]
        assert "0.001" in verdict
        assert verdict in text


def test_the_summary_names_the_proxy_mode(tmp_path: Path) -> None:
    run = build_run(tmp_path / "run")
    mixed = dataclasses.replace(
        run, manifest={**run.manifest, "proxy_mode": "mixed: node-1 iptables, node-2 nftables"}
    )
    assert "kube-proxy mixed: node-1 iptables, node-2 nftables mode" in _printed(mixed)
