"""The summary's traffic figures, folded over a run's attempts one batch at a time.

:func:`fold_traffic` reads the attempts (a table of attempts or counted attempts, whole or in
batches: :class:`~svcsim.results.counted.CountedAttempts`) once and keeps only what the
summary needs: attempts per outcome, per (Service, endpoint), new flows per (Service, endpoint
set, endpoint) for the uniformity test, and per failure window of a (Service, node) pair. The
results equal those of :func:`~svcsim.results.stats.endpoint_shares`,
:func:`~svcsim.results.stats.uniformity_tests` and the ``total`` of
:func:`~svcsim.results.windows.failure_windows` on the whole table (attempt counts are exact
integer sums whatever the batching; the chi-square gets its inputs in the same order), and
memory is bounded by those outputs, not by the number of attempts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from svcsim.results.counted import CodedBatch
from svcsim.results.schema import Outcome
from svcsim.results.stats import _chisquare, endpoint_shares
from svcsim.results.weights import COUNT_COLUMN
from svcsim.results.windows import FailureWindow

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class TrafficFold:
    """What :func:`fold_traffic` kept of a run's attempts.

    Attributes:
        total: every attempt.
        by_outcome: attempts per outcome value (every outcome, zeros included).
        endpoints: :func:`~svcsim.results.stats.endpoint_shares` of the attempts.
        uniformity: :func:`~svcsim.results.stats.uniformity_tests` of the attempts, or None
            when no intervals were given.
        windows: the windows given, with ``total`` counted.
    """

    total: int
    by_outcome: dict[str, int]
    endpoints: pd.DataFrame
    uniformity: pd.DataFrame | None
    windows: list[FailureWindow]


class BatchFold(Protocol):
    """Another fold over the same attempts (:func:`fold_traffic`'s ``also``)."""

    def add(self, batch: CodedBatch) -> None:
        """Take the next batch of rows."""


def fold_traffic(
    batches: Iterable[CodedBatch],
    *,
    endpoint_sets: pd.DataFrame | None = None,
    intervals: pd.DataFrame | None = None,
    windows: Sequence[FailureWindow] = (),
    also: Sequence[BatchFold] = (),
) -> TrafficFold:
    """Fold the attempts in ``batches`` (see the module docstring) in one pass.

    ``windows`` are failure windows whose ``total`` is to be counted here (their other fields
    come from the failed attempts alone); ``intervals`` as for
    :func:`~svcsim.results.stats.uniformity_tests`; ``endpoint_sets`` as for
    :func:`~svcsim.results.stats.endpoint_shares`. Each of ``also`` is given every batch
    too, in order (the figures' view, :func:`svcsim.plots.view.view_fold`): a day's file
    is then decoded once, not once per fold.
    """
    outcomes = [o.value for o in Outcome]
    outcome_index = {name: i for i, name in enumerate(outcomes)}
    by_outcome = np.zeros(len(outcomes), dtype=np.int64)
    pairs: dict[tuple[str, str], int] = {}
    uniformity = _Uniformity(intervals) if intervals is not None else None
    totals = _WindowTotals(windows)
    for batch in batches:
        if not len(batch):
            continue
        for other in also:
            other.add(batch)
        weights = np.asarray(batch.numbers[COUNT_COLUMN], dtype=np.int64)
        codes = batch.lookup("outcome", outcome_index)
        if (codes < 0).any():
            raise ValueError("request_counts: an outcome that is not one of Outcome")
        by_outcome += np.bincount(codes, weights=weights, minlength=len(outcomes)).astype(np.int64)
        routed = ~batch.where("endpoint", "")
        svc, services = batch.codes("service")
        endpoint, endpoints = batch.codes("endpoint")
        width = max(len(endpoints), 1)
        # Few names per batch: count over every (service, endpoint) code pair, no sort.
        sums = np.bincount(
            svc[routed] * width + endpoint[routed],
            weights=weights[routed],
            minlength=len(services) * width,
        )
        for k in np.flatnonzero(sums).tolist():
            name = (services[k // width], endpoints[k % width])
            pairs[name] = pairs.get(name, 0) + round(float(sums[k]))
        if uniformity is not None:
            uniformity.add(batch, weights)
        totals.add(batch, weights)
    counted = pd.DataFrame(
        {
            "service": [s for s, _ in pairs],
            "endpoint": [e for _, e in pairs],
            COUNT_COLUMN: np.asarray(list(pairs.values()), dtype=np.int64),
        }
    )
    return TrafficFold(
        total=int(by_outcome.sum()),
        by_outcome={name: int(n) for name, n in zip(outcomes, by_outcome, strict=True)},
        endpoints=endpoint_shares(counted, endpoint_sets=endpoint_sets),
        uniformity=uniformity.result() if uniformity is not None else None,
        windows=totals.result(),
    )


class _WindowTotals:
    """Attempts of each window's (Service, node) pair sent in [start_s, end_s], summed."""

    def __init__(self, windows: Sequence[FailureWindow]) -> None:
        self._windows = list(windows)
        self._services = sorted({w.service for w in windows})
        self._nodes = sorted({w.node for w in windows})
        n_nodes = max(len(self._nodes), 1)
        svc = {s: i for i, s in enumerate(self._services)}
        node = {n: i for i, n in enumerate(self._nodes)}
        self._service_index, self._node_index = svc, node
        self._n_nodes = n_nodes
        self._key = np.asarray(
            [svc[w.service] * n_nodes + node[w.node] for w in windows], dtype=np.int64
        )
        self._start = np.asarray([w.start_s for w in windows], dtype=np.float64)
        self._end = np.asarray([w.end_s for w in windows], dtype=np.float64)
        self._total = np.zeros(len(windows), dtype=np.int64)
        # A pair's windows never overlap (failure_windows), so each attempt is in at most one.
        order = np.lexsort((self._start, self._key))
        self._sorted_window = order
        self._sorted_key = self._key[order]
        self._sorted_end = self._end[order]
        self._starts = np.unique(self._start)
        self._keys = self._sorted_key * (len(self._starts) + 1) + np.searchsorted(
            self._starts, self._start[order], side="right"
        )
        # The union of every window's [start_s, end_s], as sorted disjoint spans: most
        # attempts are in none, and one search against these few bounds says which.
        by_start = np.argsort(self._start, kind="stable")
        lo, hi = self._start[by_start], self._end[by_start]
        reach = np.maximum.accumulate(hi) if len(hi) else hi
        opens = np.r_[True, lo[1:] > reach[:-1]] if len(lo) else np.zeros(0, dtype=np.bool_)
        self._span_lo = lo[opens]
        self._span_hi = np.maximum.reduceat(hi, np.flatnonzero(opens)) if len(lo) else hi

    def add(self, batch: CodedBatch, weights: I64) -> None:
        if not self._windows:
            return
        t_all = np.asarray(batch.numbers["t_s"], dtype=np.float64)
        span = np.searchsorted(self._span_lo, t_all, side="right") - 1
        near = (span >= 0) & (t_all <= self._span_hi[np.maximum(span, 0)])
        if not near.any():
            return
        t_svc = batch.lookup("service", self._service_index)
        t_node = batch.lookup("src_node", self._node_index)
        known = near & (t_svc >= 0) & (t_node >= 0)
        if not known.any():
            return
        t = t_all[known]
        pair = (t_svc * self._n_nodes + t_node)[known]
        # The pair's last window starting at or before t (exact integer keys: pair, rank of
        # the time among the window starts), then whether t is at or before its end.
        keys = pair * (len(self._starts) + 1) + np.searchsorted(self._starts, t, side="right")
        pos = np.searchsorted(self._keys, keys, side="right") - 1
        at = np.maximum(pos, 0)
        inside = (pos >= 0) & (self._sorted_key[at] == pair) & (t <= self._sorted_end[at])
        self._total += np.bincount(
            self._sorted_window[at[inside]],
            weights=weights[known][inside],
            minlength=len(self._total),
        ).astype(np.int64)

    def result(self) -> list[FailureWindow]:
        return [replace(w, total=int(n)) for w, n in zip(self._windows, self._total, strict=True)]


class _Uniformity:
    """:func:`~svcsim.results.stats.uniformity_tests`, fed batch by batch.

    The intervals are visited in the order that function visits them (Service, then node,
    then row), so each Service's endpoint sets are pooled in the same order and the
    chi-square sees the same sequence of counts.
    """

    def __init__(self, intervals: pd.DataFrame) -> None:
        has_node = "node" in intervals.columns
        svc_codes, services = pd.factorize(
            intervals["service"].astype(str).to_numpy(object), sort=True
        )
        node_values = (
            intervals["node"].astype(str).to_numpy(object)
            if has_node
            else np.full(len(intervals), "", dtype=object)
        )
        node_codes, nodes = pd.factorize(node_values, sort=True)
        svc_codes = np.asarray(svc_codes, dtype=np.int64)
        node_codes = np.asarray(node_codes, dtype=np.int64)
        self._services = [str(v) for v in services]
        self._nodes = [str(v) for v in nodes]
        self._service_index = {n: i for i, n in enumerate(self._services)}
        self._node_index = {n: i for i, n in enumerate(self._nodes)}
        self._has_node = has_node
        n_nodes = max(len(self._nodes), 1)
        # uniformity_tests visits Service, then node (both sorted), then rows in order.
        visit = np.lexsort((node_codes, svc_codes))
        lo = intervals["start_s"].to_numpy(dtype=np.float64)
        hi = intervals["end_s"].to_numpy(dtype=np.float64)
        scope_key = svc_codes * n_nodes + node_codes
        by_start = np.lexsort((lo, scope_key))
        same = scope_key[by_start][1:] == scope_key[by_start][:-1]
        if (same & (lo[by_start][1:] < hi[by_start][:-1])).any():
            raise ValueError("intervals overlap")
        # Per Service, its endpoint sets in first-visit order: the order they are pooled in.
        # A day has a million intervals and a few thousand distinct sets: each distinct value
        # is sorted once, and the (Service, set) pairs are numbered as integers.
        eps_codes, eps_values = pd.factorize(intervals["endpoints"].to_numpy(object))
        sorted_sets = [tuple(sorted(e)) for e in eps_values]
        same_set, sets = pd.factorize(pd.Series(sorted_sets, dtype=object))
        set_code = np.asarray(same_set, dtype=np.int64)[np.asarray(eps_codes, dtype=np.int64)]
        pair_of = svc_codes * max(len(sets), 1) + set_code
        ids, uniques = pd.factorize(pair_of[visit])
        set_of = np.empty(len(intervals), dtype=np.int64)
        set_of[visit] = ids
        self._sets: list[tuple[int, tuple[str, ...]]] = [
            (int(k) // max(len(sets), 1), sets[int(k) % max(len(sets), 1)])
            for k in np.asarray(uniques, dtype=np.int64).tolist()
        ]
        self._scope = scope_key[by_start]
        self._start = lo[by_start]
        self._end = hi[by_start]
        self._set = set_of[by_start]
        # Exact integer keys (scope, rank of the start among all starts): one sorted search
        # finds every flow's interval, as stats._interval_of does per scope.
        self._starts = np.unique(self._start)
        self._keys = self._scope * (len(self._starts) + 1) + np.searchsorted(
            self._starts, self._start, side="right"
        )
        self._n_nodes = n_nodes
        self._endpoint_ids: dict[str, int] = {}
        self._counts: dict[tuple[int, int], int] = {}

    def add(self, batch: CodedBatch, weights: I64) -> None:
        flows = ~batch.where("endpoint", "") & np.asarray(batch.numbers["new_flow"], dtype=bool)
        if not flows.any() or not len(self._scope):
            return
        svc = batch.lookup("service", self._service_index)[flows]
        node = (
            batch.lookup("src_node", self._node_index)[flows]
            if self._has_node
            else np.zeros(int(flows.sum()), dtype=np.int64)
        )
        known = (svc >= 0) & (node >= 0)
        t = np.asarray(batch.numbers["t_s"], dtype=np.float64)[flows][known]
        scope = (svc * self._n_nodes + node)[known]
        local_all, names = batch.codes("endpoint")
        local = local_all[flows][known]
        weight = weights[flows][known]
        flow_keys = scope * (len(self._starts) + 1) + np.searchsorted(self._starts, t, side="right")
        # Searched in sorted order (numpy's search is far faster for sorted needles against
        # a large table: a day has a million intervals). Rows come in time order (the table
        # is sorted by t_s), so a stable sort on the scope alone sorts the keys: a radix sort
        # when the scopes fit in 16 bits, one pass instead of a comparison sort.
        if len(t) > 1 and bool((t[1:] >= t[:-1]).all()) and len(self._keys):
            by_key = np.argsort(_narrow(scope), kind="stable")
        else:
            by_key = np.argsort(flow_keys)
        pos = np.empty(len(flow_keys), dtype=np.int64)
        pos[by_key] = np.searchsorted(self._keys, flow_keys[by_key], side="right") - 1
        at = np.maximum(pos, 0)
        inside = (pos >= 0) & (self._scope[at] == scope) & (t < self._end[at])
        if not inside.any():
            return
        local_in = local[inside]
        # Global ids only for the batch's names in use (its dictionary may hold many more).
        gid = np.full(len(names), -1, dtype=np.int64)
        for i in np.flatnonzero(np.bincount(local_in, minlength=len(names))).tolist():
            gid[i] = self._endpoint_ids.setdefault(names[i], len(self._endpoint_ids))
        pair = self._set[at[inside]] * (1 << 32) + gid[local_in]
        # Hash-based: the pairs are few, their order does not matter (summed into a dict).
        where, unique = pd.factorize(pair)
        sums = np.bincount(where, weights=weight[inside]).astype(np.int64)
        for key, n in zip(np.asarray(unique).tolist(), sums.tolist(), strict=True):
            split = (key >> 32, key & 0xFFFFFFFF)
            self._counts[split] = self._counts.get(split, 0) + n

    def result(self) -> pd.DataFrame:
        names = list(self._endpoint_ids)
        by_set: dict[int, dict[str, int]] = {}
        for (set_id, gid), n in self._counts.items():
            by_set.setdefault(set_id, {})[names[gid]] = n
        rows: list[tuple[Any, ...]] = []
        for s, service in enumerate(self._services):
            pooled: dict[tuple[str, ...], dict[str, int]] = {}
            outside = 0
            for set_id, (owner, key) in enumerate(self._sets):
                if owner != s:
                    continue
                counts = dict.fromkeys(key, 0)
                for name, n in by_set.get(set_id, {}).items():
                    if name in counts:
                        counts[name] += n
                    else:
                        outside += n
                pooled[key] = counts
            rows.append((service, *_chisquare(pooled), outside))
        columns = ["service", "flows", "sets", "statistic", "dof", "p_value", "outside"]
        frame = pd.DataFrame(rows, columns=columns)
        return frame[["service", "flows", "outside", "sets", "statistic", "dof", "p_value"]]


def _narrow(codes: I64) -> npt.NDArray[np.signedinteger[Any]]:
    """``codes`` (non-negative) as int16 when they fit: numpy sorts those by radix."""
    if not len(codes) or int(codes.max()) < np.iinfo(np.int16).max:
        return codes.astype(np.int16)
    return codes
