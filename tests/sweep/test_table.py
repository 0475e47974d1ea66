"""The sweep's tables: a run's row from its summary, and per-point means with t intervals."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from svcsim.results.schema import Outcome
from svcsim.sweep.table import METRICS, points_frame, runs_frame, summary_row


def summary(failed: int, latency: float | None = 0.5) -> dict[str, object]:
    """A summary.json content with ``failed`` refused requests in one window."""
    by_outcome = {o.value: 0 for o in Outcome}
    by_outcome.update(ok=100, refused=failed)
    return {
        "requests": {"total": 100 + failed, "failed": failed, "by_outcome": by_outcome},
        "failure_windows": [{"failed": failed}] if failed else [],
        "programming_latency_all_nodes": {} if latency is None
        else {"p50_s": latency, "p99_s": 2 * latency},
    }  # fmt: skip


def test_a_row_reads_the_summary() -> None:
    row = summary_row(summary(7))
    assert row["requests_total"] == 107
    assert row["requests_failed"] == 7
    assert row["requests_refused"] == 7
    assert row["requests_ok"] == 100
    assert row["failure_windows"] == 1
    assert row["failed_in_windows"] == 7
    assert (row["programming_latency_p50_s"], row["programming_latency_p99_s"]) == (0.5, 1.0)
    assert set(row) == set(METRICS)


def test_a_run_without_latency_samples_has_nan_latency() -> None:
    assert math.isnan(summary_row(summary(0, latency=None))["programming_latency_p99_s"])


def _runs(failed_by_point: dict[str, list[int]]) -> pd.DataFrame:
    rows = []
    for value, fails in failed_by_point.items():
        for seed, failed in enumerate(fails, 1):
            rows.append({"k": value, "seed": seed, **summary_row(summary(failed)), "run": "x"})
    return runs_frame(["k"], rows)


def test_points_hold_the_mean_and_the_student_t_interval() -> None:
    fails = [3, 5, 10, 2]
    points = points_frame(["k"], _runs({"a": fails, "b": [1, 1]}))
    a = points.iloc[0]
    assert (a["k"], a["runs"]) == ("a", 4)
    mean = np.mean(fails)
    low, high = stats.t.interval(0.95, len(fails) - 1, loc=mean, scale=stats.sem(fails))
    assert a["failed_in_windows_mean"] == pytest.approx(mean)
    assert (a["failed_in_windows_ci_low"], a["failed_in_windows_ci_high"]) == pytest.approx(
        (low, high)
    )
    b = points.iloc[1]
    # No spread: a zero-width interval at the mean.
    assert (b["failed_in_windows_ci_low"], b["failed_in_windows_ci_high"]) == (1.0, 1.0)


def test_one_run_has_no_interval() -> None:
    point = points_frame(["k"], _runs({"a": [4]})).iloc[0]
    assert point["failed_in_windows_mean"] == 4
    assert math.isnan(point["failed_in_windows_ci_low"])
    assert math.isnan(point["failed_in_windows_ci_high"])


def test_points_keep_the_grid_order_not_sorted() -> None:
    points = points_frame(["k"], _runs({"5s": [1, 2], "10s": [1, 2], "0s": [1, 2]}))
    assert list(points["k"]) == ["5s", "10s", "0s"]


def test_a_sweep_without_keys_is_one_point() -> None:
    runs = _runs({"a": [1, 2, 3]}).drop(columns=["k"])
    points = points_frame([], runs)
    assert len(points) == 1
    assert points.iloc[0]["runs"] == 3
