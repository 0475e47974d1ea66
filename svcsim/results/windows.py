"""Failure windows: maximal runs of failed attempts of one Service as seen from one node.

A failure window is what an operator would call "the outage on node-2 for ns/web:80": the
failed attempts of one (service, src_node) pair grouped so that a pause of at least ``gap_s``
without failures separates two windows. The computation is a sort plus a few cumulative
array operations, with no Python loop over requests, so it runs on millions of rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from svcsim.results.schema import Cause, Outcome, as_categorical


@dataclass(frozen=True, slots=True)
class FailureWindow:
    """One failure window of a (service, src_node) pair.

    Attributes:
        service: the Service port, ``"namespace/name:port"``.
        node: the ``src_node`` whose attempts failed.
        start_s: ``t_s`` of the window's first failed attempt (simulated seconds).
        end_s: when the last failure's outcome was known: the largest ``end_s`` among the
            window's failed attempts (simulated seconds).
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


def failure_windows(requests: pd.DataFrame, gap_s: float = 1.0) -> list[FailureWindow]:
    """Group the failed attempts of ``requests`` into failure windows.

    A failed attempt is one whose ``outcome`` is not ``ok``. Per (``service``, ``src_node``),
    failed attempts are taken in ``t_s`` order; an attempt joins the current window when it
    starts less than ``gap_s`` after the latest ``end_s`` of the earlier failures of that pair
    (so overlapping failures, e.g. a long timeout, always share a window), and opens a new
    window otherwise. Hence windows of one pair never overlap and are at least ``gap_s`` apart.

    Uses columns t_s, end_s, service, src_node, outcome, cause. Returns the windows sorted by
    (start_s, service, node). Raises :class:`ValueError` if ``gap_s`` is not positive.
    """
    if not gap_s > 0:
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
    key = svc * max(len(nodes), 1) + node
    t = requests["t_s"].to_numpy(dtype=np.float64)
    end = requests["end_s"].to_numpy(dtype=np.float64)

    fk, ft, fe = key[failed_mask], t[failed_mask], end[failed_mask]
    order = np.lexsort((fe, ft, fk))
    fk, ft, fe = fk[order], ft[order], fe[order]
    fo, fc = outcome[failed_mask][order], cause[failed_mask][order]

    # Latest end among the earlier failures of the same pair. The running max need not reset at
    # window starts: a new window starts only after every earlier end, so it never carries over.
    running = pd.Series(fe).groupby(fk, sort=False).cummax().to_numpy()
    first_of_key = np.r_[True, fk[1:] != fk[:-1]]
    prev_end = np.r_[-np.inf, running[:-1]]
    opens = first_of_key | (ft - prev_end >= gap_s)
    window = np.cumsum(opens) - 1
    n_windows = int(window[-1]) + 1
    starts_at = np.flatnonzero(opens)

    w_key = fk[starts_at]
    w_start = ft[starts_at]
    w_end = np.maximum.reduceat(fe, starts_at)
    w_failed = np.bincount(window, minlength=n_windows)
    by_outcome = _crosstab(window, fo, n_windows, len(_OUTCOMES))
    by_cause = _crosstab(window, fc, n_windows, len(_CAUSES))
    w_total = _attempts_between(key, t, w_key, w_start, w_end)

    n_nodes = max(len(nodes), 1)
    windows = [
        FailureWindow(
            service=str(services[int(w_key[i]) // n_nodes]),
            node=str(nodes[int(w_key[i]) % n_nodes]),
            start_s=float(w_start[i]),
            end_s=float(w_end[i]),
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


def _crosstab(
    row: npt.NDArray[np.int64], col: npt.NDArray[np.int64], n_rows: int, n_cols: int
) -> npt.NDArray[np.int64]:
    """Counts of (row, col) pairs as an ``n_rows x n_cols`` matrix."""
    flat = np.bincount(row * n_cols + col, minlength=n_rows * n_cols)
    return flat.reshape(n_rows, n_cols)


def _nonzero(names: list[str], counts: npt.NDArray[np.int64]) -> dict[str, int]:
    return {name: int(n) for name, n in zip(names, counts, strict=True) if n}


def _attempts_between(
    key: npt.NDArray[np.int64],
    t: npt.NDArray[np.float64],
    w_key: npt.NDArray[np.int64],
    w_start: npt.NDArray[np.float64],
    w_end: npt.NDArray[np.float64],
) -> npt.NDArray[np.int64]:
    """Per window, attempts of its key with ``w_start <= t <= w_end``.

    (key, t) pairs are mapped to exact integers ``key * R + rank(t)`` (R distinct times), so
    one sorted array and two ``searchsorted`` calls answer every window at once.
    """
    times, rank = np.unique(t, return_inverse=True)
    n_times = len(times)
    combined = np.sort(key * n_times + rank.reshape(-1))
    low = w_key * n_times + np.searchsorted(times, w_start, side="left")
    high = w_key * n_times + np.searchsorted(times, w_end, side="right") - 1
    counts = np.searchsorted(combined, high, side="right") - np.searchsorted(
        combined, low, side="left"
    )
    return counts.astype(np.int64)
