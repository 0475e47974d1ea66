"""From where the node sent a flow to what the client saw: outcome, cause, who answered.

One function, used by the batched engine (once per destination and state, cached) and by the
per-request reference (every time), so both attribute failures alike:

* REJECT verdict -> ``refused`` / ``no-endpoints`` (ICMP port-unreachable at once, if the
  node's ICMP rate limits let it out: :mod:`svcsim.traffic.icmp` decides afterwards);
  DROP in ``KUBE-PROXY-FIREWALL`` (nftables mode: in a Service's ``firewall-…`` chain) ->
  ``timeout`` / ``source-range`` (a client outside the Service's loadBalancerSourceRanges);
  any other DROP -> ``timeout`` / ``no-endpoints`` (kube-proxy's other drops are for "no
  local endpoints").
* ACCEPT without DNAT to the node itself -> ``refused`` / ``no-service-rule`` (nothing listens);
  elsewhere -> the packet goes to the dialled address as is: nobody owns a ClusterIP, so
  ``timeout`` / ``no-service-rule``.
* A destination IP nobody owns -> ``timeout`` (a host outside the Pod network may answer).
  Owned by another Pod than the Service's slices last named for it -> ``ip-reused``:
  ``misrouted`` if that Pod accepts the port, else ``refused``. Owned by a Backend that does
  not accept -> ``refused``. Otherwise ``ok``, served by the owner's app.
* Causes of failures at an endpoint: not among the API's serving endpoints -> the node's rules
  are stale: ``proxy-down`` / ``sync-blocked`` / ``node-partitioned`` / ``stale-rule`` from
  kube-proxy's state there;
  among them -> the Pod's state: ``pod-terminating`` (draining, exited, or already gone),
  ``pod-crashed``, ``pod-not-ready`` (starting), ``port-closed`` (serving other ports). A Pod
  whose node failed answers nothing: ``timeout`` / ``node-down``, whatever the rules; nor does
  a hand-made endpoint outside the Pod network that is down: ``timeout`` / ``endpoint-down``. A
  flow
  that followed an existing conntrack entry (no rules consulted) to a dead or stale endpoint is
  ``stale-conntrack``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

from svcsim.netfilter.packet import Outcome as NfOutcome
from svcsim.netfilter.packet import VerdictKind
from svcsim.proxy.iptables_service import KUBE_PROXY_FIREWALL
from svcsim.proxy.nftables_names import TABLE_NAME as NFT_TABLE_NAME
from svcsim.proxy.nftables_names import is_firewall_chain
from svcsim.results.schema import Cause, Outcome
from svcsim.sim.network import Backend, BackendState
from svcsim.traffic.context import TrafficContext
from svcsim.traffic.targets import Dial


class Wait(IntEnum):
    """How long a failed attempt keeps the client waiting."""

    NONE = 0
    """The failure is known at once (RST, ICMP)."""
    CONNECT = 1
    """Until the connect timeout (TCP) or the request timeout (UDP)."""


@dataclass(frozen=True, slots=True)
class Resolution:
    """What one attempt met.

    ``app`` is the app that served it (``ok``/``misrouted``; its service time applies), else
    None. ``accepted`` says the packet passed the rules (ACCEPT): its conntrack entry is
    confirmed. ``backend`` is the Pod that received the packet, ``""`` if none.
    ``extra_s`` and ``answer_within_s`` exist for userspace mode
    (:mod:`svcsim.traffic.userspace_path`): time added before the answer (kube-proxy's dial
    retries, the user-space copy), and how late an answer may come before the proxy drops it.
    """

    outcome: Outcome
    cause: Cause
    endpoint: str
    pod: str
    app: str | None
    wait: Wait
    accepted: bool
    extra_s: float = 0.0
    answer_within_s: float = math.inf
    icmp: bool = False
    """The answer is an ICMP error the node sends (a REJECT): the node's ICMP rate limits
    decide whether the client gets it (:mod:`svcsim.traffic.icmp`)."""

    @property
    def served(self) -> bool:
        """True if a process answers the request (its latency is a service time)."""
        return self.app is not None


_STALE = {
    "down": Cause.PROXY_DOWN,
    "blocked": Cause.SYNC_BLOCKED,
    "cut": Cause.NODE_PARTITIONED,
    "up": Cause.STALE_RULE,
}
_BY_STATE = {
    BackendState.STARTING: Cause.POD_NOT_READY,
    BackendState.SERVING: Cause.PORT_CLOSED,  # serving, so it refuses this port only
    BackendState.DRAINING: Cause.POD_TERMINATING,
    BackendState.CRASHED: Cause.POD_CRASHED,
    BackendState.EXITED: Cause.POD_TERMINATING,
    BackendState.UNREACHABLE: Cause.NODE_DOWN,
}


def classify(outcome: NfOutcome, dial: Dial, node: str, ctx: TrafficContext) -> Resolution:
    """The result of a new flow whose first packet the node's rules decided as ``outcome``."""
    if outcome.verdict is VerdictKind.REJECT:
        return Resolution(
            Outcome.REFUSED, Cause.NO_ENDPOINTS, "", "", None, Wait.NONE, False, icmp=True
        )
    if outcome.verdict is VerdictKind.DROP:
        firewall = outcome.decided_in == ("filter", KUBE_PROXY_FIREWALL) or (
            outcome.decided_in is not None
            and outcome.decided_in[0] == NFT_TABLE_NAME
            and is_firewall_chain(outcome.decided_in[1])
        )
        cause = Cause.SOURCE_RANGE if firewall else Cause.NO_ENDPOINTS
        return Resolution(Outcome.TIMEOUT, cause, "", "", None, Wait.CONNECT, False)
    if outcome.dnat is None and outcome.local:
        return Resolution(Outcome.REFUSED, Cause.NO_SERVICE_RULE, "", "", None, Wait.NONE, True)
    ip, port = outcome.destination
    return at_destination(ip, port, outcome.dnat is not None, dial, node, ctx)


