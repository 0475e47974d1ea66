"""A new flow that a userspace-mode node's portal rules sent to kube-proxy: what it meets.

In userspace mode (kube-proxy <= v1.25) the portal rules REDIRECT/DNAT a Service's address to
the node's proxy port (:mod:`svcsim.proxy.userspace`); the kernel hands the connection to the
socket listening there (:class:`~svcsim.sim.proxy_sockets.ProxySocket`) and kube-proxy, in user
space, picks and dials an endpoint. Sources: kubernetes ``pkg/proxy/userspace/proxysocket.go``
(``ProxyLoop``, ``tryConnect``, ``getBackendConn``, ``proxyClient``) and ``roundrobin.go``.

* **Nothing listens** on the port (kube-proxy down, or a portal left pointing at a port that
  closed): TCP RST / UDP ICMP port unreachable, at once: ``refused`` / ``proxy-not-listening``.
* **TCP**: kube-proxy has already accepted the client's connection; ``tryConnect``
  (:func:`~svcsim.proxy.userspace_lb.try_connect`) dials endpoints in round-robin turn (ClientIP
  affinity in the process) with timeouts 0.25, 0.5, 1, 2 s. Each dial meets the endpoint as
  :func:`~svcsim.traffic.classify.at_destination` says (kube-proxy connects from the node, to
  the endpoint's own address: no rule is involved): an answer connects, a RST refuses at once,
  silence costs the whole timeout. Failed dials before a success add their time to the request
  (a ``proxy-dial-retry`` event names them: a dead Pod hidden by a retry); if all four fail, or
  the balancer has no endpoint, kube-proxy closes the accepted connection: ``reset`` after the
  time spent, with the last dial's cause (``no-endpoints`` if there was none to dial).
* **UDP**: a client address gets a backend socket on its first datagram (a UDP dial always
  "connects"); it is kept while datagrams flow either way within ``udpIdleTimeout`` and the
  next datagram after that picks the next endpoint. An endpoint that does not answer (dead, or
  refusing: kube-proxy's read fails, it tells the client nothing) leaves the client to its
  request timeout; an answer slower than ``udpIdleTimeout`` is lost too (the read deadline has
  closed the backend socket): ``timeout`` / ``slow-response``.
* **Conntrack**: kube-proxy's own connection is tracked too; a dial finding the node's table
  full has its SYN dropped (a silent dial, ``conntrack-full``).
* **Every request** through the process pays the kernel -> user -> kernel copy both ways
  (:class:`~svcsim.proxy.userspace_lb.CopyCost`, a documented parameter).

Time does not pass in the world during a connect: the endpoints' state at the attempt's start
holds for all of its dials. Network round trips are not modelled (as elsewhere in svcsim), so a
refused dial and a connecting one take no time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from svcsim.netfilter.packet import Outcome as NfOutcome
from svcsim.netfilter.packet import VerdictKind
from svcsim.proxy.userspace_lb import CopyCost, DialOutcome, DialResult, try_connect
from svcsim.results.schema import Cause, EventKind, Outcome
from svcsim.sim.proxy_sockets import ProxySocket, UdpBackend
from svcsim.traffic.attempts import Client
from svcsim.traffic.classify import Resolution, Wait, at_destination
from svcsim.traffic.context import TrafficContext
from svcsim.traffic.targets import Dial

NOT_LISTENING = Resolution(
    Outcome.REFUSED, Cause.PROXY_NOT_LISTENING, "", "", None, Wait.NONE, True
)
"""A connection redirected to a proxy port nobody listens on (RST / ICMP port unreachable)."""
FULL_TABLE = Resolution(Outcome.TIMEOUT, Cause.CONNTRACK_FULL, "", "", None, Wait.CONNECT, False)
"""kube-proxy's own SYN dropped: the node's conntrack table had no room for its connection."""

Room = Callable[[str, float], bool]
"""Whether ``node``'s conntrack table takes one more entry at ``t``."""


