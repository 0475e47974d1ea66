"""iptables text: build rulesets, render restore/save files, apply iptables-restore input.

Two text forms exist and both are modelled:

* **iptables-restore input**, what kube-proxy writes: each rule keeps the argument text it was
  given (:func:`render_restore`).
* **iptables-save output**, what the kernel prints back: canonical order and spelling, ``/32``
  suffixes, probabilities re-printed from the stored threshold (:func:`render_save`).

Rule arguments are parsed by :func:`svcsim.netfilter.parse.parse_rule`, re-exported here.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Final, TypeVar

from svcsim.netfilter.model import BUILTIN_CHAINS, Chain, Rule, Ruleset, Table
from svcsim.netfilter.parse import IptablesSyntaxError, parse_rule, tokenize

_K = TypeVar("_K")
_V = TypeVar("_V")

SAVE_TABLE_ORDER: Final = ("mangle", "security", "raw", "filter", "nat")
"""The order ``iptables-save`` prints tables in: iptables-nft's ``enum nft_table_type``
(iptables ``iptables/nft.h``, reordered in 2020 by "nft: Reorder enum nft_table_type" to match
what iptables-legacy-save prints on a usual host). Checked against iptables v1.8.9 (nf_tables)
in a network namespace (tests/netfilter/test_text_kernel.py). iptables-legacy-save prints
``/proc/net/ip_tables_names``, newest table first, so its order depends on which table the host
used first; this is the order it has on a host that loaded them at boot."""

SAVE_VERSION: Final = "v1.8.9 (nf_tables)"
"""The iptables version named in the header line: the one whose output this rendering was
checked against, line for line."""

SAVE_STAMP: Final = "Thu Jan  1 00:00:00 1970"
"""The time in the header and footer lines, in C ``ctime`` form. Real iptables-save prints the
wall clock; a fixed instant (the Unix epoch, plainly not a real run) keeps the output the same
for the same rules, so two renderings diff clean."""

__all__ = [
    "SAVE_STAMP",
    "SAVE_TABLE_ORDER",
    "SAVE_VERSION",
    "IptablesSyntaxError",
    "RulesetBuilder",
    "apply_restore",
    "interned_chain",
    "interned_ruleset",
    "interned_table",
    "parse_rule",
    "parse_save",
    "render_restore",
    "render_save",
    "tokenize",
]


class RulesetBuilder:
    """Accumulates tables, chains and rules in order, then freezes them into a :class:`Ruleset`.

    A table's built-in chains exist as soon as the table is touched (policy ACCEPT); user chains
    exist once declared with :meth:`chain` or given a rule.
    """

    def __init__(self) -> None:
        self._tables: dict[str, dict[str, list[Rule]]] = {}
        self._policies: dict[tuple[str, str], str] = {}
        self._unchanged: dict[tuple[str, str], Chain] = {}
        """Chains copied by :meth:`from_ruleset` and not touched since: build reuses them."""

    def table(self, table: str) -> None:
        """Make sure ``table`` exists, with its built-in chains."""
        if table not in self._tables:
            if table not in BUILTIN_CHAINS:
                raise IptablesSyntaxError(f"unknown table {table!r}")
            self._tables[table] = {name: [] for name in BUILTIN_CHAINS[table]}
            for name in BUILTIN_CHAINS[table]:
                self._policies[table, name] = "ACCEPT"

    def chain(self, table: str, name: str) -> None:
        """Declare a chain (a no-op if it exists)."""
        self.table(table)
        self._tables[table].setdefault(name, [])

    def chains(self, table: str, names: Iterable[str]) -> None:
        """Declare chains in order (what :meth:`chain` does for each)."""
        self.table(table)
        chains = self._tables[table]
        for name in names:
            if name not in chains:
                chains[name] = []

    def rule(self, table: str, chain: str, *args: str) -> Rule:
        """Append a rule made of ``args`` (joined with spaces, as kube-proxy writes lines)."""
        self.chain(table, chain)
        rule = parse_rule(" ".join(args))
        self._unchanged.pop((table, chain), None)
        self._tables[table][chain].append(rule)
        return rule

    def append(self, table: str, chain: str, rule: Rule) -> None:
        """Append an already parsed rule."""
        self.chain(table, chain)
        self._unchanged.pop((table, chain), None)
        self._tables[table][chain].append(rule)

    def extend(self, table: str, rules: Iterable[tuple[str, Rule]]) -> None:
        """Append parsed ``(chain, rule)`` pairs in order (what :meth:`append` does for each)."""
        self.table(table)
        chains = self._tables[table]
        unchanged = self._unchanged
        for chain, rule in rules:
            if unchanged:
                unchanged.pop((table, chain), None)
            held = chains.get(chain)
            if held is None:
                held = chains[chain] = []
            held.append(rule)

    def insert(self, table: str, chain: str, rule: Rule, position: int = 0) -> None:
        """Insert a parsed rule at ``position`` (``iptables -I``)."""
        self.chain(table, chain)
        self._unchanged.pop((table, chain), None)
        self._tables[table][chain].insert(position, rule)

    def flush(self, table: str, chain: str) -> None:
        """Remove every rule of a chain (declaring it if needed)."""
        self.chain(table, chain)
        self._unchanged.pop((table, chain), None)
        self._tables[table][chain].clear()

    def delete_chain(self, table: str, chain: str) -> None:
        """Delete a user chain (``-X``)."""
        if (table, chain) in self._policies:
            raise IptablesSyntaxError(f"cannot delete built-in chain {chain!r}")
        self._unchanged.pop((table, chain), None)
        self._tables.get(table, {}).pop(chain, None)

    def set_policy(self, table: str, chain: str, policy: str) -> None:
        """Set a built-in chain's policy."""
        self.table(table)
        if (table, chain) not in self._policies:
            raise IptablesSyntaxError(f"{chain!r} is not a built-in chain of {table!r}")
        self._unchanged.pop((table, chain), None)
        self._policies[table, chain] = policy

    def build(self) -> Ruleset:
        """The frozen ruleset.

        Chains, tables and rulesets equal to ones built before (same names, same rule
        *objects*) come back as those very objects (see :func:`_intern`), so rulesets that
        share chains compare by identity, and 20 nodes holding the same rules hold them once.
        A chain copied by :meth:`from_ruleset` and untouched since is that chain itself (the
        same name, rules and policy).
        """
        policies = self._policies
        unchanged = self._unchanged
        tables = []
        for t, chains in self._tables.items():
            built = []
            for name, rules in chains.items():
                same = unchanged.get((t, name))
                if same is None:
                    same = _intern_chain(name, tuple(rules), policies.get((t, name)))
                built.append(same)
            tables.append(_intern_table(t, tuple(built)))
        return _intern_ruleset(tuple(tables))

    @classmethod
    def from_ruleset(cls, ruleset: Ruleset) -> RulesetBuilder:
        """A builder holding a copy of ``ruleset`` (to edit it as iptables-restore would)."""
        builder = cls()
        policies, unchanged = builder._policies, builder._unchanged
        for table in ruleset.tables:
            name = table.name
            builder.table(name)
            chains = builder._tables[name]
            for chain in table.chains:
                chains[chain.name] = list(chain.rules)
                if chain.policy is not None:
                    policies[name, chain.name] = chain.policy
                unchanged[name, chain.name] = chain
        return builder


