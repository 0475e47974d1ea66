"""kube-proxy's iptables-mode rule compiler: the kernel state after a full sync on a clean node.

A pure function from (Services, EndpointSlices, :class:`NodeContext`) to a
:class:`~svcsim.netfilter.model.Ruleset`, modelled on ``syncProxyRules`` in kubernetes
``pkg/proxy/iptables/proxier.go`` @531be812 (v1.34 development line). What the node holds
afterwards comes from three writers:

1. the iptables Monitor, started by ``NewProxier``, which creates the empty canary chain
   ``KUBE-PROXY-CANARY`` in mangle, nat and filter (in that order);
2. the full sync's ``EnsureChain``/``EnsureRule(Prepend, ...)`` calls for the jump rules from
   built-in chains (``iptablesJumpChains`` then ``iptablesKubeletJumpChains``): each is inserted
   at position 1, so in a built-in chain the jump written *last* ends up *first*;
3. one ``iptables-restore --noflush`` of the filter and nat tables.

Service ports are visited in ServicePortName order (text, then protocol). kube-proxy iterates a
Go map, so its order is random; the order changes only how lines of *different* service ports
interleave in KUBE-SERVICES/KUBE-NODEPORTS and the filter chains, never a rule's meaning, and is
what upstream's own tests normalise away (``sortIPTablesRules``).

Every node compiles the whole state at every sync, so the compile is memoised (results are
unchanged): per service port on exactly what its rules depend on
(:func:`~svcsim.proxy.iptables_service.service_port_block`), the fixed head and tail on the
context facts they read, and the assembled ruleset on the identities of those parts. A node's
compile starts from its previous one: only service ports whose objects are new are written,
and their chains replace the old ones in the previous state
(:func:`~svcsim.proxy.iptables_assembled.reassemble`), so a one-Service change costs that
Service, as kube-proxy's partial sync writes only changed Services. The restore text is
written only when read. The fixed parts are :mod:`svcsim.proxy.iptables_assembly`, the
assembly :mod:`svcsim.proxy.iptables_assembled`. The memos are the run's
:class:`~svcsim.proxy.caches.CompileCaches`, passed in; without one a call computes afresh.

Out of scope: partial syncs and stale-chain deletion (a clean node has no stale chains), IPv6.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import compress, count, repeat
from operator import is_, is_not, or_
from typing import Final, NamedTuple

from svcsim.k8s.objects import EndpointSlice, Service
from svcsim.netfilter.model import Ruleset
from svcsim.netfilter.text import render_restore
from svcsim.proxy.caches import CompileCaches, PortBlockKey
from svcsim.proxy.context import NodeContext
from svcsim.proxy.endpoints import (
    EndpointInfo,
    EndpointsMap,
    ServicePortInfo,
    build_endpoints_map,
    build_service_port_map,
)
from svcsim.proxy.gcpause import collector_paused, promote_to_oldest
from svcsim.proxy.iptables_assembled import Assembly, assemble, reassemble
from svcsim.proxy.iptables_assembly import RestoreSections, fixed_head_tail
from svcsim.proxy.iptables_service import (
    KUBE_FIREWALL,
    KUBE_PROXY_CANARY,
    ServicePortBlock,
    service_port_block,
)
from svcsim.proxy.names import ServicePortName
from svcsim.proxy.topology import categorize_endpoints_shared

LARGE_CLUSTER_ENDPOINTS_THRESHOLD: Final = 1000
"""Above this many endpoints kube-proxy drops per-endpoint comments (``largeClusterMode``)."""


@dataclass(frozen=True, slots=True)
class SyncStats:
    """Sizes of one sync, as kube-proxy counts them (log line "Reloading service iptables data")."""

    service_ports: int
    total_endpoints: int
    large_cluster_mode: bool
    filter_chains: int
    filter_rules: int
    """Also the ``sync_proxy_rules_iptables_total{table="filter"}`` metric."""
    nat_chains: int
    nat_rules: int
    """Also ``sync_proxy_rules_iptables_total{table="nat"}`` on a clean full sync."""
    no_local_endpoints_internal: int
    """``sync_proxy_rules_no_local_endpoints_total{traffic_policy="internal"}``."""
    no_local_endpoints_external: int
    """``sync_proxy_rules_no_local_endpoints_total{traffic_policy="external"}``."""


@dataclass(frozen=True, slots=True)
class IptablesSync:
    """Everything one full sync produces: the kernel state, statistics, the restore input."""

    ruleset: Ruleset
    stats: SyncStats
    assembly: Assembly
    """What the state was assembled from (fragments, where their chains are)."""

    @property
    def restore_text(self) -> str:
        """The iptables-restore input in kube-proxy's exact line order, written when first read.

        (For the visiting order described in the module docstring.)
        """
        return self.assembly.restore_text()

    @property
    def restore_sections(self) -> RestoreSections | None:
        """:attr:`restore_text` as its lines outside the nat table and its nat lines.

        The nat lines are ``(line, chain, is_chain_line)``; None if a line holds a line break.
        """
        return self.assembly.sections()


class VisitingOrder(NamedTuple):
    """A service port map's keys in visiting order, and where each was in the map."""

    names: tuple[ServicePortName, ...]
    places: tuple[int, ...]
    """``names[i]`` is the map's ``places[i]``-th key (in its iteration order)."""


