"""The fast path for nf_tables: per-key dispatch enumerated from :func:`walk_nft`'s own walk.

The nf_tables counterpart of :mod:`svcsim.netfilter.index`. For one packet key the walk through
kube-proxy's table (:func:`~svcsim.netfilter.nft_eval.walk_nft`) is a deterministic function of
the answers to its non-deterministic questions: the value of each ``numgen random mod N``
reached (an N-way branch) and whether the source is in a dynamic set (``ip saddr @affinity``,
ClientIP affinity) at the time. :func:`build_nft_dispatch` runs the walk with forced answers,
depth first, until every combination has been taken (value 0 and "member" first), and keeps
the decision tree. Nothing here knows kube-proxy's table: nested numgens, membership checks
anywhere, map misses that fall through - the enumeration stays exact. It stops with
:class:`~svcsim.netfilter.index.DispatchTooLargeError` beyond ``max_paths``.

:meth:`NftDispatch.resolve` walks the tree with the kernel's answers (a 32-bit draw per numgen,
scaled with :func:`~svcsim.netfilter.numgen.reciprocal_scale`; the live
:class:`~svcsim.netfilter.nft_eval.DynamicSets`) and applies the outcome's ``update @set``
effects, so it decides and leaves the sets exactly as ``walk_nft`` would. (If a path checks a
set after updating it, the order matters: such a dispatch resolves by walking the table.)
:meth:`NftDispatch.spine` gives the batched engine the shape of kube-proxy's endpoint choice:
one draw ``d`` and N disjoint intervals, value ``k`` for ``d`` in
``[first_draw(k, N), first_draw(k + 1, N))``.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from fractions import Fraction

from svcsim.netfilter.index import MAX_PATHS, DispatchTooLargeError
from svcsim.netfilter.nft_eval import DynamicSets, NftWalkError, U32Source, walk_nft
from svcsim.netfilter.nft_statements import ParsedTable, SetUpdate
from svcsim.netfilter.numgen import RANDOM_SCALE, first_draw, reciprocal_scale, value_counts
from svcsim.netfilter.packet import NodeNetwork, Outcome, Packet


@dataclass(frozen=True, slots=True)
class NumgenQuery:
    """A ``numgen random mod N`` reached: one draw, N answers."""

    modulus: int


@dataclass(frozen=True, slots=True)
class MemberQuery:
    """A dynamic set's membership check (``ip saddr @set``) for ``key``."""

    set_name: str
    key: str


NftQuery = NumgenQuery | MemberQuery


@dataclass(frozen=True, slots=True)
class NftSpine:
    """One numgen, its N intervals: rule ``j`` ends the choice when the draw is below ``bounds[j]``.

    ``bounds[j]`` is ``first_draw(j + 1, N)``; ``leaves[j]`` the outcome of value ``j``;
    ``final`` the outcome of value ``N - 1`` (every draw left). All rules read the same draw.
    """

    bounds: tuple[int, ...]
    leaves: tuple[int, ...]
    final: int


class _Forced:
    """Answers from a forced prefix, then value 0 / "member"; records the questions asked.

    Membership of a set that is not ``dynamic`` is no question: only static elements (which
    the walk looks up itself) can be in it.
    """

    def __init__(self, forced: list[int], dynamic: Container[str]) -> None:
        self.forced = forced
        self.dynamic = dynamic
        self.queries: list[NftQuery] = []
        self.results: list[int] = []
        self.updated: set[str] = set()
        self.set_then_check = False

    def _answer(self, query: NftQuery, default: int) -> int:
        position = len(self.queries)
        result = self.forced[position] if position < len(self.forced) else default
        self.queries.append(query)
        self.results.append(result)
        return result

    def numgen(self, modulus: int) -> tuple[int, int | None]:
        return self._answer(NumgenQuery(modulus), 0), None

    def member(self, set_name: str, key: str) -> bool:
        if set_name not in self.dynamic:
            return False
        self.set_then_check |= set_name in self.updated
        return bool(self._answer(MemberQuery(set_name, key), 1))


class _NotingSets(DynamicSets):
    """Dynamic sets that only note which sets the walk updated (the enumeration's scratch)."""

    def __init__(self, decider: _Forced) -> None:
        super().__init__()
        self._decider = decider

    def update(self, name: str, key: str, now_s: float, timeout_s: int | None) -> None:
        """Note the update; nothing is stored (membership is the decider's)."""
        self._decider.updated.add(name)


@dataclass(slots=True)
class _Node:
    """A decision-tree node: a question with a child per answer, or a leaf (``outcome``)."""

    query: NftQuery | None = None
    outcome: int = -1
    children: dict[int, _Node] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NftPath:
    """One way through the table: its questions and answers in walk order, and its outcome."""

    answers: tuple[tuple[NftQuery, int], ...]
    outcome: int

    def probability(self) -> Fraction:
        """Exact probability of the path's numgen values (membership answers excluded)."""
        p = Fraction(1)
        for query, answer in self.answers:
            if isinstance(query, NumgenQuery):
                p *= Fraction(value_counts(query.modulus)[answer], RANDOM_SCALE)
        return p


