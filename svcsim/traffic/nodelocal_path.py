"""A Pod's queries through NodeLocal DNSCache: the node's cache, and its forwards to CoreDNS.

With ``cluster.dns.nodeLocalCache`` the client's nameserver is node-local-dns on its own node
(:mod:`svcsim.sim.nodelocaldns`). Its queries are NOTRACKed: no conntrack entry, no
kube-proxy rule, no insert race. Per try of a name:

* a cached answer comes back at once (node-local-dns's own processing time is not modelled);
* a name outside the cluster domain goes to the node's upstream resolvers directly
  (``.:53``) and is cached;
* a miss in the cluster domain is forwarded over TCP (``force_tcp``) to CoreDNS: a new TCP
  flow from the node through the node's rules (:meth:`NodeLocalPath.forward`), answered after
  the CoreDNS Pod's service time (both queries at once, or one after the other for a
  ``single-request`` client) and cached;
* a forward that gets no answer leaves the client's try unanswered: it waits ``timeout``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from svcsim.k8s.dns import Answer, ResolvConf, in_zone
from svcsim.netfilter.packet import Outcome as NfOutcome
from svcsim.sim.coredns import CoreDns
from svcsim.sim.nodelocaldns import NodeLocalDns
from svcsim.traffic.attempts import Client
from svcsim.traffic.classify import Resolution
from svcsim.traffic.context import TrafficContext
from svcsim.traffic.draws import service_uniforms
from svcsim.traffic.targets import Dial

Forward = Callable[[int, Client, Dial, int, float], "tuple[NfOutcome, Resolution] | None"]
"""A new flow through a node's kernel (the resolver's ``NewFlow``)."""
Split = Callable[[int, int], int]


@dataclass(frozen=True, slots=True)
class LocalTry:
    """One name's end through node-local-dns (the fields of the resolver's own record)."""

    answer: Answer | None
    ttl_s: int
    timed_out: bool
    elapsed_s: float


class NodeLocalPath:
    """The client side of NodeLocal DNSCache (see the module docstring)."""

    def __init__(
        self,
        ctx: TrafficContext,
        dns: CoreDns,
        cache: NodeLocalDns,
        upstream: Dial | None,
        split: Split,
    ) -> None:
        """``upstream``: kube-dns's TCP port 53 (None if it has none); ``split`` derives seeds."""
        self.ctx = ctx
        self.dns = dns
        self.cache = cache
        self.upstream = upstream
        self.split = split

    def exchange(
        self,
        new_flow: Forward,
        w: int,
        client: Client,
        qname: str,
        conf: ResolvConf,
        seed: int,
        t: float,
        start_s: float,
    ) -> LocalTry:
        """Up to ``attempts`` tries of ``qname`` for ``client``, from ``t + start_s`` on."""
        split, cache, node = self.split, self.cache, client.node
        elapsed, timed_out = 0.0, False
        for attempt in range(conf.attempts):
            try_seed = split(seed, 2 * attempt)
            at = t + start_s + elapsed
            hit = cache.cached(node, qname, at)
            if hit is not None:
                return LocalTry(hit[0], hit[1], timed_out, elapsed)
            if not in_zone(qname, self.dns.config.zone):
                found, ttl = self.dns.lookup(qname)
                return LocalTry(found, cache.store(node, qname, found, ttl, at), timed_out, elapsed)
            res = self.forward(new_flow, w, node, try_seed, t)
            if res is not None and res.served and res.app is not None:
                pair = np.array([try_seed, split(seed, 2 * attempt + 1)], dtype=np.uint64)
                times = self.ctx.service_time_of(res.app).quantile(service_uniforms(pair))
                took = float(times.sum() if conf.sequential else times.max())
                if took <= conf.timeout_s:
                    reply = self.dns.answer(res.pod, qname, at, split(try_seed, 0))
                    ttl = cache.store(node, qname, reply.answer, reply.ttl_s, at + took)
                    return LocalTry(reply.answer, ttl, timed_out, elapsed + took)
            timed_out = True
            elapsed += conf.timeout_s
        return LocalTry(None, 0, timed_out, elapsed)

    def forward(
        self, new_flow: Forward, w: int, node: str, try_seed: int, t: float
    ) -> Resolution | None:
        """node-local-dns's ``force_tcp`` forward of a miss: a TCP flow from ``node``.

        Upstream forwards to the ``kube-dns-upstream`` Service (kube-dns's selector and
        ports); svcsim sends it through kube-dns's own TCP port 53, whose rules choose among
        the same endpoints alike. Its conntrack entry is not kept (node-local-dns reuses its
        upstream connections).
        """
        if self.upstream is None:
            return None
        ip = self.ctx.kernels[node].network.node_ips[0]
        host = Client(f"node-local-dns@{node}", ip, node, "host")
        new = new_flow(w, host, self.upstream, try_seed, t)
        return new[1] if new is not None else None