class LatestSync(NamedTuple):
    """One node's (one context's) latest compile: what the next one starts from."""

    order: tuple[ServicePortName, ...]
    """The service ports in visiting order (:func:`_ordered`'s shared names)."""
    infos: tuple[ServicePortInfo, ...]
    """Each port's info object, in :attr:`order`."""
    endpoints: tuple[tuple[EndpointInfo, ...], ...]
    """Each port's endpoints tuple, in :attr:`order`."""
    sync: IptablesSync
    keys: tuple[ServicePortName, ...]
    """The service port map's keys, in its order."""
    visit: VisitingOrder
    """Their visiting order (:func:`_ordered`)."""


def _service_order(spn: ServicePortName) -> tuple[str, str]:
    return spn.text, str(spn.protocol)


def sync_from_maps(
    service_ports: Mapping[ServicePortName, ServicePortInfo],
    endpoints_map: EndpointsMap,
    ctx: NodeContext,
    caches: CompileCaches | None = None,
) -> IptablesSync:
    """A full sync from kube-proxy's own maps (``svcPortMap``, ``endpointsMap``).

    Written as fragments (fixed head, one block per service port, fixed tail) that are
    memoised (in the run's ``caches``; None: a throw-away set) on exactly what they depend on,
    then assembled: the result is the same as writing every line afresh into one set of
    buffers. With the run's caches, the compile starts from this context's previous one
    (:class:`LatestSync`): the service ports whose info or endpoints objects are new are
    written again and their chains replaced in the previous state
    (:func:`~svcsim.proxy.iptables_assembled.reassemble`), so a one-Service change costs a
    pass over the ports' identities plus that Service's chains, as kube-proxy's partial sync
    writes only changed Services (``pkg/proxy/iptables/proxier.go`` @531be812). Built with the
    cyclic garbage collector paused (:mod:`svcsim.proxy.gcpause`).
    """
    with collector_paused():
        return _sync_from_maps(
            service_ports, endpoints_map, ctx, caches if caches is not None else CompileCaches()
        )


def _sync_from_maps(
    service_ports: Mapping[ServicePortName, ServicePortInfo],
    endpoints_map: EndpointsMap,
    ctx: NodeContext,
    caches: CompileCaches,
) -> IptablesSync:
    names = tuple(service_ports)
    latest = caches.latest_syncs.get(id(ctx))
    if latest is not None and _same_objects(names, latest.keys):
        # The very name objects of the previous sync, in the same order: its visiting order
        # holds (checked by identity at C level, without the ids of 10,000 names).
        visit = latest.visit
    else:
        visit = _ordered(names, tuple(map(id, names)), caches)
    order = visit.names
    # Picked by place from the maps' values, not looked up by name: a lookup calls
    # ServicePortName.__hash__ (Python) for each of 10,000 ports at every sync.
    infos = tuple(map(tuple(service_ports.values()).__getitem__, visit.places))
    endpoint_names = tuple(endpoints_map)
    if _same_objects(endpoint_names, names):
        # The same name objects in the same order (the maps are built in Service order).
        endpoints = tuple(map(tuple(endpoints_map.values()).__getitem__, visit.places))
    else:
        # dict.get(name, ()) at C level: a port without endpoints has the shared empty tuple.
        endpoints = tuple(map(endpoints_map.get, order, repeat((), len(order))))
    sync = None
    if latest is not None and latest.order is order:
        sync = _incremental(latest, infos, endpoints, ctx, caches)
    if sync is None:
        sync = _full(infos, endpoints, ctx, caches)
    latest = LatestSync(order, infos, endpoints, sync, names, visit)
    caches.latest_syncs.put(id(ctx), latest, holds=ctx)
    return sync


