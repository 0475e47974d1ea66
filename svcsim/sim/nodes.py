"""Nodes that fail, lose the API server and come back, and the controller that notices.

Three faults, as an operator or the infrastructure would cause them:

* **fail** (the machine stops: power, kernel panic). kube-proxy and the kubelet die with it,
  every container too (its Pods' IPs answer nothing: clients time out); the kernel's rules
  and conntrack table are lost. Its Lease is no longer renewed.
* **partition** (the node loses the API server but keeps running). The data plane goes on
  with frozen rules: kube-proxy's watch is cut (it keeps its last view), the kubelet keeps its
  Pods running but can write nothing and sees no deletion. Its Lease is no longer renewed.
* **recover**: a failed node boots (kernel with no rules, kube-proxy and the kubelet start
  afresh); a partitioned one reaches the API server again (kube-proxy relists, the kubelet
  acts on deletions made meanwhile and writes its statuses at its next status sync).

The **node lifecycle controller** (kube-controller-manager,
pkg/controller/nodelifecycle/node_lifecycle_controller.go ``monitorNodeHealth``) looks at every
node each ``monitor_period_s`` (a grid from t = 0). A node whose last Lease renewal (the
kubelet renews on a ``lease_renew_interval_s`` grid from t = 0, the last one at or before the
fault) is older than ``monitor_grace_period_s`` at a tick, strictly, turns NotReady
(Ready=Unknown). At once the controller marks its Pods not ready (``MarkPodsNotReady``, so the
EndpointSlice controller turns their endpoints not ready and kube-proxies drop them), and the
node gets the ``node.kubernetes.io/unreachable`` taints: NoSchedule (no new Pods there) and
NoExecute, after which the taint eviction controller deletes the Pods once they have tolerated
it for ``unreachable_toleration_s`` (the default toleration every Pod gets). Deleted Pods stay
terminating while their kubelet is away; their controllers replace them elsewhere. When the node
renews its Lease again (at recovery), it is Ready at the next tick and the taints are removed;
a pending eviction is cancelled.

Simplifications, stated: the controller's per-zone eviction rate limits are not modelled (one
node's taint is immediate upstream too); Pods carry the default toleration only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Literal

import simpy

from svcsim.sim.config import NodeLifecycleConfig, RecordEvent
from svcsim.sim.fleet import PodFleet
from svcsim.sim.kernel import Kernel
from svcsim.sim.kubeproxy import KubeProxy
from svcsim.sim.scheduling import Scheduler

NodeState = Literal["up", "failed", "partitioned"]
"""What happened to a node: running normally, stopped, or cut off from the API server."""

NodeChange = Callable[[str, Literal["fail", "partition", "boot", "heal"]], None]
"""Told ``(node, change)`` after the node's own components reacted (for the traffic path)."""

ReadyChange = Callable[[str, bool], None]
"""Told ``(node, ready)`` when the controller flips the Node's Ready condition (the Node
object's watchers: the EndpointSlice controller's topology cache)."""

_EPS = 1e-9


def next_tick(t_s: float, period_s: float, *, strictly_after: float | None = None) -> float:
    """The first instant of the grid ``k x period_s`` at or after ``t_s``.

    With ``strictly_after``, the first one strictly after that value (and at or after ``t_s``).
    """
    k = math.ceil(t_s / period_s - _EPS)
    tick = k * period_s
    if strictly_after is not None:
        while tick <= strictly_after + _EPS:
            tick += period_s
    return tick


