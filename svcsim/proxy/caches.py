"""The compilers' speed state for one run: every memo of the proxy layer, as named fields.

Every node compiles every Service at every sync, although between two syncs almost nothing
changed and nodes in step compile the same state. The compilers therefore memoise pure
functions of frozen values; :class:`CompileCaches` holds all those memos for one run. The run's
owner (the World, :class:`svcsim.sim.caches.RunCaches`) makes one and hands it to each node's
kube-proxy; a CLI command that compiles without a World makes one for its call. A compiler
called without one makes a throw-away one: the same result, computed afresh (a memo's contents
never change what a caller sees, only how fast it sees it).

Memos keyed by object identity (``..._id`` parts) store the keyed objects with the entry
(:meth:`svcsim.memo.BoundedMemo.put`'s ``holds``), so those ids stay theirs while it lives.

Keys are NamedTuples. The two memos asked once per Service port per sync and node
(:attr:`CompileCaches.port_blocks`, :attr:`CompileCaches.node_endpoints`) store their named key
but are *asked* with the equal plain tuple (a tuple hashes and compares by its items, whatever
its class): making a NamedTuple costs ten times a tuple, a quarter of such a lookup's time on a
10,000-Service node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, NamedTuple

from svcsim.k8s.objects import Protocol
from svcsim.memo import BoundedMemo
from svcsim.netfilter.text import RulesetInterner
from svcsim.proxy.names import ServicePortName

if TYPE_CHECKING:
    from svcsim.k8s.objects import EndpointSlice
    from svcsim.proxy.endpoints import EndpointInfo, ServicePortInfo
    from svcsim.proxy.iptables import LatestSync, VisitingOrder
    from svcsim.proxy.iptables_assembled import Assembly
    from svcsim.proxy.iptables_assembly import PartLines
    from svcsim.proxy.iptables_service import ServicePortBlock
    from svcsim.proxy.shared_maps import SharedEndpoints
    from svcsim.proxy.topology import CategorizedEndpoints

PER_SERVICE_LIMIT: Final = 1 << 14
"""Entries kept by each per-service-port memo (10,000 Services fit) before the oldest go."""


class ServiceSlicesKey(NamedTuple):
    """One Service's IPv4 EndpointSlices: its namespace and name, and the slices' identities."""

    namespace: str
    service: str
    slice_ids: tuple[int, ...]


class NodeEndpointsKey(NamedTuple):
    """One Service's endpoints as one node sees them (locality depends on the node)."""

    slices: ServiceSlicesKey
    node: str


ServiceSlices = tuple[ServiceSlicesKey, "tuple[EndpointSlice, ...]"]
"""One Service's key and its IPv4 slices (first-seen order)."""
PlacedEndpoints = tuple[
    tuple["ServicePortName", "tuple[EndpointInfo, ...]", tuple[str | None, ...]], ...
]
"""Per service port: its endpoints as seen from no node, and each one's ``nodeName``."""
NodeEndpoints = tuple[tuple["ServicePortName", "tuple[EndpointInfo, ...]"], ...]
"""Per service port: its endpoints as one node sees them."""


class CategorizeKey(NamedTuple):
    """What ``categorize_endpoints`` reads for one node (see ``categorize_endpoints_shared``)."""

    endpoints_id: int
    port_id: int
    zone: str
    prefer_same_traffic_distribution: bool
    hinted_node: str | None
    """The node's name when some endpoint has node hints; None when the name cannot matter."""


class PortBlockKey(NamedTuple):
    """One service port's block on one node: the objects it is written from."""

    port_id: int
    endpoints_id: int
    context_id: int
    large_cluster_mode: bool


class BlockContext(NamedTuple):
    """Every ``NodeContext`` fact ``write_service_port`` reads, except ``node_ip``."""

    localhost_nodeports: bool
    nfacct: bool
    masquerade_all: bool
    local_detector_implemented: bool
    if_local: tuple[str, ...]
    if_not_local: tuple[str, ...]


class BlockKey(NamedTuple):
    """Exactly what one service port's rules are written from (values, not identities)."""

    port: ServicePortInfo
    has_any_endpoints: bool
    cluster: tuple[tuple[str, int], ...]
    """Of each endpoint list only ``(ip, port)``: locality, readiness and hints were spent."""
    local: tuple[tuple[str, int], ...]
    all_reachable: tuple[tuple[str, int], ...]
    context: BlockContext
    node_ip: str | None
    """Only where loadBalancerSourceRanges make the node's IP matter; else None."""
    large_cluster_mode: bool


class FixedKey(NamedTuple):
    """Every ``NodeContext`` fact the fixed head and tail read (not the node's name)."""

    mark: str
    random_fully: bool
    localhost_nodeports: bool
    nodeport_match_all: bool
    nodeport_ips: tuple[str, ...]
    """Empty when ``nodeport_match_all``."""
    tcp_be_liberal: bool
    nfacct: bool


