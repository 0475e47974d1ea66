"""CoreDNS as the kube-dns Pods run it: an informer view, a per-Pod cache, shuffled answers.

The Pods themselves are ordinary Pods of the ``coredns`` Deployment behind the ``kube-dns``
Service: queries reach one through the client node's rules and conntrack like any UDP flow
(:mod:`svcsim.traffic.resolver`). This module is what such a Pod answers, with the default
Corefile of Kubernetes (kubeadm's ``cmd/kubeadm/app/phases/addons/dns/manifests.go``)::

    kubernetes cluster.local in-addr.arpa ip6.arpa { ... ttl 30 }
    forward . /etc/resolv.conf
    cache 30 { disable success cluster.local; disable denial cluster.local }
    loadbalance

* ``kubernetes``: records from the plugin's informer, which sees Services and EndpointSlices
  one API watch delay after the API server (:func:`svcsim.k8s.dns.kubernetes_answer`); the
  records' TTL is the Corefile's ``ttl 30`` (the plugin's own default is 5 s; Kubernetes has
  shipped 30 since kubernetes/kubernetes#76238).
* ``forward``: names outside the zone go upstream; the simulated outside world knows only the
  hosts the workloads declare (``dns.hosts``); anything else is NXDOMAIN.
* ``cache 30``: each Pod caches answers (positive and negative) for their TTL capped at 30 s
  (and at least the plugin's minimum, 5 s); a cached answer is served with its remaining TTL,
  whole seconds (``plugin/cache/item.go``: ``origTTL - seconds since stored``). Since
  kubernetes/kubernetes#128359 (kubeadm 1.32) the cache is disabled for names in the cluster
  domain, so only external names are cached; ``cache_cluster_domain`` restores the older
  Corefile (a plain ``cache 30``, still that of many clusters), where the cluster's records
  are cached too.
* ``loadbalance``: A records are shuffled in every response, cached ones included
  (``plugin/loadbalance``; it runs before ``cache`` in ``plugin.cfg``). The shuffle is drawn
  from the query's seed, so both traffic engines see the same order.

A CNAME (ExternalName Service) is followed within the answer, as CoreDNS does for in-zone
targets and through ``forward`` for external ones; a chain that ends nowhere has no address.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from svcsim.k8s.dns import (
    CLUSTER_DOMAIN,
    Addresses,
    Alias,
    Answer,
    NoSuchName,
    in_zone,
    kubernetes_answer,
    service_of_name,
)
from svcsim.k8s.objects import EndpointSlice, Service
from svcsim.sim.api import ApiServer, EventType, WatchEvent

DEFAULT_TTL_S: Final = 30
"""``ttl 30`` of the kubernetes plugin in Kubernetes' default Corefile."""
CACHE_MAX_TTL_S: Final = 30
"""``cache 30``: the longest an answer is cached (success and denial)."""
CACHE_MIN_TTL_S: Final = 5
"""The cache plugin's default minimum TTL (success and denial)."""
MAX_CNAME_HOPS: Final = 8
"""Aliases followed at most before the answer counts as no address."""


@dataclass(frozen=True, slots=True)
class CoreDnsConfig:
    """What the Corefile and the outside world say (see the module docstring)."""

    zone: str = CLUSTER_DOMAIN
    ttl_s: int = DEFAULT_TTL_S
    cache_s: int = CACHE_MAX_TTL_S
    cache_cluster_domain: bool = False
    """Cache names in ``zone`` too (a plain ``cache 30``, as before kubeadm 1.32)."""
    upstream: Mapping[str, str] = field(default_factory=dict)
    """External host name -> its IPv4 address (what ``forward`` finds)."""
    service_ip: str = ""
    """The kube-dns ClusterIP: the nameserver of every Pod's resolv.conf."""
    service_port: str = ""
    """The ServicePortName text of kube-dns's UDP port 53 (for the records' attribution)."""
    service_tcp_port: str = ""
    """The same for its TCP port 53 (``use-vc`` queries, node-local-dns's forwards); "" if
    kube-dns has none."""

    def __post_init__(self) -> None:
        if self.ttl_s < 0 or self.cache_s < 0:
            raise ValueError(f"negative TTL in {self!r}")


@dataclass(frozen=True, slots=True)
class Reply:
    """What one CoreDNS Pod answers: the final answer and its TTL in whole seconds."""

    answer: Answer
    ttl_s: int


@dataclass(frozen=True, slots=True)
class _Cached:
    """One cache entry: the unshuffled answer, when it was stored and for how long."""

    answer: Answer
    stored_s: float
    ttl_s: int


