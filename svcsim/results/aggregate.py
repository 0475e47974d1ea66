"""Counting attempts for the record level ``failures-and-aggregates``.

A run at that level keeps every failed attempt in full and counts all attempts in the
``request_counts`` table (:data:`~svcsim.results.schema.REQUEST_COUNTS`): one row per span,
source node, Service, endpoint, Pod, outcome and ``new_flow``, with the number of attempts and
the send time of the first. Every reader of a run compares send times only with instants of
three kinds, so the spans are cut at all of them and a span never straddles one:

* figure time bins and whole seconds (:func:`~svcsim.results.bins.grid_cuts`): the outcome
  timeline, the endpoint shares;
* control-plane instants: events, sync starts and ends, endpoint-set changes (the stable
  intervals of the uniformity test and the chain check, staleness);
* per (Service, source node), the send time of each failed attempt ``t`` and the next float
  after it (failure windows count the pair's attempts with ``start_s <= t <= end_s``).

A row's ``t_s`` is its span's start, so any such comparison gives the same answer for the row
as for each attempt in it: the summary, the windows and the figures computed from the counts
equal those computed from every attempt (tests compare them on the shipped scenarios).

Attempts are recorded when their outcome is known, not in send order, so counts are final
only up to a *watermark*: the caller promises that every attempt sent before it has been
added (:meth:`CountAggregator.finalize`). The aggregator holds the attempts after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from svcsim.results.keyed import runs_of

F64 = npt.NDArray[np.float64]

COUNT_KEYS: Final[tuple[str, ...]] = ("src_node", "service", "endpoint", "pod", "outcome")
"""Coded columns (besides the span and ``new_flow``) a count row is keyed by."""

_OK_CODE: Final = 0
"""Code of ``ok`` (the first :class:`~svcsim.results.schema.Outcome`)."""


@dataclass(frozen=True, slots=True)
class CountBlock:
    """Count rows in coded form, sorted by span start then keys (recorder codes)."""

    t_s: F64
    first_t_s: F64
    codes: Mapping[str, npt.NDArray[Any]]
    """Per :data:`COUNT_KEYS` column, the recorder's codes."""
    new_flow: npt.NDArray[np.bool_]
    requests: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.t_s)


class CountAggregator:
    """Attempts in, count rows out once the watermark has passed them.

    ``grid`` holds the fixed cut instants (from
    :func:`~svcsim.results.bins.grid_cuts`); control-plane instants come with
    :meth:`add_cuts` as they happen. Attempts come with :meth:`add`, as recorder codes.
    """

    def __init__(self, grid: F64) -> None:
        self._grid = np.unique(np.r_[0.0, np.asarray(grid, dtype=np.float64)])
        self._cuts: list[float] = []
        self._parts: list[dict[str, npt.NDArray[Any]]] = []
        self._done_through = 0.0
        """Every span before this instant has been handed out."""

    @property
    def done_through(self) -> float:
        """Counts of attempts sent before this instant are final and handed out."""
        return self._done_through

    def add_cuts(self, times: Iterable[float]) -> None:
        """Control-plane instants: no span crosses them."""
        self._cuts.extend(float(t) for t in times)

    def add(
        self,
        t_s: F64,
        codes: Mapping[str, npt.NDArray[Any]],
        new_flow: npt.NDArray[np.bool_],
    ) -> None:
        """Hold a batch of attempts (send times, :data:`COUNT_KEYS` codes, ``new_flow``)."""
        if not len(t_s):
            return
        if float(t_s.min()) < self._done_through:
            raise ValueError(
                f"an attempt sent at {float(t_s.min())!r} s came after the counts were final "
                f"through {self._done_through!r} s"
            )
        part = {"t_s": t_s, "new_flow": new_flow, **{k: codes[k] for k in COUNT_KEYS}}
        self._parts.append(part)

    def finalize(self, watermark: float) -> CountBlock | None:
        """The counts of every span that ends at or before ``watermark`` (None if none).

        Every attempt sent before ``watermark`` must have been added, and every control-plane
        instant before it. Spans are handed out whole: up to the last cut at or before it.
        """
        if watermark <= self._done_through:
            return None
        cuts = self._cut_array(watermark)
        upto = float(cuts[np.searchsorted(cuts, watermark, side="right") - 1])
        if upto <= self._done_through:
            return None
        return self._take(upto, cuts)

    def finish(self) -> CountBlock | None:
        """The counts of everything held (the run is over)."""
        return self._take(np.inf, self._cut_array())

    def peek(self) -> CountBlock | None:
        """The counts of everything held, without handing them out (a preview mid-run)."""
        rows = self._held()
        return _count(rows, self._cut_array()) if rows is not None else None

    def _cut_array(self, through: float = np.inf) -> F64:
        """The cuts in ``[done_through, through]``, sorted (``done_through`` is one of them).

        Only those: a day's grid has hundreds of thousands of cuts, and the watermark moves
        thousands of times; merging the whole rest of the grid each time made a day's
        counting quadratic in its length.
        """
        lo = int(np.searchsorted(self._grid, self._done_through, side="left"))
        hi = int(np.searchsorted(self._grid, through, side="right"))
        extra = np.asarray(self._cuts, dtype=np.float64)
        extra = extra[(extra >= self._done_through) & (extra <= through)]
        return np.union1d(self._grid[lo:hi], extra)

    def _held(self) -> dict[str, npt.NDArray[Any]] | None:
        if not self._parts:
            return None
        if len(self._parts) > 1:
            self._parts = [{k: np.concatenate([p[k] for p in self._parts]) for k in self._parts[0]}]
        return self._parts[0]

    def _take(self, upto: float, cuts: F64) -> CountBlock | None:
        rows = self._held()
        self._done_through = max(self._done_through, upto)
        self._cuts = [t for t in self._cuts if t >= self._done_through]
        if rows is None:
            return None
        before = rows["t_s"] < upto
        if not before.all():
            self._parts = [{k: v[~before] for k, v in rows.items()}]
            rows = {k: v[before] for k, v in rows.items()}
        else:
            self._parts = []
        return _count(rows, cuts) if len(rows["t_s"]) else None