class FixedParts(NamedTuple):
    """The fixed head and tail of an iptables restore input, as fragments."""

    head: ServicePortBlock
    tail: ServicePortBlock


@dataclass(frozen=True, slots=True)
class CompileCaches:
    """Every memo the compilers use in one run, by what it holds (see the module docstring)."""

    interner: RulesetInterner = field(default_factory=RulesetInterner)
    """Chains, tables and rulesets built from the same parts are the same objects."""
    port_names: BoundedMemo[ServicePortName, ServicePortName] = field(
        default_factory=lambda: BoundedMemo("service port names, one object each", 1 << 16)
    )
    """See :meth:`port_name`."""
    port_infos: BoundedMemo[int, tuple[ServicePortInfo, ...]] = field(
        default_factory=lambda: BoundedMemo("port infos by Service identity", PER_SERVICE_LIMIT)
    )
    slice_groups: BoundedMemo[tuple[int, ...], tuple[ServiceSlices, ...]] = field(
        default_factory=lambda: BoundedMemo("IPv4 slices grouped by Service, by slice ids", 256)
    )
    placed_endpoints: BoundedMemo[ServiceSlicesKey, PlacedEndpoints] = field(
        default_factory=lambda: BoundedMemo(
            "endpoints seen from no node, by Service slices", PER_SERVICE_LIMIT
        )
    )
    node_endpoints: BoundedMemo[tuple[ServiceSlicesKey, str], NodeEndpoints] = field(
        default_factory=lambda: BoundedMemo(
            "endpoints by (Service slices, node)", PER_SERVICE_LIMIT
        )
    )
    categorized: BoundedMemo[CategorizeKey, CategorizedEndpoints] = field(
        default_factory=lambda: BoundedMemo("categorized endpoints by what they read", 1 << 10)
    )
    visiting_orders: BoundedMemo[tuple[int, ...], VisitingOrder] = field(
        default_factory=lambda: BoundedMemo("service port orders by port name identities", 256)
    )
    port_blocks: BoundedMemo[tuple[int, int, int, bool], ServicePortBlock] = field(
        default_factory=lambda: BoundedMemo(
            "service port blocks by port, endpoints and context identities", PER_SERVICE_LIMIT
        )
    )
    service_blocks: BoundedMemo[BlockKey, ServicePortBlock] = field(
        default_factory=lambda: BoundedMemo("service port blocks by value", PER_SERVICE_LIMIT)
    )
    latest_blocks: BoundedMemo[ServicePortName, ServicePortBlock] = field(
        default_factory=lambda: BoundedMemo(
            "each service port's latest written block, by name", PER_SERVICE_LIMIT
        )
    )
    fixed_parts: BoundedMemo[FixedKey, FixedParts] = field(
        default_factory=lambda: BoundedMemo("fixed head and tail by context facts", 256)
    )
    part_lines: BoundedMemo[int, PartLines] = field(
        default_factory=lambda: BoundedMemo(
            "fragment lines and parsed rules by fragment identity", PER_SERVICE_LIMIT
        )
    )
    assembled: BoundedMemo[tuple[int, ...], Assembly] = field(
        # Each entry may hold a whole restore text (once written).
        default_factory=lambda: BoundedMemo("assembled syncs by fragment identities", 64)
    )
    port_maps: BoundedMemo[tuple[int, ...], dict[ServicePortName, ServicePortInfo]] = field(
        default_factory=lambda: BoundedMemo("service-port maps by Service identities", 64)
    )
    """Nodes in step share one service-port map (:mod:`svcsim.proxy.shared_maps`)."""
    shared_endpoints: BoundedMemo[tuple[int, ...], SharedEndpoints] = field(
        default_factory=lambda: BoundedMemo("endpoints seen from no node, by slice identities", 64)
    )
    """Nodes in step share one base endpoints map (:mod:`svcsim.proxy.shared_maps`)."""
    latest_syncs: BoundedMemo[int, LatestSync] = field(
        default_factory=lambda: BoundedMemo(
            "each node's latest iptables compile, by context identity", 1 << 12
        )
    )

    def port_name(
        self, namespace: str, service: str, port: str, protocol: Protocol
    ) -> ServicePortName:
        """The run's one :class:`ServicePortName` object for these parts.

        The Service's port infos and its endpoints are derived apart (each memoised); with one
        name object between them, looking a port's endpoints up in the endpoints map is an
        identity hit rather than a field-by-field comparison (10,000 of them per sync).
        """
        name = ServicePortName(namespace, service, port, protocol)
        held = self.port_names.get(name)
        return held if held is not None else self.port_names.put(name, name)
