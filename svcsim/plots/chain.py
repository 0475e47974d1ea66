"""The probability-chain check: whether each endpoint gets 1/N of the new flows.

kube-proxy's ``KUBE-SVC`` chain gives rule k the probability 1/(N-k) so that every endpoint
gets 1/N of the new connections. :func:`chain_check` tests that on a run: in the intervals in
which a Service's rules held still on every node, it counts the *new* flows (attempts that
created a conntrack entry; reused connections do not consult the rules) per endpoint, and draws
each endpoint's observed share with its 95% Clopper–Pearson interval against 1/N.

Stable intervals are the complement of the Service's unsettled time: from each of its
EndpointSlice updates until every node has programmed it
(:func:`svcsim.plots.staleness.stale_intervals`). The endpoint set of a stable interval is
the set of endpoints its new flows reached (so an interval needs :data:`MIN_FLOWS_PER_ENDPOINT`
new flows per endpoint to count); intervals with the same set are pooled.

:func:`chain_picks` draws the same picture for ``svcsim chain``'s Monte Carlo picks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy import stats as scipy_stats

from svcsim.plots.events import services
from svcsim.plots.select import NOTE_COLOUR, services_note, shown_services
from svcsim.plots.shares import endpoint_labels
from svcsim.plots.staleness import STALE, stale_intervals, union_arrays
from svcsim.plots.style import (
    empty_note,
    legend_outside,
    new_figure,
    run_span_s,
    seconds,
    series_colour,
)
from svcsim.plots.view import figure_traffic
from svcsim.results import Run
from svcsim.results.weights import attempt_weights

MAX_SETS: Final = 4
"""Endpoint sets drawn per Service: those with the most new flows."""
MIN_FLOWS_PER_ENDPOINT: Final = 10
"""A stable interval counts only with this many new flows per endpoint seen in it: with fewer,
an endpoint could get no flow by chance (probability about e^-10 at this level) and the
interval would seem to have a smaller endpoint set."""
_PANEL_HEIGHT_IN: Final = 4.0
_MAX_CHAIN_POINTS: Final = 50
_STABLE_MEMO: Final = "stable_windows"
"""Key of :func:`stable_windows`' results (by Service) in ``Run.memo``."""


