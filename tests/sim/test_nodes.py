"""Node faults and the node lifecycle controller (svcsim.sim.nodes): times derived in the test."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from svcsim.k8s.objects import Probe
from svcsim.sim.config import NodeLifecycleConfig
from svcsim.sim.network import BackendState
from svcsim.sim.nodes import NodeLifecycle, next_tick
from svcsim.sim.scheduling import Scheduler
from tests.sim.test_pods import World, make_world, spec


@dataclass
class FakeProxy:
    calls: list[str] = field(default_factory=list)

    def crash(self) -> bool:
        self.calls.append("crash")
        return True

    def restart(self) -> None:
        self.calls.append("restart")

    def api_cut(self) -> None:
        self.calls.append("cut")

    def api_back(self) -> None:
        self.calls.append("back")


@dataclass
class FakeKernel:
    reboots: list[float] = field(default_factory=list)

    def reboot(self, now_s: float) -> None:
        self.reboots.append(now_s)


@dataclass
class Harness:
    w: World
    nodes: NodeLifecycle
    scheduler: Scheduler
    proxies: dict[str, FakeProxy]
    kernels: dict[str, FakeKernel]
    changes: list[tuple[float, str, str]]


def harness(config: NodeLifecycleConfig | None = None, **delays: float) -> Harness:
    w = make_world(**delays)
    scheduler = Scheduler(["n1", "n2"])
    proxies = {n: FakeProxy() for n in ("n1", "n2")}
    kernels = {n: FakeKernel() for n in ("n1", "n2")}
    changes: list[tuple[float, str, str]] = []
    nodes = NodeLifecycle(
        w.env,
        config or NodeLifecycleConfig(),
        w.fleet,
        scheduler,
        proxies,  # type: ignore[arg-type]
        kernels,  # type: ignore[arg-type]
        lambda *e: w.events.append(e),
        lambda node, change: changes.append((w.env.now, node, change)),
    )
    return Harness(w, nodes, scheduler, proxies, kernels, changes)


PROBE = Probe(period_s=2)


@pytest.mark.parametrize(
    ("t", "period", "after", "expected"),
    [
        (0.0, 5.0, None, 0.0),
        (0.1, 5.0, None, 5.0),
        (10.0, 5.0, None, 10.0),
        (10.0, 5.0, 60.0, 65.0),  # strictly after 60
        (10.0, 5.0, 61.0, 65.0),
        (70.0, 5.0, 60.0, 70.0),  # at or after t wins when later
        (33.0, 10.0, None, 40.0),
    ],
)
def test_next_tick(t: float, period: float, after: float | None, expected: float) -> None:
    assert next_tick(t, period, strictly_after=after) == pytest.approx(expected)


def expected_not_ready(t_fail: float, cfg: NodeLifecycleConfig) -> float:
    """First monitor tick strictly after (last Lease renewal at or before t_fail) + grace."""
    last = math.floor(t_fail / cfg.lease_renew_interval_s) * cfg.lease_renew_interval_s
    k = math.floor((last + cfg.monitor_grace_period_s) / cfg.monitor_period_s) + 1
    return max(k * cfg.monitor_period_s, t_fail)


@pytest.mark.parametrize(
    ("t_fail", "renew", "period", "grace", "not_ready"),
    [
        (23.0, 10.0, 5.0, 50.0, 75.0),  # renewed at 20; 70 is not strictly after 70
        (20.0, 10.0, 5.0, 50.0, 75.0),  # a renewal at the failure instant counts
        (29.9, 10.0, 5.0, 50.0, 75.0),
        (30.0, 10.0, 5.0, 50.0, 85.0),
        (23.0, 10.0, 5.0, 40.0, 65.0),  # the pre-1.32 grace period
        (23.0, 10.0, 7.0, 50.0, 77.0),  # first 7 s tick after 70
        (1.0, 2.5, 1.0, 3.0, 4.0),
    ],
)
def test_failed_node_turns_not_ready_at_the_first_tick_after_the_grace_period(
    t_fail: float, renew: float, period: float, grace: float, not_ready: float
) -> None:
    cfg = NodeLifecycleConfig(
        lease_renew_interval_s=renew, monitor_period_s=period, monitor_grace_period_s=grace
    )
    assert expected_not_ready(t_fail, cfg) == pytest.approx(not_ready)
    h = harness(cfg)
    runner = h.w.fleet.start(spec(PROBE), "n2", running=True)
    h.w.at(t_fail, lambda: h.nodes.fail("n2"))
    h.w.env.run(until=not_ready - 1e-6)
    assert runner.backend.state is BackendState.UNREACHABLE
    assert h.w.api.get("Pod", runner.key).ready  # nobody told the API yet
    assert h.w.times("node-not-ready") == []
    h.w.env.run(until=not_ready + 1e-6)
    assert h.w.times("node-not-ready") == pytest.approx([not_ready])
    assert not h.w.api.get("Pod", runner.key).ready  # MarkPodsNotReady
    assert h.scheduler.tainted("n2")
    assert h.proxies["n2"].calls == ["crash"]


def test_eviction_after_the_toleration_then_boot_finishes_the_evicted_pod() -> None:
    cfg = NodeLifecycleConfig(unreachable_toleration_s=60.0)
    h = harness(cfg, ip_teardown_s=1.0)
    runner = h.w.fleet.start(spec(PROBE), "n2", running=True)
    h.w.at(23.0, lambda: h.nodes.fail("n2"))
    h.w.at(200.0, lambda: h.nodes.recover("n2"))
    h.w.env.run(until=135.0 - 1e-6)
    assert not h.w.api.get("Pod", runner.key).terminating
    h.w.env.run(until=135.0 + 1e-6)
    assert h.w.api.get("Pod", runner.key).terminating  # the API marks it; no kubelet acts
    assert h.w.times("pods-evicted") == [135.0]
    h.w.env.run(until=199.0)
    assert h.w.api.get("Pod", runner.key) is not None  # stays terminating while node is off
    h.w.env.run(until=200.5)
    assert h.w.api.get("Pod", runner.key) is None  # the booted kubelet finishes it at once
    assert h.w.times("node-ready") == [200.0]
    assert not h.scheduler.tainted("n2")
    assert h.kernels["n2"].reboots == [200.0]
    assert h.proxies["n2"].calls == ["crash", "restart"]
    h.w.env.run(until=202.0)
    assert h.w.network.lookup(runner.ip) is None  # its IP is free again


def test_boot_before_eviction_gives_the_pod_a_new_sandbox_and_ip() -> None:
    h = harness(NodeLifecycleConfig(), pod_startup_s=1.0)
    runner = h.w.fleet.start(spec(Probe(period_s=2)), "n2", running=True)
    old_ip = runner.ip
    h.w.at(10.0, lambda: h.nodes.fail("n2"))
    h.w.at(100.0, lambda: h.nodes.recover("n2"))
    h.w.env.run(until=100.5)
    assert runner.ip != old_ip
    assert h.w.network.lookup(old_ip) is None
    pod = h.w.api.get("Pod", runner.key)
    assert pod.phase == "Pending" or not pod.ready
    h.w.env.run(until=110.0)
    pod = h.w.api.get("Pod", runner.key)
    assert (pod.ready, pod.pod_ip, runner.restarts) == (True, runner.ip, 1)
    assert runner.backend.state is BackendState.SERVING


def test_recovery_before_not_ready_cancels_it() -> None:
    h = harness()
    h.w.fleet.start(spec(PROBE), "n2", running=True)
    h.w.at(23.0, lambda: h.nodes.partition("n2"))
    h.w.at(60.0, lambda: h.nodes.recover("n2"))
    h.w.env.run(until=500.0)
    assert h.w.times("node-not-ready") == []
    assert h.w.times("pods-evicted") == []


def test_failing_again_before_ready_keeps_the_taints_first_time() -> None:
    cfg = NodeLifecycleConfig(unreachable_toleration_s=100.0)
    h = harness(cfg)
    runner = h.w.fleet.start(spec(PROBE), "n2", running=True)
    h.w.at(23.0, lambda: h.nodes.partition("n2"))
    h.w.at(101.0, lambda: h.nodes.recover("n2"))  # not-ready at 75; next tick would be 105
    h.w.at(102.0, lambda: h.nodes.partition("n2"))
    h.w.env.run(until=176.0)
    assert h.w.times("node-not-ready") == [75.0]
    assert h.w.times("node-ready") == []
    assert h.w.times("pods-evicted") == [175.0]  # 75 + 100: the taint never went away
    assert h.w.api.get("Pod", runner.key).terminating


def test_partitioned_pods_keep_serving_and_write_at_the_next_status_sync() -> None:
    h = harness(NodeLifecycleConfig(status_sync_period_s=10.0))
    runner = h.w.fleet.start(spec(PROBE), "n2", running=True)
    h.w.at(23.0, lambda: h.nodes.partition("n2"))
    h.w.at(101.0, lambda: h.nodes.recover("n2"))
    h.w.env.run(until=100.0)
    assert runner.backend.state is BackendState.SERVING
    assert not h.w.api.get("Pod", runner.key).ready  # marked by the controller at 75
    assert h.proxies["n2"].calls == ["cut"]
    h.w.env.run(until=109.9)
    assert not h.w.api.get("Pod", runner.key).ready  # held until the status sync at 110
    h.w.env.run(until=110.1)
    assert h.w.api.get("Pod", runner.key).ready
    assert h.proxies["n2"].calls == ["cut", "back"]
    assert h.kernels["n2"].reboots == []


def test_deletion_during_a_partition_starts_when_the_kubelet_is_back() -> None:
    h = harness(NodeLifecycleConfig(status_sync_period_s=10.0))
    runner = h.w.fleet.start(spec(PROBE), "n2", running=True)
    h.w.at(10.0, lambda: h.nodes.partition("n2"))
    h.w.at(20.0, runner.delete)
    h.w.at(41.0, lambda: h.nodes.recover("n2"))
    h.w.env.run(until=40.0)
    assert h.w.api.get("Pod", runner.key).terminating
    assert runner.backend.state is BackendState.SERVING  # the kubelet has not seen it
    h.w.env.run(until=41.5)
    assert runner.backend.state is not BackendState.SERVING  # SIGTERM at 41
    h.w.env.run(until=60.0)
    assert h.w.api.get("Pod", runner.key) is None


def test_a_pod_bound_to_a_cut_off_node_waits_for_its_kubelet() -> None:
    h = harness(NodeLifecycleConfig(status_sync_period_s=10.0), pod_startup_s=1.0)
    h.w.at(5.0, lambda: h.nodes.partition("n2"))
    h.w.at(6.0, lambda: h.w.fleet.start(spec(PROBE, name="late"), "n2"))
    h.w.at(30.0, lambda: h.nodes.recover("n2"))
    h.w.env.run(until=29.0)
    pod = h.w.api.get("Pod", "default/late")
    assert (pod.phase, pod.pod_ip, pod.ready) == ("Pending", None, False)
    h.w.env.run(until=45.0)
    pod = h.w.api.get("Pod", "default/late")
    assert (pod.phase, pod.ready) == ("Running", True)
    assert pod.pod_ip is not None


@pytest.mark.parametrize(("action", "state"), [("fail", "failed"), ("partition", "partitioned")])
def test_faults_need_a_node_that_is_up(action: str, state: str) -> None:
    h = harness()
    getattr(h.nodes, action)("n1")
    with pytest.raises(ValueError, match=f"it is {state}"):
        h.nodes.fail("n1")
    with pytest.raises(ValueError, match="nothing to recover"):
        h.nodes.recover("n2")
