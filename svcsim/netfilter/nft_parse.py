"""Parse the nf_tables rules kube-proxy writes into structured statements, once per table.

:class:`~svcsim.netfilter.nftables.NftTable` keeps rules as knftables-syntax text. The
evaluator (:mod:`svcsim.netfilter.nft_eval`) needs them as data: :func:`parse_table` turns a
table into a :class:`ParsedTable` (chains of :class:`ParsedRule`, sets as address lookups, maps
as key -> :class:`Verdict`). The grammar is exactly the subset kube-proxy's nftables proxier
(pkg/proxy/nftables/proxier.go @b0f823e6, compiled by :mod:`svcsim.proxy.nftables`) emits:

* matches ``ip saddr|daddr [!=] ADDR|CIDR|{ ... }|@set``, ``meta l4proto PROTO``,
  ``tcp|udp|sctp dport PORT``, ``fib saddr|daddr type local``, ``ct state STATE[,STATE]``,
  ``mark and MASK == VALUE`` (``meta mark`` too);
* lookups: a concatenation of ``ip saddr``, ``ip daddr``, ``meta l4proto``, ``th dport`` with
  ``vmap @map`` or an anonymous ``vmap { KEY : VERDICT, ... }``, and
  ``numgen random mod N [offset M] vmap { 0 : goto CHAIN, ... }``;
* statements ``mark set mark or|xor VALUE``, ``update @set { ip saddr }``, ``counter``,
  ``dnat to IP[:PORT]``, ``masquerade [fully-random]``;
* verdicts ``jump``/``goto CHAIN``, ``return``, ``accept``, ``drop``, ``reject``.

Anything else is a :class:`NftParseError` naming the chain, the rule and the word: a rule that
cannot be read is never skipped. The parse is pure; caching it is the caller's business. The
statement types live in :mod:`svcsim.netfilter.nft_statements`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from svcsim.memo import BoundedMemo
from svcsim.netfilter.nft_statements import (
    L4_PROTOCOLS,
    SELECTORS,
    VERDICTS,
    AddrMatch,
    Counter,
    CtState,
    Dnat,
    DportMatch,
    FibLocal,
    MapLookup,
    MarkMatch,
    MarkSet,
    Masquerade,
    Numgen,
    ParsedRule,
    ParsedTable,
    ProtoMatch,
    Selector,
    SetUpdate,
    Statement,
    Verdict,
)
from svcsim.netfilter.nftables import NftElement, NftTable


class NftParseError(ValueError):
    """A rule or element the evaluator cannot read (the message names it)."""


_TOKEN = re.compile(r"[{},]|[^\s{},]+")


class _Tokens:
    """A cursor over one rule's words; errors name the rule."""

    def __init__(self, text: str, where: str) -> None:
        self.words = _TOKEN.findall(text)
        self.pos = 0
        self.where = where

    def peek(self, ahead: int = 0) -> str | None:
        i = self.pos + ahead
        return self.words[i] if i < len(self.words) else None

    def take(self, expected: str | None = None) -> str:
        word = self.peek()
        if word is None:
            raise self.error("unexpected end of rule")
        if expected is not None and word != expected:
            raise self.error(f"expected {expected!r}, found {word!r}")
        self.pos += 1
        return word

    def error(self, message: str) -> NftParseError:
        return NftParseError(f"{self.where}: {message}")

    def braced(self) -> list[list[str]]:
        """``{ a b , c d }``: the comma-separated groups of words."""
        self.take("{")
        groups: list[list[str]] = [[]]
        while (word := self.take()) != "}":
            if word == ",":
                groups.append([])
            else:
                groups[-1].append(word)
        return [g for g in groups if g]


def _number(text: str, tokens: _Tokens) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise tokens.error(f"{text!r} is not a number") from None


def _network(text: str, tokens: _Tokens) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        raise tokens.error(f"{text!r} is not an IPv4 address or CIDR") from None


def _verdict(words: list[str], tokens: _Tokens) -> Verdict:
    if words and words[0] in ("jump", "goto") and len(words) == 2:
        return Verdict(words[0], words[1])
    if len(words) == 1 and words[0] in VERDICTS[2:]:
        return Verdict(words[0])
    raise tokens.error(f"{' '.join(words)!r} is not a verdict")


def _selector(tokens: _Tokens) -> Selector | None:
    pair = f"{tokens.peek()} {tokens.peek(1)}"
    for selector in SELECTORS:
        if pair == selector:
            return selector
    return None


