"""Plain configuration values the control-plane components take.

These are not the scenario's pydantic models: the scenario builder maps those onto these
frozen dataclasses, so the simulation depends on nothing but values. All durations are in
simulated seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

RecordEvent = Callable[[float, str, str, str, str], None]
"""``record_event(t_s, kind, node, object, detail)``: one control-plane event.

``kind`` is an ``EventKind`` value of :mod:`svcsim.results.schema` (``pod-ready`` ...);
``node`` and ``detail`` may be ``""``; ``object`` is ``namespace/name``. The world adapts it
to ``Recorder.add_event``; tests pass a list's ``append``-like collector.
"""


def _check_durations(owner: object, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(owner, name)
        if not isinstance(value, int | float) or math.isnan(value) or value < 0:
            raise ValueError(f"{type(owner).__name__}.{name}: negative or invalid {value!r}")


@dataclass(frozen=True, slots=True)
class AppProfile:
    """How the process inside each Pod of one workload behaves.

    ``startup_s``: process start -> listening. ``drain_after_sigterm_s``: SIGTERM -> the app
    stops accepting new connections (refuses them). ``exit_after_sigterm_s``: SIGTERM -> the
    process exits (the kubelet kills it earlier if the grace period runs out). A drain
    later than the exit never happens: the exit comes first. ``service_time`` is the
    traffic layer's business, carried here opaquely.
    """

    name: str = "app"
    startup_s: float = 0.0
    drain_after_sigterm_s: float = 0.0
    exit_after_sigterm_s: float = 1.0
    service_time: Any = field(default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        _check_durations(self, ("startup_s", "drain_after_sigterm_s", "exit_after_sigterm_s"))


@dataclass(frozen=True, slots=True)
class ControlPlaneDelays:
    """Control-plane and node delays.

    * ``api_watch_s``: API server -> a controller's informer (EndpointSlice and Deployment
      controllers).
    * ``endpoint_slice_batch_s``: ``--endpointslice-updates-batch-period`` (Pod changes only;
      Service changes are synced at once, as upstream queues them without delay).
    * ``pod_startup_s``: Pod bound to a node -> its container runs (sandbox, image, start).
    * ``ip_teardown_s``: containers exited -> the Pod IP is free for reuse.
    * ``crash_restart_backoff_s``: the kubelet's initial crash back-off; it doubles with each
      crash in a row up to ``crash_restart_backoff_max_s`` and starts over once no crash
      happened for twice that maximum (k8s.io/client-go flowcontrol ``Backoff``).

    ``*_by_node_s`` override the node-local delays per node name (``for_node`` reads them).
    """

    api_watch_s: float = 0.05
    endpoint_slice_batch_s: float = 0.0
    pod_startup_s: float = 1.0
    ip_teardown_s: float = 1.0
    crash_restart_backoff_s: float = 10.0
    crash_restart_backoff_max_s: float = 300.0
    pod_startup_by_node_s: tuple[tuple[str, float], ...] = ()
    ip_teardown_by_node_s: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        _check_durations(
            self,
            (
                "api_watch_s",
                "endpoint_slice_batch_s",
                "pod_startup_s",
                "ip_teardown_s",
                "crash_restart_backoff_s",
                "crash_restart_backoff_max_s",
            ),
        )
        for name, value in (*self.pod_startup_by_node_s, *self.ip_teardown_by_node_s):
            if value < 0 or math.isnan(value):
                raise ValueError(f"negative or invalid delay {value!r} for node {name!r}")

    def pod_startup_for(self, node: str) -> float:
        """``pod_startup_s`` on ``node``."""
        return dict(self.pod_startup_by_node_s).get(node, self.pod_startup_s)

    def ip_teardown_for(self, node: str) -> float:
        """``ip_teardown_s`` on ``node``."""
        return dict(self.ip_teardown_by_node_s).get(node, self.ip_teardown_s)


NODE_LEASE_RENEW_FRACTION: Final = 0.25
"""The kubelet renews its Lease every ``nodeLeaseDurationSeconds`` x this
(pkg/kubelet/kubelet.go ``nodeLeaseRenewIntervalFraction``)."""
DEFAULT_NODE_LEASE_DURATION_S: Final = 40.0
"""The kubelet's default ``nodeLeaseDurationSeconds``."""


@dataclass(frozen=True, slots=True)
class NodeLifecycleConfig:
    """How the control plane notices a node that stopped answering, and what it does.

    * ``lease_renew_interval_s``: the kubelet renews its node Lease every
      ``nodeLeaseDurationSeconds`` (40) x 0.25 = 10 s (pkg/kubelet/kubelet.go
      ``nodeLeaseRenewIntervalFraction``), on a grid from t = 0 here.
    * ``monitor_period_s``: kube-controller-manager ``--node-monitor-period`` (5 s): the node
      lifecycle controller's ``monitorNodeHealth`` ticks, on a grid from t = 0 here.
    * ``monitor_grace_period_s``: ``--node-monitor-grace-period``: a node whose last heartbeat
      is older than this at a tick turns NotReady (Ready=Unknown). 50 s since Kubernetes 1.32
      (kubernetes/kubernetes#126287; 40 s before).
    * ``status_sync_period_s``: the kubelet status manager's sync period (10 s,
      pkg/kubelet/status/status_manager.go ``syncPeriod``): statuses held while the kubelet
      could not reach the API server go out at its first sync after that.
    * ``unreachable_toleration_s``: how long Pods tolerate the ``node.kubernetes.io/unreachable``
      NoExecute taint before the taint eviction controller deletes them: the
      DefaultTolerationSeconds admission plugin's ``--default-unreachable-toleration-seconds``
      (300 s).
    """

    lease_renew_interval_s: float = DEFAULT_NODE_LEASE_DURATION_S * NODE_LEASE_RENEW_FRACTION
    monitor_period_s: float = 5.0
    monitor_grace_period_s: float = 50.0
    status_sync_period_s: float = 10.0
    unreachable_toleration_s: float = 300.0

    def __post_init__(self) -> None:
        _check_durations(
            self,
            (
                "lease_renew_interval_s",
                "monitor_period_s",
                "monitor_grace_period_s",
                "status_sync_period_s",
                "unreachable_toleration_s",
            ),
        )
        for name in ("lease_renew_interval_s", "monitor_period_s", "status_sync_period_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"NodeLifecycleConfig.{name} must be > 0")
