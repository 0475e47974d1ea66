"""The hints the EndpointSlice controller puts on endpoints, for kube-proxy's topology routing.

Two ways a Service asks for them (pkg/controller/endpointslice/reconciler.go: the annotation
wins when both are set):

* ``service.kubernetes.io/topology-mode: Auto`` (or the deprecated
  ``service.kubernetes.io/topology-aware-hints``; value ``Auto`` or ``auto``): the
  *topology cache* (staging/src/k8s.io/endpointslice/topologycache, topologycache.go and
  utils.go) shares the Service's ready endpoints out to zones in proportion to the zones'
  allocatable CPU. Each zone should get ``desired = ratio x endpoints``; it needs at least
  ``ceil(desired / 1.2)`` (``overloadThreshold`` 0.2), else hints are removed altogether
  (also when a node lacks a zone or CPU, fewer than 2 zones have nodes, or there are fewer
  ready endpoints than zones). Every ready endpoint first gets its own zone; zones holding
  more than ``desired`` then give endpoints, one at a time, to zones holding fewer
  (``getGivingAndReceivingZones``, ``redistributeHints``).
* ``spec.trafficDistribution: PreferClose | PreferSameZone | PreferSameNode``
  (staging/src/k8s.io/endpointslice/trafficdist): every ready endpoint gets a hint for its
  own zone (and, for ``PreferSameNode``, its own node), whatever the balance: no overload
  protection.

Otherwise endpoints carry no hints. Not-ready endpoints keep what they had (nothing here, as
slices are computed afresh). Two choices of svcsim's: upstream walks Go maps (random order)
where zones compete; here zones are taken in name order. And upstream keeps valid hints of
slices it does not otherwise change; svcsim recomputes every slice of the Service, as if all
changed (the same result whenever the zones' shares need no redistribution).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

from svcsim.k8s.objects import Endpoint, Node, Service

TOPOLOGY_MODE_ANNOTATION: Final = "service.kubernetes.io/topology-mode"
DEPRECATED_TOPOLOGY_HINTS_ANNOTATION: Final = "service.kubernetes.io/topology-aware-hints"
CLOSE_TRAFFIC_DISTRIBUTIONS: Final = ("PreferClose", "PreferSameZone", "PreferSameNode")
"""``trafficDistribution`` values that ask for same-zone hints (trafficdist.go)."""
OVERLOAD_THRESHOLD: Final = 0.2
"""topologycache.go ``overloadThreshold``: the most overload any endpoint should see."""
CONTROL_PLANE_LABELS: Final = (
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
)
"""Nodes with one of these labels do not count in the zones' CPU (``hasExcludedLabels``)."""


@dataclass(frozen=True, slots=True)
class Allocation:
    """How many endpoints one zone should get: at least ``minimum``, ideally ``desired``."""

    minimum: int
    maximum: int
    desired: float


def auto_hints_requested(service: Service) -> bool:
    """``hintsEnabled``: the topology-mode annotation (or the deprecated one) is ``Auto``."""
    annotations = dict(service.meta.annotations)
    value = annotations.get(TOPOLOGY_MODE_ANNOTATION)
    if value is None:
        value = annotations.get(DEPRECATED_TOPOLOGY_HINTS_ANNOTATION)
    return value in ("Auto", "auto")


def cpu_ratios(nodes: Sequence[Node]) -> dict[str, float] | None:
    """Each zone's share of the nodes' allocatable CPU (``SetNodes``); None if unusable.

    Give the Ready nodes only: ``SetNodes`` skips the others. None when a (non control-plane)
    node has no zone or no CPU, or fewer than 2 zones remain.
    """
    by_zone: dict[str, int] = {}
    for node in nodes:
        labels = dict(node.meta.labels)
        if any(label in labels for label in CONTROL_PLANE_LABELS):
            continue
        zone = node.zone
        if not zone or node.cpu_millis <= 0:
            return None
        by_zone[zone] = by_zone.get(zone, 0) + node.cpu_millis
    total = sum(by_zone.values())
    if total == 0 or len(by_zone) < 2:
        return None
    return {zone: cpu / total for zone, cpu in sorted(by_zone.items())}


def hinted_zones(endpoints: Sequence[Endpoint]) -> dict[str, int]:
    """``EndpointZoneInfo``: how many ready endpoints carry a hint for each zone."""
    counts: dict[str, int] = {}
    for e in endpoints:
        if e.conditions.ready:
            for zone in e.hint_zones:
                counts[zone] = counts.get(zone, 0) + 1
    return counts


def service_overloaded(zones: Mapping[str, int], ratios: Mapping[str, float] | None) -> bool:
    """``serviceOverloaded`` (utils.go): some zone now has fewer hinted endpoints than its minimum.

    The minimum is ``ceil(total x ratio / 1.2)`` for each zone of the current CPU ratios; a zone
    with no hinted endpoint, or no usable ratios at all, is overloaded too.
    """
    if not zones:
        return False
    if not ratios:
        return True
    total = float(sum(zones.values()))
    for zone, ratio in ratios.items():
        minimum = math.ceil(total * ratio * (1 / (1 + OVERLOAD_THRESHOLD)))
        if zones.get(zone) is None or zones[zone] < minimum:
            return True
    return False


