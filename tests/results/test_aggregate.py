"""Tests for svcsim.results.aggregate: counted attempts answer every reader as the attempts do."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcsim.results.aggregate import COUNT_KEYS, CountAggregator
from svcsim.results.bins import bin_edges, figure_bins_s
from svcsim.results.schema import conform, empty_frame
from svcsim.results.stats import (
    endpoint_set_changes,
    endpoint_shares,
    shares_over_time,
    stable_intervals,
    uniformity_tests,
)
from svcsim.results.weights import attempt_weights, traffic_table
from svcsim.results.windows import failure_windows
from tests.results.levels import recount
from tests.results.tables import SVC_A, SVC_B, requests_frame

SPAN_S = 20.0
NODES = ("node-1", "node-2")
ENDPOINTS = ("10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80")


def _codes(n: int, outcome: list[int]) -> dict[str, np.ndarray]:
    codes = {k: np.zeros(n, dtype=np.int32) for k in COUNT_KEYS}
    codes["outcome"] = np.asarray(outcome, dtype=np.int8)
    return codes


# (send times, outcomes (0 = ok), control-plane cuts, expected (span start, attempts) rows)
CASES = [
    ("one second, one row", [0.1, 0.5, 0.9], [0, 0, 0], [], [(0.0, 3)]),
    ("whole seconds cut", [0.5, 1.5, 1.7], [0, 0, 0], [], [(0.0, 1), (1.0, 2)]),
    ("a control-plane instant cuts", [0.2, 0.6], [0, 0], [0.4], [(0.0, 1), (0.4, 1)]),
    (
        "a failure gets a span of its own, shared with attempts sent at the same instant",
        [0.2, 0.5, 0.5, 0.7],
        [0, 1, 0, 0],
        [],
        [(0.0, 1), (0.5, 1), (0.5, 1), (float(np.nextafter(0.5, 1.0)), 1)],
    ),
]


@pytest.mark.parametrize(("name", "t", "outcome", "cuts", "expected"), CASES)
def test_spans_are_cut_at_seconds_control_plane_instants_and_failures(
    name: str, t: list[float], outcome: list[int], cuts: list[float], expected: list[tuple]
) -> None:
    counts = CountAggregator(np.arange(0.0, 3.0))
    counts.add_cuts(cuts)
    counts.add(np.asarray(t), _codes(len(t), outcome), np.zeros(len(t), dtype=bool))
    block = counts.finish()
    assert block is not None
    rows = sorted(zip(block.t_s.tolist(), block.requests.tolist(), strict=True))
    assert rows == sorted(expected), name


def test_finalize_hands_out_whole_spans_and_refuses_late_attempts() -> None:
    counts = CountAggregator(np.arange(0.0, 4.0))
    counts.add(np.asarray([0.5, 1.2, 2.5]), _codes(3, [0, 0, 0]), np.zeros(3, dtype=bool))
    block = counts.finalize(2.7)  # the span [2, 3) is not over: only [0, 1) and [1, 2) go
    assert block is not None
    assert block.t_s.tolist() == [0.0, 1.0]
    assert counts.done_through == 2.0
    assert counts.finalize(2.9) is None
    with pytest.raises(ValueError, match="came after the counts were final"):
        counts.add(np.asarray([1.9]), _codes(1, [0]), np.zeros(1, dtype=bool))
    rest = counts.finish()
    assert rest is not None
    assert (rest.t_s.tolist(), rest.requests.tolist()) == ([2.0], [1])


def _rows(blocks: list) -> list[tuple]:
    """Every count row of ``blocks`` as (span start, key codes, new_flow, attempts, first)."""
    out = []
    for b in blocks:
        for i in range(len(b)):
            key = tuple(int(b.codes[k][i]) for k in COUNT_KEYS)
            out.append(
                (
                    float(b.t_s[i]),
                    key,
                    bool(b.new_flow[i]),
                    int(b.requests[i]),
                    float(b.first_t_s[i]),
                )
            )
    return sorted(out)


@settings(max_examples=40, deadline=None)
@given(
    sends=st.lists(
        st.tuples(st.integers(0, 199).map(lambda k: k * 0.05), st.integers(0, 2), st.booleans()),
        min_size=1,
        max_size=60,
    ),
    cuts=st.lists(st.integers(0, 999).map(lambda k: k * 0.01), max_size=6),
    watermarks=st.lists(st.integers(0, 110).map(lambda k: k * 0.1), max_size=12),
)
def test_counts_finalised_piecemeal_are_the_counts_of_the_whole(
    sends: list[tuple[float, int, bool]], cuts: list[float], watermarks: list[float]
) -> None:
    """Finalising at any watermarks (each looks only at the cuts up to it) loses nothing."""
    t = np.asarray([s[0] for s in sends])
    outcome = [1 if s[2] and s[1] == 2 else 0 for s in sends]
    codes = _codes(len(t), outcome)
    codes["endpoint"] = np.asarray([s[1] for s in sends], dtype=np.int32)
    new_flow = np.asarray([s[2] for s in sends], dtype=bool)
    whole = CountAggregator(np.arange(0.0, 11.0))
    whole.add_cuts(cuts)
    whole.add(t, codes, new_flow)
    expected = _rows([whole.finish()])
    piecemeal = CountAggregator(np.arange(0.0, 11.0))
    piecemeal.add_cuts(cuts)
    blocks = []
    held = np.ones(len(t), dtype=bool)
    for watermark in sorted(watermarks):
        # The attempts sent before the watermark are in first (the caller's promise).
        due = held & (t < watermark)
        if due.any():
            piecemeal.add(t[due], {k: v[due] for k, v in codes.items()}, new_flow[due])
            held &= ~due
        block = piecemeal.finalize(watermark)
        if block is not None:
            blocks.append(block)
            assert block.t_s.max() < piecemeal.done_through <= watermark
    if held.any():
        piecemeal.add(t[held], {k: v[held] for k, v in codes.items()}, new_flow[held])
    last = piecemeal.finish()
    blocks += [last] if last is not None else []
    assert _rows(blocks) == expected


_ATTEMPTS = st.lists(
    st.tuples(
        st.sampled_from((SVC_A, SVC_B)),
        st.sampled_from(NODES),
        # Coarse times make ties (same instant, other attempts) common.
        st.integers(0, 399).map(lambda k: k * 0.05),
        st.sampled_from((0.001, 0.3, 2.0)),
        st.sampled_from((("ok", ""), ("ok", ""), ("refused", "no-endpoints"))),
        st.sampled_from(ENDPOINTS),
        st.booleans(),
    ),
    min_size=1,
    max_size=80,
)
_CHANGES = st.lists(
    st.tuples(
        st.floats(0.0, SPAN_S, exclude_max=True),
        st.sampled_from(NODES),
        st.sampled_from((SVC_A, SVC_B)),
        st.sets(st.sampled_from(ENDPOINTS), min_size=1),
    ),
    max_size=8,
)


@settings(max_examples=25, deadline=None)
@given(attempts=_ATTEMPTS, changes=_CHANGES, batches=st.integers(1, 6))
def test_counted_attempts_answer_every_reader_as_the_attempts_do(
    attempts: list[tuple], changes: list[tuple], batches: int
) -> None:
    rows = [(s, n, t, lat, o, c) for s, n, t, lat, (o, c), _, _ in attempts]
    requests = requests_frame(
        rows,
        endpoint=[a[5] for a in attempts],
        pod=[f"pod-{a[5][-4]}" for a in attempts],
        new_flow=np.array([a[6] for a in attempts]),
    )
    sets = conform(
        pd.DataFrame(
            {
                "t_s": [c[0] for c in changes],
                "node": [c[1] for c in changes],
                "service": [c[2] for c in changes],
                "endpoints": [",".join(sorted(c[3])) for c in changes],
            }
        ),
        "endpoint_sets",
    )
    frames = {
        "requests": requests,
        "events": empty_frame("events"),
        "syncs": empty_frame("syncs"),
        "conntrack": empty_frame("conntrack"),
        "endpoint_sets": sets,
    }
    counted = recount(frames, SPAN_S, batches)
    traffic = traffic_table(counted)
    assert int(attempt_weights(traffic).sum()) == len(requests)
    assert (counted["requests"]["outcome"] != "ok").all()
    assert failure_windows(counted["requests"], traffic=traffic) == failure_windows(requests)
    pd.testing.assert_frame_equal(endpoint_shares(traffic), endpoint_shares(requests))
    for bin_s in figure_bins_s(SPAN_S):
        pd.testing.assert_frame_equal(
            shares_over_time(traffic, bin_s), shares_over_time(requests, bin_s)
        )
        edges = bin_edges(SPAN_S, bin_s)
        by_row, _ = np.histogram(traffic["t_s"], edges, weights=attempt_weights(traffic))
        by_attempt, _ = np.histogram(requests["t_s"], edges)
        assert by_row.tolist() == by_attempt.tolist()
    intervals = stable_intervals(endpoint_set_changes(sets), end_s=SPAN_S, per_node=True)
    pd.testing.assert_frame_equal(
        uniformity_tests(traffic, intervals), uniformity_tests(requests, intervals)
    )