class NodeLifecycle:
    """Node faults and the node lifecycle controller (see the module docstring)."""

    def __init__(
        self,
        env: simpy.Environment,
        config: NodeLifecycleConfig,
        fleet: PodFleet,
        scheduler: Scheduler,
        proxies: Mapping[str, KubeProxy],
        kernels: Mapping[str, Kernel],
        record_event: RecordEvent,
        on_change: NodeChange,
        on_ready: ReadyChange | None = None,
    ) -> None:
        self.env, self.config = env, config
        self.fleet, self.scheduler = fleet, scheduler
        self.proxies, self.kernels = proxies, kernels
        self.record, self.on_change = record_event, on_change
        self.on_ready = on_ready
        self.state: dict[str, NodeState] = {}
        self.not_ready: dict[str, float] = {}
        """Nodes the controller holds NotReady (tainted) now, with the taint's time."""
        self._epoch: dict[str, int] = {}
        """Bumped at every fault and recovery: timers of an older epoch do nothing."""

    def state_of(self, node: str) -> NodeState:
        """``up``, ``failed`` or ``partitioned``."""
        return self.state.get(node, "up")

    def machine_up(self, node: str) -> bool:
        """True unless the node has failed (a partitioned node still runs its processes)."""
        return self.state_of(node) != "failed"

    # --- faults -------------------------------------------------------------------------------

    def fail(self, node: str) -> None:
        """The node stops; raises if it is not up."""
        self._require(node, "up", "fail")
        self.state[node] = "failed"
        self.record(self.env.now, "node-failed", node, node, "")
        self.fleet.set_link(node, "down")
        self.proxies[node].crash()
        for pod in self.fleet.on_node(node):
            pod.node_event("down")
        self._lost_heartbeat(node)
        self.on_change(node, "fail")

    def partition(self, node: str) -> None:
        """The node loses the API server; raises if it is not up."""
        self._require(node, "up", "partition")
        self.state[node] = "partitioned"
        self.record(self.env.now, "node-partitioned", node, node, "")
        self.fleet.set_link(node, "cut")
        self.proxies[node].api_cut()
        for pod in self.fleet.on_node(node):
            pod.node_event("cut")
        self._lost_heartbeat(node)
        self.on_change(node, "partition")

    def recover(self, node: str) -> None:
        """A failed node boots, or a partitioned one reaches the API server again."""
        was = self.state_of(node)
        if was == "up":
            raise ValueError(f"node {node} is up: nothing to recover from")
        now = self.env.now
        self.state[node] = "up"
        self.record(now, "node-recovered", node, node, f"after {was}")
        self.fleet.set_link(node, "up")
        if was == "failed":
            self.kernels[node].reboot(now)
            for pod in self.fleet.on_node(node, include_exited=True):
                pod.node_event("boot")
            self.proxies[node].restart()
            self.on_change(node, "boot")
        else:
            status_at = next_tick(now, self.config.status_sync_period_s)
            for pod in self.fleet.on_node(node, include_exited=True):
                pod.node_event("back", status_at)
            self.proxies[node].api_back()
            self.on_change(node, "heal")
        # The kubelet renews its Lease at once; the controller sees it at its next tick.
        epoch = self._bump(node)
        if node in self.not_ready:
            self._at(next_tick(now, self.config.monitor_period_s), node, epoch, self._ready)

    # --- the controller -----------------------------------------------------------------------

    def _lost_heartbeat(self, node: str) -> None:
        cfg = self.config
        now = self.env.now
        epoch = self._bump(node)
        if node in self.not_ready:
            # Recovered and lost again before a tick saw the renewal: still NotReady, still
            # tainted since then, so the Pods' toleration counts from the taint's time.
            evict_at = self.not_ready[node] + cfg.unreachable_toleration_s
            self._at(evict_at, node, epoch, self._evict)
            return
        last = math.floor(now / cfg.lease_renew_interval_s + _EPS) * cfg.lease_renew_interval_s
        at = next_tick(now, cfg.monitor_period_s, strictly_after=last + cfg.monitor_grace_period_s)
        self._at(at, node, epoch, self._not_ready)

    def _not_ready(self, node: str) -> None:
        now = self.env.now
        self.not_ready[node] = now
        self.scheduler.taint(node)
        marked = sum(pod.mark_not_ready() for pod in self.fleet.on_node(node))
        self.record(now, "node-not-ready", node, node, f"pods-marked-not-ready={marked}")
        if self.on_ready is not None:
            self.on_ready(node, False)
        epoch = self._epoch[node]
        self._at(now + self.config.unreachable_toleration_s, node, epoch, self._evict)

    def _evict(self, node: str) -> None:
        evicted = [pod.key for pod in self.fleet.on_node(node) if pod.delete()]
        self.record(self.env.now, "pods-evicted", node, node, f"evicted={len(evicted)}")

    def _ready(self, node: str) -> None:
        self.not_ready.pop(node, None)
        self.scheduler.untaint(node)
        self.record(self.env.now, "node-ready", node, node, "")
        if self.on_ready is not None:
            self.on_ready(node, True)

    # --- helpers ------------------------------------------------------------------------------

    def _require(self, node: str, state: NodeState, action: str) -> None:
        if node not in self.proxies:
            raise ValueError(f"unknown node {node!r}")
        if self.state_of(node) != state:
            raise ValueError(f"cannot {action} node {node}: it is {self.state_of(node)}")

    def _bump(self, node: str) -> int:
        self._epoch[node] = self._epoch.get(node, 0) + 1
        return self._epoch[node]

    def _at(self, t_s: float, node: str, epoch: int, action: Callable[[str], None]) -> None:
        def fire(_: simpy.Event) -> None:
            if self._epoch.get(node) == epoch:
                action(node)

        self.env.timeout(max(0.0, t_s - self.env.now)).callbacks.append(fire)