def allocations(ratios: Mapping[str, float], ready: int) -> dict[str, Allocation] | str:
    """``getAllocations``: each zone's share of ``ready`` endpoints, or why hints go away."""
    if len(ratios) > ready:
        return f"insufficient number of endpoints ({ready} endpoints, {len(ratios)} zones)"
    minimums: dict[str, tuple[int, float]] = {}
    remaining = ready
    for zone, ratio in ratios.items():
        desired = ratio * ready
        minimum = math.ceil(desired * (1 / (1 + OVERLOAD_THRESHOLD)))
        minimums[zone] = (minimum, max(desired, float(minimum)))
        remaining -= minimum
        if remaining < 0:
            return (
                "unable to allocate minimum required endpoints to each zone without exceeding "
                f"overload threshold ({ready} endpoints, {len(ratios)} zones)"
            )
    spare = ready - sum(m for m, _ in minimums.values())
    return {z: Allocation(m, m + spare, d) for z, (m, d) in minimums.items()}


def _giving_and_receiving(
    allocs: Mapping[str, Allocation], held: Mapping[str, int]
) -> tuple[dict[str, int], dict[str, int]]:
    """``getGivingAndReceivingZones``: whole endpoints each zone gives or receives."""
    giving_desired: dict[str, float] = {}
    receiving_desired: dict[str, float] = {}
    for zone, alloc in allocs.items():
        have = held.get(zone, 0)
        if have > alloc.desired:
            giving_desired[zone] = have - alloc.desired
        elif have < alloc.desired:
            receiving_desired[zone] = alloc.desired - have
    giving: dict[str, int] = {}
    receiving: dict[str, int] = {}
    while True:
        give_zone, to_give = _most(giving_desired)
        take_zone, to_take = _most(receiving_desired)
        if (
            not give_zone
            or not take_zone
            or (to_give < 1.0 and to_take < 1.0)
            or to_give < 0.5
            or to_take < 0.5
        ):
            break
        giving[give_zone] = giving.get(give_zone, 0) + 1
        giving_desired[give_zone] -= 1
        receiving[take_zone] = receiving.get(take_zone, 0) + 1
        receiving_desired[take_zone] -= 1
    return giving, receiving


def _most(values: Mapping[str, float]) -> tuple[str, float]:
    """``getMost``: the zone with the greatest value (first in name order on ties)."""
    best, most = "", 0.0
    for zone in sorted(values):
        if values[zone] > most:
            best, most = zone, values[zone]
    return best, most


def auto_hints(
    endpoints: Sequence[Endpoint], ratios: Mapping[str, float] | None
) -> tuple[tuple[Endpoint, ...], str | None]:
    """``AddHints`` over a Service's endpoints (in slice order): hinted endpoints, or why not.

    Returns the endpoints with hints set, and None; or the endpoints without hints and the
    reason they were removed (the controller's ``TopologyAwareHintsDisabled`` message).
    """
    bare = tuple(replace(e, hint_zones=(), hint_nodes=()) for e in endpoints)
    if ratios is None:
        return bare, (
            "insufficient node information: allocatable CPU or zone not specified on one or "
            "more nodes, or nodes in fewer than 2 zones"
        )
    ready = sum(1 for e in endpoints if e.conditions.ready)
    allocs = allocations(ratios, ready)
    if isinstance(allocs, str):
        return bare, allocs
    hinted: list[Endpoint] = []
    held: dict[str, int] = {}
    for e in endpoints:
        if not e.conditions.ready:
            hinted.append(replace(e, hint_zones=(), hint_nodes=()))
            continue
        if not e.zone:
            return bare, "one or more endpoints do not have a zone specified"
        held[e.zone] = held.get(e.zone, 0) + 1
        hinted.append(replace(e, hint_zones=(e.zone,), hint_nodes=()))
    giving, receiving = _giving_and_receiving(allocs, held)
    for i, e in enumerate(hinted):
        if not giving or not receiving:
            break
        if not e.conditions.ready or e.zone is None or giving.get(e.zone, 0) <= 0:
            continue
        take = next(z for z in sorted(receiving) if receiving[z] > 0)
        hinted[i] = replace(e, hint_zones=(take,))
        giving[e.zone] -= 1
        if giving[e.zone] == 0:
            del giving[e.zone]
        receiving[take] -= 1
        if receiving[take] == 0:
            del receiving[take]
    return tuple(hinted), None


def hint_endpoints(
    service: Service, endpoints: Sequence[Endpoint], nodes: Sequence[Node] | None
) -> tuple[tuple[Endpoint, ...], str | None]:
    """The endpoints of one address family of ``service`` with the hints it asks for.

    The second value says why ``topology-mode: Auto`` hints were removed (None otherwise).
    ``nodes`` None: nothing is known of the nodes (Auto hints are then removed).
    """
    if auto_hints_requested(service):
        return auto_hints(endpoints, cpu_ratios(nodes) if nodes is not None else None)
    if service.traffic_distribution in CLOSE_TRAFFIC_DISTRIBUTIONS:
        return close_hints(endpoints, service.traffic_distribution), None
    return tuple(endpoints), None


def close_hints(endpoints: Sequence[Endpoint], distribution: str) -> tuple[Endpoint, ...]:
    """Trafficdist's ``preferCloseHeuristic``: each ready endpoint hinted to its own zone."""
    nodes_too = distribution == "PreferSameNode"
    out: list[Endpoint] = []
    for e in endpoints:
        if not e.conditions.ready:
            out.append(e)
            continue
        zones = (e.zone,) if e.zone else ()
        nodes = (e.node_name,) if nodes_too and e.node_name else ()
        out.append(replace(e, hint_zones=zones, hint_nodes=nodes))
    return tuple(out)
