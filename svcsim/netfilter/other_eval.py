"""How the walk evaluates other software's match extensions, and what it cannot decide.

:func:`evaluate` answers one :class:`~svcsim.netfilter.other_extensions.OtherMatch` for the
first packet of a new connection (:class:`PacketView`), the way the kernel module does, or
returns :class:`Undecided` with the reason when the answer depends on state svcsim does not
have: an ipset's members (unless given in :class:`NodeFacts`), a socket lookup, a rate
limit's bucket, the routing table of a reverse-path check, IPsec policy. The walk then asks
its decider or stops; it never guesses. Sources (torvalds/linux, net/netfilter): xt_set.c,
xt_connmark.c @135367b8, xt_conntrack.c, xt_multiport.c, xt_iprange.c, xt_owner.c @0265ab44
(``owner_mt``: no socket matches iff every given option is negated), xt_tcpudp.c,
xt_pkttype.c.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from svcsim.netfilter.model import IPAddress
from svcsim.netfilter.other_extensions import ExtOption, OtherMatch

TCP_FLAG_BITS: Final = {"FIN": 1, "SYN": 2, "RST": 4, "PSH": 8, "ACK": 16, "URG": 32}
"""TCP flag names as iptables spells them (ALL and NONE are handled apart)."""

FIRST_PACKET_TCP_FLAGS: Final = TCP_FLAG_BITS["SYN"]
"""A new TCP connection's first packet carries SYN alone."""


@dataclass(frozen=True, slots=True)
class Undecided:
    """The walk cannot tell whether a match holds: ``reason`` says what it would need."""

    reason: str


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """What the user told svcsim about the node beyond its rules.

    ``ipsets`` maps a set name to its members, each as ``ipset list`` prints an entry
    (``10.0.0.0/8``, ``10.0.0.1``, ``10.0.0.1,tcp:80``); a set not named here is unknown.
    """

    ipsets: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PacketView:
    """What a match may look at: the packet now, where it came from, its connection's state.

    ``orig_dst``/``orig_dport`` are before any DNAT (conntrack's original tuple); ``dst`` and
    ``dport`` after. ``ctmark`` is the connection's mark (0 for a new connection until a
    CONNMARK sets it); ``untracked`` after ``-j NOTRACK`` / ``-j CT --notrack``.
    """

    hook: str
    origin: str
    protocol: str
    src: IPAddress
    sport: int
    dst: IPAddress
    dport: int
    orig_dst: IPAddress
    orig_dport: int
    states: frozenset[str]
    ctmark: int
    untracked: bool
    dst_type: str


def evaluate(match: OtherMatch, view: PacketView, facts: NodeFacts) -> bool | Undecided:
    """Whether ``match`` holds for ``view`` (negations applied), or why that is unknown."""
    handler = _HANDLERS.get(match.name)
    if handler is None:
        return Undecided(f"-m {match.name} is read but not evaluated by svcsim")
    return handler(match, view, facts)


def _all(results: list[bool | Undecided]) -> bool | Undecided:
    """Options of one match all hold (the first undecided one, if any, when none fails)."""
    undecided = next((r for r in results if isinstance(r, Undecided)), None)
    if any(r is False for r in results):
        return False
    return undecided if undecided is not None else True


def _neg(option: ExtOption, hit: bool) -> bool:
    return hit != option.negated


def _set(match: OtherMatch, view: PacketView, facts: NodeFacts) -> bool | Undecided:
    option = match.option("--match-set")
    assert option is not None
    name, flags = option.values
    if any(o.flag.startswith(("--packets-", "--bytes-")) for o in match.options):
        return Undecided(f"-m set --match-set {name}: counter conditions are not modelled")
    members = facts.ipsets.get(name)
    if members is None:
        return Undecided(f"the members of ipset {name!r} (give --ipset {name}=IP,CIDR,...)")
    values = [_dimension(flag, view) for flag in flags.split(",")]
    hit = any(_entry_holds(entry, values, view.protocol) for entry in members)
    return _neg(option, hit)


