"""The rule model: what the kernel stores for one iptables rule, chain, table and ruleset.

A :class:`Rule` keeps two things: the argument text it was created from (``text``, exactly as
kube-proxy writes it to iptables-restore) and the parsed structure the kernel holds (generic
address/interface/protocol matches, an ordered tuple of match extensions, one target). The
structure is what the interpreter evaluates and what iptables-save prints back
(:meth:`Rule.save_text`), in the kernel's canonical order and spelling.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import operator
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeAlias, overload

from svcsim.netfilter.addresses import cidr_text
from svcsim.netfilter.extensions import (
    STANDARD_VERDICTS,
    AddrTypeMatch,
    CommentMatch,
    ConntrackMatch,
    DnatTarget,
    JumpTarget,
    MarkMatch,
    MarkTarget,
    MasqueradeTarget,
    NfacctMatch,
    PortMatch,
    PortRange,
    RecentMatch,
    RejectTarget,
    StatisticMatch,
    negation,
    save_string,
)
from svcsim.netfilter.extensions import Match as KubeMatch
from svcsim.netfilter.extensions import Target as KubeTarget
from svcsim.netfilter.other_extensions import (
    ExtOption,
    OtherMatch,
    OtherTarget,
    UnknownMatch,
    UnknownTarget,
)

Match: TypeAlias = KubeMatch | OtherMatch | UnknownMatch
"""Any match extension: kube-proxy's typed ones, other software's, or one svcsim does not know."""
Target: TypeAlias = KubeTarget | OtherTarget | UnknownTarget
"""Any target: kube-proxy's typed ones, other software's, or one svcsim does not know."""

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}
"""Built-in chains of each table, in the order iptables-save lists them."""

__all__ = [
    "BUILTIN_CHAINS",
    "STANDARD_VERDICTS",
    "AddrTypeMatch",
    "AddressMatch",
    "Chain",
    "CommentMatch",
    "ConntrackMatch",
    "DnatTarget",
    "ExtOption",
    "InterfaceMatch",
    "JumpTarget",
    "MarkMatch",
    "MarkTarget",
    "MasqueradeTarget",
    "Match",
    "NfacctMatch",
    "OtherMatch",
    "OtherTarget",
    "PortMatch",
    "PortRange",
    "ProtocolMatch",
    "RecentMatch",
    "RejectTarget",
    "Rule",
    "Ruleset",
    "StatisticMatch",
    "Table",
    "Target",
    "UnknownMatch",
    "UnknownTarget",
    "save_string",
    "target_words",
]


@dataclass(frozen=True, slots=True)
class AddressMatch:
    """``[!] -s/-d ADDR[/PREFIX]``: the packet's address lies in ``network`` (or not)."""

    network: IPNetwork
    negated: bool = False

    def matches(self, address: IPAddress) -> bool:
        """True if ``address`` satisfies the match."""
        inside = address.version == self.network.version and address in self.network
        return inside != self.negated


_SET_ADDRESS_NETWORK, _SET_ADDRESS_NEGATED = (
    getattr(AddressMatch, field).__set__ for field in ("network", "negated")
)


def new_address(network: IPNetwork, negated: bool = False) -> AddressMatch:
    """``AddressMatch(network, negated)`` made through its slots' descriptors.

    As :func:`new_rule` does for rules: one per endpoint's hairpin rule (~100,000 at 10,000
    Services). AddressMatch has no ``__post_init__`` (the tests compare the two).
    """
    made = object.__new__(AddressMatch)
    _SET_ADDRESS_NETWORK(made, network)
    _SET_ADDRESS_NEGATED(made, negated)
    return made


@dataclass(frozen=True, slots=True)
class InterfaceMatch:
    """``[!] -i/-o NAME``; a trailing ``+`` matches any interface with that prefix."""

    name: str
    negated: bool = False

    def matches(self, interface: str | None) -> bool:
        """True if ``interface`` satisfies the match (no interface never matches a name)."""
        if interface is None:
            hit = False
        elif self.name.endswith("+"):
            hit = interface.startswith(self.name[:-1])
        else:
            hit = interface == self.name
        return hit != self.negated


