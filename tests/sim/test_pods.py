"""Pod lifecycle timing (svcsim.sim.pods): every expected time is derived in the test."""

import math
from dataclasses import dataclass, field

import pytest
import simpy

from svcsim.k8s.objects import Container, ContainerPort, ObjectMeta, PodTemplate, PreStopHook, Probe
from svcsim.sim.api import ApiServer
from svcsim.sim.config import AppProfile, ControlPlaneDelays
from svcsim.sim.fleet import PodFleet
from svcsim.sim.network import CHANGE_LOG, Backend, BackendState, PodNetwork
from svcsim.sim.pods import PodRunner, PodSpec


@dataclass
class World:
    env: simpy.Environment
    api: ApiServer
    network: PodNetwork
    fleet: PodFleet
    events: list[tuple[float, str, str, str, str]] = field(default_factory=list)
    states: list[tuple[float, str, BackendState]] = field(default_factory=list)

    def times(self, kind: str) -> list[float]:
        return [e[0] for e in self.events if e[1] == kind]

    def state_times(self, state: BackendState) -> list[float]:
        return [t for t, _, s in self.states if s is state]

    def at(self, t_s: float, action: object) -> None:
        def run() -> simpy.events.ProcessGenerator:
            yield self.env.timeout(t_s - self.env.now)
            action()  # type: ignore[operator]

        self.env.process(run())


def make_world(**delays: float) -> World:
    env = simpy.Environment()
    api = ApiServer(env)
    network = PodNetwork({"n1": "10.244.1.0/24", "n2": "10.244.2.0/24"})
    events: list[tuple[float, str, str, str, str]] = []
    fleet = PodFleet(env, api, network, ControlPlaneDelays(**delays), lambda *e: events.append(e))
    w = World(env, api, network, fleet, events)

    def listen(backend: Backend, _old: BackendState, now: float) -> None:
        w.states.append((now, backend.pod, backend.state))

    network.on_state_change(listen)
    return w


def spec(
    probe: Probe | None = None,
    pre_stop_s: float | None = None,
    grace_s: int = 30,
    app: AppProfile | None = None,
    name: str = "web-1",
) -> PodSpec:
    hook = PreStopHook("sleep", pre_stop_s) if pre_stop_s is not None else None
    container = Container("web", (ContainerPort(8080),), probe, hook)
    template = PodTemplate((("app", "web"),), (), (container,), grace_s)
    return PodSpec(ObjectMeta(name, labels=(("app", "web"),)), template, app or AppProfile("web"))


def expected_ready_s(t_c: float, startup_s: float, probe: Probe) -> float:
    """The rule: first grid instant (t_c + k·P) at or after max(delay, startup), + (S-1)·P."""
    k = math.ceil(max(probe.initial_delay_s, startup_s) / probe.period_s)
    return t_c + k * probe.period_s + (probe.success_threshold - 1) * probe.period_s


@pytest.mark.parametrize(
    ("pod_startup_s", "app_startup_s", "delay", "period", "success", "ready_s"),
    [
        (1.0, 0.0, 0, 10, 1, 1.0),  # probe at container start succeeds at once
        (1.0, 3.0, 0, 10, 1, 11.0),  # first probe fails (not listening), next on the grid
        (1.0, 0.0, 5, 10, 1, 11.0),  # initialDelay rounds up to the grid
        (1.0, 0.0, 10, 10, 1, 11.0),  # a delay on the grid probes right then
        (1.0, 0.0, 15, 10, 1, 21.0),
        (2.0, 12.0, 5, 5, 1, 17.0),  # startup dominates: ceil(12/5) = 3 periods
        (1.0, 0.0, 0, 10, 3, 21.0),  # three successes in a row
        (0.5, 2.5, 0, 1, 2, 4.5),
    ],
)
def test_ready_time(
    pod_startup_s: float,
    app_startup_s: float,
    delay: int,
    period: int,
    success: int,
    ready_s: float,
) -> None:
    w = make_world(pod_startup_s=pod_startup_s)
    probe = Probe(initial_delay_s=delay, period_s=period, success_threshold=success)
    runner = w.fleet.start(spec(probe, app=AppProfile("web", startup_s=app_startup_s)), "n1")
    assert w.api.get("Pod", "default/web-1").phase == "Pending"
    w.env.run(until=100)
    assert ready_s == pytest.approx(expected_ready_s(pod_startup_s, app_startup_s, probe))
    assert w.times("pod-scheduled") == [0]
    assert w.times("pod-ready") == pytest.approx([ready_s])
    assert w.state_times(BackendState.SERVING) == pytest.approx([pod_startup_s + app_startup_s])
    pod = w.api.get("Pod", "default/web-1")
    assert (pod.ready, pod.phase, pod.node_name, pod.pod_ip) == (True, "Running", "n1", runner.ip)


