"""Figures of long runs: sync ticks thinned per node row, endpoint legends capped, both noticed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcsim.plots.events import node_rows
from svcsim.plots.select import (
    MAX_LEGEND_ENDPOINTS,
    MAX_TICKS_PER_ROW,
    figure_notices,
    thin_ticks,
)
from svcsim.results import Recorder
from tests.plots.synthetic import mem_run


@pytest.mark.parametrize(
    ("t", "rows", "span_s", "bins", "kept"),
    [
        # At most `bins` ticks in a row: all kept, whatever their spacing.
        ([0.0, 0.1, 0.2], [0, 0, 0], 10.0, 3, [True, True, True]),
        # Row 0 crowded (bins of 2.5 s): the earliest tick of each bin, in any table order.
        ([1.0, 0.5, 3.0, 2.6, 9.0], [0, 0, 0, 0, 0], 10.0, 4, [False, True, False, True, True]),
        # Only the crowded row is thinned (one bin of 5 s holds its three ticks); row 1 keeps
        # its two ticks in one bin.
        ([0.0, 1.0, 2.0, 0.0, 0.1], [0, 0, 0, 1, 1], 10.0, 2, [True, False, False, True, True]),
        # Rows below 0 are not drawn: never counted, always kept (the caller drops them).
        ([0.0, 0.1, 0.2], [-1, -1, -1], 10.0, 1, [True, True, True]),
        # A tick past the span widens the bins to reach it (last bin, not one past it).
        ([0.0, 5.0, 20.0], [0, 0, 0], 10.0, 2, [True, False, True]),
    ],
)
def test_thin_ticks(
    t: list[float], rows: list[int], span_s: float, bins: int, kept: list[bool]
) -> None:
    got = thin_ticks(np.array(t), np.array(rows, dtype=np.float64), span_s, bins)
    assert got.tolist() == kept


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.0, 100.0), st.integers(-1, 3)), max_size=200),
    st.integers(1, 20),
)
def test_thinned_rows_keep_one_tick_per_occupied_bin(
    ticks: list[tuple[float, int]], bins: int
) -> None:
    """A crowded row keeps exactly its occupied bins' earliest ticks; others keep all."""
    t = np.array([x for x, _ in ticks], dtype=np.float64)
    rows = np.array([r for _, r in ticks], dtype=np.float64)
    keep = thin_ticks(t, rows, 100.0, bins)
    width = 100.0 / bins
    for row in set(rows.tolist()):
        mine = rows == row
        if row < 0 or mine.sum() <= bins:
            assert keep[mine].all()
            continue
        occupied = np.minimum((t[mine] // width).astype(int), bins - 1)
        assert keep[mine].sum() == len(set(occupied.tolist()))
        for b in set(occupied.tolist()):
            in_bin = mine.copy()
            in_bin[mine] = occupied == b
            assert t[in_bin & keep].tolist() == [t[in_bin].min()]


def test_node_rows_look_up_each_node() -> None:
    values = pd.Series(pd.Categorical(["b", "a", "c", "b", None]))
    assert node_rows(values, {"a": 0, "b": 3}).tolist() == [3.0, 0.0, -1.0, 3.0, -1.0]
    plain = pd.Series(["x", "y", "x"])
    assert node_rows(plain, {"y": 1}).tolist() == [-1.0, 1.0, -1.0]


def _syncing(every_s: float, duration_s: float) -> Recorder:
    rec = Recorder()
    for i, t in enumerate(np.arange(0.0, duration_s, every_s).tolist()):
        rec.add_sync(node="node-1", start_s=t, end_s=t + 0.01, full=i == 0, ok=True,
                     rules_written=10)  # fmt: skip
    rec.add_sync(node="node-1", start_s=5.0, end_s=5.004, full=False, ok=False, rules_written=0)
    return rec


def test_crowded_sync_ticks_are_thinned_failed_ones_kept_and_noticed() -> None:
    from svcsim.plots.staleness import rule_staleness

    duration_s = 2.0 * MAX_TICKS_PER_ROW
    run = mem_run(_syncing(0.5, duration_s), manifest={"duration_s": duration_s})
    ax = rule_staleness(run).axes[0]
    ticks, crosses = ax.collections[-2:]
    # Bins of 2 s, a tick every 0.5 s: the first of each bin, at its start.
    assert np.asarray(ticks.get_offsets())[:, 0].tolist() == [
        2.0 * k + 0.01 for k in range(MAX_TICKS_PER_ROW)
    ]
    assert np.asarray(crosses.get_offsets())[:, 0].tolist() == [5.004]
    (line,) = (n for n in figure_notices(run, []) if "sync" in n)
    assert f"up to {2 * MAX_TICKS_PER_ROW * 2:,}" in line and "2-s bin" in line
    few = mem_run(_syncing(1.0, 100.0), manifest={"duration_s": 100.0})
    assert not [n for n in figure_notices(few, []) if "sync" in n]


def _pods_replaced(endpoints: int) -> Recorder:
    """One Service whose requests go to ``endpoints`` endpoints in turn, the later ones more."""
    rec = Recorder()
    n = 0
    for k in range(endpoints):
        for _ in range(k + 1):
            t = float(n) * 0.01
            rec.add_requests(
                t_s=[t], end_s=[t + 0.001], latency_s=[0.001], workload=["w"],
                client=["c"], src_node=["node-1"], service=["default/web:80"],
                attempt=[0], conn_id=[-1], new_flow=[True], endpoint=[f"10.0.{k}.1:80"],
                pod=[f"default/web-{k:03d}"], outcome=["ok"], cause=[""],
            )  # fmt: skip
            n += 1
    return rec


@pytest.mark.parametrize("endpoints", [MAX_LEGEND_ENDPOINTS, MAX_LEGEND_ENDPOINTS + 7])
def test_endpoint_legend_names_the_most_routed_and_counts_the_rest(endpoints: int) -> None:
    from svcsim.plots.shares import endpoint_shares

    run = mem_run(_pods_replaced(endpoints), manifest={"duration_s": 100.0})
    ax = endpoint_shares(run).axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    hidden = endpoints - MAX_LEGEND_ENDPOINTS
    named = [lab for lab in labels if lab.startswith("web-")]
    assert len(named) == MAX_LEGEND_ENDPOINTS
    # The most routed are the last ones (endpoint k got k + 1 attempts).
    assert named[-1].startswith(f"web-{endpoints - 1:03d}")
    assert all(not lab.startswith(f"web-{k:03d}") for lab in named for k in range(hidden))
    notices = [n for n in figure_notices(run, ["default/web:80"]) if "legend" in n]
    if hidden:
        assert labels[-1] == f"+{hidden} more endpoints, not named"
        assert notices and f"of up to {endpoints}" in notices[0]
    else:
        assert not notices and len(labels) == endpoints


@pytest.mark.parametrize(
    ("top", "bottom"),
    [
        ([1.0, 3.0, 2.0], [0.0, 0.0, 0.0]),
        ([1.5, 3.0, 2.5], [0.5, 1.0, 0.5]),  # a band stacked on another
        ([0.0, 0.0], [0.0, 0.0]),  # nothing in any bin
    ],
)
def test_filled_steps_is_stairs(top: list[float], bottom: list[float]) -> None:
    """The patch, its legend entry and the data limits of ``ax.stairs``, drawn the same."""
    from svcsim.plots.style import filled_steps, new_figure, png_bytes

    edges = np.arange(len(top) + 1, dtype=np.float64) * 2.0
    figs = []
    for fast in (False, True):
        fig = new_figure(2.0, 3.0)
        ax = fig.add_subplot()
        if fast:
            filled_steps(ax, np.array(top), edges, np.array(bottom), "#009E73", "ok")
        else:
            ax.stairs(top, edges, baseline=bottom, fill=True, color="#009E73", linewidth=0,
                      label="ok")  # fmt: skip
        ax.legend()
        figs.append(fig)
    (slow_ax,), (fast_ax,) = (f.axes for f in figs)
    assert fast_ax.dataLim.bounds == slow_ax.dataLim.bounds
    (slow,), (fast,) = slow_ax.patches, fast_ax.patches
    assert np.array_equal(fast.get_path().vertices, slow.get_path().vertices)
    assert fast.get_facecolor() == slow.get_facecolor() and fast.get_label() == "ok"
    assert fast.sticky_edges.y == slow.sticky_edges.y
    for fig in figs:  # the figures set their limits: then the pictures are the same
        fig.axes[0].set_xlim(0.0, edges[-1])
        fig.axes[0].set_ylim(0.0, 4.0)
    assert png_bytes(figs[0]) == png_bytes(figs[1])