def clopper_pearson(
    counts: Sequence[int] | npt.NDArray[np.integer], level: float = 0.95
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Exact (Clopper–Pearson) binomial intervals for each count's share of the total.

    Returns ``(lower, upper)`` arrays in [0, 1]. The same formula as
    ``svcsim.proxy.probability.binomial_confidence_intervals``, kept here because plots read
    only results (the layering of DESIGN.md).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level {level!r} is outside (0, 1)")
    k = np.asarray(counts, dtype=np.float64)
    total = k.sum()
    alpha = 1.0 - level
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = scipy_stats.beta.ppf(alpha / 2, k, total - k + 1)
        upper = scipy_stats.beta.ppf(1 - alpha / 2, k + 1, total - k)
    lower = np.where(k == 0, 0.0, lower)
    upper = np.where(k == total, 1.0, upper)
    return np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class EndpointSetCheck:
    """New flows of one Service over the stable intervals with one endpoint set.

    ``endpoints`` are sorted ``IP:port`` strings with their ``counts`` of new flows;
    ``intervals`` the (start_s, end_s) stable intervals pooled; ``p_value`` of a chi-square
    test against equal shares (NaN for a single endpoint).
    """

    service: str
    endpoints: tuple[str, ...]
    counts: tuple[int, ...]
    intervals: tuple[tuple[float, float], ...]
    p_value: float

    @property
    def flows(self) -> int:
        """New flows counted."""
        return sum(self.counts)


def stable_windows(run: Run, service: str) -> list[tuple[float, float]]:
    """Intervals (s) in which ``service``'s rules held still on every node (module docstring).

    Computed once per run and Service (kept in ``run.memo``): the folded view of a counted
    run and the chain check both ask.
    """
    memo = run.memo.setdefault(_STABLE_MEMO, {})
    found = memo.get(service)
    if found is None:
        found = memo[service] = _stable_windows(run, service)
    return list(found)


def _stable_windows(run: Run, service: str) -> list[tuple[float, float]]:
    span_s = run_span_s(run)
    stale = stale_intervals(run, service)
    stale = stale.loc[np.asarray(stale["reason"] == STALE, dtype=bool)]
    lo, hi = union_arrays(
        stale["start_s"].to_numpy(dtype=np.float64), stale["end_s"].to_numpy(dtype=np.float64)
    )
    # The gaps between the unsettled spans (disjoint and sorted), from 0 to the run's end:
    # before each span, from the furthest end so far (a span may reach past the run's end).
    cursor = np.maximum.accumulate(np.r_[0.0, hi])
    gap = lo > cursor[:-1]
    starts = np.r_[cursor[:-1][gap], cursor[-1:]]
    ends = np.r_[np.minimum(lo[gap], span_s), [span_s]]
    if not cursor[-1] < span_s:
        starts, ends = starts[:-1], ends[:-1]
    keep = ends > starts
    return list(zip(starts[keep].tolist(), ends[keep].tolist(), strict=True))


def endpoint_set_checks(run: Run, service: str) -> list[EndpointSetCheck]:
    """Per endpoint set of ``service``'s stable intervals, the pooled new-flow counts.

    Sorted by flows, most first.
    """
    requests = figure_traffic(run)
    mask = np.array(requests["service"] == service, dtype=bool)
    mask &= np.asarray(requests["new_flow"], dtype=bool)
    mask &= np.asarray(requests["endpoint"] != "", dtype=bool)
    t = requests.loc[mask, "t_s"].to_numpy(dtype=np.float64)
    weights = attempt_weights(requests.loc[mask])
    # Integer codes, not strings: there may be millions of flows.
    endpoint_cat = pd.Categorical(requests.loc[mask, "endpoint"])
    names_of = np.asarray([str(c) for c in endpoint_cat.categories], dtype=object)
    endpoint = np.asarray(endpoint_cat.codes, dtype=np.int64)
    pooled: dict[tuple[str, ...], tuple[dict[str, int], list[tuple[float, float]]]] = {}
    for lo, hi in stable_windows(run, service):
        inside = (t >= lo) & (t < hi)
        per_code = np.bincount(endpoint[inside], weights=weights[inside], minlength=len(names_of))
        codes = np.flatnonzero(per_code)
        counts = per_code[codes].round().astype(np.int64)
        if counts.sum() < MIN_FLOWS_PER_ENDPOINT * len(codes) or not len(codes):
            continue  # too few flows to trust that every endpoint showed up
        order = np.argsort(names_of[codes], kind="stable")
        codes, counts = codes[order], counts[order]
        key = tuple(str(n) for n in names_of[codes])
        tally, spans = pooled.setdefault(key, (dict.fromkeys(key, 0), []))
        for name, count in zip(key, counts, strict=True):
            tally[name] += int(count)
        spans.append((lo, hi))
    checks = []
    for key, (tally, spans) in pooled.items():
        observed = [tally[k] for k in key]
        p_value = float("nan")
        if len(key) > 1:
            p_value = float(scipy_stats.chisquare(observed).pvalue)
        checks.append(EndpointSetCheck(service, key, tuple(observed), tuple(spans), p_value))
    checks.sort(key=lambda c: (-c.flows, c.intervals[0][0]))
    return checks


def chain_check(run: Run, service: str | None = None) -> Figure:
    """Observed share of new flows per endpoint with 95% intervals, against 1/N.

    One panel per Service (or just ``service``); within it one group per endpoint set of its
    stable intervals (at most :data:`MAX_SETS`, most flows first), each with a dashed line at
    1/N and a note of its time span, flows and chi-square p-value. The panel title carries the
    run summary's pooled uniformity p-value when the summary has one.
    """
    chosen = shown_services(run, [service] if service is not None else services(run))
    names = list(chosen.shown)
    panels: list[str | None] = [*names] if names else [None]
    fig = new_figure(_PANEL_HEIGHT_IN * len(panels) + 0.3)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, name in zip(axes, panels, strict=True):
        if name is None:
            ax.set_title("Probability-chain check: no requests in this run")
            empty_note(ax, "no requests recorded")
            continue
        _draw_checks(ax, run, name)
    note = services_note(chosen)
    if note:
        fig.suptitle(note, fontsize="small", color=NOTE_COLOUR)
    return fig


def _draw_checks(ax: Axes, run: Run, service: str) -> None:
    pooled = run.summary.get("uniformity", {}).get(service, {}).get("p_value")
    suffix = f"; pooled χ² p = {pooled:.3g}" if isinstance(pooled, float) else ""
    ax.set_title(f"{service}: share of new flows per endpoint (stable intervals{suffix})")
    ax.set_ylabel("share of new flows")
    checks = endpoint_set_checks(run, service)[:MAX_SETS]
    if not checks:
        empty_note(ax, "no new flows in stable intervals")
        return
    traffic = figure_traffic(run)
    service_requests = traffic.loc[np.asarray(traffic["service"] == service, dtype=bool)]
    labels = endpoint_labels(service_requests)
    ticks: list[float] = []
    tick_labels: list[str] = []
    low, high = 1.0, 0.0
    x0 = 0.0
    for g, check in enumerate(checks):
        n = len(check.endpoints)
        counts = np.asarray(check.counts, dtype=np.int64)
        share = counts / counts.sum()
        lower, upper = clopper_pearson(counts)
        x = x0 + np.arange(n, dtype=np.float64)
        colour = series_colour(g)
        ax.errorbar(
            x,
            share,
            yerr=np.vstack([share - lower, upper - share]),
            fmt="o",
            color=colour,
            markersize=5,
            capsize=3,
            label="observed share, 95% Clopper–Pearson" if g == 0 else None,
        )
        ax.hlines(1 / n, x[0] - 0.4, x[-1] + 0.4, colors="black", linestyles="--", linewidth=1,
                  label="fair share 1/N" if g == 0 else "_nolegend_")  # fmt: skip
        p_text = "p = n/a (one endpoint)" if n == 1 else f"χ² p = {check.p_value:.3g}"
        ax.annotate(
            f"{_spans(check.intervals)}\nN = {n}, {check.flows:,} new flows\n{p_text}",
            xy=((x[0] + x[-1]) / 2, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(0, -4),
            textcoords="offset points",
            ha="center",
            va="top",
            fontsize="x-small",
        )
        low = min(low, float(lower.min()), 1 / n)
        high = max(high, float(upper.max()), 1 / n)
        ticks.extend(x.tolist())
        tick_labels.extend(labels.get(e, e) for e in check.endpoints)
        x0 += n + 1.0
    ax.set_xticks(ticks, tick_labels, rotation=30, ha="right", fontsize="x-small")
    ax.set_xlim(-0.7, x0 - 0.3 - 1.0)
    # At least 0.1 of height, so a lone endpoint's share of 1 does not fill a zoomed axis;
    # headroom above for the group notes.
    pad = max(0.0, 0.1 - (high - low)) / 2
    low, high = low - pad, high + pad
    span = high - low
    ax.set_ylim(max(0.0, low - 0.1 * span), high + 0.5 * span)
    legend_outside(ax)


def _spans(intervals: Sequence[tuple[float, float]]) -> str:
    """``"0–20 s"`` or ``"0–20 s + 2 more (55 s)"`` for a group's pooled intervals."""
    first = f"{intervals[0][0]:.3g}–{intervals[0][1]:.3g} s"
    if len(intervals) == 1:
        return first
    total = sum(hi - lo for lo, hi in intervals)
    return f"{first} + {len(intervals) - 1} more ({seconds(total)} in all)"


def chain_picks(
    counts: npt.NDArray[np.int64],
    exact: Sequence[float],
    *,
    naive: bool,
    seed: int,
    nftables: bool = False,
) -> Figure:
    """``svcsim chain --plot``: share of Monte Carlo picks per rule position vs exact and 1/N.

    ``nftables``: the picks of nftables mode's ``numgen random mod N vmap`` rule.
    """
    n = len(counts)
    samples = int(counts.sum())
    shares = counts / samples
    lower, upper = clopper_pearson(counts)
    index = np.arange(n)
    fig = new_figure(5.0, 9.0)
    ax = fig.add_subplot()
    if n <= _MAX_CHAIN_POINTS:
        ax.errorbar(
            index,
            shares,
            yerr=np.vstack([shares - lower, upper - shares]),
            fmt="o",
            markersize=5,
            capsize=3,
            label="observed share (95% Clopper-Pearson CI)",
        )
        ax.plot(index, exact, "x", markersize=5, zorder=3, label="exact P(endpoint)")
    else:
        # Hundreds of error bars merge into a blur; a band reads better.
        ax.fill_between(index, lower, upper, alpha=0.3, linewidth=0, label="95% Clopper-Pearson CI")
        ax.plot(index, shares, ".", markersize=2, label="observed share")
        ax.plot(index, exact, "-", linewidth=1, label="exact P(endpoint)")
    ax.axhline(
        1 / n, color="black", linestyle="--", linewidth=1, label=f"fair share 1/N = {1 / n:.4g}"
    )
    kind = "naive chain (every rule 1/N)" if naive else "kube-proxy chain"
    where = "rule position in the KUBE-SVC chain"
    if nftables:
        kind, where = "kube-proxy nftables numgen", "numgen value in the vmap"
    ax.set_title(f"{kind}, N={n}: share of {samples:,} picks per endpoint (seed {seed})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"endpoint index ({where})")
    ax.set_ylabel("share of new connections (fraction of picks)")
    ax.legend(loc="best", fontsize="small")
    return fig
