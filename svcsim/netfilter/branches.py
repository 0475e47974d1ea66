"""Tracing through rules that hold questions the rules alone cannot answer: every branch.

A real node's rules may ask what svcsim cannot know (is the source in ipset X? does a local
socket answer TPROXY?). :func:`trace_branches` walks the packet once per combination of
answers - yes first, then no, depth first - with the same statistic draws in every branch
(one Generator per branch, seeded alike), so branches differ only where an answer differs.
A walk that stops (an extension svcsim does not know, a NAT choice it cannot make) is a
branch too, holding the stop and the steps up to it. Nothing is guessed: each branch names the
answers it assumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from svcsim.netfilter.interpreter import Trace, draws_from
from svcsim.netfilter.model import IPAddress, RecentMatch, Ruleset, StatisticMatch
from svcsim.netfilter.other_eval import NodeFacts
from svcsim.netfilter.packet import NodeNetwork, Packet, TraceStep
from svcsim.netfilter.recent import RecentTable
from svcsim.netfilter.walk import KernelDecider, StoppedWalkError, walk

MAX_BRANCHES: Final = 32
"""Branches traced at most; more means the rules ask too many unknowns for one readable trace."""


@dataclass(frozen=True, slots=True)
class Assumption:
    """A question the walk could not answer from the rules, and the answer this branch took."""

    question: str
    answer: bool


@dataclass(frozen=True, slots=True)
class Branch:
    """One walk: the answers assumed, and its trace - or where and why it stopped."""

    assumptions: tuple[Assumption, ...]
    trace: Trace | None
    stopped: StoppedWalkError | None = None
    steps: tuple[TraceStep, ...] = ()


@dataclass(frozen=True, slots=True)
class Branches:
    """Every branch of one packet's walk; ``complete`` is False if :data:`MAX_BRANCHES` cut it."""

    branches: tuple[Branch, ...]
    complete: bool


class _AnsweringDecider:
    """The kernel's draws, plus forced answers to undecided questions (then "yes")."""

    def __init__(self, kernel: KernelDecider, forced: list[bool]) -> None:
        self.kernel, self.forced = kernel, forced
        self.asked: list[Assumption] = []

    def statistic(self, match: StatisticMatch) -> tuple[bool, str]:
        return self.kernel.statistic(match)

    def recent(self, match: RecentMatch, src: IPAddress, dst: IPAddress) -> tuple[bool, str]:
        return self.kernel.recent(match, src, dst)

    def undecided(self, question: str) -> tuple[bool, str]:
        position = len(self.asked)
        answer = self.forced[position] if position < len(self.forced) else True
        self.asked.append(Assumption(question, answer))
        return answer, f"unknown, assumed {'yes' if answer else 'no'}: {question}"


def trace_branches(
    ruleset: Ruleset,
    packet: Packet,
    network: NodeNetwork,
    *,
    seed: int,
    facts: NodeFacts | None = None,
    max_branches: int = MAX_BRANCHES,
) -> Branches:
    """Walk ``packet`` through ``ruleset`` once per combination of undecided answers."""
    pending: list[list[bool]] = [[]]
    found: list[Branch] = []
    while pending and len(found) < max_branches:
        forced = pending.pop()
        kernel = KernelDecider(draws_from(np.random.default_rng(seed)), RecentTable(), 0.0)
        decider = _AnsweringDecider(kernel, forced)
        try:
            outcome, steps = walk(ruleset, packet, network, decider, record=True, facts=facts)
        except StoppedWalkError as stop:
            found.append(Branch(tuple(decider.asked), None, stop, tuple(stop.steps)))
        else:
            trace = Trace(packet, tuple(steps), outcome)
            found.append(Branch(tuple(decider.asked), trace))
        # Every question first answered "yes" here opens a "no" branch; the latest question's
        # is taken next (depth first), the earliest question's last.
        for position in range(len(forced), len(decider.asked)):
            prefix = [a.answer for a in decider.asked[:position]]
            pending.append([*prefix, False])
    return Branches(tuple(found), complete=not pending)