def _dimension(flag: str, view: PacketView) -> tuple[IPAddress, int]:
    return (view.src, view.sport) if flag == "src" else (view.dst, view.dport)


def _entry_holds(entry: str, values: list[tuple[IPAddress, int]], protocol: str) -> bool:
    """Whether one ipset entry (``ip[/len][,proto:port][,ip...]``) holds the packet's values."""
    parts = entry.split(",")
    for i, part in enumerate(parts):
        if i >= len(values):
            return False
        address, port = values[i]
        if i > 0 and not _looks_like_address(part):
            proto, _, number = part.rpartition(":")
            if (proto and proto != protocol) or not number.isdigit() or int(number) != port:
                return False
            continue
        network = ipaddress.ip_network(part, strict=False)
        if address.version != network.version or address not in network:
            return False
    return True


def _looks_like_address(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def _connmark(match: OtherMatch, view: PacketView, facts: NodeFacts) -> bool | Undecided:
    option = match.option("--mark")
    assert option is not None
    if view.untracked:
        return False  # connmark_mt: no conntrack entry, no match
    value, _, mask = option.values[0].partition("/")
    return _neg(option, (view.ctmark & int(mask or "0xffffffff", 0)) == int(value, 0))


def _conntrack(match: OtherMatch, view: PacketView, facts: NodeFacts) -> bool | Undecided:
    results: list[bool | Undecided] = []
    for option in match.options:
        value = option.values[0] if option.values else ""
        flag = option.flag
        if flag in ("--ctstate", "--state"):
            results.append(_neg(option, bool(set(value.split(",")) & view.states)))
        elif view.untracked:
            results.append(False)  # conntrack_mt: every other option needs an entry
        elif flag == "--ctproto":
            results.append(_neg(option, value.lower() == view.protocol))
        elif flag in ("--ctorigsrc", "--ctrepldst"):
            results.append(_neg(option, _in(view.src, value)))
        elif flag == "--ctorigdst":
            results.append(_neg(option, _in(view.orig_dst, value)))
        elif flag == "--ctreplsrc":
            results.append(_neg(option, _in(view.dst, value)))
        elif flag in ("--ctorigsrcport", "--ctrepldstport"):
            results.append(_neg(option, _port_in(view.sport, value)))
        elif flag == "--ctorigdstport":
            results.append(_neg(option, _port_in(view.orig_dport, value)))
        elif flag == "--ctreplsrcport":
            results.append(_neg(option, _port_in(view.dport, value)))
        elif flag == "--ctstatus":
            # A new connection's first packet: not yet CONFIRMED, no reply seen, no flags.
            results.append(_neg(option, False))
        elif flag == "--ctdir":
            results.append(_neg(option, value.upper() == "ORIGINAL"))
        else:
            results.append(Undecided(f"-m conntrack {flag} (the entry's timeout) is not modelled"))
    return _all(results)


def _in(address: IPAddress, text: str) -> bool:
    network = ipaddress.ip_network(text, strict=False)
    return address.version == network.version and address in network


def _port_in(port: int, text: str) -> bool:
    first, _, last = text.partition(":")
    return int(first) <= port <= int(last or first)


def _multiport(match: OtherMatch, view: PacketView, facts: NodeFacts) -> bool | Undecided:
    option = match.options[0]
    wanted = {
        "--sports": (view.sport,),
        "--source-ports": (view.sport,),
        "--dports": (view.dport,),
        "--destination-ports": (view.dport,),
        "--ports": (view.sport, view.dport),
    }[option.flag]
    hit = any(_port_in(port, spec) for spec in option.values[0].split(",") for port in wanted)
    return _neg(option, hit)


def _iprange(match: OtherMatch, view: PacketView, facts: NodeFacts) -> bool | Undecided:
    results: list[bool | Undecided] = []
    for option in match.options:
        first, _, last = option.values[0].partition("-")
        address = view.src if option.flag == "--src-range" else view.dst
        lo, hi = ipaddress.ip_address(first), ipaddress.ip_address(last or first)
        inside = lo.version == address.version and int(lo) <= int(address) <= int(hi)
        results.append(_neg(option, inside))
    return _all(results)


def _owner(match: OtherMatch, view: PacketView, facts: NodeFacts) -> bool | Undecided:
    if view.origin == "host":
        return Undecided("which user and group own the sending socket (-m owner)")
    # A forwarded packet has no local socket: owner_mt matches iff every option is negated.
    return all(o.negated for o in match.options)


def _tcp(match: OtherMatch, view: PacketView, facts: NodeFacts) -> bool | Undecided:
    if view.protocol != match.name:
        return False
    results: list[bool | Undecided] = []
    for option in match.options:
        flag = option.flag
        if flag in ("--sport", "--source-port"):
            results.append(_neg(option, _port_in(view.sport, option.values[0])))
        elif flag in ("--dport", "--destination-port"):
            results.append(_neg(option, _port_in(view.dport, option.values[0])))
        elif flag == "--tcp-flags":
            mask, wanted = (_flags(v) for v in option.values)
            results.append(_neg(option, (FIRST_PACKET_TCP_FLAGS & mask) == wanted))
        elif flag == "--syn":
            mask = _flags("SYN,RST,ACK,FIN")
            results.append(_neg(option, (FIRST_PACKET_TCP_FLAGS & mask) == TCP_FLAG_BITS["SYN"]))
        else:
            results.append(Undecided(f"-m tcp {flag}: the SYN's TCP options are not modelled"))
    return _all(results)


def _flags(text: str) -> int:
    if text == "ALL":
        return sum(TCP_FLAG_BITS.values())
    if text == "NONE":
        return 0
    return sum(TCP_FLAG_BITS[name] for name in text.split(","))


def _icmp(match: OtherMatch, view: PacketView, facts: NodeFacts) -> bool | Undecided:
    return False  # the traced packet is TCP, UDP or SCTP


def _pkttype(match: OtherMatch, view: PacketView, facts: NodeFacts) -> bool | Undecided:
    option = match.options[0]
    kind = {"MULTICAST": "multicast", "BROADCAST": "broadcast"}.get(view.dst_type, "unicast")
    return _neg(option, option.values[0].lower() == kind)


def _comment(match: OtherMatch, view: PacketView, facts: NodeFacts) -> bool | Undecided:
    return True


_Handler: TypeAlias = Callable[[OtherMatch, PacketView, NodeFacts], bool | Undecided]


def _undecided(why: str) -> _Handler:
    def handler(match: OtherMatch, view: PacketView, facts: NodeFacts) -> bool | Undecided:
        return Undecided(why)

    return handler


_HANDLERS: Final[dict[str, _Handler]] = {
    "set": _set,
    "connmark": _connmark,
    "conntrack": _conntrack,
    "state": _conntrack,
    "multiport": _multiport,
    "iprange": _iprange,
    "owner": _owner,
    "tcp": _tcp,
    "udp": _tcp,
    "sctp": _tcp,
    "icmp": _icmp,
    "pkttype": _pkttype,
    "comment": _comment,
    "physdev": _undecided("whether the packet crossed a bridge port (-m physdev)"),
    "socket": _undecided("whether a local socket matches the packet (-m socket)"),
    "limit": _undecided("the state of a rate limit's token bucket (-m limit)"),
    "hashlimit": _undecided("the state of a rate limit's token bucket (-m hashlimit)"),
    "rpfilter": _undecided("the reverse-path route lookup (-m rpfilter)"),
    "policy": _undecided("the node's IPsec policy (-m policy)"),
    "addrtype": _undecided("address types limited to one interface (--limit-iface-*)"),
    "statistic": _undecided("the packet counter of -m statistic --mode nth"),
    "mac": _undecided("the sender's MAC address (-m mac)"),
    "length": _undecided("the packet's length (-m length)"),
    "helper": _undecided("the connection's helper (-m helper)"),
    "cgroup": _undecided("the sending socket's cgroup (-m cgroup)"),
}
"""How each extension of :data:`~svcsim.netfilter.other_extensions.MATCH_OPTIONS` is decided."""