def _lookup(tokens: _Tokens, first: Selector) -> MapLookup:
    selectors = [first]
    while tokens.peek() == ".":
        tokens.take()
        selector = _selector(tokens)
        if selector is None:
            raise tokens.error(f"cannot concatenate {tokens.peek()!r}")
        tokens.pos += 2
        selectors.append(selector)
    tokens.take("vmap")
    if (word := tokens.peek()) is not None and word.startswith("@"):
        tokens.take()
        return MapLookup(tuple(selectors), map_name=word[1:])
    inline = []
    for group in tokens.braced():
        if ":" not in group:
            raise tokens.error(f"map element {' '.join(group)!r} has no ':'")
        colon = group.index(":")
        key = tuple(w for w in group[:colon] if w != ".")
        inline.append((key, _verdict(group[colon + 1 :], tokens)))
    return MapLookup(tuple(selectors), inline=tuple(inline))


def _address_match(tokens: _Tokens, selector: Selector) -> AddrMatch:
    field: Literal["saddr", "daddr"] = "saddr" if selector == "ip saddr" else "daddr"
    negated = tokens.peek() == "!="
    if negated:
        tokens.take()
    word = tokens.peek()
    if word is None:
        raise tokens.error(f"{selector} needs a value")
    if word.startswith("@"):
        tokens.take()
        return AddrMatch(field, negated, set_name=word[1:])
    if word == "{":
        items = [w for group in tokens.braced() for w in group]
        return AddrMatch(field, negated, tuple(_network(w, tokens) for w in items))
    return AddrMatch(field, negated, (_network(tokens.take(), tokens),))


def _mark(tokens: _Tokens) -> Statement:
    if tokens.peek() == "set":
        tokens.take()
        if tokens.peek() == "meta":
            tokens.take()
        tokens.take("mark")
        op = tokens.take()
        if op not in ("or", "xor"):
            raise tokens.error(f"mark set with {op!r} is not modelled")
        return MarkSet("or" if op == "or" else "xor", _number(tokens.take(), tokens))
    tokens.take("and")
    mask = _number(tokens.take(), tokens)
    tokens.take("==")
    return MarkMatch(mask, _number(tokens.take(), tokens))


def _dnat(tokens: _Tokens) -> Dnat:
    tokens.take("to")
    target = tokens.take()
    address, _, port = target.partition(":")
    _network(address, tokens)
    return Dnat(address, _number(port, tokens) if port else None)


def _statement(tokens: _Tokens) -> Statement:
    selector = _selector(tokens)
    if selector is not None:
        tokens.pos += 2
        if tokens.peek() == "." or tokens.peek() == "vmap":
            return _lookup(tokens, selector)
        if selector == "meta l4proto":
            protocol = tokens.take()
            if protocol not in L4_PROTOCOLS:
                raise tokens.error(f"meta l4proto {protocol!r} is not modelled")
            return ProtoMatch(protocol)
        if selector == "th dport":
            raise tokens.error("th dport outside a concatenation is not modelled")
        return _address_match(tokens, selector)
    word = tokens.take()
    if word in L4_PROTOCOLS:
        tokens.take("dport")
        return DportMatch(word, _number(tokens.take(), tokens))
    if word == "fib":
        field = tokens.take()
        if field not in ("saddr", "daddr"):
            raise tokens.error(f"fib {field!r} is not modelled")
        tokens.take("type")
        tokens.take("local")
        return FibLocal("saddr" if field == "saddr" else "daddr")
    if word == "ct":
        tokens.take("state")
        return CtState(frozenset(tokens.take().split(",")))
    if word == "meta" and tokens.peek() == "mark":
        tokens.take()
        return _mark(tokens)
    if word == "mark":
        return _mark(tokens)
    if word == "numgen":
        tokens.take("random")
        tokens.take("mod")
        modulus = _number(tokens.take(), tokens)
        offset = 0
        if tokens.peek() == "offset":
            tokens.take()
            offset = _number(tokens.take(), tokens)
        if modulus < 1:
            raise tokens.error("numgen mod must be at least 1")
        lookup = _lookup_inline(tokens)
        return Numgen(modulus, offset, lookup)
    if word == "update":
        name = tokens.take()
        if not name.startswith("@"):
            raise tokens.error(f"update needs a @set, found {name!r}")
        group = tokens.braced()
        key = " ".join(group[0]) if len(group) == 1 else ""
        if key not in ("ip saddr", "ip daddr"):
            raise tokens.error(f"update key {key!r} is not modelled")
        return SetUpdate(name[1:], "ip saddr" if key == "ip saddr" else "ip daddr")
    if word == "dnat":
        return _dnat(tokens)
    if word == "masquerade":
        fully_random = tokens.peek() == "fully-random"
        if fully_random:
            tokens.take()
        return Masquerade(fully_random)
    if word == "counter":
        return Counter()
    if word in ("jump", "goto"):
        return Verdict(word, tokens.take())
    if word in VERDICTS:
        return Verdict(word)
    raise tokens.error(f"{word!r} is not modelled")


