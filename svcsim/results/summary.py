"""The run summary (``summary.json``) and deterministic JSON.

:func:`build_summary` condenses the record tables into the numbers the CLI prints and the
notebooks start from. :func:`dumps_json` is the one JSON writer of a run folder: sorted keys,
two-space indent, NaN/inf as ``null``, numpy scalars and arrays as plain JSON, a final newline;
the same value always gives the same bytes.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from svcsim.results.schema import Cause, EventKind, Outcome, as_categorical
from svcsim.results.stats import endpoint_shares, programming_latency, uniformity_tests
from svcsim.results.uniformity import uniformity_verdict
from svcsim.results.weights import attempt_weights, traffic_table
from svcsim.results.windows import FailureWindow

if TYPE_CHECKING:
    from svcsim.results.fold import TrafficFold


def to_jsonable(value: object) -> Any:
    """``value`` as plain JSON data: NaN/inf → None, numpy → Python, tuples/sets → lists.

    Mapping keys become strings. Sets are sorted so their order does not depend on hashing.
    Raises :class:`TypeError` for anything else (no silent ``str()``).
    """
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, FailureWindow):
        return to_jsonable(value.to_dict())
    if isinstance(value, bytes | bytearray):
        raise TypeError("bytes are not JSON data")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {str(to_jsonable(k)): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((to_jsonable(v) for v in value), key=repr)
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, Sequence):
        return [to_jsonable(v) for v in value]
    raise TypeError(f"not JSON data: {type(value).__name__} {value!r}")


def dumps_json(value: object) -> str:
    """Deterministic JSON text of ``value`` (see the module docstring)."""
    text = json.dumps(
        to_jsonable(value), sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False
    )
    return text + "\n"


def _counts(
    values: pd.Series, categories: list[str], weights: np.ndarray[Any, Any] | None = None
) -> dict[str, int]:
    codes = np.asarray(as_categorical(values, categories).codes, dtype=np.int64)
    counts = np.bincount(codes, weights=weights, minlength=len(categories)).round()
    return {name: int(n) for name, n in zip(categories, counts, strict=True)}


def build_summary(
    frames: Mapping[str, pd.DataFrame],
    windows: Sequence[FailureWindow],
    *,
    seed: int | None,
    intervals: pd.DataFrame | None = None,
    untested: Mapping[str, str] | None = None,
    traffic: TrafficFold | None = None,
) -> dict[str, Any]:
    """The ``summary.json`` content of a run, as JSON-ready data.

    ``frames`` are the record tables (``requests``, ``syncs``, ``events``, ``conntrack``; see
    :mod:`svcsim.results.schema`; a run at record level ``failures-and-aggregates`` counts its
    attempts in ``request_counts`` and keeps only the failed ones in ``requests``, which
    gives the same summary), ``windows`` the run's failure windows, ``intervals`` the
    stable intervals for the uniformity test (:func:`~svcsim.results.stats.stable_intervals`;
    without them ``uniformity`` is empty), ``untested`` the Service ports whose spread is not
    uniform by design, with the reason
    (:func:`~svcsim.results.uniformity.untested_service_ports`). Keys:

    * ``seed``: the run's seed.
    * ``requests``: ``total``, ``failed``, ``by_outcome`` (every outcome, zeros included),
      ``by_cause`` (causes of failed attempts, non-zero only).
    * ``failure_windows``: list of {service, node, start_s, end_s, last_end_s, failed, total,
      cause, outcomes}, in start order (start_s/end_s: send times of the first and last
      failed attempt; see :class:`~svcsim.results.windows.FailureWindow`).
    * ``endpoints``: {service: {endpoint: {requests, share}}} over all routed attempts.
    * ``uniformity``: {service: {flows, outside, sets, statistic, dof, p_value, verdict}};
      ``verdict`` is :func:`~svcsim.results.uniformity.uniformity_verdict`'s text, the one
      every reader shows; statistic, dof and p_value are null for an untested Service.
    * ``programming_latency``: {node: {syncs_with_trigger, p50_s, p90_s, p99_s, max_s}} in
      seconds, over the syncs that applied a change with a trigger time
      (:func:`~svcsim.results.stats.programming_latency`).
    * ``programming_latency_all_nodes``: the same fields over every node's syncs together
      (one sample per sync; empty when the run has no syncs): what a sweep compares.
    * ``syncs``: {node: {total, failed}}: every sync kube-proxy ran on the node (its
      ``sync_proxy_rules_duration_seconds`` count), and those that failed;
      ``events``: {kind: count} (non-zero only);
      ``conntrack``: {node: {peak_entries, max_entries}}.

    ``traffic``, when given, is the attempts already folded
    (:func:`~svcsim.results.fold.fold_traffic`, with ``intervals`` if any): the request
    counts, endpoints and uniformity come from it and the attempt tables of ``frames`` are
    not read (a long run's counted attempts stay on disk); the summary is the same.

    NaN values become ``null`` when written (:func:`dumps_json`).
    """
    requests = frames["requests"]
    if traffic is None:
        table = traffic_table(frames)
        weights = attempt_weights(table)
        outcomes = [o.value for o in Outcome]
        by_outcome = _counts(table["outcome"], outcomes, weights)
        total = int(weights.sum())
        shares = endpoint_shares(table, endpoint_sets=frames.get("endpoint_sets"))
        tests = uniformity_tests(table, intervals) if intervals is not None else None
    else:
        by_outcome, total, shares = traffic.by_outcome, traffic.total, traffic.endpoints
        tests = traffic.uniformity
    failed = requests.loc[(requests["outcome"] != Outcome.OK.value).to_numpy(dtype=bool)]
    by_cause = _counts(failed["cause"], [c.value for c in Cause])
    endpoints: dict[str, dict[str, dict[str, Any]]] = {}
    for row in shares.itertuples(index=False):
        endpoints.setdefault(row.service, {})[row.endpoint] = {
            "requests": int(row.requests),
            "share": float(row.share),
        }
    uniformity: dict[str, dict[str, Any]] = {}
    if tests is not None:
        reasons = untested or {}
        for row in tests.itertuples(index=False):
            reason = reasons.get(row.service)
            tested = reason is None
            uniformity[row.service] = {
                "flows": int(row.flows),
                "outside": int(row.outside),
                "sets": int(row.sets),
                "statistic": float(row.statistic) if tested else None,
                "dof": int(row.dof) if tested else None,
                "p_value": float(row.p_value) if tested else None,
                "verdict": uniformity_verdict(float(row.p_value), not_tested=reason),
            }
    summary = {
        "seed": seed,
        "requests": {
            "total": total,
            "failed": len(failed),
            "by_outcome": by_outcome,
            "by_cause": {k: v for k, v in by_cause.items() if v},
        },
        "failure_windows": [
            {k: v for k, v in w.to_dict().items() if k != "causes"} for w in windows
        ],
        "endpoints": endpoints,
        "uniformity": uniformity,
        "programming_latency": _programming_latency(frames),
        "programming_latency_all_nodes": _programming_latency_all_nodes(frames),
        "syncs": _syncs(frames),
        "events": _events(frames),
        "conntrack": _conntrack(frames),
    }
    result: dict[str, Any] = to_jsonable(summary)
    return result


def _programming_latency(frames: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    if "syncs" not in frames:
        return {}
    table = programming_latency(frames["syncs"])
    return {
        row.node: {
            "syncs_with_trigger": int(row.syncs_with_trigger),
            "p50_s": row.p50_s,
            "p90_s": row.p90_s,
            "p99_s": row.p99_s,
            "max_s": row.max_s,
        }
        for row in table.itertuples(index=False)
    }


def _programming_latency_all_nodes(frames: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    if "syncs" not in frames or len(frames["syncs"]) == 0:
        return {}
    # One group: percentiles over every sync (no copy of the table with a constant node).
    pooled = frames["syncs"][["programming_latency_s"]].assign(node="all")
    latency: dict[str, Any] = _programming_latency({"syncs": pooled})["all"]
    return latency


def _syncs(frames: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    if "syncs" not in frames or len(frames["syncs"]) == 0:
        return {}
    table = frames["syncs"]
    # Grouped on the node's codes, not a string per row: a day has millions of syncs.
    node = pd.Series(as_categorical(table["node"]), index=table.index)
    failed = ~table["ok"].astype(bool)
    grouped = failed.groupby(node, sort=True, observed=True).agg(["size", "sum"])
    return {
        str(node): {"total": int(row["size"]), "failed": int(row["sum"])}
        for node, row in grouped.iterrows()
    }


def _events(frames: Mapping[str, pd.DataFrame]) -> dict[str, int]:
    if "events" not in frames:
        return {}
    counts = _counts(frames["events"]["kind"], [k.value for k in EventKind])
    return {k: v for k, v in counts.items() if v}


def _conntrack(frames: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    if "conntrack" not in frames or len(frames["conntrack"]) == 0:
        return {}
    samples = frames["conntrack"]
    # Grouped on the node's codes, not a string per row: a day has millions of samples.
    node = pd.Series(as_categorical(samples["node"]), index=samples.index)
    table = pd.DataFrame(
        {
            "entries": samples["entries"].astype(np.int64),
            "max_entries": samples["max_entries"].astype(np.int64),
        }
    )
    grouped = table.groupby(node, sort=True, observed=True).agg(
        peak_entries=("entries", "max"), max_entries=("max_entries", "max")
    )
    return {
        str(node): {
            "peak_entries": int(row["peak_entries"]),
            "max_entries": int(row["max_entries"]),
        }
        for node, row in grouped.iterrows()
    }
