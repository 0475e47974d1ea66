"""A partial nftables sync spliced from the node's last one: its cost follows the changed ports.

kube-proxy's partial sync (``pkg/proxy/nftables/proxier.go`` @b0f823e6, ``syncProxyRules``)
writes only the chains of Services that changed (``skipServiceUpdate``) and only the map and set
elements that differ (``ensureElem`` / ``cleanupLeftoverKeys``).
:func:`~svcsim.sim.nft_sync.plan_nft_sync` and
:func:`~svcsim.netfilter.nft_parse.parse_table` compute that transaction, the kernel's table
after it and its parse from whole tables, which at 10,000 Services walks 10^5 chains and
2 x 10^5 rules per sync. :func:`splice_sync` gives the very same plan, parse and dynamic sets
from what changed: the node's last install is kept as :class:`Spliced` (the table as blocks: the
fixed part, then one block per service port, as the compiler assembled them,
:class:`~svcsim.proxy.nftables.TableLayout`), and only the blocks of ports whose objects
changed are replaced. Nothing whole is copied: the planned table lists its chains and rules
only when read (:class:`~svcsim.netfilter.derived.LazyTuple`), the parse's chains and maps are
the last parse's with the replaced ones over them
(:class:`~svcsim.netfilter.derived.LayeredMap`), and only elements that differ are parsed.

It answers None (the caller then takes the general path) unless the kernel holds the very table
the last sync installed, the sync is partial, the fixed part and the ports are the same, every
changed port belongs to a changed Service, and each port's chains, sets and rules are its own
(named after its Service; always so for valid Kubernetes names). Property tests
(``tests/sim/test_nft_splice.py``) check it against the general path on random changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from itertools import chain
from operator import attrgetter, itemgetter

from svcsim.netfilter.derived import LazyTuple, as_tuple, differing, layered
from svcsim.netfilter.nft_parse import ParseMemo, parse_element
from svcsim.netfilter.nft_statements import ParsedRule, ParsedTable, SetUpdate, Verdict
from svcsim.netfilter.nftables import NftChain, NftElement, NftRule, NftTable
from svcsim.proxy.gcpause import collector_paused
from svcsim.proxy.nftables import PortPart, TableLayout
from svcsim.sim.kernel import Kernel
from svcsim.sim.nft_sync import AFFINITY_PREFIX, NftSyncPlan, parse_installed

ParsedChain = tuple[ParsedRule, ...]


@dataclass(frozen=True, slots=True, eq=False)
class Spliced:
    """A table a sync installed, as the blocks the next partial sync splices.

    ``parsed_blocks`` holds each block's parsed chains (fixed part first, then the ports, as
    ``layout``), ``stale`` the flushed stale chains after them; ``updated`` counts, per set,
    the chains whose rules ``update`` it.
    """

    table: NftTable
    parsed: ParsedTable
    dynamic: frozenset[str]
    layout: TableLayout
    parsed_blocks: tuple[tuple[ParsedChain, ...], ...]
    stale: tuple[NftChain, ...]
    updated: Mapping[str, int]


def _updates(parsed: ParsedChain) -> set[str]:
    return {s.set_name for rule in parsed for s in rule.statements if isinstance(s, SetUpdate)}


def _expected(layout: TableLayout) -> tuple[tuple[NftChain, ...], tuple[NftRule, ...]]:
    """The chains and rules a planned table holds for ``layout`` (before stale chains)."""
    blocks = (layout.setup, *layout.parts)
    chains = tuple(chain.from_iterable(map(attrgetter("chains"), blocks)))
    rules = tuple(chain.from_iterable(map(attrgetter("grouped"), blocks)))
    return chains, rules


def spliced(
    table: NftTable, parsed: ParsedTable, dynamic: frozenset[str], layout: TableLayout | None
) -> Spliced | None:
    """``table`` (installed by the general path) as blocks, if it is laid out as ``layout``.

    It is when its chains are the layout's (then stale service chains), its rules each
    block's grouped rules (the kernel kept nothing else) and its sets and elements the
    compiled ones.
    """
    if layout is None or not _self_contained(layout):
        return None
    with collector_paused():
        chains, rules = _expected(layout)
        n = len(chains)
        if table.chains[:n] != chains or table.rules != rules:
            return None
        stale = tuple(table.chains[n:])
        if any("/" not in c.name or parsed.chains.get(c.name) for c in stale):
            return None  # stale chains are flushed service chains
        if len(table.elements) != len(layout.elements):
            return None
        blocks = tuple(
            tuple(parsed.chains[c.name] for c in block.chains)
            for block in (layout.setup, *layout.parts)
        )
        updated: dict[str, int] = {}
        for block in blocks:
            for parsed_chain in block:
                for name in _updates(parsed_chain):
                    updated[name] = updated.get(name, 0) + 1
        return Spliced(table, parsed, dynamic, layout, blocks, stale, updated)


def _self_contained(layout: TableLayout) -> bool:
    """Every port's chains and sets are named after its Service, its rules in its chains."""
    return all(
        part.owned_by(spn.service) for spn, part in zip(layout.ports, layout.parts, strict=True)
    )


