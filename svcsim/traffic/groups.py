"""Per-state tables of the batched engine: source classes, statistic chains, classified outcomes.

A *group* is what the batched engine knows about one (workload, node, source class) for the
state between two control-plane events: the dispatch's chain of choices (:class:`Spine`: bounds
on 32-bit draws, "stop when below" flags, leaf outcomes, final outcome) and each outcome
classified into codes. An iptables chain of statistic rules reads one draw per rule; an
nf_tables ``numgen random mod N`` reads one draw for all its N intervals (``one_draw``).
:func:`chain_choice` then picks the outcome of attempts of many groups in one array pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import ip_network
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

from svcsim.memo import BoundedMemo
from svcsim.netfilter.index import Dispatch, StatisticCondition
from svcsim.netfilter.model import Chain, IPNetwork, Ruleset
from svcsim.netfilter.nft_index import NftDispatch
from svcsim.netfilter.nft_statements import AddrMatch, MapLookup, ParsedRule
from svcsim.netfilter.packet import NodeNetwork, parse_ip
from svcsim.sim.kernel import NftRules
from svcsim.traffic.draws import draws32_i64
from svcsim.traffic.spec import ServiceTime

I32 = npt.NDArray[np.int32]


@dataclass(frozen=True, slots=True)
class Spine:
    """A chain of choices: rule ``j`` decides "stop at ``leaves[j]``" from a 32-bit draw.

    Rule ``j`` stops when ``draw < bounds[j]`` (``below[j]``) or ``draw >= bounds[j]`` (not),
    reading draw slot ``j``, or slot 0 for every rule when ``one_draw`` (numgen's intervals);
    no rule stopping gives ``final``.
    """

    bounds: tuple[int, ...]
    below: tuple[bool, ...]
    leaves: tuple[int, ...]
    final: int
    one_draw: bool = False


NO_SPINE: Spine = Spine((), (), (), 0)
"""The placeholder of a group that is not a chain (its attempts go per flow)."""

UNGROUPED: Final = -2
"""A (workload, client) pair's group id while it is not grouped under the current state (it is
asked for its group when next needed). Group ids proper are ``>= 0``."""
NOT_SERVED: Final = -1
"""An outcome row's ``time`` when no app serves it (else the id of its service-time
distribution, :attr:`Groups.time_ids`)."""
PER_FLOW: Final = -1
"""A pair's group id when it has no group: its attempts are walked per flow (per-flow
workloads, IPVS and userspace nodes, dispatches too large to index)."""


class GroupKey(NamedTuple):
    """What asks for a group: a workload, the client's node and its source's representative."""

    workload: int
    node: str
    source: str


REGROUPED: Final = GroupKey(-1, "", "")
"""The key a group is registered under when it is rebuilt for every pair that named the old one
(new rows after an API change): those pairs are renumbered to it, not re-keyed, so no one pair's
key names it."""


class SourceClasses:
    """Sources that every rule of a node's ruleset treats alike: same signature, same dispatch.

    A walk depends on the source only through ``-s`` matches and ``--src-type`` (besides recent
    lists, which make a dispatch per-source anyway), so two sources inside the same set of
    ``-s`` networks and of the same address type on the node have the same dispatch there.
    :meth:`representative` picks, among ``known`` sources (shared by all nodes, so that nodes
    ask the same questions and can share dispatches), the first with ``src``'s signature.
    """

    def __init__(
        self,
        ruleset: Ruleset | NftRules,
        network: NodeNetwork,
        memos: SourceMemos | None = None,
    ) -> None:
        # Without the engine's memos, a throw-away set: the same answers.
        memos = memos if memos is not None else SourceMemos()
        self._sources = sources_of(ruleset, memos)
        self._network = network
        self._memos = memos
        self._by_signature: dict[tuple[object, ...], str] = {}
        self._signatures: dict[str, tuple[object, ...]] = {}

    def signature(self, src: str) -> tuple[object, ...]:
        """Which distinct ``-s`` networks hold ``src``, and its address type on the node."""
        found = self._signatures.get(src)
        if found is None:
            part = self._sources.part(src)
            kind = self._memos.address_type(self._network, src)
            found = self._signatures[src] = (*part, kind)
        return found

    def representative(self, src: str, known: list[str] | None = None) -> str:
        """The first of ``known`` (then ``src`` itself, added to ``known``) alike to ``src``."""
        signature = self.signature(src)
        found = self._by_signature.get(signature)
        if found is None:
            pool = known if known is not None else []
            found = next((r for r in pool if self.signature(r) == signature), None)
            if found is None:
                found = src
                pool.append(src)
            self._by_signature[signature] = found
        return found


def sources_of(ruleset: Ruleset | NftRules, memos: SourceMemos) -> RulesetSources:
    """The ruleset's ``-s`` addresses and networks (:class:`RulesetSources`), memoised in ``memos``.

    Nodes' rulesets hold the very same chain objects when their rules agree (nodes in step
    hold the very same ruleset), so the networks read from one ruleset serve every ruleset of
    the same chains (``memos.rulesets``), with the signature parts worked out for them.
    """
    shared = memos.rulesets
    if isinstance(ruleset, NftRules):
        key = SourcesKey(NFT_TABLE, (id(ruleset),))
        found = shared.get(key)
        if found is None:
            found = memos.sources(*nft_sources(ruleset, memos.nft_chains))
            shared.put(key, found, holds=ruleset)
        return found
    key = SourcesKey(RULESET, (id(ruleset),))
    found = shared.get(key)
    if found is None:
        chains = [chain for table in ruleset.tables for chain in table.chains]
        of_chains = SourcesKey(CHAINS, tuple(map(id, chains)))
        found = shared.get(of_chains)
        if found is None:
            found = memos.sources(*_ruleset_sources(chains, memos.chains))
            shared.put(of_chains, found, holds=chains)
        shared.put(key, found, holds=ruleset)
    return found


class Representatives:
    """:meth:`SourceClasses.representative` for every node at once, memoised across nodes.

    A source's representative on a node is the first ``known`` source with its signature
    there: its ``-s`` part (the ruleset's, :meth:`RulesetSources.part`) and its address type on the
    node. So it is a function of the ruleset's sources, the address types of the known sources
    on the node, and the source's own signature: nodes in step, whose networks type the known
    sources alike, share one answer, however many nodes and sources ask (a view change asks
    once per node). The same answers as one :class:`SourceClasses` per node and rules.
    """

    def __init__(self, memos: SourceMemos) -> None:
        self._memos = memos
        self._reps: BoundedMemo[tuple[int, tuple[str, ...], tuple[object, ...], str], str] = (
            BoundedMemo("representative sources by (sources identity, types, signature)", 4096)
        )
        self._types: dict[int, tuple[NodeNetwork, tuple[str, ...]]] = {}
        """Per node network (by identity, held): the address types of the known sources."""

    def of(
        self, ruleset: Ruleset | NftRules, network: NodeNetwork, src: str, known: list[str]
    ) -> str:
        """The representative of ``src`` on a node with ``ruleset`` and ``network``.

        As :meth:`SourceClasses.representative`: ``src`` is added to ``known`` if no known
        source is alike.
        """
        memos = self._memos
        sources = sources_of(ruleset, memos)
        part = sources.part(src)
        kind = memos.address_type(network, src)
        types = self._types_of(network, known)
        key = (id(sources), types, part, kind)
        found = self._reps.get(key)
        if found is None:
            found = next(
                (
                    r
                    for r, t in zip(known, types, strict=True)
                    if t == kind and sources.part(r) == part
                ),
                None,
            )
            if found is None:
                found = src
                known.append(src)
            self._reps.put(key, found, holds=sources)
        return found

    def _types_of(self, network: NodeNetwork, known: list[str]) -> tuple[str, ...]:
        cached = self._types.get(id(network))
        if cached is not None and len(cached[1]) == len(known):
            return cached[1]  # known sources are only ever appended
        types = tuple(self._memos.address_type(network, r) for r in known)
        self._types[id(network)] = (network, types)
        return types


NetKey = tuple[int, int, int]
"""A network as (IP version, network address, prefix length): what network equality compares."""


@dataclass(slots=True)
class RulesetSources:
    """A ruleset's single ``-s`` addresses and wider networks, and signature parts found."""

    hosts: set[tuple[int, int]]
    wide: tuple[tuple[NetKey, IPNetwork], ...]
    signatures: dict[str, tuple[object, ...]] = field(default_factory=dict)
    """Per source: its (single address, wider networks) part of the signature."""
    in_wide: dict[str, tuple[tuple[int, int], tuple[NetKey, ...]]] = field(default_factory=dict)
    """Per source: its address as (version, integer) and the keys of the :attr:`wide`
    networks holding it; shared by every :class:`RulesetSources` of equal ``wide``
    (:meth:`SourceMemos.sources`): syncs change endpoints (``hosts``), rarely networks."""

    def part(self, src: str) -> tuple[object, ...]:
        """What the rules say about ``src``: the single address, the wider networks holding it.

        The same on every node holding these sources (memoised in :attr:`signatures`).
        """
        found = self.signatures.get(src)
        if found is None:
            known = self.in_wide.get(src)
            if known is None:
                address = parse_ip(src)
                known = self.in_wide[src] = (
                    (address.version, int(address)),
                    tuple(
                        key
                        for key, net in self.wide
                        if address.version == net.version and address in net
                    ),
                )
            host, nets = known
            found = self.signatures[src] = (host if host in self.hosts else None, nets)
        return found


NFT_TABLE: Final = "nft table"
RULESET: Final = "ruleset"
CHAINS: Final = "chains"


class SourcesKey(NamedTuple):
    """What a ruleset's sources are memoised by: one of the kinds above, and its identities."""

    kind: str
    """:data:`NFT_TABLE` or :data:`RULESET` (one id: the object), :data:`CHAINS` (every
    chain of an iptables ruleset, in order)."""
    ids: tuple[int, ...]


MEMO_LIMIT: Final = 1 << 14
"""Chains whose sources each memo keeps."""


@dataclass(frozen=True, slots=True)
class SourceMemos:
    """The ``-s`` networks read from rules, by identity; owned by a traffic engine.

    Every entry holds what its key names by identity (:meth:`~svcsim.memo.BoundedMemo.put`),
    so the ids stay unique while it lives.
    """

    chains: BoundedMemo[int, Sources] = field(
        default_factory=lambda: BoundedMemo("-s networks by iptables chain identity", MEMO_LIMIT)
    )
    nft_chains: BoundedMemo[int, NftChainSources] = field(
        default_factory=lambda: BoundedMemo("saddr reads by nf_tables chain identity", MEMO_LIMIT)
    )
    rulesets: BoundedMemo[SourcesKey, RulesetSources] = field(
        default_factory=lambda: BoundedMemo("sources by ruleset or chains identities", 64)
    )
    wides: BoundedMemo[
        tuple[NetKey, ...], dict[str, tuple[tuple[int, int], tuple[NetKey, ...]]]
    ] = field(default_factory=lambda: BoundedMemo("sources in wide -s networks, by networks", 64))
    address_types: BoundedMemo[tuple[int, str], str] = field(
        default_factory=lambda: BoundedMemo(
            "address types of sources by (node network identity, source)", MEMO_LIMIT
        )
    )

    def sources(
        self, hosts: set[tuple[int, int]], wide: tuple[tuple[NetKey, IPNetwork], ...]
    ) -> RulesetSources:
        """A :class:`RulesetSources`; which sources ``wide`` holds is shared by equal ``wide``."""
        keys = tuple(key for key, _ in wide)
        shared = self.wides.get(keys)
        if shared is None:
            shared = self.wides.put(keys, {})
        return RulesetSources(hosts, wide, in_wide=shared)

    def address_type(self, network: NodeNetwork, src: str) -> str:
        """``src``'s address type on ``network`` (a node's network never changes: asked once)."""
        found = self.address_types.get((id(network), src))
        if found is None:
            found = self.address_types.put(
                (id(network), src), network.address_type(parse_ip(src)), holds=network
            )
        return found


def _ruleset_sources(
    chains: list[Chain], memo: BoundedMemo[int, Sources] | None
) -> tuple[set[tuple[int, int]], tuple[tuple[NetKey, IPNetwork], ...]]:
    # kube-proxy's -s matches are mostly single endpoint addresses (hairpin masquerade):
    # those are a set of addresses, the few wider networks are tested one by one.
    all_hosts: set[tuple[int, int]] = set()
    wide: dict[NetKey, IPNetwork] = {}
    for chain in chains:
        hosts, nets = chain_sources(chain, memo)
        if hosts:
            all_hosts.update(hosts)
        for key, net in nets:
            wide.setdefault(key, net)
    return all_hosts, tuple(wide.items())


Sources = tuple[tuple[tuple[int, int], ...], tuple[tuple[NetKey, IPNetwork], ...]]
"""A chain's ``-s`` networks: single addresses as (version, address), the others with keys."""
NftChainSources = tuple[tuple[IPNetwork, ...], tuple[str, ...], tuple[tuple[str, int], ...]]
"""An nf_tables chain's ``ip saddr`` networks, the sets and (map, key position)s it reads."""


def chain_sources(chain: Chain, memo: BoundedMemo[int, Sources] | None = None) -> Sources:
    """The networks of the chain's ``-s`` matches: single addresses, and wider networks.

    Rulesets of successive syncs share their unchanged chains, so with a ``memo`` (an engine's
    :attr:`SourceMemos.chains`) a chain is read once however many rulesets hold it.
    """
    if memo is not None:
        hit = memo.get(id(chain))
        if hit is not None:
            return hit
    hosts: list[tuple[int, int]] = []
    nets: list[tuple[NetKey, IPNetwork]] = []
    for rule in chain.rules:
        if rule.source is not None:
            n = rule.source.network
            if n.prefixlen == n.max_prefixlen:
                hosts.append((n.version, int(n.network_address)))
            else:
                nets.append(((n.version, int(n.network_address), n.prefixlen), n))
    found = (tuple(hosts), tuple(nets))
    if memo is not None:
        memo.put(id(chain), found, holds=chain)
    return found


def nft_sources(
    rules: NftRules, memo: BoundedMemo[int, NftChainSources] | None = None
) -> tuple[set[tuple[int, int]], tuple[tuple[NetKey, IPNetwork], ...]]:
    """What in an nf_tables table reads the source address: single addresses, wider networks.

    ``ip saddr`` matches (addresses, CIDRs, static sets) and the ``ip saddr`` part of map
    keys; ``fib saddr type local`` is the address type, part of every signature anyway.
    Dynamic sets (affinity) make a dispatch per source: the per-flow path uses the real one.
    Chains are interned (the run's parse memo), so with a ``memo`` each is read once.
    """
    hosts: set[tuple[int, int]] = set()
    wide: dict[NetKey, IPNetwork] = {}
    parsed = rules.parsed

    def add(net: IPNetwork) -> None:
        if net.prefixlen == net.max_prefixlen:
            hosts.add((net.version, int(net.network_address)))
        else:
            wide.setdefault((net.version, int(net.network_address), net.prefixlen), net)

    saddr_sets: set[str] = set()
    saddr_maps: set[tuple[str, int]] = set()
    for rules_of_chain in parsed.chains.values():
        found = _nft_chain_sources(rules_of_chain, memo)
        for net in found[0]:
            add(net)
        saddr_sets.update(found[1])
        saddr_maps.update(found[2])
    for name in saddr_sets - rules.dynamic:
        for key in parsed.sets.get(name, frozenset()):
            add(ip_network(key[0], strict=False))
    for name, position in saddr_maps:
        for key in parsed.maps.get(name, {}):
            add(ip_network(key[position], strict=False))
    return hosts, tuple(wide.items())


def _nft_chain_sources(
    rules: tuple[ParsedRule, ...], memo: BoundedMemo[int, NftChainSources] | None
) -> NftChainSources:
    if memo is not None:
        hit = memo.get(id(rules))
        if hit is not None:
            return hit
    nets: list[IPNetwork] = []
    sets: list[str] = []
    maps: list[tuple[str, int]] = []
    for rule in rules:
        for st in rule.statements:
            if isinstance(st, AddrMatch) and st.field == "saddr":
                nets.extend(st.networks)
                if st.set_name is not None:
                    sets.append(st.set_name)
            elif isinstance(st, MapLookup) and "ip saddr" in st.selectors:
                position = st.selectors.index("ip saddr")
                if st.map_name is not None:
                    maps.append((st.map_name, position))
                for key, _ in st.inline:
                    nets.append(ip_network(key[position], strict=False))
    found = (tuple(nets), tuple(sets), tuple(maps))
    if memo is not None:
        memo.put(id(rules), found, holds=rules)
    return found


def chain_spine(dispatch: Dispatch | NftDispatch) -> Spine | None:
    """A dispatch's chain of choices (see :class:`Spine`), or None if it is not one.

    iptables: read from the dispatch's paths: in a chain, the path ending at depth ``d``
    (``d + 1`` conditions) stops there; at the last depth the "matched" path is the leaf and
    the other is the final outcome; a threshold ``t`` on 31-bit draws is ``2 t`` on ``d32``.
    nf_tables: the numgen's intervals (:meth:`NftDispatch.spine`), all on one draw.
    """
    if isinstance(dispatch, NftDispatch):
        nft = dispatch.spine()
        if nft is None or dispatch.has_recent:
            return None
        return Spine(nft.bounds, (True,) * len(nft.bounds), nft.leaves, nft.final, True)
    if not dispatch.is_chain or dispatch.has_recent:
        return None
    paths = dispatch.paths
    k = dispatch.max_draws
    if k == 0:
        return Spine((), (), (), paths[0].outcome) if len(paths) == 1 else None
    thresholds: list[int] = []
    below: list[bool] = []
    leaves: list[int] = []
    final = -1
    for depth in range(k):
        ending = [p for p in paths if len(p.conditions) == depth + 1]
        if depth < k - 1 and len(ending) == 1:
            stop = ending[0]
        elif depth == k - 1 and len(ending) == 2:
            stop, rest = sorted(ending, key=lambda p: not _last(p.conditions).matched)
            final = rest.outcome
        else:
            return None
        last = _last(stop.conditions)
        thresholds.append(2 * last.threshold)  # draw31 < t  <=>  d32 < 2t  (draw31 = d32 >> 1)
        below.append(last.matched != last.negated)
        leaves.append(stop.outcome)
    return Spine(tuple(thresholds), tuple(below), tuple(leaves), final)


def _last(conditions: Iterable[object]) -> StatisticCondition:
    last = list(conditions)[-1]
    assert isinstance(last, StatisticCondition)
    return last


def chain_choice(
    a: dict[str, npt.NDArray[Any]], g: I32, seeds: npt.NDArray[np.uint64]
) -> npt.NDArray[np.intp]:
    """Outcome index (within its group) of each attempt, for attempts of many groups at once.

    ``a`` holds the groups' padded chains (:meth:`Groups.materialise`): rule ``j`` of a chain
    stops the walk when its 32-bit draw is in ``[lo[j], hi[j])``; padding never stops. ``g``
    is each attempt's group. Like ``Dispatch.choose`` on a chain: the first rule whose draw
    decides "stop", else the final outcome; a ``one_draw`` group's rules all read draw 0.
    """
    k = a["k"][g]
    kmax = int(k.max()) if len(k) else 0
    final: npt.NDArray[np.intp] = a["final"][g]
    if not kmax:
        return final
    one = a["one_draw"][g] if a["any_one_draw"] else None
    if one is not None and one.all():
        draws = np.broadcast_to(draws32_i64(seeds, 1), (len(g), kmax))
    else:
        draws = draws32_i64(seeds, kmax)
        if one is not None and one.any():
            draws[one] = draws[one, :1]
    hi = a["hi"]
    hi = np.take(hi, g, axis=0) if hi.shape[1] == kmax else hi[g, :kmax]
    stop = draws < hi
    if a["any_above"]:  # rare: some rule stops at or above its threshold (lo > 0)
        stop &= draws >= a["lo"][g, :kmax]
    first = stop.argmax(axis=1)
    chosen: npt.NDArray[np.intp] = np.where(
        stop[np.arange(len(g)), first], a["leaves"][g, first], final
    )
    return chosen


_COLUMN_TYPES: dict[str, type[np.generic]] = {
    "outcome": np.int8,
    "cause": np.int8,
    "endpoint": np.int32,
    "pod": np.int32,
    "time": np.intp,
    "wait": np.int8,
    "accepted": np.bool_,
    "served": np.bool_,
    "refused": np.bool_,
    "icmp": np.bool_,
}
"""Each outcome-row column as the records and the resolution use it (no conversions)."""


class Groups:
    """The groups of one state (see the module docstring), also as padded arrays."""

    def __init__(self) -> None:
        self.keys: dict[GroupKey, int] = {}
        self.fast: list[bool] = []
        self.spines: list[Spine] = []
        self.offsets: list[int] = []
        self.node: list[int] = []
        """The node of the first key naming each group (others may alias it)."""
        self.columns: dict[str, list[int]] = {
            k: []
            for k in (
                "outcome",
                "cause",
                "endpoint",
                "pod",
                "time",
                "wait",
                "accepted",
                "served",
                "refused",
                "icmp",
            )
        }
        self.time_ids: dict[ServiceTime, int] = {}
        """Each distinct service-time distribution's id (a row's ``time``; else
        :data:`NOT_SERVED`)."""
        self.service_times: list[ServiceTime] = []
        self.arrays: dict[str, npt.NDArray[Any]] = {}

    def add(
        self,
        key: GroupKey,
        node: int,
        fast: bool,
        spine: Spine,
        rows: list[dict[str, int]],
    ) -> int:
        """Register a group: its chain and one row of codes per dispatch outcome; its id."""
        gid = len(self.fast)
        self.keys[key] = gid
        self.fast.append(fast)
        self.spines.append(spine)
        self.node.append(node)
        self.offsets.append(len(self.columns["outcome"]))
        for row in rows:
            for name, column in self.columns.items():
                column.append(row[name])
        return gid

    def alias(self, key: GroupKey, gid: int) -> None:
        """Let ``key`` name the existing group ``gid`` (same chain, same rows)."""
        self.keys[key] = gid

    def materialise(self) -> dict[str, npt.NDArray[Any]]:
        """Every group's chain padded into matrices, and the outcome rows as columns.

        Groups are only ever added, so only those added since the last call are converted
        (and appended to the arrays of the others).
        """
        done = len(self.arrays["k"]) if self.arrays else 0
        if done == len(self.fast):
            return self.arrays
        spines = self.spines[done:]
        kmax = max((len(sp.bounds) for sp in spines), default=0)
        if self.arrays:
            kmax = max(kmax, self.arrays["lo"].shape[1])
        # Rule j stops when lo <= draw < hi: [0, bound) for "below", [bound, 2^32) otherwise;
        # padding never stops (draws are 32-bit).
        never = np.int64(1 << 32)
        lo = np.full((len(spines), kmax), never, dtype=np.int64)
        hi = np.zeros((len(spines), kmax), dtype=np.int64)
        leaves = np.zeros((len(spines), kmax), dtype=np.intp)
        for i, sp in enumerate(spines):
            n = len(sp.bounds)
            t, b = np.array(sp.bounds, dtype=np.int64), np.array(sp.below, dtype=np.bool_)
            lo[i, :n] = np.where(b, 0, t)
            hi[i, :n] = np.where(b, t, never)
            leaves[i, :n] = sp.leaves
        rows_done = len(self.arrays["outcome"]) if self.arrays else 0
        fresh: dict[str, npt.NDArray[Any]] = {
            "fast": np.array(self.fast[done:], dtype=np.bool_),
            "k": np.array([len(sp.bounds) for sp in spines], dtype=np.intp),
            "lo": lo, "hi": hi, "leaves": leaves,
            "final": np.array([sp.final for sp in spines], dtype=np.intp),
            "one_draw": np.array([sp.one_draw for sp in spines], dtype=np.bool_),
            "offset": np.array(self.offsets[done:], dtype=np.intp),
            **{name: np.array(col[rows_done:], dtype=_COLUMN_TYPES[name])
               for name, col in self.columns.items()},
        }  # fmt: skip
        if self.arrays:
            old = self.arrays
            width = kmax - old["lo"].shape[1]
            if width:
                old = dict(old)
                old["lo"] = np.pad(old["lo"], ((0, 0), (0, width)), constant_values=never)
                old["hi"] = np.pad(old["hi"], ((0, 0), (0, width)))
                old["leaves"] = np.pad(old["leaves"], ((0, 0), (0, width)))
            fresh = {name: np.concatenate([old[name], part]) for name, part in fresh.items()}
        # kube-proxy's rules all stop below their threshold: then only ``hi`` decides.
        fresh["any_above"] = np.array(bool((fresh["lo"][fresh["lo"] < never] > 0).any()))
        fresh["any_one_draw"] = np.array(bool(fresh["one_draw"].any()))
        self.arrays = fresh
        return self.arrays
