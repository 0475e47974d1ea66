"""kube-proxy's change tracking: what its informers have seen, and what changed since the last sync.

A pure model (no SimPy, no clock) of three upstream pieces, kubernetes ``pkg/proxy``:

* ``servicechangetracker.go`` (``ServiceChangeTracker.Update``): per Service, the *first-seen*
  old state and the *latest* new state, both reduced to kube-proxy's service-port map; a change
  whose latest state equals its first-seen one has undone itself and is dropped.
* ``endpointschangetracker.go`` @11f538fc (``EndpointSliceUpdate``, ``checkoutTriggerTimes``)
  and ``endpointslicecache.go`` @c2c7d507 (``updatePending``, ``esDataChanged``,
  ``checkoutChanges``): per EndpointSlice an *applied* and a *pending* value. An update is a
  change when it differs from the pending value, else from the applied one; once pending, a
  slice stays pending until the next sync takes it, even if a later update restores the applied
  value (upstream compares with the pending value only). So, faithfully, only Service changes
  drop out when undone; a slice that went A -> B -> A still marks its Service changed.
* the ``endpoints.kubernetes.io/last-change-trigger-time`` bookkeeping: each slice change that
  carries the annotation adds its time to the Service's list, unless the time is not after the
  tracker's creation; a slice *deletion* discards the Service's pending times (upstream: the
  annotation of a deleted object says nothing about the deletion).

:meth:`ChangeTracker.take` is ``svcPortMap.Update`` + ``endpointsMap.Update`` at the start of a
sync: it returns the changed Services (by ``namespace/name``), their trigger times and whether
UDP conntrack clean-up is required, and clears them. The informer view (:attr:`services`,
:attr:`slices`) always holds the latest objects seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from svcsim.k8s.objects import (
    EndpointSlice,
    Protocol,
    Service,
)
from svcsim.proxy.endpoints import ServicePortInfo, build_endpoints_map, service_port_infos
from svcsim.sim.api import EventType, WatchEvent
from svcsim.sim.caches import RunCaches, SliceFacts
from svcsim.sim.endpointslices import trigger_time_s

SERVICE_KIND: Final = "Service"
"""The ApiServer kind kube-proxy's Service informer watches."""
ENDPOINT_SLICE_KIND: Final = "EndpointSlice"
"""The ApiServer kind kube-proxy's EndpointSlice informer watches."""
WATCHED_KINDS: Final = (SERVICE_KIND, ENDPOINT_SLICE_KIND)

SUPPORTED_ADDRESS_TYPES: Final = frozenset({"IPv4", "IPv6"})
"""``supportedEndpointSliceAddressTypes``: FQDN slices are ignored."""

TriggerTimeFn = Callable[[EndpointSlice], float | None]
"""Reads a slice's last-change-trigger-time in simulated seconds (None when absent)."""


def annotation_trigger_time_s(endpoint_slice: EndpointSlice) -> float | None:
    """The slice's trigger-time annotation in simulated seconds; None if absent or unreadable.

    Reads what the EndpointSlice controller writes (RFC 3339 with nanoseconds, simulated second
    0 = the Unix epoch; plain seconds are accepted too) with its own parser,
    :func:`svcsim.sim.endpointslices.trigger_time_s`. Upstream treats a parse error like a
    missing annotation (the zero time, which it then ignores).
    """
    return trigger_time_s(endpoint_slice)


def slice_service_key(endpoint_slice: EndpointSlice) -> str | None:
    """``namespace/service`` a slice belongs to (``endpointSliceCacheKeys``), None if unlabelled."""
    name = endpoint_slice.service_name
    return f"{endpoint_slice.meta.namespace}/{name}" if name else None


