"""The speed state of one run: every memo, interner and parse cache, and who owns it.

DESIGN.md decision 8: memo caches belong to the run. The World creates one :class:`RunCaches`
(:class:`svcsim.scenario.world.World` ``.caches``) and hands it to each node's kube-proxy
(:class:`~svcsim.sim.kubeproxy.KubeProxy`, its change tracker and sync planner) and to the
compilers it calls; nodes in step then share one compile, one plan and one ruleset object. Two
Worlds in one process share nothing mutable, and a run's memos are freed with it. Every memo is
a :class:`~svcsim.memo.BoundedMemo` (one eviction idiom: the oldest eighth goes when full) and a
named field, so what is cached where reads off the class:

========================  ===================================================================
``compile``               the compilers' memos (:class:`~svcsim.proxy.caches.CompileCaches`):
                          port infos, endpoints maps, categorised endpoints, iptables blocks,
                          rules by text, fixed parts, assembled syncs, and the
                          :class:`~svcsim.netfilter.text.RulesetInterner` every iptables
                          ruleset of the run is built with (compiled, restored, edited)
``nft_names``             nftables mode: hashed chain names and each port's objects
``nft_chains``            nftables mode: parsed chains of installed tables
``ipvs_ports``            IPVS mode: each port's servers and set entries, ip sets, tables
``port_chains``           the chains a partial sync may rewrite, per (port, endpoints)
``service_chain_sets``    the same for a sync's changed Services, per (port map, endpoints
                          map, Services): nodes in step ask it once
``split_texts``           restore texts split into non-nat and nat lines
``sync_plans``            sync plans (restore input of a full or partial sync)
``applied_restores``      kernel rulesets after a partial restore
``udp_by_slices``         whether a Service's slices have a UDP port (conntrack cleanup)
``shared_contexts``       one node context per kind of alike nodes (``sim/shared_sync.py``)
``shared_syncs``          iptables compiles shared by nodes in step, by their inputs' identities
``source_ranges``         whether a service-port map has loadBalancerSourceRanges
``local_ports``           whether a service-port map has a port using local endpoints
``endpoint_texts``        the texts of a tuple of endpoints (``World``: a set noted per node)
``ports_by_service``      a service-port map's ports by Service (``namespace/name``)
``ports_of_services``     the ports of some Services, in the map's order (``World``)
``slice_facts``           each EndpointSlice's Service key and trigger time, read once for
                          all nodes' change trackers (the same objects reach every node)
``service_port_sets``     each Service's service-port map as a set (change trackers compare
                          them), one per Service object for all nodes
``alarms``                the sync runners' pending timers, one per due time
                          (:mod:`svcsim.sim.alarms`): runners in step share them
========================  ===================================================================

The traffic engine owns its own dispatch caches (:class:`~svcsim.traffic.dispatch.DispatchCache`
and the engine's group memos), made with the engine. CLI commands and benchmarks that compile
without a World make one cache object for their call. A pure function called without one makes a
throw-away one: the same result, computed afresh.

What stays at module level is pure, bounded and holds no object of a run: ``functools``
memos of a function of strings or frozen values (parsing a rule text, ``parse_ip``, chain-name
hashes, re-printed IPs, a context's key facts) and constant tables built once; each says so where
it is defined.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, NamedTuple

from svcsim.memo import BoundedMemo
from svcsim.netfilter.nft_parse import ParseMemo
from svcsim.proxy.caches import CompileCaches
from svcsim.proxy.ipvs import IpvsMemo
from svcsim.proxy.nftables import NameMemo
from svcsim.sim.alarms import SharedAlarms

if TYPE_CHECKING:
    from svcsim.netfilter.model import Ruleset
    from svcsim.proxy.context import NodeContext
    from svcsim.proxy.endpoints import ServicePortInfo
    from svcsim.proxy.iptables import IptablesSync
    from svcsim.proxy.iptables_assembly import NatLine
    from svcsim.proxy.names import ServicePortName
    from svcsim.sim.restore import SyncPlan

SLICE_FACTS_LIMIT: Final = 1 << 11
"""EndpointSlices (and Services) whose facts are kept: every object of a 1,000-Service informer
list fits, and the superseded objects entries keep alive stay few (a day's churn makes
thousands of slices)."""

SYNC_LIMIT: Final = 256
"""Entries per sync-level memo (each may hold a whole restore text); the oldest go first."""


class PortChainsKey(NamedTuple):
    """A service port and its endpoints tuple, by identity."""

    port_name_id: int
    endpoints_id: int


class ServiceChainsKey(NamedTuple):
    """A sync's service-port map and endpoints map by identity, and its changed Services."""

    service_ports_id: int
    endpoints_map_id: int
    services: frozenset[str]


class PortsOfServicesKey(NamedTuple):
    """A service-port map by identity, and some of its Services."""

    service_ports_id: int
    services: frozenset[str]