def test_without_probe_ready_when_container_runs_even_if_app_is_not_listening() -> None:
    w = make_world(pod_startup_s=2.0)
    w.fleet.start(spec(None, app=AppProfile("web", startup_s=5.0)), "n1")
    w.env.run(until=20)
    assert w.times("pod-ready") == [2.0]
    assert w.state_times(BackendState.SERVING) == [7.0]


@pytest.mark.parametrize(
    ("pre_stop_s", "grace_s", "drain_s", "exit_s", "draining_at", "exited_at"),
    [
        (None, 30, 0.5, 2.0, 0.5, 2.0),  # SIGTERM at deletion
        (5.0, 30, 0.5, 2.0, 5.5, 7.0),  # SIGTERM after the preStop sleep
        (5.5, 10, 1.0, 20.0, 6.5, 10.5),  # allowance 10 - floor(5.5) = 5 after SIGTERM
        (40.0, 30, 1.0, 5.0, 31.0, 32.0),  # preStop cut at grace; 2 s minimum after SIGTERM
        (None, 1, 0.0, 10.0, 0.0, 2.0),  # grace below the 2 s minimum
        (None, 30, 3.0, 3.0, None, 3.0),  # exits before it would drain
    ],
)
def test_graceful_deletion_timeline(
    pre_stop_s: float | None,
    grace_s: int,
    drain_s: float,
    exit_s: float,
    draining_at: float | None,
    exited_at: float,
) -> None:
    w = make_world(pod_startup_s=1.0, ip_teardown_s=4.0)
    app = AppProfile("web", drain_after_sigterm_s=drain_s, exit_after_sigterm_s=exit_s)
    runner = w.fleet.start(spec(None, pre_stop_s, grace_s, app), "n1")
    t_d = 100.0
    w.at(t_d, runner.delete)
    w.env.run(until=t_d + 0.001)
    pod = w.api.get("Pod", "default/web-1")
    assert pod.terminating and pod.ready  # no probe: Ready while the container runs
    w.env.run(until=t_d + 60)
    expected_draining = [] if draining_at is None else [t_d + draining_at]
    assert w.state_times(BackendState.DRAINING) == pytest.approx(expected_draining)
    assert w.state_times(BackendState.EXITED) == pytest.approx([t_d + exited_at])
    assert w.times("pod-terminating") == [t_d]
    assert w.times("pod-exited") == pytest.approx([t_d + exited_at])
    assert w.times("ip-released") == pytest.approx([t_d + exited_at + 4.0])
    assert w.api.get("Pod", "default/web-1") is None
    assert w.network.lookup(runner.ip) is None
    assert w.fleet.get("default/web-1") is None


def test_readiness_falls_after_failure_threshold_while_draining() -> None:
    w = make_world(pod_startup_s=1.0)
    probe = Probe(period_s=2, failure_threshold=3)
    app = AppProfile("web", drain_after_sigterm_s=0.0, exit_after_sigterm_s=20.0)
    runner = w.fleet.start(spec(probe, app=app), "n1")  # grid: 1, 3, 5, ...
    w.at(10.5, runner.delete)
    w.env.run(until=40)
    # Draining from 10.5; failing probes at 11, 13, 15: the third flips Ready.
    assert w.times("pod-not-ready") == [15.0]
    assert w.times("pod-exited") == [30.5]
    assert [e[1] for e in w.events] == [
        "pod-scheduled",
        "pod-ready",
        "pod-terminating",
        "pod-not-ready",
        "pod-exited",
        "ip-released",
    ]


