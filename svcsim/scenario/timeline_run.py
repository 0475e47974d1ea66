"""The scenario's timeline as one SimPy process: each action at its time, in file order.

Actions only poke the components the way an operator or a failure would (delete a Pod, kill
kube-proxy, hold the xtables lock); what follows from them is the components' business.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

import simpy

from svcsim.k8s.controllers import selector_matches
from svcsim.k8s.load import Manifests
from svcsim.k8s.objects import Service
from svcsim.results.schema import EventKind
from svcsim.scenario import timeline as tl
from svcsim.scenario.load import LoadedScenario
from svcsim.scenario.refs import parse_object_ref, parse_service_target
from svcsim.scenario.service_plan import ServicePlan, timeline_order
from svcsim.scenario.world import World
from svcsim.sim.deployments import DeploymentController
from svcsim.sim.fleet import PodFleet
from svcsim.sim.pods import PodRunner
from svcsim.sim.scheduling import TO_BE_DELETED_TAINT, Scheduler, drain_node


def schedule_timeline(
    world: World,
    loaded: LoadedScenario,
    deployments: Mapping[str, DeploymentController],
    scheduler: Scheduler,
    fleet: PodFleet,
    plan: ServicePlan,
    added: Mapping[int, Manifests],
) -> None:
    """Start the process that carries out ``loaded``'s timeline in ``world``.

    ``plan`` holds the Services each ``add-service`` creates (cluster IPs and NodePorts
    filled in); ``added`` the parsed objects of each ``add-service`` manifest.
    """
    actions = timeline_order(loaded.scenario)
    runner = _Timeline(world, loaded, deployments, scheduler, fleet, plan, added)
    world.env.process(runner.run(actions))


class _Timeline:
    def __init__(
        self,
        world: World,
        loaded: LoadedScenario,
        deployments: Mapping[str, DeploymentController],
        scheduler: Scheduler,
        fleet: PodFleet,
        plan: ServicePlan,
        added: Mapping[int, Manifests],
    ) -> None:
        self.world, self.loaded = world, loaded
        self.deployments, self.scheduler, self.fleet = deployments, scheduler, fleet
        self.plan, self.added = plan, added

    def run(self, actions: list[tuple[int, Any]]) -> Generator[simpy.Event, Any, None]:
        env = self.world.env
        for index, action in actions:
            if action.at_s > env.now:
                yield env.timeout(action.at_s - env.now)
            self.apply(index, action)

    def event(self, kind: EventKind, node: str, obj: str, detail: str) -> None:
        self.world.record_event(self.world.env.now, kind, node, obj, detail)

    def apply(self, index: int, action: Any) -> None:
        world = self.world
        if isinstance(action, tl.Rollout):
            self.deployment(action.deployment).rollout(
                max_surge=action.max_surge, max_unavailable=action.max_unavailable
            )
        elif isinstance(action, tl.Scale):
            self.deployment(action.deployment).scale(action.replicas)
        elif isinstance(action, tl.FailReadiness):
            picked = self.pick(action)
            until = world.env.now + action.for_s
            for pod in picked:
                if pod.fail_readiness(until):
                    self.event(
                        EventKind.READINESS_FAILED, pod.node, pod.key, f"for={action.for_s:g}s"
                    )
            if not picked:
                self.event(
                    EventKind.FAULT, "", action.pod or "", "fail-readiness: no live Pod matched"
                )
        elif isinstance(action, tl.DeletePod | tl.CrashPod):
            picked = self.pick(action)
            for pod in picked:
                if isinstance(action, tl.DeletePod):
                    pod.delete()
                else:
                    pod.crash()
            if not picked:
                # The loader checked that such Pods can exist; none is alive right now.
                labels = (action.selector or {}).items()
                what = action.pod or ",".join(f"{k}={v}" for k, v in labels)
                self.event(EventKind.FAULT, "", what, f"{action.action}: no live Pod matched")
        elif isinstance(action, tl.CrashProxy):
            world.proxies[action.node].crash()
            world.proxy_changed()
        elif isinstance(action, tl.RestartProxy):
            world.proxies[action.node].restart()
            world.proxy_restarted(action.node)
        elif isinstance(action, tl.BlockSync):
            world.proxies[action.node].block_sync(action.for_s)
            world.proxy_changed()
            # The traffic path must notice the end of the block too.
            world.env.timeout(action.for_s).callbacks.append(lambda _: world.proxy_changed())
        elif isinstance(action, tl.InjectStaleRule):
            try:
                world.proxies[action.node].inject_stale_rule(
                    self.service_port(action.service), action.endpoint
                )
            except ValueError as exc:
                # As `iptables-restore` refuses a jump from a chain that is not there (the
                # Service lost its endpoints since): the edit fails, the run goes on.
                self.event(
                    EventKind.FAULT, action.node, action.service, f"inject-stale-rule failed: {exc}"
                )
        elif isinstance(action, tl.AddService):
            self.add_objects(index)
        elif isinstance(action, tl.RemoveService):
            # The loader checked that the Service exists by then (ServicePlan.removed).
            namespace, name = parse_object_ref(action.service, service=True)
            if world.api.delete("Service", f"{namespace}/{name}") is not None:
                self.event(EventKind.SERVICE_REMOVED, "", f"{namespace}/{name}", "")
        elif isinstance(action, tl.DrainNode):
            evicted = drain_node(action.node, self.scheduler, self.fleet)
            self.event(EventKind.NODE_DRAINED, action.node, action.node, f"evicted={len(evicted)}")
        elif isinstance(action, tl.FlushConntrack):
            self.flush_conntrack(action)
        elif isinstance(action, tl.FailNode | tl.PartitionNode | tl.RecoverNode):
            self.node_fault(action)
        elif isinstance(action, tl.FailEndpoint | tl.RecoverEndpoint):
            self.endpoint_fault(action)
        elif isinstance(action, tl.TaintNode | tl.UntaintNode):
            tainted = isinstance(action, tl.TaintNode)
            if tainted:
                self.scheduler.taint(action.node, TO_BE_DELETED_TAINT)
            else:
                self.scheduler.untaint(action.node, TO_BE_DELETED_TAINT)
            world.proxies[action.node].node_tainted_for_deletion(tainted)
            self.event(EventKind.FAULT, action.node, action.node,
                       f"{action.action} {TO_BE_DELETED_TAINT}")  # fmt: skip
        else:  # pragma: no cover - the schema admits no other action
            raise TypeError(f"unknown action {action!r}")

    def deployment(self, ref: str) -> DeploymentController:
        namespace, name = parse_object_ref(ref)
        return self.deployments[f"{namespace}/{name}"]

    def node_fault(self, action: tl.FailNode | tl.PartitionNode | tl.RecoverNode) -> None:
        """Fail, cut off or recover a node (the loader checked the order of these)."""
        nodes = self.world.nodes
        assert nodes is not None
        if isinstance(action, tl.FailNode):
            nodes.fail(action.node)
        elif isinstance(action, tl.RecoverNode):
            nodes.recover(action.node)
        else:
            nodes.partition(action.node)
            if action.for_s is not None:
                heal = self.world.env.timeout(action.for_s)
                heal.callbacks.append(lambda _: nodes.recover(action.node))

    def endpoint_fault(self, action: tl.FailEndpoint | tl.RecoverEndpoint) -> None:
        """Take a hand-made endpoint outside the Pod network down, or bring it back."""
        world, ip = self.world, action.address
        up = isinstance(action, tl.RecoverEndpoint)
        world.set_outside_endpoint(ip, up=up)
        self.event(EventKind.FAULT, "", ip, f"{action.action} {ip}")
        if isinstance(action, tl.FailEndpoint) and action.for_s is not None:

            def back(_: object) -> None:
                world.set_outside_endpoint(ip, up=True)
                self.event(EventKind.FAULT, "", ip, f"recover-endpoint {ip}")

            world.env.timeout(action.for_s).callbacks.append(back)

    def pick(self, action: tl.DeletePod | tl.CrashPod | tl.FailReadiness) -> list[PodRunner]:
        """The Pods an action names: one by name, or ``count`` drawn among the selector's.

        ``fail-readiness`` picks among Pods with a readiness probe only.
        """
        live = [r for r in self.fleet.runners() if not r.exited and not r.terminating]
        if isinstance(action, tl.FailReadiness):
            live = [r for r in live if r.probe is not None]
        if action.pod is not None:
            namespace, name = parse_object_ref(action.pod)
            return [r for r in live if r.key == f"{namespace}/{name}"]
        selector = dict(action.selector or {})
        matching = sorted(
            (r for r in live if selector_matches(selector.items(), r.pod.meta.labels)),
            key=lambda r: r.key,
        )
        if len(matching) <= action.count:
            return matching
        chosen = self.world.rng("timeline/pods").choice(len(matching), action.count, replace=False)
        return [matching[int(i)] for i in sorted(chosen)]

    def service_port(self, ref: str) -> str:
        """The ServicePortName text (``ns/name:port``) of a ``[ns/]name[:port]`` reference."""
        target = parse_service_target(ref)
        key = f"{target.namespace}/{target.name}"
        service: Service | None = self.world.api.get("Service", key)
        if service is None or not service.ports:
            return key if target.port is None else f"{key}:{target.port}"
        ports = service.ports
        only = ports[0] if len(ports) == 1 else None
        port = next((p for p in ports if target.port in (p.name, p.port)), only)
        if port is None or not port.name:
            return key
        return f"{key}:{port.name}"

    def add_objects(self, index: int) -> None:
        objects = self.added.get(index, Manifests())
        api = self.world.api
        for svc in self.plan.added.get(index, ()):
            api.apply("Service", svc)
            self.event(EventKind.SERVICE_ADDED, "", svc.meta.key, "")
        for ep in objects.endpoints:
            api.apply("Endpoints", ep)
        for sl in objects.endpoint_slices:
            api.apply("EndpointSlice", sl)

    def flush_conntrack(self, action: tl.FlushConntrack) -> None:
        kernel = self.world.kernels[action.node]
        orig_dst, orig_port = None, None
        if action.orig_dst is not None:
            ip, _, port = action.orig_dst.partition(":")
            orig_dst, orig_port = ip, (int(port) if port else None)
        deleted = kernel.conntrack.delete_matching(
            proto=action.protocol, orig_dst=orig_dst, orig_port_dst=orig_port
        )
        if self.world.traffic is not None and action.protocol is None and orig_dst is None:
            # Only a full flush clears the flows the batched engine counts outside the table.
            self.world.traffic.conntrack_flushed(action.node)
        self.event(EventKind.CONNTRACK_FLUSH, action.node, action.node, f"deleted={deleted}")