@dataclass(frozen=True, slots=True)
class PendingChanges:
    """The changes one sync applies (``UpdateServiceMapResult`` + ``UpdateEndpointsMapResult``)."""

    service_changes: frozenset[str] = frozenset()
    """Services (``namespace/name``) whose service-port map changed."""
    endpoint_changes: frozenset[str] = frozenset()
    """Services with at least one pending EndpointSlice change."""
    trigger_times_s: Mapping[str, tuple[float, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    """Per Service, the trigger times of its pending slice changes, in arrival order."""
    conntrack_cleanup_required: bool = False
    """A changed Service had a UDP port before or after its slice changes
    (``ConntrackCleanupRequired``)."""

    @property
    def services(self) -> frozenset[str]:
        """Every changed Service: their chains are rewritten by a partial sync."""
        return self.service_changes | self.endpoint_changes

    def earliest_trigger_s(self, service: str) -> float | None:
        """The earliest trigger time pending for ``service``, or None."""
        times = self.trigger_times_s.get(service)
        return min(times) if times else None

    def __bool__(self) -> bool:
        return bool(self.service_changes or self.endpoint_changes)


_PortMap = frozenset[ServicePortInfo]
"""A Service reduced to kube-proxy's service-port map (keyed by port, so order does not count)."""

_SliceData = tuple[EndpointSlice, bool]
"""``endpointSliceData``: the slice and whether this is its removal."""


class ChangeTracker:
    """One kube-proxy's informer view plus its Service and EndpointSlice change trackers.

    ``start_s`` is the tracker's creation time (``trackerStartTime``): trigger times not after
    it are ignored, so a restarted kube-proxy does not report latencies of old changes.
    ``caches`` are the run's (:class:`~svcsim.sim.caches.RunCaches`); None: the tracker's own.
    """

    def __init__(
        self,
        node_name: str,
        *,
        start_s: float = 0.0,
        trigger_time: TriggerTimeFn = annotation_trigger_time_s,
        caches: RunCaches | None = None,
    ) -> None:
        self.node_name = node_name
        self.start_s = start_s
        self._trigger_time = trigger_time
        self._caches = caches if caches is not None else RunCaches()
        self._services: dict[str, Service] = {}
        self._slices: dict[str, EndpointSlice] = {}
        self._service_changes: dict[str, tuple[_PortMap, _PortMap]] = {}
        self._applied: dict[str, dict[str, EndpointSlice]] = {}
        self._pending: dict[str, dict[str, _SliceData]] = {}
        self._triggers: dict[str, list[float]] = {}
        self.version = 0
        """Bumped on every change of the informer view (for caches of derived views)."""

    # --- the informer view ------------------------------------------------------------------

    @property
    def services(self) -> Mapping[str, Service]:
        """Services as this kube-proxy has seen them, by ``namespace/name``."""
        return MappingProxyType(self._services)

    @property
    def slices(self) -> Mapping[str, EndpointSlice]:
        """EndpointSlices as this kube-proxy has seen them, by ``namespace/name``."""
        return MappingProxyType(self._slices)

    def on_event(self, event: WatchEvent) -> bool:
        """Record one watch event; True if it left a change to sync (the handlers' ``Sync()``)."""
        if event.kind == SERVICE_KIND:
            return self.service_update(event.old, event.new)
        if event.kind == ENDPOINT_SLICE_KIND:
            removed = event.type is EventType.DELETED
            return self.slice_update(event.old if removed else event.new, removed=removed)
        return False

    def service_update(self, old: Service | None, new: Service | None) -> bool:
        """``OnServiceAdd/Update/Delete``: record a Service change; True if any is pending."""
        current = new if new is not None else old
        if current is None:
            return bool(self._service_changes)
        key = current.meta.key
        if new is None:
            self._services.pop(key, None)
        else:
            self._services[key] = new
        self.version += 1
        new_map = _port_map(new, self._caches)
        first = self._service_changes.get(key)
        if first is None:
            first = (_port_map(old, self._caches), new_map)
        if first[0] == new_map:
            # Back where the last sync left it: the change undid itself.
            self._service_changes.pop(key, None)
        else:
            self._service_changes[key] = (first[0], new_map)
        return bool(self._service_changes)

    def slice_update(self, endpoint_slice: EndpointSlice, *, removed: bool) -> bool:
        """``OnEndpointSliceAdd/Update/Delete``: True if this update is a change to sync."""
        key = endpoint_slice.meta.key
        if removed:
            self._slices.pop(key, None)
        else:
            self._slices[key] = endpoint_slice
        self.version += 1
        facts = self._facts(endpoint_slice)
        service = facts.service
        if endpoint_slice.address_type not in SUPPORTED_ADDRESS_TYPES or service is None:
            return False
        name = endpoint_slice.meta.name
        data: _SliceData = (endpoint_slice, removed)
        pending = self._pending.get(service, {})
        applied = self._applied.get(service, {})
        if name in pending:
            changed = pending[name] != data
        elif name in applied:
            changed = (applied[name], False) != data
        else:
            changed = not removed
        if not changed:
            return False
        self._pending.setdefault(service, {})[name] = data
        if removed:
            self._triggers.pop(service, None)
        else:
            t = (
                facts.trigger_time_s
                if self._trigger_time is annotation_trigger_time_s
                else self._trigger_time(endpoint_slice)
            )
            if t is not None and t > self.start_s:
                self._triggers.setdefault(service, []).append(t)
        return True

    def _facts(self, endpoint_slice: EndpointSlice) -> SliceFacts:
        """The slice's Service key and annotated trigger time, read once per slice object.

        Every node's tracker is handed the very same slice objects (one watch event, one
        list), so with the run's memo the annotation is parsed once for all of them.
        """
        memo = self._caches.slice_facts
        found = memo.get(id(endpoint_slice))
        if found is None:
            found = memo.put(
                id(endpoint_slice),
                SliceFacts(
                    slice_service_key(endpoint_slice), annotation_trigger_time_s(endpoint_slice)
                ),
                holds=endpoint_slice,
            )
        return found

    # --- what a sync takes ------------------------------------------------------------------

    def pending(self) -> PendingChanges:
        """The changes a sync starting now would apply (nothing is cleared)."""
        return self._collect(commit=False)

    def take(self) -> PendingChanges:
        """Apply and clear the pending changes, as a sync does at its start."""
        return self._collect(commit=True)

    def has_pending(self) -> bool:
        """True if a sync would have anything to apply."""
        return bool(self._service_changes) or any(self._pending.values())

    def _collect(self, *, commit: bool) -> PendingChanges:
        endpoint_changes: set[str] = set()
        cleanup = False
        for service, pending in self._pending.items():
            if not pending:
                continue
            endpoint_changes.add(service)
            before = dict(self._applied.get(service, {}))
            after = dict(before)
            for name, (endpoint_slice, removed) in pending.items():
                if removed:
                    after.pop(name, None)
                else:
                    after[name] = endpoint_slice
            if not cleanup:
                cleanup = self._has_udp(before.values()) or self._has_udp(after.values())
            if commit:
                if after:
                    self._applied[service] = after
                else:
                    self._applied.pop(service, None)
        result = PendingChanges(
            service_changes=frozenset(self._service_changes),
            endpoint_changes=frozenset(endpoint_changes),
            trigger_times_s=MappingProxyType({k: tuple(v) for k, v in self._triggers.items()}),
            conntrack_cleanup_required=cleanup,
        )
        if commit:
            self._service_changes.clear()
            self._pending.clear()
            self._triggers.clear()
        return result

    def _has_udp(self, slices: Iterable[EndpointSlice]) -> bool:
        """Some port of the Service's endpoints map is UDP.

        The map only holds ports that have endpoints, as ``getEndpointsMap`` builds it. Which
        ports those are does not depend on the node (locality only marks endpoints), so the
        map is built for no node: every node then shares one memoised map.
        """
        held = tuple(slices)
        key = tuple(map(id, held))
        # Every node takes the same slice changes at the same instant: with the run's memo the
        # answer for the same slice objects (held by the entry) is computed once.
        memo = self._caches.udp_by_slices
        udp = memo.get(key)
        if udp is None:
            endpoints_map = build_endpoints_map(held, "", self._caches.compile)
            udp = memo.put(key, any(spn.protocol == Protocol.UDP for spn in endpoints_map), held)
        return udp


def _port_map(service: Service | None, caches: RunCaches) -> _PortMap:
    """``serviceToServiceMap`` as a comparable value (empty for None or a skipped Service)."""
    if service is None:
        return frozenset()
    # Every node's tracker is handed the very same Service objects: one set for all of them.
    memo = caches.service_port_sets
    found = memo.get(id(service))
    if found is None:
        found = memo.put(
            id(service), frozenset(service_port_infos(service, caches.compile)), holds=service
        )
    return found
