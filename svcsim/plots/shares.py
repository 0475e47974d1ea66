"""Each endpoint's share of a Service's requests over time, as stacked bars per time bin."""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from svcsim.plots.events import services
from svcsim.plots.select import (
    MAX_LEGEND_ENDPOINTS,
    NOTE_COLOUR,
    services_note,
    shown_services,
)
from svcsim.plots.style import (
    TIME_LABEL,
    empty_note,
    endpoint_colours,
    filled_steps,
    legend_outside,
    new_figure,
    run_span_s,
    seconds,
    time_bin_s,
)
from svcsim.plots.view import figure_traffic
from svcsim.results import Run, shares_over_time
from svcsim.results.bins import SHARES_BINS
from svcsim.results.weights import attempt_weights, first_sent

_PANEL_HEIGHT_IN: Final = 3.2


def endpoint_labels(requests: pd.DataFrame) -> dict[str, str]:
    """``"pod (IP:port)"`` per endpoint; ``"pod-a / pod-b (IP:port)"`` when an IP was reused.

    Pods are listed in the order they first received an attempt through the endpoint; a Pod
    in its Service's namespace is shown by name alone. An endpoint no Pod answered on is
    shown as ``"no Pod (IP:port)"``.
    """
    routed = requests.loc[np.asarray(requests["endpoint"] != "", dtype=bool)]
    # Group on the categorical columns first: millions of rows, a handful of groups.
    keys = [routed["endpoint"], routed["pod"], routed["service"]]
    first = first_sent(routed).groupby(keys, observed=True, sort=False).min()
    pods: dict[str, list[tuple[float, str]]] = {}
    endpoints: set[str] = set()
    for (endpoint, pod, service), t in first.items():
        endpoints.add(str(endpoint))
        if not str(pod):
            continue
        namespace = str(service).partition("/")[0]
        name = str(pod).removeprefix(f"{namespace}/") if "/" in str(service) else str(pod)
        entry = pods.setdefault(str(endpoint), [])
        if name not in (p for _, p in entry):
            entry.append((float(t), name))
    labels = {}
    for endpoint in sorted(endpoints):
        names = [p for _, p in sorted(pods.get(endpoint, []))]
        labels[endpoint] = f"{' / '.join(names) if names else 'no Pod'} ({endpoint})"
    return labels


def endpoint_order(requests: pd.DataFrame, resolution_s: float = 0.0) -> list[str]:
    """Endpoints in the order they first received an attempt.

    First times within one ``resolution_s`` step count as a tie, broken by the endpoint's
    label (:func:`endpoint_labels`), so Pods that started together are listed by name.
    """
    routed = requests.loc[np.asarray(requests["endpoint"] != "", dtype=bool)]
    first = first_sent(routed).groupby(routed["endpoint"], observed=True, sort=False).min()
    labels = endpoint_labels(requests)

    def key(item: tuple[str, float]) -> tuple[float, str]:
        endpoint, t_s = item
        step = np.floor(t_s / resolution_s) if resolution_s > 0 else t_s
        return (float(step), labels.get(endpoint, endpoint))

    return [str(e) for e, _ in sorted(((str(e), float(t)) for e, t in first.items()), key=key)]


def endpoint_shares(run: Run, service: str | None = None) -> Figure:
    """Each endpoint's share of requests over time, one panel per Service (or just ``service``).

    Counts every attempt the node's rules routed to an endpoint (any outcome), per time bin;
    the bars of one bin stack to 1. Endpoints are labelled with their Pod name and
    ``IP:port`` and coloured in the order they first appeared; a legend names at most
    :data:`~svcsim.plots.select.MAX_LEGEND_ENDPOINTS` of them (the most routed) and says how
    many more it leaves out. Bins without requests are empty.
    """
    chosen = shown_services(run, [service] if service is not None else services(run))
    names = list(chosen.shown)
    span_s = run_span_s(run)
    bin_s = time_bin_s(span_s, SHARES_BINS)
    panels: list[str | None] = [*names] if names else [None]
    fig = new_figure(_PANEL_HEIGHT_IN * len(panels) + 0.3)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, panels, strict=True):
        ax.set_xlim(0.0, span_s)
        if name is None:
            ax.set_title("No requests in this run")
            empty_note(ax, "no requests recorded", keep_x=True)
            continue
        _draw_shares(ax, run, name, bin_s)
    axes[-1].set_xlabel(TIME_LABEL)
    note = services_note(chosen)
    if note:
        fig.suptitle(note, fontsize="small", color=NOTE_COLOUR)
    return fig


def _draw_shares(ax: Axes, run: Run, service: str, bin_s: float) -> None:
    traffic = figure_traffic(run)
    requests = traffic.loc[np.asarray(traffic["service"] == service, dtype=bool)]
    ax.set_title(f"{service}: share of requests per endpoint (per {seconds(bin_s)} bin)")
    ax.set_ylabel("share of requests")
    shares = shares_over_time(requests, bin_s)
    if not len(shares):
        empty_note(ax, "no requests routed to an endpoint", keep_x=True)
        return
    order = endpoint_order(requests, bin_s)
    labels = endpoint_labels(requests)
    colours = endpoint_colours(order)
    table = shares.pivot_table(
        index="bin_start_s", columns="endpoint", values="share", aggfunc="sum", fill_value=0.0
    )
    # Every bin of the run, empty ones at zero, as edges for stepped bands.
    index = np.rint(table.index.to_numpy(dtype=np.float64) / bin_s).astype(np.int64)
    n_bins = max(int(np.ceil(run_span_s(run) / bin_s)), int(index.max()) + 1)
    edges = np.arange(n_bins + 1, dtype=np.float64) * bin_s
    drawn = [e for e in order if e in table.columns]
    named = _named(requests, drawn)
    bottom = np.zeros(n_bins)
    for endpoint in drawn:
        share = np.zeros(n_bins)
        share[index] = table[endpoint].to_numpy(dtype=np.float64)
        label = labels[endpoint] if endpoint in named else None
        filled_steps(ax, bottom + share, edges, bottom, colours[endpoint], label)
        bottom = bottom + share
    unnamed = len(drawn) - len(named)
    if unnamed:
        ax.plot([], [], linestyle="", label=f"+{unnamed:,} more endpoints, not named")
    ax.set_ylim(0.0, 1.0)
    ax.yaxis.set_major_formatter("{x:.0%}")
    legend_outside(ax, ncols=2 if len(order) > 12 else 1)


def _named(requests: pd.DataFrame, drawn: list[str]) -> set[str]:
    """The endpoints the legend names: all, or the :data:`MAX_LEGEND_ENDPOINTS` most routed.

    Ties go to the endpoint that appeared first (``drawn`` is in order of appearance).
    """
    if len(drawn) <= MAX_LEGEND_ENDPOINTS:
        return set(drawn)
    weights = pd.Series(attempt_weights(requests), index=requests.index)
    routed = weights.groupby(requests["endpoint"].astype(str), sort=False).sum()
    ranked = sorted(range(len(drawn)), key=lambda i: (-int(routed.get(drawn[i], 0)), i))
    return {drawn[i] for i in ranked[:MAX_LEGEND_ENDPOINTS]}
