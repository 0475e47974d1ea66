"""The record schema: outcome/cause/event Enums and the column spec of every record table.

Four tables come out of a run (:data:`TABLES`):

``requests``
    One row per request *attempt* (a retry is a new row with ``attempt`` + 1).
``events``
    Control-plane happenings: Pod lifecycle, EndpointSlice updates, syncs, faults.
``syncs``
    One row per kube-proxy sync on a node (successful or not).
``conntrack``
    Periodic samples of each node's conntrack table size.

Every column is a :class:`Column` with its dtype kind, unit and meaning; :func:`conform` turns
any DataFrame that carries the columns (hand-made, or read back from Parquet) into the exact
dtypes :meth:`svcsim.results.records.Recorder.frames` produces, so the writer, the loader and the
tests all see one shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]


class Outcome(StrEnum):
    """How one request attempt ended, as the client saw it."""

    OK = "ok"
    """A ready Pod of the Service answered."""
    REFUSED = "refused"
    """Actively refused at connect: ICMP port-unreachable from a REJECT rule, or a TCP RST."""
    TIMEOUT = "timeout"
    """Nothing answered before the client's timeout; ``latency_s`` includes the wait."""
    DROPPED = "dropped"
    """A rule or the kernel dropped the packet (the client waited for its timeout)."""
    RESET = "reset"
    """An established connection was reset mid-request."""
    MISROUTED = "misrouted"
    """Answered by something that is not a Pod of the Service (e.g. a reused Pod IP)."""


class Cause(StrEnum):
    """Why an attempt failed; ``NONE`` (``""``) for ``ok`` attempts, and only for them.

    Every attempt whose outcome is not ``ok`` has one of the other members (a ``misrouted``
    answer is ``ip-reused``); docs/results.md documents each. The declaration order is the
    tie-break order of :func:`svcsim.results.windows.failure_windows`: earlier members win a
    tie (new members go last, so existing tie-breaks keep their order).
    """

    NONE = ""
    """No failure."""
    NO_ENDPOINTS = "no-endpoints"
    """The node's rules hold no endpoint for the Service (REJECT ``has no endpoints``)."""
    STALE_RULE = "stale-rule"
    """The node's rules still point at an endpoint the control plane has removed."""
    PROXY_DOWN = "proxy-down"
    """kube-proxy on the node was down, so its rules were out of date."""
    SYNC_BLOCKED = "sync-blocked"
    """kube-proxy was running but its syncs were blocked or failing."""
    STALE_CONNTRACK = "stale-conntrack"
    """An existing conntrack entry still sent the flow to an endpoint that is gone."""
    CONNTRACK_FULL = "conntrack-full"
    """The node's conntrack table was full, so the new flow was dropped."""
    POD_TERMINATING = "pod-terminating"
    """The chosen Pod was terminating."""
    POD_NOT_READY = "pod-not-ready"
    """The chosen Pod was not ready (its app not listening yet)."""
    POD_CRASHED = "pod-crashed"
    """The chosen Pod's container had crashed."""
    IP_REUSED = "ip-reused"
    """The chosen endpoint IP now belongs to another Pod."""
    BACKEND_EXITED = "backend-exited"
    """The backend process exited while serving the request."""
    NO_SERVICE_RULE = "no-service-rule"
    """The node had no rule for the Service at all (not programmed yet, or flushed)."""
    SLOW_RESPONSE = "slow-response"
    """A Pod of the Service took the request but answered after the client's requestTimeout."""
    SOURCE_RANGE = "source-range"
    """The client is outside the Service's loadBalancerSourceRanges: KUBE-PROXY-FIREWALL drops."""
    PORT_CLOSED = "port-closed"
    """The chosen Pod's app is serving, but not on this port (none of its containerPorts)."""
    NODE_DOWN = "node-down"
    """The chosen Pod's node had failed: nothing answered (the client timed out)."""
    NODE_PARTITIONED = "node-partitioned"
    """The node's kube-proxy could not reach the API server, so its rules were out of date."""
    ENDPOINT_DOWN = "endpoint-down"
    """The chosen endpoint, hand-made and outside the Pod network, was down: nothing answered."""
    DNS_TIMEOUT = "dns-timeout"
    """The client's resolver got no answer from kube-dns (``timeout`` x ``attempts``): outcome
    ``timeout``, no connection was attempted."""
    DNS_REFUSED = "dns-refused"
    """Every try of the lookup was refused (ICMP port unreachable from kube-dns's rules, e.g.
    no CoreDNS endpoint): outcome ``refused``."""
    DNS_NXDOMAIN = "dns-nxdomain"
    """Every name of the search list was answered NXDOMAIN (or without an address): outcome
    ``refused`` (the client was told no at once)."""
    DNS_STALE = "dns-stale"
    """The client dialled a headless Service's Pod IP from a DNS answer (cached by CoreDNS or
    the client) that no Pod holds any more: nothing answered (``timeout``)."""
    REAL_SERVER_DELETED = "real-server-deleted"
    """IPVS mode: the flow's IPVS connection entry named a real server kube-proxy had deleted;
    with ``expire_nodest_conn=1`` the kernel dropped the packet and expired the entry."""
    IPVS_ENTRY_EXPIRED = "ipvs-entry-expired"
    """IPVS mode: a kept connection sat idle longer than the IPVS tcp timeout; its IPVS entry
    was gone, so the request reached the node's own stack, which answered RST."""
    PROXY_NOT_LISTENING = "proxy-not-listening"
    """userspace mode: the portal rules sent the connection to kube-proxy's proxy port, but the
    kube-proxy process was down, so nothing listened there (TCP reset, UDP port unreachable)."""
    PROXY_EXITED = "proxy-exited"
    """userspace mode: the connection ran through the kube-proxy process, which stopped: its
    sockets closed with it and the client got a reset."""
    ICMP_RATE_LIMITED = "icmp-rate-limited"
    """The node's rules REJECTed the flow, but its ICMP rate limits suppressed the
    port-unreachable: the client retransmitted its SYN (each met the rules afresh) until its
    connect timeout, or waited its request timeout (UDP); docs/icmp.md."""


