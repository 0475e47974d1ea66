"""Which nodes' kube-proxies may share one life: the scenario's cohorts of nodes in step.

Nodes alike (same kube-proxy settings and watch delay, iptables mode, a shared compile
context) all start warm at t=0, receive the same watch events and sync at the same instants
from the same objects: their kube-proxies can share one life
(:meth:`svcsim.sim.kubeproxy.KubeProxy.start_in_step`), so that what 100 such nodes cost is
about what one costs plus a per-node install and record. That holds only while nothing makes
their syncs differ, which this module decides from the scenario before anything runs:

* a node that a timeline action faults alone while its kube-proxy keeps running
  (``block-sync``, ``inject-stale-rule``, ``partition-node``) runs its own life;
  ``crash-proxy``, ``restart-proxy`` and ``fail-node`` need no such care (the member leaves
  its cohort, and a restarted kube-proxy lives on its own);
* no cohort forms when some Service's rules depend on the node they are compiled for in a
  way that can change how many rules a sync writes: local endpoints
  (``internalTrafficPolicy``/``externalTrafficPolicy: Local``), node hints
  (``trafficDistribution: PreferSameNode``, ``hints.forNodes``) or
  ``loadBalancerSourceRanges`` (a rule per node IP).

A cohort is a run of consecutive nodes (in the order the builder starts their kube-proxies):
its life stands in SimPy's queue where its first member's would, and its members' installs
and records follow one another there in node order, as their own lives' would have.
"""

from __future__ import annotations

from collections.abc import Iterable

from svcsim.k8s.objects import EndpointSlice, Service
from svcsim.proxy.caches import CompileCaches
from svcsim.proxy.endpoints import service_port_infos
from svcsim.scenario import timeline as tl
from svcsim.scenario.schema import Scenario

SOLO_ACTIONS = (tl.BlockSync, tl.InjectStaleRule, tl.PartitionNode)
"""Timeline actions that touch one running kube-proxy alone: its node never shares a life."""


def solo_nodes(scenario: Scenario) -> frozenset[str]:
    """The nodes some action of :data:`SOLO_ACTIONS` names."""
    return frozenset(a.node for a in scenario.timeline if isinstance(a, SOLO_ACTIONS))


def node_dependent(
    services: Iterable[Service], slices: Iterable[EndpointSlice], caches: CompileCaches
) -> bool:
    """True if some Service's rules may differ in size from node to node (see the module)."""
    for svc in services:
        if svc.traffic_distribution == "PreferSameNode":
            return True
        for info in service_port_infos(svc, caches):
            if info.uses_local_endpoints or info.load_balancer_source_ranges:
                return True
    return any(ep.hint_nodes for sl in slices for ep in sl.endpoints)
