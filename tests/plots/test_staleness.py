"""When a node's rules lagged the API: the derivation of svcsim.plots.stale_intervals."""

from __future__ import annotations

import itertools
import math

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from svcsim.plots import stale_intervals
from svcsim.plots.staleness import PROXY_DOWN, STALE, merge_intervals, union_arrays
from svcsim.results import Recorder, Run
from tests.plots.intervals import merged_by_loop
from tests.plots.synthetic import mem_run

NAN = math.nan
Sync = tuple[float, float, bool, bool, float]
"""(start_s, end_s, ok, full, programming_latency_s) on node n1."""


def _run(
    updates: list[float],
    syncs: list[Sync],
    outages: list[tuple[float, str]] = (),  # type: ignore[assignment]
    span_s: float = 20.0,
) -> Run:
    rec = Recorder()
    for u in updates:
        rec.add_event(u, "slice-updated", object="endpointslice/default/web-abcde")
    for start, end, ok, full, latency in syncs:
        rec.add_sync(
            node="n1",
            start_s=start,
            end_s=end,
            full=full,
            ok=ok,
            rules_written=10,
            programming_latency_s=latency,
        )
    for t, kind in outages:
        rec.add_event(t, kind, node="n1")
    return mem_run(rec, manifest={"duration_s": span_s})


def _stale(run: Run, reason: str = STALE) -> list[tuple[float, float]]:
    table = stale_intervals(run)
    table = table.loc[table["reason"] == reason]
    pairs = zip(table["start_s"], table["end_s"], strict=True)
    return [(round(a, 6), round(b, 6)) for a, b in pairs]


@pytest.mark.parametrize(
    ("updates", "syncs", "expected"),
    [
        pytest.param([1.0], [(1.1, 1.2, True, False, 0.2)], [(1.0, 1.2)], id="next-sync"),
        pytest.param(
            [1.0],
            [(0.9, 1.05, True, False, 0.3), (2.0, 2.1, True, False, 1.1)],
            [(1.0, 2.1)],
            id="a-sync-already-running-does-not-count",
        ),
        pytest.param(
            [1.0],
            [(1.1, 1.2, False, False, NAN), (2.0, 2.2, True, True, 1.2)],
            [(1.0, 2.2)],
            id="failed-sync-ends-nothing",
        ),
        pytest.param(
            # The first sync after 1.2 began before the change reached the node: the second
            # sync reports a change triggered at 1.2, so 1.2 was programmed only then.
            [1.0, 1.2],
            [(1.1, 1.15, True, False, 0.15), (2.15, 2.2, True, False, 1.0)],
            [(1.0, 1.15), (1.2, 2.2)],
            id="latency-tells-which-sync-carried-it",
        ),
        pytest.param(
            [1.0],
            [(1.5, 1.6, True, False, NAN), (3.0, 3.1, True, False, NAN)],
            [(1.0, 1.6)],
            id="no-latencies-at-all-first-ok-sync",
        ),
        pytest.param(
            [1.0],
            [(1.5, 1.6, True, False, NAN), (3.0, 3.1, True, False, 2.1)],
            [(1.0, 3.1)],
            id="a-sync-without-latency-did-not-apply-it",
        ),
        pytest.param(
            [1.0],
            [(1.5, 1.6, True, True, NAN), (3.0, 3.1, True, False, 0.5)],
            [(1.0, 1.6)],
            id="full-sync-applies-everything",
        ),
        pytest.param([5.0], [(1.0, 1.1, True, False, 0.1)], [(5.0, 20.0)], id="never-programmed"),
        pytest.param([], [(1.0, 1.1, True, False, 0.1)], [], id="no-updates"),
    ],
)
def test_stale_after_update(
    updates: list[float], syncs: list[Sync], expected: list[tuple[float, float]]
) -> None:
    assert _stale(_run(updates, syncs)) == expected