def test_deletion_before_the_container_runs_exits_at_once() -> None:
    w = make_world(pod_startup_s=5.0)
    runner = w.fleet.start(spec(Probe(), pre_stop_s=10.0), "n1")
    w.at(2.0, runner.delete)
    w.env.run(until=10)
    assert w.times("pod-exited") == [2.0]
    assert w.times("pod-ready") == []
    assert w.state_times(BackendState.SERVING) == []


@pytest.mark.parametrize(
    ("period", "failures", "not_ready_at", "ready_again_at"),
    [
        (2, 2, 17.0, 29.0),  # F·P = 4 < back-off: probes at 15 and 17 fail -> not ready at 17
        (10, 3, 24.5, 31.0),  # F·P = 30 > back-off: the restart at 24.5 resets readiness
    ],
)
def test_crash_and_restart(
    period: int, failures: int, not_ready_at: float, ready_again_at: float
) -> None:
    w = make_world(pod_startup_s=1.0, crash_restart_backoff_s=10.0)
    probe = Probe(period_s=period, failure_threshold=failures)
    runner = w.fleet.start(spec(probe, app=AppProfile("web", startup_s=3.0)), "n1")
    w.at(14.5, runner.crash)
    w.env.run(until=100)
    t_c = 1.0
    assert w.times("pod-crashed") == [14.5]
    assert w.times("pod-restarted") == [24.5]
    assert w.state_times(BackendState.CRASHED) == [14.5]
    assert w.state_times(BackendState.SERVING) == [4.0, 27.5]
    # Ready again at the first grid instant (t_c + k·P) once listening again at 27.5.
    assert ready_again_at == t_c + math.ceil((27.5 - t_c) / period) * period
    first_ready = expected_ready_s(t_c, 3.0, probe)
    assert w.times("pod-ready") == pytest.approx([first_ready, ready_again_at])
    assert w.times("pod-not-ready") == [not_ready_at]
    assert runner.restarts == 1
    assert runner.ip == w.api.get("Pod", "default/web-1").pod_ip  # the Pod keeps its IP


def test_crash_back_off_doubles_then_resets() -> None:
    w = make_world(
        pod_startup_s=0.0, crash_restart_backoff_s=10.0, crash_restart_backoff_max_s=30.0
    )
    runner = w.fleet.start(spec(None), "n1")
    for t in (5.0, 40.0, 90.0, 140.0, 190.0):  # each less than 2 × 30 s after the last
        w.at(t, runner.crash)
    w.at(1000.0, runner.crash)  # more than 2 × 30 s after the last crash: back to 10 s
    w.env.run(until=1100)
    gaps = [r - c for c, r in zip(w.times("pod-crashed"), w.times("pod-restarted"), strict=True)]
    assert gaps == [10.0, 20.0, 30.0, 30.0, 30.0, 10.0]
    # Without a probe, Ready follows the container: lost at each crash, back at each restart.
    assert w.times("pod-not-ready") == w.times("pod-crashed")
    assert w.times("pod-ready")[1:] == w.times("pod-restarted")


def test_crash_while_terminating_exits_now() -> None:
    w = make_world(pod_startup_s=0.0)
    runner = w.fleet.start(spec(None, pre_stop_s=20.0), "n1")
    w.at(5.0, runner.delete)
    w.at(7.0, runner.crash)
    w.env.run(until=60)
    assert w.times("pod-exited") == [7.0]
    assert w.times("pod-restarted") == []


