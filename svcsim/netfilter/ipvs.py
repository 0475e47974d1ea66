"""IPVS as kube-proxy programs it: virtual servers, real servers, the node's whole IPVS state.

Values only (frozen): :class:`VirtualServer` with its :class:`RealServer` s in the kernel's
list order, and :class:`IpvsState`, everything kube-proxy's IPVS mode leaves on a node (the
``kube-ipvs0`` addresses, the virtual servers, the ip sets, the helper iptables rules).
:func:`render_ipvsadm` prints the virtual servers as ``ipvsadm -Ln`` does. The kernel's
behaviour over time (schedulers, the IPVS connection table, its timeouts and sysctls) is
:mod:`svcsim.netfilter.ipvs_kernel`; the schedulers are :mod:`svcsim.netfilter.ipvs_sched`.

Kernel facts: ``ip_vs_ctl.c`` (torvalds/linux @6724af48): a new real server is added at the
head of ``svc->destinations``; ipvsadm (1.31) sorts services and real servers for printing
unless ``--nosort``, by protocol number, address, port. Forwarding is always masquerading
(NAT) in kube-proxy (``utilipvs.RealServer`` carries no forwarding method: ``Masq``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from svcsim.k8s.fields import is_canonical_ipv4
from svcsim.netfilter.ipset import IpsetTable
from svcsim.netfilter.ipvs_sched import SCHEDULERS
from svcsim.netfilter.model import Ruleset

PROTOCOL_NUMBERS: Final = {"TCP": 6, "UDP": 17, "SCTP": 132}
"""IPPROTO numbers: ipvsadm's sort key, and the protocols a virtual server can have."""

IPVS_VERSION_LINE: Final = "IP Virtual Server version 1.2.1 (size=4096)"
"""``ipvsadm -Ln``'s first line: IP_VS_VERSION_CODE 1.2.1 and the default connection-table
size (CONFIG_IP_VS_TAB_BITS 12)."""

SCHED_FLAG_NAMES: Final = {"sh": ("sh-fallback", "sh-port"), "mh": ("mh-fallback", "mh-port")}
"""How ipvsadm names a scheduler's flag-1 and flag-2 (``IP_VS_SVC_F_SCHED1``/``2``)."""


def _check_ipv4(address: str) -> None:
    """Raise ValueError unless ``address`` is an IPv4 address (as ipaddress reads one)."""
    # The dotted quads kube-proxy prints pass the regex (~10x faster than ipaddress, for
    # 110,000 servers at 10,000 Services); anything else is ipaddress's to judge.
    if not is_canonical_ipv4(address):
        ipaddress.IPv4Address(address)


@dataclass(frozen=True, slots=True)
class RealServer:
    """A destination of a virtual server (always masqueraded in kube-proxy)."""

    address: str
    port: int
    weight: int = 1

    def __post_init__(self) -> None:
        _check_ipv4(self.address)
        if not 0 <= self.port <= 65535:
            raise ValueError(f"real server port {self.port!r} is outside [0, 65535]")
        if self.weight < 0:
            raise ValueError(f"real server weight {self.weight!r} is negative")

    @property
    def hostport(self) -> str:
        """``ADDRESS:PORT``."""
        return f"{self.address}:{self.port}"