def test_outage_and_update_during_it() -> None:
    run = _run(
        [5.0],
        [(1.0, 1.1, True, False, 0.1), (9.0, 9.5, True, True, NAN)],
        outages=[(4.0, "proxy-crashed"), (8.0, "proxy-restarted")],
    )
    assert _stale(run, PROXY_DOWN) == [(4.0, 8.0)]
    assert _stale(run) == [(5.0, 9.5)]


def test_outage_without_restart_lasts_to_the_end() -> None:
    run = _run([], [], outages=[(4.0, "proxy-crashed")], span_s=12.0)
    assert _stale(run, PROXY_DOWN) == [(4.0, 12.0)]


def test_service_filter_only_counts_its_updates() -> None:
    rec = Recorder()
    rec.add_event(1.0, "slice-updated", object="service/default/web")
    rec.add_event(5.0, "slice-updated", object="service/default/api")
    for start in (1.5, 5.5):
        rec.add_sync(node="n1", start_s=start, end_s=start + 0.1, full=False, ok=True,
                     rules_written=1, programming_latency_s=0.6)  # fmt: skip
    run = mem_run(rec)
    web = stale_intervals(run, "default/web:80")
    assert list(zip(web["start_s"], web["end_s"], strict=True)) == [(1.0, 1.6)]
    assert len(stale_intervals(run)) == 2


@pytest.mark.parametrize(
    ("given_", "expected"),
    [
        ([], []),
        ([(3.0, 4.0), (1.0, 2.0)], [(1.0, 2.0), (3.0, 4.0)]),
        ([(1.0, 2.0), (2.0, 3.0)], [(1.0, 3.0)]),
        ([(1.0, 5.0), (2.0, 3.0)], [(1.0, 5.0)]),
    ],
)
def test_merge_intervals(
    given_: list[tuple[float, float]], expected: list[tuple[float, float]]
) -> None:
    assert merge_intervals(given_) == expected


@settings(max_examples=80, deadline=None)
@given(
    given_=st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 8)).map(
            lambda p: (p[0] * 0.5, p[0] * 0.5 + p[1] * 0.25)
        ),
        max_size=25,
    )
)
def test_merge_intervals_is_the_loop_over_them(given_: list[tuple[float, float]]) -> None:
    assert merge_intervals(given_) == merged_by_loop(given_)
    lo, hi = union_arrays(
        np.asarray([i[0] for i in given_], dtype=np.float64),
        np.asarray([i[1] for i in given_], dtype=np.float64),
    )
    assert list(zip(lo.tolist(), hi.tolist(), strict=True)) == merged_by_loop(given_)


times = st.floats(min_value=0.0, max_value=30.0, allow_nan=False).map(lambda x: round(x, 2))


@settings(max_examples=60, deadline=None)
@given(
    updates=st.lists(times, max_size=8),
    syncs=st.lists(
        st.tuples(times, times.map(lambda x: x / 15), st.booleans(), st.booleans(), st.booleans()),
        max_size=10,
    ),
)
def test_intervals_are_disjoint_sorted_and_start_at_updates(
    updates: list[float], syncs: list[tuple[float, float, bool, bool, bool]]
) -> None:
    rows: list[Sync] = []
    for start, duration, ok, full, has_latency in syncs:
        latency = duration + 0.5 if has_latency else NAN
        rows.append((start, start + duration, ok, full, latency))
    run = _run(updates, rows, span_s=40.0)
    stale = _stale(run)
    if not rows:
        assert stale == []  # no node in the run: nothing to be stale
        return
    for (_, b), (c, _) in itertools.pairwise(stale):
        assert b < c  # merged: no overlap, no touching
    for a, b in stale:
        assert a < b <= 40.0 + 2.0
        assert any(math.isclose(a, u) for u in updates)
    # Every update that no sync ever followed is stale until the end of the run.
    ok_starts = [s for s, _, ok, _, _ in rows if ok]
    for u in updates:
        if not any(s >= u for s in ok_starts):
            assert any(a <= u and math.isclose(b, 40.0) for a, b in stale)
    assert np.all(np.diff([a for a, _ in stale]) > 0)
