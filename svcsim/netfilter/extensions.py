"""Match and target extensions (``-m NAME ...``, ``-j NAME ...``) as the kernel stores them.

Each class holds the parsed values and prints itself back the way iptables-save does
(``save_args``); evaluation that needs packet state lives in the interpreter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypeAlias

from svcsim.netfilter.ipset import SetMatch
from svcsim.netfilter.ipvs_matches import IpvsMatch, PhysdevMatch
from svcsim.netfilter.portal_extensions import RedirectTarget, StateMatch
from svcsim.netfilter.statistic import format_saved_probability

STANDARD_VERDICTS = frozenset({"ACCEPT", "DROP", "RETURN"})

_NO_QUOTE_TEXT = "_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
"""The characters iptables-save prints a string of bare."""
_ESCAPED = str.maketrans({c: "\\" + c for c in "\"\\'"})
"""What it backslash-escapes inside double quotes."""


def save_string(value: str) -> str:
    r"""Quote ``value`` the way iptables' ``xtables_save_string`` does.

    Strings made only of ``[A-Za-z0-9_-]`` are printed bare; anything else is wrapped in double
    quotes with ``"``, ``\\`` and ``'`` backslash-escaped (iptables libxtables/xtables.c).
    """
    if value and not value.strip(_NO_QUOTE_TEXT):  # every character is one of them
        return value
    if '"' in value or "\\" in value or "'" in value:
        # (str.translate with a dict looks every character up: only when there is one.)
        value = value.translate(_ESCAPED)
    return f'"{value}"'


def negation(negated: bool) -> list[str]:
    """``["!"]`` when negated, else nothing: iptables-save prints ``!`` before the option."""
    return ["!"] if negated else []


# --- match extensions (-m NAME ...) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PortRange:
    """``PORT`` or ``FIRST:LAST``, optionally negated."""

    first: int
    last: int
    negated: bool = False

    def contains(self, port: int) -> bool:
        """True if ``port`` satisfies the range (taking negation into account)."""
        return (self.first <= port <= self.last) != self.negated

    def save_text(self) -> str:
        """The range as iptables prints it."""
        return str(self.first) if self.first == self.last else f"{self.first}:{self.last}"


@dataclass(frozen=True, slots=True)
class CommentMatch:
    """``-m comment --comment TEXT``: matches every packet."""

    comment: str

    def save_args(self) -> list[str]:
        """Tokens iptables-save prints for this match."""
        return ["-m", "comment", "--comment", save_string(self.comment)]


_SET_COMMENT: Final = getattr(CommentMatch, "comment").__set__  # noqa: B009  # the slot


def new_comment(comment: str) -> CommentMatch:
    """``CommentMatch(comment)`` made through its slot's descriptor (see :func:`new_jump`).

    One per endpoint's dispatch rule (``"ns/svc:p -> IP:PORT"``): ~100,000 at 10,000
    Services x 10 endpoints. CommentMatch has no ``__post_init__``.
    """
    made = _new_object(CommentMatch)
    _SET_COMMENT(made, comment)
    return made


@dataclass(frozen=True, slots=True)
class PortMatch:
    """``-m tcp|udp|sctp [--sport P] [--dport P]``."""

    protocol: str
    source_port: PortRange | None = None
    destination_port: PortRange | None = None

    def save_args(self) -> list[str]:
        """Tokens iptables-save prints for this match (sport before dport)."""
        out = ["-m", self.protocol]
        for flag, rng in (("--sport", self.source_port), ("--dport", self.destination_port)):
            if rng is not None:
                out += [*negation(rng.negated), flag, rng.save_text()]
        return out


@dataclass(frozen=True, slots=True)
class StatisticMatch:
    """``-m statistic --mode random --probability P``.

    The kernel keeps only ``threshold`` (``lround(P * 2**31)``) and matches iff a fresh uniform
    31-bit draw is below it (net/netfilter/xt_statistic.c).
    """

    threshold: int
    negated: bool = False

    def save_args(self) -> list[str]:
        """Tokens iptables-save prints: the probability re-derived from the threshold."""
        prob = format_saved_probability(self.threshold)
        neg = negation(self.negated)
        return ["-m", "statistic", "--mode", "random", *neg, "--probability", prob]


@dataclass(frozen=True, slots=True)
class RecentMatch:
    """``-m recent``: per-list memory of source (or destination) addresses (xt_recent)."""

    name: str = "DEFAULT"
    command: str = "rcheck"
    """One of ``set``, ``rcheck``, ``update``, ``remove``."""
    seconds: int = 0
    reap: bool = False
    hitcount: int = 0
    rsource: bool = True
    mask: str = "255.255.255.255"
    negated: bool = False

    def save_args(self) -> list[str]:
        """Tokens iptables-save prints (extensions/libxt_recent.c order)."""
        out = ["-m", "recent", *negation(self.negated), f"--{self.command}"]
        if self.seconds:
            out += ["--seconds", str(self.seconds)]
        if self.reap:
            out.append("--reap")
        if self.hitcount:
            out += ["--hitcount", str(self.hitcount)]
        out += ["--name", self.name, "--mask", self.mask]
        out.append("--rsource" if self.rsource else "--rdest")
        return out


@dataclass(frozen=True, slots=True)
class MarkMatch:
    """``-m mark [!] --mark VALUE[/MASK]``: ``(skb->mark & mask) == value``."""

    value: int
    mask: int = 0xFFFFFFFF
    negated: bool = False

    def matches(self, mark: int) -> bool:
        """True if ``mark`` satisfies the match."""
        return ((mark & self.mask) == self.value) != self.negated

    def save_args(self) -> list[str]:
        """Tokens iptables-save prints."""
        text = f"0x{self.value:x}"
        if self.mask != 0xFFFFFFFF:
            text += f"/0x{self.mask:x}"
        return ["-m", "mark", *negation(self.negated), "--mark", text]


@dataclass(frozen=True, slots=True)
class AddrTypeMatch:
    """``-m addrtype [[!] --src-type T] [[!] --dst-type T]`` (only LOCAL is modelled precisely)."""

    src_type: str | None = None
    src_negated: bool = False
    dst_type: str | None = None
    dst_negated: bool = False

    def save_args(self) -> list[str]:
        """Tokens iptables-save prints."""
        out = ["-m", "addrtype"]
        if self.src_type:
            out += [*negation(self.src_negated), "--src-type", self.src_type]
        if self.dst_type:
            out += [*negation(self.dst_negated), "--dst-type", self.dst_type]
        return out


CONNTRACK_STATE_ORDER = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT")
"""Order in which libxt_conntrack prints ``--ctstate`` flags."""


@dataclass(frozen=True, slots=True)
class ConntrackMatch:
    """``-m conntrack [!] --ctstate S1,S2``: the packet's connection-tracking state."""

    states: frozenset[str]
    negated: bool = False

    def matches(self, packet_states: frozenset[str]) -> bool:
        """True if any of ``packet_states`` is listed (taking negation into account)."""
        return bool(self.states & packet_states) != self.negated

    def save_args(self) -> list[str]:
        """Tokens iptables-save prints."""
        listed = ",".join(s for s in CONNTRACK_STATE_ORDER if s in self.states)
        return ["-m", "conntrack", *negation(self.negated), "--ctstate", listed]


