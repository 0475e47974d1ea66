"""When each node's programmed rules lagged the API state, and the figure that shows it.

Derivation (:func:`stale_intervals`), from the ``events`` and ``syncs`` tables only:

* **Stale after an update, exactly.** Each sync records ``applied_through_s``: the API time of
  the newest change in the state it compiled. An EndpointSlice update at API time ``u`` leaves
  a node's rules stale from ``u`` until the end of that node's first successful sync with
  ``applied_through_s >= u`` (rules take effect when a sync ends). Runs without that column
  fall back to the estimate below.
* **Stale after an update, estimated.** An EndpointSlice update at API time ``u`` leaves a
  node's rules stale from ``u`` until the end of the sync that installed it. A successful sync
  ending at ``e`` with ``programming_latency_s`` ``L`` applied a change triggered at ``e - L``,
  its oldest (kube-proxy observes ``network_programming_duration_seconds`` for each applied
  change from the slice's ``endpoints.kubernetes.io/last-change-trigger-time`` and ignores
  trigger times from before it started: pkg/proxy/endpointschangetracker.go
  ``EndpointSliceUpdate``, pkg/proxy/iptables/proxier.go ``syncProxyRules``). So the node still
  lacked the API state of time ``u`` until the end of the *last* successful sync that starts at
  or after ``u`` and applied a change triggered at or before ``u``. When no sync says so (a
  deleted slice carries no trigger time), the first successful sync from ``u`` on that reports a
  latency or is full ends the interval; on a node whose syncs never report a latency, its first
  successful sync from ``u`` on. Rules take effect when a sync ends (iptables-restore is
  atomic), hence sync *ends*. Failed syncs (a blocked xtables lock) end nothing, so they
  lengthen the interval. No such sync before the end of the run: stale until the end.
* **kube-proxy down.** From ``proxy-crashed`` to ``proxy-restarted`` on that node (the kernel
  keeps the last rules, and nothing updates them). An update during the outage is stale until
  the first picking-up sync after the restart, by the rule above.

Overlapping intervals of one node and reason are merged. Trigger times precede the slice
write they cause, so when Pod changes come faster than the controller writes, an interval can
end one sync late (a later sync applied a change triggered before ``u`` but written after it);
without any latency to go by, it can end one sync early (a sync that started before the change
reached the node).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from svcsim.plots.events import node_rows, nodes, proxy_outages, slice_update_times
from svcsim.plots.select import (
    MAX_NODE_ROWS,
    MAX_TICKS_PER_ROW,
    NOTE_COLOUR,
    Shown,
    notable_nodes,
    thin_ticks,
)
from svcsim.plots.style import (
    DOWN_COLOUR,
    STALE_COLOUR,
    SYNC_COLOUR,
    TIME_LABEL,
    empty_note,
    new_figure,
    run_span_s,
)
from svcsim.results import Run

STALE: Final = "stale"
"""Reason: an EndpointSlice update not yet programmed on the node."""
PROXY_DOWN: Final = "proxy-down"
"""Reason: kube-proxy on the node was down."""
F64 = npt.NDArray[np.float64]

_MAX_UPDATE_LINES: Final = 200
_SYNCS_MEMO: Final = "staleness_syncs"
"""Key of :func:`_syncs_by_node`'s result in ``Run.memo``."""


