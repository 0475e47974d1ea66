"""Control-plane events of a run, sorted out per Service and per node for the figures.

The ``events`` table is generic (kind, node, object, detail), so tying an event to a Service
follows these conventions, all of which the simulation's recorder is free to use:

* An EndpointSlice update (``slice-updated``) concerns Service ``ns/name`` when its ``detail``
  holds the token ``service=ns/name`` (a ``:port`` suffix is ignored), which is what the
  simulation's EndpointSlice controller writes. Without such a token, the ``object`` decides:
  ``service/ns/name`` or ``endpoints/ns/name``, or a slice key with or without a kind prefix
  (``endpointslice/ns/name-xxxxx``, ``ns/name-xxxxx``: a generated name is the Service's name
  plus a 5-character suffix). When no slice update of the run can be tied to any Service,
  every slice update is taken to concern every Service (the cautious reading: more time
  counts as unsettled, never less).
* A Pod event (``pod-*``, ``ip-released``; ``object`` ``ns/name``, ``pod/ns/name`` or a bare
  name) concerns the Services whose requests reached a Pod of that name (the ``pod`` column of
  ``requests``, compared by name). A Pod no request ever reached is shown for every Service.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from svcsim.plots.view import figure_traffic, traffic_nodes
from svcsim.results import EventKind, Run

POD_EVENT_KINDS: Final[tuple[str, ...]] = (
    EventKind.POD_SCHEDULED.value,
    EventKind.POD_READY.value,
    EventKind.POD_NOT_READY.value,
    EventKind.POD_TERMINATING.value,
    EventKind.POD_EXITED.value,
    EventKind.IP_RELEASED.value,
    # Recorded by the simulation's Pod lifecycle (container crash and restart).
    "pod-crashed",
    "pod-restarted",
)
"""Event kinds drawn as Pod changes."""

_GENERATED_SUFFIX: Final = re.compile(r"-[a-z0-9]{5}$")
_SERVICE_TOKEN: Final = re.compile(r"(?:^|\s)service=(\S+)")
_KINDS_MEMO: Final = "event_kinds"
_SLICE_UPDATES_MEMO: Final = "slice_updates"
"""Keys of what this module computes once per run, in ``Run.memo``."""


def service_key(service: str) -> str:
    """``"ns/name"`` of a Service port ``"ns/name:port"`` (or of ``"ns/name"`` itself)."""
    head, sep, tail = service.rpartition(":")
    return head if sep and "/" not in tail else service


def services(run: Run) -> list[str]:
    """The Service ports of a run's requests, sorted (``"ns/name:port"``)."""
    return sorted({str(s) for s in figure_traffic(run)["service"].unique()})


def _kinds(run: Run) -> npt.NDArray[np.str_]:
    """Every event's kind as a string array (computed once per run; callers only compare)."""
    found = run.memo.get(_KINDS_MEMO)
    if found is None:
        found = run.memo[_KINDS_MEMO] = np.asarray(run.events["kind"].astype(str), dtype=str)
    kinds: npt.NDArray[np.str_] = found
    return kinds


def _slice_updates(run: Run) -> tuple[npt.NDArray[np.float64], list[set[str]]]:
    """The slice-updated events' times and the Services each names (once per run)."""
    found = run.memo.get(_SLICE_UPDATES_MEMO)
    if found is None:
        table = run.events.loc[_kinds(run) == EventKind.SLICE_UPDATED.value]
        named = [
            _slice_services(str(o), str(d))
            for o, d in zip(table["object"], table["detail"], strict=True)
        ]
        found = run.memo[_SLICE_UPDATES_MEMO] = (table["t_s"].to_numpy(dtype=np.float64), named)
    updates: tuple[npt.NDArray[np.float64], list[set[str]]] = found
    return updates


def _slice_services(obj: str, detail: str) -> set[str]:
    """Service keys (``ns/name``) a slice-updated event names, by the conventions above."""
    found = {service_key(m) for m in _SERVICE_TOKEN.findall(detail)}
    if found:
        return found
    kind, _, rest = obj.partition("/")
    if kind in ("service", "endpoints") and rest:
        return {rest}
    key = rest if kind == "endpointslice" else obj
    if "/" not in key:
        return set()
    return {key, _GENERATED_SUFFIX.sub("", key)}


def slice_update_times(run: Run, service: str | None = None) -> npt.NDArray[np.float64]:
    """Sorted times (s) of EndpointSlice updates concerning ``service`` (all when None)."""
    times, named = _slice_updates(run)
    if service is None or not len(times):
        return np.sort(times)
    if not any(named):
        return np.sort(times)
    key = service_key(service)
    keep = np.array([key in names for names in named], dtype=bool)
    return np.sort(times[keep])


def pod_name(obj: str) -> str:
    """The Pod name in an event object or a ``pod`` cell: the last ``/``-separated part."""
    return obj.rpartition("/")[2]


