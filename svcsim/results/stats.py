"""Distribution statistics over recorded requests and syncs: pure functions, DataFrames out.

* :func:`endpoint_shares` / :func:`shares_over_time`: where attempts went.
* :func:`stable_intervals` + :func:`uniformity_tests`: does kube-proxy's probability chain
  spread *new flows* evenly over a Service's endpoints while the rules hold still? Only new
  flows are counted: a reused keep-alive connection or an existing conntrack entry does not
  consult the rules (the NAT decision is made once per connection). The test assumes
  independent draws over the set the node's rules choose from; which Services that does not
  fit, and the verdict's words and level, are in :mod:`svcsim.results.uniformity`.
* :func:`programming_latency`: kube-proxy's ``network_programming_duration_seconds``,
  summarised per node.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
from scipy import stats as scipy_stats

from svcsim.results.schema import as_categorical
from svcsim.results.weights import attempt_weights


def _routed(requests: pd.DataFrame, new_flow_only: bool) -> pd.DataFrame:
    """Attempts the node's rules sent to an endpoint (optionally: only new flows)."""
    mask = np.array(requests["endpoint"] != "", dtype=bool)
    if new_flow_only:
        mask &= np.asarray(requests["new_flow"], dtype=bool)
    return requests.loc[mask]


def _count(
    routed: pd.DataFrame, keys: list[str], within: list[str], weights: np.ndarray[Any, Any]
) -> pd.DataFrame:
    """Attempts (rows times ``weights``) per ``keys`` (as str), and each group's share.

    The share is of the group's ``within`` group.
    """
    weighed = routed[keys].assign(requests=weights)
    grouped = weighed.groupby(keys, sort=False, observed=True)["requests"]
    counts = grouped.sum().reset_index()
    for key in keys:
        if counts[key].dtype.kind != "f":
            counts[key] = counts[key].astype(str)
    counts = counts.sort_values(keys, kind="stable").reset_index(drop=True)
    counts["requests"] = counts["requests"].astype(np.int64)
    totals = counts.groupby(within, sort=False)["requests"].transform("sum")
    counts["share"] = (counts["requests"] / totals).astype(np.float64)
    return counts


