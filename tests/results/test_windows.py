"""Tests for svcsim.results.windows: failure windows on hand-made and generated tables."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcsim.results.windows import (
    GAP_SPACINGS,
    MAX_GAP_S,
    MIN_GAP_S,
    FailureWindow,
    failure_windows,
)
from tests.results.tables import SVC_A, SVC_B, Row, requests_frame

N1, N2 = "node-1", "node-2"


Span = tuple[str, str, float, float, float, int]
"""(service, node, start_s, end_s, last_end_s, failed), times rounded."""


def _spans(windows: list[FailureWindow]) -> list[Span]:
    spans = []
    for w in windows:
        start, end, last = (round(x, 9) for x in (w.start_s, w.end_s, w.last_end_s))
        spans.append((w.service, w.node, start, end, last, w.failed))
    return spans


REFUSED = ("refused", "no-endpoints")
TIMEOUT = ("timeout", "stale-rule")

# All with a fixed gap_s = 1.0. end_s is the last failure's SEND time; last_end_s its outcome.
CASES: list[tuple[str, list[Row], list[Span]]] = [
    (
        "two windows split by a gap",
        [
            (SVC_A, N1, 1.0, 0.1, *REFUSED),
            (SVC_A, N1, 1.5, 0.1, *REFUSED),
            (SVC_A, N1, 3.0, 0.1, "ok", ""),
            (SVC_A, N1, 5.0, 0.1, *REFUSED),
        ],
        [(SVC_A, N1, 1.0, 1.5, 1.6, 2), (SVC_A, N1, 5.0, 5.0, 5.1, 1)],
    ),
    (
        "gap measured between send times: just below gap_s joins",
        [(SVC_A, N1, 1.0, 0.5, *TIMEOUT), (SVC_A, N1, 1.99, 0.5, *TIMEOUT)],
        [(SVC_A, N1, 1.0, 1.99, 2.49, 2)],
    ),
    (
        "exactly gap_s apart opens a new window",
        [(SVC_A, N1, 1.0, 0.5, *TIMEOUT), (SVC_A, N1, 2.0, 0.5, *TIMEOUT)],
        [(SVC_A, N1, 1.0, 1.0, 1.5, 1), (SVC_A, N1, 2.0, 2.0, 2.5, 1)],
    ),
    (
        "a chain of failures each under gap_s apart is one window",
        [(SVC_A, N1, 0.9 * i, 0.1, *REFUSED) for i in range(5)],
        [(SVC_A, N1, 0.0, 3.6, 3.7, 5)],
    ),
    (
        "a long timeout no longer swallows a later failure",
        [(SVC_A, N1, 0.0, 10.0, *TIMEOUT), (SVC_A, N1, 5.0, 0.1, *REFUSED)],
        [(SVC_A, N1, 0.0, 0.0, 10.0, 1), (SVC_A, N1, 5.0, 5.0, 5.1, 1)],
    ),
    (
        "last_end_s is the largest end, not the last failure's",
        [(SVC_A, N1, 0.0, 3.0, *TIMEOUT), (SVC_A, N1, 0.5, 0.1, *REFUSED)],
        [(SVC_A, N1, 0.0, 0.5, 3.0, 2)],
    ),
    (
        "failures sent at the same time share a window",
        [(SVC_A, N1, 2.0, 1.0, *TIMEOUT), (SVC_A, N1, 2.0, 0.1, *REFUSED)],
        [(SVC_A, N1, 2.0, 2.0, 3.0, 2)],
    ),
    (
        "interleaved services and nodes are kept apart",
        [
            (SVC_A, N1, 1.0, 0.1, *REFUSED),
            (SVC_B, N1, 1.1, 0.1, *REFUSED),
            (SVC_A, N2, 1.2, 0.1, *REFUSED),
            (SVC_A, N1, 1.3, 0.1, *REFUSED),
            (SVC_B, N1, 1.4, 0.1, *REFUSED),
            (SVC_A, N2, 9.0, 0.1, *REFUSED),
        ],
        [
            (SVC_A, N1, 1.0, 1.3, 1.4, 2),
            (SVC_B, N1, 1.1, 1.4, 1.5, 2),
            (SVC_A, N2, 1.2, 1.2, 1.3, 1),
            (SVC_A, N2, 9.0, 9.0, 9.1, 1),
        ],
    ),
    (
        "a single failure is a zero-length window",
        [(SVC_A, N1, 0.0, 0.01, "ok", ""), (SVC_A, N1, 4.0, 2.5, "dropped", "conntrack-full")],
        [(SVC_A, N1, 4.0, 4.0, 6.5, 1)],
    ),
    ("no failures, no windows", [(SVC_A, N1, 0.0, 0.01, "ok", "")], []),
    ("empty table", [], []),
]


@pytest.mark.parametrize(("case", "rows", "expected"), CASES, ids=[c[0] for c in CASES])
def test_windows(case: str, rows: list[Row], expected: list[Span]) -> None:
    assert _spans(failure_windows(requests_frame(rows), gap_s=1.0)) == expected


def test_long_timeout_does_not_merge_outages_0_8_s_apart() -> None:
    # Two outages of one node 0.8 s apart; the first one's last attempt timed out after 1 s,
    # so its outcome was known after the second outage had begun.
    rows: list[Row] = [
        (SVC_A, N1, 1.0, 0.1, *REFUSED),
        (SVC_A, N1, 1.1, 0.1, *REFUSED),
        (SVC_A, N1, 1.2, 1.0, *TIMEOUT),
        (SVC_A, N1, 1.6, 0.01, "ok", ""),
        (SVC_A, N1, 2.0, 0.1, *REFUSED),
        (SVC_A, N1, 2.1, 0.1, *REFUSED),
    ]
    first, second = failure_windows(requests_frame(rows), gap_s=0.5)
    assert (first.start_s, first.end_s, first.failed, first.total) == (1.0, 1.2, 3, 3)
    assert (second.start_s, second.end_s, second.failed, second.total) == (2.0, 2.1, 2, 2)
    assert first.last_end_s == pytest.approx(2.2) and first.last_end_s > second.start_s
    assert first.outcomes == {"refused": 2, "timeout": 1}


def test_window_fields_count_outcomes_causes_and_all_attempts() -> None:
    rows: list[Row] = [
        (SVC_A, N1, 0.5, 0.01, "ok", ""),  # before the window
        (SVC_A, N1, 1.0, 0.1, *REFUSED),
        (SVC_A, N1, 1.2, 0.01, "ok", ""),
        (SVC_A, N1, 1.3, 1.0, *TIMEOUT),  # known last: last_end_s = 2.3
        (SVC_B, N1, 1.4, 0.01, "ok", ""),  # other service: not in the total
        (SVC_A, N1, 1.5, 0.1, *TIMEOUT),  # sent last: end_s = 1.5
        (SVC_A, N1, 2.2, 0.01, "ok", ""),  # sent after end_s (before last_end_s): not counted
    ]
    (window,) = failure_windows(requests_frame(rows), gap_s=1.0)
    assert window == FailureWindow(
        service=SVC_A,
        node=N1,
        start_s=1.0,
        end_s=1.5,
        last_end_s=2.3,
        failed=3,
        total=4,
        outcomes={"refused": 1, "timeout": 2},
        cause="stale-rule",
        causes={"no-endpoints": 1, "stale-rule": 2},
    )
    assert window.duration_s == pytest.approx(0.5)
    as_dict = window.to_dict()
    assert as_dict["outcomes"] == {"refused": 1, "timeout": 2}
    assert list(as_dict)[:5] == ["service", "node", "start_s", "end_s", "last_end_s"]
    assert as_dict["last_end_s"] == 2.3


# --- adaptive gap -----------------------------------------------------------------------------


def _traffic(node: str, t: np.ndarray, failing: np.ndarray) -> list[Row]:
    return [
        (SVC_A, node, float(x), 0.01, *(REFUSED if f else ("ok", "")))
        for x, f in zip(t, failing, strict=True)
    ]


@pytest.mark.parametrize(("pause_s", "n_windows"), [(0.4, 1), (0.6, 2)])
def test_adaptive_gap_is_half_a_second_under_dense_traffic(pause_s: float, n_windows: int) -> None:
    # 100 requests a second: twenty spacings are 0.2 s, so the 0.5 s floor decides.
    t = np.arange(0, 1000) / 100
    failing = ((t >= 2.0) & (t < 3.0)) | ((t >= 3.0 + pause_s) & (t < 4.0 + pause_s))
    rows = _traffic(N1, t, failing)
    windows = failure_windows(requests_frame(rows))
    assert len(windows) == n_windows
    assert sum(w.failed for w in windows) == int(failing.sum())
    assert _spans(windows) == _spans(failure_windows(requests_frame(rows), gap_s=MIN_GAP_S))


@pytest.mark.parametrize(("second_at", "n_windows"), [(16.0, 1), (16.9, 1), (17.0, 2), (30.0, 2)])
def test_adaptive_gap_follows_failure_spacing_capped_at_five_seconds(
    second_at: float, n_windows: int
) -> None:
    # Failures one second apart: twenty spacings are 20 s, capped at MAX_GAP_S = 5 s.
    t = np.sort(np.r_[np.arange(0.0, 60.0), second_at])
    failing = ((t >= 10.0) & (t <= 12.0)) | (t == second_at)
    windows = failure_windows(requests_frame(_traffic(N1, t, failing)))
    assert len(windows) == n_windows
    assert windows[0].start_s == 10.0
    assert windows[-1].end_s == second_at
    assert min(GAP_SPACINGS * 1.0, MAX_GAP_S) == 5.0


def test_adaptive_gap_is_chosen_per_service_and_node() -> None:
    # N1 fails in a quick burst then once more: spacing 0.1 s, gap 2 s, so the late failure
    # is a window of its own. N2 fails once a second: gap 5 s, one window.
    busy = np.arange(0, 2000) / 100
    quiet = np.arange(0.0, 20.0)
    rows = _traffic(N1, busy, np.isin(busy, [5.0, 5.1, 5.2, 8.0]))
    rows += _traffic(N2, quiet, np.isin(quiet, [5.0, 6.0, 7.0, 8.0]))
    rows += [(SVC_B, N2, 4.0, 0.01, *REFUSED)]  # a pair with a single attempt: gap 0.5 s
    windows = failure_windows(requests_frame(rows))
    assert _spans(windows) == [
        (SVC_B, N2, 4.0, 4.0, 4.01, 1),
        (SVC_A, N1, 5.0, 5.2, 5.21, 3),
        (SVC_A, N2, 5.0, 8.0, 8.01, 4),
        (SVC_A, N1, 8.0, 8.0, 8.01, 1),
    ]


def test_adaptive_gap_with_simultaneous_attempts_falls_back_to_the_floor() -> None:
    # A median spacing of 0 (bursts sent together) must not make the gap 0.
    rows: list[Row] = [(SVC_A, N1, t, 0.01, *REFUSED) for t in (1.0, 1.0, 1.0, 1.4, 2.0, 2.0)]
    spans = _spans(failure_windows(requests_frame(rows)))
    assert spans == [(SVC_A, N1, 1.0, 1.4, 1.41, 4), (SVC_A, N1, 2.0, 2.0, 2.01, 2)]


@pytest.mark.parametrize(
    ("causes", "expected"),
    [
        (["stale-rule", "no-endpoints"], "no-endpoints"),  # tie: declared first wins
        (["pod-crashed", "proxy-down", "pod-crashed", "proxy-down"], "proxy-down"),
        (["ip-reused", "pod-terminating", "ip-reused"], "ip-reused"),  # plain majority
    ],
)
def test_cause_ties_break_by_declaration_order(causes: list[str], expected: str) -> None:
    rows: list[Row] = [(SVC_A, N1, 0.1 * i, 0.05, "reset", c) for i, c in enumerate(causes)]
    for ordering in (rows, rows[::-1]):
        (window,) = failure_windows(requests_frame(ordering), gap_s=1.0)
        assert window.cause == expected


def test_row_order_does_not_matter() -> None:
    rows: list[Row] = [(SVC_A, N1, float(t), 0.2, "refused", "no-endpoints") for t in (0, 3, 0.5)]
    rows += [(SVC_B, N2, 0.25, 0.1, "timeout", "proxy-down")]
    assert failure_windows(requests_frame(rows)) == failure_windows(requests_frame(rows[::-1]))


def test_window_is_frozen_and_hashable() -> None:
    (window,) = failure_windows(requests_frame([(SVC_A, N1, 0.0, 1.0, "dropped", "proxy-down")]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        window.failed = 2  # type: ignore[misc]
    assert hash(window) == hash(dataclasses.replace(window))


@pytest.mark.parametrize("gap_s", [0.0, -1.0, float("nan")])
def test_gap_must_be_positive(gap_s: float) -> None:
    with pytest.raises(ValueError, match="gap_s"):
        failure_windows(requests_frame([]), gap_s=gap_s)


_rows = st.lists(
    st.tuples(
        st.sampled_from([SVC_A, SVC_B]),
        st.sampled_from([N1, N2]),
        st.integers(0, 400).map(lambda k: k / 8),  # coarse grid: many ties
        st.sampled_from([0.0, 0.01, 0.5, 1.0, 3.0]),
        st.sampled_from(["ok", "ok", "refused", "timeout", "reset"]),
    ),
    max_size=60,
)


def _reference_gap(failed_at: np.ndarray, gap_s: float | None) -> float:
    """The gap of a pair whose failures were sent at ``failed_at`` (sorted), the obvious way."""
    if gap_s is not None:
        return gap_s
    spacing = np.diff(failed_at)
    if not spacing.size:
        return MIN_GAP_S
    return min(MAX_GAP_S, max(MIN_GAP_S, GAP_SPACINGS * float(np.median(spacing))))


@settings(max_examples=150, deadline=None)
@given(raw=_rows, gap_s=st.sampled_from([None, 0.25, 1.0, 2.0]))
def test_windows_partition_failures_by_send_time_gaps(
    raw: list[tuple[str, str, float, float, str]], gap_s: float | None
) -> None:
    rows: list[Row] = [
        (s, n, t, lat, o, "" if o == "ok" else "stale-rule") for s, n, t, lat, o in raw
    ]
    frame = requests_frame(rows)
    windows = failure_windows(frame, gap_s=gap_s)
    failed = frame[frame["outcome"] != "ok"]
    assert sum(w.failed for w in windows) == len(failed)
    members: dict[FailureWindow, list[tuple[float, float]]] = {w: [] for w in windows}
    for row in failed.itertuples():
        holders = [
            w
            for w in windows
            if (w.service, w.node) == (row.service, row.src_node)
            and w.start_s <= row.t_s <= w.end_s
        ]
        assert len(holders) == 1  # in exactly one window of its key
        members[holders[0]].append((row.t_s, row.end_s))
    sent_at = {
        key: np.sort(g["t_s"].to_numpy())
        for key, g in frame.groupby(["service", "src_node"], observed=True)
    }
    gaps = {
        key: _reference_gap(np.sort(g["t_s"].to_numpy()), gap_s)
        for key, g in failed.groupby(["service", "src_node"], observed=True)
    }
    by_key: dict[tuple[str, str], list[FailureWindow]] = {}
    for w in windows:
        key = (w.service, w.node)
        by_key.setdefault(key, []).append(w)
        sent = sorted(t for t, _ in members[w])
        assert (sent[0], sent[-1], len(sent)) == (w.start_s, w.end_s, w.failed)
        assert w.last_end_s == max(end for _, end in members[w]) >= w.end_s
        in_window = (sent_at[key] >= w.start_s) & (sent_at[key] <= w.end_s)
        assert w.total == int(in_window.sum()) >= w.failed
        assert sum(w.outcomes.values()) == sum(w.causes.values()) == w.failed
        # maximal: inside a window, consecutive failures are less than the gap apart
        assert all(b - a < gaps[key] for a, b in itertools.pairwise(sent))
    for key, key_windows in by_key.items():
        key_windows.sort(key=lambda w: w.start_s)
        gap = gaps[key]
        for before, after in itertools.pairwise(key_windows):
            assert after.start_s > before.end_s  # no overlap in [start_s, end_s]
            assert after.start_s - before.end_s >= gap


def test_many_rows_run_vectorised() -> None:
    rng = np.random.default_rng(11)
    n = 200_000
    t = np.sort(rng.uniform(0, 1000, n))
    failed = rng.random(n) < 0.02
    frame = requests_frame(
        [(SVC_A, N1, 0.0, 0.0, "ok", "")] * n,
        t_s=t,
        end_s=t + 0.05,
        latency_s=np.full(n, 0.05),
        outcome=np.where(failed, "timeout", "ok"),
        cause=np.where(failed, "stale-rule", ""),
        src_node=rng.choice([N1, N2], n),
    )
    for gap_s in (0.5, None):
        windows = failure_windows(frame, gap_s=gap_s)
        assert sum(w.failed for w in windows) == int(failed.sum())
        assert sum(w.total for w in windows) <= n
    assert isinstance(frame["outcome"].dtype, pd.CategoricalDtype)
