"""Cluster DNS as names and answers: a Pod's resolv.conf, glibc's search order, CoreDNS's records.

Pure functions over Kubernetes objects; when and where a query is asked lives in
:mod:`svcsim.sim.coredns` (the server) and :mod:`svcsim.traffic.resolver` (the client).

* :class:`ResolvConf` is what the kubelet writes into a Pod with ``dnsPolicy: ClusterFirst``
  (``pkg/kubelet/network/dns/dns.go``): ``search <ns>.svc.<zone> svc.<zone> <zone>``,
  ``nameserver <kube-dns ClusterIP>``, ``options ndots:5``; ``timeout`` and ``attempts`` keep
  glibc's defaults (resolv.conf(5): ``RES_TIMEOUT`` 5 s, ``RES_DFLRETRY`` 2).
* :func:`query_names` is the order in which glibc's ``res_search``
  (``resolv/res_query.c``, ``__res_context_search``) tries a name: as is first when it has at
  least ``ndots`` dots or ends in a dot, else each search domain first and the name as is last.
* :func:`kubernetes_answer` is CoreDNS's ``kubernetes`` plugin for an A query (the Kubernetes
  DNS-Based Service Discovery specification): ``<svc>.<ns>.svc.<zone>`` of a ClusterIP Service
  is its ClusterIP, of a headless Service the addresses of its ready endpoints, of an
  ExternalName Service a CNAME to the external name; anything else in the zone is NXDOMAIN.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from svcsim.k8s.objects import EndpointSlice, PodDns, Service, ServiceType

CLUSTER_DOMAIN: Final = "cluster.local"
"""The kubelet's ``clusterDomain`` as kubeadm sets it, and the zone of CoreDNS's plugin."""
NDOTS: Final = 5
"""``options ndots:5`` the kubelet writes for ClusterFirst Pods."""
RES_TIMEOUT_S: Final = 5.0
"""glibc's ``RES_TIMEOUT``: seconds to wait for an answer to one try (resolv.conf(5))."""
RES_ATTEMPTS: Final = 2
"""glibc's ``RES_DFLRETRY``: tries per name and nameserver (resolv.conf(5))."""


@dataclass(frozen=True, slots=True)
class ResolvConf:
    """The resolver settings of one Pod (``/etc/resolv.conf``)."""

    search: tuple[str, ...]
    """Search domains, in order."""
    ndots: int = NDOTS
    """A name with at least this many dots is tried as is before the search list."""
    timeout_s: float = RES_TIMEOUT_S
    """Wait for the answers of one try."""
    attempts: int = RES_ATTEMPTS
    """Tries per name (one nameserver)."""
    single_request: bool = False
    """``single-request`` (``RES_SNGLKUP``): the AAAA query is sent only once the A answer is
    in, so the two never race (``resolv/res_send.c`` ``send_dg``)."""
    single_request_reopen: bool = False
    """``single-request-reopen`` (``RES_SNGLKUPREOP``): sends one query at a time too, and
    reopens the socket when an answer is missing."""
    use_vc: bool = False
    """``use-vc`` (``RES_USEVC``): queries go over TCP (``send_vc``) to port 53."""

    @property
    def sequential(self) -> bool:
        """True if A and AAAA are sent one after the other (either single-request option)."""
        return self.single_request or self.single_request_reopen

    def __post_init__(self) -> None:
        if self.ndots < 0 or self.attempts < 1 or not self.timeout_s > 0:
            raise ValueError(f"bad resolver options {self!r}")


def pod_resolv_conf(
    namespace: str, zone: str = CLUSTER_DOMAIN, pod: PodDns | None = None
) -> ResolvConf:
    """The resolv.conf the kubelet writes into a ClusterFirst Pod of ``namespace``.

    With the Pod's ``dnsConfig`` (``pod``): its ``searches`` follow the cluster's (duplicates
    dropped) and its ``options`` override the kubelet's ``ndots:5`` and glibc's defaults
    (pkg/kubelet/network/dns/dns.go ``appendDNSConfig``); they were checked when the
    manifest was read (:mod:`svcsim.k8s.pod_dns`).
    """
    search: tuple[str, ...] = (f"{namespace}.svc.{zone}", f"svc.{zone}", zone)
    if pod is None:
        return ResolvConf(search)
    search = tuple(dict.fromkeys((*search, *pod.searches)))
    values = dict(pod.options)  # a name given twice: the last one counts
    return ResolvConf(
        search,
        ndots=int(values.get("ndots") or NDOTS),
        timeout_s=float(values.get("timeout") or RES_TIMEOUT_S),
        attempts=int(values.get("attempts") or RES_ATTEMPTS),
        single_request="single-request" in values,
        single_request_reopen="single-request-reopen" in values,
        use_vc="use-vc" in values,
    )


