"""kube-proxy's IPVS-mode compiler: Services + EndpointSlices + node -> the node's IPVS state.

A pure function modelled on ``syncProxyRules`` in kubernetes ``pkg/proxy/ipvs/proxier.go``
(the v1.33+ line; see :mod:`svcsim.proxy.ipvs_rules` for the version note), run on a clean node:

* per service port, a virtual server for the ClusterIP:port (its address bound to the
  ``kube-ipvs0`` dummy interface), one per external IP and per LoadBalancer ingress IP (bound
  unless the address is already the node's), and one per node IP for a NodePort (never bound);
* each virtual server gets ``--ipvs-scheduler`` (``rr`` by default), ``persistent`` with the
  Service's ``sessionAffinityConfig.clientIP.timeoutSeconds`` for ClientIP affinity, and the
  ``mh-port`` flag with ``mh`` (``FlagSourceHash``);
* real servers from ``CategorizeEndpoints``: the ClusterIP's with the internal traffic policy,
  the others with the external one; with a Local policy the node-local endpoints, or the cluster
  ones when there are none locally (kubernetes #97081, unlike iptables mode), all weight 1;
* with ``show_draining`` (the default, what ``svcsim rules`` prints) a terminating TCP endpoint
  that is no longer used is shown at **weight 0**: what the graceful-termination manager
  (``graceful_termination.go``) leaves while the real server still has connections (a clean
  compile cannot know, and shows the draining state). UDP and SCTP real servers are deleted at
  once (``IsRsGracefulTerminationNeeded``). Without it the result is exactly ``syncEndpoint``'s
  wanted set, and :class:`svcsim.proxy.ipvs_graceful.GracefulTermination` decides, from the
  live connection counts, what stays at weight 0;
* the ip sets and the iptables rules that use them (:func:`svcsim.proxy.ipvs_rules.ipvs_ruleset`).

kube-proxy iterates Go maps, so the order in which real servers are added is random; here they
are added in (IP, port) order, so the kernel list (newest first) is the reverse of that.
"""

from __future__ import annotations

import ipaddress
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import compress

from svcsim.k8s.objects import EndpointSlice, Service
from svcsim.memo import BoundedMemo
from svcsim.netfilter.ipset import Ipset, IpsetTable
from svcsim.netfilter.ipvs import IpvsState, RealServer, VirtualServer
from svcsim.netfilter.ipvs_sched import SCHEDULERS
from svcsim.netfilter.model import Ruleset
from svcsim.proxy.context import NodeContext
from svcsim.proxy.endpoints import (
    EndpointInfo,
    ServicePortInfo,
    build_endpoints_map,
    build_service_port_map,
)
from svcsim.proxy.gcpause import collector_paused
from svcsim.proxy.ipvs_rules import (
    IPSET_INFO,
    KUBE_CLUSTER_IP,
    KUBE_EXTERNAL_IP,
    KUBE_EXTERNAL_IP_LOCAL,
    KUBE_HEALTH_CHECK_NODE_PORT,
    KUBE_IPVS_IPS,
    KUBE_LOAD_BALANCER,
    KUBE_LOAD_BALANCER_FW,
    KUBE_LOAD_BALANCER_LOCAL,
    KUBE_LOAD_BALANCER_SOURCE_CIDR,
    KUBE_LOAD_BALANCER_SOURCE_IP,
    KUBE_LOOP_BACK,
    KUBE_NODE_PORT_LOCAL_SCTP,
    KUBE_NODE_PORT_LOCAL_TCP,
    KUBE_NODE_PORT_LOCAL_UDP,
    KUBE_NODE_PORT_SCTP,
    KUBE_NODE_PORT_TCP,
    KUBE_NODE_PORT_UDP,
    NoNodeAccess,
    ipvs_ruleset,
)
from svcsim.proxy.names import ServicePortName
from svcsim.proxy.topology import categorize_endpoints

