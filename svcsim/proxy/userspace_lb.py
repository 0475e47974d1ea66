"""The userspace proxier's load balancing, dial retries and costs, as pure objects.

Sources: kubernetes ``pkg/proxy/userspace/roundrobin.go`` (``LoadBalancerRR``, the v1.2x line
with affinity in seconds), ``proxysocket.go`` (``tryConnect``, ``EndpointDialTimeouts``),
``proxier.go`` @0096f4a4; kube-proxy's ``--udp-timeout`` default (pkg/proxy/apis/config).

* :class:`RoundRobinBalancer` is one Service port's ``balancerState``: the endpoints
  ``ShuffleStrings``-ed whenever the set changes (the index reset to 0; affinity records of
  removed endpoints dropped), then strict round robin per new connection. With ClientIP
  affinity a client IP's record wins while ``int(seconds since last use) < ttl``; the record is
  refreshed on use. The shuffle takes a seeded numpy Generator (Go's ``math/rand``).
* :func:`try_connect` is ``tryConnect``: up to four dials with timeouts 0.25, 0.5, 1 and 2 s,
  each to ``NextEndpoint``, affinity bypassed (``sessionAffinityReset``) after a failure. A
  refused dial costs its round trip, a silent endpoint the whole timeout; after four failures the
  client's already-accepted connection is closed. So a dead Pod costs the client latency
  (up to 3.75 s), not necessarily an error.
* The data path costs (:class:`CopyCost`): every byte crosses kernel -> kube-proxy -> kernel.
  **This is a parameter, not a measurement**: no published measurement of kube-proxy's
  userspace mode was found. The default (50 µs added per direction of a request/response, so
  100 µs per request) is an order-of-magnitude assumption for two socket reads and writes plus
  a goroutine wake-up on an unloaded node; the structural costs (kube-proxy's own dial to the
  endpoint at connection time, the retries above) are modelled exactly, separately.
* A kube-proxy crash kills every proxied connection (they are its sockets); the portal rules
  stay (kube-proxy never deletes them on exit), so new connections are redirected to a proxy
  port nobody listens on: TCP gets a reset (refused), UDP an ICMP port unreachable.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np

ENDPOINT_DIAL_TIMEOUTS_S: Final = (0.25, 0.5, 1.0, 2.0)
"""``EndpointDialTimeouts`` (proxysocket.go): one per attempt, four attempts."""
DEFAULT_AFFINITY_S: Final = 10800
"""``v1.DefaultClientIPServiceAffinitySeconds``: used when the timeout is 0."""
UDP_IDLE_TIMEOUT_S: Final = 0.25
"""``--udp-timeout`` default: an idle UDP client's backend socket is closed after it."""
CRASH_KILLS_CONNECTIONS: Final = True
"""Every proxied connection is a kube-proxy socket: a crash closes them all."""


class DialOutcome(enum.Enum):
    """What one dial to an endpoint did."""

    CONNECTED = "connected"
    REFUSED = "refused"
    """RST / ICMP unreachable: fails after ``elapsed_s``."""
    TIMEOUT = "timeout"
    """No answer: fails after the whole dial timeout."""


@dataclass(frozen=True, slots=True)
class DialResult:
    """One endpoint's answer to a dial: outcome and how long it took (ignored for TIMEOUT)."""

    outcome: DialOutcome
    elapsed_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Attempt:
    """One dial of :func:`try_connect`: endpoint, timeout given, outcome, time spent."""

    endpoint: str
    timeout_s: float
    outcome: DialOutcome
    spent_s: float


@dataclass(frozen=True, slots=True)
class ConnectResult:
    """:func:`try_connect`'s result: the endpoint reached (None: gave up) and every attempt."""

    endpoint: str | None
    attempts: tuple[Attempt, ...]
    elapsed_s: float
    reason: str = ""


@dataclass(slots=True)
class _Affinity:
    endpoint: str
    last_used_s: float


