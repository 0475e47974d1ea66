"""The fixed part of an iptables-mode full sync and the assembly of a sync's kernel state.

What every node writes whatever its Services (kubernetes ``pkg/proxy/iptables/proxier.go``
@531be812, ``syncProxyRules`` and ``NewProxier``): the iptables Monitor's canary chains, the
jump rules from built-in chains (``iptablesJumpChains``, ``iptablesKubeletJumpChains``), and the
fixed head and tail of the restore input (top-level chains, ``KUBE-POSTROUTING``,
``KUBE-MARK-MASQ``, ``KUBE-FIREWALL``, the must-be-last ``KUBE-SERVICES`` rule and
``KUBE-FORWARD``). :func:`assembled_state` puts those and the per-service-port blocks of
:mod:`svcsim.proxy.iptables_service` together into the kernel state a clean node holds
afterwards (:mod:`svcsim.proxy.iptables_assembled` memoises it and writes the text).

Rules are built as data (:mod:`svcsim.proxy.iptables_rules`), never parsed from text. Every node
compiles at every sync, so the head and tail are memoised on the context facts they read and
assembled results on the identities of their fragments, in the run's
:class:`~svcsim.proxy.caches.CompileCaches`; memoised results equal fresh ones.
"""

from __future__ import annotations

import functools
import itertools
import operator
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from operator import is_
from types import MappingProxyType
from typing import Final

from svcsim.netfilter.model import BUILTIN_CHAINS, Chain, Rule, Ruleset, Table
from svcsim.netfilter.text import RulesetBuilder, RulesetInterner
from svcsim.proxy.caches import CompileCaches, FixedKey, FixedParts
from svcsim.proxy.context import NodeContext
from svcsim.proxy.iptables_rules import (
    NOTHING,
    addrtype,
    comment,
    conntrack,
    destination,
    jump,
    mark,
    mark_or,
    mark_xor,
    masquerade,
    nfacct,
    rule,
    source,
)
from svcsim.proxy.iptables_service import (
    INVALID_DROPPED_COUNTER,
    KUBE_EXTERNAL_SERVICES,
    KUBE_FIREWALL,
    KUBE_FORWARD,
    KUBE_MARK_MASQ,
    KUBE_NODEPORTS,
    KUBE_POSTROUTING,
    KUBE_PROXY_CANARY,
    KUBE_PROXY_FIREWALL,
    KUBE_SERVICES,
    RestoreBuffers,
    ServicePortBlock,
    ServicePortOutcome,
)
from svcsim.proxy.names import SERVICE_CHAIN_PREFIXES

CANARY_TABLES: Final = ("mangle", "nat", "filter")
"""Tables the iptables Monitor puts the canary chain in, in its order."""


@dataclass(frozen=True, slots=True)
class JumpRule:
    """One ``iptablesJumpChain``: a rule in a built-in chain that jumps to a kube-proxy chain."""

    table: str
    dst_chain: str
    src_chain: str
    comment: str
    new_only: bool = False
    """The rule matches only ``-m conntrack --ctstate NEW`` packets (written first)."""

    def rule(self) -> Rule:
        """The rule ``EnsureRule`` writes: ``[-m conntrack --ctstate NEW] [comment] -j CHAIN``."""
        new = conntrack("NEW") if self.new_only else NOTHING
        said = comment(self.comment) if self.comment else NOTHING
        return rule(new, said, jump(self.dst_chain))