_chains: dict[tuple[str, str | None, tuple[int, ...]], Chain] = {}
_tables: dict[tuple[str, tuple[int, ...]], Table] = {}
_rulesets: dict[tuple[int, ...], Ruleset] = {}


def _intern(cache: dict[_K, _V], key: _K, make: Callable[[], _V], limit: int) -> _V:
    """The value cached under ``key``, made and cached on first use.

    Keys name the parts by ``id``; the cached value holds those parts, so while it is cached
    no other object can take their ids and a key hit means the very same parts. Frozen values
    built from the same parts are equal, so handing out the cached one changes no result.
    Beyond ``limit`` entries the oldest eighth is dropped (tables and rulesets are big) in one
    batch: a dict iterates from its first slot over those of entries deleted since it last
    resized, so dropping one oldest entry at a time would cost a scan each (quadratic).
    """
    found = cache.get(key)
    if found is None:
        if len(cache) >= limit:
            for old in list(itertools.islice(cache, max(1, limit // 8))):
                del cache[old]
        found = cache[key] = make()
    return found


def interned_chain(name: str, rules: tuple[Rule, ...], policy: str | None = None) -> Chain:
    """The chain :meth:`RulesetBuilder.build` hands out for these rule *objects*.

    For code that assembles rulesets itself: equal parts give the very same object either
    way, so identity checks between its rulesets and built ones hold.
    """
    return _intern_chain(name, rules, policy)


def interned_table(name: str, chains: tuple[Chain, ...]) -> Table:
    """The table :meth:`RulesetBuilder.build` hands out for these chain objects."""
    return _intern_table(name, chains)


def interned_ruleset(tables: tuple[Table, ...]) -> Ruleset:
    """The ruleset :meth:`RulesetBuilder.build` hands out for these table objects."""
    return _intern_ruleset(tables)


def _intern_chain(name: str, rules: tuple[Rule, ...], policy: str | None) -> Chain:
    return _intern(
        _chains, (name, policy, tuple(map(id, rules))), lambda: Chain(name, rules, policy), 1 << 16
    )


def _intern_table(name: str, chains: tuple[Chain, ...]) -> Table:
    return _intern(_tables, (name, tuple(map(id, chains))), lambda: Table(name, chains), 512)


def _intern_ruleset(tables: tuple[Table, ...]) -> Ruleset:
    return _intern(_rulesets, tuple(map(id, tables)), lambda: Ruleset(tables), 1024)


def render_restore(
    ruleset: Ruleset, tables: Sequence[str] = ("filter", "nat"), skip_chains: Iterable[str] = ()
) -> str:
    """The iptables-restore input that writes ``ruleset``'s user chains, as kube-proxy sends it.

    Built-in chains (set up with ``iptables -I`` rather than restore) and ``skip_chains`` are left
    out; rules keep the argument text they were written with.
    """
    skip = set(skip_chains)
    lines: list[str] = []
    for name in tables:
        table = ruleset.table(name)
        if table is None:
            continue
        chains = [c for c in table.chains if not c.is_builtin and c.name not in skip]
        lines.append(f"*{name}")
        lines += [f":{c.name} - [0:0]" for c in chains]
        lines += [f"-A {c.name} {r.text}" for c in chains for r in c.rules]
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def render_save(ruleset: Ruleset, tables: Sequence[str] | None = None) -> str:
    """The ruleset as ``iptables-save`` prints it.

    Tables in :data:`SAVE_TABLE_ORDER` (any other after them, by name), each between a
    ``# Generated by iptables-save ...`` and a ``# Completed on ...`` line stamped
    :data:`SAVE_STAMP`. In a table: built-in chains first (with their policy), then user chains
    in name order, then the rules chain by chain in that order, each in the kernel's canonical
    spelling.
    """
    rank = {name: i for i, name in enumerate(SAVE_TABLE_ORDER)}
    ordered = sorted(ruleset.tables, key=lambda t: (rank.get(t.name, len(rank)), t.name))
    lines: list[str] = []
    for table in ordered:
        if tables is not None and table.name not in tables:
            continue
        builtin = [c for c in table.chains if c.is_builtin]
        user = sorted((c for c in table.chains if not c.is_builtin), key=lambda c: c.name)
        lines.append(f"# Generated by iptables-save {SAVE_VERSION} on {SAVE_STAMP}")
        lines.append(f"*{table.name}")
        lines += [f":{c.name} {c.policy} [0:0]" for c in builtin]
        lines += [f":{c.name} - [0:0]" for c in user]
        lines += [f"-A {c.name} {r.save_text()}" for c in builtin + user for r in c.rules]
        lines.append("COMMIT")
        lines.append(f"# Completed on {SAVE_STAMP}")
    return "\n".join(lines) + "\n"


def apply_restore(ruleset: Ruleset, text: str, *, noflush: bool = True) -> Ruleset:
    """The ruleset after ``iptables-restore [--noflush]`` of ``text`` on top of ``ruleset``.

    With ``noflush`` only the chains declared by ``:CHAIN`` lines are flushed; without it every
    table named in the input is emptied first. Handles ``:CHAIN``, ``-A``, ``-I``, ``-X``, ``-F``
    and ``COMMIT``. Errors name the line (1-based) of the input.
    """
    builder = RulesetBuilder.from_ruleset(ruleset)
    table: str | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            table = _apply_line(builder, table, line, noflush)
        except (IptablesSyntaxError, ValueError) as exc:
            raise IptablesSyntaxError(f"line {lineno}: {exc}") from exc
    if table is not None:
        raise IptablesSyntaxError("input ends without COMMIT")
    return builder.build()


def _apply_line(builder: RulesetBuilder, table: str | None, line: str, noflush: bool) -> str | None:
    if line.startswith("*"):
        name = line[1:]
        if not noflush:
            for chain in list(builder._tables.get(name, {})):
                if chain in BUILTIN_CHAINS.get(name, ()):
                    builder.flush(name, chain)
                else:
                    builder.delete_chain(name, chain)
        builder.table(name)
        return name
    if table is None:
        raise IptablesSyntaxError(f"{line!r} outside a table")
    if line == "COMMIT":
        return None
    if line.startswith(":"):
        parts = line[1:].split()
        if len(parts) < 2:
            raise IptablesSyntaxError(f"bad chain line {line!r}")
        if parts[0] not in BUILTIN_CHAINS[table]:
            builder.flush(table, parts[0])  # with --noflush a built-in chain only gets its policy
        if parts[1] != "-":
            builder.set_policy(table, parts[0], parts[1])
        return table
    op, _, rest = line.partition(" ")
    chain, _, args = rest.strip().partition(" ")
    if op == "-A":
        builder.rule(table, chain, args)
    elif op == "-I":
        head, _, tail = args.partition(" ")
        if head.isdigit():
            builder.insert(table, chain, parse_rule(tail), int(head) - 1)
        else:
            builder.insert(table, chain, parse_rule(args))
    elif op == "-X":
        builder.delete_chain(table, chain)
    elif op == "-F":
        builder.flush(table, chain)
    else:
        raise IptablesSyntaxError(f"unsupported command {op!r}")
    return table


def parse_save(text: str) -> Ruleset:
    """Parse ``iptables-save`` output (or restore input) into a ruleset on an empty kernel."""
    return apply_restore(Ruleset(), text, noflush=True)
