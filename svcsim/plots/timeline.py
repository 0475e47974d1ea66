"""The outcome timeline: per Service, requests per second by outcome, failures and causes shaded.

Each Service port gets one panel of two stacked axes sharing the time axis:

* the upper axes stacks requests per second by outcome in fixed time bins (failures at the
  bottom, so a few failed requests under heavy ``ok`` traffic stay visible), shades each
  failure window of that Service and labels it with its cause, node and failed count;
* the lower strip marks the control plane: Pod changes, EndpointSlice updates, and one row
  per node with a tick at the end of every sync (a cross for a failed one) and a hatched bar
  while kube-proxy was down. kube-proxy crashes and restarts are vertical lines across both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.text import Text
from matplotlib.transforms import Bbox, blended_transform_factory

from svcsim.plots.events import (
    node_outages,
    node_rows,
    nodes,
    pod_events,
    proxy_outages,
    service_key,
    services,
    slice_update_times,
)
from svcsim.plots.select import (
    MAX_TICKS_PER_ROW,
    NOTE_COLOUR,
    nodes_note,
    notable_nodes,
    services_note,
    shown_nodes,
    shown_services,
    thin_ticks,
)
from svcsim.plots.style import (
    DOWN_COLOUR,
    FAILURE_SHADE,
    OUTCOME_COLOURS,
    RESTART_COLOUR,
    SYNC_COLOUR,
    TIME_LABEL,
    empty_note,
    filled_steps,
    legend_outside,
    new_figure,
    run_span_s,
    seconds,
    time_bin_s,
)
from svcsim.plots.view import figure_traffic
from svcsim.results import EventKind, Outcome, Run
from svcsim.results.bins import bin_edges
from svcsim.results.weights import attempt_weights

STACK_ORDER: Final[tuple[str, ...]] = (
    Outcome.REFUSED.value,
    Outcome.TIMEOUT.value,
    Outcome.RESET.value,
    Outcome.DROPPED.value,
    Outcome.MISROUTED.value,
    Outcome.OK.value,
)
"""Bottom-to-top order of the stacked outcomes."""

_POD_MARKERS: Final[dict[str, tuple[str, str, str]]] = {
    # kind: (marker, colour, legend label)
    EventKind.POD_SCHEDULED.value: ("o", "#56B4E9", "Pod scheduled"),
    EventKind.POD_READY.value: ("^", "#009E73", "Pod ready"),
    EventKind.POD_NOT_READY.value: ("v", "#E69F00", "Pod not ready"),
    EventKind.POD_TERMINATING.value: ("v", "#D55E00", "Pod terminating"),
    EventKind.POD_EXITED.value: ("x", "#000000", "Pod exited"),
    EventKind.IP_RELEASED.value: ("s", "#999999", "Pod IP released"),
    "pod-crashed": ("*", "#D55E00", "Pod crashed"),
    "pod-restarted": ("P", "#56B4E9", "Pod restarted"),
}
_SLICE_COLOUR: Final = "#0072B2"
_LB_MARKERS: Final[dict[str, tuple[str, str, str]]] = {
    EventKind.LB_NODE_UNHEALTHY.value: ("<", "#D55E00", "load balancer drops node"),
    EventKind.LB_NODE_HEALTHY.value: (">", "#009E73", "load balancer adds node"),
}
_NODE_FAULT_COLOURS: Final = {"failed": "#D9D9D9", "partitioned": "#E8D5F0"}
_NODE_FAULT_LABELS: Final = {"failed": "node down", "partitioned": "node cut off from the API"}
_MAX_LABEL_LINES: Final = 3
_MAX_LABELS: Final = 12
"""Failure-window labels per panel at most (the report's table lists every window)."""
_LABEL_LEVELS: Final = (0.97, 0.66, 0.35)
"""Heights (axes fraction) tried in turn for a failure-window label."""
_PANEL_HEIGHT_IN: Final = 3.0
_ROW_HEIGHT_IN: Final = 0.24
_MIN_ROW_HEIGHT_IN: Final = 0.12


def outcome_timeline(run: Run, service: str | None = None) -> Figure:
    """Requests per second by outcome over time, one panel per Service (or just ``service``).

    Failure windows are shaded and labelled ``cause @ node (failed)``; control-plane events
    are marked in a strip below each panel (see the module docstring). A run without
    requests gets one panel with the control-plane strip and a note. At most
    :data:`~svcsim.plots.select.MAX_SERVICE_PANELS` panels and
    :data:`~svcsim.plots.select.MAX_NODE_ROWS` node rows per strip are drawn; the figure says
    what it left out (:mod:`svcsim.plots.select`).
    """
    chosen = shown_services(run, [service] if service is not None else services(run))
    names = list(chosen.shown)
    all_nodes = nodes(run)
    span_s = run_span_s(run)
    bin_s = time_bin_s(span_s)
    capped = shown_nodes(all_nodes, ())
    rows = 2 + len(capped.shown) + (1 if capped.hidden else 0)  # a row names the rest
    # Many nodes: thinner rows, so the strip stays a strip.
    strip_in = max(_MIN_ROW_HEIGHT_IN, min(_ROW_HEIGHT_IN, 3.0 / rows)) * rows + 0.5
    panels: list[str | None] = [*names] if names else [None]
    fig = new_figure((_PANEL_HEIGHT_IN + strip_in + 0.4) * len(panels))
    subfigs: Sequence[Figure | SubFigure] = [fig]
    if len(panels) > 1:
        subfigs = list(fig.subfigures(len(panels), 1, squeeze=False).ravel())
    labels: list[Text] = []
    for sub, name in zip(subfigs, panels, strict=True):
        main, strip = sub.subplots(
            2, 1, sharex=True, gridspec_kw={"height_ratios": [_PANEL_HEIGHT_IN, strip_in]}
        )
        if name is None:
            main.set_title("No requests in this run")
            empty_note(main, "no requests recorded", keep_x=True)
        else:
            _draw_outcomes(main, run, name, bin_s)
            mine = run.windows.loc[run.windows["service"] == name]
            labels += _draw_windows(main, mine, min_width_s=bin_s)
            main.set_title(f"{name}: requests per second by outcome")
        node_rows = shown_nodes(all_nodes, notable_nodes(run, name, span_s))
        _draw_strip(strip, run, name, list(node_rows.shown), span_s, nodes_note(node_rows))
        _draw_outages(main, strip, run, span_s)
        main.set_xlim(0.0, span_s)
        main.tick_params(labelbottom=False)
        strip.set_xlabel(TIME_LABEL)
        legend_outside(main)
        legend_outside(strip)
    note = services_note(chosen)
    if note:
        fig.suptitle(note, fontsize="small", color=NOTE_COLOUR)
    _declutter(fig, labels)
    return fig


def _draw_outcomes(ax: Axes, run: Run, service: str, bin_s: float) -> None:
    traffic = figure_traffic(run)
    mine = traffic.loc[np.asarray(traffic["service"] == service, dtype=bool)]
    t = mine["t_s"].to_numpy(dtype=np.float64)
    weights = attempt_weights(mine)
    outcome = mine["outcome"]
    span_s = run_span_s(run)
    edges = bin_edges(span_s, bin_s)
    bottom = np.zeros(len(edges) - 1)
    for name in STACK_ORDER:
        chosen = np.asarray(outcome == name, dtype=bool)
        selected = t[chosen]
        if not selected.size:
            continue
        sent = int(weights[chosen].sum())
        counts, _ = np.histogram(selected, bins=edges, weights=weights[chosen])
        rate = counts / bin_s
        # One stepped band per outcome (not a bar per bin): fast, and no seams between bins.
        filled_steps(ax, bottom + rate, edges, bottom, OUTCOME_COLOURS[name], f"{name} ({sent:,})")
        bottom = bottom + rate
    ax.set_ylabel(f"requests per second\n(per {seconds(bin_s)} bin)")
    if not len(t):
        empty_note(ax, "no requests to this Service", keep_x=True)
    ax.set_ylim(0.0, max(float(bottom.max(initial=0.0)) * 1.25, 1.0))


def _draw_windows(ax: Axes, windows: pd.DataFrame, min_width_s: float) -> list[Text]:
    """Shade the failure windows; label the busiest clusters of overlapping windows.

    A window spans the send times of its failures, [start_s, end_s]: a single failure makes
    it zero-length, so each is shaded at least ``min_width_s`` wide (the rate bin, as wide
    as that failure's bar). Overlapping windows (one outage seen from several nodes) are
    shaded as one band, all bands in one collection, so a run with thousands of windows still
    draws quickly. Each band gets a label (returned) unless there are more than
    :data:`_MAX_LABELS`; then one note says so.
    """
    if not len(windows):
        return []
    ordered = windows.sort_values(["start_s", "node"], kind="stable")
    clusters = _clusters(ordered, min_width_s)
    bands = []
    for cluster in clusters:
        start = float(cluster[0].start_s)
        end = max(max(float(r.end_s), float(r.start_s) + min_width_s) for r in cluster)
        bands.append((start, end - start))
    ax.broken_barh(
        bands,
        (0.0, 1.0),
        transform=ax.get_xaxis_transform(),  # x in seconds, y spanning the axes
        facecolors=FAILURE_SHADE,
        alpha=0.15,
        linewidth=0,
        label="failure window",
    )
    top = blended_transform_factory(ax.transData, ax.transAxes)
    box = {"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1.0}
    if len(clusters) > _MAX_LABELS:
        # Labels would bury the data; the report's table lists every window.
        note = f"{len(windows):,} failure windows in {len(clusters):,} bursts: too many to label"
        ax.text(0.01, 0.97, note, transform=ax.transAxes, ha="left", va="top",
                fontsize="x-small", color="#7A2E00", bbox=box)  # fmt: skip
        return []
    labels = []
    for i in range(len(clusters)):
        cluster = clusters[i]
        lines = [f"{r.cause} @ {r.node} ({int(r.failed):,})" for r in cluster]
        if len(lines) > _MAX_LABEL_LINES:
            lines = [*lines[: _MAX_LABEL_LINES - 1], f"+{len(lines) - _MAX_LABEL_LINES + 1} more"]
        text = ax.text(
            float(cluster[0].start_s),
            _LABEL_LEVELS[0],
            "\n".join(lines),
            transform=top,
            ha="left",
            va="top",
            fontsize="x-small",
            color="#7A2E00",
            clip_on=True,
            bbox=box,
        )
        labels.append(text)
    return labels


def _declutter(fig: Figure, labels: list[Text]) -> None:
    """Move window labels that would overlap an earlier one down a level; hide the rest.

    Runs after layout, so extents are the final ones; labels are clipped to their axes, so
    moving them does not change the layout. Only the layout is run here, not a whole draw
    without rendering: a label's extent needs its axes' final place and nothing else drawn
    (that draw was a third of the figure's cost).
    """
    if not labels:
        return
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)
    placed: dict[int, list[Bbox]] = {}
    for text in labels:
        taken = placed.setdefault(id(text.axes), [])
        for level in _LABEL_LEVELS:
            text.set_y(level)
            box = text.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in taken):
                taken.append(box)
                break
        else:
            text.set_visible(False)


