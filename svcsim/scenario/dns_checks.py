"""Can a ``dns:NAME:PORT`` target ever be answered? The check ``svcsim validate`` runs.

A name is resolvable if one of the names the client's resolver tries
(:func:`svcsim.k8s.dns.query_names`, for the namespaces of the client Pods) is a Service's
``<name>.<ns>.svc.cluster.local`` at the start or after an ``add-service``, or an external
host the workload declares (``dns.hosts``). An ExternalName Service must alias a Service or a
declared host: anything else has no address, whatever the timing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from svcsim.k8s.dns import CLUSTER_DOMAIN, in_zone, pod_resolv_conf, query_names, service_of_name
from svcsim.k8s.objects import Service, ServiceType
from svcsim.scenario.refs import NameTarget

MAX_ALIASES = 8
"""ExternalName hops followed at most (as :data:`svcsim.sim.coredns.MAX_CNAME_HOPS`)."""


def name_problem(
    target: NameTarget,
    namespaces: Iterable[str],
    services: Mapping[str, Service],
    hosts: Mapping[str, str],
) -> str | None:
    """Why no DNS answer could ever resolve ``target`` for clients in ``namespaces``, or None.

    ``services`` by ``ns/name``: every Service the scenario ever has; ``hosts``: the external
    host names the workload declares.
    """
    known = {h.lower().rstrip(".") for h in hosts}
    tried: list[str] = []
    for ns in sorted(set(namespaces)) or ["default"]:
        for qname in query_names(target.name, pod_resolv_conf(ns)):
            tried.append(qname)
            why = _resolves(qname, services, known)
            if why is None:
                return None
            if why:
                return why
    shown = ", ".join(dict.fromkeys(tried))
    return (
        f"no DNS answer can resolve {target.name}: no Service has one of the names the "
        f"resolver tries ({shown}) and no dns.hosts entry names it"
    )


def _resolves(qname: str, services: Mapping[str, Service], hosts: set[str]) -> str | None:
    """None if ``qname`` gets an address; "" if it is NXDOMAIN; else why its alias leads nowhere."""
    name = qname
    for _ in range(MAX_ALIASES):
        if not in_zone(name, CLUSTER_DOMAIN):
            return None if name in hosts else ("" if name == qname else _nowhere(qname, name))
        key = service_of_name(name, CLUSTER_DOMAIN)
        svc = services.get(key) if key is not None else None
        if svc is None:
            return "" if name == qname else _nowhere(qname, name)
        if svc.type is not ServiceType.EXTERNAL_NAME:
            return None
        name = svc.external_name.lower().rstrip(".")
    return f"{qname}: more than {MAX_ALIASES} ExternalName aliases in a row"


def _nowhere(qname: str, target: str) -> str:
    return (
        f"{qname} is an ExternalName Service for {target}, which no Service or dns.hosts "
        f"entry answers: say what answers there (dns: {{hosts: {{{target}: IP}}}})"
    )
