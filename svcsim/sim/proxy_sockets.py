"""What listens on a node's ports: the userspace proxier's proxy sockets, as the kernel holds them.

A listening socket is kernel state owned by a process. In userspace mode the only listeners the
simulation needs are kube-proxy's proxy sockets (kubernetes ``pkg/proxy/userspace/proxier.go``
@0096f4a4 ``addServiceOnPortInternal``, ``proxysocket.go`` ``newProxySocket``): one per Service
port, on the port the portal rules redirect to. A connection redirected to a port with no
listener is refused by the kernel (TCP RST; UDP ICMP port unreachable).

When the owning process exits (crash, restart, node failure) the kernel closes all of its
sockets at once, the accepted connections included; :meth:`SocketTable.process_exited` tells
whoever follows those connections (the traffic path), so they can be reset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from svcsim.proxy.names import ServicePortName
from svcsim.proxy.userspace_lb import RoundRobinBalancer


@dataclass(slots=True)
class UdpBackend:
    """One UDP client's backend socket in the proxy (``activeClients``): endpoint and deadline.

    ``proxyClient`` reads from the backend with a deadline of ``--udp-timeout`` after the last
    datagram either way; once it passes, the socket is closed and the client forgotten.
    """

    endpoint: str
    expires_s: float


@dataclass(slots=True, eq=False)
class ProxySocket:
    """One proxy socket: the Service port it serves, its protocol and port, its balancer.

    ``balancer`` is the process's ``balancerState`` for the Service port (it outlives the
    socket when the port is re-created: ``LoadBalancerRR`` keys it by Service port).
    ``udp_clients`` are the UDP backends by client ``(ip, port)``; they die with the socket.
    """

    service_port: ServicePortName
    protocol: str
    """``tcp`` or ``udp``."""
    port: int
    balancer: RoundRobinBalancer
    udp_idle_timeout_s: float
    udp_clients: dict[tuple[str, int], UdpBackend] = field(default_factory=dict)


SocketsClosed = Callable[[float], None]
"""Told ``now_s`` when the owning process exited and its sockets closed."""


class SocketTable:
    """The node's listening proxy sockets by ``(protocol, port)``, and who hears of an exit."""

    def __init__(self) -> None:
        self.listening: dict[tuple[str, int], ProxySocket] = {}
        self._listeners: list[SocketsClosed] = []

    def listen(self, sock: ProxySocket) -> None:
        """Bind ``sock`` (the port must be free: the allocator's job)."""
        key = (sock.protocol, sock.port)
        if key in self.listening:
            raise ValueError(f"port {sock.protocol}/{sock.port} is already in use")
        self.listening[key] = sock

    def close(self, sock: ProxySocket) -> None:
        """``Close()``: no new connections; established TCP ones are left as they are."""
        if self.listening.get((sock.protocol, sock.port)) is sock:
            del self.listening[(sock.protocol, sock.port)]

    def lookup(self, protocol: str, port: int) -> ProxySocket | None:
        """The socket listening on ``protocol``/``port`` now, or None (refused)."""
        return self.listening.get((protocol, port))

    def on_process_exit(self, listener: SocketsClosed) -> None:
        """Register ``listener`` for :meth:`process_exited`."""
        self._listeners.append(listener)

    def process_exited(self, now_s: float) -> None:
        """The owning process exited: every socket closes, every connection through it dies."""
        self.listening.clear()
        for listener in self._listeners:
            listener(now_s)
