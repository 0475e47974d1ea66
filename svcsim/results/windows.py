"""Failure windows: maximal runs of failed attempts of one Service as seen from one node.

A failure window is what an operator would call "the outage on node-2 for ns/web:80": requests
SENT from node-2 to ns/web:80 between ``start_s`` and ``end_s`` were failing. Windows are cut on
send times only: the failed attempts of one (service, src_node) pair, in ``t_s`` order, are split
wherever two consecutive failures were sent a gap or more apart. How long a failure took to be
known (a connect timeout, say) never joins two windows; it is kept apart as ``last_end_s``.

The gap is fixed when given, else adaptive per pair (:data:`GAP_SPACINGS` times the median
spacing between the pair's failures, within [:data:`MIN_GAP_S`, :data:`MAX_GAP_S`]): an outage in
which one request in ten fails is not cut by chance lulls, and separate outages of a busy pair,
a second apart, stay apart.
The computation is sorts, a groupby median and a few array operations, with no Python loop
over requests, so it runs on millions of rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from svcsim.results.schema import Cause, Outcome, as_categorical
from svcsim.results.weights import attempt_weights

MIN_GAP_S: Final = 0.5
"""Smallest adaptive gap (seconds): with the adaptive gap, half a second between two failures
of a pair always ends a window, however busy the pair.

Without this floor a busy pair (hundreds of requests a second) would get a gap of a few
milliseconds and one outage would be cut into many windows by chance lulls between failures.
"""

MAX_GAP_S: Final = 5.0
"""Largest adaptive gap (seconds): five seconds without a failure always end a window, so a
pair with a handful of failures minutes apart gets one window per failure, not one long one."""

GAP_SPACINGS: Final = 20
"""Adaptive gap in typical failure spacings: within an outage failures come at some typical
spacing; a pause of twenty median spacings without a failure ends the pair's window (clipped to
[:data:`MIN_GAP_S`, :data:`MAX_GAP_S`])."""


@dataclass(frozen=True, slots=True)
class FailureWindow:
    """One failure window of a (service, src_node) pair.

    Attributes:
        service: the Service port, ``"namespace/name:port"``.
        node: the ``src_node`` whose attempts failed.
        start_s: ``t_s`` (send time) of the window's first failed attempt (simulated seconds).
        end_s: ``t_s`` (send time) of the window's last failed attempt (simulated seconds);
            equal to ``start_s`` for a window of one failure.
        last_end_s: when the last failure's outcome was known: the largest ``end_s`` among
            the window's failed attempts (simulated seconds). It may pass ``end_s`` by a
            timeout, and even the next window's ``start_s``.
        failed: failed attempts in the window.
        total: attempts of the pair (any outcome, ok included) with ``start_s <= t_s <= end_s``.
        outcomes: failed attempts per outcome value (only non-zero counts).
        cause: the most frequent cause; a tie goes to the cause declared first in :class:`Cause`.
        causes: failed attempts per cause value (only non-zero counts).
    """

    service: str
    node: str
    start_s: float
    end_s: float
    last_end_s: float
    failed: int
    total: int
    outcomes: Mapping[str, int] = field(hash=False)
    cause: str
    causes: Mapping[str, int] = field(hash=False)

    @property
    def duration_s(self) -> float:
        """``end_s - start_s``."""
        return self.end_s - self.start_s

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready dict of every field."""
        return {
            "service": self.service,
            "node": self.node,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "last_end_s": self.last_end_s,
            "failed": self.failed,
            "total": self.total,
            "outcomes": dict(self.outcomes),
            "cause": self.cause,
            "causes": dict(self.causes),
        }


_OUTCOMES = [o.value for o in Outcome]
_CAUSES = [c.value for c in Cause]


def _codes(values: pd.Series, categories: list[str] | None = None) -> tuple[Any, Any]:
    cat = as_categorical(values, categories)
    return np.asarray(cat.codes, dtype=np.int64), list(cat.categories)