@dataclass(frozen=True, slots=True)
class ProtocolMatch:
    """``[!] -p PROTO`` (lower-case name: tcp, udp, sctp, icmp, all)."""

    name: str
    negated: bool = False

    def matches(self, protocol: str) -> bool:
        """True if ``protocol`` satisfies the match."""
        hit = self.name == "all" or protocol == self.name
        return hit != self.negated


# --- rules, chains, tables ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: generic matches, match extensions in order, and an optional target.

    Build rules with :func:`svcsim.netfilter.text.parse_rule`, which parses the argument text the
    way iptables does; ``text`` keeps that text for rendering iptables-restore input.
    """

    text: str
    source: AddressMatch | None = None
    destination: AddressMatch | None = None
    in_interface: InterfaceMatch | None = None
    out_interface: InterfaceMatch | None = None
    protocol: ProtocolMatch | None = None
    matches: tuple[Match, ...] = ()
    target: Target | None = None

    def save_args(self) -> list[str]:
        """The rule's tokens as iptables-save prints them (without ``-A CHAIN``)."""
        out: list[str] = []
        if self.source is not None:
            out += [*negation(self.source.negated), "-s", cidr_text(self.source.network)]
        if self.destination is not None:
            out += [*negation(self.destination.negated), "-d", cidr_text(self.destination.network)]
        if self.in_interface is not None:
            out += [*negation(self.in_interface.negated), "-i", self.in_interface.name]
        if self.out_interface is not None:
            out += [*negation(self.out_interface.negated), "-o", self.out_interface.name]
        if self.protocol is not None:
            out += [*negation(self.protocol.negated), "-p", self.protocol.name]
        for match in self.matches:
            out += match.save_args()
        if self.target is not None:
            out += self.target.save_args()
        return out

    def save_text(self, memo: dict[int, str] | None = None) -> str:
        """The rule as iptables-save prints it (without ``-A CHAIN``): :meth:`save_args` joined.

        ``memo``: printed words by object identity, for a caller printing many rules that
        share objects (a ruleset's: a Service's comment, the jump to KUBE-MARK-MASQ, the
        very same tuple of match extensions); it must not outlive them.
        """
        if memo is None or self.in_interface is not None or self.out_interface is not None:
            return " ".join(self.save_args())
        matches = self.matches
        words = memo.get(id(matches))
        if words is None:
            words = memo[id(matches)] = " ".join([_words(match, memo) for match in matches])
        target = self.target
        if target is not None:
            kind = type(target)
            if kind is JumpTarget and not target.goto:  # type: ignore[union-attr]
                said = "-j " + target.chain  # type: ignore[union-attr]  # cheaper than a memo
            elif kind is DnatTarget:
                said = target_words(target)  # each endpoint's own: a memo entry is never hit
            else:
                found = memo.get(id(target))
                if found is None:
                    found = memo[id(target)] = target_words(target)
                said = found
            words = f"{words} {said}" if words else said
        source, destination, protocol = self.source, self.destination, self.protocol
        if destination is None and (source is None or protocol is None):
            # The shapes of ~200,000 rules at 10,000 Services, written in one go: an
            # endpoint's hairpin rule (a source) and its DNAT rule (a protocol).
            if source is not None:
                front = f"{'! ' if source.negated else ''}-s {cidr_text(source.network)}"
            elif protocol is not None:
                front = f"{'! ' if protocol.negated else ''}-p {protocol.name}"
            else:
                return words
            return f"{front} {words}" if words else front
        out = []
        if source is not None:
            out.append(_address_words("-s", source))
        if destination is not None:
            out.append(_address_words("-d", destination))
        if protocol is not None:
            out.append(f"! -p {protocol.name}" if protocol.negated else "-p " + protocol.name)
        if words:
            out.append(words)
        return " ".join(out)

    def find(self, kind: type[Match]) -> Match | None:
        """The first match extension of type ``kind``, or None."""
        return next((m for m in self.matches if isinstance(m, kind)), None)


_RULE_FIELDS: Final = (
    "text",
    "source",
    "destination",
    "in_interface",
    "out_interface",
    "protocol",
    "matches",
    "target",
)
_SET_RULE_FIELDS: Final = tuple(getattr(Rule, name).__set__ for name in _RULE_FIELDS)


