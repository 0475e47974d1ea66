"""The statements of kube-proxy's nf_tables rules as data, and a table ready to evaluate.

:mod:`svcsim.netfilter.nft_parse` builds these from rule text; :mod:`svcsim.netfilter.nft_eval`
evaluates them. One class per statement kind kube-proxy's nftables proxier writes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from svcsim.netfilter.nftables import NftChain

Selector = Literal["ip saddr", "ip daddr", "meta l4proto", "th dport"]
SELECTORS: Final[tuple[Selector, ...]] = ("ip saddr", "ip daddr", "meta l4proto", "th dport")
VERDICTS: Final = ("jump", "goto", "return", "accept", "drop", "reject")
L4_PROTOCOLS: Final = ("tcp", "udp", "sctp")


@dataclass(frozen=True, slots=True)
class Verdict:
    """``jump``/``goto`` (with ``chain``), ``return``, ``accept``, ``drop`` or ``reject``."""

    kind: str
    chain: str | None = None

    def text(self) -> str:
        """As nft writes it."""
        return self.kind if self.chain is None else f"{self.kind} {self.chain}"


@dataclass(frozen=True, slots=True)
class AddrMatch:
    """``ip saddr|daddr [!=] X``: against networks, or a named set when ``set_name``."""

    field: Literal["saddr", "daddr"]
    negated: bool
    networks: tuple[ipaddress.IPv4Network, ...] = ()
    set_name: str | None = None


@dataclass(frozen=True, slots=True)
class ProtoMatch:
    """``meta l4proto PROTO``."""

    protocol: str


@dataclass(frozen=True, slots=True)
class DportMatch:
    """``tcp dport PORT``: the protocol is implied (nft adds ``meta l4proto tcp``)."""

    protocol: str
    port: int


@dataclass(frozen=True, slots=True)
class FibLocal:
    """``fib saddr|daddr type local``: the address is one of this node's."""

    field: Literal["saddr", "daddr"]


@dataclass(frozen=True, slots=True)
class CtState:
    """``ct state new,...``."""

    states: frozenset[str]


@dataclass(frozen=True, slots=True)
class MarkMatch:
    """``mark and MASK == VALUE``."""

    mask: int
    value: int


@dataclass(frozen=True, slots=True)
class MarkSet:
    """``mark set mark or|xor VALUE``."""

    op: Literal["or", "xor"]
    value: int


@dataclass(frozen=True, slots=True)
class MapLookup:
    """``SEL . SEL ... vmap @map`` or ``vmap { KEY : VERDICT ... }`` (``inline``)."""

    selectors: tuple[Selector, ...]
    map_name: str | None = None
    inline: tuple[tuple[tuple[str, ...], Verdict], ...] = ()


@dataclass(frozen=True, slots=True)
class Numgen:
    """``numgen random mod N [offset M] vmap { K : VERDICT, ... }``."""

    modulus: int
    offset: int
    choices: tuple[tuple[int, Verdict], ...]


@dataclass(frozen=True, slots=True)
class SetUpdate:
    """``update @set { ip saddr }``: add the address, or refresh its timeout."""

    set_name: str
    selector: Selector


@dataclass(frozen=True, slots=True)
class Dnat:
    """``dnat to IP[:PORT]``."""

    address: str
    port: int | None


@dataclass(frozen=True, slots=True)
class Masquerade:
    """``masquerade [fully-random]``."""

    fully_random: bool


@dataclass(frozen=True, slots=True)
class Counter:
    """``counter``: counts, never changes the verdict."""


Statement = (
    AddrMatch
    | ProtoMatch
    | DportMatch
    | FibLocal
    | CtState
    | MarkMatch
    | MarkSet
    | MapLookup
    | Numgen
    | SetUpdate
    | Dnat
    | Masquerade
    | Counter
    | Verdict
)


@dataclass(frozen=True, slots=True)
class ParsedRule:
    """One rule: its chain, 1-based position, text (with comment) and statements in order."""

    chain: str
    number: int
    text: str
    statements: tuple[Statement, ...]


@dataclass(frozen=True, slots=True)
class ParsedTable:
    """A table ready to evaluate: rules per chain, base chains, set and map contents."""

    name: str
    chains: Mapping[str, tuple[ParsedRule, ...]]
    """Read only (a :class:`~svcsim.netfilter.derived.LayeredMap` when spliced)."""
    base_chains: tuple[NftChain, ...]
    sets: dict[str, frozenset[tuple[str, ...]]]
    maps: Mapping[str, Mapping[tuple[str, ...], Verdict]]
    """Each map's entries (read only; a map may be a ``LayeredMap``)."""
    timeouts: dict[str, int | None]
    """Each set's element timeout in seconds (None: elements never expire)."""

    def hook_chains(self, hook: str) -> tuple[NftChain, ...]:
        """The base chains at ``hook`` in priority order (lowest first, as the kernel runs them)."""
        chains = [c for c in self.base_chains if c.hook == hook]
        return tuple(sorted(chains, key=lambda c: c.priority or 0))
