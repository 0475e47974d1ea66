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
The view is computed once per :class:`~svcsim.results.Run` and kept in its ``memo``;
``svcsim run`` folds it in the same read of the counted attempts as the summary
(:func:`view_fold`, :func:`keep_view`), so a day's file is decoded once. Each batch is reduced
with one sort of a packed key (:func:`~svcsim.results.keyed.runs_of`) and the start of each
row's span is looked up once per distinct send time (the table is sorted by ``t_s``), not
per row.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from svcsim.results import Run
from svcsim.results.bins import SHARES_BINS, TIMELINE_BINS, grid_cuts, time_bin_s
from svcsim.results.counted import BATCH_ROWS, CodedBatch
from svcsim.results.keyed import runs_of
from svcsim.results.schema import conform
from svcsim.results.weights import COUNT_COLUMN

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_CODED: Final = ("service", "endpoint", "pod", "outcome")
"""The string columns the view keeps (``src_node`` is dropped)."""
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
    fold = view_fold(run)
    for batch in run.counts.batches(rows):
        fold.add(batch)
    return fold.result()


def view_fold(run: Run) -> ViewFold:
    """An empty fold of ``run``'s view, to feed its counted attempts batch by batch.

    What :func:`fold_view` does, for a reader that reads the batches anyway (the run's
    analysis, :func:`~svcsim.results.fold.fold_traffic`'s ``also``): the file is read once.
    Hand the result to :func:`keep_view`.
    """
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
    return ViewFold(grid, per_service)


def keep_view(run: Run, view: pd.DataFrame) -> None:
    """Keep ``view`` (a :class:`ViewFold`'s result for ``run``) as the run's figure view."""
    run.memo[_MEMO] = view


