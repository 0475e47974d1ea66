"""A client Pod's resolver: glibc's lookup of a name, its queries as UDP flows to kube-dns.

A workload that dials ``dns:NAME:PORT`` resolves NAME before each request (glibc keeps no
cache; ``dns: {cache: ttl}`` keeps an answer for its TTL, as nscd or an application cache
would). The lookup follows the Pod's resolv.conf (:func:`svcsim.k8s.dns.pod_resolv_conf`) and
glibc's ``__res_context_search`` (``resolv/res_query.c``, :func:`svcsim.k8s.dns.search_plan`):

* a name with at least ``ndots`` dots, or a final dot, is asked as is first (a final dot: only
  that); then the name under each search domain, while each is NXDOMAIN (or has no address);
* an unanswered name stops the search list, unless every try was refused (``ECONNREFUSED``:
  "no server present, give up": the lookup ends there); the name as is is then still asked,
  if it was not asked first;
* a failed lookup's cause is the as-is query's if it was asked first, else the last query's.

Each name is one ``res_nsend``: a fresh UDP socket (a new ephemeral source port, so a new
flow) to the nameserver, the kube-dns ClusterIP, port 53. The A and AAAA queries leave that
socket together (``getaddrinfo`` with ``AF_UNSPEC``, ``sendmmsg``); they share one conntrack
entry, so they meet the same CoreDNS Pod, and the try ends when both answers are in (the
slower of two service times). A try is one ``send_dg`` (``resolv/res_send.c``):

* answered: the name's answer (:class:`svcsim.sim.coredns.CoreDns`);
* no answer (the rules or conntrack led to a dead Pod, a dropped packet, a slow answer): the
  client waits ``timeout`` (5 s: ``retrans << ns`` for the first nameserver) and tries again
  on the same socket, so the retry follows the same conntrack entry while it lives (the entry
  of an unanswered query stays UNREPLIED);
* refused (ICMP port unreachable, e.g. kube-dns has no endpoints): ``recvfrom`` fails, glibc
  closes the socket at once and the next try opens a new one (a new flow); unless the node
  rate-limited that ICMP error (:func:`svcsim.traffic.icmp.icmp_delivered`): no answer then.

After ``attempts`` tries a name is unanswered. A failed lookup is ``dns-timeout`` (some try
of its deciding name timed out), ``dns-refused`` (every try refused) or ``dns-nxdomain``.
Then the client dials the first address it got: a ClusterIP goes through the node's rules
as usual; a headless Service's Pod IP is dialled directly (no DNAT), so the spread follows
the order of CoreDNS's (shuffled) answers.

The Pod's own ``dnsConfig`` options (:mod:`svcsim.k8s.pod_dns`) change this: ``ndots``,
``timeout``, ``attempts``; ``single-request``/``single-request-reopen`` send A, then AAAA (the
try takes both answers in turn); ``use-vc`` sends them over TCP, a connection per try. A new
pair sent together may lose one query to the conntrack insert race
(:mod:`svcsim.traffic.dns_race`): the try then ends ``timeout`` plus both answers in turn
later, with a ``dns-retry`` event. With NodeLocal DNSCache the queries go to the node's cache
instead (:mod:`svcsim.traffic.nodelocal_path`).

Every try and the connect meet the state that held when the request started (the engines
resolve an attempt against one state); only conntrack updates are stamped at their own time.
The draws of the tries (rules, service times, CoreDNS's shuffle) come from the attempt's seed,
split per try, so both engines draw alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

import numpy as np

from svcsim.k8s.dns import Addresses, Answer, ResolvConf, pod_resolv_conf, search_plan
from svcsim.k8s.objects import Pod, PodDns
from svcsim.netfilter.conntrack_states import FlowTuple
from svcsim.netfilter.packet import Outcome as NfOutcome
from svcsim.results.schema import Cause, EventKind, Outcome
from svcsim.sim.coredns import CoreDns
from svcsim.traffic.attempts import Client
from svcsim.traffic.classify import Resolution, at_destination
from svcsim.traffic.context import TrafficContext
from svcsim.traffic.dns_race import Clash, draw_clash, resend_seeds
from svcsim.traffic.draws import service_uniforms
from svcsim.traffic.icmp import icmp_delivered
from svcsim.traffic.nodelocal_path import NodeLocalPath
from svcsim.traffic.spec import NameTarget, WorkloadSpec
from svcsim.traffic.targets import Dial, service_port_at

if TYPE_CHECKING:
    from svcsim.traffic.flows import EphemeralPorts

DNS_PORT: Final = 53
_MASK64: Final = (1 << 64) - 1


def _answered(ended: _Try) -> bool:
    """True if the name got an address (the lookup ends there)."""
    return isinstance(ended.answer, Addresses) and bool(ended.answer.ips)


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
    """One name's end: the reply (None if unanswered) and its TTL, and how long it took.

    ``timed_out``: some try waited out its timeout (glibc's ``gotsomewhere``); an unanswered
    name whose every try was refused is ``ECONNREFUSED``. ``t_s``: when the lookup started.
    """

    answer: Answer | None
    ttl_s: int
    timed_out: bool
    elapsed_s: float
    t_s: float


NewFlow = Callable[[int, Client, Dial, int, float], "tuple[NfOutcome, Resolution] | None"]
"""Room, rules and classification of a new flow (``PerFlow``'s); None if conntrack dropped it."""


def _nameserver(ip: str, protocol: Literal["udp", "tcp"], service_port: str) -> Dial:
    """The dial of kube-dns's port ``service_port`` (``ns/name:port``) at ``ip``:53."""
    return Dial(ip, DNS_PORT, protocol, service_port, service_port.partition(":")[0], service_port)


class Resolver:
    """Name lookups of every name-addressed workload (see the module docstring)."""

    def __init__(self, ctx: TrafficContext, specs: tuple[WorkloadSpec, ...], dns: CoreDns) -> None:
        self.ctx = ctx
        self.specs = specs
        self.dns = dns
        cfg = dns.config
        self.nameserver = _nameserver(cfg.service_ip, "udp", cfg.service_port)
        self.nameserver_tcp = (
            _nameserver(cfg.service_ip, "tcp", cfg.service_tcp_port)
            if cfg.service_tcp_port
            else None
        )
        self.race = ctx.dns_race
        cache = ctx.nodelocaldns
        self.node_local = (
            NodeLocalPath(ctx, dns, cache, self.nameserver_tcp, split_seed)
            if cache is not None
            else None
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
        if spec.dns_cache:
            hit = self._cache.get((w, client_id), {}).get(target.name)
            if hit is not None and t < hit[1]:
                found = hit[0]
                return Lookup(found.ips, found.service, found.headless, Cause.NONE, 0.0)
        conf = pod_resolv_conf(
            client.label.partition("/")[0], self.dns.config.zone, self._pod_dns(client)
        )
        plan = search_plan(target.name, conf)
        asked: list[_Try] = []

        def ask(qname: str) -> _Try:
            # Each name gets 2 seeds per try, split from the attempt's seed.
            base = seed + 2 * conf.attempts * len(asked)
            before_s = sum(a.elapsed_s for a in asked)
            ended = self._exchange(
                new_flow, ports, _Query(w, client, qname, conf), base, t, before_s
            )
            asked.append(ended)
            return ended

        # __res_context_search, step by step.
        saved: _Try | None = None
        ended: _Try | None = None
        if plan.as_is_first:
            ended = ask(plan.name)
            if _answered(ended) or plan.absolute:
                return self._end(w, client_id, asked, ended)
            saved = ended
        for qname in plan.searched:
            ended = ask(qname)
            if _answered(ended):
                return self._end(w, client_id, asked, ended)
            if ended.answer is None and not ended.timed_out:
                return self._end(w, client_id, asked, ended)  # "no server present, give up"
            if ended.answer is None:
                break  # any other failure: stop searching (the name as is is still tried)
        if saved is None:
            ended = ask(plan.name)
            if _answered(ended):
                return self._end(w, client_id, asked, ended)
        assert ended is not None
        return self._end(w, client_id, asked, saved or ended)

    def _end(self, w: int, client_id: int, asked: list[_Try], decisive: _Try) -> Lookup:
        """The lookup's end: ``decisive``'s answer or failure, after every name ``asked``.

        A failure's cause is the as-is query's when it was asked first (glibc's
        ``saved_herrno``), else the last query's.
        """
        elapsed = sum(a.elapsed_s for a in asked)
        answer = decisive.answer
        if isinstance(answer, Addresses) and answer.ips:
            found = Lookup(
                answer.ips, answer.service, answer.headless, Cause.NONE, elapsed, decisive.ttl_s
            )
            spec = self.specs[w]
            if spec.dns_cache:
                assert isinstance(spec.target, NameTarget)
                expiry = asked[0].t_s + elapsed + decisive.ttl_s
                self._cache.setdefault((w, client_id), {})[spec.target.name] = (found, expiry)
            return found
        if answer is not None:
            cause = Cause.DNS_NXDOMAIN
        else:
            cause = Cause.DNS_TIMEOUT if decisive.timed_out else Cause.DNS_REFUSED
        return Lookup((), "", False, cause, elapsed)

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
        With NodeLocal DNSCache the pair goes to the node's cache instead
        (:class:`~svcsim.traffic.nodelocal_path.NodeLocalPath`); with ``use-vc`` each try is a
        TCP connection to port 53.
        """
        if self.node_local is not None:
            local = self.node_local.exchange(
                new_flow, query.w, query.client, query.qname, query.conf, seed, t, start_s
            )
            return _Try(local.answer, local.ttl_s, local.timed_out, local.elapsed_s, t)
        w, client, qname, conf = query.w, query.client, query.qname, query.conf
        table = self.ctx.kernels[client.node].conntrack
        tcp = conf.use_vc and self.nameserver_tcp is not None
        dial = self.nameserver_tcp if tcp and self.nameserver_tcp is not None else self.nameserver
        original: FlowTuple | None = None
        elapsed, timed_out = 0.0, False
        for attempt in range(conf.attempts):
            try_seed = split_seed(seed, 2 * attempt)
            at = t + start_s + elapsed
            res: Resolution | None = None
            clash: Clash | None = None
            entry = table.lookup(original, t) if original is not None else None
            if original is not None and entry is not None:
                table.update(original, "original", at)
                ip, port = entry.dnat_destination
                res = at_destination(
                    ip, port, entry.is_dnat, dial, client.node, self.ctx, via_conntrack=True
                )
            else:
                sport = ports.allocate(table, dial.protocol, client.ip, dial.ip, dial.port, t)
                original = FlowTuple(dial.protocol, client.ip, sport, dial.ip, dial.port)
                new = new_flow(w, client, dial, try_seed, t)
                if new is not None:
                    nf, res = new
                    if res.accepted:
                        ip, port = nf.destination
                        reply = FlowTuple(dial.protocol, ip, port, client.ip, sport)
                        entry = table.create(original, reply, t)
                        if not tcp:
                            winner = f"{ip}:{port}"
                            clash = self._clash(new_flow, w, client, conf, winner, try_seed, t)
            if res is not None and res.served and res.app is not None:
                pair = np.array([try_seed, split_seed(seed, 2 * attempt + 1)], dtype=np.uint64)
                times = self.ctx.service_time_of(res.app).quantile(service_uniforms(pair))
                # Both queries at once (UDP sendmmsg, TCP writev), or one after the other.
                took = float(times.sum() if conf.sequential else times.max())
                answered = took <= conf.timeout_s
                if answered and clash is not None:
                    # One answer in, the other lost: wait it out, then both again in turn.
                    again = self._resend(query, res.app, clash, try_seed, at, conf.timeout_s)
                    answered = again <= conf.timeout_s
                    elapsed += conf.timeout_s
                    at += conf.timeout_s
                    took = again
                if answered:
                    if entry is not None and not tcp:
                        # A TCP query's entry is left as created: SYN_SENT's 120 s is about
                        # the TIME_WAIT the closed connection would keep.
                        table.update(entry.reply, "reply", at + took)
                    answer = self.dns.answer(res.pod, qname, at, split_seed(try_seed, 0))
                    return _Try(answer.answer, answer.ttl_s, timed_out, elapsed + took, t)
            if res is not None and res.outcome is Outcome.REFUSED:
                # A REJECT's ICMP error may be rate-limited (docs/icmp.md): then no answer.
                kernel = self.ctx.kernels[client.node]
                if not res.icmp or icmp_delivered(kernel, client, at, self.ctx).sent:
                    original = None  # ECONNREFUSED: glibc closes the socket, the next reopens
                    continue
            timed_out = True
            elapsed += conf.timeout_s
            if tcp:
                original = None  # send_vc: a connection per try
        return _Try(None, 0, timed_out, elapsed, t)

    def _clash(
        self,
        new_flow: NewFlow,
        w: int,
        client: Client,
        conf: ResolvConf,
        winner: str,
        try_seed: int,
        t: float,
    ) -> Clash | None:
        """The clash that dropped a query of this new pair, if any (:mod:`.dns_race`)."""

        def loser_dnat(seed: int) -> str | None:
            other = new_flow(w, client, self.nameserver, seed, t)
            if other is None or not other[1].accepted:
                return None
            ip, port = other[0].destination
            return f"{ip}:{port}"

        mode = self.ctx.kernels[client.node].mode
        return draw_clash(
            self.race, conf, client.node, mode, winner, try_seed, split_seed, loser_dnat
        )

    def _resend(
        self, query: _Query, app: str, clash: Clash, try_seed: int, at: float, timeout_s: float
    ) -> float:
        """How long the queries sent again after a lost one take (after the timeout).

        ``send_dg`` waits ``timeout`` for the missing answer, switches to single-request
        mode and sends both queries again, one after the other, on the same socket (the
        winner's conntrack entry, so the same CoreDNS Pod). Records a ``dns-retry`` event.
        """
        seeds = np.array(resend_seeds(try_seed, split_seed), dtype=np.uint64)
        again = float(self.ctx.service_time_of(app).quantile(service_uniforms(seeds)).sum())
        client = query.client
        self.ctx.recorder.add_event(
            at + timeout_s,
            EventKind.DNS_RETRY,
            node=client.node,
            object=f"pod/{client.label}",
            detail=(
                f"client={client.ip} name={query.qname} {clash.lost} query lost in the "
                f"conntrack insert race ({clash.why()}); retried after {timeout_s:g} s, "
                "one query at a time"
            ),
        )
        return again

    def _pod_dns(self, client: Client) -> PodDns | None:
        """The client Pod's ``dnsPolicy``/``dnsConfig`` as the API holds it (None if unset)."""
        api = getattr(self.ctx, "api", None)
        pod: Pod | None = api.get("Pod", client.label) if api is not None else None
        return pod.dns if pod is not None else None

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