def splice_sync(
    last: Spliced,
    installed: NftTable,
    compiled: NftTable,
    layout: TableLayout | None,
    changed_services: Iterable[str],
    *,
    full: bool,
    now_s: float,
    stale_chains: Mapping[str, float],
    memo: ParseMemo,
) -> tuple[NftSyncPlan, Spliced] | None:
    """The partial sync's plan and the install after it, from ``last`` (see the module doc).

    None when the general path must answer. ``compiled`` is the compiler's table and
    ``layout`` how it was assembled; the other arguments are
    :func:`~svcsim.sim.nft_sync.plan_nft_sync`'s.
    """
    if full or layout is None or installed is not last.table:
        return None
    old = last.layout
    if layout.ports != old.ports or layout.setup != old.setup:
        return None
    if set(stale_chains) != {c.name for c in last.stale}:
        return None
    with collector_paused():
        return _splice(
            last, compiled, layout, frozenset(changed_services), now_s, stale_chains, memo
        )


def _splice(
    last: Spliced,
    compiled: NftTable,
    layout: TableLayout,
    changed: frozenset[str],
    now_s: float,
    stale_chains: Mapping[str, float],
    memo: ParseMemo,
) -> tuple[NftSyncPlan, Spliced] | None:
    old = last.layout
    new_parts, old_parts = layout.parts, old.parts
    made = layout.derivation
    if made is not None and made.base == old.serial:  # the compiler says which it replaced
        moved = list(made.replaced)
    else:  # a remade part equal to the last one writes the same objects: not moved
        moved = differing(old_parts, new_parts)
    for i in moved:
        a, b = new_parts[i], old_parts[i]
        service = layout.ports[i].service
        if not a.owned_by(service) or not b.owned_by(service) or service not in changed:
            return None
    # Chains of a changed Service are written whole (2 + rules each: add, flush, rules).
    objects = 0
    for service in changed:
        for i in layout.services.get(service, ()):
            part = new_parts[i]
            objects += 2 * len(part.chains) + len(part.rules)
            objects += sum(1 for s in part.sets if s.name.startswith(AFFINITY_PREFIX))
    # Stale chains: the moved ports' old chains they no longer have, then the earlier ones.
    new_names: set[str] = set()
    for i in moved:
        new_names.update(c.name for c in new_parts[i].chains)
    newly_stale = [
        c for i in moved for c in old_parts[i].chains if c.name not in new_names
    ]  # fmt: skip
    still_stale = [c for c in last.stale if c.name not in new_names]
    stale_chain_list = (*newly_stale, *still_stale)
    objects += len(stale_chain_list)  # flush chain
    stale = {n: t for n, t in stale_chains.items() if n not in new_names}
    for c in newly_stale:
        stale.setdefault(c.name, now_s)
    # Elements written where they differ (added, or deleted + added, or deleted).
    touched: dict[tuple[str, tuple[str, ...]], None] = {}
    for i in moved:
        touched.update(dict.fromkeys(k for k, _ in old_parts[i].elements))
        touched.update(dict.fromkeys(k for k, _ in new_parts[i].elements))
    before, after = old.elements, layout.elements
    differ: list[tuple[str, tuple[str, ...]]] = []
    for key in touched:
        x, y = before.get(key), after.get(key)
        if x is y:
            continue
        differ.append(key)
        if y is not None and x is None:
            objects += 1
        elif y is not None and x is not None and x.value != y.value:
            objects += 2
        elif y is None and x is not None:
            objects += 1
    # Affinity sets deleted with their port's chains.
    new_sets = {s.name for i in moved for s in new_parts[i].sets}
    objects += sum(
        1
        for i in moved
        for s in old_parts[i].sets
        if s.name.startswith(AFFINITY_PREFIX) and s.name not in new_sets
    )
    # The compiled chains are the blocks' chains in order (a collision-free layout).
    blocks = (layout.setup, *new_parts)
    table = replace(
        compiled,
        chains=LazyTuple(partial(_with_stale, compiled.chains, stale_chain_list)),
        rules=LazyTuple(partial(_grouped_rules, blocks)),
    )
    parsed = _parse(last, layout, moved, stale_chain_list, newly_stale, differ, memo)
    if parsed is None:
        return None
    parsed_table, parsed_blocks, updated = parsed
    timed = {n for n, t in parsed_table.timeouts.items() if t is not None}
    dynamic = frozenset(timed | {n for n, count in updated.items() if count})
    plan = NftSyncPlan(False, table, objects, stale)
    return plan, Spliced(
        table, parsed_table, dynamic, layout, parsed_blocks, stale_chain_list, updated
    )