@dataclass(frozen=True, slots=True)
class SearchPlan:
    """How glibc's ``res_search`` goes about one name (``resolv/res_query.c``).

    ``as_is_first``: ask ``name`` itself first (it has at least ``ndots`` dots, or ends in a
    dot); ``absolute``: it ends in a dot, so nothing else is asked. ``searched``: the name
    under each search domain, asked in order until one answers, while each is NXDOMAIN (or
    has no address); after any other failure the rest are skipped, and if the search list
    gives up without refusal (no ``ECONNREFUSED``), ``name`` is asked as is last if it was
    not asked first.
    """

    name: str
    as_is_first: bool
    absolute: bool
    searched: tuple[str, ...]


def search_plan(name: str, conf: ResolvConf) -> SearchPlan:
    """The :class:`SearchPlan` of ``name`` (case folded) under ``conf``."""
    name = name.lower()
    absolute = name.endswith(".")
    bare = name.rstrip(".")
    if absolute:
        return SearchPlan(bare, True, True, ())
    searched = tuple(f"{bare}.{domain}" for domain in conf.search)
    return SearchPlan(bare, bare.count(".") >= conf.ndots, False, searched)


def query_names(name: str, conf: ResolvConf) -> tuple[str, ...]:
    """Every fully qualified name glibc asks for ``name`` while each is NXDOMAIN, in order.

    Ends in a dot: only the name itself. At least ``ndots`` dots: the name as is, then the
    name under each search domain. Fewer: the search domains first, the name as is last.
    """
    plan = search_plan(name, conf)
    if plan.as_is_first:
        return (plan.name, *plan.searched)
    return (*plan.searched, plan.name)


@dataclass(frozen=True, slots=True)
class Addresses:
    """A records: ``ips`` in the plugin's order, from Service ``service`` (``ns/name``)."""

    ips: tuple[str, ...]
    service: str
    headless: bool


@dataclass(frozen=True, slots=True)
class Alias:
    """A CNAME to ``target`` (an ExternalName Service ``service``)."""

    target: str
    service: str


@dataclass(frozen=True, slots=True)
class NoSuchName:
    """NXDOMAIN (or no address at all: NODATA, which the resolver treats alike)."""


Answer = Addresses | Alias | NoSuchName


def service_of_name(qname: str, zone: str = CLUSTER_DOMAIN) -> str | None:
    """``ns/name`` if ``qname`` is ``<name>.<ns>.svc.<zone>``, else None."""
    suffix = f".svc.{zone}"
    if not qname.endswith(suffix):
        return None
    parts = qname[: -len(suffix)].split(".")
    if len(parts) != 2 or not all(parts):
        return None
    return f"{parts[1]}/{parts[0]}"


def in_zone(qname: str, zone: str = CLUSTER_DOMAIN) -> bool:
    """True if ``qname`` is ``zone`` or below it (CoreDNS's plugin answers it)."""
    return qname == zone or qname.endswith(f".{zone}")


def ready_addresses(slices: Iterable[EndpointSlice]) -> tuple[str, ...]:
    """Addresses of the ready endpoints of a Service's slices, first seen first.

    CoreDNS builds its endpoints from EndpointSlices and publishes an address only if its
    endpoint's ``ready`` condition is unset or true (``plugin/kubernetes/object/endpoint.go``).
    """
    out: dict[str, None] = {}
    for sl in slices:
        for ep in sl.endpoints:
            if ep.is_ready:
                for address in ep.addresses:
                    out.setdefault(address, None)
    return tuple(out)


def kubernetes_answer(
    qname: str,
    services: Mapping[str, Service],
    slices: Mapping[str, Sequence[EndpointSlice]],
    zone: str = CLUSTER_DOMAIN,
) -> Answer:
    """The A answer of CoreDNS's ``kubernetes`` plugin for ``qname`` (in ``zone``).

    ``services`` by ``ns/name`` and ``slices`` by their Service's ``ns/name``: the plugin's
    informer view. A headless Service without ready endpoints has no address (NODATA).
    """
    key = service_of_name(qname, zone)
    svc = services.get(key) if key is not None else None
    if svc is None or key is None:
        return NoSuchName()
    if svc.type is ServiceType.EXTERNAL_NAME:
        return Alias(svc.external_name.lower().rstrip("."), key)
    if svc.cluster_ip not in ("", "None"):
        return Addresses((svc.cluster_ip,), key, headless=False)
    ips = ready_addresses(slices.get(key, ()))
    return Addresses(ips, key, headless=True) if ips else NoSuchName()
