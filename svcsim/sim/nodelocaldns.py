"""NodeLocal DNSCache: node-local-dns on every node, its cache, and where its misses go.

Upstream (kubernetes/dns ``cmd/node-cache/app/cache_app.go`` ``initIptables``, read at
894fe1592ff5; the manifest cluster/addons/dns/nodelocaldns/nodelocaldns.yaml in
kubernetes/kubernetes, read at 028f956d2f93) runs a CoreDNS build as a hostNetwork DaemonSet.
It binds a link-local address (169.254.20.10) and, in iptables mode, the kube-dns ClusterIP
too, on a dummy interface, and adds ``NOTRACK`` rules for both in the raw table (``PREROUTING``
and ``OUTPUT``, UDP and TCP port 53). A Pod's query therefore creates no conntrack entry and
meets no kube-proxy rule: it cannot lose the A/AAAA insert race
(:mod:`svcsim.netfilter.conntrack_clash`). Its Corefile::

    cluster.local:53 {
        cache { success 9984 30; denial 9984 5 }
        forward . <kube-dns-upstream ClusterIP> { force_tcp }
    }
    .:53 { cache 30; forward . /etc/resolv.conf }

so names in the cluster domain are cached (answers up to 30 s, NXDOMAIN up to 5 s) and a
miss is forwarded to CoreDNS **over TCP** through the ``kube-dns-upstream`` Service (same
selector as kube-dns; a second Service because kube-dns's own ClusterIP is bound locally);
other names go to the node's upstream resolvers directly, cached 30 s.

This module holds the per-node caches (run state, created by the world); the client side
(when a query goes here, the forward through the node's rules) is in
:mod:`svcsim.traffic.resolver`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from svcsim.k8s.dns import Addresses, Answer

CACHE_MIN_TTL_S = 5
"""The cache plugin's default minimum TTL (success and denial)."""


@dataclass(frozen=True, slots=True)
class NodeLocalConfig:
    """node-local-dns as the scenario sets it (``cluster.dns.nodeLocalCache``)."""

    ip: str
    success_ttl_s: int
    denial_ttl_s: int

    def __post_init__(self) -> None:
        if self.success_ttl_s < 0 or self.denial_ttl_s < 0:
            raise ValueError(f"negative TTL in {self!r}")


@dataclass(frozen=True, slots=True)
class _Entry:
    answer: Answer
    stored_s: float
    ttl_s: int


@dataclass(slots=True)
class NodeLocalDns:
    """The caches of every node's node-local-dns (one per node, filled by its own queries)."""

    config: NodeLocalConfig
    _caches: dict[str, dict[str, _Entry]] = field(default_factory=dict)

    def cached(self, node: str, qname: str, t_s: float) -> tuple[Answer, int] | None:
        """The answer ``node``'s cache holds for ``qname`` at ``t_s`` and its remaining TTL."""
        entry = self._caches.get(node, {}).get(qname)
        if entry is None or t_s >= entry.stored_s + entry.ttl_s:
            return None
        return entry.answer, entry.ttl_s - math.floor(t_s - entry.stored_s)

    def store(self, node: str, qname: str, answer: Answer, ttl_s: int, t_s: float) -> int:
        """Cache ``answer`` (with TTL ``ttl_s``) on ``node``; the TTL the client gets.

        An answer with addresses is kept for its TTL capped at ``success_ttl_s``, anything
        else for ``denial_ttl_s``; at least the plugin's minimum (5 s) unless the cap is 0
        (then nothing is kept).
        """
        positive = isinstance(answer, Addresses) and bool(answer.ips)
        cap = self.config.success_ttl_s if positive else self.config.denial_ttl_s
        if cap == 0:
            return ttl_s
        kept = max(min(ttl_s, cap), min(CACHE_MIN_TTL_S, cap))
        self._caches.setdefault(node, {})[qname] = _Entry(answer, t_s, kept)
        return min(ttl_s, kept)
