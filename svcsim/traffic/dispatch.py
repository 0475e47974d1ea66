"""Dispatches that survive rule changes which do not touch them, and are shared between nodes.

Every kube-proxy sync installs a new ruleset, and :class:`~svcsim.netfilter.index.DispatchIndex`
starts over; enumerating a dispatch walks the rules once per path, milliseconds for a Service
with a few dozen endpoints, for every node. Yet a sync usually changes one Service's chains,
and nodes mostly hold the same chains. A walk (:func:`~svcsim.netfilter.walk.walk`) is a
deterministic function of the packet, the draws, the chains it asks the ruleset for, and the
answers the node's network gives it (is this address local, its type, the interfaces). So
:class:`DispatchCache` builds a dispatch with :func:`~svcsim.netfilter.index.build_dispatch`
on a ruleset and a network that note every chain looked up (absent built-in chains included)
and every network answer, and reuses the dispatch - on the same node under a later ruleset, or
on another node - wherever each of those chains is still an equal chain and each answer the
same. That is exact: the walks would ask the same questions and get the same answers. (The
outgoing interface is also asked for to describe the routing step; it only counts where a rule
read has an ``-o`` match.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from svcsim.memo import BoundedMemo
from svcsim.netfilter.index import Dispatch, DispatchTooLargeError, build_dispatch
from svcsim.netfilter.model import Chain, Ruleset
from svcsim.netfilter.nft_index import NftDispatch
from svcsim.netfilter.packet import NodeNetwork, Origin, Packet
from svcsim.sim.kernel import Kernel
from svcsim.traffic.nft_dispatch import NftDispatchCache, ReadKey
from svcsim.traffic.recording import RecordingNetwork


class _RecordingRuleset(Ruleset):
    """A ruleset that notes every chain looked up (the walk's only way to read rules)."""

    __slots__ = ("seen",)

    def __init__(self, base: Ruleset) -> None:
        super().__init__(base.tables)
        self.seen: dict[tuple[str, str], None]
        object.__setattr__(self, "seen", {})  # the frozen base refuses plain assignment

    def chain(self, table: str, name: str) -> Chain | None:
        """The chain, after noting that it was asked for."""
        self.seen[(table, name)] = None
        return super().chain(table, name)


BEYOND_KEEP = 16
"""Other dispatches whose unshared answers one dispatch remembers (then it starts over)."""

TOKENS_SWEEP_EVERY = 256
"""New ruleset tokens between two sweeps of dead tokens out of the dispatches' token sets."""

Snapshot = tuple[tuple[str, str, Chain | None], ...]


@dataclass(slots=True)
class _Built:
    """A dispatch and what it depends on besides its packet."""

    dispatch: Dispatch
    chains: Snapshot
    answers: tuple[tuple[tuple[str, Any], Any], ...]
    networks: dict[int, NodeNetwork] = field(default_factory=dict)
    """Networks known to give every answer, by identity (a NodeNetwork is frozen: it answers
    alike forever; the entry holds it, so its id stays its own)."""
    rulesets: set[int] = field(default_factory=set)
    """Tokens (:class:`_RulesetTokens`) of rulesets known to hold every chain (dead tokens are
    swept out: see :meth:`DispatchCache._sweep_tokens`)."""
    not_rulesets: set[int] = field(default_factory=set)
    """Tokens of rulesets known to differ in some chain (nodes in step ask once)."""
    names: frozenset[tuple[str, str]] = field(init=False)
    """``(table, chain)`` of :attr:`chains`: what the walks asked the ruleset for."""
    serial: int = -1
    """A number of its own (the cache's build count when built): never reused."""
    beyond: dict[int, tuple[tuple[tuple[str, Any], Any], ...]] = field(default_factory=dict)
    """Per other dispatch (by :attr:`serial`): the answers of this one it does not share."""

    def __post_init__(self) -> None:
        self.names = frozenset((table, name) for table, name, _ in self.chains)

    def holds_on(
        self,
        kernel: Kernel,
        same: _ChainEquality,
        token: int | None = None,
        known: _Built | None = None,
    ) -> bool:
        """True if every chain and network answer is the same on ``kernel`` now.

        ``token`` names the kernel's ruleset by its chain objects (None: unknown). ``known``:
        a dispatch whose answers are known to hold on the kernel's network (the node's last
        one); then only the answers it does not share are asked (after a sync, mostly none
        or one: the walks ask the same questions of a node's network, sync after sync).
        """
        ruleset, network = kernel.ruleset, kernel.network
        if token is None or token not in self.rulesets:
            if token is not None and token in self.not_rulesets:
                return False
            for table, name, chain in self.chains:
                found = ruleset.chain(table, name)
                if found is not chain and not same(found, chain):
                    if token is not None:
                        self.not_rulesets.add(token)
                    return False
            if token is not None:
                self.rulesets.add(token)
        return self.answers_alike(network, known)

    def answers_alike(self, network: NodeNetwork, known: _Built | None = None) -> bool:
        """True if ``network`` gives every answer the walks got.

        The network half of :meth:`holds_on` (``known`` as there).
        """
        if id(network) in self.networks:
            return True
        answers = self.answers
        if known is not None and id(network) in known.networks:
            answers = self._beyond(known)
        for (method, arg), answer in answers:
            if getattr(network, method)(arg) != answer:
                return False
        self.networks[id(network)] = network
        return True

    def _beyond(self, known: _Built) -> tuple[tuple[tuple[str, Any], Any], ...]:
        """The answers of this dispatch that ``known``'s answers do not include."""
        found = self.beyond.get(known.serial)
        if found is None:
            if len(self.beyond) >= BEYOND_KEEP:
                self.beyond.clear()
            shared = set(known.answers)
            found = self.beyond[known.serial] = tuple(qa for qa in self.answers if qa not in shared)
        return found


class ChainPair(NamedTuple):
    """Two chains compared, by identity."""

    a_id: int
    b_id: int


class _NodeToken(NamedTuple):
    """A node's kernel at one generation, and its ruleset's token then."""

    kernel: Kernel
    generation: int
    token: int


class _ChainEquality:
    """``a == b`` for chains, remembered by identity.

    A new ruleset's chain is compared with a cached one once, however many dispatches read it.
    """

    def __init__(self, limit: int = 1 << 16) -> None:
        self._known: BoundedMemo[ChainPair, bool] = BoundedMemo(
            "chain equality by the chains' identities", limit
        )

    def __call__(self, a: Chain | None, b: Chain | None) -> bool:
        if a is b:
            return True
        if a is None or b is None:
            return False
        key = ChainPair(id(a), id(b))
        found = self._known.get(key)
        if found is None:
            found = self._known.put(key, a == b, holds=(a, b))
        return found


class _RulesetTokens:
    """A number per ruleset content: rulesets made of the very same chain objects share it.

    Nodes whose rules agree hold the same chain objects, so a dispatch's chains checked on one
    node's ruleset need no check on another's with the same token. A ruleset answers every
    chain lookup from its tables' names and chains in order, so equal keys answer alike.
    Tokens are never reused (the count goes on when the memo drops entries).
    """

    def __init__(self, limit: int = 256) -> None:
        self._by_key: BoundedMemo[tuple[tuple[str, tuple[int, ...]], ...], int] = BoundedMemo(
            "ruleset tokens by (table name, chain identities) of each table", limit
        )
        self._of_node: dict[str, _NodeToken] = {}
        self._last: tuple[Ruleset, int] | None = None
        """The last ruleset given a token, and its token."""
        self._next = 0

    @property
    def minted(self) -> int:
        """Tokens given out so far (each new one is this count then)."""
        return self._next

    def live(self) -> frozenset[int]:
        """Every token :meth:`of` may still return; any other one is never asked about again.

        :meth:`of` answers from a node's own entry, the last ruleset, or the key memo, and
        mints only new numbers, so a token in none of them is gone for good.
        """
        found = set(self._by_key.values())
        found.update(known.token for known in self._of_node.values())
        if self._last is not None:
            found.add(self._last[1])
        return frozenset(found)

    def of(self, kernel: Kernel) -> int:
        """The token of ``kernel``'s current ruleset."""
        known = self._of_node.get(kernel.node)
        if known is not None and known.kernel is kernel and known.generation == kernel.generation:
            return known.token
        ruleset = kernel.ruleset
        last = self._last
        if last is not None and last[0] is ruleset:  # nodes in step hold one ruleset object
            self._of_node[kernel.node] = _NodeToken(kernel, kernel.generation, last[1])
            return last[1]
        key = tuple((t.name, tuple(map(id, t.chains))) for t in ruleset.tables)
        found = self._by_key.get(key)
        if found is None:
            found = self._by_key.put(key, self._next, holds=ruleset)
            self._next += 1
        self._of_node[kernel.node] = _NodeToken(kernel, kernel.generation, found)
        self._last = (ruleset, found)
        return found


_Key = tuple[str, Origin, str, str, int]
"""A dispatch's packet: (source, origin, destination, protocol, destination port)."""


@dataclass(slots=True)
class _NodeEntry:
    built: _Built
    generation: int


class DispatchCache:
    """Dispatches per node and key, revalidated when the node's rules change.

    ``built`` counts enumerations, ``reused`` the times a dispatch served a new ruleset or
    another node without one (iptables kernels; :attr:`nft` counts its own).
    """

    def __init__(self, keep: int = 8) -> None:
        self._nodes: dict[tuple[str, _Key], _NodeEntry] = {}
        self._shared: dict[_Key, list[_Built]] = {}
        self._keep = keep
        self._same = _ChainEquality()
        self._tokens = _RulesetTokens()
        self._swept_at = 0
        """:attr:`_RulesetTokens.minted` at the last sweep of dead tokens."""
        self.nft = NftDispatchCache(keep)
        """The nf_tables kernels' dispatches (nftables mode)."""
        self.built = 0
        self.reused = 0
        self.too_large: dict[tuple[str, _Key], tuple[int, str]] = {}
        """Keys whose rules branch beyond the bound, per node: the kernel generation at which
        that was found and the error's text (raised again without re-enumerating)."""

    def lookup(
        self, kernel: Kernel, src: str, origin: Origin, dst: str, protocol: str, dport: int
    ) -> Dispatch | NftDispatch:
        """The dispatch of new connections with this key under ``kernel``'s current rules."""
        return self.lookup_reads(kernel, src, origin, dst, protocol, dport)[0]

    def lookup_reads(
        self, kernel: Kernel, src: str, origin: Origin, dst: str, protocol: str, dport: int
    ) -> tuple[Dispatch | NftDispatch, frozenset[tuple[str, str]] | frozenset[ReadKey]]:
        """:meth:`lookup`, and what its walks read.

        iptables: the ``(table, chain)`` names; the dispatch holds on any later ruleset of the
        node in which each of those names still gives the very same chain object (the node's
        network never changes). nf_tables: the reads of :mod:`svcsim.traffic.nft_dispatch`.
        Raises :class:`~svcsim.netfilter.index.DispatchTooLargeError` for a key with more
        paths than the bound (noted in :attr:`too_large`: asked again under the same rules, it
        raises at once).
        """
        key = (src, origin, dst, protocol, dport)
        refused = self.too_large.get((kernel.node, key))
        if refused is not None and refused[0] == kernel.generation:
            raise DispatchTooLargeError(refused[1])
        try:
            if kernel.nft is not None:
                return self.nft.lookup_reads(kernel, src, origin, dst, protocol, dport)
            built = self._entry(kernel, key).built
        except DispatchTooLargeError as exc:
            self.too_large[(kernel.node, key)] = (kernel.generation, str(exc))
            raise
        return built.dispatch, built.names

    def adopt(
        self,
        kernel: Kernel,
        like: Kernel,
        src: str,
        origin: Origin,
        dst: str,
        protocol: str,
        dport: int,
    ) -> bool:
        """Give ``kernel`` the dispatch ``like`` holds for this key, if it surely is its own.

        For nodes in step: ``like`` (an iptables kernel) looked the key up under its current
        rules, and ``kernel`` holds the very same ruleset object, so the walks would ask the
        same chains; the dispatch is ``kernel``'s too if its network gives the same answers
        (the network half of :meth:`_Built.holds_on`). Then it is noted as ``kernel``'s entry
        (as :meth:`lookup_reads` would) and True is returned; else nothing changes (ask
        :meth:`lookup_reads`). One check per node instead of a lookup.
        """
        return self.adopt_many([kernel], like, src, origin, dst, protocol, dport)[0]

    def adopt_many(
        self,
        kernels: list[Kernel],
        like: Kernel,
        src: str,
        origin: Origin,
        dst: str,
        protocol: str,
        dport: int,
    ) -> list[bool]:
        """:meth:`adopt` for each of ``kernels`` (the same ``like`` and key for all)."""
        key = (src, origin, dst, protocol, dport)
        found = self._nodes.get((like.node, key))
        if found is None or found.generation != like.generation or like.nft is not None:
            return [False] * len(kernels)
        built, ruleset, nodes = found.built, like.ruleset, self._nodes
        out: list[bool] = []
        for kernel in kernels:
            if kernel.ruleset is not ruleset or kernel.nft is not None:
                out.append(False)
                continue
            mine = nodes.get((kernel.node, key))
            if mine is not None and mine.generation == kernel.generation:
                out.append(mine.built is built)
                continue
            known = mine.built if mine is not None else None
            if not built.answers_alike(kernel.network, known):
                out.append(False)
                continue
            self.reused += 1
            nodes[(kernel.node, key)] = _NodeEntry(built, kernel.generation)
            out.append(True)
        return out

    def _entry(self, kernel: Kernel, key: _Key) -> _NodeEntry:
        entry = self._nodes.get((kernel.node, key))
        if entry is not None and entry.generation == kernel.generation:
            return entry
        token = self._tokens.of(kernel)
        if self._tokens.minted - self._swept_at >= TOKENS_SWEEP_EVERY:
            self._sweep_tokens()
        if entry is not None and entry.built.holds_on(kernel, self._same, token):
            entry.generation = kernel.generation
            self.reused += 1
            return entry
        candidates = self._shared.setdefault(key, [])
        known = entry.built if entry is not None else None
        for built in candidates:
            if built.holds_on(kernel, self._same, token, known):
                self.reused += 1
                break
        else:
            src, origin, dst, protocol, dport = key
            built = self._build(kernel, Packet(src, dst, protocol, dport, origin=origin))
            candidates.insert(0, built)
            del candidates[self._keep :]
        entry = self._nodes[(kernel.node, key)] = _NodeEntry(built, kernel.generation)
        return entry

    def _sweep_tokens(self) -> None:
        """Drop the tokens no ruleset can be given again from every dispatch's token sets.

        Every sync mints a token, and a dispatch that outlives many syncs would otherwise
        remember each of them for good (memory growing with simulated time). Only tokens that
        can never be asked about go, so no answer changes; the sets then hold at most the live
        tokens (the key memo's limit plus one per node and the last one).
        """
        live = self._tokens.live()
        seen: set[int] = set()
        builts = [b for shared in self._shared.values() for b in shared]
        builts.extend(entry.built for entry in self._nodes.values())
        for built in builts:
            if id(built) not in seen:
                seen.add(id(built))
                # ``&=`` builds a new table: a set never shrinks by removals alone.
                built.rulesets &= live
                built.not_rulesets &= live
        self._swept_at = self._tokens.minted

    def _build(self, kernel: Kernel, packet: Packet) -> _Built:
        ruleset, network = _RecordingRuleset(kernel.ruleset), RecordingNetwork(kernel.network)
        dispatch = build_dispatch(ruleset, packet, network, max_paths=kernel.max_paths)
        chains = tuple((t, n, kernel.ruleset.chain(t, n)) for t, n in ruleset.seen)
        # The walk asks for the outgoing interface to describe its routing step too; the answer
        # decides nothing unless a rule it read has an ``-o`` match.
        uses_out = any(r.out_interface is not None for *_, c in chains if c for r in c.rules)
        answers = tuple(
            (q, a) for q, a in network.answers.items() if uses_out or q[0] != "out_interface"
        )
        self.built += 1
        built = _Built(dispatch, chains, answers, serial=self.built)
        built.networks[id(kernel.network)] = kernel.network  # its answers came from it
        return built
