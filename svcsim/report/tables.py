"""The report's tables: a run's summary numbers as rows of text, ready to be rendered.

Numbers come from ``summary.json`` (:attr:`Run.summary`, what ``svcsim run`` printed) and,
for the failure windows and endpoint shares, from the loaded tables; nothing is recomputed
differently from the summary. Cells are plain text; the HTML renderer escapes them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from svcsim.plots import endpoint_labels
from svcsim.plots.view import figure_traffic
from svcsim.results import Outcome, Run
from svcsim.results.uniformity import uniformity_verdict

MAX_WINDOW_ROWS: Final = 200
"""Failure windows listed in full; the rest are counted in a note (windows.json has all)."""


@dataclass(frozen=True, slots=True)
class Table:
    """A titled table of text cells; ``numeric[i]`` right-aligns column i."""

    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...]
    note: str = ""
    empty: str = "none"
    """What to show instead of an empty table."""
    key: str = ""
    """A stable identifier (HTML id)."""


def count(value: Any) -> str:
    """An integer with thousands separators; ``-`` when missing."""
    if value is None:
        return "-"
    return f"{int(value):,}"


def secs(value: Any, digits: int = 3) -> str:
    """Seconds with fixed decimals; ``-`` for missing or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{float(value):.{digits}f}"


def percent(part: float, whole: float) -> str:
    """``part`` as a percentage of ``whole`` with two decimals; ``-`` when whole is 0.

    A share that is not zero never reads as zero: below 0.005 % it is ``< 0.01 %`` (22
    timeouts in 540,999 attempts are not "0.00 %").
    """
    if not whole:
        return "-"
    share = 100.0 * part / whole
    return "< 0.01 %" if 0 < share < 0.005 else f"{share:.2f} %"


def p_value(value: Any) -> str:
    """A p-value with 4 significant digits; ``-`` when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{float(value):.4g}"


def _mix(counts: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {int(v):,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def outcome_table(summary: Mapping[str, Any]) -> Table:
    """Requests by outcome, with each outcome's share of all attempts."""
    requests = summary.get("requests", {})
    by_outcome: Mapping[str, Any] = requests.get("by_outcome", {})
    total = int(requests.get("total", sum(by_outcome.values())))
    order = [o.value for o in Outcome]
    names = [o for o in order if o in by_outcome] + sorted(set(by_outcome) - set(order))
    rows = [(name, count(by_outcome[name]), percent(by_outcome[name], total)) for name in names]
    rows.append(("total", count(total), percent(total, total)))
    return Table(
        "Requests by outcome",
        ("outcome", "attempts", "share"),
        tuple(rows),
        (False, True, True),
        key="outcomes",
    )


