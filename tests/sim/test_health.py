"""kube-proxy's health servers (svcsim.sim.health) and a cloud load balancer (loadbalancer)."""

from __future__ import annotations

import pytest
import simpy

from svcsim.k8s.objects import Protocol
from svcsim.proxy.endpoints import EndpointInfo, ServicePortInfo
from svcsim.proxy.names import ServicePortName
from svcsim.sim.health import OK, UNAVAILABLE, ProxyHealth, local_ready_endpoints, service_health
from svcsim.sim.loadbalancer import REFUSED, CloudLoadBalancer, LoadBalancerConfig
from svcsim.sim.synccost import ProgrammedView


@pytest.mark.parametrize(
    ("queued", "now", "healthy"),
    [
        (None, 100.0, True),  # nothing pending
        (10.0, 69.9, True),  # pending for less than 2 x 30 s
        (10.0, 70.0, False),  # exactly healthTimeout: unhealthy (not "<")
        (10.0, 500.0, False),
    ],
)
def test_proxy_health_times_out_after_two_sync_periods(
    queued: float | None, now: float, healthy: bool
) -> None:
    h = ProxyHealth(timeout_s=60.0)
    if queued is not None:
        h.queued(queued)
        h.queued(queued + 5.0)  # QueuedUpdate keeps the oldest time
    assert h.healthy(now) is healthy
    assert h.healthz(now) == (OK if healthy else UNAVAILABLE)
    h.updated()
    assert h.healthy(now)


WEB = ServicePortName("default", "web", "http", Protocol.TCP)
WEB_METRICS = ServicePortName("default", "web", "metrics", Protocol.TCP)


def view(*endpoints: EndpointInfo, hc_port: int = 32000) -> ProgrammedView:
    info = ServicePortInfo("10.96.0.10", 80, Protocol.TCP, health_check_node_port=hc_port)
    return ProgrammedView(
        0.0,
        0.0,
        {WEB: info, WEB_METRICS: info},
        {WEB: endpoints, WEB_METRICS: endpoints},
    )


@pytest.mark.parametrize(
    ("endpoints", "count", "code"),
    [
        ((EndpointInfo("10.244.0.2", 8080, is_local=True),), 1, OK),
        ((EndpointInfo("10.244.1.2", 8080, is_local=False),), 0, UNAVAILABLE),
        (
            (EndpointInfo("10.244.0.2", 8080, is_local=True, ready=False, terminating=True),),
            0,
            UNAVAILABLE,  # a terminating endpoint, serving or not, is not ready
        ),
        (
            (
                EndpointInfo("10.244.0.2", 8080, is_local=True),
                EndpointInfo("10.244.0.3", 8080, is_local=True),
            ),
            2,  # distinct endpoints, whatever the number of ports
            OK,
        ),
    ],
)
def test_service_health_counts_local_ready_endpoints(
    endpoints: tuple[EndpointInfo, ...], count: int, code: int
) -> None:
    v = view(*endpoints)
    assert local_ready_endpoints(v, "default", "web") == count
    assert service_health(v, ProxyHealth(60.0), "default", "web", 0.0) == code


def test_service_health_needs_a_healthy_proxy_and_an_open_port() -> None:
    v = view(EndpointInfo("10.244.0.2", 8080, is_local=True))
    late = ProxyHealth(60.0)
    late.queued(0.0)
    assert service_health(v, late, "default", "web", 61.0) == UNAVAILABLE
    assert service_health(view(hc_port=0), ProxyHealth(60.0), "default", "web", 0.0) is None
    assert service_health(None, ProxyHealth(60.0), "default", "web", 0.0) is None


def run_lb(
    answers: dict[float, int | None], cfg: LoadBalancerConfig, until: float
) -> tuple[list[tuple[float, bool]], CloudLoadBalancer]:
    """A one-node load balancer whose probe answers ``answers`` from each time on."""
    env = simpy.Environment()
    changes: list[tuple[float, bool]] = []

    def probe(node: str) -> int | None:
        current = [t for t in answers if t <= env.now]
        return answers[max(current)]

    lb = CloudLoadBalancer(
        env, "default/web", ["n1"], probe, cfg, lambda s, n, ok: changes.append((env.now, ok))
    )
    env.run(until=until)
    return changes, lb


@pytest.mark.parametrize(
    ("answers", "changes"),
    [
        ({0.0: OK}, []),
        ({0.0: OK, 30.0: UNAVAILABLE}, [(48.0, False)]),  # fails at 32, 40, 48
        ({0.0: OK, 30.0: REFUSED}, [(48.0, False)]),  # refused: a failure at once
        ({0.0: OK, 30.0: None}, [(49.0, False)]),  # no answer: known at the 1 s timeout
        ({0.0: OK, 30.0: UNAVAILABLE, 45.0: OK}, []),  # two failures only
        ({0.0: UNAVAILABLE, 20.0: OK}, [(24.0, True)]),  # healthyThreshold 1
    ],
)
def test_load_balancer_thresholds(
    answers: dict[float, int | None], changes: list[tuple[float, bool]]
) -> None:
    found, _ = run_lb(answers, LoadBalancerConfig(), 100.0)
    assert found == changes


def test_load_balancer_sends_only_to_healthy_nodes() -> None:
    env = simpy.Environment()
    up = {"n1": True, "n2": False, "n3": True}
    lb = CloudLoadBalancer(
        env,
        "default/web",
        ["n1", "n2", "n3"],
        lambda node: OK if up[node] else UNAVAILABLE,
        LoadBalancerConfig(check_interval_s=5.0, healthy_threshold=2, unhealthy_threshold=1),
        lambda *a: None,
    )
    env.run(until=1.0)
    assert lb.healthy_nodes() == ("n1", "n3")
    up["n1"], up["n2"] = False, True
    env.run(until=5.5)
    assert lb.healthy_nodes() == ("n3",)  # n1 out after 1 failure; n2 needs 2 successes
    env.run(until=10.5)
    assert lb.healthy_nodes() == ("n2", "n3")