DEFAULT_SCHEDULER = "rr"
"""``defaultScheduler``: what an empty ``--ipvs-scheduler`` means."""

_NODE_PORT_SETS = {
    "tcp": (KUBE_NODE_PORT_TCP, KUBE_NODE_PORT_LOCAL_TCP),
    "udp": (KUBE_NODE_PORT_UDP, KUBE_NODE_PORT_LOCAL_UDP),
    "sctp": (KUBE_NODE_PORT_SCTP, KUBE_NODE_PORT_LOCAL_SCTP),
}


@dataclass(slots=True)
class _Build:
    """What the sync accumulates: set members, virtual servers, bound addresses, out-filter."""

    members: dict[str, set[str]]
    servers: list[VirtualServer]
    bound: set[str]
    no_node_access: list[NoNodeAccess]


@dataclass(frozen=True, slots=True)
class _PortPart:
    """What one service port adds to a sync: :class:`_Build`'s four parts, as values."""

    members: tuple[tuple[str, tuple[str, ...]], ...]
    """(set name, entries added to it), in the order they were added."""
    servers: tuple[VirtualServer, ...]
    bound: tuple[str, ...]
    no_node_access: tuple[NoNodeAccess, ...]


@dataclass(frozen=True, slots=True)
class _LastCompile:
    """A compile's inputs per port (in its order) and its result, for the next one to reuse."""

    names: tuple[ServicePortName, ...]
    endpoints: tuple[tuple[EndpointInfo, ...], ...]
    parts: tuple[_PortPart, ...]
    offsets: tuple[int, ...]
    """Where each port's servers start in ``state.virtual_servers``."""
    state: IpvsState
    positions: Mapping[ServicePortName, int]
    """Each port's place in ``names``."""
    map_keys: tuple[ServicePortName, ...]
    """The endpoints map's keys, in its order, and its values: a map of the same keys next
    time tells which ports got other endpoint objects without hashing every name."""
    map_values: tuple[tuple[EndpointInfo, ...], ...]
    node_key: tuple[str, ...]
    """The node addresses NodePorts listen on (none if no port has a NodePort): they depend
    on the port map and the context only, the memo's key."""


_PortKey = tuple[ServicePortInfo, tuple[EndpointInfo, ...], NodeContext, str, bool, tuple[str, ...]]
"""(port, endpoints, node context, scheduler, show_draining, NodePort IPs): what a port's
objects are made from."""


class IpvsMemo:
    """Each service port's IPVS objects and the ip sets and tables built, owned by a run.

    A simulated kube-proxy in IPVS mode compiles every Service at every sync; a port's virtual
    servers and set entries for the same inputs are the same each time, and so are the ip sets
    (validated once) and the sorted dummy addresses for the same members. Each memo holds at
    most ``limit`` entries (:class:`~svcsim.memo.BoundedMemo`). The last compile of each
    (port map, node context) pair is kept too: when only endpoints changed, the next compile
    of that pair re-does the ports whose endpoint tuples are other objects and reuses the rest
    (``_from_last``). Without a memo, a compile computes everything afresh (the same result).
    """

    __slots__ = ("bound", "by_identity", "ipsets", "last", "parts", "rulesets", "tables")

    def __init__(self, limit: int = 1 << 16) -> None:
        self.parts: BoundedMemo[_PortKey, _PortPart] = BoundedMemo(
            "IPVS objects of a service port by what they are made from", limit
        )
        self.by_identity: BoundedMemo[tuple[object, ...], _PortPart] = BoundedMemo(
            "IPVS objects of a service port by the identities of what they are made from", limit
        )
        self.ipsets: BoundedMemo[tuple[str, frozenset[str]], Ipset] = BoundedMemo(
            "ip sets by name and members", 64
        )
        self.tables: BoundedMemo[tuple[int, ...], IpsetTable] = BoundedMemo(
            "ip-set tables by the identities of their sets", 16
        )
        self.bound: BoundedMemo[frozenset[str], tuple[str, ...]] = BoundedMemo(
            "dummy-interface addresses in address order, by the set of them", 16
        )
        self.rulesets: BoundedMemo[tuple[object, ...], Ruleset] = BoundedMemo(
            "helper iptables rules by (context, ip-set table identity, out-filter)", 16
        )
        self.last: BoundedMemo[tuple[object, ...], _LastCompile] = BoundedMemo(
            "the last compile per (port map, node context) identities", 64
        )