def _lookup_inline(tokens: _Tokens) -> tuple[tuple[int, Verdict], ...]:
    tokens.take("vmap")
    choices = []
    for group in tokens.braced():
        if len(group) < 3 or group[1] != ":":
            raise tokens.error(f"numgen element {' '.join(group)!r} is not 'N : verdict'")
        choices.append((_number(group[0], tokens), _verdict(group[2:], tokens)))
    return tuple(choices)


def parse_rule(chain: str, number: int, rule: str) -> tuple[Statement, ...]:
    """The statements of one rule's text; :class:`NftParseError` names the rule."""
    tokens = _Tokens(rule, f"rule {number} of chain {chain} ({rule!r})")
    statements: list[Statement] = []
    while tokens.peek() is not None:
        statements.append(_statement(tokens))
    if any(isinstance(s, Verdict) for s in statements[:-1]):
        raise tokens.error("a verdict must be the rule's last statement")
    return tuple(statements)


ChainText = tuple[str, tuple[tuple[str, str | None], ...]]
"""A chain's name and its rules' (rule, comment) texts in order: what its parse depends on."""


class ParseMemo:
    """Parsed chains by their text, owned by a run: equal chains parse to the very same tuple.

    Successive syncs and nodes in step write mostly the same chains; with a memo each is
    parsed once, and an unchanged chain is the same object in every table that holds it (so
    "did this chain change" is an identity test). At most ``limit`` chains are kept
    (:class:`~svcsim.memo.BoundedMemo`).
    """

    __slots__ = ("chains",)

    def __init__(self, limit: int = 1 << 18) -> None:
        self.chains: BoundedMemo[ChainText, tuple[ParsedRule, ...]] = BoundedMemo(
            "parsed nf_tables chains by their text", limit
        )
        """Parsed rules by the chain's name and rule texts."""

    def chain(self, key: ChainText) -> tuple[ParsedRule, ...]:
        """The parsed rules of the chain ``key`` names (parsed on first use)."""
        found = self.chains.get(key)
        if found is None:
            found = self.chains.put(key, _parse_chain(key))
        return found


def _parse_chain(key: ChainText) -> tuple[ParsedRule, ...]:
    name, texts = key
    rules: list[ParsedRule] = []
    for rule, comment in texts:
        text = rule if comment is None else f'{rule} comment "{comment}"'
        statements = parse_rule(name, len(rules) + 1, rule)
        rules.append(ParsedRule(name, len(rules) + 1, text, statements))
    return tuple(rules)


def parse_element(
    element: NftElement, container_type: str | None, is_map: bool
) -> tuple[str, ...] | Verdict:
    """One element as :func:`parse_table` reads it: a set's key, or a verdict map's verdict.

    ``container_type`` is its set's or map's ``type`` (None: no such container, an error).
    """
    where = _Tokens("", f"element {' . '.join(element.key)} of {element.container}")
    if container_type is None:
        raise where.error("its set or map does not exist")
    if is_map:
        return _verdict(" ".join(element.value).split(), where)
    if container_type == "ipv4_addr":
        # Lookups compare whole addresses: an interval element would never match.
        for part in element.key:
            try:
                ipaddress.IPv4Address(part)
            except ValueError:
                raise where.error(f"{part!r} is not an IPv4 address") from None
    return element.key


def parse_table(table: NftTable, memo: ParseMemo | None = None) -> ParsedTable:
    """Parse every rule and element of ``table``; the first problem raises NftParseError.

    With a ``memo``, chains whose text was parsed before are taken from it (same objects).
    """
    texts: dict[str, list[tuple[str, str | None]]] = {c.name: [] for c in table.chains}
    for rule in table.rules:
        if rule.chain not in texts:
            raise NftParseError(f"rule {rule.rule!r} is in missing chain {rule.chain!r}")
        texts[rule.chain].append((rule.rule, rule.comment))
    parse = memo.chain if memo is not None else _parse_chain
    parsed_chains = {name: parse((name, tuple(rules))) for name, rules in texts.items()}
    sets: dict[str, set[tuple[str, ...]]] = {s.name: set() for s in table.sets if not s.is_map}
    set_types = {s.name: s.type for s in table.sets}
    maps: dict[str, dict[tuple[str, ...], Verdict]] = {s.name: {} for s in table.sets if s.is_map}
    for element in table.elements:
        is_map = element.container in maps and element.container not in sets
        entry = parse_element(element, set_types.get(element.container), is_map)
        if is_map:
            assert isinstance(entry, Verdict)
            maps[element.container][element.key] = entry
        else:
            assert not isinstance(entry, Verdict)
            sets[element.container].add(entry)
    return ParsedTable(
        name=table.name,
        chains=parsed_chains,
        base_chains=tuple(c for c in table.chains if c.hook is not None),
        sets={name: frozenset(keys) for name, keys in sets.items()},
        maps=maps,
        timeouts={s.name: s.timeout_s for s in table.sets},
    )
