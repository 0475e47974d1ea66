"""The EndpointSlice (and EndpointSlice mirroring) controller, watching through the API server.

Like kube-controller-manager's controller (pkg/controller/endpointslice), it keeps an informer
cache of Services, Pods and legacy Endpoints fed by an API watch ``api_watch_s`` late, and a
work queue keyed by Service:

* a Service change queues its key at once (``queue.Add``); a Pod change queues every Service
  whose selector matches the Pod's old or new labels after ``endpoint_slice_batch_s``
  (``queue.AddAfter``: a key already waiting keeps the earlier of the two times, so changes
  within one batch period coalesce into one sync);
* a sync recomputes the Service's slices with :func:`~svcsim.k8s.controllers.
  endpoint_slices_for_service`, writes only slices that changed and deletes vanished ones;
  slices of a Service without selector, or deleted, are removed;
* legacy Endpoints of selector-less Services are mirrored with
  :func:`~svcsim.k8s.controllers.mirror_endpoints` (queued at once on Endpoints or Service
  changes, no batching: ``--mirroring-endpointslice-updates-batch-period`` defaults to 0).

Trigger time (``endpoints.kubernetes.io/last-change-trigger-time``), as
pkg/controller/util/endpoint/trigger_time_tracker.go computes it: for a Service seen for the
first time, its creation time; afterwards the earliest trigger time that changed since the
previous sync, where a Pod's trigger time is its Ready condition's last transition (the
first one when it was created) and the Service's its creation time. So a sync caused only by
a Pod turning terminating, or being deleted, carries no trigger time, and the annotation is
then removed from the slices it writes (``addTriggerTimeAnnotation``). ``TriggerTimeMode.
ANY_CHANGE`` counts every Pod change (terminating, deletion, IP...) and Service update too.
The value is RFC 3339 with nanoseconds (Go's ``RFC3339Nano``), simulated second 0 being
1970-01-01T00:00:00Z; :func:`trigger_time_s` reads it back as simulated seconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Any

import simpy

from svcsim.k8s.controllers import (
    DEFAULT_MAX_ENDPOINTS_PER_SLICE,
    ENDPOINTSLICE_CONTROLLER,
    MANAGED_BY_LABEL,
    MIRRORING_CONTROLLER,
    endpoint_slices_for_service,
    mirror_endpoints,
    selector_matches,
)
from svcsim.k8s.objects import (
    LAST_CHANGE_TRIGGER_TIME_ANNOTATION,
    EndpointSlice,
    Node,
    Pod,
    Service,
    ServiceType,
)
from svcsim.k8s.selectors import PodIndex
from svcsim.k8s.topology_hints import (
    auto_hints_requested,
    cpu_ratios,
    hinted_zones,
    service_overloaded,
)
from svcsim.sim.api import ApiServer, EventType, WatchEvent
from svcsim.sim.config import ControlPlaneDelays, RecordEvent

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")
_EPS = 1e-9


def format_trigger_time(t_s: float) -> str:
    """Simulated seconds as Go's RFC3339Nano text (``12.5`` -> ``1970-01-01T00:00:12.5Z``).

    Exact to the nanosecond: :func:`parse_trigger_time` gives back the same float for any
    time with at most 9 decimals.
    """
    if not math.isfinite(t_s):
        raise ValueError(f"not a finite time {t_s!r}")
    d = Decimal(repr(float(t_s))).quantize(Decimal("1e-9"), rounding=ROUND_HALF_EVEN)
    whole = math.floor(d)
    nanos = int((d - whole) * 1_000_000_000)
    text = (_EPOCH + timedelta(seconds=whole)).strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    return text + "Z"


def parse_trigger_time(text: str) -> float | None:
    """RFC 3339 text (or plain seconds) as simulated seconds since the epoch; None if invalid."""
    m = _RFC3339.fullmatch(text.strip())
    if m is None:
        try:
            value = float(text)
        except ValueError:
            return None
        return value if math.isfinite(value) else None
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    try:
        base = datetime.fromisoformat(m.group(1) + zone)
    except ValueError:
        return None
    whole = (base - _EPOCH) // timedelta(seconds=1)
    return float(Decimal(whole) + Decimal("0." + (m.group(2) or "0")))


def trigger_time_s(endpoint_slice: EndpointSlice) -> float | None:
    """The slice's ``last-change-trigger-time`` in simulated seconds, or None if absent."""
    text = endpoint_slice.meta.annotation(LAST_CHANGE_TRIGGER_TIME_ANNOTATION)
    return parse_trigger_time(text) if text is not None else None


