"""The sweep's tables: one row per run (read from its ``summary.json``), and per grid point.

``runs.parquet`` holds, per run: a column per ``--set`` key (named as the key, values as
written, text), ``seed``, the request counts (``requests_total``, ``requests_failed``,
``requests_<outcome>`` for every outcome), ``failure_windows`` (how many),
``failed_in_windows`` (failed requests inside them), ``programming_latency_p50_s`` /
``programming_latency_p99_s`` (over every node's syncs, the summary's
``programming_latency_all_nodes``; NaN when no sync had a trigger time) and ``run`` (the run
folder, relative to the sweep's folder). Nothing is recomputed from records: the numbers are
the summary's, as ``svcsim run`` prints them.

``points.parquet`` holds, per grid point: its key columns, ``runs`` (seeds run), and for each
metric ``<metric>_mean``, ``<metric>_ci_low``, ``<metric>_ci_high``: the mean over the point's
runs and a two-sided 95 % Student-t confidence interval for it
(``mean ± t(0.975, n−1)·s/√n``, s the sample standard deviation, scipy.stats.t). NaN values (a
run without latency samples) are left out of that metric's n. With n = 1 there is no estimate
of the spread: the interval is NaN (shown as ``-``), never a zero-width interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from svcsim.results.schema import Outcome

CONFIDENCE: Final = 0.95
"""Level of the confidence intervals in ``points.parquet``."""

SEED: Final = "seed"
RUN: Final = "run"
RUNS: Final = "runs"

COUNT_METRICS: Final[tuple[str, ...]] = (
    "requests_total",
    "requests_failed",
    *(f"requests_{o.value}" for o in Outcome),
    "failure_windows",
    "failed_in_windows",
)
"""Integer columns of ``runs.parquet``, in order."""

LATENCY_METRICS: Final[tuple[str, ...]] = (
    "programming_latency_p50_s",
    "programming_latency_p99_s",
)
"""Float columns of ``runs.parquet`` (seconds; NaN when the run has no latency sample)."""

METRICS: Final = (*COUNT_METRICS, *LATENCY_METRICS)
"""Every metric column, each summarised in ``points.parquet``."""


def summary_row(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The metric columns of one run, read from its ``summary.json`` content."""
    requests = summary["requests"]
    by_outcome = requests["by_outcome"]
    windows = summary.get("failure_windows") or []
    latency = summary.get("programming_latency_all_nodes") or {}
    row: dict[str, Any] = {
        "requests_total": int(requests["total"]),
        "requests_failed": int(requests["failed"]),
    }
    for outcome in Outcome:
        row[f"requests_{outcome.value}"] = int(by_outcome.get(outcome.value, 0))
    row["failure_windows"] = len(windows)
    row["failed_in_windows"] = sum(int(w["failed"]) for w in windows)
    for column, field in zip(LATENCY_METRICS, ("p50_s", "p99_s"), strict=True):
        value = latency.get(field)
        row[column] = math.nan if value is None else float(value)
    return row


def runs_frame(keys: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """``runs.parquet``'s table from rows in sweep order (key columns, seed, metrics, run)."""
    columns = [*keys, SEED, *METRICS, RUN]
    frame = pd.DataFrame([[row[c] for c in columns] for row in rows], columns=columns)
    for key in keys:
        frame[key] = frame[key].astype(object)
    frame[SEED] = frame[SEED].astype(np.int64)
    for column in COUNT_METRICS:
        frame[column] = frame[column].astype(np.int64)
    for column in LATENCY_METRICS:
        frame[column] = frame[column].astype(np.float64)
    frame[RUN] = frame[RUN].astype(object)
    return frame


def points_frame(keys: Sequence[str], runs: pd.DataFrame) -> pd.DataFrame:
    """``points.parquet``'s table: per grid point (in first-seen order) means and 95 % CIs."""
    from scipy import stats  # type: ignore[import-untyped, unused-ignore]

    rows = []
    groups = runs.groupby(list(keys), sort=False) if keys else [((), runs)]
    for labels, group in groups:
        values = labels if isinstance(labels, tuple) else (labels,)
        row: dict[str, Any] = dict(zip(keys, values, strict=True))
        row[RUNS] = len(group)
        for metric in METRICS:
            sample = group[metric].to_numpy(dtype=np.float64)
            sample = sample[~np.isnan(sample)]
            mean = float(sample.mean()) if len(sample) else math.nan
            low = high = math.nan
            if len(sample) >= 2:
                sem = float(sample.std(ddof=1)) / math.sqrt(len(sample))
                half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(sample) - 1)) * sem
                low, high = mean - half, mean + half
            row[f"{metric}_mean"] = mean
            row[f"{metric}_ci_low"] = low
            row[f"{metric}_ci_high"] = high
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame[RUNS] = frame[RUNS].astype(np.int64)
    for key in keys:
        frame[key] = frame[key].astype(object)
    return frame