class ViewFold:
    """The view, folded batch by batch: rows kept as global codes until :meth:`result`.

    Each batch is reduced to one row per (span start, Service, endpoint, Pod, outcome,
    ``new_flow``) with one sort of a packed key (:func:`~svcsim.results.keyed.runs_of`);
    names get global codes in first-seen order, and :meth:`result` orders the rows as a
    ``groupby(sort=True)`` on the names would.
    """

    def __init__(self, grid: F64, per_service: dict[str, F64]) -> None:
        self._grid = grid
        self._cuts = [per_service[s] for s in sorted(per_service)]
        self._service_index = {s: i for i, s in enumerate(sorted(per_service))}
        self._names: dict[str, dict[str, int]] = {k: {} for k in _CODED}
        self._tables: dict[str, tuple[list[str], I64]] = {}
        self._added = 0
        """Per column, the last batch's names and their global codes (-1: not yet used)."""
        self._parts: list[dict[str, npt.NDArray[Any]]] = []

    def add(self, batch: CodedBatch) -> None:
        """Reduce one batch (the next rows of the table) and keep its rows."""
        if not len(batch):
            return
        t = np.asarray(batch.numbers["t_s"], dtype=np.float64)
        # Rows come sorted by t_s (the table is): the view's starts are computed once per
        # distinct time and Service, not per row.
        if len(t) > 1 and not bool((t[1:] >= t[:-1]).all()):
            times, seg = np.unique(t, return_inverse=True)
        else:
            change = np.r_[True, t[1:] != t[:-1]]
            times = t[change]
            seg = np.cumsum(change) - 1
        grid_start = self._grid[np.maximum(np.searchsorted(self._grid, times, side="right") - 1, 0)]
        service_codes, service_names = batch.codes("service")
        # One row per Service name of the batch: the start of each distinct time's span.
        starts = np.tile(grid_start, (len(service_names), 1))
        for code, name in enumerate(service_names):
            index = self._service_index.get(name)
            cuts = self._cuts[index] if index is not None else None
            if cuts is None or not len(cuts):
                continue
            at = np.searchsorted(cuts, times, side="right") - 1
            found = np.where(at >= 0, cuts[np.maximum(at, 0)], -np.inf)
            starts[code] = np.maximum(grid_start, found)
        values, rank_of = np.unique(starts, return_inverse=True)
        rank = rank_of.reshape(starts.shape)[service_codes, seg]
        coded = {k: batch.codes(k) for k in _CODED}
        columns = [rank, *(coded[k][0] for k in _CODED), batch.numbers["new_flow"].astype(np.int64)]
        sizes = [len(values), *(len(coded[k][1]) for k in _CODED), 2]
        order, heads = runs_of(columns, sizes)
        first = order[heads]
        part: dict[str, npt.NDArray[Any]] = {"t_s": values[rank[first]]}
        for k in _CODED:
            local, names = coded[k]
            part[k] = self._global(k, names, local[first])
        part["new_flow"] = np.asarray(batch.numbers["new_flow"], dtype=bool)[first]
        part["first_t_s"] = np.minimum.reduceat(
            np.asarray(batch.numbers["first_t_s"], dtype=np.float64)[order], heads
        )
        part[COUNT_COLUMN] = np.add.reduceat(
            np.asarray(batch.numbers[COUNT_COLUMN], dtype=np.int64)[order], heads
        )
        self._parts.append(part)
        self._added += 1
        if self._added % _REDUCE_EVERY == 0:
            self.compact()

    def compact(self) -> None:
        """Merge the rows kept so far (bounds their memory)."""
        if len(self._parts) > 1:
            self._parts = [self._merged()]

    def _global(self, column: str, names: list[str], local: I64) -> I64:
        """Global codes of ``local`` codes into ``names`` (new names get the next codes).

        Only names in use get one (a batch's dictionary may hold more). Batches of one row
        group share its dictionary: the last one's table is extended, not rebuilt.
        """
        ids = self._names[column]
        last = self._tables.get(column)
        table = last[1] if last is not None and last[0] == names else None
        if table is None:
            table = np.full(len(names), -1, dtype=np.int64)
            self._tables[column] = (names, table)
        used = np.zeros(len(names), dtype=np.bool_)
        used[local] = True
        for i in np.flatnonzero(used & (table < 0)).tolist():
            table[i] = ids.setdefault(names[i], len(ids))
        out: I64 = table[local]
        return out

    def _merged(self) -> dict[str, npt.NDArray[Any]]:
        """The parts as one, rows merged per key and span: first sends by min, counts summed."""
        both = {k: np.concatenate([p[k] for p in self._parts]) for k in self._parts[0]}
        values, rank = np.unique(both["t_s"], return_inverse=True)
        columns = [rank, *(both[k] for k in _CODED), both["new_flow"].astype(np.int64)]
        sizes = [len(values), *(len(self._names[k]) for k in _CODED), 2]
        order, heads = runs_of(columns, sizes)
        first = order[heads]
        out = {k: both[k][first] for k in ("t_s", *_CODED, "new_flow")}
        out["first_t_s"] = np.minimum.reduceat(both["first_t_s"][order], heads)
        out[COUNT_COLUMN] = np.add.reduceat(both[COUNT_COLUMN][order], heads)
        return out

    def result(self) -> pd.DataFrame:
        """The view (rows in ``groupby(sort=True)`` order of the names), conformed."""
        return conform(self._frame(), "request_counts")

    def _frame(self) -> pd.DataFrame:
        if not self._parts:
            frame = _empty()
            frame["src_node"] = ""
            return frame
        merged = self._merged()
        ranked: dict[str, I64] = {}
        categories: dict[str, list[str]] = {}
        for k in _CODED:
            names = list(self._names[k])  # code order
            by_name = sorted(range(len(names)), key=names.__getitem__)
            rank = np.empty(len(names), dtype=np.int64)
            rank[by_name] = np.arange(len(names), dtype=np.int64)
            ranked[k] = rank[merged[k]]
            categories[k] = [names[i] for i in by_name]
        order = np.lexsort(
            (merged["t_s"], merged["new_flow"], *(ranked[k] for k in reversed(_CODED)))
        )
        frame = pd.DataFrame(
            {
                k: pd.Categorical.from_codes(ranked[k][order], categories=categories[k])
                for k in _CODED
            }
        )
        frame["new_flow"] = merged["new_flow"][order]
        frame["t_s"] = merged["t_s"][order]
        frame["first_t_s"] = merged["first_t_s"][order]
        frame[COUNT_COLUMN] = merged[COUNT_COLUMN][order]
        frame["src_node"] = ""
        return frame


def _empty() -> pd.DataFrame:
    keys = (*_CODED, "new_flow", "t_s")
    columns = {**{k: pd.Series(dtype=object) for k in keys}, "first_t_s": [], COUNT_COLUMN: []}
    frame = pd.DataFrame(columns)
    frame["new_flow"] = frame["new_flow"].astype(bool)
    frame["t_s"] = frame["t_s"].astype(np.float64)
    frame["first_t_s"] = frame["first_t_s"].astype(np.float64)
    frame[COUNT_COLUMN] = frame[COUNT_COLUMN].astype(np.int64)
    return frame
