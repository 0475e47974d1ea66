"""Conntrack table size per node over time, against the node's ``nf_conntrack_max``."""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
from matplotlib.figure import Figure

from svcsim.plots.events import nodes
from svcsim.plots.select import MAX_POINTS_PER_NODE, peak_envelope
from svcsim.plots.style import (
    TIME_LABEL,
    empty_note,
    legend_outside,
    new_figure,
    run_span_s,
    series_colour,
)
from svcsim.results import EventKind, Run

LIMIT_IN_VIEW: Final = 4.0
"""The limit line is drawn when it is at most this many times the peak size; else noted."""

MAX_NAMED_NODES: Final = 10
"""Nodes drawn in colour and named in the legend: those with the largest peaks. Any others are
thin grey lines under one legend entry (a legend of 100 nodes does not fit the figure)."""

OTHER_NODES_COLOUR: Final = "#b8b8b8"
"""The colour of the nodes not named in the legend."""


def conntrack_usage(run: Run) -> Figure:
    """Conntrack entries per node over time (one step line per node) against the limit.

    A node with more than :data:`MAX_POINTS_PER_NODE` samples is drawn as its peak per bin
    (:func:`~svcsim.plots.select.peak_envelope`). The :data:`MAX_NAMED_NODES` nodes with the
    largest peaks are in colour and in the legend; any others are grey lines under one legend
    entry.

    Each distinct limit (``nf_conntrack_max``) is a black dashed line when the largest table
    came within 1/:data:`LIMIT_IN_VIEW` of it; otherwise the y-axis stays on the data and the
    limit is named in the legend only. When all nodes share one limit, a right-hand axis gives
    the size in % of it. Conntrack flushes are dotted vertical lines.
    """
    fig = new_figure(4.2)
    ax = fig.add_subplot()
    ax.set_title("Conntrack table size per node (against nf_conntrack_max)")
    ax.set_xlabel(TIME_LABEL)
    ax.set_ylabel("conntrack entries (count)")
    ax.set_xlim(0.0, run_span_s(run))
    samples = run.conntrack
    if not len(samples):
        empty_note(ax, "no conntrack samples in this run", keep_x=True)
        return fig
    per_node = _per_node(samples)
    names = [n for n in nodes(run) if n in per_node]
    peak = int(samples["entries"].max())
    peaks = samples.groupby("node", observed=True)["entries"].max()
    by_peak = sorted(names, key=lambda n: -int(peaks[n]))  # stable: node order among equals
    named = set(by_peak[:MAX_NAMED_NODES])
    limit_of: dict[str, int] = {}
    colour = 0
    for node in names:
        t, entries, limit_of[node] = per_node[node]
        if len(t) > MAX_POINTS_PER_NODE:
            t, entries = peak_envelope(t, entries, run_span_s(run), MAX_POINTS_PER_NODE)
        if node in named:
            label = f"{node} (peak {int(entries.max()):,} of {limit_of[node]:,})"
            ax.step(t, entries, where="post", color=series_colour(colour), linewidth=1.4,
                    zorder=2.1, label=label)  # fmt: skip
            colour += 1
        else:
            ax.step(t, entries, where="post", color=OTHER_NODES_COLOUR, linewidth=0.8, zorder=2.0)
    others = [n for n in names if n not in named]
    if others:
        label = f"{len(others)} other nodes (peaks up to {int(peaks[others].max()):,})"
        ax.plot([], [], color=OTHER_NODES_COLOUR, linewidth=0.8, label=label)
    limits = sorted(set(limit_of.values()))
    for limit in limits:
        holders = [n for n in names if limit_of[n] == limit]
        who = "all nodes" if len(holders) == len(names) else ", ".join(holders)
        label = f"nf_conntrack_max = {limit:,} ({who})"
        if limit <= LIMIT_IN_VIEW * max(peak, 1):
            ax.axhline(limit, color="black", linestyle="--", linewidth=1.0, label=label)
        else:
            # Off scale: a legend entry only, so the data keep the whole height.
            ax.plot([], [], color="black", linestyle="--", linewidth=1.0,
                    label=f"{label}, off scale")  # fmt: skip
    flushes = run.events.loc[
        np.asarray(run.events["kind"].astype(str) == EventKind.CONNTRACK_FLUSH.value, dtype=bool)
    ]
    for i, t_s in enumerate(flushes["t_s"].to_numpy(dtype=np.float64)):
        ax.axvline(t_s, color="#555555", linestyle=":", linewidth=1.0,
                   label="conntrack flushed" if i == 0 else None)  # fmt: skip
    ax.set_ylim(bottom=0.0)
    if len(limits) == 1 and limits[0] > 0:
        scale = 100.0 / limits[0]

        def to_percent(entries: Any) -> Any:
            return np.asarray(entries, dtype=np.float64) * scale

        def to_entries(percent: Any) -> Any:
            return np.asarray(percent, dtype=np.float64) / scale

        secondary = ax.secondary_yaxis("right", functions=(to_percent, to_entries))
        secondary.set_ylabel(f"% of nf_conntrack_max ({limits[0]:,})")
    legend_outside(ax, x=1.1)
    return fig


def _per_node(
    samples: pd.DataFrame,
) -> dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], int]]:
    """Per node: its sample times (sorted), entries at those times, and its largest limit.

    One sort of the whole table, then slices: a day of 1-s samples of 100 nodes is 8.6 M
    rows, too many to scan once per node.
    """
    node = samples["node"]
    cat = node.array if isinstance(node.dtype, pd.CategoricalDtype) else pd.Categorical(node)
    codes = np.asarray(cat.codes, dtype=np.int64)
    t = samples["t_s"].to_numpy(dtype=np.float64)
    order = np.lexsort((t, codes))  # by node, then time; ties keep table order
    codes, t = codes[order], t[order]
    entries = samples["entries"].to_numpy(dtype=np.int64)[order]
    limits = samples["max_entries"].to_numpy(dtype=np.int64)[order]
    bounds = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1], True])
    out = {}
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        if codes[lo] >= 0:
            name = str(cat.categories[codes[lo]])
            out[name] = (t[lo:hi], entries[lo:hi], int(limits[lo:hi].max()))
    return out
