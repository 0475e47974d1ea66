"""The fast path: per-destination dispatch derived from the interpreter by path enumeration.

A simulator resolves millions of new connections against one node's rules (DESIGN.md decisions
1 and 3). For a given packet key (source, origin, destination, protocol, port) the walk through
the rules is a deterministic function of the answers to its non-deterministic questions: each
statistic match reached (a draw) and each recent match reached (the lists' state). So
:class:`DispatchIndex` runs the interpreter's own walk with forced answers, depth first, until
every combination has been taken; each run is one path with its conditions and its
:class:`~svcsim.netfilter.packet.Outcome`. Nothing here knows kube-proxy's chain shapes:
a path's conditions may include "statistic not matched", nested statistic rules, recent checks
anywhere, and the enumeration is still exact. It stops with :class:`DispatchTooLargeError`
beyond ``max_paths``.

The paths form a decision tree whose nodes are asked in the walk's order, so
:meth:`Dispatch.resolve` consumes draws and touches the recent lists exactly as
:func:`~svcsim.netfilter.interpreter.trace` would. :meth:`Dispatch.choose` evaluates many
connections at once with numpy when no recent list is involved; for kube-proxy's chain
(each statistic rule either ends the walk or falls through to the next) that is "the first rule
whose draw is below its threshold, else the last rule".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from svcsim.netfilter.model import IPAddress, RecentMatch, Ruleset, StatisticMatch
from svcsim.netfilter.packet import DEFAULT_SPORT, NodeNetwork, Origin, Outcome, Packet
from svcsim.netfilter.recent import RecentTable
from svcsim.netfilter.statistic import THRESHOLD_SCALE, draw_u31
from svcsim.netfilter.walk import DrawSource, KernelDecider, TraceError, walk

MAX_PATHS: Final = 10_000
"""Default bound on the paths one key may have."""

_CHUNK_CELLS: Final = 1 << 22


class DispatchTooLargeError(ValueError):
    """A key whose walk has more paths than the bound: the rules branch too much to index."""


@dataclass(frozen=True, slots=True)
class StatisticCondition:
    """A statistic match reached on the path, and whether it matched (negation applied)."""

    threshold: int
    negated: bool
    matched: bool

    @property
    def probability(self) -> Fraction:
        """Exact probability that a fresh draw gives this result."""
        below = Fraction(self.threshold, THRESHOLD_SCALE)
        return below if self.matched != self.negated else 1 - below


@dataclass(frozen=True, slots=True)
class RecentCondition:
    """A recent check (``--rcheck``/``--update``/``--remove``) reached, and its result."""

    match: RecentMatch
    address: str
    matched: bool


Condition = StatisticCondition | RecentCondition


@dataclass(frozen=True, slots=True)
class DispatchPath:
    """One way through the rules: its conditions in walk order and its outcome's index.

    ``probability`` is the product of the statistic conditions: the path's probability given
    that its recent conditions hold.
    """

    conditions: tuple[Condition, ...]
    outcome: int

    @property
    def probability(self) -> Fraction:
        """The product of the statistic conditions' probabilities (exact; computed on use)."""
        probability = Fraction(1)
        for condition in self.conditions:
            if isinstance(condition, StatisticCondition):
                probability *= condition.probability
        return probability


@dataclass(frozen=True, slots=True)
class _Query:
    """A question the walk asked: a statistic draw, a recent check, or a ``--set`` (no choice)."""

    kind: Literal["statistic", "recent", "set"]
    statistic: StatisticMatch | None = None
    recent: RecentMatch | None = None
    src: IPAddress | None = None
    dst: IPAddress | None = None

    def empty_list_result(self) -> bool:
        """The recent match's result when its list does not hold the address."""
        assert self.recent is not None
        return _empty_list_result(self.recent)


def _empty_list_result(match: RecentMatch) -> bool:
    """``recent_mt`` for an address not listed: ``--set`` adds it and yields "not negated"."""
    return not match.negated if match.command == "set" else match.negated