@dataclass(frozen=True, slots=True)
class VirtualServer:
    """An IPVS service: protocol, address, port, scheduler, persistence, real servers.

    ``real_servers`` are in the kernel's list order (the order the schedulers walk);
    ``persistent_timeout_s`` is None for a non-persistent service; ``sched_flags`` holds
    ipvsadm's names of the scheduler flags set (kube-proxy sets ``mh-port`` with mh).
    """

    protocol: str
    address: str
    port: int
    scheduler: str
    real_servers: tuple[RealServer, ...] = ()
    persistent_timeout_s: int | None = None
    sched_flags: tuple[str, ...] = ()
    key: tuple[str, str, int] = field(init=False, repr=False, compare=False)
    """What the kernel looks a service up by: (protocol, address, port). Stored, not a
    property: every sync indexes tens of thousands of servers by it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.protocol, self.address, self.port))
        if self.protocol not in PROTOCOL_NUMBERS:
            raise ValueError(f"virtual server protocol {self.protocol!r} is not TCP, UDP or SCTP")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(
                f"unknown IPVS scheduler {self.scheduler!r}: one of {', '.join(SCHEDULERS)}"
            )
        _check_ipv4(self.address)
        if self.persistent_timeout_s is not None and self.persistent_timeout_s <= 0:
            raise ValueError(f"persistence timeout {self.persistent_timeout_s!r} is not > 0")

    @property
    def hostport(self) -> str:
        """``ADDRESS:PORT``."""
        return f"{self.address}:{self.port}"


@dataclass(frozen=True, slots=True)
class IpvsState:
    """Everything kube-proxy's IPVS mode leaves on a node after a sync.

    ``dummy_addresses`` are bound to the ``kube-ipvs0`` dummy interface (so the node routes
    them locally); ``ruleset`` is the iptables state (nat and filter) whose ``-m set`` matches
    ``ipsets`` answers.
    """

    dummy_addresses: tuple[str, ...]
    virtual_servers: tuple[VirtualServer, ...]
    ipsets: IpsetTable
    ruleset: Ruleset
    _index: dict[tuple[str, str, int], VirtualServer] | None = field(
        default=None, init=False, repr=False, compare=False, hash=False
    )
    """Built on first use (:attr:`by_key`), or handed on by :meth:`replacing`."""
    _reals: int | None = field(default=None, init=False, repr=False, compare=False, hash=False)
    """:attr:`real_server_count` once counted, or handed on by :meth:`replacing`."""

    @property
    def real_server_count(self) -> int:
        """The real servers of every virtual server together."""
        reals = self._reals
        if reals is None:
            reals = sum(len(vs.real_servers) for vs in self.virtual_servers)
            object.__setattr__(self, "_reals", reals)
        return reals

    @property
    def by_key(self) -> Mapping[tuple[str, str, int], VirtualServer]:
        """The virtual servers by :attr:`VirtualServer.key` (do not modify)."""
        index = self._index
        if index is None:
            index = {vs.key: vs for vs in self.virtual_servers}
            object.__setattr__(self, "_index", index)
        return index

    def replacing(
        self, servers: tuple[VirtualServer, ...], changed: Iterable[VirtualServer]
    ) -> IpvsState:
        """The state with ``servers``, which differ from its own only by ``changed``.

        Each server of ``changed`` replaces the one of the same key (the keys are the same);
        the index is this state's, updated, not rebuilt.
        """
        out = IpvsState(self.dummy_addresses, servers, self.ipsets, self.ruleset)
        index = dict(self.by_key)
        reals = self._reals
        for vs in changed:
            if reals is not None:
                reals += len(vs.real_servers) - len(index[vs.key].real_servers)
            index[vs.key] = vs
        object.__setattr__(out, "_index", index)
        object.__setattr__(out, "_reals", reals)
        return out

    def lookup(self, protocol: str, address: str, port: int) -> VirtualServer | None:
        """The virtual server for a packet to ``address:port`` over ``protocol`` (tcp/udp/…)."""
        return self.by_key.get((protocol.upper(), address, port))


def _sort_key(address: str, port: int) -> tuple[int, ...]:
    # A normalised dotted IPv4 address sorts as its octets do (~10x faster than ipaddress,
    # 110,000 addresses at 10,000 Services).
    return (*map(int, address.split(".")), port)


def render_ipvsadm(
    virtual_servers: Iterable[VirtualServer], counts: dict[tuple[str, ...], tuple[int, int]]
) -> str:
    """The virtual servers as ``ipvsadm -Ln`` prints them (sorted as ipvsadm sorts).

    ``counts`` gives ``(ActiveConn, InActConn)`` per ``(protocol, vip, vport, rip, rport)``
    (as strings and ints mixed in a tuple key); missing ones print 0 0. Column widths are
    ipvsadm's ``"  -> %-28s %-7s %-6d %-10u %-10u"``, trailing spaces included.
    """
    lines = [
        IPVS_VERSION_LINE,
        "Prot LocalAddress:Port Scheduler Flags",
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
    ]
    ordered = sorted(
        virtual_servers,
        key=lambda vs: (PROTOCOL_NUMBERS[vs.protocol], *_sort_key(vs.address, vs.port)),
    )
    for vs in ordered:
        head = f"{vs.protocol:<4} {vs.hostport} {vs.scheduler}"
        if vs.sched_flags:
            head += f" ({','.join(vs.sched_flags)})"
        if vs.persistent_timeout_s is not None:
            head += f" persistent {vs.persistent_timeout_s}"
        lines.append(head)
        for rs in sorted(vs.real_servers, key=lambda r: _sort_key(r.address, r.port)):
            key = (vs.protocol, vs.address, str(vs.port), rs.address, str(rs.port))
            active, inactive = counts.get(key, (0, 0))
            lines.append(
                f"  -> {rs.hostport:<28} {'Masq':<7} {rs.weight:<6} {active:<10} {inactive:<10}"
            )
    return "\n".join(lines) + "\n"


def render_ipvsadm_restore(virtual_servers: Iterable[VirtualServer]) -> str:
    """``ipvsadm -R`` input (``ipvsadm -S -n``'s format) adding every service and server."""
    flag_bits = {name: i + 1 for names in SCHED_FLAG_NAMES.values() for i, name in enumerate(names)}
    proto_opt = {"TCP": "-t", "UDP": "-u", "SCTP": "--sctp-service"}
    lines = []
    for vs in virtual_servers:
        opt = proto_opt[vs.protocol]
        line = f"-A {opt} {vs.hostport} -s {vs.scheduler}"
        if vs.sched_flags:
            line += " -b " + ",".join(f"flag-{flag_bits[f]}" for f in vs.sched_flags)
        if vs.persistent_timeout_s is not None:
            line += f" -p {vs.persistent_timeout_s}"
        lines.append(line)
        lines.extend(
            f"-a {opt} {vs.hostport} -r {rs.hostport} -m -w {rs.weight}"
            for rs in reversed(vs.real_servers)  # added last = first in the kernel's list
        )
    return "\n".join(lines) + "\n"