class CoreDns:
    """The answers of the cluster's CoreDNS Pods (one informer view; one cache per Pod)."""

    def __init__(
        self,
        api: ApiServer,
        watch_delay_s: float,
        config: CoreDnsConfig,
        initial_slices: Iterable[EndpointSlice] = (),
    ) -> None:
        """Start with a synced informer: the API's Services and ``initial_slices``.

        The world starts warm, before the EndpointSlice controller has written its slices:
        ``initial_slices`` are the slices the control plane holds in that state (the API's,
        plus those derived for Services that have none yet). A derived slice is dropped at the
        first watch event about its Service's slices (the controller's own then count).
        """
        self.config = config
        self._services: dict[str, Service] = {s.meta.key: s for s in api.list("Service")}
        self._slices: dict[str, dict[str, EndpointSlice]] = {}
        listed = {sl.meta.key for sl in api.list("EndpointSlice")}
        self._derived: dict[str, set[str]] = {}
        for sl in (*api.list("EndpointSlice"), *initial_slices):
            self._note_slice(sl.meta.key, sl)
            if sl.meta.key not in listed and sl.service_name is not None:
                owner = f"{sl.meta.namespace}/{sl.service_name}"
                self._derived.setdefault(owner, set()).add(sl.meta.key)
        self._caches: dict[str, dict[str, _Cached]] = {}
        api.watch(("Service", "EndpointSlice"), self._on_event, watch_delay_s)

    def _note_slice(
        self, key: str, sl: EndpointSlice | None, old: EndpointSlice | None = None
    ) -> None:
        for s in (old, sl):
            if s is not None and s.service_name is not None:
                self._slices.get(f"{s.meta.namespace}/{s.service_name}", {}).pop(key, None)
        if sl is not None and sl.service_name is not None:
            owner = f"{sl.meta.namespace}/{sl.service_name}"
            self._slices.setdefault(owner, {})[key] = sl

    def _on_event(self, event: WatchEvent) -> None:
        if event.kind == "Service":
            if event.type is EventType.DELETED:
                self._services.pop(event.key, None)
            else:
                self._services[event.key] = event.new
        else:
            for sl in (event.old, event.new):
                if sl is not None and sl.service_name is not None:
                    owner = f"{sl.meta.namespace}/{sl.service_name}"
                    for key in self._derived.pop(owner, ()):
                        self._slices.get(owner, {}).pop(key, None)
            self._note_slice(event.key, event.new, event.old)

    def _slices_of(self, qname: str) -> dict[str, tuple[EndpointSlice, ...]]:
        """The slices of the Service ``qname`` names (if any), in slice-key order."""
        key = service_of_name(qname, self.config.zone)
        held = self._slices.get(key, {}) if key is not None else {}
        return {key: tuple(held[k] for k in sorted(held))} if key is not None else {}

    def lookup(self, qname: str) -> tuple[Answer, int]:
        """The uncached answer for ``qname`` now and its TTL (the informer view, then upstream)."""
        zone = self.config.zone
        name, ttl = qname, self.config.ttl_s
        for _ in range(MAX_CNAME_HOPS):
            if in_zone(name, zone):
                found = kubernetes_answer(name, self._services, self._slices_of(name), zone)
            else:
                ip = self.config.upstream.get(name)
                found = Addresses((ip,), "", headless=False) if ip else NoSuchName()
                ttl = min(ttl, self.config.cache_s)
            if not isinstance(found, Alias):
                return found, ttl
            name = found.target
        return NoSuchName(), ttl

    def answer(self, pod: str, qname: str, t_s: float, seed: int) -> Reply:
        """What CoreDNS Pod ``pod`` answers at ``t_s`` to an A query for ``qname``.

        From its cache while the entry lives, else from :meth:`lookup` (then cached; names in
        the cluster domain only with ``cache_cluster_domain``); the A records shuffled with
        ``seed`` (``loadbalance``).
        """
        if in_zone(qname, self.config.zone) and not self.config.cache_cluster_domain:
            found, ttl = self.lookup(qname)  # disable success/denial <zone>: never cached
            return Reply(self._shuffled(found, seed), ttl)
        cache = self._caches.setdefault(pod, {})
        entry = cache.get(qname)
        if entry is None or t_s >= entry.stored_s + entry.ttl_s:
            found, ttl = self.lookup(qname)
            cached = max(min(ttl, self.config.cache_s), CACHE_MIN_TTL_S)
            entry = cache[qname] = _Cached(found, t_s, cached)
            remaining = ttl if ttl <= cached else cached
        else:
            remaining = entry.ttl_s - math.floor(t_s - entry.stored_s)
        return Reply(self._shuffled(entry.answer, seed), remaining)

    @staticmethod
    def _shuffled(answer: Answer, seed: int) -> Answer:
        """``answer`` with its A records in a random order drawn from ``seed`` (loadbalance)."""
        if not isinstance(answer, Addresses) or len(answer.ips) < 2:
            return answer
        order = np.random.default_rng(seed).permutation(len(answer.ips))
        return Addresses(tuple(answer.ips[i] for i in order), answer.service, answer.headless)
