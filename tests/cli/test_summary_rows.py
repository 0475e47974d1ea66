"""The printed summary stays readable for big clusters: numbers sort by value, long lists cut."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

import pandas as pd  # type: ignore[import-untyped, unused-ignore]
from rich.console import Console

from svcsim.cli.run import MAX_NODE_ROWS, MAX_SPREAD_ROWS, natural_key, print_summary


def _printed(endpoints: int, nodes: int) -> str:
    shares = {f"10.244.0.{i}:8080": {"requests": i, "share": i / 1000} for i in range(endpoints)}
    latency = {f"node-{i}": {"syncs_with_trigger": 1, "p50_s": i, "p90_s": i, "max_s": i}
               for i in range(1, nodes + 1)}  # fmt: skip
    summary: dict[str, Any] = {
        "seed": 1,
        "requests": {"total": 10, "by_outcome": {"ok": 10}},
        "failure_windows": [],
        "endpoints": {"default/web:http": shares},
        "programming_latency": latency,
        "syncs": {n: {"total": 1, "failed": 0} for n in latency},
    }
    events = pd.DataFrame({"kind": pd.Series([], dtype=str)})
    run = SimpleNamespace(summary=summary, manifest={"name": "x"}, path="runs/x", events=events)
    buffer = io.StringIO()
    print_summary(run, Console(file=buffer, width=100))  # type: ignore[arg-type]
    return buffer.getvalue()


def test_names_sort_by_their_numbers() -> None:
    names = ["node-10", "node-2", "10.244.2.10:80", "10.244.2.9:80", "node-1"]
    assert sorted(names, key=natural_key) == [
        "10.244.2.9:80", "10.244.2.10:80", "node-1", "node-2", "node-10",
    ]  # fmt: skip


def test_small_runs_list_everything_in_numeric_order() -> None:
    text = _printed(endpoints=12, nodes=11)
    lines = [line.split()[0] for line in text.splitlines() if line.strip().startswith("10.244.")]
    assert lines == [f"10.244.0.{i}:8080" for i in range(12)]
    nodes = [line.split()[0] for line in text.splitlines() if line.strip().startswith("node-")]
    assert nodes == [f"node-{i}" for i in range(1, 12)]
    assert "more" not in text


def test_big_runs_show_the_extremes_and_say_how_many_are_left_out() -> None:
    text = _printed(endpoints=500, nodes=100)
    endpoints = [line.split()[0] for line in text.splitlines() if line.strip().startswith("10.")]
    half = MAX_SPREAD_ROWS // 2
    busiest = [f"10.244.0.{i}:8080" for i in range(499, 499 - half, -1)]
    idlest = [f"10.244.0.{i}:8080" for i in range(half - 1, -1, -1)]
    assert endpoints == busiest + idlest
    assert f"... {500 - MAX_SPREAD_ROWS} more" in text
    assert "500 endpoints" in text
    nodes = [line.split()[0] for line in text.splitlines() if line.strip().startswith("node-")]
    # The slowest nodes (largest max latency), listed in name order.
    assert nodes == [f"node-{i}" for i in range(101 - MAX_NODE_ROWS, 101)]
    assert f"the {MAX_NODE_ROWS} nodes (of 100)" in text
