"""kube-proxy's two maps for nodes in step: built once per informer state, not once per node.

Every node's kube-proxy receives the same watch events, so at a sync instant the nodes in step
hold the very same Service and EndpointSlice objects. The service-port map
(:func:`~svcsim.proxy.endpoints.build_service_port_map`) depends on nothing else: one map
object serves them all (:func:`shared_service_port_map`). The endpoints map
(:func:`~svcsim.proxy.endpoints.build_endpoints_map`) depends on the node only through
locality (``is_local`` of the endpoints whose ``nodeName`` is the node), so it is built once
as seen from no node (:attr:`SharedEndpoints.base`) and a node's own map is that base with the
few Services it hosts an endpoint of localised (:func:`node_endpoints_map`): the same map,
key for key and object for object, as ``build_endpoints_map(slices, node)``.

The returned maps are shared between nodes and syncs: callers read them, never change them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from svcsim.k8s.objects import EndpointSlice, Service
from svcsim.proxy.caches import CompileCaches, ServiceSlices
from svcsim.proxy.endpoints import (
    EndpointsMap,
    ServicePortInfo,
    _grouped,
    _port_infos,
    _service_endpoints,
)
from svcsim.proxy.names import ServicePortName


class SharedEndpoints(NamedTuple):
    """One informer state's endpoints map seen from no node, and who hosts which Service."""

    base: EndpointsMap
    """The endpoints map with every endpoint non-local (``build_endpoints_map(slices, "")``)."""
    hosted: Mapping[str, tuple[ServiceSlices, ...]]
    """Per node name: the Services (their slice groups) with an endpoint on that node."""
    node_hints: bool
    """Some endpoint carries node hints (then a node's name shapes its categorisation)."""


def shared_service_port_map(
    services: Iterable[Service], caches: CompileCaches
) -> dict[ServicePortName, ServicePortInfo]:
    """``build_service_port_map(services)``, one map object per sequence of Service objects.

    Memoised by the Services' identities in order (the entry holds them, so the ids stay
    theirs): nodes in step, which hold the very same objects, get the very same map.
    """
    held = tuple(services)
    key = tuple(map(id, held))
    hit = caches.port_maps.get(key)
    if hit is None:
        out: dict[ServicePortName, ServicePortInfo] = {}
        for svc in held:
            for info in _port_infos(svc, caches):
                out[info.name] = info
        hit = caches.port_maps.put(key, out, holds=held)
    return hit


def shared_endpoints(slices: Iterable[EndpointSlice], caches: CompileCaches) -> SharedEndpoints:
    """The endpoints of these slice objects seen from no node, memoised by their identities."""
    held = tuple(slices)
    key = tuple(map(id, held))
    hit = caches.shared_endpoints.get(key)
    if hit is not None:
        return hit
    base: EndpointsMap = {}
    hosted: dict[str, list[ServiceSlices]] = {}
    hints = False
    for group_key, group in _grouped(held, caches):
        base.update(_service_endpoints(group_key, group, "", caches))
        placed = caches.placed_endpoints.get(group_key)
        assert placed is not None  # _service_endpoints just stored it
        nodes: set[str] = set()
        for _, endpoints, node_names in placed:
            nodes.update(n for n in node_names if n)
            hints = hints or any(ep.node_hints for ep in endpoints)
        for node in sorted(nodes):
            hosted.setdefault(node, []).append((group_key, group))
    shared = SharedEndpoints(base, {n: tuple(g) for n, g in hosted.items()}, hints)
    return caches.shared_endpoints.put(key, shared, holds=held)


def node_endpoints_map(shared: SharedEndpoints, node: str, caches: CompileCaches) -> EndpointsMap:
    """``build_endpoints_map(slices, node)`` from the slices' :func:`shared_endpoints`.

    A node hosting no endpoint gets :attr:`SharedEndpoints.base` itself; otherwise a copy
    with its hosted Services localised (same keys, same order, same tuples elsewhere).
    """
    groups = shared.hosted.get(node)
    if not groups:
        return shared.base
    out = dict(shared.base)
    for group_key, group in groups:
        out.update(_service_endpoints(group_key, group, node, caches))
    return out


def locality_matters(
    shared: SharedEndpoints,
    node: str,
    service_ports: Mapping[ServicePortName, ServicePortInfo],
    caches: CompileCaches,
) -> bool:
    """Whether ``node``'s own endpoints map could categorise differently from the base map.

    ``CategorizeEndpoints`` reads ``is_local`` only for service ports that use local endpoints
    (``internalTrafficPolicy`` or ``externalTrafficPolicy: Local``), and the node's name only
    through node hints (:func:`svcsim.proxy.topology.categorize_endpoints`). False: every
    service port of the node categorises its endpoints as it would those of the base map.
    """
    if shared.node_hints:
        return True
    for group_key, _ in shared.hosted.get(node, ()):
        placed = caches.placed_endpoints.get(group_key)
        if placed is None:
            return True  # evicted: cannot tell cheaply, so do not share
        for spn, _, _ in placed:
            info = service_ports.get(spn)
            if info is not None and info.uses_local_endpoints:
                return True
    return False
