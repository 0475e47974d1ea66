"""Deployment controller (svcsim.sim.deployments): scaling, rollouts, drain, scheduling."""

import re
from dataclasses import dataclass, field, replace

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from svcsim.k8s.objects import (
    POD_TEMPLATE_HASH_LABEL,
    SAFE_ALPHABET,
    Container,
    ContainerPort,
    Deployment,
    DeploymentStrategy,
    DeploymentStrategyType,
    ObjectMeta,
    Pod,
    PodTemplate,
    PreStopHook,
    Probe,
    RollingUpdate,
)
from svcsim.sim.api import ApiServer
from svcsim.sim.config import AppProfile, ControlPlaneDelays
from svcsim.sim.deployments import DeploymentController
from svcsim.sim.fleet import PodFleet
from svcsim.sim.network import PodNetwork
from svcsim.sim.rollout import check_rolling_update, resolve_fenceposts, scaled_value
from svcsim.sim.scheduling import Scheduler, drain_node, start_bare_pod

NODES = ("n1", "n2", "n3")


@dataclass
class World:
    env: simpy.Environment
    api: ApiServer
    fleet: PodFleet
    scheduler: Scheduler
    events: list[tuple[float, str, str, str, str]] = field(default_factory=list)

    def times(self, kind: str, obj: str | None = None) -> list[float]:
        return [e[0] for e in self.events if e[1] == kind and (obj is None or e[3] == obj)]

    def details(self, kind: str) -> list[str]:
        return [e[4] for e in self.events if e[1] == kind]

    def at(self, t_s: float, action: object) -> None:
        def run() -> simpy.events.ProcessGenerator:
            yield self.env.timeout(t_s - self.env.now)
            action()  # type: ignore[operator]

        self.env.process(run())


def make_world(**delays: float) -> World:
    env = simpy.Environment()
    api = ApiServer(env)
    network = PodNetwork({n: f"10.244.{i}.0/24" for i, n in enumerate(NODES, 1)})
    events: list[tuple[float, str, str, str, str]] = []
    fleet = PodFleet(env, api, network, ControlPlaneDelays(**delays), lambda *e: events.append(e))
    return World(env, api, fleet, Scheduler(NODES), events)


def deployment(
    replicas: int = 3,
    surge: int | str = "25%",
    unavailable: int | str = "25%",
    *,
    recreate: bool = False,
    probe: Probe | None = None,
    pre_stop_s: float | None = None,
) -> Deployment:
    hook = PreStopHook("sleep", pre_stop_s) if pre_stop_s is not None else None
    container = Container("web", (ContainerPort(8080),), probe or Probe(period_s=1), hook)
    template = PodTemplate((("app", "web"),), (), (container,))
    strategy = (
        DeploymentStrategy(DeploymentStrategyType.RECREATE, None)
        if recreate
        else DeploymentStrategy(rolling_update=RollingUpdate(surge, unavailable))
    )
    return Deployment(ObjectMeta("web"), (("app", "web"),), template, replicas, strategy)


def controller(
    w: World, d: Deployment, app: AppProfile | None = None, seed: int = 7
) -> DeploymentController:
    dc = DeploymentController(
        w.env,
        d,
        app or AppProfile("web", exit_after_sigterm_s=1.0),
        w.fleet,
        w.scheduler,
        np.random.default_rng(seed),
        lambda *e: w.events.append(e),
    )
    dc.start()
    return dc


@pytest.mark.parametrize(
    ("surge", "unavailable", "desired", "expected"),
    [
        # pkg/controller/deployment/util ResolveFenceposts doc examples
        ("0%", "1%", 2, (0, 1)),
        ("0%", "1%", 1, (0, 1)),
        ("1%", "25%", 2, (1, 0)),
        ("1%", "25%", 1, (1, 0)),
        ("1%", "0%", 2, (1, 0)),
        ("25%", "25%", 10, (3, 2)),
        (2, "50%", 4, (2, 2)),
        ("100%", "100%", 3, (3, 3)),
    ],
)
def test_resolve_fenceposts(
    surge: int | str, unavailable: int | str, desired: int, expected: tuple[int, int]
) -> None:
    assert resolve_fenceposts(surge, unavailable, desired) == expected


