"""Which Services and nodes the per-Service figures show: bounded, and never silently.

A figure with one panel per Service, each with a row per node, grows with the cluster: a
100-node, 20-Service run drew a 320-inch outcome timeline and spent most of its wall time
rasterising it. The outcome timeline, the endpoint shares and the chain check therefore show
at most :data:`MAX_SERVICE_PANELS` Services, and the timeline's control-plane strip at most
:data:`MAX_NODE_ROWS` node rows. What is left out is named in the figure and in
:func:`figure_notices` (a run's manifest notices, ``svcsim plot``'s warnings), and
``svcsim plot RUN --service NAME`` draws any Service's panels on their own.

Small runs (at most the caps) are drawn exactly as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from svcsim.plots.events import node_outages, nodes, proxy_outages
from svcsim.plots.style import run_span_s
from svcsim.results import Run

MAX_SERVICE_PANELS: Final = 8
"""Services drawn at most by each per-Service figure (those with the most failed attempts
in failure windows first, then by name)."""

MAX_NODE_ROWS: Final = 24
"""Node rows drawn at most in a timeline panel's control-plane strip (nodes with something to
show for the Service first: a failure window, an outage, a failed sync; then by name)."""

NOTE_COLOUR: Final = "#7A2E00"
"""Colour of the line a figure carries when it leaves something out."""

SERVICE_OPTION: Final = "svcsim plot RUN_DIR --service NAME"
"""How a user draws a Service that was left out (named in notes and notices)."""


@dataclass(frozen=True, slots=True)
class Shown:
    """A choice of names to draw: ``shown`` in drawing order, out of ``total``."""

    shown: tuple[str, ...]
    total: int

    @property
    def hidden(self) -> int:
        """How many names were left out."""
        return self.total - len(self.shown)


def shown_services(run: Run, names: Sequence[str]) -> Shown:
    """At most :data:`MAX_SERVICE_PANELS` of ``names`` (sorted Service ports), kept in order.

    The Services with the most failed attempts in failure windows are kept (ties: by name),
    so the figure shows where things went wrong.
    """
    if len(names) <= MAX_SERVICE_PANELS:
        return Shown(tuple(names), len(names))
    failed: dict[str, int] = {}
    windows = run.windows
    for service, count in zip(windows["service"], windows["failed"], strict=True):
        failed[str(service)] = failed.get(str(service), 0) + int(count)
    ranked = sorted(names, key=lambda s: (-failed.get(s, 0), s))
    keep = set(ranked[:MAX_SERVICE_PANELS])
    return Shown(tuple(n for n in names if n in keep), len(names))


def shown_nodes(node_names: Sequence[str], notable: Iterable[str]) -> Shown:
    """At most :data:`MAX_NODE_ROWS` of ``node_names`` (in order), ``notable`` ones first."""
    if len(node_names) <= MAX_NODE_ROWS:
        return Shown(tuple(node_names), len(node_names))
    marked = set(notable)
    first = [n for n in node_names if n in marked][:MAX_NODE_ROWS]
    rest = [n for n in node_names if n not in marked][: MAX_NODE_ROWS - len(first)]
    keep = set(first) | set(rest)
    return Shown(tuple(n for n in node_names if n in keep), len(node_names))


def services_note(shown: Shown) -> str:
    """The line a figure carries when it leaves Services out ("" when it shows them all)."""
    if not shown.hidden:
        return ""
    return (
        f"{len(shown.shown)} of {shown.total} Services shown (those with the most failed "
        f"attempts); draw the others with {SERVICE_OPTION}"
    )


def nodes_note(shown: Shown) -> str:
    """The label of a strip that leaves nodes out ("" when it shows them all)."""
    if not shown.hidden:
        return ""
    return f"+{shown.hidden} more nodes"


MAX_POINTS_PER_NODE: Final = 2000
"""A node with more samples than this (a run longer than about half an hour) is drawn as its
peak per bin, :data:`MAX_POINTS_PER_NODE` bins over the run: a day of 1-s samples of 100 nodes
is 8.6 M points, far more than the figure's pixels. The peaks (and the legend's) stay exact;
:func:`conntrack_notice` says so in the run's notices."""