def new_rule(
    text: str,
    source: AddressMatch | None,
    destination: AddressMatch | None,
    in_interface: InterfaceMatch | None,
    out_interface: InterfaceMatch | None,
    protocol: ProtocolMatch | None,
    matches: tuple[Match, ...],
    target: Target | None,
) -> Rule:
    """``Rule(text, source, ..., target)``: the same value, made in half the time.

    The frozen dataclass's ``__init__`` stores each field through ``object.__setattr__``; a
    compiler making 320,000 rules (10,000 Services) stores them through the slots' own
    descriptors instead (Rule has no ``__post_init__``, so nothing else differs).
    """
    made = _new_object(Rule)
    set_text, set_source, set_dst, set_in, set_out, set_protocol, set_matches, set_target = (
        _SET_RULE_FIELDS
    )
    set_text(made, text)
    set_source(made, source)
    set_dst(made, destination)
    set_in(made, in_interface)
    set_out(made, out_interface)
    set_protocol(made, protocol)
    set_matches(made, matches)
    set_target(made, target)
    return made


_new_object: Final = object.__new__


@dataclass(frozen=True, slots=True)
class Chain:
    """A chain: built-in ones have a ``policy`` (ACCEPT/DROP), user chains have None."""

    name: str
    rules: tuple[Rule, ...] = ()
    policy: str | None = None

    @property
    def is_builtin(self) -> bool:
        """True for built-in chains (they have a policy)."""
        return self.policy is not None


_SET_CHAIN_NAME, _SET_CHAIN_RULES, _SET_CHAIN_POLICY = (
    getattr(Chain, field).__set__ for field in ("name", "rules", "policy")
)


def new_chain(name: str, rules: tuple[Rule, ...], policy: str | None = None) -> Chain:
    """``Chain(name, rules, policy)`` made through its slots' descriptors (see :func:`new_rule`).

    ~110,000 chains at 10,000 Services x 10 endpoints; Chain has no ``__post_init__``.
    """
    made = _new_object(Chain)
    _SET_CHAIN_NAME(made, name)
    _SET_CHAIN_RULES(made, rules)
    _SET_CHAIN_POLICY(made, policy)
    return made


Positions: TypeAlias = tuple[dict[str, int], dict[str, int | None], tuple[int, ...]]
"""A table's chain places: shared, its own added (None: deleted), deleted places ascending."""


CHUNK: Final = 1024
"""Chains per piece of a table's chunked storage (:meth:`Table.chunks`)."""


