"""What a workload is: who sends, to what, how often, over which connections, with which patience.

Plain frozen values (no pydantic): the scenario layer maps its validated models onto them. A
workload's requests are open-loop Poisson arrivals at a piecewise-constant rate; each attempt
goes through the source node's conntrack and rules, and a failed one may be retried after an
exponential back-off.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.special import ndtri

EXTERNAL_CLIENT_IP = "203.0.113.10"
"""Default source IP of external clients (TEST-NET-3, RFC 5737)."""

Protocol = Literal["tcp", "udp"]
FloatArray = npt.NDArray[np.float64]


# --- sources ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PodSource:
    """Clients are the Pods matching ``selector`` (labels); each sends its share of the rate.

    ``selector`` is copied into a plain dict; the value is therefore not hashable.
    """

    selector: Mapping[str, str]

    def __post_init__(self) -> None:
        if not self.selector:
            raise ValueError("a Pod source needs at least one label")
        object.__setattr__(self, "selector", dict(self.selector))


@dataclass(frozen=True, slots=True)
class ExternalSource:
    """Clients outside the cluster whose packets enter through ``node``'s uplink (origin external).

    ``via`` picks the address of a Service target: ``auto`` prefers a load-balancer IP, then the
    NodePort on ``node``'s first IP, then an external IP, then the ClusterIP.
    """

    node: str
    ip: str = EXTERNAL_CLIENT_IP
    via: Literal["auto", "loadbalancer", "nodeport", "externalip", "clusterip"] = "auto"


@dataclass(frozen=True, slots=True)
class HostSource:
    """A host-network process on ``node`` (origin host, source = the node's first IP)."""

    node: str


@dataclass(frozen=True, slots=True)
class LoadBalancerSource:
    """Clients outside the cluster reaching the target Service through its cloud load balancer.

    Each new connection enters through one of the nodes the load balancer currently finds
    healthy (:mod:`svcsim.sim.loadbalancer`), with the Service's load-balancer IP as its
    destination (origin external, source ``ip``).
    """

    ip: str = EXTERNAL_CLIENT_IP


Source = PodSource | ExternalSource | HostSource | LoadBalancerSource


# --- targets ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceTarget:
    """A Service port: ``service`` is ``namespace/name``; ``port`` a port name, number or None.

    None means the Service's only port (its first, if it has several).
    """

    service: str
    port: str | int | None = None

    def __post_init__(self) -> None:
        if self.service.count("/") != 1:
            raise ValueError(f"service must be 'namespace/name', got {self.service!r}")


@dataclass(frozen=True, slots=True)
class AddressTarget:
    """A literal destination ``ip:port/protocol`` (a ClusterIP, a node's NodePort, a Pod IP...).

    ``service_port`` (a ServicePortName text such as ``ns/web:http``) names the Service the
    address belongs to, if any, so failures can be attributed (API truth, IP reuse).
    """

    ip: str
    port: int
    protocol: Protocol = "tcp"
    service_port: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port!r} is outside 1..65535")
        if self.protocol not in ("tcp", "udp"):
            raise ValueError(f"protocol {self.protocol!r} is not tcp or udp")


@dataclass(frozen=True, slots=True)
class NameTarget:
    """A host name and port dialled through the client Pod's resolver (``dns:NAME:PORT``).

    ``label`` is the records' ``service`` label: the ServicePortName text of the Service port
    the name is expected to reach (``service_port``, of Service ``service``), else
    ``NAME:PORT/protocol``. ``hosts`` maps external host names to their addresses (what the
    upstream resolver answers for names outside the cluster).
    """

    name: str
    port: int
    protocol: Protocol = "tcp"
    label: str = ""
    service: str | None = None
    service_port: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a name target needs a name")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port!r} is outside 1..65535")
        if not self.label:
            object.__setattr__(self, "label", f"{self.name}:{self.port}/{self.protocol}")


Target = ServiceTarget | AddressTarget | NameTarget


# --- connection models ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PerRequest:
    """A new TCP connection (fresh ephemeral source port, new conntrack entry) per request."""


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """Each client Pod keeps ``connections`` TCP connections, opened lazily, used round-robin."""

    connections: int = 1

    def __post_init__(self) -> None:
        if self.connections < 1:
            raise ValueError(f"connections must be >= 1, got {self.connections!r}")


@dataclass(frozen=True, slots=True)
class Udp:
    """UDP request/response; ``fixed_source_port`` reuses one socket (one flow) per client."""

    fixed_source_port: bool = False


ConnectionModel = PerRequest | KeepAlive | Udp


# --- service time -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExponentialTime:
    """Exponentially distributed service time with mean ``mean_s``."""

    mean_s: float

    def __post_init__(self) -> None:
        if not self.mean_s > 0:
            raise ValueError(f"mean_s must be > 0, got {self.mean_s!r}")

    def quantile(self, u: FloatArray) -> FloatArray:
        """Service times for uniforms ``u`` in (0, 1) (inverse CDF)."""
        return -self.mean_s * np.log1p(-u)