@pytest.mark.parametrize(
    ("value", "total", "up", "down"),
    [(5, 10, 5, 5), ("25%", 3, 1, 0), ("50%", 5, 3, 2), ("0%", 7, 0, 0), ("100%", 7, 7, 7)],
)
def test_scaled_value_rounding(value: int | str, total: int, up: int, down: int) -> None:
    assert scaled_value(value, total, round_up=True) == up
    assert scaled_value(value, total, round_up=False) == down


@pytest.mark.parametrize(
    ("surge", "unavailable", "message"),
    [
        (0, 0, "may not be 0 when maxSurge is 0"),
        ("0%", 0, "may not be 0 when maxSurge is 0"),
        (1, "101%", "not be greater than 100%"),
        (-1, 1, "maxSurge must be an integer >= 0"),
        (1, "5", "maxUnavailable must be an integer >= 0"),
    ],
)
def test_check_rolling_update(surge: int | str, unavailable: int | str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_rolling_update(surge, unavailable)


def test_scheduler_round_robin_and_cordon() -> None:
    s = Scheduler(["n3", "n1", "n2"])
    assert [s.pick() for _ in range(4)] == ["n1", "n2", "n3", "n1"]
    s.cordon("n2")
    assert [s.pick() for _ in range(3)] == ["n3", "n1", "n3"]
    s.cordon("n1")
    s.cordon("n3")
    assert s.pick() is None
    s.uncordon("n1")
    assert s.pick() == "n1"
    with pytest.raises(ValueError, match="unknown node"):
        s.cordon("n9")


def test_start_names_and_spreads_pods_deterministically() -> None:
    names = []
    for _ in range(2):
        w = make_world()
        dc = controller(w, deployment(replicas=4), seed=11)
        names.append([p.key for p in dc.pods()])
        h = dc.deployment.template_hash
        assert all(re.fullmatch(rf"default/web-{h}-[{SAFE_ALPHABET}]{{5}}", k) for k in names[-1])
        assert sorted(p.node for p in dc.pods()) == ["n1", "n1", "n2", "n3"]
        assert all(p.ready for p in dc.pods())
        pod = w.api.get("Pod", dc.pods()[0].key)
        assert dict(pod.meta.labels) == {"app": "web", POD_TEMPLATE_HASH_LABEL: h}
    assert names[0] == names[1]
    other = controller(make_world(), deployment(replicas=4), seed=12)
    assert [p.key for p in other.pods()] != names[0]


def test_scale_up_then_down_deletes_not_ready_pods_first() -> None:
    w = make_world(pod_startup_s=5.0, api_watch_s=0.5)
    dc = controller(w, deployment(replicas=3))
    old = {p.key for p in dc.pods()}
    w.at(10.0, lambda: dc.scale(5))
    w.at(12.0, lambda: dc.scale(3))  # the two new Pods are not Ready yet
    w.env.run(until=30)
    assert w.times("pod-scheduled")[3:] == [10.5, 10.5]
    assert w.details("scale") == [
        "replicas=3->5",
        f"replicaset=web-{dc.deployment.template_hash} replicas=3->5",
        "replicas=5->3",
        f"replicaset=web-{dc.deployment.template_hash} replicas=5->3",
    ]
    assert {p.key for p in dc.pods()} == old
    assert w.times("pod-terminating") == [12.5, 12.5]
    assert w.times("pod-ready")[3:] == []


def test_scale_down_prefers_nodes_with_more_pods() -> None:
    w = make_world()
    dc = controller(w, deployment(replicas=4))  # n1 holds two of them
    w.at(5.0, lambda: dc.scale(3))
    w.env.run(until=20)
    assert sorted(p.node for p in dc.pods()) == ["n1", "n2", "n3"]


def test_deleted_pod_is_replaced_after_the_watch_delay() -> None:
    w = make_world(api_watch_s=0.25, pod_startup_s=1.0)
    dc = controller(w, deployment(replicas=2))
    victim = dc.pods()[0].key
    w.at(3.0, lambda: w.fleet.delete(victim))
    w.env.run(until=20)
    assert w.times("pod-scheduled")[2:] == [3.25]
    assert len(dc.pods()) == 2 and victim not in {p.key for p in dc.pods()}


def test_drain_cordons_and_replaces_elsewhere() -> None:
    w = make_world()
    dc = controller(w, deployment(replicas=3))
    drained: list[str] = []
    w.at(5.0, lambda: drained.extend(drain_node("n1", w.scheduler, w.fleet)))
    w.env.run(until=30)
    assert len(drained) == 1
    assert sorted(p.node for p in dc.pods()) == ["n2", "n2", "n3"]
    assert w.times("pod-terminating") == [5.0]
    assert "n1" not in {w.scheduler.pick() for _ in range(4)}


def test_recreate_waits_for_every_old_pod_to_be_gone() -> None:
    w = make_world(api_watch_s=0.05, pod_startup_s=1.0)
    dc = controller(w, deployment(replicas=3, recreate=True, pre_stop_s=2.0))
    w.at(10.0, dc.rollout)
    w.env.run(until=40)
    exits = w.times("pod-exited")
    new_scheduled = w.times("pod-scheduled")[3:]
    assert exits == pytest.approx([13.05] * 3)  # deleted at 10.05, preStop 2 s, exit 1 s
    assert new_scheduled == pytest.approx([13.1] * 3)  # once the deletions are seen
    assert w.details("rollout")[-1] == "complete revision=2"
    assert all(p.ready for p in dc.pods()) and len(dc.pods()) == 3


def test_rollout_overrides() -> None:
    w = make_world()
    dc = controller(w, deployment(replicas=2))
    with pytest.raises(ValueError, match="may not be 0"):
        dc.rollout(max_surge=0, max_unavailable=0)
    h = dc.rollout(max_surge=0, max_unavailable=1)
    assert dc.deployment.strategy.rolling_update == RollingUpdate(0, 1)
    most_active = 0
    while w.env.peek() < 30:
        w.env.step()
        most_active = max(most_active, len([p for p in dc.pods() if not p.deleting]))
    assert most_active == 2  # no surge: an old Pod goes before each new one comes
    assert {p.pod.meta.label(POD_TEMPLATE_HASH_LABEL) for p in dc.pods()} == {h}
    r = controller(make_world(), deployment(recreate=True))
    with pytest.raises(ValueError, match="Recreate"):
        r.rollout(max_surge=1)


def test_bare_pod_goes_to_its_node() -> None:
    w = make_world()
    pod = Pod(ObjectMeta("solo", labels=(("app", "solo"),)), node_name="n2")
    runner = start_bare_pod(pod, AppProfile("solo"), w.fleet, w.scheduler)
    assert runner is not None and runner.node == "n2" and runner.ready
    stray = start_bare_pod(
        replace(pod, meta=ObjectMeta("stray"), node_name="n9"), AppProfile(), w.fleet, w.scheduler
    )
    assert stray is not None and stray.node == "n1"


percent = st.integers(0, 100).map(lambda p: f"{p}%")
int_or_percent = st.one_of(st.integers(0, 3), percent)


@settings(max_examples=40, deadline=None)
@given(
    replicas=st.integers(1, 6),
    surge=int_or_percent,
    unavailable=int_or_percent,
    pod_startup_s=st.sampled_from([0.5, 1.0, 3.0]),
    period=st.integers(1, 4),
    app_startup_s=st.sampled_from([0.0, 1.5]),
    pre_stop_s=st.sampled_from([None, 3.0]),
)
def test_rolling_update_respects_surge_and_unavailability(
    replicas: int,
    surge: int | str,
    unavailable: int | str,
    pod_startup_s: float,
    period: int,
    app_startup_s: float,
    pre_stop_s: float | None,
) -> None:
    try:
        check_rolling_update(surge, unavailable)
    except ValueError:
        return  # refused by validation (both 0)
    w = make_world(pod_startup_s=pod_startup_s, api_watch_s=0.1)
    d = deployment(
        replicas, surge, unavailable, probe=Probe(period_s=period), pre_stop_s=pre_stop_s
    )
    dc = controller(w, d, AppProfile("web", startup_s=app_startup_s, exit_after_sigterm_s=1.0))
    max_surge, max_unavailable = resolve_fenceposts(surge, unavailable, replicas)
    max_unavailable = min(max_unavailable, replicas)
    w.at(1.0, dc.rollout)
    while w.env.peek() < 400:
        w.env.step()
        active = [p for p in dc.pods() if not p.deleting]
        assert len(active) <= replicas + max_surge
        assert sum(p.ready for p in active) >= replicas - max_unavailable
    new_hash = dc.deployment.template_hash
    assert w.details("rollout")[-1] == "complete revision=2"
    assert len(dc.pods()) == replicas
    assert all(p.ready and p.spec.template.template_hash for p in dc.pods())
    assert {p.pod.meta.label(POD_TEMPLATE_HASH_LABEL) for p in dc.pods()} == {new_hash}