class Table:
    """A table (filter, nat, mangle, raw) and its chains in order: a frozen value.

    Equal (and hashed) as the frozen dataclass ``Table(name, chains)`` would be. Besides the
    chains it keeps, derived once and never changed: the chains by name, and on first use
    their names in order (:meth:`names`) and how many rules jump to each chain
    (:meth:`jump_count`). :mod:`svcsim.netfilter.table_splice` makes a table from another one
    with a few chains changed and derives those from the other's without a pass over every
    chain (a 10,000-Service nat table holds ~110,000 chains). For that the chains are also
    kept in pieces of about :data:`CHUNK` (:meth:`chunks`): a table spliced from another
    shares its unchanged pieces and makes its flat :attr:`chains` only when read.
    """

    __slots__ = (
        "_chains",
        "_chunks",
        "_count",
        "_index",
        "_index_changes",
        "_jump_changes",
        "_jumps",
        "_names",
        "_positions",
        "_positions_added",
        "_positions_gone",
        "_view",
        "name",
    )
    name: str
    _chains: tuple[Chain, ...] | None
    """The chains in order, once made (None: only :attr:`_chunks` so far)."""
    _chunks: tuple[tuple[Chain, ...], ...] | None
    """The same chains in pieces, once made (None: only :attr:`_chains` so far)."""
    _count: int
    """How many chains."""
    _index: dict[str, Chain]
    _index_changes: dict[str, Chain | None]
    """Chains by name changed since :attr:`_index` (None: gone); :attr:`_index` is shared
    with the table this one was derived from and never changed."""
    _names: tuple[str, ...] | None
    _jumps: dict[str, int] | None
    _jump_changes: dict[str, int]
    """Jump counts to add to :attr:`_jumps` (shared the same way)."""
    _positions: dict[str, int] | None
    """Each chain's index in :attr:`chains` by name, once made; shared (never changed) with
    tables derived from this one whose chains keep those places."""
    _positions_added: dict[str, int | None]
    """Places of chains a derived table added after the shared ones (None: deleted)."""
    _positions_gone: tuple[int, ...]
    """Places (in the shared numbering) of chains a derived table deleted, ascending: a
    chain's index is its place less the deleted places before it."""
    _view: ChainNames | None
    """:meth:`names_view`, once made."""

    def __init__(self, name: str, chains: tuple[Chain, ...] = ()) -> None:
        setter = object.__setattr__
        setter(self, "name", name)
        setter(self, "_chains", chains)
        setter(self, "_chunks", None)
        setter(self, "_count", len(chains))
        setter(self, "_index", {c.name: c for c in chains})
        setter(self, "_index_changes", {})
        setter(self, "_names", None)
        setter(self, "_jumps", None)
        setter(self, "_jump_changes", {})
        setter(self, "_positions", None)
        setter(self, "_positions_added", {})
        setter(self, "_positions_gone", ())
        setter(self, "_view", None)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of a frozen Table")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of a frozen Table")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Table)
        return (self.name, self.chains) == (other.name, other.chains)

    def __hash__(self) -> int:
        return hash((self.name, self.chains))

    def __repr__(self) -> str:
        return f"Table(name={self.name!r}, chains={self.chains!r})"

    @property
    def chains(self) -> tuple[Chain, ...]:
        """The chains in order (joined from :meth:`chunks` when first read)."""
        chains = self._chains
        if chains is None:
            chunks = self._chunks
            assert chunks is not None  # a table holds one form or the other
            chains = tuple(itertools.chain.from_iterable(chunks))
            object.__setattr__(self, "_chains", chains)
        return chains

    def chunks(self) -> tuple[tuple[Chain, ...], ...]:
        """:attr:`chains` in consecutive pieces of about :data:`CHUNK` (no empty piece)."""
        chunks = self._chunks
        if chunks is None:
            chains = self.chains
            chunks = tuple(chains[i : i + CHUNK] for i in range(0, len(chains), CHUNK))
            object.__setattr__(self, "_chunks", chunks)
        return chunks

    def chain_count(self) -> int:
        """``len(self.chains)``, without joining the pieces."""
        return self._count

    def _each_chain(self) -> Iterable[Chain]:
        """The chains in order, from whichever form the table holds (nothing joined)."""
        chains = self._chains
        if chains is not None:
            return chains
        return itertools.chain.from_iterable(self.chunks())

    @classmethod
    def derived(
        cls,
        name: str,
        chunks: tuple[tuple[Chain, ...], ...],
        index: tuple[dict[str, Chain], dict[str, Chain | None]],
        names: tuple[str, ...] | None,
        jumps: tuple[dict[str, int], dict[str, int]] | None,
        positions: Positions | None = None,
    ) -> Table:
        """A table whose by-name index (and names, jump counts) the caller already derived.

        For :mod:`svcsim.netfilter.table_splice` only: ``chunks`` are the chains in pieces
        (:meth:`chunks`; none empty), ``index`` a shared by-name map and
        this table's changes to it (together: the chains by name), ``names`` (None: derived on
        use) the chains' names in order, ``jumps`` (None: counted on use) shared jump counts
        and this table's changes to them, ``positions`` (None: made on use) shared places,
        the places of chains added (or deleted) since and the places deleted
        (:meth:`position_parts`). Shared maps are never changed afterwards.
        """
        table = object.__new__(cls)
        setter = object.__setattr__
        setter(table, "name", name)
        setter(table, "_chains", None)
        setter(table, "_chunks", chunks)
        setter(table, "_count", sum(map(len, chunks)))
        setter(table, "_index", index[0])
        setter(table, "_index_changes", index[1])
        setter(table, "_names", names)
        setter(table, "_jumps", None if jumps is None else jumps[0])
        setter(table, "_jump_changes", {} if jumps is None else jumps[1])
        setter(table, "_positions", None if positions is None else positions[0])
        setter(table, "_positions_added", {} if positions is None else positions[1])
        setter(table, "_positions_gone", () if positions is None else positions[2])
        setter(table, "_view", None)
        return table

    def chain(self, name: str) -> Chain | None:
        """The chain called ``name``, or None."""
        changes = self._index_changes
        if changes and name in changes:
            return changes[name]
        return self._index.get(name)

    @property
    def by_name(self) -> Mapping[str, Chain]:
        """The chains by name (read only; its ``__contains__`` is a fast membership test)."""
        changes = self._index_changes
        if changes:
            merged = self._index.copy()
            for name, chain in changes.items():
                if chain is None:
                    merged.pop(name, None)
                else:
                    merged[name] = chain
            object.__setattr__(self, "_index", merged)
            object.__setattr__(self, "_index_changes", {})
        return self._index

    def index_parts(self) -> tuple[dict[str, Chain], dict[str, Chain | None]]:
        """The shared by-name map and this table's changes to it (read only)."""
        return self._index, self._index_changes

    def names(self) -> tuple[str, ...]:
        """The chains' names in order (what ``iptables-save`` lists), derived once."""
        names = self._names
        if names is None:
            names = tuple(map(_NAME_OF, self._each_chain()))
            object.__setattr__(self, "_names", names)
        return names

    def known_names(self) -> tuple[str, ...] | None:
        """:meth:`names` if derived (or carried over) already, else None."""
        return self._names

    def names_view(self) -> ChainNames:
        """The chains' names as a sequence that reads :meth:`names` only when used.

        One view per table (made on first call), so whatever is keyed by its identity
        (a sync plan) is shared by everyone asking about the same table.
        """
        view = self._view
        if view is None:
            view = ChainNames(self)
            object.__setattr__(self, "_view", view)
        return view

    def position(self, chain: str) -> int | None:
        """The index of chain ``chain`` in :attr:`chains` (None: no such chain).

        The places of all chains are mapped once (a C-level pass), then carried over to
        tables made from this one that keep them (:mod:`svcsim.netfilter.table_splice`), so a
        one-Service restore into a 110,000-chain table finds its chains without a scan.
        """
        positions = self._positions
        if positions is None:
            names = self.names()
            # Built backwards so that, were a name held twice, its first place wins.
            positions = dict(zip(reversed(names), range(len(names) - 1, -1, -1), strict=True))
            object.__setattr__(self, "_positions", positions)
            object.__setattr__(self, "_positions_added", {})
            object.__setattr__(self, "_positions_gone", ())
        added = self._positions_added
        place = added[chain] if added and chain in added else positions.get(chain)
        gone = self._positions_gone
        if place is None or not gone:
            return place
        return place - bisect.bisect_left(gone, place)

    def position_parts(self) -> Positions | None:
        """The places: shared, added (None: deleted) and deleted (see :meth:`position`).

        None if not mapped yet. Read only.
        """
        if self._positions is None:
            return None
        return self._positions, self._positions_added, self._positions_gone

    def jump_count(self, chain: str) -> int:
        """How many rules of this table jump (``-j``/``-g``) to ``chain``; counted once."""
        jumps = self._jumps
        if jumps is None:
            # Every rule's target, the jumps among them, their chains, counted: all in C
            # (a 10,000-Service nat table holds ~320,000 rules).
            rules = itertools.chain.from_iterable(map(_RULES_OF, self._each_chain()))
            targets = map(_TARGET_OF, rules)
            jumps = dict(Counter(map(_NAME_OF_CHAIN, filter(_IS_JUMP, targets))))
            object.__setattr__(self, "_jumps", jumps)
            object.__setattr__(self, "_jump_changes", {})
        return jumps.get(chain, 0) + self._jump_changes.get(chain, 0)

    def jump_parts(self) -> tuple[dict[str, int], dict[str, int]] | None:
        """The shared jump counts and this table's changes, if counted yet (read only)."""
        return None if self._jumps is None else (self._jumps, self._jump_changes)

    def __contains__(self, name: object) -> bool:
        changes = self._index_changes
        if changes and name in changes:
            return changes[name] is not None
        return name in self._index