class TriggerTimeMode(StrEnum):
    """Which changes set the trigger time (see the module docstring)."""

    UPSTREAM = "upstream"
    ANY_CHANGE = "any-change"


@dataclass(slots=True)
class _ServiceState:
    service_s: float
    pod_s: dict[str, float] = field(default_factory=dict)


class TriggerTimeTracker:
    """``TriggerTimeTracker``: the trigger time of each Service's next slice write."""

    def __init__(self, mode: TriggerTimeMode = TriggerTimeMode.UPSTREAM) -> None:
        self.mode = mode
        self._pod_s: dict[str, float] = {}
        self._gone_s: dict[str, tuple[Pod, float]] = {}
        self._states: dict[str, _ServiceState] = {}

    def pod_changed(self, old: Pod | None, new: Pod | None, t_s: float) -> None:
        """Note a Pod change accepted by the API server at ``t_s``."""
        pod = new if new is not None else old
        assert pod is not None
        key = pod.meta.key
        if new is None:
            self._pod_s.pop(key, None)
            if self.mode is TriggerTimeMode.ANY_CHANGE and old is not None:
                self._gone_s[key] = (old, t_s)
        elif old is None or self.mode is TriggerTimeMode.ANY_CHANGE or old.ready != new.ready:
            self._pod_s[key] = t_s  # the Ready condition's lastTransitionTime
            self._gone_s.pop(key, None)

    def compute(self, service: Service, service_s: float, pods: Sequence[Pod]) -> float | None:
        """The trigger time for ``service`` whose selected Pods are ``pods``; None for none."""
        key = service.meta.key
        state = self._states.get(key)
        changed: list[float] = []
        pod_s: dict[str, float] = {}
        for pod in pods:
            t = self._pod_s.get(pod.meta.key)
            if t is not None:
                pod_s[pod.meta.name] = t
                if state is None or t > state.pod_s.get(pod.meta.name, -math.inf):
                    changed.append(t)
        if state is not None and self.mode is TriggerTimeMode.ANY_CHANGE:
            for name in state.pod_s.keys() - pod_s.keys():
                gone = self._gone_s.get(f"{service.meta.namespace}/{name}")
                if gone is not None:
                    changed.append(gone[1])
        if state is None or service_s > state.service_s:
            changed.append(service_s)
        self._states[key] = _ServiceState(service_s, pod_s)
        if state is None:
            return service_s  # a Service new to the controller: its creation time
        return min(changed, default=None)

    def forget(self, service_key: str) -> None:
        """Drop a deleted Service's state (``DeleteService``)."""
        self._states.pop(service_key, None)


_Owned = tuple[EndpointSlice, EndpointSlice | None]


def _counts(endpoint_slice: EndpointSlice) -> str:
    eps = endpoint_slice.endpoints
    ready = sum(1 for e in eps if e.is_ready)
    serving = sum(1 for e in eps if e.is_serving)
    terminating = sum(1 for e in eps if e.is_terminating)
    return f"endpoints={len(eps)} ready={ready} serving={serving} terminating={terminating}"