@dataclass(frozen=True, slots=True)
class NfacctMatch:
    """``-m nfacct --nfacct-name NAME``: counts packets, matches every packet."""

    name: str

    def save_args(self) -> list[str]:
        """Tokens iptables-save prints.

        libxt_nfacct prints ``--nfacct-name `` and then ``xtables_save_string``, which adds a
        space of its own: the real output has two spaces, kept here as an empty token.
        """
        return ["-m", "nfacct", "--nfacct-name", "", save_string(self.name)]


Match: TypeAlias = (
    CommentMatch
    | PortMatch
    | StatisticMatch
    | RecentMatch
    | MarkMatch
    | AddrTypeMatch
    | ConntrackMatch
    | NfacctMatch
    | SetMatch
    | PhysdevMatch
    | IpvsMatch
    | StateMatch
)

# --- targets (-j NAME ...) ------------------------------------------------------------------

_new_object: Final = object.__new__


@dataclass(frozen=True, slots=True)
class JumpTarget:
    """``-j CHAIN`` (or ``-g CHAIN`` with ``goto``), or a standard verdict ACCEPT/DROP/RETURN."""

    chain: str
    goto: bool = False

    @property
    def is_verdict(self) -> bool:
        """True for ACCEPT, DROP and RETURN."""
        return self.chain in STANDARD_VERDICTS

    def save_args(self) -> list[str]:
        """Tokens iptables-save prints."""
        return ["-g" if self.goto else "-j", self.chain]


