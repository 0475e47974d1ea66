"""The values a packet's walk through a node's iptables works on: in, around and out.

:class:`Packet` is the first packet of a new connection and where it enters the node;
:class:`NodeNetwork` is what the node's routing knows (local addresses, interfaces);
:class:`Outcome` and :class:`TraceStep` are what the walk (:mod:`svcsim.netfilter.walk`)
decided and did. Nothing here evaluates rules.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from svcsim.netfilter.model import IPAddress, IPNetwork

Origin = Literal["pod", "host", "external"]
ORIGINS: tuple[Origin, ...] = ("pod", "host", "external")
PROTOCOLS = ("tcp", "udp", "sctp")
DEFAULT_SPORT = 32768
IPV4_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
"""The limited broadcast address (route type BROADCAST); made once, not per question."""
"""Source port of a packet that names none: the start of Linux' ``ip_local_port_range``."""


class VerdictKind(StrEnum):
    """What finally happened to the packet."""

    ACCEPT = "ACCEPT"
    DROP = "DROP"
    REJECT = "REJECT"


@functools.lru_cache(maxsize=1 << 12)
def parse_ip(text: str) -> IPAddress:
    """Parse an IPv4 or IPv6 address; the ValueError names the bad text.

    Memoised (module-level: strings in, immutable addresses out, bounded): walks parse the
    same few addresses over and over.
    """
    try:
        return ipaddress.ip_address(text)
    except ValueError as exc:
        raise ValueError(f"invalid IP address {text!r}") from exc


@dataclass(frozen=True, slots=True)
class Packet:
    """The first packet of a new connection, as the node sees it arrive or leave.

    ``origin`` says where it enters: ``pod`` (a Pod on this node, through its veth into
    PREROUTING), ``host`` (a host-network process, OUTPUT) or ``external`` (the node's uplink,
    PREROUTING). ``in_interface`` overrides the interface the network assigns to the origin.
    """

    src: str
    dst: str
    protocol: str
    dport: int
    sport: int = DEFAULT_SPORT
    origin: Origin = "pod"
    in_interface: str | None = None
    mark: int = 0

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol {self.protocol!r} is not one of {PROTOCOLS}")
        if self.origin not in ORIGINS:
            raise ValueError(f"origin {self.origin!r} is not one of {ORIGINS}")
        for port in (self.dport, self.sport):
            if not 0 <= port <= 65535:
                raise ValueError(f"port {port!r} is outside [0, 65535]")
        if parse_ip(self.src).version != parse_ip(self.dst).version:
            raise ValueError(f"mixed address families {self.src!r} -> {self.dst!r}")

    def describe(self) -> str:
        """One line: protocol, addresses and where the packet enters."""
        return (
            f"{self.protocol} {hostport(self.src, self.sport)} -> "
            f"{hostport(self.dst, self.dport)} from {self.origin}"
        )


def hostport(ip: str, port: int) -> str:
    """Format ``ip:port``, bracketing an IPv6 address as ``[ip]:port``."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@dataclass(frozen=True, slots=True)
class NodeNetwork:
    """What the node's routing knows: its own addresses and its interfaces.

    ``node_ips`` plus 127.0.0.0/8 and ::1 are LOCAL (``-m addrtype --*-type LOCAL``, and the
    routing decision INPUT vs FORWARD). Packets from a local Pod arrive on ``pod_interface`` (its
    veth, or the bridge for bridge CNIs); destinations in ``pod_cidr`` leave through it, local
    addresses through ``lo``, everything else through ``uplink_interface``.
    """

    node_ips: tuple[str, ...]
    uplink_interface: str = "eth0"
    pod_interface: str = "veth0"
    pod_cidr: str | None = None
    _local: frozenset[IPAddress] = field(init=False, repr=False, compare=False, hash=False)
    _pods: IPNetwork | None = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_local", frozenset(parse_ip(a) for a in self.node_ips))
        pods = ipaddress.ip_network(self.pod_cidr, strict=False) if self.pod_cidr else None
        object.__setattr__(self, "_pods", pods)

    def is_local(self, address: IPAddress) -> bool:
        """True if ``address`` belongs to this node (the local routing table says LOCAL)."""
        if address in self._local:
            return True
        # 127.0.0.0/8 or ::1 (as integers: ``address in network`` is slow on a hot path).
        value = int(address)
        return value >> 24 == 127 if address.version == 4 else value == 1

    def address_type(self, address: IPAddress) -> str:
        """The route type ``-m addrtype`` compares: LOCAL, MULTICAST, BROADCAST, UNSPEC, UNICAST."""
        if self.is_local(address):
            return "LOCAL"
        if address.is_multicast:
            return "MULTICAST"
        if address == IPV4_BROADCAST:
            return "BROADCAST"
        if address.is_unspecified:
            return "UNSPEC"
        return "UNICAST"

    def in_interface(self, packet: Packet) -> str | None:
        """The interface ``packet`` arrives on (None for locally generated packets)."""
        if packet.in_interface is not None:
            return packet.in_interface
        if packet.origin == "pod":
            return self.pod_interface
        return self.uplink_interface if packet.origin == "external" else None

    def out_interface(self, dst: IPAddress) -> str:
        """The interface the route to ``dst`` leaves through."""
        if self.is_local(dst):
            return "lo"
        if self._pods is not None and dst.version == self._pods.version and dst in self._pods:
            return self.pod_interface
        return self.uplink_interface


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one packet's walk, without the steps: what a simulator needs.

    ``destination`` is the (ip, port) the packet was heading to when the walk ended: after
    DNAT for an accepted packet, so it is where the connection is delivered. ``dnat`` is set only
    when a DNAT target fired. ``recent_sets`` lists ``(list name, address)`` remembered by
    ``-m recent --set`` on the way, in order. ``decided_in`` is the ``(table, chain)`` whose rule
    or policy dropped or rejected the packet (None when accepted): who dropped it tells why.
    """

    verdict: VerdictKind
    destination: tuple[str, int]
    dnat: tuple[str, int] | None = None
    masquerade: bool = False
    mark: int = 0
    local: bool = False
    reject_with: str | None = None
    recent_sets: tuple[tuple[str, str], ...] = ()
    decided_in: tuple[str, str] | None = None

    def describe(self) -> str:
        """One line: verdict, where to, NAT."""
        if self.verdict is VerdictKind.REJECT:
            return f"REJECT ({self.reject_with}) at {hostport(*self.destination)}"
        if self.verdict is VerdictKind.DROP:
            return f"DROP at {hostport(*self.destination)}"
        where = "delivered locally" if self.local else "forwarded"
        nat = " (DNAT)" if self.dnat else ""
        masq = ", masqueraded" if self.masquerade else ""
        return f"ACCEPT: {where} to {hostport(*self.destination)}{nat}{masq}, mark 0x{self.mark:x}"


@dataclass(frozen=True, slots=True)
class TraceStep:
    """One thing the walk did: a rule evaluated, a chain policy applied, or a routing decision.

    ``rule_number`` is 1-based, as ``iptables -L --line-numbers`` prints it (None for policies
    and routing). ``action`` says what followed (``jump KUBE-SVC-…``, ``DNAT 10.0.0.1:80``,
    ``no match``…); ``detail`` explains a decision made by a draw or a recent list.
    """

    kind: Literal["rule", "policy", "route"]
    hook: str
    table: str
    chain: str
    rule_number: int | None
    rule: str
    matched: bool
    action: str
    detail: str = ""
    depth: int = 0

    @property
    def rule_index(self) -> int | None:
        """0-based position of the rule in its chain."""
        return None if self.rule_number is None else self.rule_number - 1
