"""The Pod network: which Pod owns each IP right now, and what a new connection to it meets.

This is the ground truth the data path consults after a node's rules chose a destination:
rules may be stale, this never is. IPs come from a per-node range (as a CNI's host-local IPAM
hands them out: the next free address after the last one given, wrapping), stay reserved while
the Pod's sandbox exists, and become free again when it is torn down — so a later Pod may get an
IP that stale rules still point at.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

CHANGE_LOG = 4096
"""How many of the latest changes :meth:`PodNetwork.changed_ips_since` can tell about."""


class BackendState(StrEnum):
    """What a connection to a Pod's IP meets."""

    STARTING = "starting"
    """Sandbox up, app not listening yet: the kernel answers with RST (refused)."""
    SERVING = "serving"
    """Listening and accepting new connections."""
    DRAINING = "draining"
    """SIGTERM received and the app stopped accepting: RST (refused)."""
    CRASHED = "crashed"
    """The app process died; the sandbox remains: RST (refused) until it restarts."""
    EXITED = "exited"
    """Containers gone, sandbox not yet torn down: RST (refused)."""
    UNREACHABLE = "unreachable"
    """Its node is down: nothing answers, not even with RST (the client times out)."""


@dataclass(slots=True)
class Backend:
    """A Pod as the network sees it. Mutable: its state changes over the Pod's life."""

    pod: str
    """``namespace/name`` of the Pod."""
    ip: str
    node: str
    ports: frozenset[tuple[str, int]]
    """``(protocol, port)`` pairs the app listens on (lower-case protocol): the Pod's declared
    containerPorts. Empty when it declares none: then the app listens on every port, since
    svcsim cannot know which one it binds (containerPort is informational in Kubernetes, and
    most Services' targetPort is right), so a Service's numeric targetPort is taken at its word."""
    app: str
    """Name of the app profile (service time, drain behaviour) the Pod runs."""
    state: BackendState = BackendState.STARTING
    since_s: float = 0.0

    def accepts(self, protocol: str, port: int) -> bool:
        """True if a new connection to ``port`` would be accepted now."""
        return self.state is BackendState.SERVING and (
            not self.ports or (protocol, port) in self.ports
        )


StateListener = Callable[[Backend, BackendState, float], None]
"""Called as ``listener(backend, old_state, now_s)`` after a state change."""


def pod_address_count(cidr: str) -> int:
    """``len(pod_addresses(cidr))``, without listing them."""
    size = ipaddress.ip_network(cidr).num_addresses
    hosts = size - 2 if size > 2 else size  # /31 and /32 have no network/broadcast address
    return max(0, hosts - 1)


def pod_addresses(cidr: str) -> list[str]:
    """The addresses a node's Pods get from ``cidr``: its hosts but the first (the gateway)."""
    # .0 is the network, .1 is conventionally the node's bridge/gateway.
    return [str(ip) for ip in list(ipaddress.ip_network(cidr).hosts())[1:]]


def usable_pod_ip(cidr: str, ip: str) -> bool:
    """True if ``ip`` is one of :func:`pod_addresses` of ``cidr``."""
    try:
        address = ipaddress.ip_address(ip)
        net = ipaddress.ip_network(cidr)
    except ValueError:
        return False
    if address.version != net.version or address not in net:
        return False
    return str(address) in pod_addresses(cidr)