def compile_ipvs(
    services: Iterable[Service],
    endpoint_slices: Iterable[EndpointSlice],
    ctx: NodeContext,
    scheduler: str = DEFAULT_SCHEDULER,
    *,
    show_draining: bool = True,
) -> IpvsState:
    """The node's IPVS state after a full sync on a clean node (see the module docstring)."""
    return ipvs_from_maps(
        build_service_port_map(services),
        build_endpoints_map(endpoint_slices, ctx.node_name),
        ctx,
        scheduler,
        show_draining=show_draining,
    )


def ipvs_from_maps(
    port_map: Mapping[ServicePortName, ServicePortInfo],
    endpoints_map: Mapping[ServicePortName, tuple[EndpointInfo, ...]],
    ctx: NodeContext,
    scheduler: str = DEFAULT_SCHEDULER,
    *,
    show_draining: bool = True,
    memo: IpvsMemo | None = None,
) -> IpvsState:
    """:func:`compile_ipvs` from kube-proxy's service-port and endpoints maps (a sync's input).

    ``memo`` (a run's) remembers each port's objects and the sets built; without one
    everything is computed afresh, with the same result.
    """
    if scheduler not in SCHEDULERS:
        raise ValueError(f"unknown IPVS scheduler {scheduler!r}: one of {', '.join(SCHEDULERS)}")
    with collector_paused():
        return _state(port_map, endpoints_map, ctx, scheduler, show_draining, memo)


def _state(
    port_map: Mapping[ServicePortName, ServicePortInfo],
    endpoints_map: Mapping[ServicePortName, tuple[EndpointInfo, ...]],
    ctx: NodeContext,
    scheduler: str,
    show_draining: bool,
    memo: IpvsMemo | None,
) -> IpvsState:
    lkey = (id(port_map), id(ctx), scheduler, show_draining)
    last = memo.last.get(lkey) if memo is not None else None
    if memo is not None and last is not None:
        again = _from_last(last, port_map, endpoints_map, ctx, scheduler, show_draining, memo)
        if again is not None:
            return again
    build = _Build({info.name: set() for info in IPSET_INFO}, [], set(), [])
    node_ips = _nodeport_ips(ctx) if any(p.node_port for p in port_map.values()) else []
    node_key = tuple(node_ips)
    names = sorted(port_map, key=lambda n: (n.text, str(n.protocol)))
    seen_eps: list[tuple[EndpointInfo, ...]] = []
    parts: list[_PortPart] = []
    offsets: list[int] = []
    for spn in names:
        svc, eps = port_map[spn], endpoints_map.get(spn, ())
        if memo is None:
            _service_port(build, svc, spn, eps, ctx, scheduler, node_ips, show_draining)
            continue
        seen_eps.append(eps)
        offsets.append(len(build.servers))
        # By identity first: the maps of successive syncs hold the same objects for what did
        # not change, and hashing a port's endpoints by value costs more than the lookup saves.
        ikey = (id(svc), id(eps), id(ctx), scheduler, show_draining, node_key)
        part = memo.by_identity.get(ikey)
        if part is None:
            part = _part(memo, (svc, eps, ctx, scheduler, show_draining, node_key), spn, node_ips)
            memo.by_identity.put(ikey, part, holds=(svc, eps, ctx))
        parts.append(part)
        members = build.members
        for name, entries in part.members:
            members[name].update(entries)
        build.servers += part.servers
        build.bound.update(part.bound)
        build.no_node_access += part.no_node_access
    build.members[KUBE_IPVS_IPS] = set(build.bound)
    ipsets = _ipset_table(build.members, memo)
    no_node_access = tuple(build.no_node_access)
    if memo is None:
        ruleset = ipvs_ruleset(ctx, ipsets.as_dict(), no_node_access)
        dummy = _address_order(build.bound)
    else:
        rkey = (ctx, id(ipsets), no_node_access)
        found = memo.rulesets.get(rkey)
        if found is None:
            found = memo.rulesets.put(
                rkey, ipvs_ruleset(ctx, ipsets.as_dict(), no_node_access), holds=ipsets
            )
        ruleset = found
        bound = frozenset(build.bound)
        dummy = memo.bound.get(bound) or memo.bound.put(bound, _address_order(bound))
    state = IpvsState(dummy, tuple(build.servers), ipsets, ruleset)
    if memo is not None:
        state.real_server_count  # noqa: B018 - counted now, carried on by later syncs' states
        done = _LastCompile(
            tuple(names),
            tuple(seen_eps),
            tuple(parts),
            tuple(offsets),
            state,
            {spn: i for i, spn in enumerate(names)},
            tuple(endpoints_map),
            tuple(endpoints_map.values()),
            node_key,
        )
        memo.last.put(lkey, done, holds=(port_map, ctx))
    return state