def pod_events(run: Run, service: str | None = None) -> pd.DataFrame:
    """Pod changes concerning ``service`` (all when None): columns t_s, kind, pod, node.

    Sorted by time; see the module docstring for how a Pod is tied to a Service.
    """
    mask = np.isin(_kinds(run), POD_EVENT_KINDS)
    table = run.events.loc[mask]
    frame = pd.DataFrame(
        {
            "t_s": table["t_s"].to_numpy(dtype=np.float64),
            "kind": table["kind"].astype(str).to_numpy(),
            "pod": [pod_name(str(o)) for o in table["object"]],
            "node": table["node"].astype(str).to_numpy(),
        }
    )
    if service is not None and len(frame):
        mine: set[str] = set()
        anyone: set[str] = set()
        for pod, svc in pods_reached(run):
            anyone.add(pod)
            if svc == service:
                mine.add(pod)
        keep = [p in mine or p not in anyone for p in frame["pod"]]
        frame = frame.loc[np.asarray(keep, dtype=bool)]
    return frame.sort_values("t_s", kind="stable").reset_index(drop=True)


def pods_reached(run: Run) -> list[tuple[str, str]]:
    """Distinct (Pod name, service) pairs of the requests that reached a Pod, sorted."""
    requests = figure_traffic(run)
    # Group the categorical columns first: millions of rows, a handful of pairs.
    pairs = requests.groupby(["pod", "service"], observed=True, sort=False).size().index
    found = {(pod_name(str(pod)), str(svc)) for pod, svc in pairs if str(pod)}
    return sorted(found)


@dataclass(frozen=True, slots=True)
class ProxyOutage:
    """kube-proxy on ``node`` was down from ``start_s`` until ``end_s`` (seconds).

    ``restarted`` is False when the run ended before a restart (``end_s`` is then the end of
    the run).
    """

    node: str
    start_s: float
    end_s: float
    restarted: bool


def proxy_outages(run: Run, span_s: float) -> list[ProxyOutage]:
    """Every kube-proxy outage, from ``proxy-crashed`` to the next ``proxy-restarted``.

    A crash of an already crashed proxy is ignored; a restart without a crash is ignored.
    Sorted by node, then start.
    """
    kinds = _kinds(run)
    wanted = (EventKind.PROXY_CRASHED.value, EventKind.PROXY_RESTARTED.value)
    table = run.events.loc[np.isin(kinds, wanted)]
    order = np.argsort(table["t_s"].to_numpy(dtype=np.float64), kind="stable")
    down_since: dict[str, float] = {}
    outages: list[ProxyOutage] = []
    for i in order:
        row = table.iloc[int(i)]
        node, t = str(row["node"]), float(row["t_s"])
        if str(row["kind"]) == EventKind.PROXY_CRASHED.value:
            down_since.setdefault(node, t)
        elif node in down_since:
            outages.append(ProxyOutage(node, down_since.pop(node), t, restarted=True))
    for node, start in down_since.items():
        outages.append(ProxyOutage(node, start, max(span_s, start), restarted=False))
    outages.sort(key=lambda o: (o.node, o.start_s))
    return outages


@dataclass(frozen=True, slots=True)
class NodeOutage:
    """``node`` had failed (``kind`` ``failed``) or lost the API server (``partitioned``).

    From ``start_s`` until ``end_s`` (its recovery, or the end of the run).
    """

    node: str
    start_s: float
    end_s: float
    kind: str


def node_outages(run: Run, span_s: float) -> list[NodeOutage]:
    """Every node fault, from ``node-failed``/``node-partitioned`` to ``node-recovered``."""
    kinds = _kinds(run)
    starts = {
        EventKind.NODE_FAILED.value: "failed",
        EventKind.NODE_PARTITIONED.value: "partitioned",
    }
    wanted = (*starts, EventKind.NODE_RECOVERED.value)
    table = run.events.loc[np.isin(kinds, wanted)]
    order = np.argsort(table["t_s"].to_numpy(dtype=np.float64), kind="stable")
    since: dict[str, tuple[float, str]] = {}
    out: list[NodeOutage] = []
    for i in order:
        row = table.iloc[int(i)]
        node, t, kind = str(row["node"]), float(row["t_s"]), str(row["kind"])
        if kind in starts:
            since.setdefault(node, (t, starts[kind]))
        elif node in since:
            start, what = since.pop(node)
            out.append(NodeOutage(node, start, t, what))
    for node, (start, what) in since.items():
        out.append(NodeOutage(node, start, max(span_s, start), what))
    out.sort(key=lambda o: (o.node, o.start_s))
    return out


def nodes(run: Run) -> list[str]:
    """Every node named by syncs, conntrack samples, request sources or events, sorted."""
    names: set[str] = set()
    for values in (run.syncs["node"], run.conntrack["node"], run.events["node"]):
        names.update(str(v) for v in values.unique())
    names.update(traffic_nodes(run))
    names.discard("")
    return sorted(names, key=_natural)


def _natural(name: str) -> tuple[object, ...]:
    """Sort key putting node-2 before node-10."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def node_rows(values: pd.Series, row: Mapping[str, int]) -> npt.NDArray[np.float64]:
    """Per row of a node column, its row in a figure (``row[node]``), -1 for nodes not drawn.

    Looks each distinct node up once, not each row: a day's syncs table has millions of rows
    and a handful of nodes, and the timeline asks once per Service panel.
    """
    cat = values.array if isinstance(values.dtype, pd.CategoricalDtype) else None
    if cat is None:
        cat = pd.Categorical(values)
    # Code -1 (a missing node) takes the table's last entry: not drawn.
    table = np.asarray([row.get(str(n), -1) for n in cat.categories] + [-1], dtype=np.float64)
    out: npt.NDArray[np.float64] = table[np.asarray(cat.codes, dtype=np.int64)]
    return out
