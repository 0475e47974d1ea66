"""What a uniformity test concludes, in the words every command shows, and when it is not run.

One significance level and one wording for ``svcsim run``, ``svcsim report``, ``svcsim chain``
and the notebooks: the verdict is computed here and stored in ``summary.json``, so no reader
applies a threshold of its own. This module needs no scipy: the tests live in
:mod:`svcsim.results.stats` and :mod:`svcsim.proxy.probability`.

The test's null hypothesis is "each new flow picks one of the endpoints the node's rules
choose from, uniformly". It does not hold by design for:

* ``sessionAffinity: ClientIP``: a client's flows follow its first pick (xt_recent), so they
  are not independent draws;
* ``externalTrafficPolicy: Local`` on a Service reachable from outside (NodePort, external
  IPs, load-balancer IPs): external flows go to the receiving node's local endpoints only, a
  set the recorded endpoint sets (the ClusterIP view) do not describe.

* any Service when a node runs kube-proxy in userspace mode: its round robin is no random draw
  (exact turns while all endpoints answer; a failed dial's turn goes to the next endpoint).

Those Services get the verdict ``not tested (<reason>)`` instead of a p-value.
``internalTrafficPolicy: Local`` needs no exception: each node's recorded endpoint set is its
local endpoints, and the test compares each node's flows with its own set.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Final

from svcsim.k8s.objects import Service, ServiceType, SessionAffinity, TrafficPolicy
from svcsim.proxy.names import ServicePortName

UNIFORMITY_ALPHA: Final = 1e-3
"""Significance level of every uniformity verdict: a p-value below it rejects uniformity."""


def uniformity_verdict(p_value: float | None, *, not_tested: str | None = None) -> str:
    """The verdict for ``p_value``, stating the level it was judged at.

    ``not_tested`` (a reason) wins over any p-value; a missing or NaN p-value (nothing to
    test: no new flows, or one endpoint) is ``not tested (no spread to test)``.
    """
    if not_tested is not None:
        return f"not tested ({not_tested})"
    if p_value is None or math.isnan(p_value):
        return "not tested (no spread to test)"
    if p_value >= UNIFORMITY_ALPHA:
        return f"consistent with uniform (p ≥ {UNIFORMITY_ALPHA:g})"
    return f"NOT uniform (p < {UNIFORMITY_ALPHA:g})"


def _reachable_from_outside(service: Service) -> bool:
    return (
        service.type in (ServiceType.NODE_PORT, ServiceType.LOAD_BALANCER)
        or bool(service.external_ips)
        or any(i.ip for i in service.load_balancer_ingress)
    )


USERSPACE_REASON: Final = "userspace round robin"
"""Why no Service is tested when a node runs kube-proxy in userspace mode."""


def untested_service_ports(
    services: Iterable[Service], *, userspace: bool = False
) -> dict[str, str]:
    """Service ports (ServicePortName text) whose spread is not uniform by design, with why.

    See the module docstring for the cases; ``userspace``: some node runs userspace mode.
    """
    out: dict[str, str] = {}
    for service in services:
        if service.session_affinity is SessionAffinity.CLIENT_IP:
            reason = "sessionAffinity ClientIP"
        elif userspace:
            reason = USERSPACE_REASON
        elif service.external_traffic_policy is TrafficPolicy.LOCAL and _reachable_from_outside(
            service
        ):
            reason = "externalTrafficPolicy Local"
        else:
            continue
        for sp in service.ports:
            name = ServicePortName(service.meta.namespace, service.meta.name, sp.name, sp.protocol)
            out[name.text] = reason
    return out