class _ForcedDecider:
    """Answers from a forced prefix, then ``rest`` ("matched"); records every question asked."""

    def __init__(self, forced: list[bool], rest: bool = True) -> None:
        self.forced = forced
        self.rest = rest
        self.queries: list[_Query] = []
        self.results: list[bool] = []

    def _answer(self, query: _Query, fixed: bool | None) -> bool:
        position = len(self.queries)
        if fixed is not None:
            result = fixed
        else:
            result = self.forced[position] if position < len(self.forced) else self.rest
        self.queries.append(query)
        self.results.append(result)
        return result

    def statistic(self, match: StatisticMatch) -> tuple[bool, str]:
        return self._answer(_Query("statistic", statistic=match), None), ""

    def recent(self, match: RecentMatch, src: IPAddress, dst: IPAddress) -> tuple[bool, str]:
        if match.command == "set":
            # --set always yields "not negated" (recent_mt): an effect, not a branch.
            query = _Query("set", recent=match, src=src, dst=dst)
            return self._answer(query, not match.negated), ""
        return self._answer(_Query("recent", recent=match, src=src, dst=dst), None), ""


@dataclass(slots=True)
class _Node:
    """A decision-tree node: a question with a child per answer, or a leaf (``outcome``)."""

    query: _Query | None = None
    outcome: int = -1
    children: dict[bool, _Node] = field(default_factory=dict)


class Dispatch:
    """Every way one packet key can go through the rules, and fast ways to pick one.

    ``outcomes`` are the distinct results, in the order paths first reached them (for
    kube-proxy's chain: endpoint order); ``paths`` map condition sets to them, depth first with
    "matched" explored before "not matched"; ``max_draws`` is the most statistic matches any
    path reaches; ``has_recent`` says whether some path depends on a recent check.
    """

    def __init__(
        self,
        packet: Packet,
        outcomes: tuple[Outcome, ...],
        paths: tuple[DispatchPath, ...],
        root: _Node,
        set_then_check: bool,
    ) -> None:
        self.packet = packet
        self.outcomes = outcomes
        self.paths = paths
        self._root = root
        self._set_then_check = set_then_check
        self.max_draws = max(
            (sum(isinstance(c, StatisticCondition) for c in p.conditions) for p in paths), default=0
        )
        self.has_recent = any(isinstance(c, RecentCondition) for p in paths for c in p.conditions)
        self._spine = _spine(root)

    @property
    def is_chain(self) -> bool:
        """True if the tree is a chain of statistic rules (kube-proxy's shape), or one leaf."""
        return self._spine is not None

    def resolve(
        self, draw: DrawSource | None = None, recent: RecentTable | None = None, now_s: float = 0.0
    ) -> Outcome:
        """The outcome for one connection, deciding exactly as :func:`trace` would.

        Draws are consumed one per statistic match reached and recent lists are read and
        updated in walk order, so the same draws and lists give the same outcome and leave the
        lists in the same state as the interpreter.
        """
        return self.outcomes[self.resolve_index(draw, recent, now_s)]

    def resolve_index(
        self, draw: DrawSource | None = None, recent: RecentTable | None = None, now_s: float = 0.0
    ) -> int:
        """Like :meth:`resolve`, but the index into :attr:`outcomes`."""
        decider = KernelDecider(draw, recent if recent is not None else RecentTable(), now_s)
        node = self._root
        while node.query is not None:
            query = node.query
            if query.statistic is not None:
                result, _ = decider.statistic(query.statistic)
            else:
                assert query.recent is not None and query.src is not None and query.dst is not None
                result, _ = decider.recent(query.recent, query.src, query.dst)
            child = node.children.get(result)
            if child is None:  # only a --set could get here, and it always yields its one answer
                raise TraceError(f"no path for answer {result} to {query}")
            node = child
        return node.outcome

    def choose(
        self,
        draws: npt.NDArray[np.uint32] | np.random.Generator,
        size: int | None = None,
        *,
        assume_empty_recent: bool = False,
    ) -> npt.NDArray[np.intp]:
        """Outcome indices for many connections at once.

        ``draws`` is a ``(connections, k)`` matrix of 31-bit values with ``k >= max_draws``
        (row ``i`` is connection ``i``'s draw sequence, used in walk order) or a Generator with
        ``size``. Recent checks make the outcome depend on list state: they are refused unless
        ``assume_empty_recent``, which evaluates them as if no list held the address (a new
        client). ``choose`` never touches recent lists: applying a chosen outcome's
        ``recent_sets`` is the caller's job.
        """
        if isinstance(draws, np.random.Generator):
            if size is None:
                raise ValueError("choose(rng) needs a size")
            matrix = draw_u31(draws, (size, self.max_draws))
        else:
            matrix = np.asarray(draws)
            if matrix.ndim == 1:
                matrix = matrix.reshape(-1, 1)
            if matrix.ndim != 2 or matrix.shape[1] < self.max_draws:
                raise ValueError(
                    f"draws of shape {matrix.shape} do not give {self.max_draws} per connection"
                )
        if self.has_recent and not assume_empty_recent:
            raise ValueError("recent lists decide this key: use resolve() or assume_empty_recent")
        if assume_empty_recent and self._set_then_check:
            raise ValueError("a path checks a recent list it has just set: use resolve()")
        if self._spine is not None:
            return _choose_chain(self._spine, matrix)
        return _choose_tree(self._root, matrix)

    def outcome_probabilities(self, *, assume_empty_recent: bool = False) -> tuple[Fraction, ...]:
        """Exact probability of each outcome (same conditions as :meth:`choose`)."""
        if self.has_recent and not assume_empty_recent:
            raise ValueError("this dispatch has recent checks: probabilities depend on the lists")
        totals = [Fraction(0)] * len(self.outcomes)
        for path in self.paths:
            if all(
                c.matched == _empty_list_result(c.match)
                for c in path.conditions
                if isinstance(c, RecentCondition)
            ):
                totals[path.outcome] += path.probability
        return tuple(totals)


