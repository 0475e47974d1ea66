"""The kernel's rate limits on ICMP errors: a per-destination and a host-wide token bucket.

A REJECT (iptables ``-j REJECT``, nf_tables ``reject``, IPVS's ``ip_vs_leave``) answers with
an ICMP port-unreachable through ``icmp_send``, which the kernel sends only if two token
buckets allow it. Modelled exactly as in Linux from commit 8c2bd38b95f7 ("icmp: change the
order of rate limits", v6.12; read in ``net/ipv4/icmp.c`` and ``net/ipv4/inetpeer.c``):

1. ``icmpv4_global_allow``: types outside ``net.ipv4.icmp_ratemask`` (default 0x1818:
   destination-unreachable, source-quench, time-exceeded, parameter-problem) are never
   limited. Otherwise ``icmp_global_allow`` says yes while the host-wide credit is above 0;
   at 0 or below it refills, if at least ``HZ/50`` jiffies passed since the last refill, by
   ``icmp_msgs_per_sec * min(elapsed, HZ) / HZ`` (capped at ``icmp_msgs_burst``) and says
   yes; else no (the message is not sent). It does not consume.
2. ``icmpv4_xrlim_allow``: a destination reached over the loopback device (the node's own
   address: a client in the node's host network namespace) skips the per-destination bucket.
   Otherwise ``inet_peer_xrlim_allow`` on the destination's inet_peer: tokens (in jiffies)
   grow by the jiffies elapsed since the peer's last check, capped at
   ``XRLIM_BURST_FACTOR`` (6) x ``icmp_ratelimit``; a message costs ``icmp_ratelimit``
   tokens. A new peer starts with 0 tokens and its last check 60 s back (so: a burst of 6).
3. ``icmp_global_consume``: a message that goes out takes 0, 1 or 2 host-wide credits, drawn
   uniformly (``get_random_u32_below(3)``; here from the node's seeded stream); the credit may
   go negative.

Before that commit (e.g. 002bba56) the host-wide bucket was checked and consumed (the random
0-2 decrement, floored at 0) before the per-destination one; kernels after it moved the
host-wide state into each network namespace (the node's host namespace is the one sending
here, so nothing changes) and later raised the defaults of ``icmp_msgs_per_sec`` and
``icmp_msgs_burst``: set them in the scenario for such nodes.

Simplifications, each without effect at the modelled rates: jiffies are ``floor(t * HZ)``
with ``HZ`` = 1000 (``icmp_ratelimit`` is in ms, so 1 ms = 1 jiffy); inet_peer entries are
never garbage-collected (an idle peer's bucket is full after 6 x ``icmp_ratelimit`` anyway,
the same as a new peer's); the global check is never skipped for a packet that came in on
the loopback device (no simulated client sends over ``lo``); a call earlier than the bucket's
last one (a DNS lookup's later tries are asked at the lookup's start) counts no elapsed time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

import numpy as np

HZ: Final = 1000
"""Jiffies per second (``CONFIG_HZ``); 1000 makes a jiffy 1 ms."""
XRLIM_BURST_FACTOR: Final = 6
"""``inet_peer_xrlim_allow``'s bucket size in messages (``net/ipv4/inetpeer.c``)."""
NEW_PEER_AGE_JIFFIES: Final = 60 * HZ
"""A new inet_peer's ``rate_last`` is this far back (``inet_getpeer``)."""
ICMP_DEST_UNREACH: Final = 3
"""The type of a port-unreachable (code 3), the only message simulated."""
DEFAULT_RATELIMIT_MS: Final = 1000
DEFAULT_RATEMASK: Final = 0x1818
DEFAULT_MSGS_PER_SEC: Final = 1000
DEFAULT_MSGS_BURST: Final = 50
"""Kernel defaults at 8c2bd38b95f7 (``icmp_sk_init``; ``sysctl_icmp_msgs_*`` in icmp.c)."""


