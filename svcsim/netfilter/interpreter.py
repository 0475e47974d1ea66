"""The reference evaluator: :func:`trace` walks a packet and keeps every step.

:func:`trace` runs :func:`svcsim.netfilter.walk.walk` with the kernel's decisions (a fresh draw
per statistic match, the live recent lists) and records every rule it reaches, so a CLI can print
the walk the way one troubleshoots "a Pod cannot reach ServiceIP:Port" by hand: a :class:`Trace`
holds the steps and formats them. :func:`draws_from` turns a numpy Generator into the draw source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from svcsim.netfilter.ipset import IpsetTable
from svcsim.netfilter.model import Ruleset
from svcsim.netfilter.packet import NodeNetwork, Outcome, Packet, TraceStep, VerdictKind
from svcsim.netfilter.recent import RecentTable
from svcsim.netfilter.statistic import draw_u31
from svcsim.netfilter.walk import DrawSource, KernelDecider, walk


@dataclass(frozen=True, slots=True)
class Trace:
    """A packet's full walk: the steps taken and the :class:`Outcome`."""

    packet: Packet
    steps: tuple[TraceStep, ...]
    outcome: Outcome

    @property
    def verdict(self) -> VerdictKind:
        """ACCEPT (delivered), DROP or REJECT."""
        return self.outcome.verdict

    @property
    def dnat(self) -> tuple[str, int] | None:
        """The (ip, port) a DNAT rule rewrote the destination to, or None."""
        return self.outcome.dnat

    @property
    def masquerade(self) -> bool:
        """True if MASQUERADE fired in POSTROUTING."""
        return self.outcome.masquerade

    @property
    def mark(self) -> int:
        """The packet mark at the end of the walk."""
        return self.outcome.mark

    def matched_steps(self) -> tuple[TraceStep, ...]:
        """The rules that matched, the policies applied and the routing decisions."""
        return tuple(s for s in self.steps if s.matched)

    def format(self, *, verbose: bool = False) -> str:
        """A readable walk: chains entered, rules matched, draws, routing, verdict.

        Without ``verbose``, rules that did not match are summarised as a count unless a draw or
        a recent list decided them (those are the interesting misses).
        """
        lines = [self.packet.describe()]
        where: tuple[str, str, str] | None = None
        skipped, skipped_indent = 0, ""

        def flush() -> None:
            nonlocal skipped
            if skipped:
                plural = "s" if skipped > 1 else ""
                lines.append(f"{skipped_indent}  ({skipped} rule{plural} not matched)")
                skipped = 0

        for step in self.steps:
            indent = "  " * (step.depth + 1)
            if step.kind == "route":
                flush()
                lines.append(f"routing: {step.action}")
                where = None
                continue
            here = (step.hook, step.table, step.chain)
            if here != where:
                flush()
                if where is None or where[:2] != here[:2]:
                    lines.append(f"{step.hook} / {step.table}")
                lines.append(f"{indent}{step.chain}")
                where = here
            if step.kind == "policy":
                flush()
                lines.append(f"{indent}  policy {step.action}")
            elif not step.matched and not step.detail and not verbose:
                skipped, skipped_indent = skipped + 1, indent
            else:
                flush()
                mark = "=>" if step.matched else "--"
                detail = f"  [{step.detail}]" if step.detail else ""
                text = f"{step.rule_number}: {step.rule}  {mark} {step.action}{detail}"
                lines.append(f"{indent}  {text}")
        flush()
        lines.append(f"verdict: {self.outcome.describe()}")
        return "\n".join(lines)


def trace(
    ruleset: Ruleset,
    packet: Packet,
    network: NodeNetwork,
    *,
    draw: DrawSource | None = None,
    recent: RecentTable | None = None,
    now_s: float = 0.0,
    ipsets: IpsetTable | None = None,
) -> Trace:
    """Walk the first packet of a new connection through ``ruleset`` as the kernel does.

    ``draw`` supplies the uniform 31-bit values statistic matches compare (one per statistic
    match reached, in order); wrap a numpy Generator with :func:`draws_from`. ``recent`` holds
    the node's xt_recent lists and is updated in place (a fresh empty table if None); ``now_s``
    is the time recent stamps are compared with; ``ipsets`` answers ``-m set`` matches (IPVS
    mode). Raises :class:`TraceError` for rulesets the kernel would refuse (a jump to a missing
    chain, a loop) or when draws run out.
    """
    decider = KernelDecider(draw, recent if recent is not None else RecentTable(), now_s)
    outcome, steps = walk(ruleset, packet, network, decider, record=True, ipsets=ipsets)
    return Trace(packet, tuple(steps), outcome)


def draws_from(rng: np.random.Generator, block: int = 256) -> Callable[[], int]:
    """A draw source over a numpy Generator: one ``get_random_u32() & 0x7fffffff`` per call.

    Values come from :func:`svcsim.netfilter.statistic.draw_u31`, ``block`` at a time.
    """
    buffer: list[int] = []

    def draw() -> int:
        if not buffer:
            buffer.extend(int(v) for v in draw_u31(rng, block)[::-1])
        return buffer.pop()

    return draw
