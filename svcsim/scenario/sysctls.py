"""The ``cluster.sysctls`` section: kernel settings every node shares (docs/scenario.md).

Keys are the sysctl names as ``sysctl -a`` prints them: the ICMP error rate limits
(:mod:`svcsim.netfilter.icmp_limit`) and a connecting socket's SYN retransmits
(:mod:`svcsim.netfilter.tcp_syn`); defaults are the kernel's.
"""

from __future__ import annotations

from typing import Final

from pydantic import Field, StrictInt

from svcsim.netfilter.icmp_limit import (
    DEFAULT_MSGS_BURST,
    DEFAULT_MSGS_PER_SEC,
    DEFAULT_RATELIMIT_MS,
    DEFAULT_RATEMASK,
    IcmpSysctls,
)
from svcsim.netfilter.tcp_syn import (
    DEFAULT_SYN_LINEAR_TIMEOUTS,
    DEFAULT_SYN_RETRIES,
    TcpSynSysctls,
)
from svcsim.scenario.base import SchemaModel

INT_MAX: Final = 2**31 - 1
"""The sysctls are C ``int``s (``proc_dointvec*``)."""


class NodeSysctls(SchemaModel):
    """Kernel sysctls of every node (the ICMP error rate limits)."""

    icmp_ratelimit: StrictInt = Field(
        default=DEFAULT_RATELIMIT_MS, ge=0, le=INT_MAX, alias="net.ipv4.icmp_ratelimit"
    )
    """Milliseconds of tokens one ICMP error costs per destination (burst: 6 of them); 0
    turns the per-destination limit off."""
    icmp_ratemask: StrictInt = Field(
        default=DEFAULT_RATEMASK, ge=0, le=INT_MAX, alias="net.ipv4.icmp_ratemask"
    )
    """Bit ``t`` set: ICMP type ``t`` is rate-limited (default 6168 = 0x1818: types 3, 4, 11,
    12; without bit 3 a REJECT's port-unreachable is never limited)."""
    icmp_msgs_per_sec: StrictInt = Field(
        default=DEFAULT_MSGS_PER_SEC, ge=0, le=INT_MAX, alias="net.ipv4.icmp_msgs_per_sec"
    )
    """Host-wide refill rate of ICMP errors per second."""
    icmp_msgs_burst: StrictInt = Field(
        default=DEFAULT_MSGS_BURST, ge=0, le=INT_MAX, alias="net.ipv4.icmp_msgs_burst"
    )
    """Host-wide bucket size."""
    tcp_syn_retries: StrictInt = Field(
        default=DEFAULT_SYN_RETRIES, ge=1, le=127, alias="net.ipv4.tcp_syn_retries"
    )
    """SYN retransmits of a connecting socket (after the linear ones)."""
    tcp_syn_linear_timeouts: StrictInt = Field(
        default=DEFAULT_SYN_LINEAR_TIMEOUTS, ge=0, le=127, alias="net.ipv4.tcp_syn_linear_timeouts"
    )
    """SYN retransmits at 1 s before the timer doubles (Linux 6.5+; 0: the older schedule)."""

    def icmp(self) -> IcmpSysctls:
        """The kernel's view of these settings."""
        return IcmpSysctls(
            self.icmp_ratelimit, self.icmp_ratemask, self.icmp_msgs_per_sec, self.icmp_msgs_burst
        )

    def tcp_syn(self) -> TcpSynSysctls:
        """The SYN retransmit settings of every node's sockets."""
        return TcpSynSysctls(self.tcp_syn_retries, self.tcp_syn_linear_timeouts)
