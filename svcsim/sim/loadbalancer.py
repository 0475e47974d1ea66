"""A cloud load balancer in front of a LoadBalancer Service: it sends to the nodes it finds healthy.

The load balancer probes every node each ``check_interval_s`` (all nodes at once, on a grid from
t = 0) with an HTTP GET: on the Service's ``healthCheckNodePort`` when it has one (LoadBalancer,
``externalTrafficPolicy: Local``), else on kube-proxy's ``/healthz`` (port 10256; KEP-3836). A
200 is a success; a 503 or a refused connection (kube-proxy down, the port not open) a failure
at once; no answer at all (the node down) a failure once ``check_timeout_s`` has passed. A node
turns unhealthy after ``unhealthy_threshold`` failures in a row and healthy again after
``healthy_threshold`` successes in a row. New connections go to the healthy nodes only, evenly
(each new connection picks one); connections already open stay where they are. At t = 0 the
load balancer has long been running: each node starts in the state its first probe finds.

Defaults: the GCE L4 load balancer's health check (kubernetes/ingress-gce
``pkg/healthchecksl4``, legacy-cloud-providers/gce ``gceHcCheckIntervalSeconds`` 8,
``gceHcTimeoutSeconds`` 1, ``gceHcHealthyThreshold`` 1, ``gceHcUnhealthyThreshold`` 3: "3 x 8 =
24 seconds before the LB will steer traffic away").
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import simpy

from svcsim.sim.health import OK
from svcsim.sim.kubeproxy import KubeProxy

REFUSED = 0
"""A probe's answer when the connection is refused (nothing listens on the port)."""

Probe = Callable[[str], int | None]
"""What probing a node answers now: a status code, :data:`REFUSED`, or None for no answer."""


@dataclass(frozen=True, slots=True)
class LoadBalancerConfig:
    """How the cloud load balancer checks nodes."""

    check_interval_s: float = 8.0
    check_timeout_s: float = 1.0
    healthy_threshold: int = 1
    unhealthy_threshold: int = 3

    def __post_init__(self) -> None:
        if not self.check_interval_s > 0:
            raise ValueError("check_interval_s must be > 0")
        if self.healthy_threshold < 1 or self.unhealthy_threshold < 1:
            raise ValueError("health thresholds must be >= 1")


def kube_proxy_probe(
    proxies: Mapping[str, KubeProxy],
    machine_up: Callable[[str], bool],
    namespace: str,
    name: str,
    *,
    local: bool,
) -> Probe:
    """Probe the Service's healthCheckNodePort (``local``) or kube-proxy's ``/healthz``."""

    def probe(node: str) -> int | None:
        if not machine_up(node):
            return None
        proxy = proxies[node]
        answer = proxy.service_health(namespace, name) if local else proxy.healthz()
        return REFUSED if answer is None else answer

    return probe


class CloudLoadBalancer:
    """The load balancer of one Service (see the module docstring)."""

    def __init__(
        self,
        env: simpy.Environment,
        service: str,
        nodes: Sequence[str],
        probe: Probe,
        config: LoadBalancerConfig,
        on_change: Callable[[str, str, bool], None],
    ) -> None:
        self.env, self.service, self.nodes = env, service, tuple(nodes)
        self.probe, self.config, self.on_change = probe, config, on_change
        self.healthy: dict[str, bool] = {}
        self._run: dict[str, int] = {}
        """Per node: consecutive results against its state (successes while unhealthy...)."""
        env.process(self._loop())

    def healthy_nodes(self) -> tuple[str, ...]:
        """The nodes new connections go to now, in node order."""
        return tuple(n for n in self.nodes if self.healthy.get(n, False))

    def _loop(self) -> Generator[simpy.Event, Any, None]:
        for node in self.nodes:
            self.healthy[node] = self.probe(node) == OK
            self._run[node] = 0
        while True:
            yield self.env.timeout(self.config.check_interval_s)
            for node in self.nodes:
                self._check(node)

    def _check(self, node: str) -> None:
        answer = self.probe(node)
        if answer is None:
            # Nothing answers: the probe fails when its timeout expires.
            late = self.env.timeout(self.config.check_timeout_s)
            late.callbacks.append(lambda _: self._register(node, ok=False))
        else:
            self._register(node, ok=answer == OK)

    def _register(self, node: str, *, ok: bool) -> None:
        if ok == self.healthy[node]:
            self._run[node] = 0
            return
        self._run[node] += 1
        cfg = self.config
        if self._run[node] >= (cfg.healthy_threshold if ok else cfg.unhealthy_threshold):
            self.healthy[node] = ok
            self._run[node] = 0
            self.on_change(self.service, node, ok)
