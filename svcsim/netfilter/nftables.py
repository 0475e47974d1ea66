"""The nf_tables model of one table, as frozen data, and its text form for ``nft -f``.

kube-proxy's nftables mode programs one table (``ip kube-proxy``) through knftables: chains
(base chains with a type, hook and priority, or regular chains), sets, verdict maps, rules and
elements. Rules are kept as kube-proxy writes them (knftables' rule syntax, e.g.
``ip daddr . meta l4proto . th dport vmap @service-ips``) plus an optional comment: that text
is what kube-proxy hands to ``nft`` and what its own tests compare.

:func:`dump` renders a table in the order and syntax of knftables' fake ``Dump()``
(sigs.k8s.io/knftables ``fake.go`` and ``objects.go`` ``writeOperation``): the table, then every
chain, set and map (each kind sorted by name), then each chain's rules (chains by name, rules
in order), then the elements of each set and each map (containers by name, elements in the
order they were added). Objects come before their users, so the text loads with ``nft -f``.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain as concat
from itertools import groupby, repeat
from operator import attrgetter


def _quoted(text: str) -> str:
    """Go's ``%q`` for the plain ASCII comments kube-proxy writes."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class NftChain:
    """A chain: a base chain when ``hook`` is set, else a regular chain."""

    name: str
    type: str | None = None
    """``filter`` or ``nat`` for base chains."""
    hook: str | None = None
    """``prerouting``, ``input``, ``forward``, ``output`` or ``postrouting``."""
    priority: int | None = None
    """The numeric priority (knftables writes named priorities as numbers: dstnat = -100)."""
    comment: str | None = None

    def __post_init__(self) -> None:
        if (self.hook is None) != (self.type is None) or (self.hook is None) != (
            self.priority is None
        ):
            raise ValueError(f"chain {self.name!r}: type, hook and priority go together")


@dataclass(frozen=True, slots=True)
class NftSet:
    """A named set, or a map when ``is_map`` (its ``type`` then ends in ``: <value type>``)."""

    name: str
    type: str
    """The ``type`` clause, e.g. ``ipv4_addr`` or ``inet_proto . inet_service : verdict``."""
    is_map: bool = False
    flags: tuple[str, ...] = ()
    timeout_s: int | None = None
    """Element timeout in seconds (needs the ``timeout`` flag)."""
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class NftRule:
    """One rule of a chain, in knftables syntax, with its optional comment."""

    chain: str
    rule: str
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class NftElement:
    """One element of a set or map: key parts, value parts (maps only), optional comment."""

    container: str
    key: tuple[str, ...]
    value: tuple[str, ...] = ()
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class NftTable:
    """One nf_tables table with everything in it.

    ``rules`` and ``elements`` keep the order they were added in: rules of one chain run in
    that order; elements' order only shows in the text. Each of the four is a tuple, or a
    :class:`~svcsim.netfilter.derived.LazyTuple` (equal to the tuple it stands for) when the
    table was spliced from another one's parts.
    """

    family: str
    name: str
    comment: str | None = None
    chains: Sequence[NftChain] = ()
    sets: Sequence[NftSet] = ()
    rules: Sequence[NftRule] = ()
    elements: Sequence[NftElement] = ()

    def chain(self, name: str) -> NftChain | None:
        """The chain called ``name``, or None."""
        return next((c for c in self.chains if c.name == name), None)

    def set(self, name: str) -> NftSet | None:
        """The set or map called ``name``, or None."""
        return next((s for s in self.sets if s.name == name), None)

    def chain_rules(self, name: str) -> tuple[NftRule, ...]:
        """The rules of chain ``name``, in order."""
        return tuple(r for r in self.rules if r.chain == name)

    def elements_of(self, name: str) -> tuple[NftElement, ...]:
        """The elements of set or map ``name``, in the order they were added."""
        return tuple(e for e in self.elements if e.container == name)


_CHAIN_OF = attrgetter("chain")


def _prefix(kind: str, table: NftTable) -> str:
    return f"add {kind} {table.family} {table.name} "


def _table_line(table: NftTable) -> str:
    line = f"add table {table.family} {table.name}"
    if table.comment is not None:
        line += f" {{ comment {_quoted(table.comment)} ; }}"
    return line


def _chain_line(table: NftTable, chain: NftChain) -> str:
    line = _prefix("chain", table) + chain.name
    if chain.type is None and chain.comment is None:
        return line
    line += " {"
    if chain.type is not None:
        line += f" type {chain.type} hook {chain.hook} priority {chain.priority} ;"
    if chain.comment is not None:
        line += f" comment {_quoted(chain.comment)} ;"
    return line + " }"


def _set_line(table: NftTable, s: NftSet) -> str:
    line = _prefix("map" if s.is_map else "set", table) + f"{s.name} {{ type {s.type} ;"
    if s.flags:
        line += f" flags {','.join(s.flags)} ;"
    if s.timeout_s is not None:
        line += f" timeout {s.timeout_s}s ;"
    if s.comment is not None:
        line += f" comment {_quoted(s.comment)} ;"
    return line + " }"


def _element_line(table: NftTable, element: NftElement) -> str:
    body = " . ".join(element.key)
    if element.comment is not None:
        body += f" comment {_quoted(element.comment)}"
    if element.value:
        body += " : " + " . ".join(element.value)
    return _prefix("element", table) + f"{element.container} {{ {body} }}"


def dump(table: NftTable) -> str:
    """The table as knftables' fake ``Dump()`` writes it: one ``add ...`` line per object.

    Rules are written a run of one chain's rules at a time (a 10,000-Service table has
    ~220,000 rules in ~110,000 runs), each line its chain's head plus the rule.
    """
    chains = {c.name: c for c in table.chains}
    sets = {s.name: s for s in table.sets if not s.is_map}
    maps = {s.name: s for s in table.sets if s.is_map}
    add_rule = _prefix("rule", table)
    rule_lines: dict[str, list[str]] = {}
    for chain_name, run in groupby(table.rules, key=_CHAIN_OF):
        head = f"{add_rule}{chain_name} "
        found = rule_lines.get(chain_name)
        if found is None:
            found = rule_lines[chain_name] = []
        found += [
            head + r.rule if r.comment is None else f"{head}{r.rule} comment {_quoted(r.comment)}"
            for r in run
        ]
    elements: dict[str, list[NftElement]] = {}
    for element in table.elements:
        elements.setdefault(element.container, []).append(element)
    chain_names = sorted(chains)
    lines = [_table_line(table)]
    first = len(lines)
    lines += map(_prefix("chain", table).__add__, chain_names)
    # Base chains and commented ones (a few) get their braces in place.
    for c in chains.values():
        if c.type is not None or c.comment is not None:
            lines[first + bisect.bisect_left(chain_names, c.name)] = _chain_line(table, c)
    lines += [_set_line(table, sets[n]) for n in sorted(sets)]
    lines += [_set_line(table, maps[n]) for n in sorted(maps)]
    lines += concat.from_iterable(map(rule_lines.get, chain_names, repeat(())))
    for name in [*sorted(sets), *sorted(maps)]:
        lines += [_element_line(table, e) for e in elements.get(name, ())]
    return "\n".join(lines) + "\n"