@dataclass(slots=True)
class RoundRobinBalancer:
    """One Service port's round robin with optional ClientIP affinity (``balancerState``)."""

    affinity_s: int = 0
    """ClientIP affinity timeout in seconds; 0 means no affinity."""
    endpoints: list[str] = field(default_factory=list)
    index: int = 0
    affinity: dict[str, _Affinity] = field(default_factory=dict)

    @property
    def ttl_s(self) -> int:
        """The affinity TTL as ``newServiceInternal`` stores it (0 becomes 10800)."""
        return self.affinity_s or DEFAULT_AFFINITY_S

    def set_endpoints(self, endpoints: Sequence[str], rng: np.random.Generator) -> bool:
        """``OnEndpointsUpdate``: a changed set is shuffled and the index reset; True if changed.

        An unchanged set (same members in any order) leaves order and index alone.
        """
        new = list(endpoints)
        if sorted(new) == sorted(self.endpoints) and len(new) == len(self.endpoints):
            return False
        gone = set(self.endpoints) - set(new)
        self.affinity = {ip: a for ip, a in self.affinity.items() if a.endpoint not in gone}
        order = rng.permutation(len(new))
        shuffled = [""] * len(new)
        for i, j in enumerate(order):
            shuffled[int(j)] = new[i]  # ShuffleStrings: shuffled[perm[i]] = s[i]
        self.endpoints = shuffled
        self.index = 0
        return True

    def next_endpoint(self, client_ip: str, now_s: float, affinity_reset: bool) -> str | None:
        """``NextEndpoint``: the client's sticky endpoint, else the next in turn; None if none."""
        if not self.endpoints:
            return None
        sticky = self.affinity_s > 0
        if sticky and not affinity_reset:
            record = self.affinity.get(client_ip)
            if record is not None and int(now_s - record.last_used_s) < self.ttl_s:
                record.last_used_s = now_s
                return record.endpoint
        endpoint = self.endpoints[self.index]
        self.index = (self.index + 1) % len(self.endpoints)
        if sticky:
            self.affinity[client_ip] = _Affinity(endpoint, now_s)
        return endpoint

    def cleanup(self, now_s: float) -> None:
        """``CleanupStaleStickySessions`` (run at every sync): expired records dropped."""
        self.affinity = {
            ip: a for ip, a in self.affinity.items() if int(now_s - a.last_used_s) < self.ttl_s
        }


def try_connect(
    balancer: RoundRobinBalancer,
    client_ip: str,
    now_s: float,
    dial: Callable[[str, float], DialResult],
) -> ConnectResult:
    """``tryConnect``: dial endpoints in turn with growing timeouts until one answers.

    ``dial(endpoint, timeout_s)`` says what that endpoint does; time advances by each attempt's
    cost (the whole timeout when it does not answer).
    """
    attempts: list[Attempt] = []
    elapsed = 0.0
    reset = False
    for timeout in ENDPOINT_DIAL_TIMEOUTS_S:
        endpoint = balancer.next_endpoint(client_ip, now_s + elapsed, reset)
        if endpoint is None:
            return ConnectResult(None, tuple(attempts), elapsed, "no endpoints")
        result = dial(endpoint, timeout)
        spent = timeout if result.outcome is DialOutcome.TIMEOUT else min(result.elapsed_s, timeout)
        if result.outcome is DialOutcome.CONNECTED and result.elapsed_s > timeout:
            # The answer came after the deadline: Go's DialTimeout has already given up.
            result = DialResult(DialOutcome.TIMEOUT)
        attempts.append(Attempt(endpoint, timeout, result.outcome, spent))
        elapsed += spent
        if result.outcome is DialOutcome.CONNECTED:
            return ConnectResult(endpoint, tuple(attempts), elapsed)
        reset = True
    return ConnectResult(None, tuple(attempts), elapsed, "failed to connect to an endpoint")


@dataclass(frozen=True, slots=True)
class CopyCost:
    """The kernel -> user -> kernel copy, per request (a parameter, see the module docstring)."""

    per_direction_s: float = 50e-6

    def __post_init__(self) -> None:
        if self.per_direction_s < 0:
            raise ValueError(f"negative copy cost {self.per_direction_s!r}")

    @property
    def per_request_s(self) -> float:
        """Added to each request/response exchange: one copy each way."""
        return 2 * self.per_direction_s


def after_crash(protocol: str) -> str:
    """What a new connection to a Service meets while kube-proxy is down (portals stay)."""
    if protocol.lower() == "udp":
        return "ICMP port unreachable from the node (nothing listens on the proxy port)"
    return "connection refused: TCP reset from the node (nothing listens on the proxy port)"