class EventKind(StrEnum):
    """Kinds of control-plane event in the ``events`` table."""

    POD_SCHEDULED = "pod-scheduled"
    """A Pod was bound to a node."""
    POD_READY = "pod-ready"
    """A Pod became ready."""
    POD_NOT_READY = "pod-not-ready"
    """A Pod stopped being ready."""
    POD_TERMINATING = "pod-terminating"
    """A Pod got its deletion timestamp."""
    POD_EXITED = "pod-exited"
    """A Pod's containers exited."""
    IP_RELEASED = "ip-released"
    """A Pod IP went back to the node's pool."""
    POD_CRASHED = "pod-crashed"
    """A Pod's app process died (its sandbox and IP remain)."""
    POD_RESTARTED = "pod-restarted"
    """A crashed Pod's container was started again."""
    SLICE_UPDATED = "slice-updated"
    """An EndpointSlice was written by the controller."""
    SYNC = "sync"
    """A kube-proxy sync installed rules on a node."""
    SYNC_FAILED = "sync-failed"
    """A kube-proxy sync failed (rules unchanged)."""
    PROXY_CRASHED = "proxy-crashed"
    """kube-proxy on a node stopped."""
    PROXY_RESTARTED = "proxy-restarted"
    """kube-proxy on a node started again."""
    FAULT = "fault"
    """A scenario fault was injected."""
    SERVICE_ADDED = "service-added"
    """A Service was created by the timeline."""
    SERVICE_REMOVED = "service-removed"
    """A Service was deleted by the timeline."""
    NODE_DRAINED = "node-drained"
    """A node was cordoned and its Pods evicted."""
    CONNTRACK_CLEANUP = "conntrack-cleanup"
    """kube-proxy deleted stale (UDP) conntrack entries."""
    CONNTRACK_FLUSH = "conntrack-flush"
    """A node's conntrack table was flushed."""
    NODE_FAILED = "node-failed"
    """A node stopped (its kubelet, kube-proxy and containers with it)."""
    NODE_PARTITIONED = "node-partitioned"
    """A node lost the API server (it keeps running with what it last knew)."""
    NODE_RECOVERED = "node-recovered"
    """A failed node booted, or a partitioned one reached the API server again."""
    NODE_NOT_READY = "node-not-ready"
    """The node lifecycle controller marked a node NotReady (and its Pods not ready)."""
    NODE_READY = "node-ready"
    """The node lifecycle controller saw a node's heartbeat again (taints removed)."""
    PODS_EVICTED = "pods-evicted"
    """The taint eviction controller deleted a NotReady node's Pods."""
    READINESS_FAILED = "readiness-failed"
    """A Pod's readiness endpoint started failing (the app keeps serving)."""
    LB_NODE_HEALTHY = "lb-node-healthy"
    """A Service's cloud load balancer found a node healthy again (it sends there)."""
    TOPOLOGY_HINTS = "topology-hints"
    """The EndpointSlice controller enabled or removed a Service's topology hints."""
    LB_NODE_UNHEALTHY = "lb-node-unhealthy"
    """A Service's cloud load balancer found a node unhealthy (it stops sending there)."""
    ROLLOUT = "rollout"
    """A Deployment rollout step."""
    SCALE = "scale"
    """A Deployment was scaled."""
    PROXY_DIAL_RETRY = "proxy-dial-retry"
    """userspace mode: kube-proxy's dial to an endpoint failed (refused or timed out), so it
    tried the next endpoint for that connection (detail: client, endpoint, how, seconds)."""
    DNS_RETRY = "dns-retry"
    """A client's A or AAAA query was dropped by the conntrack insert race; its resolver
    waited ``timeout`` and sent both again, one at a time (object: the client Pod; detail:
    client IP, name, which query, why the kernel dropped it)."""