_SET_JUMP_CHAIN, _SET_JUMP_GOTO = (
    getattr(JumpTarget, field).__set__ for field in ("chain", "goto")
)


def new_jump(chain: str) -> JumpTarget:
    """``JumpTarget(chain)``: the same value, made through its slots' descriptors.

    As :func:`svcsim.netfilter.model.new_rule` does for rules: a 10,000-Service compile makes
    ~110,000 jumps (one per KUBE-SEP and service chain), and the frozen dataclass's
    ``__init__`` stores each field through ``object.__setattr__`` (twice as slow). JumpTarget
    has no ``__post_init__``, so nothing else differs (the tests compare the two).
    """
    made = _new_object(JumpTarget)
    _SET_JUMP_CHAIN(made, chain)
    _SET_JUMP_GOTO(made, False)
    return made


@dataclass(frozen=True, slots=True)
class RejectTarget:
    """``-j REJECT [--reject-with TYPE]``; the default type is icmp-port-unreachable."""

    reject_with: str = "icmp-port-unreachable"

    def save_args(self) -> list[str]:
        """Tokens iptables-save prints (the type is always printed)."""
        return ["-j", "REJECT", "--reject-with", self.reject_with]


@dataclass(frozen=True, slots=True)
class MarkTarget:
    """``-j MARK``: ``mark = (mark & ~mask) ^ value`` (how the kernel stores every MARK form).

    ``--or-mark M`` is (value=M, mask=M); ``--xor-mark M`` is (M, 0); ``--set-mark V`` is
    (V, 0xffffffff).
    """

    value: int
    mask: int

    def apply(self, mark: int) -> int:
        """The packet mark after this target."""
        return ((mark & ~self.mask) ^ self.value) & 0xFFFFFFFF

    def save_args(self) -> list[str]:
        """Tokens iptables-save prints (always ``--set-xmark``)."""
        return ["-j", "MARK", "--set-xmark", f"0x{self.value:x}/0x{self.mask:x}"]


@dataclass(frozen=True, slots=True)
class DnatTarget:
    """``-j DNAT --to-destination IP[:PORT]``."""

    address: str
    port: int | None = None

    @property
    def to_destination(self) -> str:
        """The ``--to-destination`` value (IPv6 addresses bracketed when a port follows)."""
        if self.port is None:
            return self.address
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    def save_args(self) -> list[str]:
        """Tokens iptables-save prints."""
        return ["-j", "DNAT", "--to-destination", self.to_destination]


_SET_DNAT_ADDRESS, _SET_DNAT_PORT = (
    getattr(DnatTarget, field).__set__ for field in ("address", "port")
)


def new_dnat(address: str, port: int | None) -> DnatTarget:
    """``DnatTarget(address, port)`` made through its slots' descriptors (see :func:`new_jump`).

    One per endpoint: ~100,000 at 10,000 Services x 10 endpoints.
    """
    made = _new_object(DnatTarget)
    _SET_DNAT_ADDRESS(made, address)
    _SET_DNAT_PORT(made, port)
    return made


@dataclass(frozen=True, slots=True)
class MasqueradeTarget:
    """``-j MASQUERADE [--random] [--random-fully]``: source NAT to the outgoing address."""

    random: bool = False
    random_fully: bool = False

    def save_args(self) -> list[str]:
        """Tokens iptables-save prints."""
        out = ["-j", "MASQUERADE"]
        if self.random:
            out.append("--random")
        if self.random_fully:
            out.append("--random-fully")
        return out


Target: TypeAlias = (
    JumpTarget | RejectTarget | MarkTarget | DnatTarget | MasqueradeTarget | RedirectTarget
)
