"""What a REJECT's ICMP error becomes: delivered (``refused``), or rate-limited.

A REJECT answers with an ICMP port-unreachable that the node sends only if its ICMP rate
limits allow (:class:`~svcsim.netfilter.icmp_limit.IcmpRateLimit`; a client in the node's
host network namespace gets it over loopback, which skips the per-destination bucket).
:func:`icmp_delivered` is the one place that asks; :class:`IcmpLimits` applies it to every
REJECTed attempt of a chunk, in the chunk's (chronological) order, after the engine resolved
the chunk, so both engines consume the buckets and their random draws alike.

A suppressed error leaves the client waiting:

* TCP, one connection per request: the client retransmits its SYN on the schedule of its
  node's kernel (:mod:`svcsim.netfilter.tcp_syn`). Each retransmit is a new attempt at its
  own time, resolved afresh against the rules then (a REJECTed SYN left no conntrack entry):
  REJECTed again (and limited or not), dropped, or DNATed to an endpoint after a sync. The
  attempt is recorded once, from the first SYN, with its whole latency. If no retransmit is
  left before the connect timeout (or the kernel's ``ETIMEDOUT``), ``timeout`` /
  ``icmp-rate-limited`` then.
* UDP: no retransmit; ``timeout`` / ``icmp-rate-limited`` after the request timeout.
* TCP of keep-alive or name-dialling workloads: ``timeout`` / ``icmp-rate-limited`` after the
  connect timeout, as if every retransmit met the same REJECT (their retransmits are not
  re-evaluated; :meth:`IcmpLimits.notices` says so when it happened).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from svcsim.netfilter.icmp_limit import IcmpVerdict
from svcsim.netfilter.tcp_syn import SynSchedule
from svcsim.results.schema import Cause
from svcsim.sim.kernel import Kernel
from svcsim.traffic.attempts import Attempts, Client, ClientRegistry, Results
from svcsim.traffic.context import TrafficContext
from svcsim.traffic.fate import CAUSE_CODE, TIMEOUT
from svcsim.traffic.spec import WorkloadSpec

ICMP_RATE_LIMITED: Final = CAUSE_CODE[Cause.ICMP_RATE_LIMITED]


def icmp_delivered(kernel: Kernel, client: Client, t_s: float, ctx: TrafficContext) -> IcmpVerdict:
    """Whether the port-unreachable ``kernel``'s node sends ``client`` at ``t_s`` goes out.

    The node's rules REJECTed the client's packet, so the node is the client's own: a
    client in its host network namespace is reached over loopback.
    """
    rng = ctx.rng(f"kernel/{kernel.node}/icmp")
    return kernel.icmp.send(client.ip, t_s, loopback=client.origin == "host", rng=rng)


class IcmpLimits:
    """Applies the nodes' ICMP limits to the REJECTed attempts of each chunk (module doc)."""

    def __init__(
        self,
        specs: tuple[WorkloadSpec, ...],
        ctx: TrafficContext,
        clients: ClientRegistry,
        nodes: list[str],
    ) -> None:
        self.ctx = ctx
        self.clients = clients
        self.nodes = nodes
        self._retransmits = np.array(
            [s.protocol == "tcp" and not s.per_flow for s in specs], dtype=np.bool_
        )
        self._wait = np.array([s.failure_wait_s("connect") for s in specs])
        self._schedules: dict[str, SynSchedule] = {}
        self.limited_without_retransmits = 0
        """Limited errors of keep-alive or name-dialling TCP workloads (see notices)."""

    def settle(
        self,
        chunk: Attempts,
        nodes: npt.NDArray[np.int32],
        results: Results,
    ) -> npt.NDArray[np.bool_]:
        """Decide each REJECTed attempt's ICMP; change the limited ones' results in place.

        Returns the rows whose client retransmits its SYN (:meth:`retransmits`): they are
        not final.
        """
        again = np.zeros(len(chunk), dtype=np.bool_)
        for i in np.flatnonzero(results.icmp).tolist():
            client = self.clients[int(chunk.client[i])]
            kernel = self.ctx.kernels[self.nodes[int(nodes[i])]]
            t = float(chunk.t[i])
            if icmp_delivered(kernel, client, t, self.ctx).sent:
                continue
            w = int(chunk.w[i])
            if self._retransmits[w]:
                schedule = self._schedule(kernel)
                syn = int(chunk.syn[i])
                give_up = min(float(self._wait[w]), schedule.give_up_s)
                if syn < len(schedule.retransmits_s) and schedule.retransmits_s[syn] < give_up:
                    again[i] = True
                    continue
                results.latency[i] = give_up - (t - float(chunk.t0[i]))
            else:
                self.limited_without_retransmits += 1
                results.latency[i] += self._wait[w]
            results.outcome[i] = TIMEOUT
            results.cause[i] = ICMP_RATE_LIMITED
        return again

    def retransmits(
        self, resent: Attempts, kernels: list[Kernel], ids: npt.NDArray[np.int64]
    ) -> Attempts:
        """The next SYN of each attempt in ``resent`` (its client's node's ``kernels``)."""
        offsets = np.array(
            [
                self._schedule(k).retransmits_s[int(s)]
                for k, s in zip(kernels, resent.syn, strict=True)
            ]
        )
        return Attempts(
            ids,
            resent.t0 + offsets,
            resent.w,
            resent.client,
            resent.attempt,
            resent.t0,
            (resent.syn + 1).astype(np.int16),
        )

    def give_up_s(self, attempts: Attempts, kernels: list[Kernel]) -> npt.NDArray[np.float64]:
        """When each retransmitting attempt gives up, in seconds after its first SYN.

        Its connect timeout, or the kernel's ``ETIMEDOUT`` if sooner (its client's node's
        ``kernels``).
        """
        give_up = np.array([self._schedule(k).give_up_s for k in kernels])
        out: npt.NDArray[np.float64] = np.minimum(self._wait[attempts.w], give_up)
        return out

    def _schedule(self, kernel: Kernel) -> SynSchedule:
        found = self._schedules.get(kernel.node)
        if found is None:
            found = self._schedules[kernel.node] = kernel.tcp_syn.schedule()
        return found

    def notices(self) -> list[str]:
        """What the user should know about the limited errors (one line, or none)."""
        n = self.limited_without_retransmits
        if not n:
            return []
        return [
            f"{n:,} REJECTed connection(s) of keep-alive or name-dialling workloads had their "
            "ICMP error rate-limited: each was counted as waiting its connect timeout "
            "(icmp-rate-limited); their SYN retransmits were not re-evaluated against later rules"
        ]