def _from_last(
    last: _LastCompile,
    port_map: Mapping[ServicePortName, ServicePortInfo],
    endpoints_map: Mapping[ServicePortName, tuple[EndpointInfo, ...]],
    ctx: NodeContext,
    scheduler: str,
    show_draining: bool,
    memo: IpvsMemo,
) -> IpvsState | None:
    """The compile of the same port map and context as ``last``, only endpoints changed.

    The ports whose endpoints are other objects than last time are compiled again; when each
    adds the same set entries, addresses and out-filter as before and servers of the same keys,
    its servers are swapped in place and everything else is ``last``'s (the same result as a
    full compile). None when a port's part changed otherwise (the caller compiles in full).
    """
    node_key = last.node_key
    eps_now = list(last.endpoints)
    parts_now = list(last.parts)
    servers: list[VirtualServer] | None = None
    changed: list[VirtualServer] = []
    get = endpoints_map.get
    map_keys, map_values = tuple(endpoints_map), tuple(endpoints_map.values())
    moved: list[int]
    if map_keys == last.map_keys:
        # The same ports have endpoints as last time: the ones whose endpoint objects are
        # others, found by identity in C (a walk hashing every name costs ~5 ms at 10,000).
        others = compress(map_keys, map(operator.is_not, map_values, last.map_values))
        positions = last.positions
        moved = sorted(positions[spn] for spn in others if spn in positions)
    else:
        # The one walk over every port: which ones hold other endpoint objects than last time.
        moved = [
            i
            for i, (spn, eps) in enumerate(zip(last.names, last.endpoints, strict=True))
            if get(spn, ()) is not eps
        ]
    for i in moved:
        spn = last.names[i]
        eps = get(spn, ())
        svc = port_map[spn]
        ikey = (id(svc), id(eps), id(ctx), scheduler, show_draining, node_key)
        part = memo.by_identity.get(ikey)
        if part is None:
            key = (svc, eps, ctx, scheduler, show_draining, node_key)
            part = _part(memo, key, spn, list(node_key))
            memo.by_identity.put(ikey, part, holds=(svc, eps, ctx))
        old = last.parts[i]
        if part is not old:
            if (
                part.members != old.members
                or part.bound != old.bound
                or part.no_node_access != old.no_node_access
                or [vs.key for vs in part.servers] != [vs.key for vs in old.servers]
            ):
                return None
            if servers is None:
                servers = list(last.state.virtual_servers)
            at = last.offsets[i]
            servers[at : at + len(part.servers)] = part.servers
            changed += part.servers
        eps_now[i] = eps
        parts_now[i] = part
    if not moved:
        return last.state  # every port's endpoints are the very same objects
    state = last.state if servers is None else last.state.replacing(tuple(servers), changed)
    done = _LastCompile(
        last.names,
        tuple(eps_now),
        tuple(parts_now),
        last.offsets,
        state,
        last.positions,
        map_keys,
        map_values,
        node_key,
    )
    memo.last.put((id(port_map), id(ctx), scheduler, show_draining), done, holds=(port_map, ctx))
    return state