def peak_envelope(
    t: npt.NDArray[np.float64], entries: npt.NDArray[np.int64], span_s: float, bins: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """The largest of ``entries`` (sampled at ``t``, sorted) in each of ``bins`` equal bins.

    Returns the start of each bin holding a sample and its peak: a step line through them
    rises to every peak of the samples. ``span_s`` is the run's end (the bins cover 0..end).
    """
    if not len(t):
        return t.astype(np.float64), entries.astype(np.int64)
    width = max(span_s, float(t[-1])) / bins
    if width <= 0:
        return np.zeros(1), np.array([entries.max()], dtype=np.int64)
    index = np.minimum((t // width).astype(np.int64), bins - 1)
    starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
    peaks = np.maximum.reduceat(entries, starts)
    return index[starts].astype(np.float64) * width, peaks.astype(np.int64)


MAX_TICKS_PER_ROW: Final = 500
"""Sync ticks drawn at most per node row (the outcome timeline's strip, rule staleness): a row
with more keeps its first tick in each of this many equal bins over the run. A row is about
900 pixels wide and a tick about one, so more ticks only paint the same grey bar again: a
day of 1-s syncs drew 16 M markers. :func:`ticks_notice` says so in the run's notices."""

MAX_LEGEND_ENDPOINTS: Final = 24
"""Endpoints named at most in a Service's legend in the endpoint-share figure (those with the
most routed attempts); the rest are drawn, not named. A legend of a day's hundreds of
replaced Pods grew past its panel and cost more to draw than the data."""


def thin_ticks(
    t: npt.NDArray[np.float64], row: npt.NDArray[np.float64], span_s: float, bins: int
) -> npt.NDArray[np.bool_]:
    """Which ticks (at times ``t`` in rows ``row``) to draw: all of a row with at most ``bins``.

    A row with more keeps its earliest tick in each of ``bins`` equal bins over
    ``[0, span_s]`` (the run's end, or the last tick if later). Rows below 0 are not drawn
    and keep all their ticks (their caller drops them).
    """
    keep = np.ones(len(t), dtype=np.bool_)
    if not len(t):
        return keep
    rows = np.asarray(row, dtype=np.int64)
    drawn = rows >= 0
    per_row = np.bincount(rows[drawn], minlength=1)
    crowded = drawn & (per_row[np.where(drawn, rows, 0)] > bins)
    if not crowded.any():
        return keep
    width = max(span_s, float(t.max())) / bins
    index = np.zeros(len(t), dtype=np.int64)
    if width > 0:
        index = np.minimum((t // width).astype(np.int64), bins - 1)
    key = rows * bins + index
    where = np.flatnonzero(crowded)
    order = where[np.lexsort((t[where], key[where]))]
    first = np.r_[True, key[order][1:] != key[order][:-1]]
    keep[where] = False
    keep[order[first]] = True
    return keep


def ticks_notice(run: Run) -> str | None:
    """The run notice for sync ticks drawn one per bin (:data:`MAX_TICKS_PER_ROW`), or None."""
    syncs = run.syncs
    ok = syncs.loc[np.asarray(syncs["ok"], dtype=bool)]
    if not len(ok):
        return None
    most = int(ok.groupby("node", observed=True).size().max())
    if most <= MAX_TICKS_PER_ROW:
        return None
    bin_s = run_span_s(run) / MAX_TICKS_PER_ROW
    return (
        f"figures: the outcome timeline's strip and rule_staleness draw a node's first "
        f"successful sync per {bin_s:g}-s bin ({MAX_TICKS_PER_ROW:,} bins), not each of its "
        f"up to {most:,}; failed syncs are all drawn, and the syncs table has them all"
    )


def legend_notice(run: Run, names: Sequence[str]) -> str | None:
    """The run notice for endpoint-share legends capped at :data:`MAX_LEGEND_ENDPOINTS`."""
    endpoints = run.endpoints
    if not len(endpoints) or not names:
        return None
    routed = np.asarray(endpoints["requests"], dtype=np.int64) > 0
    mine = np.asarray(endpoints["service"].isin(list(names)), dtype=bool)
    shown = endpoints.loc[routed & mine]
    if not len(shown):
        return None
    most = int(shown.groupby("service").size().max())
    if most <= MAX_LEGEND_ENDPOINTS:
        return None
    return (
        f"figures: endpoint_shares names at most {MAX_LEGEND_ENDPOINTS} endpoints per Service "
        f"in its legend (most routed attempts first), of up to {most:,}; the rest are drawn "
        "unnamed"
    )


def conntrack_notice(run: Run) -> str | None:
    """The run notice for a conntrack figure drawn as peaks per bin, or None when it is not."""
    samples = run.conntrack
    if not len(samples):
        return None
    most = int(samples.groupby("node", observed=True).size().max())
    if most <= MAX_POINTS_PER_NODE:
        return None
    bin_s = run_span_s(run) / MAX_POINTS_PER_NODE
    return (
        f"figures: conntrack_usage draws each node's peak per {bin_s:g}-s bin "
        f"({MAX_POINTS_PER_NODE:,} bins), not each of its up to {most:,} samples; the "
        "conntrack table has them all"
    )


def figure_notices(run: Run, names: Sequence[str]) -> list[str]:
    """One line per cap the standard figures of ``run`` apply (empty for a small run).

    ``names`` are the Service ports the figures would draw (:func:`~svcsim.plots.events.services`).
    """
    out = []
    shown = shown_services(run, names)
    if shown.hidden:
        out.append(
            f"figures: the outcome timeline, endpoint shares and chain check show "
            f"{len(shown.shown)} of {shown.total} Services (cap {MAX_SERVICE_PANELS}: those "
            f"with the most failed attempts); draw the others with {SERVICE_OPTION}"
        )
    n_nodes = len(nodes(run))
    if n_nodes > MAX_NODE_ROWS:
        out.append(
            f"figures: the outcome timeline's control-plane strip shows {MAX_NODE_ROWS} of "
            f"{n_nodes} nodes per Service (nodes with failure windows, outages or failed "
            f"syncs first); rule_staleness shows {MAX_NODE_ROWS} of {n_nodes} nodes (outages "
            "and failed syncs first, then the longest stale); conntrack_usage shows every node"
        )
    for notice in (
        conntrack_notice(run),
        ticks_notice(run),
        legend_notice(run, shown.shown),
    ):
        if notice is not None:
            out.append(notice)
    return out


def notable_nodes(run: Run, service: str | None, span_s: float) -> list[str]:
    """Nodes with something to show in ``service``'s strip: windows, outages, failed syncs."""
    found: set[str] = set()
    windows = run.windows
    if service is not None and len(windows):
        mine = np.asarray(windows["service"] == service, dtype=bool)
        found.update(str(n) for n in windows.loc[mine, "node"])
    found.update(o.node for o in proxy_outages(run, span_s))
    found.update(o.node for o in node_outages(run, span_s))
    syncs = run.syncs
    if len(syncs):
        failed = ~np.asarray(syncs["ok"], dtype=bool)
        found.update(str(n) for n in syncs.loc[failed, "node"])
    return sorted(found)
