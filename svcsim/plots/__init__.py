"""Figures of a run, drawn from a loaded :class:`svcsim.results.Run` and nothing else.

Every function returns a :class:`matplotlib.figure.Figure` (Agg canvas, no pyplot state); in
Jupyter a Figure displays itself, elsewhere :func:`png_bytes` or :func:`save_all` render it.

* :func:`outcome_timeline`: requests per second by outcome per Service, failure windows
  shaded with their causes, control-plane events marked.
* :func:`endpoint_shares`: each endpoint's share of a Service's requests over time.
* :func:`rule_staleness`: per node, when its rules lagged the API (:func:`stale_intervals`).
* :func:`chain_check`: observed share of new flows per endpoint, 95 % intervals, against 1/N.
* :func:`conntrack_usage`: conntrack table size per node against its limit.
"""

from svcsim.plots.chain import (
    EndpointSetCheck,
    chain_check,
    chain_picks,
    clopper_pearson,
    endpoint_set_checks,
    stable_windows,
)
from svcsim.plots.conntrack import conntrack_usage
from svcsim.plots.save import FIGURES, FigureSpec, render_all, save_all
from svcsim.plots.shares import endpoint_labels, endpoint_shares
from svcsim.plots.staleness import rule_staleness, stale_intervals
from svcsim.plots.style import png_bytes
from svcsim.plots.timeline import outcome_timeline

__all__ = [
    "FIGURES",
    "EndpointSetCheck",
    "FigureSpec",
    "chain_check",
    "chain_picks",
    "clopper_pearson",
    "conntrack_usage",
    "endpoint_labels",
    "endpoint_set_checks",
    "endpoint_shares",
    "outcome_timeline",
    "png_bytes",
    "render_all",
    "rule_staleness",
    "save_all",
    "stable_windows",
    "stale_intervals",
]