class PodNetwork:
    """IP allocation per node and the current owner of every IP."""

    def __init__(self, node_cidrs: dict[str, str]) -> None:
        self._ranges: dict[str, list[str]] = {}
        self._cursor: dict[str, int] = {}
        for node, cidr in node_cidrs.items():
            self._ranges[node] = pod_addresses(cidr)
            self._cursor[node] = 0
        self._owners: dict[str, Backend] = {}
        self._held: dict[str, int] = dict.fromkeys(node_cidrs, 0)
        """Pod IPs each node's sandboxes hold now."""
        self._listeners: list[StateListener] = []
        self.version = 0
        """Counts every change (allocate, release, state), so readers can cache per version."""
        self._ip_versions: dict[str, int] = {}
        self._log: deque[tuple[int, str]] = deque(maxlen=CHANGE_LOG)
        """(version, IP) of the latest changes, oldest first (versions are consecutive)."""

    def allocate(
        self,
        node: str,
        pod: str,
        ports: frozenset[tuple[str, int]],
        app: str,
        now_s: float,
    ) -> Backend:
        """Give ``pod`` the next free IP of ``node``'s range; raises if the range is full."""
        addresses = self._ranges[node]
        start = self._cursor[node]
        for step in range(len(addresses)):
            i = (start + step) % len(addresses)
            if addresses[i] not in self._owners:
                self._cursor[node] = (i + 1) % len(addresses)
                backend = Backend(pod, addresses[i], node, ports, app, since_s=now_s)
                self._owners[backend.ip] = backend
                self._held[node] += 1
                self._changed(backend.ip)
                return backend
        raise RuntimeError(f"no free Pod IP left on node {node!r}")

    def claim(
        self,
        node: str,
        pod: str,
        ports: frozenset[tuple[str, int]],
        app: str,
        now_s: float,
        ip: str,
    ) -> Backend | None:
        """Give ``pod`` the IP it already has (a Pod from a cluster dump); None if it cannot.

        It cannot when ``ip`` is not among ``node``'s Pod addresses or is taken.
        """
        if ip in self._owners or ip not in self._ranges.get(node, ()):
            return None
        backend = Backend(pod, ip, node, ports, app, since_s=now_s)
        self._owners[ip] = backend
        self._held[node] += 1
        self._changed(ip)
        return backend

    def release(self, ip: str) -> None:
        """Tear down the sandbox: the IP stops answering and may be handed out again."""
        backend = self._owners.pop(ip, None)
        if backend is not None:
            self._held[backend.node] -= 1
            self._changed(ip)

    def held(self, node: str) -> int:
        """How many of ``node``'s Pod IPs are taken now (one per Pod sandbox)."""
        return self._held[node]

    def size(self, node: str) -> int:
        """How many Pod IPs ``node``'s range has."""
        return len(self._ranges[node])

    def _changed(self, ip: str) -> None:
        self.version += 1
        self._ip_versions[ip] = self.version
        self._log.append((self.version, ip))

    def changed_ips_since(self, version: int) -> set[str] | None:
        """The IPs changed since :attr:`version` was ``version``; None if too long ago to tell.

        Only the last :data:`CHANGE_LOG` changes are remembered.
        """
        if version >= self.version:
            return set()
        if not self._log or self._log[0][0] > version + 1:
            return None
        out: set[str] = set()
        for v, ip in reversed(self._log):
            if v <= version:
                break
            out.add(ip)
        return out

    def ip_version(self, ip: str) -> int:
        """The :attr:`version` of the last change at ``ip`` (0 if none).

        What :meth:`lookup` answers for ``ip``, and that Backend's state, stay the same while
        this does.
        """
        return self._ip_versions.get(ip, 0)

    def lookup(self, ip: str) -> Backend | None:
        """The Pod that owns ``ip`` now, or None if nobody does (packets are black-holed)."""
        return self._owners.get(ip)

    def set_state(self, backend: Backend, state: BackendState, now_s: float) -> None:
        """Change a backend's state and tell the listeners."""
        old = backend.state
        if old is state:
            return
        backend.state = state
        backend.since_s = now_s
        self._changed(backend.ip)
        for listener in self._listeners:
            listener(backend, old, now_s)

    def on_state_change(self, listener: StateListener) -> None:
        """Register a listener (the traffic engine resets connections through it)."""
        self._listeners.append(listener)

    def backends(self) -> list[Backend]:
        """Every live backend, in IP order."""
        return [self._owners[ip] for ip in sorted(self._owners, key=ipaddress.ip_address)]
