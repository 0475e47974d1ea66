"""Nodes in step share one iptables-mode compile: the work of a sync is done once per state.

Every node's kube-proxy receives the same watch events and, with equal timing, syncs at the
same instants from the very same Service and EndpointSlice objects. Its compile
(:func:`svcsim.proxy.iptables.sync_from_maps`) is a pure function of the service-port map,
the endpoints map and its :class:`~svcsim.proxy.context.NodeContext`; what differs between
such nodes is only

* the node's name, read by the compile only through node hints (``PreferSameNode``);
* its IPs, read only for ``--nodeport-addresses`` that do not match all addresses (the
  ``KUBE-NODEPORTS`` destinations) and for ``loadBalancerSourceRanges`` (``-s nodeIP``);
* locality (``is_local``) in its endpoints map, read only for service ports that use local
  endpoints (``internalTrafficPolicy`` / ``externalTrafficPolicy: Local``).

Where none of these reads happens, the node compiles exactly what a context without name and
IPs (:func:`shared_context`, one object per run for all alike nodes) compiles from the map
seen from no node (:attr:`~svcsim.proxy.shared_maps.SharedEndpoints.base`): so it compiles
that, memoised by the identities of those three objects (:func:`iptables_compile`). N nodes in
step then cost one compile, and the same :class:`~svcsim.proxy.iptables.IptablesSync` object
also makes their restore plans and kernel rulesets memo hits
(:func:`svcsim.sim.restore.plan_sync`, :func:`~svcsim.sim.restore.apply_plan`). Anything
else compiles with the node's own context and map, as before. Each node's kube-proxy keeps
its own maps for what it programs (health checks, conntrack clean-up, metrics).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import NamedTuple

from svcsim.memo import BoundedMemo
from svcsim.proxy.context import NodeContext
from svcsim.proxy.endpoints import EndpointsMap, ServicePortInfo
from svcsim.proxy.iptables import IptablesSync, sync_from_maps
from svcsim.proxy.names import ServicePortName
from svcsim.proxy.shared_maps import SharedEndpoints, locality_matters
from svcsim.sim.caches import RunCaches


class SharedSyncKey(NamedTuple):
    """A shared compile's inputs, by identity (the memo entry holds them)."""

    context_id: int
    service_ports_id: int
    endpoints_id: int


def shared_context(ctx: NodeContext, caches: RunCaches) -> NodeContext | None:
    """The run's one context for nodes alike to ``ctx`` but for their names and IPs.

    None if its IPs shape its rules (``--nodeport-addresses`` not matching all addresses).
    """
    if not ctx.nodeport_match_all:
        return None
    canonical = dataclasses.replace(ctx, node_name="", node_ips=())
    held = caches.shared_contexts.get(canonical)
    return held if held is not None else caches.shared_contexts.put(canonical, canonical)


def iptables_compile(
    service_ports: Mapping[ServicePortName, ServicePortInfo],
    shared: SharedEndpoints,
    endpoints_map: EndpointsMap,
    node: str,
    ctx: NodeContext,
    alike: NodeContext | None,
    caches: RunCaches,
) -> IptablesSync:
    """``sync_from_maps(service_ports, endpoints_map, ctx)``, shared by nodes in step.

    ``shared``: the endpoints of the same slices seen from no node (``endpoints_map`` is
    ``node``'s own); ``alike``: :func:`shared_context` of ``ctx``. See the module docstring
    for when the compile is shared; the result is the same either way.
    """
    if (
        alike is None
        or _has_source_ranges(service_ports, caches)
        or locality_matters(shared, node, service_ports, caches.compile)
    ):
        return sync_from_maps(service_ports, endpoints_map, ctx, caches.compile)
    return shared_compile(service_ports, shared, alike, caches)


def uniform_compile(
    service_ports: Mapping[ServicePortName, ServicePortInfo],
    shared: SharedEndpoints,
    alike: NodeContext | None,
    caches: RunCaches,
) -> IptablesSync | None:
    """The one compile of every node whose context shares ``alike``, or None if they differ.

    Not None when no service port reads a node's IPs (``loadBalancerSourceRanges``) or
    locality (local endpoints, node hints): then :func:`iptables_compile` gives each such
    node this compile or one equal to it, and a cohort of nodes in step
    (:meth:`svcsim.sim.kubeproxy.KubeProxy.start_in_step`) asks once, not once per node.
    """
    if alike is None or shared.node_hints or _has_source_ranges(service_ports, caches):
        return None
    if _has_local_ports(service_ports, caches):
        return None
    return shared_compile(service_ports, shared, alike, caches)


def shared_compile(
    service_ports: Mapping[ServicePortName, ServicePortInfo],
    shared: SharedEndpoints,
    alike: NodeContext,
    caches: RunCaches,
) -> IptablesSync:
    """``sync_from_maps`` of the map seen from no node with ``alike``, memoised by identities."""
    base = shared.base
    # Asked with the plain tuple equal to the SharedSyncKey stored below (proxy/caches.py).
    hit = caches.shared_syncs.get((id(alike), id(service_ports), id(base)))
    if hit is None:
        hit = caches.shared_syncs.put(
            SharedSyncKey(id(alike), id(service_ports), id(base)),
            sync_from_maps(service_ports, base, alike, caches.compile),
            holds=(alike, service_ports, base),
        )
    return hit


def _has_source_ranges(
    service_ports: Mapping[ServicePortName, ServicePortInfo], caches: RunCaches
) -> bool:
    """Some service port has ``loadBalancerSourceRanges`` (memoised by the map's identity)."""
    return _any_port(
        service_ports, caches.source_ranges, lambda i: bool(i.load_balancer_source_ranges)
    )


def _has_local_ports(
    service_ports: Mapping[ServicePortName, ServicePortInfo], caches: RunCaches
) -> bool:
    """Some service port uses local endpoints (memoised by the map's identity)."""
    return _any_port(service_ports, caches.local_ports, lambda i: i.uses_local_endpoints)


def _any_port(
    service_ports: Mapping[ServicePortName, ServicePortInfo],
    memo: BoundedMemo[int, bool],
    has: Callable[[ServicePortInfo], bool],
) -> bool:
    """Whether some port of ``service_ports`` ``has`` it, kept in ``memo`` by the map's identity."""
    found = memo.get(id(service_ports))
    if found is None:
        found = memo.put(
            id(service_ports), any(map(has, service_ports.values())), holds=service_ports
        )
    return found
