"""Tests for svcsim.results.windows: failure windows on hand-made and generated tables."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcsim.results.windows import FailureWindow, failure_windows
from tests.results.tables import SVC_A, SVC_B, Row, requests_frame

N1, N2 = "node-1", "node-2"


def _spans(windows: list[FailureWindow]) -> list[tuple[str, str, float, float, int]]:
    return [(w.service, w.node, round(w.start_s, 9), round(w.end_s, 9), w.failed) for w in windows]


CASES: list[tuple[str, list[Row], list[tuple[str, str, float, float, int]]]] = [
    (
        "two windows split by a gap",
        [
            (SVC_A, N1, 1.0, 0.1, "refused", "no-endpoints"),
            (SVC_A, N1, 1.5, 0.1, "refused", "no-endpoints"),
            (SVC_A, N1, 3.0, 0.1, "ok", ""),
            (SVC_A, N1, 5.0, 0.1, "refused", "no-endpoints"),
        ],
        [(SVC_A, N1, 1.0, 1.6, 2), (SVC_A, N1, 5.0, 5.1, 1)],
    ),
    (
        "gap measured from the previous end: just below gap_s joins",
        [
            (SVC_A, N1, 1.0, 0.5, "timeout", "stale-rule"),
            (SVC_A, N1, 2.25, 0.5, "timeout", "stale-rule"),
        ],
        [(SVC_A, N1, 1.0, 2.75, 2)],
    ),
    (
        "exactly gap_s apart opens a new window",
        [
            (SVC_A, N1, 1.0, 0.5, "timeout", "stale-rule"),
            (SVC_A, N1, 2.5, 0.5, "timeout", "stale-rule"),
        ],
        [(SVC_A, N1, 1.0, 1.5, 1), (SVC_A, N1, 2.5, 3.0, 1)],
    ),
    (
        "a long timeout swallows a later short failure",
        [
            (SVC_A, N1, 0.0, 10.0, "timeout", "stale-rule"),
            (SVC_A, N1, 5.0, 0.1, "refused", "no-endpoints"),
        ],
        [(SVC_A, N1, 0.0, 10.0, 2)],
    ),
    (
        "interleaved services and nodes are kept apart",
        [
            (SVC_A, N1, 1.0, 0.1, "refused", "no-endpoints"),
            (SVC_B, N1, 1.1, 0.1, "refused", "no-endpoints"),
            (SVC_A, N2, 1.2, 0.1, "refused", "no-endpoints"),
            (SVC_A, N1, 1.3, 0.1, "refused", "no-endpoints"),
            (SVC_B, N1, 1.4, 0.1, "refused", "no-endpoints"),
            (SVC_A, N2, 9.0, 0.1, "refused", "no-endpoints"),
        ],
        [
            (SVC_A, N1, 1.0, 1.4, 2),
            (SVC_B, N1, 1.1, 1.5, 2),
            (SVC_A, N2, 1.2, 1.3, 1),
            (SVC_A, N2, 9.0, 9.1, 1),
        ],
    ),
    (
        "a single failure is a window from t_s to end_s",
        [
            (SVC_A, N1, 0.0, 0.01, "ok", ""),
            (SVC_A, N1, 4.0, 2.5, "dropped", "conntrack-full"),
        ],
        [(SVC_A, N1, 4.0, 6.5, 1)],
    ),
    ("no failures, no windows", [(SVC_A, N1, 0.0, 0.01, "ok", "")], []),
    ("empty table", [], []),
]


@pytest.mark.parametrize(("case", "rows", "expected"), CASES, ids=[c[0] for c in CASES])
def test_windows(
    case: str, rows: list[Row], expected: list[tuple[str, str, float, float, int]]
) -> None:
    assert _spans(failure_windows(requests_frame(rows), gap_s=1.0)) == expected


def test_window_fields_count_outcomes_causes_and_all_attempts() -> None:
    rows: list[Row] = [
        (SVC_A, N1, 0.5, 0.01, "ok", ""),  # before the window
        (SVC_A, N1, 1.0, 0.1, "refused", "no-endpoints"),
        (SVC_A, N1, 1.2, 0.01, "ok", ""),
        (SVC_A, N1, 1.3, 1.0, "timeout", "stale-rule"),
        (SVC_B, N1, 1.4, 0.01, "ok", ""),  # other service: not in the total
        (SVC_A, N1, 1.5, 0.1, "timeout", "stale-rule"),
        (SVC_A, N1, 2.2, 0.01, "ok", ""),  # after the last start, before end_s = 2.3
        (SVC_A, N1, 2.4, 0.01, "ok", ""),  # after end_s
    ]
    (window,) = failure_windows(requests_frame(rows))
    assert window == FailureWindow(
        service=SVC_A,
        node=N1,
        start_s=1.0,
        end_s=2.3,
        failed=3,
        total=5,
        outcomes={"refused": 1, "timeout": 2},
        cause="stale-rule",
        causes={"no-endpoints": 1, "stale-rule": 2},
    )
    assert window.duration_s == pytest.approx(1.3)
    assert window.to_dict()["outcomes"] == {"refused": 1, "timeout": 2}


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
        (window,) = failure_windows(requests_frame(ordering))
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


@settings(max_examples=150, deadline=None)
@given(raw=_rows, gap_s=st.sampled_from([0.25, 1.0, 2.0]))
def test_every_failure_in_exactly_one_window_and_windows_never_overlap(
    raw: list[tuple[str, str, float, float, str]], gap_s: float
) -> None:
    rows: list[Row] = [
        (s, n, t, lat, o, "" if o == "ok" else "stale-rule") for s, n, t, lat, o in raw
    ]
    frame = requests_frame(rows)
    windows = failure_windows(frame, gap_s=gap_s)
    failed = frame[frame["outcome"] != "ok"]
    assert sum(w.failed for w in windows) == len(failed)
    for row in failed.itertuples():
        holders = [
            w
            for w in windows
            if (w.service, w.node) == (row.service, row.src_node)
            and w.start_s <= row.t_s
            and row.end_s <= w.end_s
        ]
        assert len(holders) == 1
    by_key: dict[tuple[str, str], list[FailureWindow]] = {}
    for w in windows:
        by_key.setdefault((w.service, w.node), []).append(w)
        assert w.total >= w.failed >= 1
        assert sum(w.outcomes.values()) == sum(w.causes.values()) == w.failed
    for key_windows in by_key.values():
        key_windows.sort(key=lambda w: w.start_s)
        for before, after in itertools.pairwise(key_windows):
            assert after.start_s - before.end_s >= gap_s


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
    windows = failure_windows(frame, gap_s=0.5)
    assert sum(w.failed for w in windows) == int(failed.sum())
    assert sum(w.total for w in windows) <= n
    assert isinstance(frame["outcome"].dtype, pd.CategoricalDtype)