def _same_objects(these: tuple[object, ...], those: tuple[object, ...]) -> bool:
    """True if ``these`` holds the very objects of ``those``, in the same order."""
    return len(these) == len(those) and all(map(is_, these, those))


def _full(
    infos: tuple[ServicePortInfo, ...],
    endpoints: tuple[tuple[EndpointInfo, ...], ...],
    ctx: NodeContext,
    caches: CompileCaches,
) -> IptablesSync:
    """Every service port's block (memoised each), assembled."""
    head, tail = fixed_head_tail(ctx, caches)
    n_endpoints = sum(map(len, endpoints))
    large = n_endpoints > LARGE_CLUSTER_ENDPOINTS_THRESHOLD
    no_local_internal = no_local_external = 0
    parts = [head]
    for info, eps in zip(infos, endpoints, strict=True):
        block = _port_block(info, eps, ctx, large, caches)
        parts.append(block)
        no_local_internal += block.outcome.no_local_internal
        no_local_external += block.outcome.no_local_external
    parts.append(tail)
    known = len(caches.assembled)
    assembly = assemble(tuple(parts), caches)
    if len(caches.assembled) != known:
        # A new state of every chain, which lives on: not worth a young collection's walk.
        promote_to_oldest()
    stats = _stats(assembly, len(infos), n_endpoints, large, no_local_internal, no_local_external)
    return IptablesSync(assembly.ruleset, stats, assembly)


def _incremental(
    latest: LatestSync,
    infos: tuple[ServicePortInfo, ...],
    endpoints: tuple[tuple[EndpointInfo, ...], ...],
    ctx: NodeContext,
    caches: CompileCaches,
) -> IptablesSync | None:
    """The sync from ``latest``: only ports with new info or endpoints objects are written.

    None when the fixed parts or the large-cluster mode changed, or the assembly cannot be
    spliced: compile in full then.
    """
    before = latest.sync
    head, tail = fixed_head_tail(ctx, caches)
    parts = before.assembly.parts
    if parts[0] is not head or parts[-1] is not tail:
        return None
    stats = before.stats
    new_info = map(is_not, infos, latest.infos)
    new_endpoints = map(is_not, endpoints, latest.endpoints)
    changed = list(compress(count(), map(or_, new_info, new_endpoints)))
    n_endpoints = stats.total_endpoints + sum(
        len(endpoints[i]) - len(latest.endpoints[i]) for i in changed
    )
    large = n_endpoints > LARGE_CLUSTER_ENDPOINTS_THRESHOLD
    if large != stats.large_cluster_mode:
        return None
    no_local_internal = stats.no_local_endpoints_internal
    no_local_external = stats.no_local_endpoints_external
    blocks: dict[int, ServicePortBlock] = {}
    for i in changed:
        old = parts[i + 1].outcome  # parts[0] is the head
        block = _port_block(infos[i], endpoints[i], ctx, large, caches)
        blocks[i + 1] = block
        no_local_internal += block.outcome.no_local_internal - old.no_local_internal
        no_local_external += block.outcome.no_local_external - old.no_local_external
    assembly = reassemble(before.assembly, blocks, caches)
    if assembly is None:
        return None
    stats = _stats(assembly, len(infos), n_endpoints, large, no_local_internal, no_local_external)
    return IptablesSync(assembly.ruleset, stats, assembly)


def _stats(
    assembly: Assembly,
    service_ports: int,
    n_endpoints: int,
    large: bool,
    no_local_internal: int,
    no_local_external: int,
) -> SyncStats:
    counts = assembly.counts
    return SyncStats(
        service_ports=service_ports,
        total_endpoints=n_endpoints,
        large_cluster_mode=large,
        filter_chains=counts.filter_chains,
        filter_rules=counts.filter_rules,
        nat_chains=counts.nat_chains,
        nat_rules=counts.nat_rules,
        no_local_endpoints_internal=no_local_internal,
        no_local_endpoints_external=no_local_external,
    )