def _words(extension: Match, memo: dict[int, str]) -> str:
    """``extension``'s printed words, memoised in ``memo`` by its identity.

    A comment is printed without the memo: most are an endpoint's own (``"ns/svc:p ->
    IP:PORT"``, ~100,000 at 10,000 Services), an entry never hit again; the tuples of
    matches holding the shared ones are memoised themselves (:meth:`Rule.save_text`).
    """
    if type(extension) is CommentMatch:
        return "-m comment --comment " + save_string(extension.comment)
    words = memo.get(id(extension))
    if words is None:
        words = memo[id(extension)] = " ".join(extension.save_args())
    return words


def target_words(target: Target) -> str:
    """``" ".join(target.save_args())``, written directly for the targets kube-proxy writes most.

    A 10,000-Service ruleset holds ~200,000 targets of their own (each endpoint's DNAT, each
    jump to its KUBE-SEP chain): each is printed once per render.
    """
    kind = type(target)
    if kind is JumpTarget:
        return f"-g {target.chain}" if target.goto else "-j " + target.chain  # type: ignore[union-attr]
    if kind is DnatTarget:
        address, port = target.address, target.port  # type: ignore[union-attr]
        if port is not None and ":" not in address:
            return f"-j DNAT --to-destination {address}:{port}"
        return "-j DNAT --to-destination " + target.to_destination  # type: ignore[union-attr]
    return " ".join(target.save_args())