class NftDispatch:
    """Every way one packet key can go through an nf_tables table, and fast ways to pick one.

    ``outcomes`` are the distinct results in the order paths first reached them (kube-proxy's
    table: endpoint order); ``max_draws`` is the most numgens any path reaches; ``has_recent``
    says whether a dynamic set's membership decides some path (the name is the iptables
    dispatch's, so the traffic layer treats both alike).
    """

    def __init__(
        self,
        table: ParsedTable,
        packet: Packet,
        network: NodeNetwork,
        outcomes: tuple[Outcome, ...],
        paths: tuple[NftPath, ...],
        root: _Node,
        set_then_check: bool,
    ) -> None:
        self.table, self.packet, self.network = table, packet, network
        self.outcomes = outcomes
        self.paths = paths
        self._root = root
        self._set_then_check = set_then_check
        self.max_draws = max(
            (sum(isinstance(q, NumgenQuery) for q, _ in p.answers) for p in paths), default=0
        )
        self.has_recent = any(isinstance(q, MemberQuery) for p in paths for q, _ in p.answers)
        self._spine = _spine(root)

    @property
    def is_chain(self) -> bool:
        """True if the tree is one numgen whose every value ends the walk, or one leaf."""
        return self._spine is not None

    def spine(self) -> NftSpine | None:
        """The intervals of the one numgen (see :class:`NftSpine`), or None for other trees."""
        return self._spine

    def resolve(
        self, draw: U32Source | None = None, sets: DynamicSets | None = None, now_s: float = 0.0
    ) -> Outcome:
        """The outcome for one connection, deciding exactly as :func:`walk_nft` would."""
        return self.outcomes[self.resolve_index(draw, sets, now_s)]

    def resolve_index(
        self, draw: U32Source | None = None, sets: DynamicSets | None = None, now_s: float = 0.0
    ) -> int:
        """Like :meth:`resolve`, but the index into :attr:`outcomes`."""
        live = sets if sets is not None else DynamicSets()
        if self._set_then_check:
            outcome, _ = walk_nft(
                self.table, self.packet, self.network, draw=draw, sets=live, now_s=now_s
            )
            return self.outcomes.index(outcome)
        node = self._root
        while node.query is not None:
            query = node.query
            if isinstance(query, NumgenQuery):
                if draw is None:
                    raise NftWalkError("a numgen is reached but no draw source was given")
                answer = reciprocal_scale(int(draw()), query.modulus)
            else:
                answer = int(live.contains(query.set_name, query.key, now_s))
            node = node.children[answer]
        for name, key in self.outcomes[node.outcome].recent_sets:
            live.update(name, key, now_s, self.table.timeouts.get(name))
        return node.outcome

    def outcome_probabilities(self, *, assume_empty_recent: bool = False) -> tuple[Fraction, ...]:
        """Exact probability of each outcome; membership needs ``assume_empty_recent``."""
        if self.has_recent and not assume_empty_recent:
            raise ValueError("dynamic sets decide this key: probabilities depend on them")
        totals = [Fraction(0)] * len(self.outcomes)
        for path in self.paths:
            if all(a == 0 for q, a in path.answers if isinstance(q, MemberQuery)):
                totals[path.outcome] += path.probability()
        return tuple(totals)


def _spine(root: _Node) -> NftSpine | None:
    if root.query is None:
        return NftSpine((), (), root.outcome)
    query = root.query
    if not isinstance(query, NumgenQuery):
        return None
    n = query.modulus
    leaves: list[int] = []
    for value in range(n):
        child = root.children.get(value)
        if child is None or child.query is not None:
            return None
        leaves.append(child.outcome)
    bounds = tuple(first_draw(k + 1, n) for k in range(n - 1))
    return NftSpine(bounds, tuple(leaves[:-1]), leaves[-1])


def build_nft_dispatch(
    table: ParsedTable,
    packet: Packet,
    network: NodeNetwork,
    *,
    max_paths: int = MAX_PATHS,
    dynamic: Container[str] | None = None,
) -> NftDispatch:
    """Enumerate every path of ``packet`` through ``table`` (depth first) into an NftDispatch.

    ``dynamic`` are the table's dynamic sets (:func:`dynamic_sets`, computed if None).
    """
    outcomes: dict[Outcome, int] = {}
    paths: list[NftPath] = []
    root = _Node()
    set_then_check = False
    if dynamic is None:
        dynamic = dynamic_sets(table)
    pending: list[list[int]] = [[]]
    while pending:
        prefix = pending.pop()
        decider = _Forced(prefix, dynamic)
        outcome, _ = walk_nft(table, packet, network, sets=_NotingSets(decider), decider=decider)
        queries, results = decider.queries, decider.results
        # Alternatives pushed shallow first, and high values first, so that the next walk is
        # the deepest question's next answer (DFS, value order).
        for position in range(len(prefix), len(queries)):
            query = queries[position]
            others = range(query.modulus - 1, 0, -1) if isinstance(query, NumgenQuery) else (0,)
            pending.extend([*results[:position], other] for other in others)
        if len(paths) + 1 + len(pending) > max_paths:
            raise DispatchTooLargeError(
                f"{packet.describe()}: more than {max_paths} paths through the table"
            )
        index = outcomes.setdefault(outcome, len(outcomes))
        paths.append(NftPath(tuple(zip(queries, results, strict=True)), index))
        set_then_check |= decider.set_then_check
        node = root
        for query, result in zip(queries, results, strict=True):
            if node.query is None:
                node.query = query
            elif node.query != query:  # pragma: no cover - the walk is deterministic
                raise NftWalkError(f"walk asked {query} where an earlier one asked {node.query}")
            node = node.children.setdefault(result, _Node())
        node.outcome = index
    return NftDispatch(table, packet, network, tuple(outcomes), tuple(paths), root, set_then_check)


def dynamic_sets(table: ParsedTable) -> frozenset[str]:
    """Sets whose elements may come and go at run time.

    Those with a timeout (kube-proxy's affinity sets, ``flags dynamic,timeout``) and those
    some rule updates (``update @set``).
    """
    updated = {
        s.set_name
        for rules in table.chains.values()
        for rule in rules
        for s in rule.statements
        if isinstance(s, SetUpdate)
    }
    timed = {name for name, timeout in table.timeouts.items() if timeout is not None}
    return frozenset(updated | timed)