def _count(rows: Mapping[str, npt.NDArray[Any]], cuts: F64) -> CountBlock:
    """Count ``rows`` per span (cut at ``cuts`` and the pairs' failures) and key."""
    t = rows["t_s"]
    start = _span_starts(t, cuts)
    failed = rows["outcome"] != _OK_CODE
    if failed.any():
        pair = (rows["service"].astype(np.int64) << 32) | rows["src_node"].astype(np.int64)
        start = np.maximum(start, _failure_starts(t, pair, failed))
    # Rows sorted by span start, then the keys in order, then new_flow: one packed key (the
    # start as its rank among the block's starts), one stable sort (runs_of).
    starts, rank = np.unique(start, return_inverse=True)
    columns = [rank, *(rows[k] for k in COUNT_KEYS), rows["new_flow"]]
    sizes = [len(starts), *(int(rows[k].max()) + 1 for k in COUNT_KEYS), 2]
    order, heads = runs_of(columns, sizes)
    first = order[heads]
    counts = np.diff(np.r_[heads, len(t)]).astype(np.int64)
    return CountBlock(
        t_s=start[first],
        first_t_s=np.minimum.reduceat(t[order], heads),
        codes={k: rows[k][first] for k in COUNT_KEYS},
        new_flow=rows["new_flow"][first],
        requests=counts,
    )


def _span_starts(t: F64, cuts: F64) -> F64:
    """The last cut at or before each time (times are >= 0, and 0 is a cut)."""
    index = np.searchsorted(cuts, t, side="right") - 1
    starts: F64 = cuts[np.maximum(index, 0)]
    return starts


def _failure_starts(t: F64, pair: npt.NDArray[np.int64], failed: npt.NDArray[np.bool_]) -> F64:
    """Per attempt, the latest failure cut of its pair at or before it (-inf if none).

    A failure sent at ``f`` cuts its pair's spans at ``f`` and at the next float after ``f``:
    the attempts sent exactly at ``f`` get a span of their own.
    """
    ft = t[failed]
    cut_t = np.r_[ft, np.nextafter(ft, np.inf)]
    cut_pair = np.r_[pair[failed], pair[failed]]
    # Exact integer keys (pair index, rank of the time) make one sorted search do every pair.
    times, rank = np.unique(np.r_[t, cut_t], return_inverse=True)
    _, pair_index = np.unique(np.r_[pair, cut_pair], return_inverse=True)
    n_times = len(times)
    n = len(t)
    key = pair_index.astype(np.int64) * n_times + rank.astype(np.int64)
    cut_keys = np.sort(key[n:])
    pos = np.searchsorted(cut_keys, key[:n], side="right") - 1
    found = cut_keys[np.maximum(pos, 0)]
    same_pair = (pos >= 0) & (found // n_times == pair_index[:n])
    out: F64 = np.where(same_pair, times[found % n_times], -np.inf)
    return out
