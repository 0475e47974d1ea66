"""A client Pod's resolver: glibc's lookup of a name, its queries as UDP flows to kube-dns.

A workload that dials ``dns:NAME:PORT`` resolves NAME before each request (glibc keeps no
cache; ``dns: {cache: ttl}`` keeps an answer for its TTL, as nscd or an application cache
would). The lookup follows the Pod's resolv.conf (:func:`svcsim.k8s.dns.pod_resolv_conf`):
the names of :func:`svcsim.k8s.dns.query_names`, in order, until one has an address.

Each name is one ``res_nsend``: a fresh UDP socket (a new ephemeral source port, so a new
flow) to the nameserver, the kube-dns ClusterIP, port 53. The A and AAAA queries leave that
socket together (``getaddrinfo`` with ``AF_UNSPEC``); they share one conntrack entry, so they
meet the same CoreDNS Pod, and the try ends when both answers are in (the slower of two
service times). A try is one pass of ``send_dg`` (glibc ``resolv/res_send.c``):

* answered: the name's answer (:class:`svcsim.sim.coredns.CoreDns`). NXDOMAIN (or no
  address) moves on to the next name; an address ends the lookup.
* no answer (the rules or conntrack led to a dead Pod, a dropped packet, a slow answer): the
  client waits ``timeout`` (5 s) and tries again on the same socket, so the retry follows the
  same conntrack entry while it lives (the entry of an unanswered query stays UNREPLIED).
* refused (ICMP port unreachable, e.g. kube-dns has no endpoints): glibc closes the socket at
  once and the next try opens a new one (a new flow).

After ``attempts`` tries without an answer the lookup fails (``res_search`` stops at such a
failure without trying further names): ``dns-timeout`` (or ``dns-refused`` if the last try was
refused); every name NXDOMAIN: ``dns-nxdomain``. Then the client dials the first address it
got: a ClusterIP goes through the node's rules as usual; a headless Service's Pod IP is
dialled directly (no DNAT), so the spread follows the order of CoreDNS's (shuffled) answers.

Every try and the connect meet the state that held when the request started (the engines
resolve an attempt against one state); only conntrack updates are stamped at their own time.
The draws of the tries (rules, service times, CoreDNS's shuffle) come from the attempt's seed,
split per try, so both engines draw alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np

from svcsim.k8s.dns import Addresses, Answer, ResolvConf, pod_resolv_conf, query_names
from svcsim.netfilter.conntrack_states import FlowTuple
from svcsim.netfilter.packet import Outcome as NfOutcome
from svcsim.results.schema import Cause, Outcome
from svcsim.sim.coredns import CoreDns
from svcsim.traffic.attempts import Client
from svcsim.traffic.classify import Resolution, at_destination
from svcsim.traffic.context import TrafficContext
from svcsim.traffic.draws import service_uniforms
from svcsim.traffic.spec import NameTarget, WorkloadSpec
from svcsim.traffic.targets import Dial, service_port_at

if TYPE_CHECKING:
    from svcsim.traffic.flows import EphemeralPorts

DNS_PORT: Final = 53
_MASK64: Final = (1 << 64) - 1


def split_seed(seed: int, k: int) -> int:
    """The ``k``-th seed derived from an attempt's ``seed`` (SplitMix64 of ``seed + k·γ``)."""
    z = (seed + (k + 1) * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


@dataclass(frozen=True, slots=True)
class Lookup:
    """One lookup's end: the addresses (empty if it failed), its cause and how long it took."""

    ips: tuple[str, ...]
    service: str
    headless: bool
    cause: Cause
    elapsed_s: float
    ttl_s: int = 0
    """The answer's TTL (what ``dns: {cache: ttl}`` keeps it for)."""


@dataclass(frozen=True, slots=True)
class _Query:
    """One name to ask: for workload ``w``'s ``client``, with its resolver settings."""

    w: int
    client: Client
    qname: str
    conf: ResolvConf


@dataclass(frozen=True, slots=True)
class _Try:
    """One name's end: the reply (None if unanswered), whether the last try was refused, time."""

    answer: Answer | None
    ttl_s: int
    refused: bool
    elapsed_s: float


NewFlow = Callable[[int, Client, Dial, int, float], "tuple[NfOutcome, Resolution] | None"]
"""Room, rules and classification of a new flow (``PerFlow``'s); None if conntrack dropped it."""


class Resolver:
    """Name lookups of every name-addressed workload (see the module docstring)."""

    def __init__(self, ctx: TrafficContext, specs: tuple[WorkloadSpec, ...], dns: CoreDns) -> None:
        self.ctx = ctx
        self.specs = specs
        self.dns = dns
        cfg = dns.config
        self.nameserver = Dial(
            cfg.service_ip,
            DNS_PORT,
            "udp",
            cfg.service_port,
            cfg.service_port.partition(":")[0],
            cfg.service_port,
        )
        self._cache: dict[tuple[int, int], dict[str, tuple[Lookup, float]]] = {}

    def lookup(
        self,
        new_flow: NewFlow,
        ports: EphemeralPorts,
        w: int,
        client_id: int,
        client: Client,
        seed: int,
        t: float,
    ) -> Lookup:
        """Resolve workload ``w``'s name for ``client`` at ``t`` (cached per ``dns.cache``)."""
        spec = self.specs[w]
        target = spec.target
        assert isinstance(target, NameTarget)
        cache = self._cache.setdefault((w, client_id), {}) if spec.dns_cache else None
        if cache is not None:
            hit = cache.get(target.name)
            if hit is not None and t < hit[1]:
                found = hit[0]
                return Lookup(found.ips, found.service, found.headless, Cause.NONE, 0.0)
        conf = pod_resolv_conf(client.label.partition("/")[0], self.dns.config.zone)
        elapsed, k = 0.0, 0
        # (Seeds: each name gets 2 per try, split from the attempt's seed.)
        for qname in query_names(target.name, conf):
            ended = self._exchange(
                new_flow, ports, _Query(w, client, qname, conf), seed + k, t, elapsed
            )
            k += 2 * conf.attempts
            elapsed += ended.elapsed_s
            if ended.answer is None:
                cause = Cause.DNS_REFUSED if ended.refused else Cause.DNS_TIMEOUT
                return Lookup((), "", False, cause, elapsed)
            if isinstance(ended.answer, Addresses):
                a = ended.answer
                found = Lookup(a.ips, a.service, a.headless, Cause.NONE, elapsed, ended.ttl_s)
                if cache is not None:
                    cache[target.name] = (found, t + elapsed + ended.ttl_s)
                return found
        return Lookup((), "", False, Cause.DNS_NXDOMAIN, elapsed)

    def _exchange(
        self,
        new_flow: NewFlow,
        ports: EphemeralPorts,
        query: _Query,
        seed: int,
        t: float,
        start_s: float,
    ) -> _Try:
        """One name: up to ``attempts`` tries of the A/AAAA pair from one socket.

        ``start_s``: how long the lookup had taken before this name (its tries start then).
        """
        w, client, qname, conf = query.w, query.client, query.qname, query.conf
        table = self.ctx.kernels[client.node].conntrack
        dial = self.nameserver
        original: FlowTuple | None = None
        elapsed, refused = 0.0, False
        for attempt in range(conf.attempts):
            try_seed = split_seed(seed, 2 * attempt)
            at = t + start_s + elapsed
            res: Resolution | None = None
            entry = table.lookup(original, t) if original is not None else None
            if original is not None and entry is not None:
                table.update(original, "original", at)
                ip, port = entry.dnat_destination
                res = at_destination(
                    ip, port, entry.is_dnat, dial, client.node, self.ctx, via_conntrack=True
                )
            else:
                sport = ports.allocate(table, "udp", client.ip, dial.ip, dial.port, t)
                original = FlowTuple("udp", client.ip, sport, dial.ip, dial.port)
                new = new_flow(w, client, dial, try_seed, t)
                if new is not None:
                    nf, res = new
                    if res.accepted:
                        ip, port = nf.destination
                        reply = FlowTuple("udp", ip, port, client.ip, sport)
                        entry = table.create(original, reply, t)
            if res is not None and res.served and res.app is not None:
                pair = np.array([try_seed, split_seed(seed, 2 * attempt + 1)], dtype=np.uint64)
                took = float(
                    self.ctx.service_time_of(res.app).quantile(service_uniforms(pair)).max()
                )
                if took <= conf.timeout_s:
                    if entry is not None:
                        table.update(entry.reply, "reply", at + took)
                    answer = self.dns.answer(res.pod, qname, at, split_seed(try_seed, 0))
                    return _Try(answer.answer, answer.ttl_s, False, elapsed + took)
            if res is not None and res.outcome is Outcome.REFUSED:
                refused, original = True, None  # glibc closes the socket: a new one next
                continue
            refused = False
            elapsed += conf.timeout_s
        return _Try(None, 0, refused, elapsed)

    def dial(self, w: int, found: Lookup) -> Dial:
        """What the client dials with a successful lookup's first address."""
        spec = self.specs[w]
        target = spec.target
        assert isinstance(target, NameTarget)
        ip = found.ips[0]
        service = self.ctx.service(found.service) if found.service else None
        spn = None
        if service is not None and not found.headless:
            spn = service_port_at(ip, target.port, target.protocol, [service], ())
        return Dial(ip, target.port, target.protocol, target.label, found.service or None, spn)