class EndpointSliceController:
    """Keeps EndpointSlices for selector Services and mirrors legacy Endpoints.

    Call :meth:`start` once: it lists what the API holds (the informers' initial list),
    adopts slices already labelled as managed by either controller, and queues every
    Service and Endpoints for a first sync now. Events: ``slice-updated`` per slice written
    or deleted, ``object`` the slice's ``namespace/name``, ``detail`` its Service and
    ready/serving/terminating counts.
    """

    def __init__(
        self,
        env: simpy.Environment,
        api: ApiServer,
        delays: ControlPlaneDelays,
        record_event: RecordEvent,
        *,
        max_endpoints_per_slice: int = DEFAULT_MAX_ENDPOINTS_PER_SLICE,
        nodes: Sequence[Node] | None = None,
        trigger_time: TriggerTimeMode = TriggerTimeMode.UPSTREAM,
    ) -> None:
        self.env, self.api, self.delays, self.record = env, api, delays, record_event
        self.max_endpoints_per_slice = max_endpoints_per_slice
        self.nodes = tuple(nodes) if nodes is not None else None
        self.tracker = TriggerTimeTracker(trigger_time)
        self._cache: dict[str, dict[str, Any]] = {"Service": {}, "Pod": {}, "Endpoints": {}}
        # The Pod cache again, by label pair: a Service's sync checks only the Pods that
        # carry its selector's rarest pair (1,000 Services x 11,000 Pods: 11 million checks).
        self._pods = PodIndex()
        self._service_s: dict[str, float] = {}
        # Per queue key: slice name -> (slice as written, slice as computed, no trigger time).
        self._owned: dict[tuple[str, str], dict[str, _Owned]] = {}
        self._hints: dict[str, str] = {}
        """Per ``topology-mode: Auto`` Service: "enabled" or "disabled: <why>" as last noted."""
        self._hinted: dict[str, dict[str, int]] = {}
        """Per Service whose Auto hints are on: hinted ready endpoints per zone (the topology
        cache's ``endpointsByService``)."""
        self._not_ready_nodes: set[str] = set()
        """Nodes the Node informer sees NotReady: left out of the CPU ratios (``SetNodes``)."""
        self._dirty: set[tuple[str, str]] = set()
        self._waiting: dict[tuple[str, str], float] = {}
        self.syncs = 0

    def start(self) -> None:
        """List the API's current objects, adopt managed slices, watch, queue every key."""
        now = self.env.now
        for cache_kind, store in self._cache.items():
            for obj in self.api.list(cache_kind):
                store[obj.meta.key] = obj
        for pod_key, pod in self._cache["Pod"].items():
            self._pods.put(pod_key, pod)
        for svc_key in self._cache["Service"]:
            self._service_s[svc_key] = now
        for pod in self._cache["Pod"].values():
            self.tracker.pod_changed(None, pod, now)
        for sl in self.api.list("EndpointSlice"):
            manager = sl.meta.label(MANAGED_BY_LABEL)
            kind = {ENDPOINTSLICE_CONTROLLER: "svc", MIRRORING_CONTROLLER: "ep"}.get(manager or "")
            if kind is not None and sl.service_name:
                qkey = (kind, f"{sl.meta.namespace}/{sl.service_name}")
                self._owned.setdefault(qkey, {})[sl.meta.name] = (sl, None)
        self.api.watch(["Service", "Pod", "Endpoints"], self._on_event, self.delays.api_watch_s)
        keys = {("svc", k) for k in self._cache["Service"]} | {
            ("ep", k) for k in self._cache["Endpoints"]
        }
        for qkey in sorted(keys | set(self._owned)):
            self._add(qkey)

    # --- informer handlers ----------------------------------------------------------------------

    def _on_event(self, event: WatchEvent) -> None:
        store = self._cache[event.kind]
        if event.type is EventType.DELETED:
            store.pop(event.key, None)
        else:
            store[event.key] = event.new
        if event.kind == "Pod":
            if event.type is EventType.DELETED:
                self._pods.drop(event.key)
            else:
                self._pods.put(event.key, event.new)
        if event.kind == "Service":
            if event.type is EventType.ADDED or self.tracker.mode is TriggerTimeMode.ANY_CHANGE:
                self._service_s[event.key] = event.t_s
            self._add(("svc", event.key))
            self._add(("ep", event.key))
        elif event.kind == "Endpoints":
            self._add(("ep", event.key))
        else:
            self.tracker.pod_changed(event.old, event.new, event.t_s)
            for svc_key in self._services_for(event.old, event.new):
                self._add_after(("svc", svc_key), self.delays.endpoint_slice_batch_s)

    def _services_for(self, old: Pod | None, new: Pod | None) -> list[str]:
        out = []
        for key, svc in sorted(self._cache["Service"].items()):
            if svc.selector is None:
                continue
            for pod in (old, new):
                if (
                    pod is not None
                    and pod.meta.namespace == svc.meta.namespace
                    and selector_matches(svc.selector, pod.meta.labels)
                ):
                    out.append(key)
                    break
        return out

    def node_ready_changed(self, node: str, ready: bool) -> None:
        """A Node's Ready condition flipped; the Node informer sees it ``api_watch_s`` later.

        As ``updateNode`` → ``checkNodeTopologyDistribution`` (pkg/controller/endpointslice,
        topologycache.go): the CPU ratios are recomputed from the Ready nodes and every Service
        whose hints are now overloaded (``GetOverloadedServices``) is synced at once. Other
        Services use the new ratios at their next sync.
        """

        def seen(_: simpy.Event) -> None:
            if ready:
                self._not_ready_nodes.discard(node)
            else:
                self._not_ready_nodes.add(node)
            nodes = self._ready_nodes()
            ratios = cpu_ratios(nodes) if nodes is not None else None
            for key in sorted(self._hinted):
                if service_overloaded(self._hinted[key], ratios):
                    self._add(("svc", key))

        self.env.timeout(self.delays.api_watch_s).callbacks.append(seen)

    def _ready_nodes(self) -> tuple[Node, ...] | None:
        if self.nodes is None:
            return None
        return tuple(n for n in self.nodes if n.meta.name not in self._not_ready_nodes)

    # --- the work queue -------------------------------------------------------------------------

    def _add(self, qkey: tuple[str, str]) -> None:
        if qkey in self._dirty:
            return  # already queued: changes coalesce into that sync
        self._dirty.add(qkey)
        self.env.timeout(0).callbacks.append(lambda _e: self._process(qkey))

    def _add_after(self, qkey: tuple[str, str], delay_s: float) -> None:
        if delay_s <= 0:
            self._add(qkey)
            return
        at = self.env.now + delay_s
        waiting = self._waiting.get(qkey)
        if waiting is not None and waiting <= at + _EPS:
            return
        self._waiting[qkey] = at
        self.env.timeout(delay_s).callbacks.append(lambda _e: self._wake(qkey, at))

    def _wake(self, qkey: tuple[str, str], at: float) -> None:
        if self._waiting.get(qkey) == at:
            del self._waiting[qkey]
            self._add(qkey)

    def _process(self, qkey: tuple[str, str]) -> None:
        self._dirty.discard(qkey)
        self.syncs += 1
        kind, key = qkey
        if kind == "svc":
            self._sync_service(key)
        else:
            self._sync_mirror(key)

    # --- syncs ----------------------------------------------------------------------------------

    def _sync_service(self, key: str) -> None:
        svc: Service | None = self._cache["Service"].get(key)
        if svc is None or svc.selector is None or svc.type is ServiceType.EXTERNAL_NAME:
            self.tracker.forget(key)
            self._hinted.pop(key, None)
            self._write(("svc", key), (), None)
            return
        # In key order, as the walk over the sorted cache gave them.
        selected = self._pods.select(svc.meta.namespace, svc.selector)
        pods: list[Pod] = [p for _, p in sorted(selected, key=lambda kp: str(kp[0]))]
        why: list[str] = []
        desired = endpoint_slices_for_service(
            svc, pods, self.max_endpoints_per_slice, nodes=self._ready_nodes(), notes=why
        )
        trigger = self.tracker.compute(svc, self._service_s.get(key, self.env.now), pods)
        self._write(("svc", key), desired, trigger)
        self._note_hints(svc, why)
        zones = hinted_zones([e for sl in desired for e in sl.endpoints])
        if auto_hints_requested(svc) and not why and zones:
            self._hinted[key] = zones
        else:
            self._hinted.pop(key, None)

    def _note_hints(self, svc: Service, why: list[str]) -> None:
        """Record when a ``topology-mode: Auto`` Service's hints are enabled or removed.

        As the controller's ``TopologyAwareHintsEnabled`` / ``TopologyAwareHintsDisabled``
        Events (the first state is recorded too).
        """
        key = svc.meta.key
        if not auto_hints_requested(svc):
            self._hints.pop(key, None)
            return
        state = f"disabled: {why[0]}" if why else "enabled"
        if self._hints.get(key) != state:
            self._hints[key] = state
            self.record(self.env.now, "topology-hints", "", key, state)

    def _sync_mirror(self, key: str) -> None:
        ep = self._cache["Endpoints"].get(key)
        svc = self._cache["Service"].get(key)
        desired = mirror_endpoints([ep], [svc]) if ep is not None and svc is not None else ()
        self._write(("ep", key), desired, None)

    def _write(
        self,
        qkey: tuple[str, str],
        desired: Sequence[EndpointSlice],
        trigger_s: float | None,
    ) -> None:
        owned = self._owned.setdefault(qkey, {})
        service = qkey[1]
        desired = _keep_names(desired, owned)
        for d in desired:
            previous = owned.get(d.meta.name)
            if previous is not None and previous[1] == d:
                continue
            notes = dict(d.meta.annotations)
            notes.pop(LAST_CHANGE_TRIGGER_TIME_ANNOTATION, None)
            if trigger_s is not None:
                notes[LAST_CHANGE_TRIGGER_TIME_ANNOTATION] = format_trigger_time(trigger_s)
            written = replace(d, meta=replace(d.meta, annotations=tuple(sorted(notes.items()))))
            self.api.apply("EndpointSlice", written)
            owned[d.meta.name] = (written, d)
            self._event(written, f"service={service} {_counts(written)}")
        keep = {d.meta.name for d in desired}
        for name in sorted(owned.keys() - keep):
            gone, _ = owned.pop(name)
            self.api.delete("EndpointSlice", gone.meta.key)
            self._event(gone, f"service={service} deleted")
        if not owned:
            del self._owned[qkey]

    def _event(self, endpoint_slice: EndpointSlice, detail: str) -> None:
        self.record(self.env.now, "slice-updated", "", endpoint_slice.meta.key, detail)


def _same_content(a: EndpointSlice, b: EndpointSlice) -> bool:
    """Same address type, ports and endpoints (names, labels and annotations aside)."""
    return (a.address_type, a.ports, a.endpoints) == (b.address_type, b.ports, b.endpoints)


def _keep_names(desired: Sequence[EndpointSlice], owned: dict[str, _Owned]) -> list[EndpointSlice]:
    """``desired``, each renamed to an owned slice that already holds exactly its content.

    The reconciler keeps a slice that still holds what it should (whatever its generated
    name): so a Service's slices read from a cluster dump stay as they are instead of being
    deleted and recreated under svcsim's names. Such a slice is then unchanged (no write).
    """
    names = {d.meta.name for d in desired}
    free = [(name, written) for name, (written, _) in owned.items() if name not in names]
    out: list[EndpointSlice] = []
    for d in desired:
        if d.meta.name not in owned:
            match = next((i for i, (_, w) in enumerate(free) if _same_content(w, d)), None)
            if match is not None:
                name, written = free.pop(match)
                d = replace(d, meta=replace(d.meta, name=name))
                owned[name] = (written, d)
        out.append(d)
    return out
