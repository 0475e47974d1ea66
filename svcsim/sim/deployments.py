"""Deployments: ReplicaSets per template revision, scaling, rolling and Recreate rollouts.

The controller follows pkg/controller/deployment (``rolling.go``, ``recreate.go``,
``util/deployment_util.go``) and the ReplicaSet controller it drives:

* One ReplicaSet per template revision, named ``<deployment>-<pod-template-hash>``; its
  Pods are ``<replicaset>-<5 chars>`` drawn from the Generator passed in, over
  :data:`~svcsim.k8s.objects.SAFE_ALPHABET` (apimachinery ``rand.String``).
* Rolling update: the new ReplicaSet grows to at most ``replicas + maxSurge`` Pods in all
  (``NewRSNewReplicas``); old ones shrink while more than ``replicas - maxUnavailable`` Pods
  are available, unhealthy ones first (``reconcileOldReplicaSets``). Percentages: surge
  rounds up, unavailable rounds down; if both resolve to 0, maxUnavailable becomes 1
  (``ResolveFenceposts``). A sync either scales up or scales down, then looks again once
  its own change comes back through the watch (``api_watch_s`` later).
* Recreate: old ReplicaSets go to 0; the new one grows only once every old Pod is gone.
* Available = Pod Ready as seen through the controller's watch (``minReadySeconds`` 0).
  Terminating Pods do not count as active or available.
* A ReplicaSet with fewer active Pods than its ``replicas`` creates Pods; with more, it
  deletes (gracefully) in the ReplicaSet controller's order: not yet running, not ready,
  more Pods of the Deployment on the same node, Ready for less time, more restarts, newer
  (``ActivePodsWithRanks``, with exact times where upstream buckets them by log2).

A scale during a rollout is carried out by the rolling logic, not by the upstream
proportional split across ReplicaSets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import simpy

from svcsim.k8s.objects import (
    POD_TEMPLATE_HASH_LABEL,
    SAFE_ALPHABET,
    Deployment,
    DeploymentStrategyType,
    ObjectMeta,
    Pod,
    PodTemplate,
    RollingUpdate,
)
from svcsim.sim.api import EventType, WatchEvent
from svcsim.sim.config import AppProfile, RecordEvent
from svcsim.sim.fleet import PodFleet
from svcsim.sim.pods import PodRunner, PodSpec
from svcsim.sim.rollout import check_rolling_update, resolve_fenceposts, scaled_value
from svcsim.sim.scheduling import Scheduler

REVISION_ANNOTATION = "svcsim.io/revision"
"""Template annotation bumped by :meth:`DeploymentController.rollout` (like ``kubectl rollout
restart``'s ``restartedAt``): a new value gives a new template hash, so new Pods."""
_EPS = 1e-9


@dataclass(slots=True)
class ReplicaSet:
    """The controller's ReplicaSet: one template revision and the Pods it made."""

    name: str
    template_hash: str
    template: PodTemplate
    revision: int
    replicas: int = 0
    pods: dict[str, PodRunner] = field(default_factory=dict)
    """Pods made by this ReplicaSet whose deletion the controller has not seen yet."""


@dataclass(slots=True)
class _Seen:
    """What the controller's informer last showed of one Pod."""

    ready: bool = False
    terminating: bool = False
    deleted: bool = False
    """The controller itself asked for the deletion (it knows without waiting for the watch)."""


class DeploymentController:
    """Keeps one Deployment's ReplicaSets and Pods; :meth:`scale` and :meth:`rollout` edit it.

    Pod changes reach the controller through an API watch with ``delays.api_watch_s``; so do
    its own edits (scale, rollout) and ReplicaSet changes, each acted on that much later.
    """

    def __init__(
        self,
        env: simpy.Environment,
        deployment: Deployment,
        app: AppProfile,
        fleet: PodFleet,
        scheduler: Scheduler,
        rng: np.random.Generator,
        record_event: RecordEvent,
    ) -> None:
        strategy = deployment.strategy
        if strategy.rolling_update is not None:
            ru = strategy.rolling_update
            check_rolling_update(ru.max_surge, ru.max_unavailable)
        self.env, self.deployment, self.app = env, deployment, app
        self.fleet, self.scheduler, self.rng, self.record = fleet, scheduler, rng, record_event
        self.key = deployment.meta.key
        self.watch_delay_s = fleet.delays.api_watch_s
        self.replica_sets: list[ReplicaSet] = []
        self.revision = 0
        self._template_revision = 1
        self._seen: dict[str, _Seen] = {}
        self._rolling_out = False
        self._sync_at: float | None = None
        self._started = False

    # --- public ---------------------------------------------------------------------------------

    def start(self, *, running: bool = True) -> None:
        """Create the first ReplicaSet and its Pods; ``running``: already up and Ready now."""
        if self._started:
            raise RuntimeError(f"Deployment {self.key} already started")
        self._started = True
        self.fleet.api.watch(["Pod"], self._on_pod, self.watch_delay_s)
        rs = self._new_replica_set()
        rs.replicas = self.deployment.replicas
        probe = rs.template.readiness_probe
        for _ in range(rs.replicas):
            phase = float(self.rng.uniform(0.0, probe.period_s)) if probe is not None else 0.0
            self._create_pod(rs, running=running, probe_phase_s=phase)
        self._rolling_out = False

    def scale(self, replicas: int) -> None:
        """Set ``spec.replicas`` (seen by the controller ``api_watch_s`` later)."""
        if replicas < 0:
            raise ValueError(f"negative replicas {replicas!r}")
        old = self.deployment.replicas
        self.deployment = dataclasses.replace(self.deployment, replicas=replicas)
        self._event("scale", f"replicas={old}->{replicas}")
        self._request_sync(self.watch_delay_s)

    def rollout(
        self, *, max_surge: int | str | None = None, max_unavailable: int | str | None = None
    ) -> str:
        """Start a new template revision; returns its template hash.

        ``max_surge``/``max_unavailable`` replace the Deployment's values (RollingUpdate
        only); ValueError when invalid or when given for a Recreate Deployment.
        """
        strategy = self.deployment.strategy
        if max_surge is not None or max_unavailable is not None:
            if strategy.rolling_update is None:
                raise ValueError(f"Deployment {self.key} uses Recreate: no maxSurge/maxUnavailable")
            ru = strategy.rolling_update
            ru = RollingUpdate(
                ru.max_surge if max_surge is None else max_surge,
                ru.max_unavailable if max_unavailable is None else max_unavailable,
            )
            check_rolling_update(ru.max_surge, ru.max_unavailable)
            strategy = dataclasses.replace(strategy, rolling_update=ru)
        template = self.deployment.template
        notes = dict(template.annotations)
        self._template_revision += 1
        notes[REVISION_ANNOTATION] = str(self._template_revision)
        template = dataclasses.replace(template, annotations=tuple(sorted(notes.items())))
        self.deployment = dataclasses.replace(self.deployment, template=template, strategy=strategy)
        self._rolling_out = True
        detail = f"revision={self._template_revision} template-hash={template.template_hash}"
        self._event("rollout", detail)
        self._request_sync(self.watch_delay_s)
        return template.template_hash

    def pods(self) -> list[PodRunner]:
        """Every Pod of this Deployment that has not exited, by key."""
        live = [p for rs in self.replica_sets for p in rs.pods.values() if not p.exited]
        return sorted(live, key=lambda p: p.key)

    def active(self, rs: ReplicaSet) -> list[PodRunner]:
        """Pods of ``rs`` not being deleted (as the controller sees them), by key."""
        return sorted(
            (
                p
                for k, p in rs.pods.items()
                if not (self._seen[k].terminating or self._seen[k].deleted)
            ),
            key=lambda p: p.key,
        )

    def available(self, rs: ReplicaSet) -> int:
        """Active Pods of ``rs`` seen Ready."""
        return sum(1 for p in self.active(rs) if self._seen[p.key].ready)

    @property
    def rolling_out(self) -> bool:
        """True from :meth:`rollout` until the rollout completes."""
        return self._rolling_out

    # --- watch and sync scheduling --------------------------------------------------------------

    def _on_pod(self, event: WatchEvent) -> None:
        seen = self._seen.get(event.key)
        if seen is None:
            return
        if event.type is EventType.DELETED:
            for rs in self.replica_sets:
                rs.pods.pop(event.key, None)
            del self._seen[event.key]
        else:
            pod: Pod = event.new
            seen.ready, seen.terminating = pod.ready, pod.terminating
        self._request_sync(0.0)

    def _request_sync(self, delay_s: float) -> None:
        if not self._started:
            return  # edits before start() shape the first ReplicaSet
        at = self.env.now + delay_s
        if self._sync_at is not None and self._sync_at <= at + _EPS:
            return
        self._sync_at = at
        self.env.timeout(delay_s).callbacks.append(lambda _e: self._fire(at))

    def _fire(self, at: float) -> None:
        if self._sync_at is None or abs(self._sync_at - at) > _EPS:
            return  # superseded by an earlier sync
        self._sync_at = None
        self._sync()

    # --- the sync -------------------------------------------------------------------------------

    def _sync(self) -> None:
        new = self._current_replica_set()
        old = [rs for rs in self.replica_sets if rs is not new]
        if self.deployment.strategy.type is DeploymentStrategyType.RECREATE:
            changed = self._sync_recreate(new, old)
        else:
            changed = self._reconcile_new(new) or self._reconcile_old(new, old)
        for rs in self.replica_sets:
            self._reconcile_pods(rs)
        if changed:
            self._request_sync(self.watch_delay_s)
        elif self._rolling_out and self._complete(new, old):
            self._rolling_out = False
            self._event("rollout", f"complete revision={new.revision}")

    def _sync_recreate(self, new: ReplicaSet, old: list[ReplicaSet]) -> bool:
        changed = False
        for rs in old:
            changed |= self._set_replicas(rs, 0)
        if changed or any(rs.pods for rs in old):
            return changed  # wait until every old Pod is gone
        return self._set_replicas(new, self.deployment.replicas)

    def _reconcile_new(self, new: ReplicaSet) -> bool:
        want = self.deployment.replicas
        if new.replicas >= want:
            return self._set_replicas(new, want)
        ru = self.deployment.strategy.rolling_update or RollingUpdate()
        surge = scaled_value(ru.max_surge, want, round_up=True)
        current = sum(rs.replicas for rs in self.replica_sets)
        if current >= want + surge:
            return False
        grow = min(want + surge - current, want - new.replicas)
        return self._set_replicas(new, new.replicas + grow)

    def _reconcile_old(self, new: ReplicaSet, old: list[ReplicaSet]) -> bool:
        if sum(rs.replicas for rs in old) == 0:
            return False
        want = self.deployment.replicas
        min_available = want - self._max_unavailable()
        all_count = sum(rs.replicas for rs in self.replica_sets)
        new_unavailable = new.replicas - self.available(new)
        budget = all_count - min_available - new_unavailable
        if budget <= 0:
            return False
        cleaned = 0
        for rs in old:  # unhealthy Pods first: removing them costs no availability
            if cleaned >= budget:
                break
            unhealthy = rs.replicas - self.available(rs)
            if rs.replicas == 0 or unhealthy <= 0:
                continue
            step = min(budget - cleaned, unhealthy)
            self._set_replicas(rs, rs.replicas - step)
            cleaned += step
        available = sum(self.available(rs) for rs in self.replica_sets)
        room = available - min_available
        scaled = 0
        for rs in old:
            if scaled >= room:
                break
            if rs.replicas == 0:
                continue
            step = min(rs.replicas, room - scaled)
            self._set_replicas(rs, rs.replicas - step)
            scaled += step
        return cleaned + scaled > 0

    def _max_unavailable(self) -> int:
        ru = self.deployment.strategy.rolling_update
        want = self.deployment.replicas
        if ru is None or want == 0:
            return 0
        return min(resolve_fenceposts(ru.max_surge, ru.max_unavailable, want)[1], want)

    def _complete(self, new: ReplicaSet, old: list[ReplicaSet]) -> bool:
        want = self.deployment.replicas
        return (
            new.replicas == want
            and self.available(new) == want
            and all(rs.replicas == 0 and not self.active(rs) for rs in old)
        )

    def _set_replicas(self, rs: ReplicaSet, replicas: int) -> bool:
        if rs.replicas == replicas:
            return False
        kind = "rollout" if self._rolling_out else "scale"
        self._event(kind, f"replicaset={rs.name} replicas={rs.replicas}->{replicas}")
        rs.replicas = replicas
        return True

    # --- the ReplicaSet controller --------------------------------------------------------------

    def _reconcile_pods(self, rs: ReplicaSet) -> None:
        active = self.active(rs)
        missing = rs.replicas - len(active)
        for _ in range(missing):
            if self._create_pod(rs) is None:
                break  # no schedulable node: try again at the next sync
        if missing < 0:
            for runner in self._deletion_order(active)[:-missing]:
                self._seen[runner.key].deleted = True
                runner.delete()

    def _deletion_order(self, pods: list[PodRunner]) -> list[PodRunner]:
        on_node: dict[str, int] = {}
        for rs in self.replica_sets:
            for p in self.active(rs):
                on_node[p.node] = on_node.get(p.node, 0) + 1

        def rank(p: PodRunner) -> tuple[int, int, int, float, int, float, str]:
            ready_since = p.ready_since_s if p.ready_since_s is not None else float("inf")
            return (
                0 if p.pod.phase == "Pending" else 1,
                1 if self._seen[p.key].ready else 0,
                -on_node.get(p.node, 0),
                -ready_since,
                -p.restarts,
                -p.created_s,
                p.key,
            )

        return sorted(pods, key=rank)

    def _create_pod(
        self, rs: ReplicaSet, *, running: bool = False, probe_phase_s: float = 0.0
    ) -> PodRunner | None:
        node = self.scheduler.pick()
        if node is None:
            return None
        ns = self.deployment.meta.namespace
        while True:
            draw = self.rng.integers(0, len(SAFE_ALPHABET), size=5)
            name = f"{rs.name}-" + "".join(SAFE_ALPHABET[int(i)] for i in draw)
            if f"{ns}/{name}" not in self._seen and self.fleet.get(f"{ns}/{name}") is None:
                break
        meta = ObjectMeta(name, ns, rs.template.labels, rs.template.annotations)
        spec = PodSpec(meta, rs.template, self.app, owner=f"ReplicaSet {ns}/{rs.name}")
        runner = self.fleet.start(spec, node, running=running, probe_phase_s=probe_phase_s)
        self._seen[runner.key] = _Seen(ready=runner.ready)
        rs.pods[runner.key] = runner
        return runner

    def _current_replica_set(self) -> ReplicaSet:
        h = self.deployment.template_hash
        for rs in self.replica_sets:
            if rs.template_hash == h:
                return rs
        return self._new_replica_set()

    def _new_replica_set(self) -> ReplicaSet:
        template = self.deployment.template
        h = template.template_hash
        labels = dict(template.labels)
        labels[POD_TEMPLATE_HASH_LABEL] = h
        pod_template = dataclasses.replace(template, labels=tuple(sorted(labels.items())))
        self.revision += 1
        rs = ReplicaSet(f"{self.deployment.meta.name}-{h}", h, pod_template, self.revision)
        self.replica_sets.append(rs)
        return rs

    def _event(self, kind: str, detail: str) -> None:
        self.record(self.env.now, kind, "", self.key, detail)