class RecordLevel(StrEnum):
    """How much of a run's traffic its run folder keeps (the scenario's ``records`` field)."""

    EVERY_REQUEST = "every-request"
    """Every attempt is a row of ``requests``; ``request_counts`` is empty."""
    FAILURES_AND_AGGREGATES = "failures-and-aggregates"
    """Only failed attempts are rows of ``requests``; every attempt is counted in
    ``request_counts``. The summary, the failure windows and the figures are the same as at
    ``every-request`` (the counts are cut at every instant a reader compares times with)."""


class Kind(StrEnum):
    """Storage kind of a column; decides its pandas dtype."""

    FLOAT64 = "float64"
    INT16 = "int16"
    INT64 = "int64"
    BOOL = "bool"
    STR = "str"
    """Free text (pandas' default string dtype)."""
    CATEGORY = "category"
    """A string with few distinct values; categorical, categories sorted."""
    ENUM = "enum"
    """A value of a fixed Enum; categorical, categories in Enum declaration order."""


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a record table: name, storage kind, unit and meaning."""

    name: str
    kind: Kind
    unit: str
    """``"s"`` for simulated seconds, ``"count"`` for counts, ``""`` when unitless."""
    doc: str
    enum: type[StrEnum] | None = None
    """The Enum whose values an ``ENUM`` column holds."""

    @property
    def categories(self) -> tuple[str, ...]:
        """The allowed values of an ``ENUM`` column, in declaration order (else empty)."""
        return tuple(m.value for m in self.enum) if self.enum is not None else ()


def _c(name: str, kind: Kind, unit: str, doc: str, enum: type[StrEnum] | None = None) -> Column:
    return Column(name, kind, unit, doc, enum)


_F, _I16, _I64, _B = Kind.FLOAT64, Kind.INT16, Kind.INT64, Kind.BOOL
_S, _CAT, _E = Kind.STR, Kind.CATEGORY, Kind.ENUM

REQUESTS: Final[tuple[Column, ...]] = (
    _c("t_s", _F, "s", "Attempt start: when the client sent it (simulated seconds)."),
    _c("end_s", _F, "s", "When the outcome was known: t_s + latency_s."),
    _c("latency_s", _F, "s", "Attempt duration; includes waiting for a timeout."),
    _c("workload", _CAT, "", "Name of the traffic workload that issued the attempt."),
    _c("client", _CAT, "", 'Client: a Pod name, or "external@node-1" / "host@node-2".'),
    _c("src_node", _CAT, "", "Node whose rules and conntrack handled the attempt."),
    _c("service", _CAT, "", 'Target Service port: "namespace/name:port".'),
    _c("attempt", _I16, "count", "Retry number; 0 = first try."),
    _c("conn_id", _I64, "", "Keep-alive connection identity; -1 for none."),
    _c("new_flow", _B, "", "True if this attempt created a conntrack entry (rules decided)."),
    _c("endpoint", _CAT, "", 'Endpoint "IP:port" chosen by the node\'s rules; "" if none.'),
    _c("pod", _CAT, "", 'Pod that received the attempt; "" if none.'),
    _c("outcome", _E, "", "How the attempt ended (Outcome).", Outcome),
    _c("cause", _E, "", 'Why it failed (Cause); "" for ok.', Cause),
)
"""Columns of the ``requests`` table, one row per attempt."""

EVENTS: Final[tuple[Column, ...]] = (
    _c("t_s", _F, "s", "When it happened (simulated seconds)."),
    _c("kind", _E, "", "What happened (EventKind).", EventKind),
    _c("node", _CAT, "", 'Node concerned; "" if none.'),
    _c("object", _S, "", 'Object concerned, e.g. "pod/ns/name" or "service/ns/name".'),
    _c("detail", _S, "", "Free-text detail."),
)
"""Columns of the ``events`` table (control plane)."""

SYNCS: Final[tuple[Column, ...]] = (
    _c("node", _CAT, "", "Node whose kube-proxy synced."),
    _c("start_s", _F, "s", "Sync start (simulated seconds)."),
    _c("end_s", _F, "s", "Sync end: when the rules took effect (if ok)."),
    _c("duration_s", _F, "s", "end_s − start_s (sync_proxy_rules_duration_seconds)."),
    _c("full", _B, "", "True for a full sync (all chains rewritten)."),
    _c("ok", _B, "", "True if the rules were installed."),
    _c(
        "rules_written",
        _I64,
        "count",
        "Rules in the iptables-restore input (nftables mode: objects in the nft transaction).",
    ),
    _c(
        "programming_latency_s",
        _F,
        "s",
        "Max over the changes this sync applied of end_s − last-change-trigger-time "
        "(network_programming_duration_seconds); NaN if none.",
    ),
    _c(
        "applied_through_s",
        _F,
        "s",
        "API time of the newest Service/EndpointSlice change in the state this sync compiled: "
        "it applied every change the API server accepted up to then; NaN if unknown.",
    ),
)
"""Columns of the ``syncs`` table, one row per kube-proxy sync."""

CONNTRACK: Final[tuple[Column, ...]] = (
    _c("t_s", _F, "s", "Sample time (simulated seconds)."),
    _c("node", _CAT, "", "Node sampled."),
    _c("entries", _I64, "count", "Conntrack entries on the node."),
    _c("max_entries", _I64, "count", "The node's nf_conntrack_max."),
)
"""Columns of the ``conntrack`` table (samples)."""

ENDPOINT_SETS: Final[tuple[Column, ...]] = (
    _c("t_s", _F, "s", "When the node's rules took this set (the end of a sync)."),
    _c("node", _CAT, "", "Node whose rules changed."),
    _c("service", _CAT, "", 'Service port, "namespace/name:port".'),
    _c(
        "endpoints",
        _S,
        "",
        'The "IP:port" endpoints a Pod\'s ClusterIP traffic is spread over from t_s on, sorted '
        'and comma-separated; "" for none.',
    ),
)
"""Columns of the ``endpoint_sets`` table: each change of a node's endpoint set per Service."""