def _part(memo: IpvsMemo, key: _PortKey, spn: ServicePortName, node_ips: list[str]) -> _PortPart:
    """A port's objects: remembered by value, else made on their own."""
    found = memo.parts.get(key)
    if found is None:
        svc, eps, ctx, scheduler, show_draining, _ = key
        recorded = _RecordingMembers()
        alone = _Build(recorded, [], set(), [])
        _service_port(alone, svc, spn, eps, ctx, scheduler, node_ips, show_draining)
        found = memo.parts.put(
            key,
            _PortPart(
                recorded.added(),
                tuple(alone.servers),
                tuple(alone.bound),
                tuple(alone.no_node_access),
            ),
        )
    return found


def _address_order(addresses: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(addresses, key=lambda a: int(ipaddress.IPv4Address(a))))


def _ipset_table(members: Mapping[str, set[str]], memo: IpvsMemo | None) -> IpsetTable:
    """The ip sets of ``members`` (made and validated once per name and members with a memo)."""
    if memo is None:
        return IpsetTable.of(
            Ipset(info.name, info.set_type, info.comment, tuple(sorted(members[info.name])))
            for info in IPSET_INFO
        )
    sets = []
    for info in IPSET_INFO:
        key = (info.name, frozenset(members[info.name]))
        found = memo.ipsets.get(key)
        if found is None:
            found = memo.ipsets.put(
                key, Ipset(info.name, info.set_type, info.comment, tuple(sorted(key[1])))
            )
        sets.append(found)
    tkey = tuple(id(s) for s in sets)
    table = memo.tables.get(tkey)
    if table is None:
        table = memo.tables.put(tkey, IpsetTable.of(sets), holds=tuple(sets))
    return table


