"""Can a ``dns:NAME:PORT`` target ever be answered? The check ``svcsim validate`` runs.

A name is resolvable if one of the names the client's resolver tries
(:func:`svcsim.k8s.dns.query_names`, for the namespaces of the client Pods) is a Service's
``<name>.<ns>.svc.cluster.local`` at the start or after an ``add-service``, or an external
host the workload declares (``dns.hosts``). An ExternalName Service must alias a Service or a
declared host: anything else has no address, whatever the timing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from svcsim.k8s.controllers import selector_matches
from svcsim.k8s.dns import CLUSTER_DOMAIN, in_zone, pod_resolv_conf, query_names, service_of_name
from svcsim.k8s.load import Manifests
from svcsim.k8s.objects import PodDns, Service, ServiceType
from svcsim.scenario.refs import NameTarget

MAX_ALIASES = 8
"""ExternalName hops followed at most (as :data:`svcsim.sim.coredns.MAX_CNAME_HOPS`)."""
DNS_PORT = 53


def client_namespaces(selector: Sequence[tuple[str, str]], manifests: Manifests) -> list[str]:
    """Namespaces of the Deployments' and bare Pods' Pods that ``selector`` picks, sorted."""
    found = {
        d.meta.namespace
        for d in manifests.deployments
        if selector_matches(selector, d.template.labels)
    }
    found |= {p.meta.namespace for p in manifests.pods if selector_matches(selector, p.meta.labels)}
    return sorted(found)


def named_service(
    target: NameTarget, namespaces: Iterable[str], services: Mapping[str, Service]
) -> Service | None:
    """The Service whose name ends the resolver's search for ``target`` (no alias followed).

    The first name tried, for the first client namespace, that is a Service's; None if none is.
    """
    for ns in sorted(set(namespaces)) or ["default"]:
        for qname in query_names(target.name, pod_resolv_conf(ns)):
            key = service_of_name(qname, CLUSTER_DOMAIN)
            if key is not None and key in services:
                return services[key]
    return None


def nameserver_problem(key: str, services: Mapping[str, Service]) -> str | None:
    """Why Service ``key`` cannot be every Pod's nameserver (a ClusterIP with UDP port 53)."""
    svc = services.get(key)
    if svc is None:
        return f"the DNS Service {key} (cluster.dns.service) does not exist"
    udp53 = any(p.port == DNS_PORT and p.protocol.value == "UDP" for p in svc.ports)
    if svc.cluster_ip in ("", "None") or not udp53:
        return (
            f"the DNS Service {key} (cluster.dns.service) must have a ClusterIP and a UDP "
            "port 53: it is every Pod's nameserver"
        )
    return None


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


def resolver_problem(owner: str, dns: PodDns | None, host_network: bool) -> str | None:
    """Why the client Pods of ``owner`` do not ask cluster DNS (svcsim's only resolver), or None.

    The kubelet (pkg/kubelet/network/dns/dns.go ``getPodDNSType``): ``ClusterFirst`` on a
    hostNetwork Pod falls back to ``Default`` (the node's resolv.conf);
    ``ClusterFirstWithHostNet`` asks cluster DNS either way; ``Default`` and ``None`` do not.
    """
    policy = dns.policy if dns is not None else "ClusterFirst"
    if policy == "ClusterFirst" and host_network:
        why = "hostNetwork with dnsPolicy ClusterFirst uses the node's resolv.conf"
    elif policy in ("Default", "None"):
        why = f"dnsPolicy {policy} does not use cluster DNS"
    else:
        return None
    return (
        f"{owner}: {why}; svcsim simulates cluster DNS clients only "
        "(dnsPolicy ClusterFirst, or ClusterFirstWithHostNet)"
    )


def uses_vc(dns: PodDns | None) -> bool:
    """True if the Pod's resolver sends its queries over TCP (``options: [{name: use-vc}]``)."""
    return dns is not None and any(name == "use-vc" for name, _ in dns.options)


def has_tcp53(key: str, services: Mapping[str, Service]) -> bool:
    """True if Service ``key`` has a TCP port 53 (``dns-tcp`` of kube-dns)."""
    svc = services.get(key)
    return svc is not None and any(
        p.port == DNS_PORT and p.protocol.value == "TCP" for p in svc.ports
    )