@dataclass(frozen=True, slots=True)
class FixedTime:
    """Every request takes exactly ``value_s``."""

    value_s: float

    def __post_init__(self) -> None:
        if not self.value_s >= 0:
            raise ValueError(f"value_s must be >= 0, got {self.value_s!r}")

    def quantile(self, u: FloatArray) -> FloatArray:
        """Service times for uniforms ``u`` (all ``value_s``)."""
        return np.full(u.shape, self.value_s)


@dataclass(frozen=True, slots=True)
class LognormalTime:
    """``median_s x exp(sigma x N(0, 1))``."""

    median_s: float
    sigma: float

    def __post_init__(self) -> None:
        if not self.median_s > 0 or not self.sigma > 0:
            raise ValueError(
                f"median_s and sigma must be > 0, got {self.median_s!r}, {self.sigma!r}"
            )

    def quantile(self, u: FloatArray) -> FloatArray:
        """Service times for uniforms ``u`` in (0, 1) (inverse CDF)."""
        normal: FloatArray = ndtri(u)
        return self.median_s * np.exp(self.sigma * normal)


ServiceTime = ExponentialTime | FixedTime | LognormalTime


# --- the workload -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Retries:
    """Up to ``max`` retries; retry ``k`` (0-based) waits ``backoff_s x 2**k`` after a failure."""

    max: int = 0
    backoff_s: float = 0.1

    def __post_init__(self) -> None:
        if self.max < 0:
            raise ValueError(f"retries max must be >= 0, got {self.max!r}")
        if self.backoff_s < 0:
            raise ValueError(f"negative backoff {self.backoff_s!r}")

    def delay_s(self, attempt: int) -> float:
        """Wait between attempt ``attempt``'s failure and the next attempt."""
        return self.backoff_s * 2.0**attempt


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """A stream of requests from ``source`` to ``target``.

    ``rate`` is a piecewise-constant schedule ``((t_s, rate_per_s), ...)`` with increasing
    times; the rate is 0 before the first step. A failed attempt (refused, timeout, dropped,
    reset; not misrouted, which got an answer) is retried per ``retries``.
    """

    name: str
    source: Source
    target: Target
    rate: tuple[tuple[float, float], ...]
    connection: ConnectionModel = field(default_factory=PerRequest)
    connect_timeout_s: float = 1.0
    request_timeout_s: float = 5.0
    retries: Retries = field(default_factory=Retries)
    dns_cache: bool = False
    """``dns: {cache: ttl}``: the client keeps a name's answer for its TTL (glibc keeps none)."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a workload needs a name")
        steps = tuple((float(t), float(r)) for t, r in self.rate)
        object.__setattr__(self, "rate", steps)
        for i, (t_s, rate) in enumerate(steps):
            if not math.isfinite(t_s) or not math.isfinite(rate) or rate < 0:
                raise ValueError(f"{self.name}: bad rate step {(t_s, rate)!r}")
            if i and t_s <= steps[i - 1][0]:
                raise ValueError(f"{self.name}: rate step times must increase, got {t_s!r}")
        if not self.connect_timeout_s > 0 or not self.request_timeout_s > 0:
            raise ValueError(f"{self.name}: timeouts must be > 0")
        udp = isinstance(self.connection, Udp)
        if isinstance(self.target, AddressTarget) and (self.target.protocol == "udp") != udp:
            raise ValueError(f"{self.name}: a /udp address needs the udp connection model")
        if isinstance(self.target, NameTarget):
            if (self.target.protocol == "udp") != udp:
                raise ValueError(f"{self.name}: the name's protocol is not the connection's")
            if not isinstance(self.source, PodSource):
                raise ValueError(f"{self.name}: only Pods resolve names (from: pods)")
            if isinstance(self.connection, KeepAlive) or self.per_flow_udp:
                raise ValueError(f"{self.name}: a name target needs per-request or ephemeral UDP")

    @property
    def protocol(self) -> Protocol:
        """``udp`` for the UDP connection model, else ``tcp``."""
        return "udp" if isinstance(self.connection, Udp) else "tcp"

    @property
    def per_flow_udp(self) -> bool:
        """True for UDP with a fixed source port (one flow per client)."""
        c = self.connection
        return isinstance(c, Udp) and c.fixed_source_port

    @property
    def per_flow(self) -> bool:
        """True if attempts are resolved one at a time.

        The flow's identity matters (keep-alive, UDP with a fixed source port), or the
        client resolves a name first (its DNS queries are flows of their own).
        """
        named = isinstance(self.target, NameTarget)
        return named or isinstance(self.connection, KeepAlive) or self.per_flow_udp

    def rate_at(self, t_s: float) -> float:
        """Requests per second at ``t_s``."""
        rate = 0.0
        for step_s, value in self.rate:
            if step_s <= t_s:
                rate = value
        return rate

    def failure_wait_s(self, wait: Literal["connect", "request"]) -> float:
        """How long a client waits before giving up.

        ``connect``: on the connection's establishment (TCP; UDP has none, so the request
        timeout applies); ``request``: on the answer.
        """
        if wait == "connect" and self.protocol == "tcp":
            return self.connect_timeout_s
        return self.request_timeout_s