REQUEST_COUNTS: Final[tuple[Column, ...]] = (
    _c(
        "t_s",
        _F,
        "s",
        "Start of the span counted: a whole second (or a figure's time-bin edge), or an instant "
        "inside it where the control plane acted or the pair's attempt failed.",
    ),
    _c("first_t_s", _F, "s", "Send time of the first attempt counted in the row."),
    _c("src_node", _CAT, "", "Node whose rules and conntrack handled the attempts."),
    _c("service", _CAT, "", 'Target Service port: "namespace/name:port".'),
    _c("endpoint", _CAT, "", 'Endpoint "IP:port" chosen by the node\'s rules; "" if none.'),
    _c("pod", _CAT, "", 'Pod that received the attempts; "" if none.'),
    _c("outcome", _E, "", "How the attempts ended (Outcome).", Outcome),
    _c("new_flow", _B, "", "True if the attempts created conntrack entries (rules decided)."),
    _c("requests", _I64, "count", "Attempts sent in the span with these values."),
)
"""Columns of the ``request_counts`` table (record level ``failures-and-aggregates``): attempts
counted per span, source node, Service, endpoint, Pod, outcome and new_flow, sorted by t_s."""

TABLES: Final[Mapping[str, tuple[Column, ...]]] = MappingProxyType(
    {
        "requests": REQUESTS,
        "events": EVENTS,
        "syncs": SYNCS,
        "conntrack": CONNTRACK,
        "endpoint_sets": ENDPOINT_SETS,
        "request_counts": REQUEST_COUNTS,
    }
)
"""Every record table by name, in a fixed order."""

_NUMPY_DTYPES: Final[Mapping[Kind, np.dtype[np.generic]]] = MappingProxyType(
    {
        Kind.FLOAT64: np.dtype(np.float64),
        Kind.INT16: np.dtype(np.int16),
        Kind.INT64: np.dtype(np.int64),
        Kind.BOOL: np.dtype(np.bool_),
    }
)


def numpy_dtype(column: Column) -> np.dtype[np.generic] | None:
    """The numpy dtype a numeric/bool column is stored as; ``None`` for string kinds."""
    return _NUMPY_DTYPES.get(column.kind)


