"""The kernel's ip sets (``ipset``) as kube-proxy's IPVS mode uses them, and ``-m set``.

An :class:`Ipset` is a name, a type and its members, each member spelled as ``ipset list``
prints it and as kube-proxy's ``Entry.String()`` writes it (kubernetes
``pkg/proxy/ipvs/ipset/ipset.go``): ``hash:ip`` ``10.0.0.1``, ``hash:ip,port``
``10.0.0.1,tcp:80``, ``hash:ip,port,ip`` ``10.0.0.1,tcp:80,10.0.0.1``, ``hash:ip,port,net``
``10.0.0.1,tcp:80,10.0.1.0/24``, ``bitmap:port`` ``30080``.

A ``-m set --match-set NAME dst,dst[,src]`` match (net/netfilter/xt_set.c with the set type's
``kadt`` in net/netfilter/ipset/ip_set_hash_ipport*.c) builds the element from the packet, one
direction flag per dimension: an address dimension takes the source or destination address, a
port dimension the source or destination port *and the packet's protocol* (the ``tcp:`` in a
member). ``hash:ip,port,net`` matches when the third dimension's address is inside the member's
network. :class:`SetMatch` is the iptables match; :class:`IpsetTable` answers it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

SetType = Literal["hash:ip", "hash:ip,port", "hash:ip,port,ip", "hash:ip,port,net", "bitmap:port"]
"""The set types kube-proxy creates (``utilipset.Type`` values)."""

SET_DIMENSIONS: Final[dict[str, tuple[str, ...]]] = {
    "hash:ip": ("ip",),
    "hash:ip,port": ("ip", "port"),
    "hash:ip,port,ip": ("ip", "port", "ip"),
    "hash:ip,port,net": ("ip", "port", "net"),
    "bitmap:port": ("port",),
}
"""What each dimension of a type holds, in order (the set type's name, read left to right)."""

DEFAULT_HASH_SIZE: Final = 1024
"""``hashsize`` kube-proxy creates hash sets with (``setIPSetDefaults``)."""
DEFAULT_MAX_ELEM: Final = 65536
"""``maxelem`` kube-proxy creates hash sets with (``setIPSetDefaults``)."""
DEFAULT_PORT_RANGE: Final = "0-65535"
"""``range`` of kube-proxy's bitmap:port sets (``DefaultPortRange``)."""


@dataclass(frozen=True, slots=True)
class Ipset:
    """One ip set: name, type, kube-proxy's comment for it, and members (sorted, unique)."""

    name: str
    set_type: SetType
    comment: str = ""
    members: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.set_type not in SET_DIMENSIONS:
            raise ValueError(f"unknown ip set type {self.set_type!r}")
        if len(self.name) > 31:
            raise ValueError(f"ip set name {self.name!r} is longer than 31 characters")
        for member in self.members:
            parse_member(self.set_type, member)  # raises on a malformed member

    @property
    def header(self) -> str:
        """The ``Header:`` line's value, as ``ipset list`` prints it for kube-proxy's sets."""
        if self.set_type == "bitmap:port":
            return f"range {DEFAULT_PORT_RANGE}"
        return f"family inet hashsize {DEFAULT_HASH_SIZE} maxelem {DEFAULT_MAX_ELEM}"


@dataclass(frozen=True, slots=True)
class _Member:
    """A parsed member: per dimension an address, a (protocol, port), or a network."""

    parts: tuple[object, ...]


def parse_member(set_type: str, text: str) -> _Member:
    """Parse ``text`` as a member of a ``set_type`` set; raises ValueError when malformed."""
    dims = SET_DIMENSIONS[set_type]
    words = text.split(",")
    if len(words) != len(dims):
        raise ValueError(f"{text!r} is not a {set_type} member")
    parts: list[object] = []
    for dim, word in zip(dims, words, strict=True):
        if dim == "ip":
            parts.append(ipaddress.IPv4Address(word))
        elif dim == "net":
            parts.append(ipaddress.IPv4Network(word, strict=False))
        elif set_type == "bitmap:port":
            parts.append(("", _port(word, text)))
        else:
            proto, sep, port = word.partition(":")
            if not sep or proto not in ("tcp", "udp", "sctp"):
                raise ValueError(f"{text!r}: {word!r} is not PROTO:PORT")
            parts.append((proto, _port(port, text)))
    return _Member(tuple(parts))


def _port(word: str, text: str) -> int:
    if not word.isdigit() or not 0 <= int(word) <= 65535:
        raise ValueError(f"{text!r}: {word!r} is not a port")
    return int(word)


@dataclass(frozen=True, slots=True)
class SetMatch:
    """``-m set [!] --match-set NAME FLAGS``; FLAGS is one ``src``/``dst`` per dimension."""

    name: str
    flags: tuple[str, ...]
    negated: bool = False

    def __post_init__(self) -> None:
        if not self.flags or any(f not in ("src", "dst") for f in self.flags):
            raise ValueError(f"--match-set {self.name}: flags must be src/dst, got {self.flags}")

    def save_args(self) -> list[str]:
        """Tokens iptables-save prints (libxt_set's ``set_print_v1`` with ``--match-set``)."""
        neg = ["!"] if self.negated else []
        return ["-m", "set", *neg, "--match-set", self.name, ",".join(self.flags)]


@dataclass(frozen=True, slots=True)
class PacketFields:
    """What a set match reads from a packet: addresses, ports, protocol."""

    src: ipaddress.IPv4Address | ipaddress.IPv6Address
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address
    sport: int
    dport: int
    protocol: str


@dataclass(frozen=True, slots=True)
class IpsetTable:
    """The node's ip sets by name; answers ``-m set`` matches."""

    sets: tuple[Ipset, ...] = ()
    _index: dict[str, Ipset] = field(init=False, repr=False, compare=False, hash=False)
    _parsed: dict[str, frozenset[tuple[object, ...]]] = field(
        init=False, repr=False, compare=False, hash=False
    )
    """Each set's members as parsed, filled on first use (:meth:`_members`)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {s.name: s for s in self.sets})
        # Each set's members are parsed for matching when a match first asks for that set:
        # ``svcsim rules`` never does (~20,000 members at 10,000 Services), a run once.
        object.__setattr__(self, "_parsed", {})

    @classmethod
    def of(cls, sets: Iterable[Ipset]) -> IpsetTable:
        """A table of ``sets``."""
        return cls(tuple(sets))

    def get(self, name: str) -> Ipset | None:
        """The set called ``name``, or None."""
        return self._index.get(name)

    def as_dict(self) -> Mapping[str, tuple[str, ...]]:
        """Members by set name, in the table's order."""
        return {s.name: s.members for s in self.sets}

    def matches(self, match: SetMatch, packet: PacketFields) -> bool:
        """True if ``packet`` is in the set as ``match`` looks it up (negation applied).

        A missing set is an error, as iptables refuses a rule naming a set that does not
        exist (xt_set's checkentry).
        """
        ipset = self._index.get(match.name)
        if ipset is None:
            raise KeyError(f"-m set names the missing ip set {match.name!r}")
        dims = SET_DIMENSIONS[ipset.set_type]
        if len(match.flags) < len(dims):
            # xt_set: fewer direction flags than dimensions never matches (the element is
            # incomplete); more are ignored.
            return match.negated
        wanted: list[object] = []
        for dim, flag in zip(dims, match.flags, strict=False):
            address = packet.src if flag == "src" else packet.dst
            if dim in ("ip", "net"):
                wanted.append(address)
            else:
                port = packet.sport if flag == "src" else packet.dport
                proto = "" if ipset.set_type == "bitmap:port" else packet.protocol
                wanted.append((proto, port))
        if dims[-1] == "net":
            hit = any(
                member[:-1] == tuple(wanted[:-1])
                and isinstance(member[-1], ipaddress.IPv4Network)
                and wanted[-1] in member[-1]
                for member in self._members(ipset)
            )
        else:
            hit = tuple(wanted) in self._members(ipset)
        return hit != match.negated

    def _members(self, ipset: Ipset) -> frozenset[tuple[object, ...]]:
        """``ipset``'s members parsed (each checked already by :class:`Ipset`), remembered."""
        found = self._parsed.get(ipset.name)
        if found is None:
            found = frozenset(parse_member(ipset.set_type, m).parts for m in ipset.members)
            self._parsed[ipset.name] = found
        return found


def render_ipset_list(table: IpsetTable) -> str:
    """The sets as ``ipset list`` prints them, without what depends on the versions.

    ``ipset list`` also prints ``Revision`` (the set type's kernel revision), ``Size in
    memory`` and ``References`` (the kernel's allocator, the iptables rules loaded), and
    ipset >= 7.11 adds ``bucketsize``/``initval`` to hash sets' headers; they are omitted, so
    the text is what a comparison with a real node can rely on. Members are sorted (ipset
    prints a hash set in hash order, so a comparison must sort as well).
    """
    blocks = []
    for s in table.sets:
        lines = [
            f"Name: {s.name}",
            f"Type: {s.set_type}",
            f"Header: {s.header}",
            f"Number of entries: {len(s.members)}",
            "Members:",
            *sorted(s.members),
        ]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def render_ipset_restore(table: IpsetTable) -> str:
    """``ipset restore`` input creating every set and adding its members (``-exist``)."""
    lines = []
    for s in table.sets:
        lines.append(f"create {s.name} {s.set_type} {s.header} -exist")
        lines.extend(f"add {s.name} {m} -exist" for m in s.members)
    return "\n".join(lines) + "\n"
