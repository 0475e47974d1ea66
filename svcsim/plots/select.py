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

from svcsim.plots.events import node_outages, nodes, proxy_outages
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
            "syncs first); rule_staleness and conntrack_usage show every node"
        )
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