JUMP_RULES: Final = (
    JumpRule(
        "filter",
        KUBE_EXTERNAL_SERVICES,
        "INPUT",
        "kubernetes externally-visible service portals",
        new_only=True,
    ),
    JumpRule(
        "filter",
        KUBE_EXTERNAL_SERVICES,
        "FORWARD",
        "kubernetes externally-visible service portals",
        new_only=True,
    ),
    JumpRule("filter", KUBE_NODEPORTS, "INPUT", "kubernetes health check service ports"),
    JumpRule("filter", KUBE_SERVICES, "FORWARD", "kubernetes service portals", new_only=True),
    JumpRule("filter", KUBE_SERVICES, "OUTPUT", "kubernetes service portals", new_only=True),
    JumpRule("filter", KUBE_FORWARD, "FORWARD", "kubernetes forwarding rules"),
    JumpRule(
        "filter", KUBE_PROXY_FIREWALL, "INPUT", "kubernetes load balancer firewall", new_only=True
    ),
    JumpRule(
        "filter", KUBE_PROXY_FIREWALL, "OUTPUT", "kubernetes load balancer firewall", new_only=True
    ),
    JumpRule(
        "filter", KUBE_PROXY_FIREWALL, "FORWARD", "kubernetes load balancer firewall", new_only=True
    ),
    JumpRule("nat", KUBE_SERVICES, "OUTPUT", "kubernetes service portals"),
    JumpRule("nat", KUBE_SERVICES, "PREROUTING", "kubernetes service portals"),
    JumpRule("nat", KUBE_POSTROUTING, "POSTROUTING", "kubernetes postrouting rules"),
    # iptablesKubeletJumpChains: duplicates of kubelet's, no comment.
    JumpRule("filter", KUBE_FIREWALL, "INPUT", ""),
    JumpRule("filter", KUBE_FIREWALL, "OUTPUT", ""),
)
"""``iptablesJumpChains`` + ``iptablesKubeletJumpChains``, in the order a full sync ensures them."""


def write_fixed_head(buf: RestoreBuffers, ctx: NodeContext) -> None:
    """Chain lines of the top-level chains, POSTROUTING/MARK-MASQ rules, KUBE-FIREWALL."""
    buf.filter_chains += [
        KUBE_SERVICES,
        KUBE_EXTERNAL_SERVICES,
        KUBE_FORWARD,
        KUBE_NODEPORTS,
        KUBE_PROXY_FIREWALL,
    ]
    buf.nat_chains += [KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ]
    bit = ctx.mark
    buf.nat(KUBE_POSTROUTING, mark(f"{bit}/{bit}", negated=True), jump("RETURN"))
    # Clearing the bit keeps a packet that re-traverses the stack from being masqueraded twice.
    buf.nat(KUBE_POSTROUTING, mark_xor(bit))
    snat = comment("kubernetes service traffic requiring SNAT")
    buf.nat(KUBE_POSTROUTING, snat, masquerade(random_fully=ctx.random_fully))
    buf.nat(KUBE_MARK_MASQ, mark_or(bit))
    if ctx.effective_localhost_nodeports:
        # route_localnet opens NodePorts on 127/8 to the outside (issue 90259); block that.
        buf.filter_chains.append(KUBE_FIREWALL)
        buf.filter(
            KUBE_FIREWALL,
            comment("block incoming localnet connections"),
            destination("127.0.0.0/8"),
            source("127.0.0.0/8", negated=True),
            conntrack("RELATED,ESTABLISHED,DNAT", negated=True),
            jump("DROP"),
        )


def write_fixed_tail(buf: RestoreBuffers, ctx: NodeContext) -> None:
    """The must-be-last KUBE-SERVICES rule(s) and the KUBE-FORWARD rules."""
    last = comment("kubernetes service nodeports; NOTE: this must be the last rule in this chain")
    if ctx.nodeport_match_all:
        not_localhost = (
            NOTHING
            if ctx.effective_localhost_nodeports
            else destination("127.0.0.0/8", negated=True)
        )
        buf.nat(
            KUBE_SERVICES, last, addrtype(dst_type="LOCAL"), not_localhost, jump(KUBE_NODEPORTS)
        )
    else:
        for ip in ctx.nodeport_ips():
            if ip.startswith("127.") and not ctx.effective_localhost_nodeports:
                continue  # kube-proxy logs an error and skips loopback addresses
            buf.nat(KUBE_SERVICES, last, destination(ip), jump(KUBE_NODEPORTS))
    if not ctx.tcp_be_liberal:
        counter = nfacct(INVALID_DROPPED_COUNTER) if ctx.nfacct else NOTHING
        buf.filter(KUBE_FORWARD, conntrack("INVALID"), counter, jump("DROP"))
    bit = ctx.mark
    forwarding = comment("kubernetes forwarding rules")
    buf.filter(KUBE_FORWARD, forwarding, mark(f"{bit}/{bit}"), jump("ACCEPT"))
    related = comment("kubernetes forwarding conntrack rule")
    buf.filter(KUBE_FORWARD, related, conntrack("RELATED,ESTABLISHED"), jump("ACCEPT"))


