"""The attempts as the figures read them: small, whatever the run's length.

At record level ``every-request`` the figures read the ``requests`` table as it is. At
``failures-and-aggregates`` :func:`figure_traffic` folds the counted attempts
(:class:`~svcsim.results.counted.CountedAttempts`, read in batches) into a table of the same
columns with far fewer rows: per Service, endpoint, Pod, outcome and ``new_flow``, one row per
span between the instants any figure compares a send time with, namely

* the edges of the outcome timeline's and endpoint-share figure's time bins
  (:func:`~svcsim.results.bins.grid_cuts` for those two widths), and
* per Service, the bounds of the chain check's stable windows
  (:func:`~svcsim.plots.chain.stable_windows`).

A row's ``t_s`` is its span's start and ``first_t_s`` the earliest first send of the rows
merged into it; ``src_node`` is dropped (``""``: :func:`traffic_nodes` lists the sources). So
every figure drawn from it is the one drawn from all the counted rows (tests compare the PNG
bytes), and a day-long run's figures read a few hundred thousand rows, not tens of millions.
The view is computed once per :class:`~svcsim.results.Run` and kept in its ``memo``.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from svcsim.results import Run
from svcsim.results.bins import SHARES_BINS, TIMELINE_BINS, grid_cuts, time_bin_s
from svcsim.results.counted import BATCH_ROWS, CodedBatch
from svcsim.results.schema import conform
from svcsim.results.weights import COUNT_COLUMN

F64 = npt.NDArray[np.float64]

_KEYS: Final = ("service", "endpoint", "pod", "outcome", "new_flow", "t_s")
_MEMO: Final = "figure_traffic"
_NODES_MEMO: Final = "traffic_nodes"
_REDUCE_EVERY: Final = 16
"""Batches folded between re-merges of the partial view (bounds its memory)."""


def figure_traffic(run: Run) -> pd.DataFrame:
    """The attempts the figures count: ``run.requests``, or the folded view (module docs)."""
    if not run.counted:
        return run.requests
    cached = run.memo.get(_MEMO)
    if cached is None:
        cached = fold_view(run)
        run.memo[_MEMO] = cached
    frame: pd.DataFrame = cached
    return frame


def traffic_nodes(run: Run) -> set[str]:
    """The ``src_node`` values of the run's attempts ("" included if present)."""
    if not run.counted:
        return {str(v) for v in run.requests["src_node"].unique()}
    cached = run.memo.get(_NODES_MEMO)
    if cached is None:
        cached = run.counts.distinct("src_node")
        run.memo[_NODES_MEMO] = cached
    nodes: set[str] = cached
    return nodes


def fold_view(run: Run, rows: int = BATCH_ROWS) -> pd.DataFrame:
    """The folded view of a counted run's attempts (module docstring), read ``rows`` at a time."""
    # Imported here: chain and style import this module's readers (events), not the reverse.
    from svcsim.plots.chain import stable_windows
    from svcsim.plots.style import run_span_s

    span_s = run_span_s(run)
    widths = sorted({time_bin_s(span_s, TIMELINE_BINS), time_bin_s(span_s, SHARES_BINS)})
    grid = np.unique(np.r_[0.0, grid_cuts(span_s, widths)])
    services = sorted(run.counts.distinct("service"))
    per_service = {
        s: np.unique(np.asarray([b for w in stable_windows(run, s) for b in w], dtype=np.float64))
        for s in services
    }
    parts: list[pd.DataFrame] = []
    for i, batch in enumerate(run.counts.batches(rows)):
        if not len(batch):
            continue
        parts.append(_reduce_batch(batch, grid, per_service))
        if (i + 1) % _REDUCE_EVERY == 0:
            parts = [_merge(parts)]
    merged = _merge(parts) if parts else _empty()
    merged["src_node"] = ""
    return conform(merged, "request_counts")


def _reduce_batch(batch: CodedBatch, grid: F64, per_service: dict[str, F64]) -> pd.DataFrame:
    """One batch's rows merged per key and span (t_s becomes the span's start)."""
    t = np.asarray(batch.numbers["t_s"], dtype=np.float64)
    start = grid[np.maximum(np.searchsorted(grid, t, side="right") - 1, 0)]
    coded = {k: batch.codes(k) for k in ("service", "endpoint", "pod", "outcome")}
    service_codes, service_names = coded["service"]
    for code, name in enumerate(service_names):
        cuts = per_service.get(name)
        mine = service_codes == code
        if cuts is None or not len(cuts) or not mine.any():
            continue
        index = np.searchsorted(cuts, t[mine], side="right") - 1
        found = np.where(index >= 0, cuts[np.maximum(index, 0)], -np.inf)
        start[mine] = np.maximum(start[mine], found)
    # Sort by every key (the last is the primary one), then one row per run of equal keys.
    keys = [
        np.asarray(batch.numbers["new_flow"], dtype=bool),
        coded["outcome"][0],
        coded["pod"][0],
        coded["endpoint"][0],
        service_codes,
        start,
    ]
    order = np.lexsort(keys)
    ordered = [k[order] for k in keys]
    change = np.zeros(len(t), dtype=np.bool_)
    change[:1] = True
    for k in ordered:
        change[1:] |= k[1:] != k[:-1]
    heads = np.flatnonzero(change)
    frame = pd.DataFrame(
        {
            name: np.asarray(coded[name][1], dtype=object)[coded[name][0][order][heads]]
            for name in ("service", "endpoint", "pod", "outcome")
        }
    )
    frame["new_flow"] = ordered[0][heads]
    frame["t_s"] = ordered[-1][heads]
    frame["first_t_s"] = np.minimum.reduceat(
        np.asarray(batch.numbers["first_t_s"], dtype=np.float64)[order], heads
    )
    frame[COUNT_COLUMN] = np.add.reduceat(
        np.asarray(batch.numbers[COUNT_COLUMN], dtype=np.int64)[order], heads
    )
    return frame


def _merge(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Partial views merged per key and span: first sends by min, attempts summed."""
    both = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    grouped = both.groupby(list(_KEYS), sort=True, observed=True)
    out = grouped.agg(first_t_s=("first_t_s", "min"), requests=(COUNT_COLUMN, "sum"))
    return out.reset_index()


def _empty() -> pd.DataFrame:
    columns = {**{k: pd.Series(dtype=object) for k in _KEYS}, "first_t_s": [], COUNT_COLUMN: []}
    frame = pd.DataFrame(columns)
    frame["new_flow"] = frame["new_flow"].astype(bool)
    frame["t_s"] = frame["t_s"].astype(np.float64)
    frame["first_t_s"] = frame["first_t_s"].astype(np.float64)
    frame[COUNT_COLUMN] = frame[COUNT_COLUMN].astype(np.int64)
    return frame