class ProxyPath:
    """kube-proxy's user-space half of the data path, for the per-flow resolution."""

    def __init__(self, ctx: TrafficContext, copy: CopyCost | None = None) -> None:
        self.ctx = ctx
        self.copy = copy if copy is not None else CopyCost()

    def local(self, node: str, ip: str) -> bool:
        """True if ``ip`` is an address of userspace-mode ``node`` (where portals redirect)."""
        kernel = self.ctx.kernels[node]
        return kernel.mode == "userspace" and (ip == "127.0.0.1" or ip in kernel.network.node_ips)

    def redirected(self, node: str, nf: NfOutcome) -> bool:
        """True if the rules' verdict sent the flow to a local port of a userspace node."""
        return (
            nf.verdict is VerdictKind.ACCEPT
            and nf.dnat is not None
            and self.local(node, nf.destination[0])
        )

    def accept(
        self,
        node: str,
        port: int,
        client: Client,
        dial: Dial,
        t: float,
        sport: int | None,
        room: Room | None = None,
    ) -> Resolution:
        """What a flow delivered to ``node``'s ``port`` meets (see the module docstring).

        ``sport``: the client's source port when it is fixed (a UDP client socket kept
        across requests); None for a fresh port. ``room(node, t)``: whether the node's
        conntrack table takes kube-proxy's own connection (None: always).
        """
        sock = self.ctx.kernels[node].sockets.lookup(dial.protocol, port)
        if sock is None:
            return NOT_LISTENING
        if sock.protocol == "udp":
            return self._udp(node, sock, client, dial, t, sport)
        return self._tcp(node, sock, client, dial, t, room)

    def answered(self, node: str, port: int, client: Client, sport: int, t_answer: float) -> None:
        """A fixed-port UDP client's answer was read at ``t_answer``: its deadline moves."""
        sock = self.ctx.kernels[node].sockets.lookup("udp", port)
        backend = sock.udp_clients.get((client.ip, sport)) if sock is not None else None
        if sock is not None and backend is not None:
            backend.expires_s = max(backend.expires_s, t_answer + sock.udp_idle_timeout_s)

    def _at(self, endpoint: str, node: str, dial: Dial) -> Resolution:
        ip, _, port = endpoint.rpartition(":")
        return at_destination(ip, int(port), True, dial, node, self.ctx)

    def _tcp(
        self,
        node: str,
        sock: ProxySocket,
        client: Client,
        dial: Dial,
        t: float,
        room: Room | None,
    ) -> Resolution:
        met: dict[str, Resolution] = {}

        def dial_endpoint(endpoint: str, timeout_s: float) -> DialResult:
            if room is not None and not room(node, t):
                # kube-proxy's SYN finds the node's conntrack table full: dropped, no answer.
                met[endpoint] = FULL_TABLE
                return DialResult(DialOutcome.TIMEOUT)
            res = met[endpoint] = self._at(endpoint, node, dial)
            if res.served:
                return DialResult(DialOutcome.CONNECTED)
            if res.outcome is Outcome.REFUSED:
                return DialResult(DialOutcome.REFUSED)
            return DialResult(DialOutcome.TIMEOUT)

        result = try_connect(sock.balancer, client.ip, t, dial_endpoint)
        if len(result.attempts) > (1 if result.endpoint is not None else 0):
            tried = ", ".join(
                f"{a.endpoint} {a.outcome.value} {a.spent_s:g}s" for a in result.attempts
            )
            self.ctx.recorder.add_event(
                t,
                EventKind.PROXY_DIAL_RETRY,
                node=node,
                object=sock.service_port.text,
                detail=f"client={client.ip} {tried} -> {result.endpoint or 'closed'}",
            )
        if result.endpoint is None:
            if not result.attempts:
                return replace(NOT_LISTENING, outcome=Outcome.RESET, cause=Cause.NO_ENDPOINTS)
            last = met[result.attempts[-1].endpoint]
            return Resolution(
                Outcome.RESET,
                last.cause,
                last.endpoint,
                last.pod,
                None,
                Wait.NONE,
                True,
                extra_s=result.elapsed_s,
            )
        return replace(met[result.endpoint], extra_s=result.elapsed_s + self.copy.per_request_s)

    def _udp(
        self,
        node: str,
        sock: ProxySocket,
        client: Client,
        dial: Dial,
        t: float,
        sport: int | None,
    ) -> Resolution:
        key = (client.ip, sport) if sport is not None else None
        backend = sock.udp_clients.get(key) if key is not None else None
        if key is not None and backend is not None and t >= backend.expires_s:
            del sock.udp_clients[key]
            backend = None  # proxyClient's read deadline passed: socket closed
        if backend is None:
            endpoint = sock.balancer.next_endpoint(client.ip, t, False)
            if endpoint is None:
                # tryConnect fails: the datagram is dropped in the proxy, nobody answers.
                return Resolution(
                    Outcome.TIMEOUT, Cause.NO_ENDPOINTS, "", "", None, Wait.CONNECT, True
                )
            backend = UdpBackend(endpoint, t)
            if key is not None:
                sock.udp_clients[key] = backend
        backend.expires_s = max(backend.expires_s, t + sock.udp_idle_timeout_s)
        res = self._at(backend.endpoint, node, dial)
        if res.served:
            return replace(
                res,
                extra_s=self.copy.per_request_s,
                answer_within_s=sock.udp_idle_timeout_s,
            )
        if key is not None and res.outcome is Outcome.REFUSED:
            del sock.udp_clients[key]  # the read failed at once (ICMP): socket closed
        return Resolution(
            Outcome.TIMEOUT, res.cause, res.endpoint, res.pod, None, Wait.CONNECT, True
        )