class SyncPlanKey(NamedTuple):
    """Everything a sync plan is computed from (the compiled assembly and ruleset by identity)."""

    assembly_id: int
    ruleset_id: int
    full: bool
    changed_chains: frozenset[str]
    existing_nat_chains_id: int
    """The names ``iptables-save -t nat`` lists, by identity: a node's kernel table hands out
    one names tuple (``Table.names``), and hashing ~110,000 names at every plan would cost
    more than the plan."""
    delete_stale: bool


class RestoreKey(NamedTuple):
    """A partial restore: the kernel's ruleset before it and the plan, by identity."""

    kernel_ruleset_id: int
    plan_id: int


class SliceFacts(NamedTuple):
    """What a change tracker reads of an EndpointSlice besides its identity."""

    service: str | None
    """``namespace/service`` (``slice_service_key``), None if unlabelled."""
    trigger_time_s: float | None
    """Its last-change-trigger-time annotation in simulated seconds (None: absent)."""


class SplitText(NamedTuple):
    """A restore input as its lines outside the nat table and its nat chain and rule lines."""

    other: tuple[str, ...]
    nat: tuple[NatLine, ...]


@dataclass(frozen=True, slots=True)
class RunCaches:
    """Every memo of one run, by what it holds (see the module docstring)."""

    compile: CompileCaches = field(default_factory=CompileCaches)
    nft_names: NameMemo = field(default_factory=NameMemo)
    nft_chains: ParseMemo = field(default_factory=ParseMemo)
    ipvs_ports: IpvsMemo = field(default_factory=IpvsMemo)
    port_chains: BoundedMemo[PortChainsKey, tuple[str, ...]] = field(
        default_factory=lambda: BoundedMemo("owned chains by (port name, endpoints)", 1 << 10)
    )
    service_chain_sets: BoundedMemo[ServiceChainsKey, frozenset[str]] = field(
        default_factory=lambda: BoundedMemo("owned chains by (maps, Services)", SYNC_LIMIT)
    )
    split_texts: BoundedMemo[int, SplitText] = field(
        default_factory=lambda: BoundedMemo("split restore texts by text identity", SYNC_LIMIT)
    )
    sync_plans: BoundedMemo[SyncPlanKey, SyncPlan] = field(
        default_factory=lambda: BoundedMemo("sync plans by what they are made of", SYNC_LIMIT)
    )
    applied_restores: BoundedMemo[RestoreKey, Ruleset] = field(
        default_factory=lambda: BoundedMemo("partial restores by (ruleset, plan)", SYNC_LIMIT)
    )
    udp_by_slices: BoundedMemo[tuple[int, ...], bool] = field(
        # A first (full) sync asks once per Service, and every node asks the same: the cap
        # must hold a whole informer list's Services, or each node recomputes them all.
        default_factory=lambda: BoundedMemo("has-UDP by slice identities", SLICE_FACTS_LIMIT)
    )
    shared_contexts: BoundedMemo[NodeContext, NodeContext] = field(
        default_factory=lambda: BoundedMemo("node contexts without name and IPs", 1 << 12)
    )
    shared_syncs: BoundedMemo[tuple[int, int, int], IptablesSync] = field(
        default_factory=lambda: BoundedMemo("shared compiles by (context, maps) ids", SYNC_LIMIT)
    )
    ports_by_service: BoundedMemo[int, dict[str, list[tuple[int, ServicePortName]]]] = field(
        default_factory=lambda: BoundedMemo("ports by Service, by port map identity", SYNC_LIMIT)
    )
    ports_of_services: BoundedMemo[
        PortsOfServicesKey, list[tuple[ServicePortName, ServicePortInfo]]
    ] = field(
        default_factory=lambda: BoundedMemo(
            "ports of Services, by port map and Services", SYNC_LIMIT
        )
    )
    source_ranges: BoundedMemo[int, bool] = field(
        default_factory=lambda: BoundedMemo("has-source-ranges by port map identity", SYNC_LIMIT)
    )
    local_ports: BoundedMemo[int, bool] = field(
        default_factory=lambda: BoundedMemo("uses-local-endpoints by port map identity", SYNC_LIMIT)
    )
    endpoint_texts: BoundedMemo[int, frozenset[str]] = field(
        default_factory=lambda: BoundedMemo("endpoint texts by endpoints identity", SYNC_LIMIT)
    )
    slice_facts: BoundedMemo[int, SliceFacts] = field(
        default_factory=lambda: BoundedMemo("slice facts by slice identity", SLICE_FACTS_LIMIT)
    )
    service_port_sets: BoundedMemo[int, frozenset[ServicePortInfo]] = field(
        default_factory=lambda: BoundedMemo("port-map sets by Service identity", SLICE_FACTS_LIMIT)
    )
    alarms: SharedAlarms = field(default_factory=SharedAlarms)
