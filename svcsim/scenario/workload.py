"""The ``apps`` and ``workloads`` sections: how servers behave and how clients send.

An app is keyed by its Deployment's name and describes the process inside each Pod (how
long it takes to listen, to serve a request, to react to SIGTERM). A workload is a stream
of requests from a set of clients to a Service port or a literal address.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Final, Literal

from pydantic import Discriminator, Field, StrictFloat, StrictInt, StrictStr, Tag, model_validator

from svcsim.scenario.base import (
    IPv4,
    LabelMap,
    NodeName,
    OmitNoneModel,
    SchemaModel,
    problems_at,
    yaml_alias,
)
from svcsim.scenario.cost import MAX_RATE_PER_S
from svcsim.scenario.dns import WorkloadDns
from svcsim.scenario.durations import Duration, PositiveDuration, format_duration
from svcsim.scenario.refs import (
    AddressTarget,
    NameTarget,
    ServiceTarget,
    TargetText,
    parse_target,
)

DEFAULT_SERVICE_TIME_MEAN_S: Final = 0.010
DEFAULT_APP_STARTUP_S: Final = 0.0
DEFAULT_EXIT_AFTER_SIGTERM_S: Final = 1.0
DEFAULT_CONNECT_TIMEOUT_S: Final = 1.0
DEFAULT_REQUEST_TIMEOUT_S: Final = 5.0
DEFAULT_RETRY_BACKOFF_S: Final = 0.1
_LABEL: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
EXTERNAL_CLIENT_IP: Final = "203.0.113.10"
"""Default source IP of external clients (TEST-NET-3, RFC 5737: never a real host)."""


# --- service time -------------------------------------------------------------------------


class FixedTime(SchemaModel):
    """Every request takes exactly ``value``."""

    distribution: Literal["fixed"] = "fixed"
    value_s: Duration
    """The service time."""

    @property
    def mean_s(self) -> float:
        """Mean service time."""
        return self.value_s


class ExponentialTime(SchemaModel):
    """Exponentially distributed service time (memoryless server)."""

    distribution: Literal["exponential"] = "exponential"
    mean_s: PositiveDuration = DEFAULT_SERVICE_TIME_MEAN_S
    """Mean service time."""


class LognormalTime(SchemaModel):
    """Log-normal service time: ``median x exp(sigma x N(0, 1))`` (a long right tail)."""

    distribution: Literal["lognormal"] = "lognormal"
    median_s: PositiveDuration
    """Median service time (exp of the underlying normal's mean)."""
    sigma: StrictFloat = Field(gt=0, le=10)
    """Standard deviation of the underlying normal."""

    @property
    def mean_s(self) -> float:
        """Mean service time, ``median x exp(sigma^2 / 2)``."""
        return self.median_s * math.exp(self.sigma**2 / 2)


ServiceTime = Annotated[
    Annotated[FixedTime, Tag("fixed")]
    | Annotated[ExponentialTime, Tag("exponential")]
    | Annotated[LognormalTime, Tag("lognormal")],
    Discriminator("distribution"),
]
"""``{distribution: fixed|exponential|lognormal, ...}``."""


class App(SchemaModel):
    """The process in each Pod of one Deployment."""

    startup_s: Duration = DEFAULT_APP_STARTUP_S
    """Process start -> listening (the Pod turns Ready after this plus its probes)."""
    service_time: ServiceTime = Field(default_factory=ExponentialTime)
    """Time to serve one request."""
    drain_after_sigterm_s: Duration = 0.0
    """SIGTERM -> the process stops accepting new connections."""
    exit_after_sigterm_s: Duration = DEFAULT_EXIT_AFTER_SIGTERM_S
    """SIGTERM -> the process exits (capped by terminationGracePeriodSeconds)."""

    @model_validator(mode="after")
    def _drain_before_exit(self) -> App:
        if self.drain_after_sigterm_s > self.exit_after_sigterm_s:
            raise problems_at(
                "app",
                [
                    (
                        ("drainAfterSigterm",),
                        "must be <= exitAfterSigterm "
                        f"({format_duration(self.exit_after_sigterm_s)}), "
                        f"got {format_duration(self.drain_after_sigterm_s)}",
                    )
                ],
            )
        return self


# --- workloads ----------------------------------------------------------------------------


class ExternalSource(SchemaModel):
    """Clients outside the cluster whose traffic enters through one node."""

    node: NodeName
    """The node the traffic arrives at (NodePort, LoadBalancer, externalIP)."""
    ip: IPv4 = EXTERNAL_CLIENT_IP
    """Client source IP."""


class LoadBalancerSource(SchemaModel):
    """Clients outside the cluster reaching the target Service through its cloud load balancer."""

    ip: IPv4 = EXTERNAL_CLIENT_IP
    """Client source IP."""


class Source(OmitNoneModel):
    """Where requests come from: one of ``pods``, ``external``, ``host``, ``loadBalancer``."""

    pods: LabelMap | None = None
    """Pods matching these labels (``{app: frontend}``), each sending its share."""
    external: ExternalSource | None = None
    """Clients outside the cluster, through one node."""
    host: NodeName | None = None
    """A process in the host network namespace of this node."""
    load_balancer: LoadBalancerSource | None = None
    """Clients outside the cluster, through the target Service's cloud load balancer, which
    spreads new connections over the nodes its health checks find healthy."""

    @model_validator(mode="after")
    def _exactly_one(self) -> Source:
        kinds = ("pods", "external", "host", "load_balancer")
        given = [k for k in kinds if getattr(self, k) is not None]
        if len(given) != 1:
            where: tuple[str, ...] = (yaml_alias(given[1]),) if len(given) > 1 else ()
            raise problems_at(
                "from", [(where, "set exactly one of pods, external, host or loadBalancer")]
            )
        if self.pods is not None and not self.pods:
            raise problems_at("from", [(("pods",), "must select at least one label")])
        return self

    def node(self) -> str | None:
        """The node named by ``external`` or ``host``, None for ``pods``."""
        if self.external is not None:
            return self.external.node
        return self.host


class PerRequest(SchemaModel):
    """A new TCP connection for every request (a new conntrack entry, a new NAT decision)."""

    model: Literal["per-request"] = "per-request"


class KeepAlive(SchemaModel):
    """Each client keeps ``connections`` TCP connections open and spreads requests on them."""

    model: Literal["keepalive"] = "keepalive"
    connections: StrictInt = Field(default=1, ge=1, le=10_000)
    """Connections per client."""


class Udp(SchemaModel):
    """UDP datagrams; a flow is identified by its source port."""

    model: Literal["udp"] = "udp"
    source_port: Literal["fixed", "ephemeral"] = "ephemeral"
    """``fixed``: one flow per client (one conntrack entry lives on); ``ephemeral``: a new
    source port, so a new flow, per request."""


def _connection_tag(value: Any) -> Any:
    # `model` may be left out: a mapping without it is a per-request connection.
    if isinstance(value, dict):
        return value.get("model", "per-request")
    return getattr(value, "model", None)


Connection = Annotated[
    Annotated[PerRequest, Tag("per-request")]
    | Annotated[KeepAlive, Tag("keepalive")]
    | Annotated[Udp, Tag("udp")],
    Discriminator(
        _connection_tag,
        custom_error_type="connection_model",
        custom_error_message="must be 'per-request', 'keepalive' or 'udp'",
    ),
]
"""``{model: per-request}`` | ``{model: keepalive, connections: N}`` | ``{model: udp, ...}``."""


class RateStep(SchemaModel):
    """From ``at`` on, send ``rate`` requests per second (0 pauses)."""

    at_s: Duration
    """When this rate starts (simulated time)."""
    rate_per_s: StrictFloat = Field(ge=0, le=MAX_RATE_PER_S, alias="rate")
    """Requests per second from then on."""


class Retries(SchemaModel):
    """Client retries after a failed attempt (refused, reset, timed out)."""

    max: StrictInt = Field(default=0, ge=0, le=100)
    """Extra attempts after the first."""
    backoff_s: Duration = DEFAULT_RETRY_BACKOFF_S
    """Wait before each retry."""


class Workload(OmitNoneModel):
    """A stream of requests from ``from`` to ``to``."""

    name: Annotated[StrictStr, Field(min_length=1, max_length=63, pattern=_LABEL)]
    """Workload name (RFC 1123 label), used in records."""
    source: Source = Field(alias="from")
    """``{pods: {labels}}`` | ``{external: {node: N}}`` | ``{host: N}``."""
    to: TargetText
    """``[ns/]service[:portName|port]``, ``IP:port[/tcp|udp]`` or ``dns:NAME:PORT[/tcp|udp]``
    (looked up through the client Pod's resolver and CoreDNS: docs/dns.md)."""
    rate_per_s: StrictFloat | None = Field(default=None, gt=0, le=MAX_RATE_PER_S, alias="rate")
    """Requests per second, Poisson arrivals (or use rateSchedule)."""
    rate_schedule: tuple[RateStep, ...] | None = Field(default=None, min_length=1)
    """Piecewise-constant rate: ``[{at: 0s, rate: 100}, {at: 60s, rate: 500}]``."""
    connection: Connection = Field(default_factory=PerRequest)
    """Connection model."""
    connect_timeout_s: PositiveDuration = DEFAULT_CONNECT_TIMEOUT_S
    """Give up on a connection that is not established by then."""
    request_timeout_s: PositiveDuration = DEFAULT_REQUEST_TIMEOUT_S
    """Give up on a request not answered by then."""
    retries: Retries = Field(default_factory=Retries)
    """Retry policy."""
    dns: WorkloadDns | None = None
    """How the clients resolve a ``dns:`` target (cache, external hosts)."""

    @property
    def target(self) -> ServiceTarget | AddressTarget | NameTarget:
        """``to``, parsed."""
        return parse_target(self.to)

    def rate_at(self, t_s: float) -> float:
        """Requests per second at time ``t_s`` (0 before the first schedule step)."""
        if self.rate_per_s is not None:
            return self.rate_per_s
        rate = 0.0
        for step in self.rate_schedule or ():
            if step.at_s <= t_s:
                rate = step.rate_per_s
        return rate

    @model_validator(mode="after")
    def _rate_and_protocol(self) -> Workload:
        found: list[tuple[tuple[str | int, ...], str]] = []
        if self.rate_per_s is None and self.rate_schedule is None:
            found.append((("rate",), "required: set rate (requests/s) or rateSchedule"))
        if self.rate_per_s is not None and self.rate_schedule is not None:
            found.append((("rateSchedule",), "set either rate or rateSchedule, not both"))
        steps = self.rate_schedule or ()
        for i in range(1, len(steps)):
            if steps[i].at_s <= steps[i - 1].at_s:
                found.append(
                    (
                        ("rateSchedule", i, "at"),
                        f"must be after rateSchedule[{i - 1}].at "
                        f"({format_duration(steps[i - 1].at_s)})",
                    )
                )
        target = self.target
        if isinstance(target, AddressTarget):
            udp = isinstance(self.connection, Udp)
            if udp and target.protocol != "udp":
                found.append((("to",), "connection model udp needs a /udp address"))
            if not udp and target.protocol == "udp":
                found.append((("connection",), "a /udp address needs connection model udp"))
        if isinstance(target, NameTarget):
            found.extend(self._name_problems(target))
        elif self.dns is not None:
            found.append((("dns",), "only a dns:NAME:PORT target is looked up in DNS"))
        if found:
            raise problems_at("workload", found)
        return self

    def _name_problems(self, target: NameTarget) -> list[tuple[tuple[str | int, ...], str]]:
        """What a name-addressed workload cannot do (in this version)."""
        found: list[tuple[tuple[str | int, ...], str]] = []
        udp = isinstance(self.connection, Udp)
        if udp != (target.protocol == "udp"):
            found.append((("to",), "dns:NAME:PORT/udp goes with connection model udp, and only"))
        if self.source.pods is None:
            found.append((("from",), "only Pods resolve names through cluster DNS: use from: pods"))
        if isinstance(self.connection, KeepAlive) or (
            isinstance(self.connection, Udp) and self.connection.source_port == "fixed"
        ):
            found.append(
                (
                    ("connection",),
                    "a dns: target is looked up per request: use per-request or udp with "
                    "sourcePort: ephemeral",
                )
            )
        return found