def kernel_state(buf: RestoreBuffers) -> Ruleset:
    """What a clean node holds after the Monitor, the jump rules and the restore."""
    return _state(buf, buf.nat_rules, buf.filter_rules)


def _state(
    buf: RestoreBuffers, nat: Iterable[tuple[str, Rule]], filter_: Iterable[tuple[str, Rule]]
) -> Ruleset:
    """:func:`kernel_state` of ``buf``, given its rules parsed (``(chain, rule)`` in order)."""
    b = RulesetBuilder()
    for table in CANARY_TABLES:
        b.chain(table, KUBE_PROXY_CANARY)
    b.chains("nat", buf.nat_chains)
    b.chains("filter", buf.filter_chains)
    b.extend("nat", nat)
    b.extend("filter", filter_)
    for ensured, ensured_rule in jump_rules():
        b.chain(ensured.table, ensured.dst_chain)
        b.insert(ensured.table, ensured.src_chain, ensured_rule, 0)
    return b.build()


def _fragment(buf: RestoreBuffers) -> ServicePortBlock:
    return ServicePortBlock(
        tuple(buf.filter_chains),
        tuple(buf.filter_rules),
        tuple(buf.nat_chains),
        tuple(buf.nat_rules),
        ServicePortOutcome(no_local_internal=False, no_local_external=False),
    )


@functools.lru_cache(maxsize=256)
def _fixed_key(ctx: NodeContext) -> FixedKey:
    """Every :class:`NodeContext` fact the fixed head and tail read (not the node's name).

    Module-level: a pure function of a frozen value, keyed by value (no identity), bounded.
    """
    match_all = ctx.nodeport_match_all
    return FixedKey(
        ctx.mark,
        ctx.random_fully,
        ctx.effective_localhost_nodeports,
        match_all,
        () if match_all else tuple(ctx.nodeport_ips()),
        ctx.tcp_be_liberal,
        ctx.nfacct,
    )


def fixed_head_tail(ctx: NodeContext, caches: CompileCaches | None = None) -> FixedParts:
    """The fixed head and tail as fragments, one pair per distinct :func:`_fixed_key`.

    ``caches``: the run's; None computes afresh.
    """
    key = _fixed_key(ctx)
    memo = (caches if caches is not None else CompileCaches()).fixed_parts
    parts = memo.get(key)
    if parts is None:
        head, tail = RestoreBuffers(), RestoreBuffers()
        write_fixed_head(head, ctx)
        write_fixed_tail(tail, ctx)
        parts = memo.put(key, FixedParts(_fragment(head), _fragment(tail)))
    return parts


NatLine = tuple[str, str, bool]
"""A nat line of a restore input: (the line, its chain, True for a ``:CHAIN`` line)."""
RestoreSections = tuple[tuple[str, ...], tuple[NatLine, ...]]
"""A restore input as the lines outside the nat table (``*filter`` to its ``COMMIT``) and the
nat table's chain and rule lines (without ``*nat`` and ``COMMIT``)."""

_LINE_BREAK: Final = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
"""Every character ``str.splitlines`` ends a line at."""
_ASCII_LINE_BREAKS: Final = "\n\r\x0b\x0c\x1c\x1d\x1e"
"""Those of them that are ASCII."""


def _has_line_break(text: str) -> bool:
    """True if ``str.splitlines`` would break ``text`` (``_LINE_BREAK`` finds a character).

    Rule texts are ASCII (``isascii`` is a flag read): seven substring scans (memchr) read
    them far faster than the regular expression, which is kept for any other text.
    """
    if text.isascii():
        return any(char in text for char in _ASCII_LINE_BREAKS)
    return _LINE_BREAK.search(text) is not None