_Spine = tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_], npt.NDArray[np.intp], int]


def _spine(root: _Node) -> _Spine | None:
    """Thresholds, "leaf when below", leaf outcomes and the final outcome of a statistic chain."""
    thresholds: list[int] = []
    leaf_below: list[bool] = []
    leaves: list[int] = []
    node = root
    while node.query is not None:
        match = node.query.statistic
        if match is None:
            return None
        for answer in (True, False):
            leaf, rest = node.children.get(answer), node.children.get(not answer)
            if leaf is not None and leaf.query is None and rest is not None:
                break
        else:
            return None
        thresholds.append(match.threshold)
        # matched == (below != negated), so the leaf is taken when below == (answer != negated)
        leaf_below.append(answer != match.negated)
        leaves.append(leaf.outcome)
        node = rest
    return (
        np.array(thresholds, dtype=np.int64),
        np.array(leaf_below, dtype=np.bool_),
        np.array(leaves, dtype=np.intp),
        node.outcome,
    )


def _choose_chain(spine: _Spine, draws: npt.NDArray[np.uint32]) -> npt.NDArray[np.intp]:
    thresholds, leaf_below, leaves, final = spine
    count, k = draws.shape[0], len(thresholds)
    out = np.full(count, final, dtype=np.intp)
    if k == 0:
        return out
    rows = max(1, _CHUNK_CELLS // k)
    for start in range(0, count, rows):
        block = draws[start : start + rows, :k].astype(np.int64)
        stop = (block < thresholds) == leaf_below
        first = stop.argmax(axis=1)
        hit = stop[np.arange(len(block)), first]
        out[start : start + rows] = np.where(hit, leaves[first], final)
    return out


def _choose_tree(root: _Node, draws: npt.NDArray[np.uint32]) -> npt.NDArray[np.intp]:
    out = np.empty(draws.shape[0], dtype=np.intp)
    stack: list[tuple[_Node, npt.NDArray[np.intp], int]] = [(root, np.arange(len(out)), 0)]
    while stack:
        node, rows, depth = stack.pop()
        if rows.size == 0:
            continue
        query = node.query
        if query is None:
            out[rows] = node.outcome
        elif query.statistic is not None:
            below = draws[rows, depth].astype(np.int64) < query.statistic.threshold
            matched = below != query.statistic.negated
            stack.append((node.children[True], rows[matched], depth + 1))
            stack.append((node.children[False], rows[~matched], depth + 1))
        else:
            stack.append((node.children[query.empty_list_result()], rows, depth))
    return out


class DispatchIndex:
    """Per-key dispatch for one node's ruleset, built on first use and memoised.

    The ruleset and network are fixed for the index's life: build a new index when the node's
    rules change (a kube-proxy sync).
    """

    def __init__(self, ruleset: Ruleset, network: NodeNetwork, *, max_paths: int = MAX_PATHS):
        self.ruleset = ruleset
        self.network = network
        self.max_paths = max_paths
        self._memo: dict[tuple[object, ...], Dispatch] = {}

    def __len__(self) -> int:
        return len(self._memo)

    def lookup(
        self,
        src: str,
        origin: Origin,
        dst: str,
        protocol: str,
        dport: int,
        *,
        sport: int = DEFAULT_SPORT,
        in_interface: str | None = None,
    ) -> Dispatch:
        """The dispatch for new connections with this key (computed once per key)."""
        key = (src, origin, dst, protocol, dport, sport, in_interface)
        found = self._memo.get(key)
        if found is None:
            packet = Packet(src, dst, protocol, dport, sport, origin, in_interface)
            found = self._memo[key] = build_dispatch(
                self.ruleset, packet, self.network, max_paths=self.max_paths
            )
        return found


REFUSE_CHECK_AFTER: Final = 16
"""Paths :func:`build_dispatch` enumerates before one walk checks the key is within the bound.

A key with fewer paths needs no check (most keys: one path per endpoint): its enumeration ends
within the bound, or passes it and fails with the very error the check raises, since a walk
meeting ``c`` choices proves ``c + 1`` paths. A longer chain is still refused after a few
short walks, not after enumerating the bound. An enumeration that fails before the check
runs the check first, so a key fails with the error checking first gives."""


def build_dispatch(
    ruleset: Ruleset, packet: Packet, network: NodeNetwork, *, max_paths: int = MAX_PATHS
) -> Dispatch:
    """Enumerate every path of ``packet`` through ``ruleset`` (depth first) into a Dispatch.

    Raises :class:`DispatchTooLargeError` if there are more than ``max_paths`` paths.
    """
    outcomes: dict[Outcome, int] = {}
    paths: list[DispatchPath] = []
    root = _Node()
    set_then_check = False
    pending: list[list[bool]] = [[]]
    checked = False
    try:
        while pending:
            if not checked and len(paths) >= REFUSE_CHECK_AFTER:
                checked = True
                _refuse_long_walks(ruleset, packet, network, max_paths)
            prefix = pending.pop()
            decider = _ForcedDecider(prefix)
            outcome, _ = walk(ruleset, packet, network, decider, record=False)
            queries, results = decider.queries, decider.results
            # Alternatives are pushed shallow first so the deepest is explored next (DFS order).
            for position in range(len(prefix), len(queries)):
                if queries[position].kind != "set":
                    pending.append([*results[:position], not results[position]])
            if len(paths) + 1 + len(pending) > max_paths:
                raise DispatchTooLargeError(
                    f"{packet.describe()}: more than {max_paths} paths through the rules"
                )
            index = outcomes.setdefault(outcome, len(outcomes))
            paths.append(_path(queries, results, index))
            set_then_check |= _sets_then_checks(queries)
            _insert(root, queries, results, index)
    except Exception:
        if not checked:  # what checking first would have raised, if anything; else this
            _refuse_long_walks(ruleset, packet, network, max_paths)
        raise
    return Dispatch(packet, tuple(outcomes), tuple(paths), root, set_then_check)


def _refuse_long_walks(
    ruleset: Ruleset, packet: Packet, network: NodeNetwork, max_paths: int
) -> None:
    """Raise :class:`DispatchTooLargeError` at once if one walk alone proves too many paths.

    The walk that answers "not matched" everywhere goes furthest down kube-proxy's chains;
    each choice it meets has another answer, hence at least one more path. So a Service with
    more endpoints than the bound is refused after one walk, not after enumerating the bound
    (quadratic in the chain's length: minutes for thousands of endpoints).
    """
    decider = _ForcedDecider([], rest=False)
    walk(ruleset, packet, network, decider, record=False)
    choices = sum(query.kind != "set" for query in decider.queries)
    if choices + 1 > max_paths:
        raise DispatchTooLargeError(
            f"{packet.describe()}: more than {max_paths} paths through the rules"
        )


def _path(queries: list[_Query], results: list[bool], outcome: int) -> DispatchPath:
    conditions: list[Condition] = []
    for query, result in zip(queries, results, strict=True):
        if query.statistic is not None:
            match = query.statistic
            conditions.append(StatisticCondition(match.threshold, match.negated, result))
        elif query.kind == "recent":
            assert query.recent is not None
            address = query.src if query.recent.rsource else query.dst
            conditions.append(RecentCondition(query.recent, str(address), result))
    return DispatchPath(tuple(conditions), outcome)


def _sets_then_checks(queries: list[_Query]) -> bool:
    """True if a recent list is checked after this path ``--set`` it (same list name)."""
    set_lists: set[str] = set()
    for query in queries:
        if query.recent is None:
            continue
        if query.kind == "set":
            set_lists.add(query.recent.name)
        elif query.recent.name in set_lists:
            return True
    return False


def _insert(root: _Node, queries: list[_Query], results: list[bool], outcome: int) -> None:
    node = root
    for query, result in zip(queries, results, strict=True):
        if node.query is None:
            node.query = query
        elif node.query != query:  # pragma: no cover - the walk is deterministic
            raise TraceError(f"walk asked {query} where an earlier run asked {node.query}")
        node = node.children.setdefault(result, _Node())
    node.outcome = outcome
