"""Every way one packet can go through a ruleset, with its probability: the ground for ``diff``.

:func:`enumerate_walks` runs the walk once per combination of answers to its questions, depth
first: each statistic match reached (matched / not, with the exact probability of that draw
result) and each question the rules alone cannot decide (an ipset's members, a socket
lookup: kept as :class:`~svcsim.netfilter.branches.Assumption`, with no probability, since
svcsim does not know it). Recent lists start empty: this is a new client's first connection
(the recent matches reached are listed, so session affinity can be compared). Two rulesets
that give the same paths treat the packet alike, whatever their text, rule order or counters.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Final

from svcsim.netfilter.branches import Assumption
from svcsim.netfilter.model import IPAddress, RecentMatch, Ruleset, StatisticMatch
from svcsim.netfilter.other_eval import NodeFacts
from svcsim.netfilter.packet import NodeNetwork, Outcome, Packet, TraceStep
from svcsim.netfilter.recent import RecentTable
from svcsim.netfilter.statistic import THRESHOLD_SCALE
from svcsim.netfilter.walk import StoppedWalkError, walk

MAX_WALKS: Final = 4096
"""Paths enumerated at most for one packet."""


@dataclass(frozen=True, slots=True)
class WalkPath:
    """One way through the rules: its probability given its assumptions, and what happened.

    ``stopped`` is set when the walk could not go on (an extension svcsim does not know, a NAT
    choice it cannot make); ``outcome`` is then None.
    """

    probability: Fraction
    assumptions: tuple[Assumption, ...]
    outcome: Outcome | None
    steps: tuple[TraceStep, ...]
    recent: tuple[RecentMatch, ...]
    stopped: StoppedWalkError | None = None


@dataclass(frozen=True, slots=True)
class Walks:
    """All paths of one packet; ``complete`` is False if :data:`MAX_WALKS` cut them short."""

    paths: tuple[WalkPath, ...]
    complete: bool


class _ForcingDecider:
    """Answers statistic draws and undecided questions from a forced prefix, then "yes"."""

    def __init__(self, forced: list[bool]) -> None:
        self.forced = forced
        self.answers: list[bool] = []
        self.probability = Fraction(1)
        self.assumptions: list[Assumption] = []
        self.recent_seen: list[RecentMatch] = []
        self.lists = RecentTable()

    def _next(self) -> bool:
        position = len(self.answers)
        answer = self.forced[position] if position < len(self.forced) else True
        self.answers.append(answer)
        return answer

    def statistic(self, match: StatisticMatch) -> tuple[bool, str]:
        matched = self._next()
        below = Fraction(match.threshold, THRESHOLD_SCALE)
        self.probability *= below if matched != match.negated else 1 - below
        return matched, ""

    def recent(self, match: RecentMatch, src: IPAddress, dst: IPAddress) -> tuple[bool, str]:
        self.recent_seen.append(match)
        return self.lists.evaluate(match, src, dst, 0.0), ""

    def undecided(self, question: str) -> tuple[bool, str]:
        answer = self._next()
        self.assumptions.append(Assumption(question, answer))
        return answer, f"unknown, assumed {'yes' if answer else 'no'}: {question}"


def enumerate_walks(
    ruleset: Ruleset,
    packet: Packet,
    network: NodeNetwork,
    *,
    facts: NodeFacts | None = None,
    max_walks: int = MAX_WALKS,
) -> Walks:
    """Every path of ``packet`` through ``ruleset`` (see the module docstring)."""
    pending: list[list[bool]] = [[]]
    found: list[WalkPath] = []
    while pending and len(found) < max_walks:
        forced = pending.pop()
        decider = _ForcingDecider(forced)
        stopped: StoppedWalkError | None = None
        try:
            outcome, steps = walk(ruleset, packet, network, decider, record=True, facts=facts)
        except StoppedWalkError as stop:
            outcome, steps, stopped = None, list(stop.steps), stop
        found.append(
            WalkPath(
                decider.probability,
                tuple(decider.assumptions),
                outcome,
                tuple(steps),
                tuple(decider.recent_seen),
                stopped,
            )
        )
        for position in range(len(forced), len(decider.answers)):
            pending.append([*decider.answers[:position], False])
    return Walks(tuple(found), complete=not pending)