def classify_inputs(outcome: NfOutcome, dial: Dial, ctx: TrafficContext) -> tuple[object, ...]:
    """Everything :func:`classify` reads about ``outcome`` besides kube-proxy's state.

    Two outcomes of the same dial, with equal inputs and kube-proxy in the same state on their
    nodes, classify alike: so a classification can be kept across world changes while its
    inputs stay the same. The verdict, destination and DNAT are in ``outcome`` itself; the rest
    is the world's answers about the destination, as :func:`at_destination` reads them.
    """
    if outcome.verdict is not VerdictKind.ACCEPT or (outcome.dnat is None and outcome.local):
        return ()
    ip, port = outcome.destination
    dnat = outcome.dnat is not None
    in_api = None
    if dnat and dial.service_port is not None:
        in_api = f"{ip}:{port}" in ctx.serving_endpoints(dial.service_port)
    owner = ctx.network.lookup(ip)
    if owner is None:
        app = ctx.outside_host(ip)
        return (in_api, app, None if app is None else ctx.service_time_of(app))
    expected = ctx.endpoint_owner(dial.service, ip) if dnat and dial.service else None
    return (
        in_api,
        owner.pod,
        owner.app,
        ctx.service_time_of(owner.app),
        owner.state,
        owner.accepts(dial.protocol, port),
        expected,
    )


def classify_deps(outcome: NfOutcome, dial: Dial, ctx: TrafficContext) -> tuple[int, ...]:
    """A cheap key that stays the same while :func:`classify_inputs` must.

    The inputs are the world's answers about the destination: the dialled Service's slices
    (serving endpoints, endpoint owner: :meth:`TrafficContext.slices_version`) and the Pod
    network at the destination IP (:meth:`PodNetwork.ip_version`); service times and outside
    hosts are fixed for a run. When the key changes the inputs may still be equal.
    """
    if outcome.verdict is not VerdictKind.ACCEPT or (outcome.dnat is None and outcome.local):
        return ()
    ip = outcome.destination[0]
    service = ctx.slices_version(dial.service) if dial.service is not None else -1
    return (service, ctx.network.ip_version(ip), ctx.outside_version)


def at_destination(
    ip: str,
    port: int,
    dnat: bool,
    dial: Dial,
    node: str,
    ctx: TrafficContext,
    *,
    via_conntrack: bool = False,
) -> Resolution:
    """The result of a flow delivered to ``ip:port`` (``dnat``: rewritten by a DNAT rule)."""
    endpoint = f"{ip}:{port}" if dnat else ""
    in_api: bool | None = None
    if dnat and dial.service_port is not None:
        in_api = endpoint in ctx.serving_endpoints(dial.service_port)

    def stale() -> Cause:
        return Cause.STALE_CONNTRACK if via_conntrack else _STALE[ctx.proxy_state(node)]

    owner = ctx.network.lookup(ip)
    if owner is None:
        app = ctx.outside_host(ip)
        if app is not None:
            return Resolution(Outcome.OK, Cause.NONE, endpoint, "", app, Wait.NONE, True)
        if ctx.outside_endpoint_down(ip) and not via_conntrack:
            cause = Cause.ENDPOINT_DOWN
        elif not dnat:
            cause = Cause.STALE_CONNTRACK if via_conntrack else Cause.NO_SERVICE_RULE
        elif in_api:
            cause = Cause.STALE_CONNTRACK if via_conntrack else Cause.POD_TERMINATING
        else:
            cause = stale()
        return Resolution(Outcome.TIMEOUT, cause, endpoint, "", None, Wait.CONNECT, True)
    if owner.state is BackendState.UNREACHABLE:
        pod = owner.pod
        return Resolution(Outcome.TIMEOUT, Cause.NODE_DOWN, endpoint, pod, None, Wait.CONNECT, True)
    accepts = owner.accepts(dial.protocol, port)
    expected = ctx.endpoint_owner(dial.service, ip) if dnat and dial.service else None
    if expected is not None and owner.pod != expected:
        if accepts:
            return Resolution(
                Outcome.MISROUTED, Cause.IP_REUSED, endpoint, owner.pod, owner.app, Wait.NONE, True
            )
        return Resolution(
            Outcome.REFUSED, Cause.IP_REUSED, endpoint, owner.pod, None, Wait.NONE, True
        )
    if accepts:
        return Resolution(Outcome.OK, Cause.NONE, endpoint, owner.pod, owner.app, Wait.NONE, True)
    cause = stale() if in_api is False else _BY_STATE[owner.state]
    return Resolution(Outcome.REFUSED, cause, endpoint, owner.pod, None, Wait.NONE, True)


def on_connection(backend_ip: str, pod: str, ctx: TrafficContext) -> Backend | None:
    """The Backend still answering an established connection to ``backend_ip``, or None.

    A connection stays with the Pod it was opened to (misrouted ones too): if that Pod no
    longer owns the IP or no longer serves, the connection is broken.
    """
    owner = ctx.network.lookup(backend_ip)
    if owner is None or owner.pod != pod or owner.state is not BackendState.SERVING:
        return None
    return owner