class _RecordingMembers(dict[str, set[str]]):
    """A :class:`_Build`'s members that also record what was added, in order (a port's part)."""

    def __missing__(self, name: str) -> set[str]:
        found: set[str] = set()
        self[name] = found
        return found

    def added(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """(set name, its entries), for each set the port added to."""
        return tuple((name, tuple(sorted(entries))) for name, entries in self.items())


def _nodeport_ips(ctx: NodeContext) -> list[str]:
    """The node addresses NodePort virtual servers are made for (never loopback)."""
    if ctx.nodeport_match_all:
        return list(ctx.node_ips)
    return [ip for ip in ctx.nodeport_ips() if not ipaddress.IPv4Address(ip).is_loopback]


def _service_port(
    build: _Build,
    svc: ServicePortInfo,
    spn: ServicePortName,
    endpoints: tuple[EndpointInfo, ...],
    ctx: NodeContext,
    scheduler: str,
    node_ips: list[str],
    show_draining: bool,
) -> None:
    proto = str(spn.protocol).lower()
    members = build.members
    for ep in endpoints:
        if ep.is_local:
            members[KUBE_LOOP_BACK].add(f"{ep.ip},{proto}:{ep.port},{ep.ip}")
    members[KUBE_CLUSTER_IP].add(f"{svc.cluster_ip},{proto}:{svc.port}")
    internal = _real_servers(svc, endpoints, ctx, svc.internal_policy_local, show_draining)
    # Only external, load-balancer and NodePort virtual servers use the external policy's.
    external_used = bool(svc.external_ips or svc.load_balancer_vips or (svc.node_port and node_ips))
    external = (
        _real_servers(svc, endpoints, ctx, svc.external_policy_local, show_draining)
        if external_used
        else ()
    )

    def server(address: str, port: int, real: tuple[RealServer, ...]) -> None:
        build.servers.append(
            VirtualServer(
                protocol=str(spn.protocol),
                address=address,
                port=port,
                scheduler=scheduler,
                real_servers=real,
                persistent_timeout_s=svc.sticky_max_age_s if svc.client_ip_affinity else None,
                sched_flags=("mh-port",) if scheduler == "mh" else (),
            )
        )

    server(svc.cluster_ip, svc.port, internal)
    build.bound.add(svc.cluster_ip)
    for ip in svc.external_ips:
        entry = f"{ip},{proto}:{svc.port}"
        members[KUBE_EXTERNAL_IP_LOCAL if svc.external_policy_local else KUBE_EXTERNAL_IP].add(
            entry
        )
        server(ip, svc.port, external)
        if ip not in ctx.node_ips:
            build.bound.add(ip)
    for ip in svc.load_balancer_vips:
        entry = f"{ip},{proto}:{svc.port}"
        members[KUBE_LOAD_BALANCER].add(entry)
        if svc.external_policy_local:
            members[KUBE_LOAD_BALANCER_LOCAL].add(entry)
        if svc.load_balancer_source_ranges:
            members[KUBE_LOAD_BALANCER_FW].add(entry)
            node_ip = ctx.node_ip or "127.0.0.1"  # NewProxier's stand-in for a missing node IP
            allow_node = False
            for cidr in svc.load_balancer_source_ranges:
                members[KUBE_LOAD_BALANCER_SOURCE_CIDR].add(f"{entry},{cidr}")
                if ipaddress.IPv4Address(node_ip) in ipaddress.IPv4Network(cidr, strict=False):
                    allow_node = True
            if allow_node:
                members[KUBE_LOAD_BALANCER_SOURCE_IP].add(f"{entry},{ip}")
            else:
                build.no_node_access.append(NoNodeAccess(ip, proto, svc.port))
        server(ip, svc.port, external)
        if ip not in ctx.node_ips:
            build.bound.add(ip)
    if svc.node_port and node_ips:
        all_set, local_set = _NODE_PORT_SETS[proto]
        if proto == "sctp":
            entries = [f"{ip},{proto}:{svc.node_port}" for ip in node_ips]
        else:
            entries = [str(svc.node_port)]
        members[all_set].update(entries)
        if svc.external_policy_local:
            members[local_set].update(entries)
        for ip in node_ips:
            server(ip, svc.node_port, external)
    if svc.health_check_node_port:
        members[KUBE_HEALTH_CHECK_NODE_PORT].add(str(svc.health_check_node_port))


def _real_servers(
    svc: ServicePortInfo,
    endpoints: tuple[EndpointInfo, ...],
    ctx: NodeContext,
    only_local: bool,
    show_draining: bool,
) -> tuple[RealServer, ...]:
    """``syncEndpoint``'s destinations in kernel list order (see the module docstring)."""
    cat = categorize_endpoints(
        endpoints, svc, ctx.node_name, ctx.topology_labels, ctx.prefer_same_traffic_distribution
    )
    chosen = cat.local if only_local and cat.local else cat.cluster
    used = {ep.text for ep in chosen}
    weights = {ep.text: (ep, 1) for ep in chosen}
    if show_draining and str(svc.protocol) == "TCP":
        pool = [ep for ep in endpoints if ep.is_local] if only_local and cat.local else endpoints
        for ep in pool:
            if ep.terminating and ep.text not in used:
                weights[ep.text] = (ep, 0)
    # Dotted-quad octets as numbers order IPv4 addresses as their integers do.
    added = sorted(
        weights.values(),
        key=lambda pair: (tuple(map(int, pair[0].ip.split("."))), pair[0].port),
    )
    return tuple(RealServer(ep.ip, ep.port, w) for ep, w in reversed(added))
