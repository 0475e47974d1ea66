"""Which of a service port's endpoints one node uses: ``CategorizeEndpoints`` and topology hints.

Mirrors kubernetes ``pkg/proxy/topology.go`` (``CategorizeEndpoints``, v1.33+ shape with
``topologyModeFromHints``): pure functions from the endpoints map entry of one service port,
the port's traffic policies and the node's name and topology labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from svcsim.proxy.caches import CategorizeKey, CompileCaches
from svcsim.proxy.context import TOPOLOGY_ZONE_LABEL
from svcsim.proxy.endpoints import EndpointInfo, ServicePortInfo

PREFER_SAME_NODE = "PreferSameNode"
PREFER_SAME_ZONE = "PreferSameZone"


@dataclass(frozen=True, slots=True)
class CategorizedEndpoints:
    """The result of :func:`categorize_endpoints`; see there for each field's meaning."""

    cluster: tuple[EndpointInfo, ...]
    local: tuple[EndpointInfo, ...]
    all_reachable: tuple[EndpointInfo, ...]
    has_any_endpoints: bool
    topology_mode: str = ""
    """``""``, ``"PreferSameZone"`` or ``"PreferSameNode"``: how hints filtered ``cluster``."""


def topology_mode_from_hints(
    endpoints: Sequence[EndpointInfo],
    node_name: str,
    zone: str,
    prefer_same_traffic_distribution: bool = True,
) -> str:
    """Which hints kube-proxy obeys (``topologyModeFromHints``), looking at Ready endpoints only.

    ``PreferSameNode`` if the gate is on, every Ready endpoint has node hints and one is hinted
    for this node; else ``PreferSameZone`` if every Ready endpoint has zone hints and one is
    hinted for this node's zone (a node without a zone label never qualifies); else ``""``.
    Since v1.33 the Service's topology annotation is not consulted: hints are obeyed whenever
    present (kubernetes PR #130742 removed ``hintsAnnotation``).
    """
    ready = [ep for ep in endpoints if ep.ready]
    if not ready:
        return ""
    node_hinted = all(ep.node_hints for ep in ready)
    if (
        prefer_same_traffic_distribution
        and node_hinted
        and any(node_name in ep.node_hints for ep in ready)
    ):
        return PREFER_SAME_NODE
    if zone and all(ep.zone_hints for ep in ready) and any(zone in ep.zone_hints for ep in ready):
        return PREFER_SAME_ZONE
    return ""


def _available_for_topology(ep: EndpointInfo, mode: str, node_name: str, zone: str) -> bool:
    if mode == PREFER_SAME_NODE:
        return node_name in ep.node_hints
    if mode == PREFER_SAME_ZONE:
        return zone in ep.zone_hints
    return True