@dataclass(frozen=True, slots=True)
class PartLines:
    """One fragment's rules as chains, and what its restore lines are like.

    The lines themselves are written only when a text is asked for (:func:`rule_lines`).
    """

    single_lines: bool
    """Every chain and rule line is one line for ``str.splitlines`` (no line breaks inside),
    so the sections of a text made from the fragment are known without splitting it."""
    nat_chains: tuple[Chain, ...]
    """The fragment's nat rules grouped by chain, as chains (in order of first write); a chain
    only this fragment writes is this very object in every assembly that holds it."""
    filter_chains: tuple[Chain, ...]
    """The same for its filter rules."""
    nat_fixed_rules: int
    """How many of its nat rules go to chains that are no service chain (a partial sync
    writes those whatever changed)."""

    def written(self, table: str) -> dict[str, Chain]:
        """The chains of :attr:`nat_chains` (``table`` "nat") or :attr:`filter_chains`, by name."""
        chains = self.nat_chains if table == "nat" else self.filter_chains
        return {c.name: c for c in chains}

    def written_names(self, table: str) -> list[str]:
        """The names of :meth:`written`'s chains, in order (each once: they are grouped)."""
        return list(map(_NAME_OF, self.nat_chains if table == "nat" else self.filter_chains))


def rule_lines(rules: tuple[tuple[str, Rule], ...]) -> list[str]:
    """The restore lines of ``(chain, rule)`` pairs: ``-A CHAIN TEXT``."""
    return [f"-A {c} {r.text}" for c, r in rules]


def lines_of(part: ServicePortBlock, caches: CompileCaches) -> PartLines:
    """:class:`PartLines` of ``part``, memoised by identity (the entry holds the part).

    A sync changes few fragments, so a new assembly groups only those into chains.
    """
    hit = caches.part_lines.get(id(part))
    if hit is not None:
        return hit
    interner = caches.interner
    # A line of the text is "-A CHAIN TEXT" or ":CHAIN - [0:0]": it breaks only where a
    # chain name or a rule text holds a line break; a chain name with a space would not
    # read back as one word.
    # (Names and texts gathered by C-level maps: ~320,000 rules at 10,000 Services.)
    filter_rules, nat_rules = part.filter_rules, part.nat_rules
    declared = (*part.filter_chains, *part.nat_chains)
    names = "".join([*declared, *map(_CHAIN_OF, filter_rules), *map(_CHAIN_OF, nat_rules)])
    texts = [*map(_TEXT_OF, map(_RULE_OF, filter_rules)), *map(_TEXT_OF, map(_RULE_OF, nat_rules))]
    single = " " not in names and not _has_line_break(names + "".join(texts))
    nat_chains = _grouped(nat_rules, interner)
    lines = PartLines(
        single,
        nat_chains,
        _grouped(filter_rules, interner) if filter_rules else (),
        sum([len(c.rules) for c in nat_chains if not c.name.startswith(SERVICE_CHAIN_PREFIXES)]),
    )
    return caches.part_lines.put(id(part), lines, holds=part)


def _grouped(rules: tuple[tuple[str, Rule], ...], interner: RulesetInterner) -> tuple[Chain, ...]:
    """``(chain, rule)`` pairs as chains holding their rules in order (first write first)."""
    by_chain: dict[str, list[Rule]] = {}
    # A block writes each KUBE-SEP chain's rules one after the other: runs, not single rules,
    # are looked up (groupby and the rules' list are made in C).
    for chain, run in itertools.groupby(rules, key=_CHAIN_OF):
        held = by_chain.get(chain)
        if held is None:
            by_chain[chain] = list(map(_RULE_OF, run))
        else:
            held.extend(map(_RULE_OF, run))
    return interner.chains_of(by_chain)


_CHAIN_OF: Final = operator.itemgetter(0)
_RULE_OF: Final = operator.itemgetter(1)
_TEXT_OF: Final = operator.attrgetter("text")
_NAME_OF: Final = operator.attrgetter("name")


