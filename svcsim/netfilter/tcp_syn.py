"""When a connecting TCP socket retransmits its SYN, and when it gives up (``ETIMEDOUT``).

From ``net/ipv4/tcp_timer.c`` (``tcp_retransmit_timer``, ``tcp_write_timeout``) and
``include/net/tcp.h`` (``TCP_TIMEOUT_INIT`` 1 s, ``TCP_RTO_MAX`` 120 s), as of Linux 6.5 and
later (commit ccce324dabfe, "tcp: make the first N SYN RTO backoffs linear"): the first SYN's
timer is 1 s; after each timeout the SYN is sent again, and the timer doubles only once more
than ``tcp_syn_linear_timeouts`` (default 4) timeouts happened; the socket gives up at the
timeout after ``tcp_syn_retries`` (default 6) + ``tcp_syn_linear_timeouts`` retransmits. With
the defaults: retransmits at +1, +2, +3, +4, +5, +7, +11, +19, +35, +67 s, ``ETIMEDOUT`` at
+131 s. ``tcp_syn_linear_timeouts: 0`` gives older kernels' schedule (+1, +3, +7, +15, +31,
+63 s, gives up at +127 s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

TCP_TIMEOUT_INIT_S: Final = 1.0
TCP_RTO_MAX_S: Final = 120.0
DEFAULT_SYN_RETRIES: Final = 6
DEFAULT_SYN_LINEAR_TIMEOUTS: Final = 4


@dataclass(frozen=True, slots=True)
class SynSchedule:
    """A client's SYN retransmits (seconds after the first SYN) and when it gives up."""

    retransmits_s: tuple[float, ...]
    give_up_s: float


@dataclass(frozen=True, slots=True)
class TcpSynSysctls:
    """The ``net.ipv4`` sysctls of a connecting socket's SYN retransmits."""

    syn_retries: int = DEFAULT_SYN_RETRIES
    syn_linear_timeouts: int = DEFAULT_SYN_LINEAR_TIMEOUTS

    def __post_init__(self) -> None:
        if self.syn_retries < 1 or self.syn_linear_timeouts < 0:
            raise ValueError(f"bad SYN retry settings {self!r}")

    def schedule(self) -> SynSchedule:
        """The retransmit times and the give-up time (module docstring)."""
        rto, t, timeouts = TCP_TIMEOUT_INIT_S, 0.0, 0
        sends: list[float] = []
        while True:
            t += rto  # the timer expires
            timeouts += 1
            if len(sends) >= self.syn_retries + self.syn_linear_timeouts:
                return SynSchedule(tuple(sends), t)
            sends.append(t)
            if timeouts > self.syn_linear_timeouts:
                rto = min(rto * 2, TCP_RTO_MAX_S)