def categorize_endpoints(
    endpoints: Sequence[EndpointInfo],
    svc: ServicePortInfo,
    node_name: str,
    topology_labels: Mapping[str, str] | None = None,
    prefer_same_traffic_distribution: bool = True,
) -> CategorizedEndpoints:
    """Split a service port's endpoints like ``CategorizeEndpoints`` (pkg/proxy/topology.go).

    Returned fields:

    * ``cluster``: endpoints for Cluster traffic policy; empty if the port never uses Cluster
      policy (:attr:`ServicePortInfo.uses_cluster_endpoints`). The Ready endpoints, filtered by
      topology hints when :func:`topology_mode_from_hints` says so. **Fallback:** if that leaves
      none, every endpoint that is serving *and* terminating, anywhere, ignoring topology.
    * ``local``: endpoints for Local traffic policy; empty if the port never uses Local policy.
      The node-local Ready endpoints. **Fallback:** if there are none, the node-local endpoints
      that are serving and terminating.
    * ``all_reachable``: the union of the two lists, i.e. every endpoint that gets a KUBE-SEP
      chain on this node. When it is exactly one of the lists that list is returned; when a
      real merge is needed (topology filtering or the local fallback is in play) the merged list
      is sorted by ``"IP:port"`` (upstream builds it from a Go map, so its order is random).
    * ``has_any_endpoints``: some endpoint anywhere is Ready, or serving and terminating;
      this decides rules versus REJECT. It can be true while ``all_reachable`` is empty.

    Endpoints that are neither Ready nor serving-and-terminating are never used.
    """
    zone = (topology_labels or {}).get(TOPOLOGY_ZONE_LABEL, "")
    mode = ""
    cluster: list[EndpointInfo] = []
    local: list[EndpointInfo] = []
    has_any = False
    if svc.uses_cluster_endpoints:
        mode = topology_mode_from_hints(
            endpoints, node_name, zone, prefer_same_traffic_distribution
        )
        cluster = [
            ep
            for ep in endpoints
            if ep.ready and _available_for_topology(ep, mode, node_name, zone)
        ]
        if not cluster:
            cluster = [ep for ep in endpoints if ep.serving and ep.terminating]
        has_any = bool(cluster)
    if not svc.uses_local_endpoints:
        return CategorizedEndpoints(tuple(cluster), (), tuple(cluster), has_any, mode)

    local_ready = any(ep.is_local and ep.ready for ep in endpoints)
    local_serving_terminating = any(
        ep.is_local and not ep.ready and ep.serving and ep.terminating for ep in endpoints
    )
    has_any = has_any or any(ep.ready or (ep.serving and ep.terminating) for ep in endpoints)
    used_fallback = False
    if local_ready:
        local = [ep for ep in endpoints if ep.is_local and ep.ready]
    elif local_serving_terminating:
        used_fallback = True
        local = [ep for ep in endpoints if ep.is_local and ep.serving and ep.terminating]
    if not svc.uses_cluster_endpoints:
        return CategorizedEndpoints((), tuple(local), tuple(local), has_any, mode)
    if not mode and not used_fallback:
        # local holds only Ready endpoints and cluster holds every Ready one: a superset.
        return CategorizedEndpoints(tuple(cluster), tuple(local), tuple(cluster), has_any, mode)
    merged = {ep.text: ep for ep in cluster} | {ep.text: ep for ep in local}
    reachable = tuple(sorted(merged.values(), key=lambda e: e.text))
    return CategorizedEndpoints(tuple(cluster), tuple(local), reachable, has_any, mode)


def categorize_endpoints_shared(
    endpoints: tuple[EndpointInfo, ...],
    svc: ServicePortInfo,
    node_name: str,
    zone: str = "",
    prefer_same_traffic_distribution: bool = True,
    caches: CompileCaches | None = None,
) -> CategorizedEndpoints:
    """:func:`categorize_endpoints` (zone given directly), memoised by identity across nodes.

    The node's name only counts through node hints (``PreferSameNode``); locality is already
    in the endpoints (``is_local``). So when no endpoint carries node hints, every node that
    holds the very same endpoints tuple gets the very same answer, and it is computed once.
    The entry holds the keyed objects, so their ids stay theirs. ``caches``: the run's
    (:class:`~svcsim.proxy.caches.CompileCaches`); None computes afresh.
    """
    prefer = prefer_same_traffic_distribution
    labels = {TOPOLOGY_ZONE_LABEL: zone} if zone else None
    if caches is None:  # not a whole CompileCaches per call (the nftables compiler's case)
        return categorize_endpoints(endpoints, svc, node_name, labels, prefer)
    hinted = any(ep.node_hints for ep in endpoints)
    key = CategorizeKey(id(endpoints), id(svc), zone, prefer, node_name if hinted else None)
    memo = caches.categorized
    hit = memo.get(key)
    if hit is None:
        cat = categorize_endpoints(endpoints, svc, node_name, labels, prefer)
        hit = memo.put(key, cat, holds=(endpoints, svc))
    return hit