def test_running_pod_is_ready_now_and_probes_on_its_phase() -> None:
    w = make_world()
    probe = Probe(period_s=10, failure_threshold=2)
    app = AppProfile("web", drain_after_sigterm_s=0.0, exit_after_sigterm_s=60.0)
    runner = w.fleet.start(spec(probe, app=app), "n1", running=True, probe_phase_s=3.0)
    assert runner.ready and runner.backend.state is BackendState.SERVING
    assert w.times("pod-ready") == [0]
    assert w.api.get("Pod", "default/web-1").ready
    w.at(20.0, runner.delete)
    w.env.run(until=100)
    # Grid 3, 13, 23, 33 ...: failing probes at 23 and 33.
    assert w.times("pod-not-ready") == [33.0]


def test_requests_that_do_not_apply_are_refused() -> None:
    w = make_world(pod_startup_s=1.0)
    runner: PodRunner = w.fleet.start(spec(None), "n1")
    assert not runner.crash()  # container not running yet
    w.env.run(until=2)
    assert runner.crash()
    w.env.run(until=3)
    assert not runner.crash()  # already crashed
    assert runner.delete()
    assert not runner.delete()
    w.env.run(until=10)
    assert not runner.delete() and not runner.crash()
    assert not w.fleet.delete("default/web-1")
    again = w.fleet.start(spec(None), "n1")  # the name is free again once the Pod exited
    assert again is not runner and again.ip != runner.ip  # host-local IPAM moves on
    with pytest.raises(ValueError, match="already exists"):
        w.fleet.start(spec(None), "n1")


def test_fleet_lookup() -> None:
    w = make_world()
    a = w.fleet.start(spec(None, name="a"), "n1")
    b = w.fleet.start(spec(None, name="b"), "n2")
    assert w.fleet.runners() == [a, b]
    assert w.fleet.on_node("n2") == [b]
    assert w.fleet.crash("default/a") is False  # not running yet (pod startup 1 s)
    w.env.run(until=2)
    assert w.fleet.crash("default/a") and not w.fleet.crash("default/zzz")


def test_ip_versions_move_with_every_change_at_that_ip_only() -> None:
    network = PodNetwork({"n1": "10.244.1.0/24"})
    a = network.allocate("n1", "default/a", frozenset({("tcp", 80)}), "web", 0.0)
    b = network.allocate("n1", "default/b", frozenset({("tcp", 80)}), "web", 0.0)
    seen = {a.ip: network.ip_version(a.ip), b.ip: network.ip_version(b.ip)}
    assert seen[a.ip] > 0 and seen[b.ip] > seen[a.ip]
    assert network.ip_version("10.244.1.250") == 0  # never used
    steps = [
        lambda: network.set_state(a, BackendState.SERVING, 1.0),
        lambda: network.set_state(a, BackendState.SERVING, 2.0),  # no change: no move
        lambda: network.release(a.ip),
    ]
    for step, moves in zip(steps, [True, False, True], strict=True):
        step()
        assert (network.ip_version(a.ip) != seen[a.ip]) is moves
        assert network.ip_version(b.ip) == seen[b.ip]
        seen[a.ip] = network.ip_version(a.ip)


def test_changed_ips_since_lists_each_changed_address_until_the_log_forgets() -> None:
    network = PodNetwork({"n1": "10.244.1.0/24"})
    start = network.version
    a = network.allocate("n1", "default/a", frozenset({("tcp", 80)}), "web", 0.0)
    middle = network.version
    network.set_state(a, BackendState.SERVING, 1.0)
    b = network.allocate("n1", "default/b", frozenset({("tcp", 80)}), "web", 1.0)
    assert network.changed_ips_since(start) == {a.ip, b.ip}
    assert network.changed_ips_since(middle) == {a.ip, b.ip}
    assert network.changed_ips_since(network.version) == set()
    for i in range(CHANGE_LOG):  # push the early changes out of the log
        network.set_state(b, BackendState.SERVING if i % 2 else BackendState.DRAINING, 2.0 + i)
    assert network.changed_ips_since(start) is None  # too long ago to tell
    assert network.changed_ips_since(network.version - 1) == {b.ip}