def _with_stale(chains: Sequence[NftChain], stale: tuple[NftChain, ...]) -> tuple[NftChain, ...]:
    return as_tuple(chains) + stale


def _grouped_rules(blocks: tuple[PortPart, ...]) -> tuple[NftRule, ...]:
    """The rules of ``blocks``, each block's grouped by chain (the plan's order)."""
    return tuple(chain.from_iterable(map(attrgetter("grouped"), blocks)))


def _chain_order(layout: TableLayout, stale: tuple[NftChain, ...]) -> Iterator[str]:
    """The chains' names in the table's order: the blocks' chains, then the stale ones."""
    blocks = (layout.setup, *layout.parts)
    names = map(itemgetter(0), chain.from_iterable(map(attrgetter("chain_items"), blocks)))
    return chain(names, (c.name for c in stale))


def _parse(
    last: Spliced,
    layout: TableLayout,
    moved: list[int],
    stale: tuple[NftChain, ...],
    newly_stale: Sequence[NftChain],
    differ: Sequence[tuple[str, tuple[str, ...]]],
    memo: ParseMemo,
) -> tuple[ParsedTable, tuple[tuple[ParsedChain, ...], ...], dict[str, int]] | None:
    """:func:`~svcsim.netfilter.nft_parse.parse_table` of the spliced table, from ``last``'s.

    The chains by name are ``last``'s with the moved ports' chains replaced
    (:class:`~svcsim.netfilter.derived.LayeredMap`); only the elements that ``differ`` are
    parsed, into the maps and sets holding them.
    """
    old = last.parsed
    blocks = list(last.parsed_blocks)
    updated = dict(last.updated)
    chain_changes: dict[str, ParsedChain] = {}
    gone: list[str] = []
    for i in moved:
        for parsed_chain in blocks[i + 1]:
            for name in _updates(parsed_chain):
                updated[name] -= 1
        gone.extend(c.name for c in last.layout.parts[i].chains)
        part = layout.parts[i]
        block = _parse_part(part, memo)
        blocks[i + 1] = block
        chain_changes.update(zip((c.name for c in part.chains), block, strict=True))
        for parsed_chain in block:
            for name in _updates(parsed_chain):
                updated[name] = updated.get(name, 0) + 1
    for c in newly_stale:
        chain_changes[c.name] = memo.chain((c.name, ()))
    chains = layered(old.chains).derive(
        chain_changes,
        [n for n in gone if n not in chain_changes],
        partial(_chain_order, layout, stale),
    )
    sets_changed = any(layout.parts[i].sets != last.layout.parts[i].sets for i in moved)
    timeouts, set_types = old.timeouts, None
    sets: dict[str, frozenset[tuple[str, ...]]] = dict(old.sets)
    maps: dict[str, Mapping[tuple[str, ...], Verdict]] = dict(old.maps)
    if sets_changed:
        compiled_sets = tuple(chain(layout.setup.sets, *(p.sets for p in layout.parts)))
        timeouts = {s.name: s.timeout_s for s in compiled_sets}
        set_types = {s.name: s.type for s in compiled_sets}
        sets = {s.name: old.sets.get(s.name, frozenset()) for s in compiled_sets if not s.is_map}
        maps = {s.name: old.maps.get(s.name, {}) for s in compiled_sets if s.is_map}
    changed_sets: dict[str, set[tuple[str, ...]]] = {}
    map_set: dict[str, dict[tuple[str, ...], Verdict]] = {}
    map_gone: dict[str, list[tuple[str, ...]]] = {}
    for key in differ:
        container = key[0]
        element: NftElement | None = layout.elements.get(key)
        is_map = container in maps and container not in sets
        if element is not None and not is_map and container not in sets:
            return None  # an element of no set: the general path raises its error
        if is_map:
            if element is None:
                map_set.get(container, {}).pop(key[1], None)
                map_gone.setdefault(container, []).append(key[1])
                continue
            entry = parse_element(element, _container_type(container, set_types, layout), True)
            if isinstance(entry, Verdict):
                map_set.setdefault(container, {})[key[1]] = entry
        elif container in sets:
            members = changed_sets.get(container)
            if members is None:
                members = changed_sets[container] = set(sets[container])
            if element is None:
                members.discard(key[1])
                continue
            found = parse_element(element, _container_type(container, set_types, layout), False)
            if not isinstance(found, Verdict):
                members.add(found)
    for name, entries in changed_sets.items():
        sets[name] = frozenset(entries)
    for name in map_set.keys() | map_gone.keys():
        maps[name] = layered(maps[name]).derive(map_set.get(name, {}), map_gone.get(name, ()))
    parsed = ParsedTable(
        name=old.name,
        chains=chains,
        base_chains=old.base_chains,
        sets=sets,
        maps=maps,
        timeouts=timeouts,
    )
    return parsed, tuple(blocks), updated