def endpoint_shares(
    requests: pd.DataFrame,
    *,
    new_flow_only: bool = False,
    endpoint_sets: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Attempts per (service, endpoint) and each endpoint's share of its Service's attempts.

    Counts attempts whose ``endpoint`` is not ``""`` (any outcome: a failed attempt still went
    where the rules sent it); with ``new_flow_only``, only attempts that created a conntrack
    entry. ``requests`` may be a table of counted attempts (``request_counts``). With
    ``endpoint_sets`` (the ``endpoint_sets`` table), endpoints some node's rules
    held but that got no attempt are listed too, with 0 (an endpoint nobody reaches is news).
    Returns columns service (str), endpoint (str), requests (int64), share (float64, in
    [0, 1], summing to 1 per service with attempts), sorted by service then endpoint.
    """
    routed = _routed(requests, new_flow_only)
    counted = _count(routed, ["service", "endpoint"], ["service"], attempt_weights(routed))
    if endpoint_sets is None or not len(endpoint_sets):
        return counted
    # Each distinct (service, set) once: a day-long run has a million changes, few sets.
    distinct = endpoint_sets[["service", "endpoints"]].astype(str).drop_duplicates()
    held = {
        (service, endpoint)
        for service, text in zip(distinct["service"], distinct["endpoints"], strict=True)
        for endpoint in filter(None, text.split(","))
    }
    seen = set(zip(counted["service"], counted["endpoint"], strict=True))
    missing = sorted(held - seen)
    if not missing:
        return counted
    zeros = pd.DataFrame(
        {
            "service": [s for s, _ in missing],
            "endpoint": [e for _, e in missing],
            "requests": np.zeros(len(missing), dtype=np.int64),
            "share": np.zeros(len(missing), dtype=np.float64),
        }
    )
    both = pd.concat([counted, zeros], ignore_index=True)
    return both.sort_values(["service", "endpoint"], kind="stable").reset_index(drop=True)


def shares_over_time(
    requests: pd.DataFrame, bin_s: float, *, new_flow_only: bool = False
) -> pd.DataFrame:
    """Endpoint shares per time bin: like :func:`endpoint_shares`, per ``bin_s`` of ``t_s``.

    Bin ``k`` covers ``[k * bin_s, (k + 1) * bin_s)``. Returns columns service, bin_start_s
    (float64, seconds), endpoint, requests, share (of the service's attempts in that bin),
    sorted by service, bin_start_s, endpoint; bins without attempts are absent.
    """
    if not bin_s > 0:
        raise ValueError(f"bin_s must be positive, got {bin_s!r}")
    routed = _routed(requests, new_flow_only)
    bins = np.floor(routed["t_s"].to_numpy(dtype=np.float64) / bin_s)
    frame = pd.DataFrame(
        {
            "service": routed["service"].to_numpy(),
            "bin_start_s": bins * bin_s,
            "endpoint": routed["endpoint"].to_numpy(),
        }
    )
    keys = ["service", "bin_start_s", "endpoint"]
    return _count(frame, keys, ["service", "bin_start_s"], attempt_weights(routed))


@dataclass(frozen=True, slots=True)
class EndpointSetChange:
    """From ``t_s`` on, ``node``'s rules send ``service`` to exactly ``endpoints``.

    Typically one per (node, service) each time a sync on that node changed the Service's
    endpoint set, plus one when the node first programmed the Service. ``endpoints`` holds
    ``"IP:port"`` strings; an empty set means the Service has no endpoints there.
    """

    t_s: float
    node: str
    service: str
    endpoints: frozenset[str]


def endpoint_set_changes(endpoint_sets: pd.DataFrame) -> list[EndpointSetChange]:
    """The rows of an ``endpoint_sets`` table as :class:`EndpointSetChange` values."""
    rows = zip(
        endpoint_sets["t_s"],
        endpoint_sets["node"],
        endpoint_sets["service"],
        endpoint_sets["endpoints"],
        strict=True,
    )
    return [
        EndpointSetChange(float(t), str(node), str(svc), frozenset(filter(None, text.split(","))))
        for t, node, svc, text in rows
    ]


ChangeLike = (
    EndpointSetChange | tuple[float, str, str, Iterable[str]] | tuple[float, str, Iterable[str]]
)
"""A change as a dataclass, ``(t_s, node, service, endpoints)`` or ``(t_s, service, endpoints)``."""


def stable_intervals(
    changes: Iterable[ChangeLike],
    *,
    start_s: float = 0.0,
    end_s: float = float("inf"),
    per_node: bool = False,
) -> pd.DataFrame:
    """Intervals in which a Service's endpoint set held still, from endpoint-set changes.

    ``changes`` are :class:`EndpointSetChange` values or ``(t_s, node, service, endpoints)``
    tuples (``(t_s, service, endpoints)``: one cluster-wide view, node ``""``), in any order;
    changes at one instant apply together. Without ``per_node`` an
    interval of a service is one in which every node that has reported an endpoint set for it
    holds the same non-empty set and none changes; consecutive intervals with the same set are
    merged (a resync that rewrote the same set does not break stability). With ``per_node``,
    the same per (service, node), and the result has a ``node`` column.

    Intervals are clipped to ``[start_s, end_s)`` (``start_s`` drops a warm-up). Returns columns
    service, [node,] start_s, end_s, endpoints (sorted tuple of str), sorted by service,
    [node,] start_s.
    """
    parsed = [_change(c) for c in changes]
    parsed.sort(key=lambda c: c.t_s)  # stable: equal times keep their input order
    columns = list(_PER_NODE_COLUMNS)
    if per_node:
        return _per_node_frame(_Changes.of(parsed), start_s, end_s)
    rows: list[tuple[Any, ...]] = []
    groups: dict[tuple[str, str], list[EndpointSetChange]] = {}
    for change in parsed:
        key = (change.service, change.node if per_node else "")
        groups.setdefault(key, []).append(change)
    for key, group in sorted(groups.items()):
        state: dict[str, frozenset[str]] = {}
        # (start, set) of each instant: the set agreed by all nodes, or None.
        steps: list[tuple[float, frozenset[str] | None]] = []
        for i, change in enumerate(group):
            state[change.node] = change.endpoints
            if i + 1 < len(group) and group[i + 1].t_s == change.t_s:
                continue
            sets = set(state.values())
            agreed = next(iter(sets)) if len(sets) == 1 else None
            steps.append((change.t_s, agreed or None))
        for lo, hi, endpoints in _merge(steps, end_s):
            lo, hi = max(lo, start_s), min(hi, end_s)
            if hi > lo:
                rows.append((*key, lo, hi, tuple(sorted(endpoints))))
    frame = pd.DataFrame(rows, columns=columns)
    frame["start_s"] = frame["start_s"].astype(np.float64)
    frame["end_s"] = frame["end_s"].astype(np.float64)
    return frame if per_node else frame.drop(columns="node")


def node_intervals(
    endpoint_sets: pd.DataFrame, *, start_s: float = 0.0, end_s: float = float("inf")
) -> pd.DataFrame:
    """``stable_intervals(endpoint_set_changes(endpoint_sets), per_node=True, ...)``, cheaply.

    The same rows, built from the ``endpoint_sets`` table without an object per change or
    per row: service, node and endpoint texts are read as codes (a day's table has millions
    of rows and a few thousand distinct values), each distinct text is parsed once, and the
    result's rows share their strings and tuples.
    """
    services, service_names = _sorted_codes(endpoint_sets["service"])
    nodes, node_names = _sorted_codes(endpoint_sets["node"])
    texts, distinct = _sorted_codes(endpoint_sets["endpoints"])
    parsed = [frozenset(filter(None, text.split(","))) for text in distinct]
    # Texts that parse to one set are one set (as for the changes' frozensets).
    set_of_text, sets = pd.factorize(pd.Series(parsed, dtype=object))
    changes = _Changes(
        t=endpoint_sets["t_s"].to_numpy(dtype=np.float64),
        service=services,
        services=service_names,
        node=nodes,
        nodes=node_names,
        set_codes=np.asarray(set_of_text, dtype=np.int64)[texts],
        sets=list(sets),
    )
    return _per_node_frame(changes, start_s, end_s)


def _sorted_codes(values: pd.Series) -> tuple[npt.NDArray[np.int64], list[str]]:
    """Codes of a string column into its distinct values, sorted (no string per row)."""
    cat = as_categorical(values)
    return np.asarray(cat.codes, dtype=np.int64), [str(v) for v in cat.categories]


@dataclass(frozen=True, slots=True)
class _Changes:
    """Endpoint-set changes as coded columns, in input order.

    ``service``, ``node`` and ``set_codes`` index ``services`` and ``nodes`` (both sorted)
    and ``sets``.
    """

    t: npt.NDArray[np.float64]
    service: npt.NDArray[np.int64]
    services: list[str]
    node: npt.NDArray[np.int64]
    nodes: list[str]
    set_codes: npt.NDArray[np.int64]
    sets: list[frozenset[str]]

    @classmethod
    def of(cls, parsed: Sequence[EndpointSetChange]) -> _Changes:
        services, service_names = pd.factorize(
            np.asarray([c.service for c in parsed], dtype=object), sort=True
        )
        nodes, node_names = pd.factorize(
            np.asarray([c.node for c in parsed], dtype=object), sort=True
        )
        set_codes, sets = pd.factorize(pd.Series([c.endpoints for c in parsed], dtype=object))
        return cls(
            t=np.fromiter((c.t_s for c in parsed), dtype=np.float64, count=len(parsed)),
            service=np.asarray(services, dtype=np.int64),
            services=[str(v) for v in service_names],
            node=np.asarray(nodes, dtype=np.int64),
            nodes=[str(v) for v in node_names],
            set_codes=np.asarray(set_codes, dtype=np.int64),
            sets=list(sets),
        )


_PER_NODE_COLUMNS: Final = ("service", "node", "start_s", "end_s", "endpoints")


def _per_node_frame(changes: _Changes, start_s: float, end_s: float) -> pd.DataFrame:
    """:func:`stable_intervals`' rows with ``per_node``, with array operations.

    Per (service, node) each change sets the node's endpoint set (the last one of an
    instant wins; an empty set holds no interval); runs of equal sets merge; each step lasts
    until the pair's next one, the last until ``max(end_s, t)``; then clipped as there. A
    day-long run has a million such changes, which the general loop takes a minute over.
    The columns are built from codes: rows share their strings and endpoint tuples.
    """
    n = len(changes.t)
    if not n:
        frame = pd.DataFrame([], columns=list(_PER_NODE_COLUMNS))
        frame["start_s"] = frame["start_s"].astype(np.float64)
        frame["end_s"] = frame["end_s"].astype(np.float64)
        return frame
    t = changes.t
    n_nodes = max(len(changes.nodes), 1)
    group = changes.service * n_nodes + changes.node
    # Stable on the input order among equal times (stable_intervals sorts its changes so).
    order = np.lexsort((np.arange(n), t, group))
    g, tt, sc = group[order], t[order], changes.set_codes[order]
    last_of_instant = np.r_[(g[1:] != g[:-1]) | (tt[1:] != tt[:-1]), True]
    g, tt, sc = g[last_of_instant], tt[last_of_instant], sc[last_of_instant]
    last_of_group = np.r_[g[1:] != g[:-1], True]
    hi = np.where(last_of_group, np.maximum(end_s, tt), np.r_[tt[1:], 0.0])
    empty = np.asarray([not s for s in changes.sets], dtype=bool)[sc]
    first_of_group = np.r_[True, g[1:] != g[:-1]]
    prev_empty = np.r_[True, empty[:-1]]
    opens = ~empty & (first_of_group | prev_empty | np.r_[True, sc[1:] != sc[:-1]])
    run = np.cumsum(opens) - 1
    keep = ~empty
    starts = np.flatnonzero(opens)
    run_hi = np.zeros(len(starts), dtype=np.float64)
    np.maximum.at(run_hi, run[keep], hi[keep])  # a run's steps are in time order
    lo = np.maximum(tt[starts], start_s)
    top = np.minimum(run_hi, end_s)
    shown = top > lo
    key = g[starts][shown]
    tuples = np.empty(len(changes.sets), dtype=object)
    tuples[:] = [tuple(sorted(e)) for e in changes.sets]
    return pd.DataFrame(
        {
            "service": np.asarray(changes.services, dtype=object)[key // n_nodes],
            "node": np.asarray(changes.nodes, dtype=object)[key % n_nodes],
            "start_s": lo[shown].astype(np.float64),
            "end_s": top[shown].astype(np.float64),
            "endpoints": tuples[sc[starts][shown]],
        }
    )


def _change(change: ChangeLike) -> EndpointSetChange:
    if isinstance(change, EndpointSetChange):
        return change
    if len(change) == 3:
        t_s, service, endpoints = change
        return EndpointSetChange(float(t_s), "", str(service), frozenset(endpoints))
    t_s, node, service, endpoints = change
    return EndpointSetChange(float(t_s), str(node), str(service), frozenset(endpoints))


def _merge(
    steps: Sequence[tuple[float, frozenset[str] | None]], end_s: float
) -> list[tuple[float, float, frozenset[str]]]:
    """Turn (start, set-or-None) steps into maximal intervals with one non-empty set."""
    out: list[tuple[float, float, frozenset[str]]] = []
    bounds = [t for t, _ in steps[1:]] + [max(end_s, steps[-1][0])]
    for (lo, endpoints), hi in zip(steps, bounds, strict=True):
        if endpoints is None:
            continue
        if out and out[-1][1] == lo and out[-1][2] == endpoints:
            out[-1] = (out[-1][0], hi, endpoints)
        else:
            out.append((lo, hi, endpoints))
    return out


def uniformity_tests(requests: pd.DataFrame, intervals: pd.DataFrame) -> pd.DataFrame:
    """Chi-square test, per service, that new flows spread uniformly over its endpoints.

    ``intervals`` has columns service, start_s, end_s, endpoints (tuple) and optionally node,
    as :func:`stable_intervals` returns; intervals of one service (and node) must not overlap.
    A new flow (``new_flow`` true, ``endpoint`` not ``""``) of that service (and ``src_node``)
    with ``start_s <= t_s < end_s`` counts for its endpoint. Counts of intervals with the same
    endpoint set are pooled; each set of k endpoints with n flows expects n/k per endpoint, and
    :func:`scipy.stats.chisquare` gets all sets at once with ``ddof`` so that the degrees of
    freedom are the sum of (k - 1); ``requests`` may be a table of counted attempts. Flows to
    an endpoint outside the interval's set are not
    tested but reported in ``outside``.

    Returns one row per service in ``intervals``: service, flows (tested), outside, sets,
    statistic, dof, p_value (NaN when dof is 0). Sorted by service.
    """
    flows = _routed(requests, new_flow_only=True)
    # Integer codes, not strings: millions of flows are compared per service and node.
    svc, _, svc_code = _encoded(flows["service"])
    src, _, src_code = _encoded(flows["src_node"])
    endpoint, endpoint_names, _ = _encoded(flows["endpoint"])
    t = flows["t_s"].to_numpy(dtype=np.float64)
    weights = attempt_weights(flows)
    has_node = "node" in intervals.columns
    rows = []
    for service, group in intervals.groupby(intervals["service"].astype(str), sort=True):
        # endpoint set -> endpoint -> count, pooled over this service's intervals
        pooled: dict[tuple[str, ...], dict[str, int]] = {}
        outside = 0
        scopes = group.groupby(group["node"].astype(str)) if has_node else [("", group)]
        for node, scope in scopes:
            mask = svc == svc_code.get(str(service), -1)
            if has_node:
                mask &= src == src_code.get(str(node), -1)
            index = _interval_of(t[mask], scope)
            inside = index >= 0
            n_names = max(len(endpoint_names), 1)
            sizes = np.bincount(
                index[inside] * n_names + endpoint[mask][inside],
                weights=weights[mask][inside],
                minlength=len(scope) * n_names,
            ).reshape(len(scope), n_names)
            for i, eps in enumerate(scope["endpoints"]):
                counts = pooled.setdefault(tuple(sorted(eps)), dict.fromkeys(sorted(eps), 0))
                for j in np.flatnonzero(sizes[i]):
                    name = endpoint_names[int(j)]
                    if name in counts:
                        counts[name] += round(sizes[i, j])
                    else:
                        outside += round(sizes[i, j])
        rows.append((service, *_chisquare(pooled), outside))
    columns = ["service", "flows", "sets", "statistic", "dof", "p_value", "outside"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame[["service", "flows", "outside", "sets", "statistic", "dof", "p_value"]]


def _encoded(values: pd.Series) -> tuple[Any, list[str], dict[str, int]]:
    """Integer codes of a string column, the names by code, and the code of each name."""
    cat = as_categorical(values)
    names = [str(v) for v in cat.categories]
    return np.asarray(cat.codes, dtype=np.int64), names, {n: i for i, n in enumerate(names)}


def _interval_of(t: np.ndarray[Any, Any], scope: pd.DataFrame) -> np.ndarray[Any, Any]:
    """Index (row position in ``scope``) of the interval holding each time, -1 if none."""
    starts = scope["start_s"].to_numpy(dtype=np.float64)
    ends = scope["end_s"].to_numpy(dtype=np.float64)
    order = np.argsort(starts, kind="stable")
    if (starts[order][1:] < ends[order][:-1]).any():
        raise ValueError("intervals overlap")
    pos = np.searchsorted(starts[order], t, side="right") - 1
    inside = (pos >= 0) & (t < ends[order][np.maximum(pos, 0)])
    return np.where(inside, order[np.maximum(pos, 0)], -1)


def _chisquare(pooled: dict[tuple[str, ...], dict[str, int]]) -> tuple[int, int, float, int, float]:
    """(flows, sets, statistic, dof, p_value) over the pooled endpoint sets."""
    observed: list[float] = []
    expected: list[float] = []
    sets = 0
    for counts in pooled.values():
        n = sum(counts.values())
        if n == 0 or len(counts) < 2:
            continue  # nothing to test: no flows, or one endpoint takes all
        sets += 1
        observed.extend(float(c) for c in counts.values())
        expected.extend([n / len(counts)] * len(counts))
    flows = int(sum(observed))
    dof = len(observed) - sets
    if dof == 0:
        return flows, sets, float("nan"), 0, float("nan")
    result = scipy_stats.chisquare(observed, expected, ddof=sets - 1)
    return flows, sets, float(result.statistic), dof, float(result.pvalue)


def programming_latency(syncs: pd.DataFrame) -> pd.DataFrame:
    """Network programming latency per node: count, p50, p90, p99 and max in seconds.

    Uses the ``programming_latency_s`` of each sync: the largest latency of the changes it
    applied that carried a ``last-change-trigger-time``; NaN rows (no such change: a periodic
    sync, a failed one, or one whose changes had no trigger time) are skipped. Returns columns
    node, syncs_with_trigger (int64: syncs with a latency; *not* all syncs, which the
    ``syncs`` table counts), p50_s, p90_s, p99_s, max_s (float64; NaN when the node has none), one
    row per node in ``syncs``, sorted by node. Percentiles interpolate linearly (numpy's
    default).
    """
    # Grouped on the node's codes, not a string per row: a day has millions of syncs.
    keys = pd.Series(as_categorical(syncs["node"]), index=syncs.index)
    latency = pd.Series(syncs["programming_latency_s"].to_numpy(dtype=np.float64), index=keys.index)
    rows = []
    for name, group in latency.groupby(keys, sort=True, observed=True):
        node = str(name)
        values = group.to_numpy()
        values = values[~np.isnan(values)]
        if len(values):
            p50, p90, p99 = np.percentile(values, [50, 90, 99])
            rows.append(
                (node, len(values), float(p50), float(p90), float(p99), float(values.max()))
            )
        else:
            rows.append((node, 0, np.nan, np.nan, np.nan, np.nan))
    columns = ["node", "syncs_with_trigger", "p50_s", "p90_s", "p99_s", "max_s"]
    out = pd.DataFrame(rows, columns=columns)
    out["syncs_with_trigger"] = out["syncs_with_trigger"].astype(np.int64)
    return out
