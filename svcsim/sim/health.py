"""kube-proxy's health servers: ``/healthz`` on port 10256 and each Service's healthCheckNodePort.

After kubernetes ``pkg/proxy/healthcheck`` (proxy_health.go, service_health.go):

* **Proxy health** (:class:`ProxyHealth`). kube-proxy calls ``QueuedUpdate`` when an informer
  event leaves a change to sync and ``Updated`` when a sync has programmed the rules. It is
  healthy unless an update has been queued for ``healthTimeout`` or longer without a sync since:
  ``healthTimeout`` is 2 x ``syncPeriod`` (cmd/kube-proxy/app/server.go). ``/healthz``
  also answers 503 while the node is not *eligible* (``SyncNode``): tainted
  ``ToBeDeletedByClusterAutoscaler`` (KEP-3836; the ``taint-node`` action) or being deleted.
* **Service health** (:func:`service_health`): for each Service with a ``healthCheckNodePort``
  (LoadBalancer, ``externalTrafficPolicy: Local``) kube-proxy answers 200 when the node has
  local *ready* endpoints for it (as last programmed) and the proxy is healthy (node
  eligibility is not consulted there), else 503.
* Nothing answers while kube-proxy (or its node) is down, nor on a healthCheckNodePort that
  the last sync did not open: a probe then fails like a 503 (no answer, or refused).
"""

from __future__ import annotations

from dataclasses import dataclass

from svcsim.proxy.names import ServicePortName
from svcsim.sim.synccost import ProgrammedView

HEALTHZ_PORT = 10256
"""kube-proxy's ``--healthz-bind-address`` default port."""
OK = 200
UNAVAILABLE = 503


@dataclass(slots=True)
class ProxyHealth:
    """``ProxyHealthServer``'s timestamps for one kube-proxy process."""

    timeout_s: float
    """``healthTimeout``: 2 x ``syncPeriod``."""
    oldest_pending_s: float | None = None
    """When the oldest change not yet synced was queued (None: nothing pending)."""

    def queued(self, now_s: float) -> None:
        """``QueuedUpdate``: keeps the oldest pending time."""
        if self.oldest_pending_s is None:
            self.oldest_pending_s = now_s

    def updated(self) -> None:
        """``Updated``: a sync programmed the rules; nothing is pending any more."""
        self.oldest_pending_s = None

    def healthy(self, now_s: float) -> bool:
        """``IsHealthy``: no update queued for ``timeout_s`` or longer."""
        pending = self.oldest_pending_s
        return pending is None or now_s - pending < self.timeout_s

    def healthz(self, now_s: float, *, eligible: bool = True) -> int:
        """The status code ``/healthz`` answers, for a node ``eligible`` or not."""
        return OK if self.healthy(now_s) and eligible else UNAVAILABLE


def local_ready_endpoints(view: ProgrammedView, namespace: str, name: str) -> int:
    """``LocalReadyEndpoints`` of one Service: its distinct local, ready endpoints (all ports)."""
    found = {
        ep.ip
        for spn, endpoints in view.endpoints_map.items()
        if spn.namespace == namespace and spn.name == name
        for ep in endpoints
        if ep.is_local and ep.ready
    }
    return len(found)


def health_check_port(view: ProgrammedView, namespace: str, name: str) -> int:
    """The Service's healthCheckNodePort as last programmed (0: no health server for it)."""
    ports = [
        info.health_check_node_port
        for spn, info in view.service_ports.items()
        if _is(spn, namespace, name) and info.health_check_node_port
    ]
    return ports[0] if ports else 0


def service_health(
    view: ProgrammedView | None, health: ProxyHealth, namespace: str, name: str, now_s: float
) -> int | None:
    """What the Service's healthCheckNodePort answers: 200, 503, or None (nothing listens)."""
    if view is None or not health_check_port(view, namespace, name):
        return None
    count = local_ready_endpoints(view, namespace, name)
    return OK if count and health.healthy(now_s) else UNAVAILABLE


def _is(spn: ServicePortName, namespace: str, name: str) -> bool:
    return spn.namespace == namespace and spn.name == name