def as_categorical(values: object, categories: list[str] | None = None) -> pd.Categorical:
    """Turn string ``values`` into a categorical, fast for categorical or many-row input.

    With ``categories``, they become exactly the categories (an Enum column); without, the
    categories are the distinct values, sorted. Raises :class:`ValueError` on a missing value,
    a non-string value, or a value outside ``categories``.
    """
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
        cat = values.array
    else:
        # Hash-based factorisation: one pass, no per-row Python.
        cat = pd.Categorical(values)
    codes = np.asarray(cat.codes)
    if (codes < 0).any():
        raise ValueError("missing value")
    observed = list(cat.categories[np.unique(codes)]) if len(codes) else []
    bad = [v for v in observed if not isinstance(v, str)]
    if bad:
        raise ValueError(f"{bad[0]!r} is not a string")
    target = sorted(str(v) for v in observed) if categories is None else list(categories)
    unknown = sorted(set(map(str, observed)) - set(target))
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not one of {sorted(target)}")
    if list(cat.categories) == target:
        return cat
    # Observed values all lie in ``target``, so re-coding loses nothing.
    return cat.set_categories([str(v) for v in target])


def conform_series(column: Column, values: pd.Series) -> pd.Series:
    """Convert ``values`` to the dtype ``column`` is stored as; raise ValueError if impossible."""
    if column.kind is Kind.ENUM:
        return pd.Series(as_categorical(values, list(column.categories)), copy=False)
    if column.kind is Kind.CATEGORY:
        return pd.Series(as_categorical(values), copy=False)
    if column.kind is Kind.STR:
        if values.isna().any():
            raise ValueError("missing value")
        return values.astype(str)
    dtype = _NUMPY_DTYPES[column.kind]
    if values.dtype.kind not in _ACCEPTED_KINDS[column.kind]:
        raise ValueError(f"dtype {values.dtype} cannot hold {column.kind.value}")
    check_int_range(column, np.asarray(values))
    return values.astype(dtype)


def check_int_range(column: Column, values: npt.NDArray[np.generic]) -> None:
    """Raise ValueError if integer ``values`` do not fit ``column``'s integer dtype."""
    dtype = _NUMPY_DTYPES.get(column.kind)
    if dtype is None or dtype.kind != "i" or values.dtype.kind not in "iu" or not len(values):
        return
    if values.dtype.itemsize < dtype.itemsize or (
        values.dtype.kind == "i" and values.dtype.itemsize == dtype.itemsize
    ):
        return
    info = np.iinfo(cast("np.dtype[np.signedinteger[Any]]", dtype))
    low, high = int(values.min()), int(values.max())
    if low < info.min or high > info.max:
        raise ValueError(f"value {low if low < info.min else high} out of range for {dtype}")


# Source dtype kinds each numeric kind accepts (bool into float/int would hide mistakes).
_ACCEPTED_KINDS: Final[Mapping[Kind, str]] = MappingProxyType(
    {Kind.FLOAT64: "fiu", Kind.INT16: "iu", Kind.INT64: "iu", Kind.BOOL: "b"}
)


def accepted_kinds(column: Column) -> str:
    """The numpy dtype kinds (``dtype.kind``) accepted as input for a numeric/bool column."""
    return _ACCEPTED_KINDS.get(column.kind, "")


def conform(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """Return ``frame`` as table ``table``: spec columns first, in order, with spec dtypes.

    Extra columns are kept after the spec columns, unchanged. Raises :class:`ValueError`
    naming the table and column when a column is missing or cannot take its dtype.
    """
    columns = TABLES[table]
    missing = [c.name for c in columns if c.name not in frame.columns]
    if missing:
        raise ValueError(f"{table}: missing column(s) {', '.join(missing)}")
    out: dict[str, object] = {}
    for column in columns:
        try:
            out[column.name] = conform_series(column, frame[column.name].reset_index(drop=True))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{table}.{column.name}: {exc}") from exc
    names = {c.name for c in columns}
    for extra in frame.columns:
        if extra not in names:
            out[extra] = frame[extra].reset_index(drop=True)
    return pd.DataFrame(out)


def empty_frame(table: str) -> pd.DataFrame:
    """An empty DataFrame of table ``table`` with every column at its spec dtype."""
    out: dict[str, object] = {}
    for column in TABLES[table]:
        dtype = _NUMPY_DTYPES.get(column.kind)
        if dtype is not None:
            out[column.name] = pd.Series(np.empty(0, dtype=dtype))
        elif column.kind is Kind.STR:
            out[column.name] = pd.Series([], dtype=object).astype(str)
        else:
            out[column.name] = pd.Series(pd.Categorical([], categories=list(column.categories)))
    return pd.DataFrame(out)
