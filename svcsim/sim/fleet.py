"""The kubelets of every node together: start Pod runners, find, delete and crash live Pods.

One :class:`~svcsim.sim.pods.PodRunner` per Pod does the lifecycle; the fleet only keeps them
by ``namespace/name`` and hands out the live ones. :func:`spec_for_pod` makes the
:class:`~svcsim.sim.pods.PodSpec` of a Pod read from a manifest.
"""

from __future__ import annotations

import simpy

from svcsim.k8s.objects import Container, ObjectMeta, Pod, PodTemplate
from svcsim.sim.api import ApiServer
from svcsim.sim.config import AppProfile, ControlPlaneDelays, RecordEvent
from svcsim.sim.network import PodNetwork
from svcsim.sim.pods import KubeletLink, PodRunner, PodSpec


def spec_for_pod(pod: Pod, app: AppProfile) -> PodSpec:
    """A :class:`PodSpec` for a Pod read from a manifest (its ports; no probe or preStop)."""
    template = PodTemplate(
        labels=pod.meta.labels,
        annotations=pod.meta.annotations,
        containers=(Container("app", pod.container_ports),),
    )
    meta = ObjectMeta(pod.meta.name, pod.meta.namespace, pod.meta.labels, pod.meta.annotations)
    return PodSpec(meta, template, app)


class PodFleet:
    """The kubelets of every node: starts Pod runners and finds the live ones."""

    def __init__(
        self,
        env: simpy.Environment,
        api: ApiServer,
        network: PodNetwork,
        delays: ControlPlaneDelays,
        record_event: RecordEvent,
    ) -> None:
        self.env, self.api, self.network = env, api, network
        self.delays, self.record = delays, record_event
        self._runners: dict[str, PodRunner] = {}
        self._links: dict[str, KubeletLink] = {}
        """Nodes whose kubelet is not ``up`` (down with its node, or cut off from the API)."""

    def set_link(self, node: str, link: KubeletLink) -> None:
        """Record the state of ``node``'s kubelet; Pods bound there later start from it."""
        if link == "up":
            self._links.pop(node, None)
        else:
            self._links[node] = link

    def link(self, node: str) -> KubeletLink:
        """The state of ``node``'s kubelet."""
        return self._links.get(node, "up")

    def start(
        self,
        spec: PodSpec,
        node: str,
        *,
        running: bool = False,
        probe_phase_s: float = 0.0,
        ip: str | None = None,
    ) -> PodRunner:
        """Schedule ``spec`` onto ``node`` and run it; raises if the name is taken.

        ``ip``: the address the Pod already has (from a cluster dump), kept when it is one of
        the node's free Pod addresses; otherwise the node's IPAM gives one.
        """
        key = spec.meta.key
        old = self._runners.get(key)
        if old is not None and not old.exited:
            raise ValueError(f"Pod {key!r} already exists")
        runner = PodRunner(
            self.env,
            spec,
            node,
            self.api,
            self.network,
            self.delays,
            self.record,
            running=running,
            probe_phase_s=probe_phase_s,
            link=self.link(node),
            ip=ip,
        )
        self._runners[key] = runner
        return runner

    def get(self, key: str) -> PodRunner | None:
        """The Pod ``namespace/name`` if it has not exited yet."""
        runner = self._runners.get(key)
        return runner if runner is not None and not runner.exited else None

    def runners(self) -> list[PodRunner]:
        """Every Pod that has not exited, by key."""
        return [r for k, r in sorted(self._runners.items()) if not r.exited]

    def on_node(self, node: str, *, include_exited: bool = False) -> list[PodRunner]:
        """The Pods on ``node`` that have not exited (or all with ``include_exited``), by key."""
        if include_exited:
            return [r for k, r in sorted(self._runners.items()) if r.node == node]
        return [r for r in self.runners() if r.node == node]

    def delete(self, key: str) -> bool:
        """Gracefully delete a Pod; False if there is no such live Pod or it is terminating."""
        runner = self.get(key)
        return runner is not None and runner.delete()

    def crash(self, key: str) -> bool:
        """Crash a Pod's app; False if there is no such Pod or its container is not running."""
        runner = self.get(key)
        return runner is not None and runner.crash()