def _container_type(
    name: str, set_types: Mapping[str, str] | None, layout: TableLayout
) -> str | None:
    """The ``type`` of set or map ``name`` (the last declared of that name, as parse_table)."""
    if set_types is not None:
        return set_types.get(name)
    for s in layout.setup.sets:  # where kube-proxy's elements go (no port's set has its name)
        if s.name == name:
            return s.type
    found = None
    for s in chain.from_iterable(map(attrgetter("sets"), layout.parts)):
        if s.name == name:
            found = s.type
    return found


def _parse_part(part: PortPart, memo: ParseMemo) -> tuple[ParsedChain, ...]:
    """Each chain of ``part`` parsed (through the run's memo), in its chain order."""
    by_chain: dict[str, list[tuple[str, str | None]]] = {c.name: [] for c in part.chains}
    for rule in part.grouped:
        by_chain[rule.chain].append((rule.rule, rule.comment))
    return tuple(memo.chain((name, tuple(texts))) for name, texts in by_chain.items())


def install_planned(
    kernel: Kernel,
    plan: NftSyncPlan,
    next_spliced: Spliced | None,
    layout: TableLayout | None,
    memo: ParseMemo,
    now_s: float,
) -> Spliced | None:
    """Install a successful sync's table; what the next partial sync can splice from.

    ``next_spliced`` is :func:`splice_sync`'s answer (its parse is the table's); without one
    the table is parsed whole and laid out as blocks if it can be (:func:`spliced`).
    """
    if next_spliced is not None:
        kernel.install_nft(plan.table, next_spliced.parsed, now_s, next_spliced.dynamic)
        return next_spliced
    parsed = parse_installed(plan.table, memo)
    kernel.install_nft(plan.table, parsed, now_s)
    assert kernel.nft is not None  # an nftables-mode kernel holds a table
    return spliced(plan.table, parsed, kernel.nft.dynamic, layout)
