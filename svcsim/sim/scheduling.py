"""Where Pods run: round-robin scheduling over nodes, cordon and drain, and bare Pods.

The scheduler is deliberately simple (no resources, affinity or spreading): new Pods are bound
round-robin over the schedulable nodes in name order. ``kubectl drain`` and Pods without a
controller (created from a manifest) also live here, since both are about placing Pods on nodes.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

from svcsim.k8s.objects import Pod
from svcsim.sim.config import AppProfile
from svcsim.sim.fleet import PodFleet, spec_for_pod
from svcsim.sim.pods import PodRunner

UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
"""The node lifecycle controller's taint of a node it no longer hears from."""
TO_BE_DELETED_TAINT = "ToBeDeletedByClusterAutoscaler"
"""The cluster autoscaler's taint of a node it is about to delete (NoSchedule)."""


class Scheduler:
    """Binds new Pods round-robin over schedulable nodes, in name order.

    ``room(node)`` says whether a node takes one more Pod now (the world: fewer Pods than the
    kubelet's ``maxPods`` and a free address in its Pod range); by default every node does.
    """

    def __init__(self, nodes: Sequence[str], room: Callable[[str], bool] | None = None) -> None:
        if not nodes:
            raise ValueError("a Scheduler needs at least one node")
        self.nodes = tuple(sorted(nodes))
        self.room = room if room is not None else (lambda _node: True)
        self.cordoned: set[str] = set()
        self.taints: dict[str, set[str]] = {}
        """Each node's NoSchedule taints, by key (``node.kubernetes.io/unreachable``...)."""
        self._last: str | None = None

    def pick(self) -> str | None:
        """The next schedulable node after the last one picked, or None if none is.

        Cordoned nodes, nodes tainted NoSchedule (:meth:`taint`) and full nodes (``room``)
        are skipped: a Pod that fits nowhere is not created (its ReplicaSet tries again at its
        next sync), as a Pending Pod waits for a node.
        """
        # Round robin over the sorted names: the first schedulable node after the last one
        # picked, wrapping around. Only the nodes passed over are looked at (a 1,000-node
        # cluster starting 11,000 Pods would otherwise check 11 million nodes).
        start = 0 if self._last is None else bisect.bisect_right(self.nodes, self._last)
        count = len(self.nodes)
        for step in range(count):
            n = self.nodes[(start + step) % count]
            if n not in self.cordoned and not self.taints.get(n) and self.room(n):
                self._last = n
                return n
        return None

    def cordon(self, node: str) -> None:
        """Mark ``node`` unschedulable (``kubectl cordon``)."""
        if node not in self.nodes:
            raise ValueError(f"unknown node {node!r}")
        self.cordoned.add(node)

    def uncordon(self, node: str) -> None:
        """Mark ``node`` schedulable again."""
        self.cordoned.discard(node)

    def taint(self, node: str, key: str = UNREACHABLE_TAINT) -> None:
        """A NoSchedule taint ``key`` on ``node``: no new Pods there while it has any."""
        self.taints.setdefault(node, set()).add(key)

    def untaint(self, node: str, key: str = UNREACHABLE_TAINT) -> None:
        """Remove the taint ``key`` (other taints and a user's cordon stay)."""
        self.taints.get(node, set()).discard(key)

    def tainted(self, node: str, key: str | None = None) -> bool:
        """True if ``node`` has the taint ``key`` (any NoSchedule taint when None)."""
        keys = self.taints.get(node, set())
        return bool(keys) if key is None else key in keys


def drain_node(node: str, scheduler: Scheduler, fleet: PodFleet) -> list[str]:
    """``kubectl drain``: cordon ``node`` and delete its Pods gracefully; their keys.

    Controllers replace their Pods elsewhere once they see them terminating.
    """
    scheduler.cordon(node)
    return [r.key for r in fleet.on_node(node) if r.delete()]


def start_bare_pod(
    pod: Pod,
    app: AppProfile,
    fleet: PodFleet,
    scheduler: Scheduler,
    *,
    running: bool = True,
    probe_phase_s: float = 0.0,
) -> PodRunner | None:
    """Run a Pod from a manifest (no controller: nothing replaces it once deleted).

    It goes to its ``spec.nodeName`` when that node exists, else to the scheduler's pick;
    None when no node is schedulable. It keeps its ``status.podIP`` (a cluster dump's) when
    that is a free Pod address of its node; otherwise its IP comes from the node's range.
    """
    node = pod.node_name if pod.node_name in scheduler.nodes else scheduler.pick()
    if node is None:
        return None
    spec = spec_for_pod(pod, app)
    kept = pod.pod_ip if node == pod.node_name else None
    return fleet.start(spec, node, running=running, probe_phase_s=probe_phase_s, ip=kept)