def _ordered(
    names: tuple[ServicePortName, ...], ids: tuple[int, ...], caches: CompileCaches
) -> VisitingOrder:
    """The service ports ``names`` (a map's keys, ``ids`` theirs) in visiting order, memoised.

    Every node visits the same (shared) ServicePortName objects at every sync. The value holds
    those names (it is them, sorted), so their ids stay theirs.
    """
    memo = caches.visiting_orders
    hit = memo.get(ids)
    if hit is None:
        places = tuple(sorted(range(len(names)), key=lambda i: _service_order(names[i])))
        hit = memo.put(ids, VisitingOrder(tuple(map(names.__getitem__, places)), places))
    return hit


def _port_block(
    svc: ServicePortInfo,
    endpoints: tuple[EndpointInfo, ...],
    ctx: NodeContext,
    large: bool,
    caches: CompileCaches,
) -> ServicePortBlock:
    """Categorise ``endpoints`` for this node and write the port's block, memoised by identity.

    A sync changes few service ports: the others arrive as the very same info and endpoints
    tuple objects (memoised in :mod:`svcsim.proxy.endpoints`), so their block is found without
    categorising again. The entry holds the keyed objects, so their ids stay theirs.
    """
    # Asked with the plain tuple equal to the PortBlockKey stored below (see proxy/caches.py).
    hit = caches.port_blocks.get((id(svc), id(endpoints), id(ctx), large))
    if hit is not None:
        return hit
    cat = categorize_endpoints_shared(
        endpoints,
        svc,
        ctx.node_name,
        ctx.node_zone or "",  # what categorize_endpoints reads from ctx.topology_labels
        ctx.prefer_same_traffic_distribution,
        caches,
    )
    block = service_port_block(svc, cat, ctx, large, caches)
    key = PortBlockKey(id(svc), id(endpoints), id(ctx), large)
    return caches.port_blocks.put(key, block, holds=(svc, endpoints, ctx))


def compile_iptables_sync(
    services: Iterable[Service],
    endpoint_slices: Iterable[EndpointSlice],
    ctx: NodeContext,
    caches: CompileCaches | None = None,
) -> IptablesSync:
    """A full sync on a clean node: kernel state, exact restore input and statistics.

    ``caches``: the run's (or the command's); None computes afresh.
    """
    caches = caches if caches is not None else CompileCaches()
    return sync_from_maps(
        build_service_port_map(services, caches),
        build_endpoints_map(endpoint_slices, ctx.node_name, caches),
        ctx,
        caches,
    )


def compile_iptables(
    services: Iterable[Service],
    endpoint_slices: Iterable[EndpointSlice],
    ctx: NodeContext,
    caches: CompileCaches | None = None,
) -> Ruleset:
    """The iptables state (mangle, nat, filter) of a clean node after kube-proxy's full sync."""
    return compile_iptables_sync(services, endpoint_slices, ctx, caches).ruleset


def restore_text(ruleset: Ruleset) -> str:
    """The iptables-restore input kube-proxy sends for ``ruleset`` (filter, then nat).

    Built-in chains (set up by ``EnsureRule``), the canary chains (the Monitor's) and an empty
    KUBE-FIREWALL (only ensured, never restored, when localhost NodePorts are off) are left out.
    Every line is kube-proxy's, and lines of one chain keep their order; lines are grouped chain
    by chain, whereas kube-proxy interleaves chains (see :attr:`IptablesSync.restore_text` for
    that order). iptables-restore builds the same tables either way.
    """
    skip = [KUBE_PROXY_CANARY]
    firewall = ruleset.chain("filter", KUBE_FIREWALL)
    if firewall is not None and not firewall.rules:
        skip.append(KUBE_FIREWALL)
    return render_restore(ruleset, tables=("filter", "nat"), skip_chains=skip)


def sync_stats(ruleset: Ruleset) -> dict[str, int]:
    """Chain and rule counts per table of a compiled ruleset (user chains; built-ins' rules too)."""
    out: dict[str, int] = {}
    for table in ruleset.tables:
        out[f"{table.name}_chains"] = sum(1 for c in table.chains if not c.is_builtin)
        out[f"{table.name}_rules"] = sum(len(c.rules) for c in table.chains)
    return out
