"""Pod lifecycles: one SimPy process per Pod, as the kubelet on its node would run it.

Timing rules (all in simulated seconds; ``t_s`` = scheduling, ``P`` = probe period):

* **Start.** At ``t_s`` the Pod gets its IP (``PodNetwork.allocate``; backend STARTING) and
  is written to the API (``node_name``, ``pod_ip``, phase Pending, ready False). Its
  container runs at ``t_c = t_s + pod_startup`` (phase Running); the app listens (SERVING)
  at ``t_c + app.startup_s``.
* **Readiness probes.** Probes run on a grid ``anchor + k·P`` where ``anchor`` is the first
  container start (the kubelet's per-Pod ticker), plus one probe at every container
  (re)start (the kubelet's manual trigger when it sees a running, not-ready container). A
  probe runs only once ``initialDelaySeconds`` have passed since the current container
  started. It succeeds iff the app accepts (SERVING); ``successThreshold`` successes /
  ``failureThreshold`` failures in a row flip the result (pkg/kubelet/prober/worker.go
  ``doProbe``); probes are instantaneous (``timeoutSeconds`` never matters: a closed port
  answers at once). So a fresh Pod is Ready at ``t_c + ceil(max(delay, startup) / P)·P +
  (S - 1)·P``. Without a probe the Pod is Ready while its container runs. Within one
  instant, lifecycle steps (and a deletion or crash requested then) come before the probe.
  Probes that could change nothing (same outcome as the current result and run) are not
  scheduled as SimPy events, so a steady Pod adds no event times to the main loop.
* **Deletion** (graceful, at ``t_d``): ``terminating`` at once. A running container runs its
  preStop hook for ``h = min(preStop, grace)``, then gets SIGTERM; the kubelet then allows
  ``max(grace - floor(h), 2)`` more seconds (kuberuntime_container.go ``killContainer``:
  whole seconds, 2 s minimum). The app stops accepting (DRAINING) ``drainAfterSigterm``
  after SIGTERM and exits at ``min(exitAfterSigterm, that allowance)`` after it (EXITED);
  the Pod object is then deleted and the IP released ``ip_teardown`` later. A Pod whose
  container is not running (not started yet, or crashed) exits at once. Probes go on
  during termination, so Ready falls after ``failureThreshold`` failures once draining.
* **Crash** (app process dies, sandbox kept): CRASHED at once; probes fail, so Ready falls
  after ``failureThreshold`` failing probes. The container restarts after the kubelet's
  back-off (10 s, doubling per crash in a row, 300 s cap, reset after 600 s without one):
  STARTING, readiness reset to not-ready (a new container starts with a failed result),
  SERVING after ``app.startup_s``, Ready again at the next passing probe. Without a probe,
  Ready is lost at the crash and regained at the restart.

* **Readiness failures** (:meth:`PodRunner.fail_readiness`): the app keeps serving but its
  readiness endpoint fails until a given time; probes fail meanwhile, so Ready falls after
  ``failureThreshold`` probes and comes back after ``successThreshold`` passing ones.
* **The node** (:meth:`PodRunner.node_event`, driven by :mod:`svcsim.sim.nodes`). ``down``: the
  machine stopped; every container died with it, nothing answers at the Pod's IP
  (UNREACHABLE) and the kubelet writes nothing. ``boot``: the kubelet starts again; a Pod
  deleted meanwhile is finished at once, any other gets a new sandbox (a new IP, as the CNI
  hands out for a new sandbox) and starts like a new Pod. ``cut``: the node runs but its
  kubelet cannot reach the API server: the lifecycle goes on, status writes and deletions
  wait. ``back``: the kubelet sees deletions made meanwhile (and starts their graceful
  termination) at once and writes its Pod statuses at its next status-manager sync. Pods bound
  to a node whose kubelet is down or cut are unknown to it until it is back (they get an IP at
  binding, as everywhere in svcsim, but never run before).

Events (``record_event``): pod-scheduled, pod-ready, pod-not-ready, pod-terminating,
pod-exited, ip-released, pod-crashed, pod-restarted.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Literal

import simpy

from svcsim.k8s.objects import ObjectMeta, Pod, PodTemplate
from svcsim.sim.api import ApiServer
from svcsim.sim.config import AppProfile, ControlPlaneDelays, RecordEvent
from svcsim.sim.network import Backend, BackendState, PodNetwork

MIN_KILL_GRACE_S = 2.0
"""``minimumGracePeriodInSeconds``: the least time SIGTERM is given before SIGKILL."""
_EPS = 1e-9
_ORDER = (
    "start",
    "restart",
    "listen",
    "sigterm",
    "drain",
    "exit",
    "heal",
    "probe",
    "release",
    "status",
)
"""Order of lifecycle steps falling on the same instant."""


@dataclass(frozen=True, slots=True)
class DeleteCause:
    """Interrupt cause: graceful deletion (``kubectl delete``, eviction, scale-down)."""

    reason: str = "deleted"


@dataclass(frozen=True, slots=True)
class CrashCause:
    """Interrupt cause: the app process dies (the container will be restarted)."""

    reason: str = "crashed"


KubeletLink = Literal["up", "down", "cut"]
"""The kubelet of the Pod's node: running and connected, down with its node, or cut off from
the API server."""


@dataclass(frozen=True, slots=True)
class NodeCause:
    """Interrupt cause: the Pod's node went ``down``, booted, lost or regained the API server.

    ``status_at_s`` (``back`` only): when the kubelet's status manager next syncs.
    """

    event: Literal["down", "boot", "cut", "back"]
    status_at_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ReadinessCause:
    """Interrupt cause: the readiness endpoint fails (the app keeps serving) until ``until_s``."""

    until_s: float


@dataclass(frozen=True, slots=True)
class PodSpec:
    """What a Pod is made from: identity, template (ports, probe, preStop, grace), app."""

    meta: ObjectMeta
    template: PodTemplate
    app: AppProfile
    owner: str = ""
    """The controller that owns the Pod (``ReplicaSet ns/name``), ``""`` for a bare Pod."""


class PodRunner:
    """One Pod on one node, from scheduling to the release of its IP.

    ``running=True`` starts a Pod that has long been up (SERVING and Ready now); its probe
    grid starts ``probe_phase_s`` (in ``[0, P)``) from now, as the kubelet's random start
    jitter puts it. :meth:`delete` and :meth:`crash` interrupt the process with a typed
    cause; they return False when the request does not apply (already gone, say).
    """

    def __init__(
        self,
        env: simpy.Environment,
        spec: PodSpec,
        node: str,
        api: ApiServer,
        network: PodNetwork,
        delays: ControlPlaneDelays,
        record_event: RecordEvent,
        *,
        running: bool = False,
        probe_phase_s: float = 0.0,
        link: KubeletLink = "up",
        ip: str | None = None,
    ) -> None:
        self.env, self.spec, self.node, self.api = env, spec, node, api
        self.network, self.delays, self.record = network, delays, record_event
        self.key = spec.meta.key
        self.probe = spec.template.readiness_probe
        now = env.now
        self.created_s = now
        ports = frozenset(
            (p.protocol.value.lower(), p.container_port) for p in spec.template.container_ports
        )
        self._ports = ports
        claimed = (
            None if ip is None else network.claim(node, self.key, ports, spec.app.name, now, ip)
        )
        self.backend: Backend = (
            claimed
            if claimed is not None
            else network.allocate(node, self.key, ports, spec.app.name, now)
        )
        self.ip = self.backend.ip
        self.restarts = 0
        self.ready_since_s: float | None = None
        self.deleting = False
        self.exited = False
        self._container_up = False
        self._probe_from_s = math.inf
        self._anchor_s: float | None = None
        self._result_ok = False
        self._run_ok: bool | None = None
        self._run_len = 0
        self._backoff_s = 0.0
        self._last_crash_s = -math.inf
        self._actions: dict[str, float] = {}
        self._signals: set[str] = set()
        self._last_probe_s = -math.inf
        self._link: KubeletLink = link
        self._known = link == "up"
        """The kubelet has seen the Pod (one bound while it was down or cut has not, yet)."""
        self._ever_started = False
        self._terminating_locally = False
        """The kubelet began the graceful termination (not just the API's deletion mark)."""
        self._api_delete_pending = False
        """The containers exited while the kubelet was cut off: the Pod object stays."""
        self._writes_from_s = -math.inf
        self._readiness_fails_until_s = -math.inf
        self._pod = Pod(
            meta=spec.meta,
            node_name=node,
            pod_ip=self.ip,
            pod_ips=(self.ip,),
            phase="Pending",
            ready=False,
            container_ports=spec.template.container_ports,
            dns=spec.template.dns,
        )
        self._written: Pod | None = None
        if link != "up":
            if link == "down":
                self._set_backend(BackendState.UNREACHABLE)
        elif running:
            self._ever_started = True
            self._container_up = True
            self._probe_from_s = now
            self._pod = dataclasses.replace(self._pod, phase="Running")
            self._set_backend(BackendState.SERVING)
            self._result_ok = True
            if self.probe is not None:
                self._anchor_s = now + probe_phase_s
                self._actions["probe"] = self._anchor_s
        else:
            self._actions["start"] = now + delays.pod_startup_for(node)
        self._event("pod-scheduled", f"ip={self.ip}")
        if not self._known:
            # Bound by the scheduler, unseen by the kubelet: no sandbox, so no IP in the API.
            self._api_write(pod_ip=None, pod_ips=())
        self._publish()
        self.process = env.process(self._run())

    # --- public ---------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """The Pod's Ready condition as last written to the API."""
        return self._written is not None and self._written.ready

    @property
    def terminating(self) -> bool:
        """True once deletion began (``deletionTimestamp`` set)."""
        return self.deleting

    @property
    def pod(self) -> Pod:
        """The Pod object as last written to the API."""
        return self._written if self._written is not None else self._pod

    @property
    def link(self) -> KubeletLink:
        """The kubelet's state as this Pod sees it (``up``, ``down`` or ``cut``)."""
        return self._link

    def delete(self) -> bool:
        """Begin graceful deletion; False if it already began or the Pod is gone.

        While the kubelet is down or cut off, the API server records the deletion (the Pod
        turns terminating) and the kubelet acts on it once it is back.
        """
        if self.deleting or self.exited or not self.process.is_alive:
            return False
        self.deleting = True
        if self._link != "up" or not self._known:
            self._pod = dataclasses.replace(self._pod, terminating=True)
            self._api_write(terminating=True)
            self._event("pod-terminating", "kubelet unreachable: deletion waits for it")
            return True
        self.process.interrupt(DeleteCause())
        return True

    def mark_not_ready(self) -> bool:
        """The node lifecycle controller's ``MarkPodsNotReady``: Ready false in the API.

        False (nothing written) when the API already shows the Pod not ready or it is gone.
        The kubelet, once back, writes what its probes say.
        """
        if self.exited or self._written is None or not self._written.ready:
            return False
        self._api_write(ready=False)
        self.ready_since_s = None
        self._event("pod-not-ready", "marked by the node lifecycle controller")
        return True

    def fail_readiness(self, until_s: float) -> bool:
        """Make readiness probes fail until ``until_s`` (the app keeps serving).

        False when the Pod has no readiness probe (nothing could notice) or is gone.
        """
        if self.probe is None or self.exited or not self.process.is_alive:
            return False
        self.process.interrupt(ReadinessCause(until_s))
        return True

    def node_event(
        self, event: Literal["down", "boot", "cut", "back"], status_at_s: float = 0.0
    ) -> None:
        """Tell the Pod what happened to its node (see the module docstring)."""
        if self.process.is_alive:
            self.process.interrupt(NodeCause(event, status_at_s))
        elif event in ("boot", "back"):
            self._finish_exited(event)

    def crash(self) -> bool:
        """Kill the app process; False unless its container is running and not crashed."""
        crashed = self.backend.state is BackendState.CRASHED
        if not self._container_up or crashed or self.exited or not self.process.is_alive:
            return False
        self.process.interrupt(CrashCause())
        return True

    # --- the process ----------------------------------------------------------------------------

    def _run(self) -> Generator[simpy.Event, Any, None]:
        while not self.exited or "release" in self._actions:
            due = min(self._actions.values(), default=math.inf)
            if due > self.env.now + _EPS:
                wait = self.env.timeout(due - self.env.now) if due < math.inf else self.env.event()
                try:
                    yield wait
                except simpy.Interrupt as interrupt:
                    self._on_cause(interrupt.cause)
                    self._publish()
                    continue
            self._step()

    def _on_cause(self, cause: object) -> None:
        if isinstance(cause, DeleteCause):
            self._begin_deletion()
        elif isinstance(cause, CrashCause):
            self._crash()
        elif isinstance(cause, ReadinessCause):
            self._readiness_fails_until_s = max(self._readiness_fails_until_s, cause.until_s)
            self._actions["heal"] = self._readiness_fails_until_s
        elif isinstance(cause, NodeCause):
            if cause.event == "down":
                self._node_down()
            elif cause.event == "boot":
                self._node_boot()
            elif cause.event == "cut":
                self._link = "cut"
            else:
                self._api_back(cause.status_at_s)
        else:
            raise TypeError(f"unknown interrupt cause {cause!r}")

    def _step(self) -> None:
        """Run every step due now, in :data:`_ORDER`, then publish the Pod once."""
        while True:
            now = self.env.now
            due = [a for a in _ORDER if a in self._actions and self._actions[a] <= now + _EPS]
            if not due:
                break
            action = due[0]
            del self._actions[action]
            getattr(self, f"_do_{action}")(now)
        self._publish()

    # --- lifecycle steps ------------------------------------------------------------------------

    def _container_start(self, now: float) -> None:
        self._ever_started = True
        self._container_up = True
        self._pod = dataclasses.replace(self._pod, phase="Running")
        self._probe_from_s = now + (self.probe.initial_delay_s if self.probe is not None else 0)
        if self.probe is None:
            self._result_ok = True  # no readiness probe: Ready while the container runs
        else:
            self._result_ok = False  # a new container starts from a failed result
            if self._anchor_s is None:
                self._anchor_s = now
            self._actions["probe"] = now  # the kubelet's manual trigger after a start
        self._actions["listen"] = now + self.spec.app.startup_s

    def _do_start(self, now: float) -> None:
        self._container_start(now)

    def _do_restart(self, now: float) -> None:
        self.restarts += 1
        self._set_backend(BackendState.STARTING)
        self._event("pod-restarted", f"restarts={self.restarts}")
        self._container_start(now)

    def _do_listen(self, now: float) -> None:
        if self.backend.state is BackendState.STARTING and "drain" not in self._signals:
            self._set_backend(BackendState.SERVING)

    def _do_sigterm(self, now: float) -> None:
        self._signals.add("sigterm")

    def _do_drain(self, now: float) -> None:
        self._signals.add("drain")
        if self.backend.state in (BackendState.SERVING, BackendState.STARTING):
            self._set_backend(BackendState.DRAINING)

    def _do_exit(self, now: float) -> None:
        self.exited = True
        self._container_up = False
        self._actions.clear()
        self._set_backend(BackendState.EXITED)
        self._event("pod-exited", f"restarts={self.restarts}")
        if self._link == "up":
            self.api.delete("Pod", self.key)
        else:
            self._api_delete_pending = True  # the kubelet's final delete waits for the API
        self._actions["release"] = now + self.delays.ip_teardown_for(self.node)

    def _do_release(self, now: float) -> None:
        self.network.release(self.ip)
        self._event("ip-released", f"ip={self.ip}")

    def _do_heal(self, now: float) -> None:
        """The readiness endpoint answers again: probes may pass from now on."""

    def _do_status(self, now: float) -> None:
        """The kubelet's status manager syncs: held writes go out (in :meth:`_publish`)."""
        if self._api_delete_pending:
            self._api_delete_pending = False
            self.api.delete("Pod", self.key)

    def _probe_ok(self) -> bool:
        """What a readiness probe would answer now."""
        serving = self.backend.state is BackendState.SERVING
        return serving and self.env.now + _EPS >= self._readiness_fails_until_s

    def _do_probe(self, now: float) -> None:
        probe = self.probe
        if probe is None or not self._container_up:
            return
        self._last_probe_s = now
        if now + _EPS < self._probe_from_s:
            return  # still within initialDelaySeconds of this container's start
        ok = self._probe_ok()
        self._run_len = self._run_len + 1 if self._run_ok is ok else 1
        self._run_ok = ok
        threshold = probe.success_threshold if ok else probe.failure_threshold
        if self._run_len >= threshold:
            self._result_ok = ok

    def _schedule_probe(self) -> None:
        """Put the next grid probe in the plan, unless probing could change nothing.

        A probe whose outcome equals both the current result and the current run only
        lengthens the run, so while the app's state holds such probes are left out: they
        would only be events at which nothing happens. Any state change brings them back
        at the next grid instant.
        """
        probe, anchor = self.probe, self._anchor_s
        if probe is None or anchor is None or not self._container_up or "probe" in self._actions:
            return
        ok = self._probe_ok()
        if self._result_ok is ok and self._run_ok is ok and self.env.now >= self._probe_from_s:
            return
        now, period = self.env.now, float(probe.period_s)
        at = anchor + math.ceil((now - anchor) / period - _EPS) * period
        if at <= self._last_probe_s + _EPS:
            at += period
        self._actions["probe"] = at

    # --- interrupts -----------------------------------------------------------------------------

    def _begin_deletion(self, *, announced: bool = False) -> None:
        now = self.env.now
        self._terminating_locally = True
        self._pod = dataclasses.replace(self._pod, terminating=True)
        if not announced:
            self._event("pod-terminating", "")
        if not self._container_up or self.backend.state is BackendState.CRASHED:
            self._actions = {"exit": now}  # no running container: nothing to stop gracefully
            return
        grace = float(self.spec.template.termination_grace_period_s)
        hook = self.spec.template.app_container
        sigterm_s, allowance_s = now, grace
        if hook is not None and hook.pre_stop is not None and grace > 0:
            ran_s = min(hook.pre_stop.duration_s, grace)
            sigterm_s, allowance_s = now + ran_s, grace - math.floor(ran_s)
        allowance_s = max(allowance_s, MIN_KILL_GRACE_S)
        app = self.spec.app
        exit_s = sigterm_s + min(app.exit_after_sigterm_s, allowance_s)
        self._actions.pop("restart", None)
        self._actions["sigterm"] = sigterm_s
        self._actions["exit"] = exit_s
        if sigterm_s + app.drain_after_sigterm_s < exit_s:
            self._actions["drain"] = sigterm_s + app.drain_after_sigterm_s

    def _crash(self) -> None:
        now = self.env.now
        if self.deleting:
            self._actions = {"exit": now}  # a terminating Pod is not restarted
            return
        self._set_backend(BackendState.CRASHED)
        self._event("pod-crashed", f"restarts={self.restarts}")
        self._actions.pop("listen", None)
        if self.probe is None:
            self._result_ok = False  # the container is not running
        limit = self.delays.crash_restart_backoff_max_s
        if now - self._last_crash_s > 2 * limit or self._backoff_s == 0:
            self._backoff_s = self.delays.crash_restart_backoff_s
        else:
            self._backoff_s = min(self._backoff_s * 2, limit)
        self._last_crash_s = now
        self._actions["restart"] = now + self._backoff_s

    # --- the node -------------------------------------------------------------------------------

    def _node_down(self) -> None:
        """Every process on the node died with it; the kubelet writes nothing any more."""
        self._link = "down"
        self._actions.clear()
        self._signals.clear()
        self._container_up = False
        self._result_ok, self._run_ok, self._run_len = False, None, 0
        self._set_backend(BackendState.UNREACHABLE)

    def _node_boot(self) -> None:
        """The kubelet is back after its node booted: finish a deletion, or a new sandbox."""
        now = self.env.now
        self._link = "up"
        self._known = True
        if self.exited:
            self._finish_exited("boot")
            return
        if self.deleting:
            # Evicted or deleted while the node was off: nothing is left to stop.
            self._terminating_locally = True
            self._actions = {"exit": now}
            return
        # The old sandbox died with the node: the kubelet makes a new one, with a new IP.
        self.network.release(self.ip)
        self.backend = self.network.allocate(
            self.node, self.key, self._ports, self.spec.app.name, now
        )
        self.ip = self.backend.ip
        self._pod = dataclasses.replace(
            self._pod, pod_ip=self.ip, pod_ips=(self.ip,), phase="Pending"
        )
        self._anchor_s, self._probe_from_s, self._last_probe_s = None, math.inf, -math.inf
        if self._ever_started:
            self.restarts += 1
        self._event("pod-restarted", f"new sandbox ip={self.ip} restarts={self.restarts}")
        self._actions = {"start": now + self.delays.pod_startup_for(self.node)}

    def _api_back(self, status_at_s: float) -> None:
        """The kubelet reaches the API server again (its node kept running)."""
        now = self.env.now
        self._link = "up"
        self._writes_from_s = status_at_s
        self._actions["status"] = max(status_at_s, now)
        if not self._known:
            self._known = True
            if not self.deleting:
                self._actions["start"] = now + self.delays.pod_startup_for(self.node)
        if self.deleting and not self._terminating_locally and not self.exited:
            if self._known and self._ever_started:
                self._begin_deletion(announced=True)
            else:
                self._terminating_locally = True
                self._actions = {"exit": now, "status": self._actions["status"]}

    def _finish_exited(self, event: str) -> None:
        """A Pod whose containers had exited when its kubelet came back: tidy up at once."""
        if self._api_delete_pending:
            self._api_delete_pending = False
            self.api.delete("Pod", self.key)
        if event == "boot" and self.network.lookup(self.ip) is self.backend:
            self.network.release(self.ip)
            self._event("ip-released", f"ip={self.ip}")

    # --- helpers --------------------------------------------------------------------------------

    def _api_write(self, **changes: Any) -> None:
        """Write the Pod object on another component's behalf (the kubelet's view stays)."""
        base = self._written if self._written is not None else self._pod
        self._written = dataclasses.replace(base, **changes)
        self.api.apply("Pod", self._written)

    def _set_backend(self, state: BackendState) -> None:
        self.network.set_state(self.backend, state, self.env.now)

    def _publish(self) -> None:
        """Write the Pod to the API if it changed; record a net readiness change.

        Nothing is written while the kubelet is down or cut off, nor before its status
        manager's first sync after it came back.
        """
        if self._link == "down" or not self._known:
            return
        self._schedule_probe()
        if self.exited:
            return
        ready = self._result_ok and self._container_up
        pod = dataclasses.replace(self._pod, ready=ready)
        if self._link == "cut" or self.env.now + _EPS < self._writes_from_s:
            return
        if pod == self._written:
            return
        was_ready = self._written is not None and self._written.ready
        self._pod = self._written = pod
        self.api.apply("Pod", pod)
        if ready != was_ready:
            self.ready_since_s = self.env.now if ready else None
            self._event("pod-ready" if ready else "pod-not-ready", "")

    def _event(self, kind: str, detail: str) -> None:
        self.record(self.env.now, kind, self.node, self.key, detail)
