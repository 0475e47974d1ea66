"""Plain configuration values the control-plane components take.

These are not the scenario's pydantic models: the scenario builder maps those onto these
frozen dataclasses, so the simulation depends on nothing but values. All durations are in
simulated seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