def failure_windows(
    requests: pd.DataFrame, gap_s: float | None = None, *, traffic: pd.DataFrame | None = None
) -> list[FailureWindow]:
    """Group the failed attempts of ``requests`` into failure windows.

    A failed attempt is one whose ``outcome`` is not ``ok``. Per (``service``, ``src_node``),
    failed attempts are taken in ``t_s`` order; one joins the current window when it was sent
    less than the gap after the previous failure of that pair, and opens a new window
    otherwise. Only send times count: a failure's ``end_s`` (e.g. after a long timeout) never
    joins two windows. Hence windows of one pair never overlap in [``start_s``, ``end_s``] and
    a window starts at least the gap after the previous window's ``end_s``.

    ``gap_s`` fixes the gap (seconds) for every pair. ``None`` (the default) picks it per pair:
    ``GAP_SPACINGS * median spacing between the pair's consecutive failures``, clipped to
    [``MIN_GAP_S``, ``MAX_GAP_S``]; :data:`MIN_GAP_S` for a pair with a single failure.

    ``traffic`` is the table the windows' ``total`` counts attempts in, when ``requests``
    holds only the failed ones (record level ``failures-and-aggregates``: the
    ``request_counts`` table, whose spans are cut at every failure); by default
    ``requests`` itself.

    Uses columns t_s, end_s, service, src_node, outcome, cause. Returns the windows sorted by
    (start_s, service, node). Raises :class:`ValueError` if ``gap_s`` is given and not
    positive (NaN included).
    """
    if gap_s is not None and not gap_s > 0:
        raise ValueError(f"gap_s must be positive, got {gap_s!r}")
    if len(requests) == 0:
        return []
    outcome, _ = _codes(requests["outcome"], _OUTCOMES)
    failed_mask = outcome != _OUTCOMES.index(Outcome.OK.value)
    if not failed_mask.any():
        return []
    cause, _ = _codes(requests["cause"], _CAUSES)
    svc, services = _codes(requests["service"])
    node, nodes = _codes(requests["src_node"])
    n_nodes = max(len(nodes), 1)
    key = svc * n_nodes + node
    t = requests["t_s"].to_numpy(dtype=np.float64)
    end = requests["end_s"].to_numpy(dtype=np.float64)

    fk, ft, fe = key[failed_mask], t[failed_mask], end[failed_mask]
    order = np.lexsort((fe, ft, fk))
    fk, ft, fe = fk[order], ft[order], fe[order]
    fo, fc = outcome[failed_mask][order], cause[failed_mask][order]

    gap = np.full(len(fk), gap_s) if gap_s is not None else _adaptive_gaps(fk, ft)[fk]
    first_of_key = np.r_[True, fk[1:] != fk[:-1]]
    # Send-time gaps only: the previous failure of the same pair, whatever its end_s.
    opens = first_of_key | (ft - np.r_[-np.inf, ft[:-1]] >= gap)
    window = np.cumsum(opens) - 1
    n_windows = int(window[-1]) + 1
    starts_at = np.flatnonzero(opens)
    ends_at = np.r_[starts_at[1:], len(ft)] - 1

    w_key = fk[starts_at]
    w_start = ft[starts_at]
    w_end = ft[ends_at]
    w_last_end = np.fmax.reduceat(fe, starts_at)
    w_failed = np.bincount(window, minlength=n_windows)
    by_outcome = _crosstab(window, fo, n_windows, len(_OUTCOMES))
    by_cause = _crosstab(window, fc, n_windows, len(_CAUSES))
    if traffic is None or traffic is requests:
        w_total = _attempts_between(key, t, np.ones(len(t), np.int64), w_key, w_start, w_end)
    else:
        t_svc = _codes_in(traffic["service"], services)
        t_node = _codes_in(traffic["src_node"], nodes)
        known = (t_svc >= 0) & (t_node >= 0)
        w_total = _attempts_between(
            (t_svc * n_nodes + t_node)[known],
            traffic["t_s"].to_numpy(dtype=np.float64)[known],
            attempt_weights(traffic)[known],
            w_key,
            w_start,
            w_end,
        )

    windows = [
        FailureWindow(
            service=str(services[int(w_key[i]) // n_nodes]),
            node=str(nodes[int(w_key[i]) % n_nodes]),
            start_s=float(w_start[i]),
            end_s=float(w_end[i]),
            last_end_s=float(w_last_end[i]),
            failed=int(w_failed[i]),
            total=int(w_total[i]),
            outcomes=_nonzero(_OUTCOMES, by_outcome[i]),
            # argmax returns the first maximum: the tie-break by declaration order.
            cause=_CAUSES[int(np.argmax(by_cause[i]))],
            causes=_nonzero(_CAUSES, by_cause[i]),
        )
        for i in range(n_windows)
    ]
    windows.sort(key=lambda w: (w.start_s, w.service, w.node))
    return windows


def _adaptive_gaps(
    key: npt.NDArray[np.int64], t: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Per key value (an index into the result), the adaptive gap in seconds.

    ``GAP_SPACINGS * median spacing`` of each key's consecutive times (its failures), clipped
    to [``MIN_GAP_S``, ``MAX_GAP_S``]; :data:`MIN_GAP_S` for a key with fewer than two.
    """
    gaps = np.full(int(key.max()) + 1, MIN_GAP_S, dtype=np.float64)
    order = np.lexsort((t, key))
    sk, sorted_t = key[order], t[order]
    same = sk[1:] == sk[:-1]
    spacing = pd.Series(np.diff(sorted_t)[same]).groupby(sk[1:][same]).median()
    typical = GAP_SPACINGS * spacing.to_numpy(dtype=np.float64)
    gaps[spacing.index.to_numpy(dtype=np.int64)] = np.clip(typical, MIN_GAP_S, MAX_GAP_S)
    return gaps


def _crosstab(
    row: npt.NDArray[np.int64], col: npt.NDArray[np.int64], n_rows: int, n_cols: int
) -> npt.NDArray[np.int64]:
    """Counts of (row, col) pairs as an ``n_rows x n_cols`` matrix."""
    flat = np.bincount(row * n_cols + col, minlength=n_rows * n_cols)
    return flat.reshape(n_rows, n_cols)


def _nonzero(names: list[str], counts: npt.NDArray[np.int64]) -> dict[str, int]:
    return {name: int(n) for name, n in zip(names, counts, strict=True) if n}


def _codes_in(values: pd.Series, names: list[str]) -> npt.NDArray[np.int64]:
    """Index of each value in ``names``; -1 for a value not among them."""
    cat = as_categorical(values)
    # Look up the few categories, not the many rows.
    index = pd.Index(names).get_indexer([str(c) for c in cat.categories])
    return np.asarray(np.asarray(index, dtype=np.int64)[np.asarray(cat.codes)], dtype=np.int64)


def _attempts_between(
    key: npt.NDArray[np.int64],
    t: npt.NDArray[np.float64],
    weight: npt.NDArray[np.int64],
    w_key: npt.NDArray[np.int64],
    w_start: npt.NDArray[np.float64],
    w_end: npt.NDArray[np.float64],
) -> npt.NDArray[np.int64]:
    """Per window, attempts (rows times ``weight``) of its key with ``w_start <= t <= w_end``.

    (key, t) pairs are mapped to exact integers ``key * R + rank(t)`` (R distinct times), so
    one sorted array, its running total and two ``searchsorted`` calls answer every window.
    """
    times, rank = np.unique(t, return_inverse=True)
    n_times = len(times)
    combined = key * n_times + rank.reshape(-1)
    order = np.argsort(combined, kind="stable")
    combined = combined[order]
    running = np.r_[0, np.cumsum(weight[order])]
    low = w_key * n_times + np.searchsorted(times, w_start, side="left")
    high = w_key * n_times + np.searchsorted(times, w_end, side="right") - 1
    counts = (
        running[np.searchsorted(combined, high, side="right")]
        - running[np.searchsorted(combined, low, side="left")]
    )
    out: npt.NDArray[np.int64] = counts.astype(np.int64)
    return out
