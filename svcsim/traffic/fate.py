"""How long an attempt lasts, and how long its anonymous conntrack entry outlives it.

Shared by both engines (scalar for the per-flow path, arrays for the batched one) so that they
cannot drift apart.

Latency: a served attempt takes its service time; beyond the request timeout the client gives
up (``ok`` becomes ``timeout`` / ``slow-response`` at the timeout; a ``misrouted`` answer
keeps its outcome and cause). A
failure known at once (RST, ICMP) takes 0; a black hole keeps the client until its connect
timeout (TCP) or request timeout (UDP).

Conntrack lifetime of a new flow's entry (kernel timeouts, ``nf_conntrack_proto_tcp.c`` /
``_udp.c``): none unless the packet passed the rules (REJECT/DROP verdicts free the unconfirmed
entry); TCP served -> closed by FIN at the end, TIME_WAIT after it; TCP refused by RST -> killed
at once (a RST before any reply deletes the entry); TCP unanswered -> SYN_SENT, refreshed by
SYN retransmits until the client gives up; UDP -> the UDP timeout after the last packet (the
reply, when there is one).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from svcsim.netfilter.conntrack_states import ConntrackTimeouts
from svcsim.results.schema import Cause, Outcome
from svcsim.traffic.classify import Resolution, Wait
from svcsim.traffic.spec import WorkloadSpec

F64 = npt.NDArray[np.float64]
OUTCOME_CODE = {o: i for i, o in enumerate(Outcome)}
CAUSE_CODE = {c: i for i, c in enumerate(Cause)}
OK, MISROUTED, TIMEOUT, REFUSED, RESET = (
    OUTCOME_CODE[Outcome.OK], OUTCOME_CODE[Outcome.MISROUTED], OUTCOME_CODE[Outcome.TIMEOUT],
    OUTCOME_CODE[Outcome.REFUSED], OUTCOME_CODE[Outcome.RESET],
)  # fmt: skip
DROPPED = OUTCOME_CODE[Outcome.DROPPED]
SLOW_RESPONSE = CAUSE_CODE[Cause.SLOW_RESPONSE]


def wait_s(spec: WorkloadSpec, wait: Wait) -> float:
    """Seconds a failure of kind ``wait`` keeps the client of ``spec``."""
    return spec.failure_wait_s("connect") if wait is Wait.CONNECT else 0.0


def finish(res: Resolution, spec: WorkloadSpec, service_s: float) -> tuple[Outcome, Cause, float]:
    """Final outcome, cause and latency of one attempt (``service_s`` if served).

    ``res.extra_s`` (userspace mode) adds to the latency; past the request timeout the client
    gives up (``timeout`` at the timeout). A served answer later than ``res.answer_within_s``
    is lost in the proxy: ``timeout`` / ``slow-response`` at the request timeout.
    """
    timeout_s = spec.request_timeout_s
    if not res.served:
        latency = wait_s(spec, res.wait) + res.extra_s
        if res.extra_s > 0 and latency > timeout_s:
            return Outcome.TIMEOUT, res.cause, timeout_s
        return res.outcome, res.cause, latency
    if service_s > res.answer_within_s:
        return Outcome.TIMEOUT, Cause.SLOW_RESPONSE, timeout_s
    total_s = service_s + res.extra_s
    if total_s > timeout_s:
        if res.outcome is Outcome.OK:
            return Outcome.TIMEOUT, Cause.SLOW_RESPONSE, timeout_s
        return res.outcome, res.cause, timeout_s
    return res.outcome, res.cause, total_s


def finish_arrays(
    outcome: npt.NDArray[np.int8],
    cause: npt.NDArray[np.int8],
    served: npt.NDArray[np.bool_],
    service_s: F64,
    fail_wait_s: F64,
    timeout_s: F64,
) -> F64:
    """Array form of :func:`finish`: returns latencies; ``outcome``/``cause`` change in place."""
    slow = served & (service_s > timeout_s)
    turned = slow & (outcome == OK)
    outcome[turned] = TIMEOUT
    cause[turned] = SLOW_RESPONSE
    latency: F64 = np.where(served, np.minimum(service_s, timeout_s), fail_wait_s)
    return latency


def anonymous_expiry(
    protocol: str, res: Resolution, t: float, latency: float, timeouts: ConntrackTimeouts
) -> float | None:
    """When a new flow's entry expires, or None if it holds none after the attempt."""
    if not res.accepted:
        return None
    end = t + latency
    if protocol == "tcp":
        if res.served:
            return end + timeouts.tcp_time_wait_s
        if res.outcome is Outcome.REFUSED:
            return None
        return end + timeouts.tcp_syn_sent_s
    return (end if res.served else t) + timeouts.udp_s


def anonymous_expiry_arrays(
    tcp: npt.NDArray[np.bool_],
    accepted: npt.NDArray[np.bool_],
    served: npt.NDArray[np.bool_],
    refused: npt.NDArray[np.bool_],
    t: F64,
    latency: F64,
    time_wait_s: F64,
    syn_sent_s: F64,
    udp_s: F64,
) -> F64:
    """Array form of :func:`anonymous_expiry`, with per-row timeouts; NaN for none."""
    end = t + latency
    tcp_expiry = np.where(served, end + time_wait_s, np.where(refused, np.nan, end + syn_sent_s))
    udp_expiry = np.where(served, end, t) + udp_s
    out: F64 = np.where(accepted, np.where(tcp, tcp_expiry, udp_expiry), np.nan)
    return out