@dataclass(frozen=True, slots=True)
class IcmpSysctls:
    """The ``net.ipv4`` sysctls of the ICMP limits (kernel defaults)."""

    ratelimit_ms: int = DEFAULT_RATELIMIT_MS
    """``icmp_ratelimit``: tokens one message costs per destination, in ms (0: no limit)."""
    ratemask: int = DEFAULT_RATEMASK
    """``icmp_ratemask``: bit ``t`` set limits ICMP type ``t``."""
    msgs_per_sec: int = DEFAULT_MSGS_PER_SEC
    """``icmp_msgs_per_sec``: host-wide refill rate."""
    msgs_burst: int = DEFAULT_MSGS_BURST
    """``icmp_msgs_burst``: host-wide bucket size."""

    def __post_init__(self) -> None:
        for name in ("ratelimit_ms", "ratemask", "msgs_per_sec", "msgs_burst"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"negative {name} {value!r}")

    @property
    def limits_unreachable(self) -> bool:
        """True if destination-unreachable messages are rate-limited at all."""
        return bool(self.ratemask & (1 << ICMP_DEST_UNREACH))


class IcmpVerdict(StrEnum):
    """What became of one ICMP error."""

    SENT = "sent"
    PEER_LIMITED = "peer-limited"
    """Suppressed by the destination's bucket (``icmp_ratelimit``)."""
    GLOBAL_LIMITED = "global-limited"
    """Suppressed by the host-wide bucket (``icmp_msgs_per_sec`` / ``icmp_msgs_burst``)."""

    @property
    def sent(self) -> bool:
        """True if the client gets the error."""
        return self is IcmpVerdict.SENT


def jiffies(t_s: float) -> int:
    """The jiffies counter at ``t_s`` seconds of simulated time."""
    return math.floor(t_s * HZ)


@dataclass(slots=True)
class PeerBucket:
    """One destination's ``inet_peer`` rate state."""

    tokens: int
    """``rate_tokens``, in jiffies."""
    last: int
    """``rate_last``: jiffies of the last check."""

    def allow(self, now: int, timeout: int) -> bool:
        """``inet_peer_xrlim_allow`` at jiffies ``now`` with ``icmp_ratelimit`` ``timeout``."""
        # (A caller slightly out of time order, a DNS lookup's later try, adds no tokens.)
        token = min(self.tokens + max(now - self.last, 0), XRLIM_BURST_FACTOR * timeout)
        self.last = max(self.last, now)
        allowed = token >= timeout
        self.tokens = token - timeout if allowed else token
        return allowed


@dataclass(slots=True)
class IcmpRateLimit:
    """One node's ICMP limits: its per-destination buckets and its host-wide credit.

    State of the run (a node's kernel holds one); :meth:`send` must be called in time order.
    """

    sysctls: IcmpSysctls = field(default_factory=IcmpSysctls)
    peers: dict[str, PeerBucket] = field(default_factory=dict)
    credit: int = 0
    """``icmp_global.credit`` (may be negative)."""
    stamp: int | None = None
    """``icmp_global.stamp``: jiffies of the last refill; None: long ago (boot)."""

    def send(
        self, destination: str, t_s: float, *, loopback: bool, rng: np.random.Generator
    ) -> IcmpVerdict:
        """Whether a port-unreachable to ``destination`` at ``t_s`` goes out (module docstring).

        ``loopback``: the destination is the node's own address. ``rng`` draws the
        host-wide consumption of a message that is sent.
        """
        s = self.sysctls
        if not s.limits_unreachable:
            return IcmpVerdict.SENT
        now = jiffies(t_s)
        if not self._global_allow(now):
            return IcmpVerdict.GLOBAL_LIMITED
        if not loopback:
            peer = self.peers.get(destination)
            if peer is None:
                peer = self.peers[destination] = PeerBucket(0, now - NEW_PEER_AGE_JIFFIES)
            if not peer.allow(now, s.ratelimit_ms * HZ // 1000):
                return IcmpVerdict.PEER_LIMITED
        self.credit -= int(rng.integers(0, 3))
        return IcmpVerdict.SENT

    def _global_allow(self, now: int) -> bool:
        """``icmp_global_allow``: checks (and refills) the host-wide credit, never consumes."""
        if self.credit > 0:
            return True
        delta = HZ if self.stamp is None else min(max(now - self.stamp, 0), HZ)
        if delta < HZ // 50:
            return False
        incr = self.sysctls.msgs_per_sec * delta // HZ
        if not incr:
            return False
        self.stamp = now
        self.credit = min(self.credit + incr, self.sysctls.msgs_burst)
        return True

    def reset(self) -> None:
        """The node rebooted: no peers, the host-wide bucket as at boot."""
        self.peers.clear()
        self.credit = 0
        self.stamp = None
