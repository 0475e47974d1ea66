"""Tests for svcsim.results.stats: shares, stable intervals, uniformity, programming latency."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcsim.results.schema import conform
from svcsim.results.stats import (
    EndpointSetChange,
    endpoint_shares,
    node_intervals,
    programming_latency,
    shares_over_time,
    stable_intervals,
    uniformity_tests,
)
from tests.results.tables import SVC_A, SVC_B, requests_frame

EP1, EP2, EP3, EP4 = "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"


def _flows(
    rng: np.random.Generator,
    n: int,
    endpoints: list[str],
    p: list[float] | None = None,
    *,
    service: str = SVC_A,
    t: tuple[float, float] = (0.0, 100.0),
    nodes: tuple[str, ...] = ("node-1", "node-2"),
) -> pd.DataFrame:
    """n new flows of ``service`` drawn over ``endpoints`` (probabilities ``p``)."""
    times = np.sort(rng.uniform(*t, n))
    return requests_frame(
        [(service, nodes[0], 0.0, 0.0, "ok", "")] * n,
        t_s=times,
        end_s=times + 0.01,
        latency_s=np.full(n, 0.01),
        endpoint=rng.choice(endpoints, n, p=p),
        src_node=rng.choice(list(nodes), n),
    )


def test_endpoint_shares_counts_routed_attempts_per_service() -> None:
    frame = requests_frame(
        [
            (SVC_A, "n1", 0.0, 0.1, "ok", ""),
            (SVC_A, "n1", 1.0, 0.1, "ok", ""),
            (SVC_A, "n1", 2.0, 0.1, "timeout", "stale-rule"),  # failed but routed: counts
            (SVC_A, "n1", 3.0, 0.1, "refused", "no-endpoints"),  # no endpoint: excluded
            (SVC_B, "n1", 4.0, 0.1, "ok", ""),
        ],
        endpoint=[EP2, EP1, EP2, "", EP3],
        new_flow=[True, False, True, False, True],
    )
    shares = endpoint_shares(frame)
    assert shares.to_dict("records") == [
        {"service": SVC_A, "endpoint": EP1, "requests": 1, "share": pytest.approx(1 / 3)},
        {"service": SVC_A, "endpoint": EP2, "requests": 2, "share": pytest.approx(2 / 3)},
        {"service": SVC_B, "endpoint": EP3, "requests": 1, "share": 1.0},
    ]
    new_only = endpoint_shares(frame, new_flow_only=True)
    assert list(new_only["requests"]) == [2, 1]
    assert list(new_only["share"]) == [1.0, 1.0]


def test_endpoint_shares_of_empty_table() -> None:
    shares = endpoint_shares(requests_frame([]))
    assert list(shares.columns) == ["service", "endpoint", "requests", "share"]
    assert len(shares) == 0


def test_shares_over_time_bins() -> None:
    frame = requests_frame(
        [(SVC_A, "n1", t, 0.01, "ok", "") for t in (0.0, 0.5, 0.9, 1.0, 2.5)],
        endpoint=[EP1, EP1, EP2, EP2, EP1],
    )
    table = shares_over_time(frame, bin_s=1.0)
    assert [tuple(r) for r in table.itertuples(index=False)] == [
        (SVC_A, 0.0, EP1, 2, pytest.approx(2 / 3)),
        (SVC_A, 0.0, EP2, 1, pytest.approx(1 / 3)),
        (SVC_A, 1.0, EP2, 1, 1.0),
        (SVC_A, 2.0, EP1, 1, 1.0),
    ]
    with pytest.raises(ValueError, match="bin_s"):
        shares_over_time(frame, bin_s=0)


S12 = frozenset({EP1, EP2})
S123 = frozenset({EP1, EP2, EP3})

INTERVAL_CASES: list[tuple[str, list[Any], dict[str, Any], list[tuple[Any, ...]]]] = [
    (
        "one node, two sets",
        [(0.0, "n1", SVC_A, S12), (10.0, "n1", SVC_A, S123)],
        {"end_s": 30.0},
        [(SVC_A, 0.0, 10.0, (EP1, EP2)), (SVC_A, 10.0, 30.0, (EP1, EP2, EP3))],
    ),
    (
        "nodes disagree until the second node syncs",
        [
            (0.0, "n1", SVC_A, S12),
            (0.0, "n2", SVC_A, S12),
            (5.0, "n1", SVC_A, S123),
            (7.0, "n2", SVC_A, S123),
        ],
        {"end_s": 20.0},
        [(SVC_A, 0.0, 5.0, (EP1, EP2)), (SVC_A, 7.0, 20.0, (EP1, EP2, EP3))],
    ),
    (
        "a resync with the same set does not break the interval",
        [(0.0, "n1", SVC_A, S12), (4.0, "n1", SVC_A, S12)],
        {"end_s": 9.0},
        [(SVC_A, 0.0, 9.0, (EP1, EP2))],
    ),
    (
        "an empty set is no interval; input order does not matter",
        [(6.0, "n1", SVC_A, S12), (3.0, "n1", SVC_A, frozenset()), (0.0, "n1", SVC_A, S12)],
        {"end_s": 8.0},
        [(SVC_A, 0.0, 3.0, (EP1, EP2)), (SVC_A, 6.0, 8.0, (EP1, EP2))],
    ),
    (
        "clipped to start_s (warm-up) and end_s",
        [(0.0, "n1", SVC_A, S12), (10.0, "n1", SVC_B, S123)],
        {"start_s": 2.0, "end_s": 12.0},
        [(SVC_A, 2.0, 12.0, (EP1, EP2)), (SVC_B, 10.0, 12.0, (EP1, EP2, EP3))],
    ),
    (
        "simultaneous changes apply together",
        [(0.0, "n1", SVC_A, S12), (0.0, "n2", SVC_A, S123), (0.0, "n1", SVC_A, S123)],
        {"end_s": 1.0},
        [(SVC_A, 0.0, 1.0, (EP1, EP2, EP3))],
    ),
    (
        "three-tuples: one cluster-wide view",
        [(0.0, SVC_A, [EP2, EP1]), (2.0, SVC_A, [EP1])],
        {"end_s": 3.0},
        [(SVC_A, 0.0, 2.0, (EP1, EP2)), (SVC_A, 2.0, 3.0, (EP1,))],
    ),
    (
        "dataclass input; open end",
        [EndpointSetChange(1.0, "n1", SVC_A, S12)],
        {},
        [(SVC_A, 1.0, math.inf, (EP1, EP2))],
    ),
]


@pytest.mark.parametrize(
    ("case", "changes", "kwargs", "expected"), INTERVAL_CASES, ids=[c[0] for c in INTERVAL_CASES]
)
def test_stable_intervals(
    case: str, changes: list[Any], kwargs: dict[str, Any], expected: list[tuple[Any, ...]]
) -> None:
    table = stable_intervals(changes, **kwargs)
    assert list(table.columns) == ["service", "start_s", "end_s", "endpoints"]
    assert [tuple(r) for r in table.itertuples(index=False)] == expected


def test_stable_intervals_per_node() -> None:
    changes = [(0.0, "n1", SVC_A, S12), (0.0, "n2", SVC_A, S123), (5.0, "n1", SVC_A, S123)]
    table = stable_intervals(changes, end_s=10.0, per_node=True)
    assert [tuple(r) for r in table.itertuples(index=False)] == [
        (SVC_A, "n1", 0.0, 5.0, (EP1, EP2)),
        (SVC_A, "n1", 5.0, 10.0, (EP1, EP2, EP3)),
        (SVC_A, "n2", 0.0, 10.0, (EP1, EP2, EP3)),
    ]


def test_uniform_flows_pass_and_skewed_flows_fail() -> None:
    rng = np.random.default_rng(20240601)
    uniform = _flows(rng, 20_000, [EP1, EP2, EP3, EP4])
    skewed = _flows(rng, 20_000, [EP1, EP2, EP3, EP4], [0.28, 0.24, 0.24, 0.24], service=SVC_B)
    intervals = stable_intervals(
        [(0.0, "node-1", s, {EP1, EP2, EP3, EP4}) for s in (SVC_A, SVC_B)], end_s=100.0
    )
    result = uniformity_tests(pd.concat([uniform, skewed], ignore_index=True), intervals)
    by_service = result.set_index("service")
    assert by_service.loc[SVC_A, "p_value"] > 0.001
    assert by_service.loc[SVC_B, "p_value"] < 1e-6
    assert list(by_service["dof"]) == [3, 3]
    assert list(by_service["flows"]) == [20_000, 20_000]


def test_uniformity_pools_sets_and_counts_only_new_flows_inside_intervals() -> None:
    rng = np.random.default_rng(5)
    first = _flows(rng, 3000, [EP1, EP2], t=(0.0, 10.0))
    second = _flows(rng, 3000, [EP1, EP2, EP3], t=(10.0, 20.0))
    late = _flows(rng, 500, [EP4], t=(25.0, 30.0))  # outside every interval: ignored
    old = _flows(rng, 500, [EP1], t=(0.0, 20.0))
    old["new_flow"] = False  # reused connections: the rules were not consulted
    frame = conform(pd.concat([first, second, late, old], ignore_index=True), "requests")
    intervals = stable_intervals(
        [(0.0, "node-1", SVC_A, S12), (10.0, "node-1", SVC_A, S123), (20.0, "node-1", SVC_A, [])],
        end_s=30.0,
    )
    (row,) = uniformity_tests(frame, intervals).itertuples(index=False)
    assert (row.flows, row.sets, row.dof, row.outside) == (6000, 2, 1 + 2, 0)
    assert row.p_value > 0.001


def test_uniformity_reports_flows_outside_the_set_and_per_node_scopes() -> None:
    rng = np.random.default_rng(6)
    frame = _flows(rng, 1000, [EP1, EP2, EP3], nodes=("node-1",))
    intervals = pd.DataFrame(
        {
            "service": [SVC_A, SVC_A],
            "node": ["node-1", "node-2"],
            "start_s": [0.0, 0.0],
            "end_s": [100.0, 100.0],
            "endpoints": [(EP1, EP2), (EP1, EP2, EP3)],
        }
    )
    (row,) = uniformity_tests(frame, intervals).itertuples(index=False)
    outside = int((frame["endpoint"] == EP3).sum())
    assert row.outside == outside
    assert row.flows == 1000 - outside
    assert row.dof == 1


def test_uniformity_without_testable_flows_is_nan() -> None:
    intervals = stable_intervals([(0.0, "n1", SVC_A, {EP1})], end_s=1.0)
    (row,) = uniformity_tests(requests_frame([]), intervals).itertuples(index=False)
    assert row.dof == 0
    assert math.isnan(row.p_value)


def test_overlapping_intervals_are_rejected() -> None:
    intervals = pd.DataFrame(
        {
            "service": [SVC_A] * 2,
            "start_s": [0.0, 1.0],
            "end_s": [2.0, 3.0],
            "endpoints": [(EP1,)] * 2,
        }
    )
    with pytest.raises(ValueError, match="overlap"):
        uniformity_tests(requests_frame([(SVC_A, "n", 0.5, 0.1, "ok", "")]), intervals)


def test_programming_latency_per_node() -> None:
    syncs = conform(
        pd.DataFrame(
            {
                "node": ["n2", "n1", "n1", "n1", "n2"],
                "start_s": [0.0, 0.0, 1.0, 2.0, 3.0],
                "end_s": [0.1, 0.1, 1.1, 2.1, 3.1],
                "duration_s": [0.1] * 5,
                "full": [True] * 5,
                "ok": [True, True, True, True, False],
                "rules_written": [1] * 5,
                "programming_latency_s": [np.nan, 1.0, 2.0, 4.0, np.nan],
                "applied_through_s": [0.0, 1.0, 2.0, 3.0, 4.0],
            }
        ),
        "syncs",
    )
    table = programming_latency(syncs)
    assert list(table["node"]) == ["n1", "n2"]
    n1 = table.iloc[0]
    assert (n1["syncs_with_trigger"], n1["p50_s"], n1["p90_s"], n1["max_s"]) == (3, 2.0, 3.6, 4.0)
    assert table.iloc[1]["syncs_with_trigger"] == 0
    assert math.isnan(table.iloc[1]["p50_s"])


_NODES = ("node-a", "node-b")
_SETS = ((), ("10.0.0.1:80",), ("10.0.0.1:80", "10.0.0.2:80"), ("10.0.0.2:80",))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 12).map(float),
            st.sampled_from(_NODES),
            st.sampled_from((SVC_A, SVC_B)),
            st.sampled_from(_SETS),
        ),
        max_size=30,
    ),
    st.sampled_from((0.0, 3.0)),
    st.sampled_from((8.0, 11.5, math.inf)),
)
def test_per_node_intervals_are_the_one_node_intervals(
    changes: list[tuple[float, str, str, tuple[str, ...]]], start_s: float, end_s: float
) -> None:
    # The per-node path (array operations) against the general loop fed one node at a time.
    per_node = stable_intervals(changes, start_s=start_s, end_s=end_s, per_node=True)
    for node in _NODES:
        mine = [(t, svc, eps) for t, n, svc, eps in changes if n == node]
        alone = stable_intervals(mine, start_s=start_s, end_s=end_s)
        got = per_node.loc[per_node["node"] == node].drop(columns="node")
        pd.testing.assert_frame_equal(got.reset_index(drop=True), alone, check_dtype=False)
    table = pd.DataFrame(
        {
            "t_s": [c[0] for c in changes],
            "node": [c[1] for c in changes],
            "service": [c[2] for c in changes],
            "endpoints": [",".join(sorted(c[3])) for c in changes],
        }
    )
    from_table = node_intervals(table, start_s=start_s, end_s=end_s)
    pd.testing.assert_frame_equal(from_table, per_node, check_dtype=False)