def _address_words(option: str, match: AddressMatch) -> str:
    """``[!] -s/-d ADDR/PREFIX`` as iptables-save prints an address match."""
    words = f"{option} {cidr_text(match.network)}"
    return f"! {words}" if match.negated else words


_NAME_OF: Final = operator.attrgetter("name")
_RULES_OF: Final = operator.attrgetter("rules")
_TARGET_OF: Final = operator.attrgetter("target")
_NAME_OF_CHAIN: Final = operator.attrgetter("chain")
_IS_JUMP: Final = JumpTarget.__instancecheck__
"""``isinstance(target, JumpTarget)`` as a C-level callable (what :func:`add_jumps` asks)."""


def add_jumps(counts: dict[str, int], rules: tuple[Rule, ...], sign: int) -> None:
    """Add ``sign`` to ``counts[chain]`` for each rule of ``rules`` that jumps to ``chain``."""
    for held in rules:
        target = held.target
        if isinstance(target, JumpTarget):
            counts[target.chain] = counts.get(target.chain, 0) + sign


class ChainNames(Sequence[str]):
    """A table's chain names in order (:meth:`Table.names`), read from the table when used.

    What ``iptables-save`` lists for the table. A sync passes them to its plan, which reads
    them only on a slow path: the view keeps a table whose names are not derived yet (one
    that a partial restore deleted chains from) from deriving ~110,000 of them for nothing.
    Equal to a tuple (or view) of the same names; membership asks the table's index.
    """

    __slots__ = ("table",)

    def __init__(self, table: Table) -> None:
        self.table = table
        """The table named."""

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[str, ...]: ...

    def __getitem__(self, index: int | slice) -> str | tuple[str, ...]:
        return self.table.names()[index]

    def __len__(self) -> int:
        return self.table.chain_count()

    def __iter__(self) -> Iterator[str]:
        return iter(self.table.names())

    def __contains__(self, name: object) -> bool:
        return name in self.table

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ChainNames):
            return self.table.names() == other.table.names()
        if isinstance(other, tuple):
            return self.table.names() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to tuples, but no stable value

    def __repr__(self) -> str:
        return f"ChainNames({self.table.name!r}, {len(self)} chains)"


@dataclass(frozen=True, slots=True)
class Ruleset:
    """The iptables state of one node (one IP family): its tables in order."""

    tables: tuple[Table, ...] = ()
    _index: dict[str, Table] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {t.name: t for t in self.tables})

    def table(self, name: str) -> Table | None:
        """The table called ``name``, or None."""
        return self._index.get(name)

    def chain(self, table: str, name: str) -> Chain | None:
        """The chain ``name`` of ``table``, or None."""
        t = self._index.get(table)
        return t.chain(name) if t is not None else None

    def rules(self) -> Iterator[tuple[str, str, Rule]]:
        """Every rule as ``(table, chain, rule)``, in order."""
        for t in self.tables:
            for c in t.chains:
                for r in c.rules:
                    yield t.name, c.name, r

    def rule_count(self) -> int:
        """Number of rules in all tables."""
        return sum(1 for _ in self.rules())