def _clusters(windows: pd.DataFrame, min_width_s: float = 0.0) -> list[list[Any]]:
    """Windows (sorted by start) grouped so that each group's shaded spans overlap in time.

    A window's span is [start_s, max(end_s, start_s + min_width_s)].
    """
    groups: list[list[Any]] = []
    end = -np.inf
    for row in windows.itertuples(index=False):
        row_end = max(float(row.end_s), float(row.start_s) + min_width_s)
        if groups and float(row.start_s) <= end:
            groups[-1].append(row)
            end = max(end, row_end)
        else:
            groups.append([row])
            end = row_end
    return groups


def _draw_strip(
    ax: Axes,
    run: Run,
    service: str | None,
    node_names: list[str],
    span_s: float,
    more_nodes: str = "",
) -> None:
    """Control-plane rows: Pods, EndpointSlice, then one row per node (syncs, outages).

    Only the nodes in ``node_names`` get a row; ``more_nodes``, if given, labels a last, empty
    row saying what was left out.
    """
    labels = ["Pods", "EndpointSlice", *node_names, *([more_nodes] if more_nodes else [])]
    pods = pod_events(run, service)
    for kind, (marker, colour, label) in _POD_MARKERS.items():
        times = pods.loc[pods["kind"] == kind, "t_s"].to_numpy(dtype=np.float64)
        if times.size:
            ax.scatter(times, np.zeros(times.size), marker=marker, s=22, color=colour, label=label,
                       clip_on=False)  # fmt: skip
    updates = slice_update_times(run, service)
    if updates.size:
        ax.scatter(updates, np.ones(updates.size), marker="|", s=90, color=_SLICE_COLOUR,
                   label="EndpointSlice updated", clip_on=False)  # fmt: skip
    row = {n: 2 + i for i, n in enumerate(node_names)}
    syncs = run.syncs
    y = node_rows(syncs["node"], row)
    ends = syncs["end_s"].to_numpy(dtype=np.float64)
    drawn = y >= 0  # nodes left out of the strip have no row
    ok = np.asarray(syncs["ok"], dtype=bool) & drawn
    ok[ok] = thin_ticks(ends[ok], y[ok], span_s, MAX_TICKS_PER_ROW)
    if ok.any():
        ax.scatter(ends[ok], y[ok], marker="|", s=60, color=SYNC_COLOUR, linewidths=0.8,
                   label="sync ended", clip_on=False)  # fmt: skip
    failed = ~np.asarray(syncs["ok"], dtype=bool) & drawn
    if failed.any():
        ax.scatter(ends[failed], y[failed], marker="x", s=20, color=DOWN_COLOUR,
                   label="sync failed")  # fmt: skip
    events = run.events
    for kind, (lb_marker, lb_colour, lb_label) in _LB_MARKERS.items():
        rows = events.loc[(events["kind"] == kind).to_numpy(dtype=bool)]
        if service is not None:
            rows = rows.loc[(rows["object"] == service_key(service)).to_numpy(dtype=bool)]
        rows = rows.loc[np.asarray([str(n) in row for n in rows["node"]], dtype=bool)]
        if len(rows):
            ys = [row[str(n)] for n in rows["node"]]
            ax.scatter(rows["t_s"].to_numpy(dtype=np.float64), ys, marker=lb_marker, s=40,
                       color=lb_colour, label=lb_label, clip_on=False, zorder=3)  # fmt: skip
    shown: set[str] = set()
    for fault in node_outages(run, span_s):
        if fault.node not in row:
            continue
        colour = _NODE_FAULT_COLOURS[fault.kind]
        ax.broken_barh(
            [(fault.start_s, fault.end_s - fault.start_s)],
            (row.get(fault.node, 0) - 0.45, 0.9),
            facecolors=colour,
            edgecolors="none",
            label=_NODE_FAULT_LABELS[fault.kind] if fault.kind not in shown else None,
            zorder=0,
        )
        shown.add(fault.kind)
    down_label: str | None = "kube-proxy down"
    for outage in proxy_outages(run, span_s):
        if outage.node not in row:
            continue
        ax.broken_barh(
            [(outage.start_s, outage.end_s - outage.start_s)],
            (row[outage.node] - 0.3, 0.6),
            facecolors="none",
            edgecolors=DOWN_COLOUR,
            hatch="////",
            linewidth=0.8,
            label=down_label,
        )
        down_label = None
    ax.set_yticks(range(len(labels)), labels, fontsize="small")
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.grid(axis="y", color="#DDDDDD", linewidth=0.6)
    ax.set_axisbelow(True)


def _draw_outages(main: Axes, strip: Axes, run: Run, span_s: float) -> None:
    """Vertical lines at each kube-proxy crash (red) and restart (blue), across both axes."""
    crash_label: str | None = "kube-proxy crash"
    restart_label: str | None = "kube-proxy restart"
    for outage in proxy_outages(run, span_s):
        for ax in (main, strip):
            is_main = ax is main
            ax.axvline(
                outage.start_s,
                color=DOWN_COLOUR,
                linestyle="--",
                linewidth=1.0,
                label=crash_label if is_main else None,
            )
            if outage.restarted:
                ax.axvline(
                    outage.end_s,
                    color=RESTART_COLOUR,
                    linestyle="--",
                    linewidth=1.0,
                    label=restart_label if is_main else None,
                )
        crash_label = None
        if outage.restarted:
            restart_label = None