def merge_intervals(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Union of closed-open intervals, sorted; touching intervals join."""
    if not intervals:
        return []
    lo, hi = union_arrays(
        np.asarray([i[0] for i in intervals], dtype=np.float64),
        np.asarray([i[1] for i in intervals], dtype=np.float64),
    )
    return list(zip(lo.tolist(), hi.tolist(), strict=True))


def union_arrays(lo: F64, hi: F64) -> tuple[F64, F64]:
    """:func:`merge_intervals` of the intervals ``[lo[i], hi[i])``, as two sorted arrays.

    Sorted by (lo, hi), an interval opens a new run when it starts after every earlier one
    ended (touching intervals join); a run ends at the largest end in it, which is the
    running maximum of the ends at its last interval (every earlier run ended before it).
    A day-long run has a million stale intervals: no Python per interval.
    """
    if not len(lo):
        return lo.astype(np.float64), hi.astype(np.float64)
    order = np.lexsort((hi, lo))
    lo, hi = lo[order], hi[order]
    reach = np.maximum.accumulate(hi)
    opens = np.flatnonzero(np.concatenate(([True], lo[1:] > reach[:-1])))
    closes = np.append(opens[1:], len(lo)) - 1
    return lo[opens], reach[closes]


def programmed_at(
    updates: npt.NDArray[np.float64], node_syncs: pd.DataFrame, span_s: float
) -> npt.NDArray[np.float64]:
    """For each update time, when ``node_syncs`` (one node's syncs) had programmed it.

    See the module docstring; ``span_s`` (or the update time, if later) where no sync did.
    """
    return _programmed_at(updates, _NodeSyncs.of(node_syncs), span_s)


@dataclass(frozen=True, slots=True)
class _NodeSyncs:
    """One node's successful syncs as :func:`programmed_at` reads them (in table order)."""

    start: npt.NDArray[np.float64]
    end: npt.NDArray[np.float64]
    latency: npt.NDArray[np.float64]
    full: npt.NDArray[np.bool_]
    order: npt.NDArray[np.intp] | None
    """Sync ends sorted (stable), when every sync says what it applied (the exact rule)."""
    best: npt.NDArray[np.float64] | None
    """The newest API time applied by the syncs ended so far, along :attr:`order`."""

    @staticmethod
    def of(node_syncs: pd.DataFrame) -> _NodeSyncs:
        """The arrays of one node's syncs (all rows of ``node_syncs``; failed ones dropped)."""
        ok = node_syncs.loc[np.asarray(node_syncs["ok"], dtype=bool)]
        end = ok["end_s"].to_numpy(dtype=np.float64)
        order = best = None
        if "applied_through_s" in ok:
            through = ok["applied_through_s"].to_numpy(dtype=np.float64)
            if len(through) and np.isfinite(through).all():
                order = np.argsort(end, kind="stable")
                best = np.maximum.accumulate(through[order])
        return _NodeSyncs(
            start=ok["start_s"].to_numpy(dtype=np.float64),
            end=end,
            latency=ok["programming_latency_s"].to_numpy(dtype=np.float64),
            full=np.asarray(ok["full"], dtype=bool),
            order=order,
            best=best,
        )


def _programmed_at(
    updates: npt.NDArray[np.float64], syncs: _NodeSyncs, span_s: float
) -> npt.NDArray[np.float64]:
    start, end = syncs.start, syncs.end
    if syncs.order is not None and syncs.best is not None:
        # Exact: the first successful sync whose state included the update installed it.
        order = syncs.order
        first = np.searchsorted(syncs.best, updates, side="left")
        found = first < len(order)
        out = np.full(len(updates), span_s, dtype=np.float64)
        out[found] = end[order][first[found]]
        return np.maximum(out, updates)
    latency = syncs.latency
    oldest = end - latency  # NaN where the sync applied no change with a trigger time
    full = syncs.full
    applies = np.isfinite(latency) | full if np.isfinite(latency).any() else np.ones_like(full)
    out = np.empty(len(updates), dtype=np.float64)
    for i, u in enumerate(updates):
        after = start >= u
        carried = after & (oldest <= u)
        if carried.any():
            out[i] = end[carried].max()
            continue
        picked = after & applies
        out[i] = end[picked].min() if picked.any() else max(span_s, float(u))
    return out


def _syncs_by_node(run: Run) -> dict[str, _NodeSyncs]:
    """Each node's :class:`_NodeSyncs`, computed once per run (kept in ``run.memo``).

    Every Service's stable windows ask for every node's (the chain check, the folded view of
    a counted run): a 100-node run would otherwise split its syncs table 30 times over.
    """
    found = run.memo.get(_SYNCS_MEMO)
    if found is None:
        found = {
            str(n): _NodeSyncs.of(g) for n, g in run.syncs.groupby("node", observed=True, sort=True)
        }
        run.memo[_SYNCS_MEMO] = found
    by_node: dict[str, _NodeSyncs] = found
    return by_node


def stale_intervals(run: Run, service: str | None = None) -> pd.DataFrame:
    """Per node, when its rules were stale relative to the API state (see the module docstring).

    With ``service``, only that Service's EndpointSlice updates count (outages always do).
    Returns columns node, start_s, end_s (float64, s), reason (``stale`` or ``proxy-down``),
    sorted by node, reason, start_s.
    """
    span_s = run_span_s(run)
    updates = slice_update_times(run, service)
    # Columns built a node at a time (a day has a million stale intervals).
    names: list[str] = []
    lows: list[F64] = []
    highs: list[F64] = []
    reasons: list[str] = []
    syncs_by_node = _syncs_by_node(run)
    for node in nodes(run):
        if len(updates):
            node_syncs = syncs_by_node.get(node)
            if node_syncs is None:
                node_syncs = _NodeSyncs.of(run.syncs.iloc[:0])
            done = _programmed_at(updates, node_syncs, span_s)
            late = done > updates
            lo, hi = union_arrays(updates[late].astype(np.float64), done[late])
            names.append(node)
            lows.append(lo)
            highs.append(hi)
            reasons.append(STALE)
    outages: dict[str, list[tuple[float, float]]] = {}
    for outage in proxy_outages(run, span_s):
        outages.setdefault(outage.node, []).append((outage.start_s, outage.end_s))
    for node, pairs in outages.items():
        merged = merge_intervals(pairs)
        names.append(node)
        lows.append(np.asarray([lo for lo, _ in merged], dtype=np.float64))
        highs.append(np.asarray([hi for _, hi in merged], dtype=np.float64))
        reasons.append(PROXY_DOWN)
    sizes = [len(lo) for lo in lows]
    frame = pd.DataFrame(
        {
            "node": np.repeat(np.asarray(names, dtype=object), sizes),
            "start_s": np.concatenate(lows) if lows else np.empty(0, dtype=np.float64),
            "end_s": np.concatenate(highs) if highs else np.empty(0, dtype=np.float64),
            "reason": np.repeat(np.asarray(reasons, dtype=object), sizes),
        }
    )
    return frame.sort_values(["node", "reason", "start_s"], kind="stable").reset_index(drop=True)


def staleness_rows(
    run: Run, names: list[str], intervals: pd.DataFrame | None, span_s: float
) -> Shown:
    """The nodes :func:`rule_staleness` draws: all of them, or :data:`MAX_NODE_ROWS` of them.

    Beyond the cap, nodes with an outage or a failed sync come first, then those whose rules
    were stale longest (ties: by name); they are drawn in node order.
    """
    if len(names) <= MAX_NODE_ROWS or intervals is None:
        return Shown(tuple(names), len(names))
    stale = (intervals["end_s"] - intervals["start_s"]).groupby(intervals["node"]).sum()
    totals = {str(n): float(v) for n, v in stale.items()}
    marked = set(notable_nodes(run, None, span_s))
    ranked = sorted(names, key=lambda n: (n not in marked, -totals.get(n, 0.0), n))
    keep = set(ranked[:MAX_NODE_ROWS])
    return Shown(tuple(n for n in names if n in keep), len(names))


def staleness_note(shown: Shown) -> str:
    """The line :func:`rule_staleness` carries when it leaves nodes out."""
    return (
        f"{len(shown.shown)} of {shown.total} nodes shown (outages and failed syncs first, "
        "then the longest stale)"
    )


def rule_staleness(run: Run) -> Figure:
    """Per node, a bar timeline of when its programmed rules were stale or kube-proxy was down.

    One row per node, :data:`~svcsim.plots.select.MAX_NODE_ROWS` at most
    (:func:`staleness_rows`; a note names the cap): orange bars where an EndpointSlice update
    had not yet been programmed there, red bars (drawn thinner, on top) where kube-proxy was
    down, grey ticks at the end of each successful sync, red crosses at failed syncs; dotted
    vertical lines mark the EndpointSlice updates (up to 200 of them). See
    :func:`stale_intervals` for the derivation.
    """
    every = nodes(run)
    span_s = run_span_s(run)
    intervals = stale_intervals(run) if every else None
    shown = staleness_rows(run, every, intervals, span_s)
    names = list(shown.shown)
    fig = new_figure(1.6 + 0.45 * max(len(names), 1))
    ax = fig.add_subplot()
    ax.set_title("Rule staleness per node: programmed rules behind the API state")
    ax.set_xlabel(TIME_LABEL)
    ax.set_xlim(0.0, span_s)
    if intervals is None:
        empty_note(ax, "no nodes in this run", keep_x=True)
        return fig
    if shown.hidden:
        intervals = intervals.loc[intervals["node"].isin(names)]
        fig.suptitle(staleness_note(shown), fontsize="small", color=NOTE_COLOUR)
    row = {n: i for i, n in enumerate(names)}
    for (node, reason), group in intervals.groupby(["node", "reason"], sort=True):
        y = row[str(node)]
        ranges = list(zip(group["start_s"], group["end_s"] - group["start_s"], strict=True))
        if reason == STALE:
            ax.broken_barh(ranges, (y - 0.3, 0.6), facecolors=STALE_COLOUR, alpha=0.85)
        else:
            ax.broken_barh(ranges, (y - 0.15, 0.3), facecolors=DOWN_COLOUR, hatch="//", zorder=3)
    syncs = run.syncs
    if shown.hidden:
        syncs = syncs.loc[np.asarray(syncs["node"].isin(names), dtype=bool)]
    ok = np.asarray(syncs["ok"], dtype=bool)
    sync_y = node_rows(syncs["node"], row)
    ends = syncs["end_s"].to_numpy(dtype=np.float64)
    ticks = ok.copy()
    ticks[ok] = thin_ticks(ends[ok], sync_y[ok], span_s, MAX_TICKS_PER_ROW)
    ax.scatter(ends[ticks], sync_y[ticks], marker="|", s=120, color=SYNC_COLOUR, linewidths=1.0)
    ax.scatter(ends[~ok], sync_y[~ok], marker="x", s=30, color=DOWN_COLOUR, linewidths=1.2)
    updates = slice_update_times(run)
    if len(updates) <= _MAX_UPDATE_LINES:  # beyond that they only grey the background
        for u in updates:
            ax.axvline(float(u), color="#888888", linestyle=":", linewidth=0.8, zorder=0)
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_ylabel("node")
    handles = [
        Patch(facecolor=STALE_COLOUR, alpha=0.85, label="stale: slice update not yet programmed"),
        Patch(facecolor=DOWN_COLOUR, hatch="//", label="kube-proxy down"),
        Line2D([], [], marker="|", linestyle="", color=SYNC_COLOUR, markersize=10,
               label="sync ended (rules installed)"),
        Line2D([], [], marker="x", linestyle="", color=DOWN_COLOUR, label="sync failed"),
        Line2D([], [], linestyle=":", color="#888888", label="EndpointSlice update (API)"),
    ]  # fmt: skip
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0.0,
        fontsize="small",
        frameon=False,
    )
    return fig