def cause_table(summary: Mapping[str, Any]) -> Table:
    """Failed attempts by cause."""
    requests = summary.get("requests", {})
    by_cause: Mapping[str, Any] = requests.get("by_cause", {})
    failed = int(requests.get("failed", sum(by_cause.values())))
    rows = [
        (cause, count(n), percent(n, failed))
        for cause, n in sorted(by_cause.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return Table(
        "Failed attempts by cause",
        ("cause", "attempts", "share of failed"),
        tuple(rows),
        (False, True, True),
        empty="no failed attempts",
        key="causes",
    )


def window_table(run: Run) -> Table:
    """Failure windows in start order: service, node, start, end, duration, counts, cause."""
    windows = run.windows
    rows = []
    for w in windows.head(MAX_WINDOW_ROWS).itertuples(index=False):
        rows.append(
            (
                str(w.service),
                str(w.node),
                secs(w.start_s),
                secs(w.end_s),
                secs(float(w.end_s) - float(w.start_s)),
                count(w.failed),
                count(w.total),
                str(w.cause),
                _mix(w.outcomes),
            )
        )
    hidden = len(windows) - len(rows)
    note = f"{hidden:,} more windows not shown; windows.json lists all." if hidden > 0 else ""
    return Table(
        "Failure windows",
        (
            "service",
            "node",
            "start (s)",
            "end (s)",
            "duration (s)",
            "failed",
            "attempts",
            "cause",
            "outcomes",
        ),
        tuple(rows),
        (False, False, True, True, True, True, True, False, False),
        note=note,
        empty="no failure windows: every attempt succeeded",
        key="windows",
    )


def endpoint_table(run: Run) -> Table:
    """Each endpoint's share of its Service's routed attempts, labelled with its Pod."""
    labels = endpoint_labels(figure_traffic(run))
    rows = [
        (
            str(e.service),
            labels.get(str(e.endpoint), str(e.endpoint)),
            count(e.requests),
            f"{100.0 * float(e.share):.2f} %",
        )
        for e in run.endpoints.itertuples(index=False)
    ]
    return Table(
        "Requests per endpoint",
        ("service", "endpoint: Pod (IP:port)", "attempts", "share of service"),
        tuple(rows),
        (False, False, True, True),
        empty="no attempt reached an endpoint",
        key="endpoints",
    )


def uniformity_table(summary: Mapping[str, Any]) -> Table:
    """The chi-square uniformity test per Service (new flows in stable intervals)."""
    uniformity: Mapping[str, Mapping[str, Any]] = summary.get("uniformity", {})
    rows = [
        (
            service,
            count(u.get("flows")),
            count(u.get("sets")),
            secs(u.get("statistic"), 3),
            count(u.get("dof")),
            p_value(u.get("p_value")),
            str(u.get("verdict") or uniformity_verdict(u.get("p_value"))),
        )
        for service, u in sorted(uniformity.items())
    ]
    return Table(
        "Uniformity of new flows over endpoints (chi-square, stable intervals)",
        ("service", "new flows", "endpoint sets", "statistic", "dof", "p-value", "verdict"),
        tuple(rows),
        (False, True, True, True, True, True, False),
        empty="not computed for this run",
        key="uniformity",
    )


def node_table(summary: Mapping[str, Any]) -> Table:
    """Per node: syncs run, network programming latency (p50/p90/max) and conntrack peak.

    "syncs run" counts every sync (``summary.json`` ``syncs.total``); the latency is over the
    syncs with a trigger time (``programming_latency.syncs_with_trigger``): the same numbers
    and names as ``svcsim run`` prints.
    """
    latency: Mapping[str, Mapping[str, Any]] = summary.get("programming_latency", {})
    syncs: Mapping[str, Mapping[str, Any]] = summary.get("syncs", {})
    conntrack: Mapping[str, Mapping[str, Any]] = summary.get("conntrack", {})
    rows = []
    for node in sorted(set(latency) | set(syncs) | set(conntrack)):
        lat, sync, ct = latency.get(node, {}), syncs.get(node, {}), conntrack.get(node, {})
        peak = ct.get("peak_entries")
        limit = ct.get("max_entries")
        rows.append(
            (
                node,
                count(sync.get("total")),
                count(sync.get("failed")),
                count(lat.get("syncs_with_trigger")),
                secs(lat.get("p50_s")),
                secs(lat.get("p90_s")),
                secs(lat.get("max_s")),
                f"{count(peak)} / {count(limit)}" if peak is not None else "-",
            )
        )
    return Table(
        "Per node: kube-proxy syncs, network programming latency, conntrack",
        (
            "node",
            "syncs run",
            "failed",
            "with trigger time",
            "programming p50 (s)",
            "p90 (s)",
            "max (s)",
            "conntrack peak / max",
        ),
        tuple(rows),
        (False, True, True, True, True, True, True, True),
        key="nodes",
    )


def summary_tables(run: Run) -> Sequence[Table]:
    """Every table of the report, in order."""
    summary = run.summary
    return (
        outcome_table(summary),
        cause_table(summary),
        window_table(run),
        endpoint_table(run),
        uniformity_table(summary),
        node_table(summary),
    )