def _table(
    name: str,
    declared: list[str],
    groups: Iterable[tuple[Chain, ...]],
    builtin_head: Rules,
    interner: RulesetInterner,
) -> Table:
    """Table ``name`` as :func:`_state`'s builder leaves it, from the fragments' chain groups.

    Chains in the builder's order: built-in ones, the canary, the declared ones, then chains
    written without a declaration (first write first) and jump targets ensured last. A chain
    written by one fragment only is that fragment's chain object; a built-in chain holds
    ``builtin_head[chain]`` (the jump rules, inserted at position 1) before what is written.
    """
    # Passes over the ~110,000 chains of a 10,000-Service nat table are C-level maps; only
    # the few chains several fragments write (KUBE-SERVICES ...) are walked one by one.
    order = dict.fromkeys(BUILTIN_CHAINS[name])
    order[KUBE_PROXY_CANARY] = None
    order.update(dict.fromkeys(declared))
    written = list(itertools.chain.from_iterable(groups))
    names = list(map(_NAME_OF, written))
    single = dict(zip(names, written, strict=True))
    multi: dict[str, list[Rule]] = {}
    if len(single) != len(names):
        several = {cname for cname, times in Counter(names).items() if times > 1}
        for chain in itertools.compress(written, map(several.__contains__, names)):
            multi.setdefault(chain.name, []).extend(chain.rules)
        for cname in several:
            del single[cname]
    order.update(dict.fromkeys(names))  # chains written without a declaration, first first
    for jump_ in JUMP_RULES:
        if jump_.table == name and jump_.dst_chain not in order:
            order[jump_.dst_chain] = None
    keys = list(order)
    chains: list[Chain | None] = list(map(single.get, keys))
    builtins = len(BUILTIN_CHAINS[name])  # the first chains of ``order``
    for i in range(builtins):
        cname = keys[i]
        held = multi.get(cname) or (single[cname].rules if cname in single else ())
        chains[i] = interner.chain(cname, (*builtin_head.get(cname, ()), *held), "ACCEPT")
    for i in itertools.compress(range(len(keys)), map(is_, chains, itertools.repeat(None))):
        cname = keys[i]
        chains[i] = interner.chain(cname, tuple(multi.get(cname, ())))
    return interner.table(name, tuple(chains))  # type: ignore[arg-type]  # no None left


Rules = Mapping[str, tuple[Rule, ...]]
"""Rules by chain name."""


@functools.lru_cache(maxsize=1)
def _builtin_heads() -> Mapping[str, Rules]:
    """The jump rules each built-in chain holds first, by table.

    Each is inserted at position 1, so the one ensured last comes first. A constant, built
    once (read-only mappings, so the module-level memo holds nothing that can change).
    """
    heads: dict[str, dict[str, list[Rule]]] = {}
    for jump_, rule_ in jump_rules():
        heads.setdefault(jump_.table, {}).setdefault(jump_.src_chain, []).insert(0, rule_)
    return MappingProxyType(
        {
            t: MappingProxyType({c: tuple(rules) for c, rules in by.items()})
            for t, by in heads.items()
        }
    )


def assembled_state(
    nat_declared: list[str],
    filter_declared: list[str],
    lines: Iterable[PartLines],
    interner: RulesetInterner,
) -> Ruleset:
    """:func:`_state` of the fragments (equal to it), reusing each fragment's chain objects.

    A sync that changes one service port builds only the chains several fragments write
    (``KUBE-SERVICES``, ...) and the tables anew, not every chain of every Service. Chains,
    tables and the ruleset are interned as :meth:`RulesetBuilder.build` interns them (with the
    run's ``interner``), so a chain equal to one a partial restore rebuilds is the very same
    object (the traffic engine tells changed chains by identity).
    """
    heads = _builtin_heads()
    lines = tuple(lines)
    tables = [_table("mangle", [], (), heads.get("mangle", {}), interner)]
    nat_groups = (p.nat_chains for p in lines)
    tables.append(_table("nat", nat_declared, nat_groups, heads.get("nat", {}), interner))
    filter_groups = (p.filter_chains for p in lines)
    tables.append(
        _table("filter", filter_declared, filter_groups, heads.get("filter", {}), interner)
    )
    return interner.ruleset(tuple(tables))


def chain_lines(chains: tuple[str, ...] | list[str]) -> list[str]:
    """The restore lines declaring ``chains`` (``:CHAIN - [0:0]``)."""
    return [f":{c} - [0:0]" for c in chains]


@functools.lru_cache(maxsize=1)
def jump_rules() -> tuple[tuple[JumpRule, Rule], ...]:
    """:data:`JUMP_RULES` with their rules (fixed, so built once)."""
    return tuple((jump, jump.rule()) for jump in JUMP_RULES)
