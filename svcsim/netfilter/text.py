"""iptables text: build rulesets, render restore/save files, apply iptables-restore input.

Two text forms exist and both are modelled:

* **iptables-restore input**, what kube-proxy writes: each rule keeps the argument text it was
  given (:func:`render_restore`).
* **iptables-save output**, what the kernel prints back: canonical order and spelling, ``/32``
  suffixes, probabilities re-printed from the stored threshold (:func:`render_save`).

Rule arguments are parsed by :func:`svcsim.netfilter.parse.parse_rule`, re-exported here.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from svcsim.memo import BoundedMemo
from svcsim.netfilter.model import BUILTIN_CHAINS, Chain, Rule, Ruleset, Table, new_chain
from svcsim.netfilter.parse import IptablesSyntaxError, parse_rule, tokenize

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
    "RulesetInterner",
    "apply_restore",
    "parse_rule",
    "parse_save",
    "render_restore",
    "render_save",
    "tokenize",
]


_NAME: Final = operator.attrgetter("name")


class ChainKey(NamedTuple):
    """What makes a chain: its name, its policy and the identities of its rule objects."""

    name: str
    policy: str | None
    rule_ids: tuple[int, ...]


class TableKey(NamedTuple):
    """What makes a table: its name and the identities of its chain objects."""

    name: str
    chain_ids: tuple[int, ...]


_new_key: Final = tuple.__new__
"""``_new_key(ChainKey, (name, policy, ids))``: the key without the NamedTuple's ``__new__``
(a Python function; ~110,000 chains per 10,000-Service compile)."""


RULESETS_KEPT = 256
"""Rulesets the interner keeps: each node's current and previous one in a cluster of 100+
nodes (nodes in step share one). More only keeps superseded rulesets, and their indexes,
alive: at 1024 a 100-node day held ~1000 rulesets after an hour, still growing."""


class RulesetKey(NamedTuple):
    """What makes a ruleset: the identities of its table objects."""

    table_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RulesetInterner:
    """Chains, tables and rulesets built from the same parts, handed out once; owned by a run.

    Keys name the parts by ``id``; each value holds those parts (a chain its rules, a table its
    chains, a ruleset its tables), so while it is stored no other object can take their ids and
    a hit means the very same parts. Frozen values built from the same parts are equal, so
    handing out the stored one changes no result; but rulesets that share chains then compare
    by identity, and 20 nodes holding the same rules hold them once. A builder without an
    interner makes a fresh one: equal values, no sharing with anything built before.
    """

    chains: BoundedMemo[ChainKey, Chain] = field(
        # 10,000 Services x 10 endpoints make ~110,000 nat chains: they must all fit, or the
        # big shared chains (KUBE-SERVICES) drop out and are rebuilt as new objects.
        default_factory=lambda: BoundedMemo("chains by name, policy and rule identities", 1 << 18)
    )
    tables: BoundedMemo[TableKey, Table] = field(
        default_factory=lambda: BoundedMemo("tables by name and chain identities", 512)
    )
    rulesets: BoundedMemo[RulesetKey, Ruleset] = field(
        default_factory=lambda: BoundedMemo("rulesets by table identities", RULESETS_KEPT)
    )

    def chain(self, name: str, rules: tuple[Rule, ...], policy: str | None = None) -> Chain:
        """The chain of these rule *objects* (the one handed out before, if any)."""
        ids = tuple(map(id, rules))
        # Asked with the plain tuple equal to the ChainKey stored (a NamedTuple costs more to
        # make than the lookup; ~110,000 chains per 10,000-Service sync).
        found = self.chains.get((name, policy, ids))  # type: ignore[arg-type]
        if found is None:
            found = self.chains.put(ChainKey(name, policy, ids), new_chain(name, rules, policy))
        return found

    def chains_of(self, rules: Mapping[str, list[Rule]]) -> tuple[Chain, ...]:
        """:meth:`chain` of each name and its rules (no policy), in order.

        One call for the ~12 chains of a service port's block (~110,000 chains at 10,000
        Services): the memo's methods are looked up once.
        """
        memo = self.chains
        get, put = memo.get, memo.put
        made = []
        for name, held in rules.items():
            written = tuple(held)
            ids = tuple(map(id, written))
            found = get((name, None, ids))  # type: ignore[arg-type]  # equal to the ChainKey
            if found is None:
                found = put(_new_key(ChainKey, (name, None, ids)), new_chain(name, written, None))
            made.append(found)
        return tuple(made)

    def table(self, name: str, chains: tuple[Chain, ...]) -> Table:
        """The table of these chain objects (the one handed out before, if any)."""
        key = TableKey(name, tuple(map(id, chains)))
        found = self.tables.get(key)
        if found is None:
            found = self.tables.put(key, Table(name, chains))
        return found

    def ruleset(self, tables: tuple[Table, ...]) -> Ruleset:
        """The ruleset of these table objects (the one handed out before, if any)."""
        key = RulesetKey(tuple(map(id, tables)))
        found = self.rulesets.get(key)
        if found is None:
            found = self.rulesets.put(key, Ruleset(tables))
        return found


class RulesetBuilder:
    """Accumulates tables, chains and rules in order, then freezes them into a :class:`Ruleset`.

    A table's built-in chains exist as soon as the table is touched (policy ACCEPT); user chains
    exist once declared with :meth:`chain` or given a rule.
    """

    def __init__(self, interner: RulesetInterner | None = None) -> None:
        self.interner = interner if interner is not None else RulesetInterner()
        """Where :meth:`build` finds chains, tables and rulesets built before (a run's)."""
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

        Chains, tables and rulesets equal to ones built before with the same
        :attr:`interner` (same names, same rule *objects*) come back as those very objects (see
        :class:`RulesetInterner`).
        A chain copied by :meth:`from_ruleset` and untouched since is that chain itself (the
        same name, rules and policy).
        """
        policies = self._policies
        unchanged = self._unchanged
        interner = self.interner
        tables = []
        for t, chains in self._tables.items():
            built = []
            for name, rules in chains.items():
                same = unchanged.get((t, name))
                if same is None:
                    same = interner.chain(name, tuple(rules), policies.get((t, name)))
                built.append(same)
            tables.append(interner.table(t, tuple(built)))
        return interner.ruleset(tuple(tables))

    @classmethod
    def from_ruleset(
        cls, ruleset: Ruleset, interner: RulesetInterner | None = None
    ) -> RulesetBuilder:
        """A builder holding a copy of ``ruleset`` (to edit it as iptables-restore would)."""
        builder = cls(interner)
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
    # Rules share match and target objects (a Service's comment, the jump to KUBE-MARK-MASQ):
    # each one's words are printed once; the memo goes with this call.
    memo: dict[int, str] = {}
    ordered = sorted(ruleset.tables, key=lambda t: (rank.get(t.name, len(rank)), t.name))
    lines: list[str] = []
    for table in ordered:
        if tables is not None and table.name not in tables:
            continue
        # (Chain.is_builtin, read without a property call: ~110,000 chains at 10,000 Services.)
        builtin = [c for c in table.chains if c.policy is not None]
        user = sorted([c for c in table.chains if c.policy is None], key=_NAME)
        lines.append(f"# Generated by iptables-save {SAVE_VERSION} on {SAVE_STAMP}")
        lines.append(f"*{table.name}")
        lines += [f":{c.name} {c.policy} [0:0]" for c in builtin]
        lines += [f":{c.name} - [0:0]" for c in user]
        chains = builtin + user
        # Strings and one list: nothing the cyclic collector tracks piles up (~110,000 tuples
        # kept here set off a full collection of the whole compiled state).
        heads = [f"-A {c.name} " for c in chains]
        pairs = zip(heads, chains, strict=True)
        lines += [head + r.save_text(memo) for head, c in pairs for r in c.rules]
        lines.append("COMMIT")
        lines.append(f"# Completed on {SAVE_STAMP}")
    return "\n".join(lines) + "\n"


def apply_restore(
    ruleset: Ruleset,
    text: str,
    *,
    noflush: bool = True,
    interner: RulesetInterner | None = None,
) -> Ruleset:
    """The ruleset after ``iptables-restore [--noflush]`` of ``text`` on top of ``ruleset``.

    With ``noflush`` only the chains declared by ``:CHAIN`` lines are flushed; without it every
    table named in the input is emptied first. Handles ``:CHAIN``, ``-A``, ``-I``, ``-X``, ``-F``
    and ``COMMIT``. Errors name the line (1-based) of the input. With a run's ``interner``,
    chains equal to ones it built before are those objects (see :class:`RulesetInterner`).
    """
    builder = RulesetBuilder.from_ruleset(ruleset, interner)
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


def parse_save(text: str, interner: RulesetInterner | None = None) -> Ruleset:
    """Parse ``iptables-save`` output (or restore input) into a ruleset on an empty kernel."""
    return apply_restore(Ruleset(), text, noflush=True, interner=interner)
