"""The walk's steps for other software's rules: their matches, targets, and what stops it.

:class:`OtherSoftware` is the part of the walker (:mod:`svcsim.netfilter.walk`) that evaluates
:class:`~svcsim.netfilter.other_extensions.OtherMatch` (through
:func:`svcsim.netfilter.other_eval.evaluate`) and applies ``OtherTarget``: NOTRACK and
``CT --notrack`` (no conntrack entry, so the nat table is skipped), CONNMARK (xt_connmark.c
``connmark_tg`` @135367b8), SNAT, MASQUERADE with ports, REDIRECT, TPROXY (xt_TPROXY.c
``tproxy_tg4`` @0b35f603: a transparent socket found marks the packet and accepts it, none
drops it), and the targets that only log or rewrite what the walk does not model. What it
cannot decide it asks the decider (:class:`~svcsim.netfilter.walk.BranchingDecider`); when that
cannot answer, or at an extension svcsim does not know, the walk stops with
:class:`StoppedWalkError`.
"""

from __future__ import annotations

from typing import NoReturn, Protocol

from svcsim.netfilter.model import (
    IPAddress,
    OtherMatch,
    OtherTarget,
    RecentMatch,
    Rule,
    StatisticMatch,
)
from svcsim.netfilter.other_eval import NodeFacts, PacketView, Undecided, evaluate
from svcsim.netfilter.other_extensions import CONTINUING_TARGETS
from svcsim.netfilter.packet import NodeNetwork, Packet, TraceStep, VerdictKind, hostport, parse_ip

End = tuple[VerdictKind, str | None]
"""How a table traversal ended: ACCEPT (go on), DROP, or REJECT with its type."""


class TraceError(ValueError):
    """A ruleset the kernel would not have loaded, or a walk that cannot go on."""


class StoppedWalkError(TraceError):
    """The walk reached a rule it cannot evaluate: where, and why.

    ``unknown`` is True when the rule holds an extension svcsim does not know at all (the
    caller reports the rule as an input problem); otherwise the walk needed a fact it was not
    given and its decider could not answer (``reason`` says which).
    """

    def __init__(
        self, hook: str, table: str, chain: str, index: int, rule: Rule, reason: str, unknown: bool
    ) -> None:
        super().__init__(f"{table} {chain} rule {index + 1}: {reason}")
        self.hook, self.table, self.chain, self.index = hook, table, chain, index
        self.rule, self.reason, self.unknown = rule, reason, unknown
        self.steps: tuple[TraceStep, ...] = ()
        """The steps walked up to the stop (when the walk recorded them)."""


class Decider(Protocol):
    """Where the walk's non-deterministic decisions come from; each returns (result, detail)."""

    def statistic(self, match: StatisticMatch) -> tuple[bool, str]:
        """The result of a statistic match that was reached (negation applied)."""
        ...

    def recent(self, match: RecentMatch, src: IPAddress, dst: IPAddress) -> tuple[bool, str]:
        """The result of a recent match that was reached, after its effects on the lists."""
        ...


class BranchingDecider(Decider, Protocol):
    """A decider that also answers what the rules alone cannot decide (a yes/no question)."""

    def undecided(self, question: str) -> tuple[bool, str]:
        """The answer to take for ``question`` (an ipset's members, a socket lookup...)."""
        ...


class OtherSoftware:
    """Walker state and steps for other software's rules (mixed into the walker)."""

    packet: Packet
    network: NodeNetwork
    facts: NodeFacts
    decider: Decider
    src: IPAddress
    dst: IPAddress
    dport: int
    orig_dst: IPAddress
    orig_dport: int
    mark: int
    ctmark: int
    untracked: bool
    snat: str | None
    masquerade: bool
    dnat: tuple[str, int] | None
    steps: list[TraceStep]
    at: tuple[str, str, str, int, Rule]

    def states(self) -> frozenset[str]:
        """The connection-tracking states of the first packet (the walker's)."""
        raise NotImplementedError  # pragma: no cover - the walker defines it

    def stop(self, reason: str, *, unknown: bool = False) -> NoReturn:
        """End the walk at the current rule with :class:`StoppedWalkError`."""
        hook, table, chain, index, rule = self.at
        error = StoppedWalkError(hook, table, chain, index, rule, reason, unknown)
        error.steps = tuple(self.steps)
        raise error

    def ask(self, question: str) -> tuple[bool, str]:
        """Ask the decider what the rules cannot tell; stop the walk if it cannot answer."""
        undecided = getattr(self.decider, "undecided", None)
        if undecided is None:
            self.stop(f"cannot decide {question}")
        answer, detail = undecided(question)
        return bool(answer), str(detail)

    def other_match(self, match: OtherMatch, hook: str) -> tuple[bool, str]:
        """Evaluate another software's match; ask the decider what it cannot decide."""
        view = PacketView(
            hook=hook,
            origin=self.packet.origin,
            protocol=self.packet.protocol,
            src=self.src,
            sport=self.packet.sport,
            dst=self.dst,
            dport=self.dport,
            orig_dst=self.orig_dst,
            orig_dport=self.orig_dport,
            states=self.states(),
            ctmark=self.ctmark,
            untracked=self.untracked,
            dst_type=self.network.address_type(self.dst),
        )
        result = evaluate(match, view, self.facts)
        if not isinstance(result, Undecided):
            return result, ""
        rule = self.at[4]
        target = rule.target
        if target is None or (
            isinstance(target, OtherTarget) and target.name in CONTINUING_TARGETS
        ):
            # Matched or not, the rule changes nothing for the packet: no need to know.
            return False, f"undecided, no effect: {result.reason}"
        return self.ask(result.reason)

    def other_target(self, target: OtherTarget, hook: str) -> tuple[str, End | None]:
        """Apply another software's target: the action text and how the table ends, if it does."""
        name = target.name
        accept: End = (VerdictKind.ACCEPT, None)
        if name in CONTINUING_TARGETS:
            if name == "SET":
                return "SET (ipset changes are not tracked by svcsim)", None
            return name, None
        if name in ("NOTRACK", "CT"):
            if name == "NOTRACK" or target.option("--notrack") is not None:
                self.untracked = True
                return "NOTRACK: no conntrack entry, so no NAT", None
            return "CT (zone/helper/timeout: no effect on this walk)", None
        if name == "CONNMARK":
            return self.connmark(target), None
        if name == "SNAT":
            source = target.option("--to-source")
            self.snat = source.values[0] if source is not None else "?"
            return f"SNAT --to-source {self.snat}", accept
        if name == "MASQUERADE":
            self.masquerade = True
            return "MASQUERADE", accept
        if name == "REDIRECT":
            return self.redirect(target, hook), accept
        if name == "TPROXY":
            found, detail = self.ask(
                "whether a transparent socket answers TPROXY (a listener on --on-ip/--on-port)"
            )
            if not found:
                return f"TPROXY: no socket, DROP [{detail}]", (VerdictKind.DROP, None)
            mark = target.option("--tproxy-mark")
            if mark is not None:
                value, _, mask = mark.values[0].partition("/")
                self.mark = (self.mark & ~int(mask or "0xffffffff", 0)) ^ int(value, 0)
                self.mark &= 0xFFFFFFFF
            return f"TPROXY to a local socket, mark 0x{self.mark:x} [{detail}]", accept
        self.stop(f"-j {name} {' '.join(target.save_args()[2:])}: a NAT choice svcsim cannot make")

    def connmark(self, target: OtherTarget) -> str:
        """xt_connmark.c ``connmark_tg``: set, save or restore the connection mark."""
        if self.untracked:
            return "CONNMARK (no conntrack entry: nothing)"

        def mask(flag: str) -> int:
            found = target.option(flag)
            return int(found.values[0], 0) if found is not None else 0xFFFFFFFF

        if target.option("--save-mark") is not None:
            ctmask, nfmask = mask("--ctmask"), mask("--nfmask")
            self.ctmark = ((self.ctmark & ~ctmask) ^ (self.mark & nfmask)) & 0xFFFFFFFF
            return f"CONNMARK save: ctmark 0x{self.ctmark:x}"
        if target.option("--restore-mark") is not None:
            ctmask, nfmask = mask("--ctmask"), mask("--nfmask")
            self.mark = ((self.mark & ~nfmask) ^ (self.ctmark & ctmask)) & 0xFFFFFFFF
            return f"CONNMARK restore: mark 0x{self.mark:x}"
        xmark = target.option("--set-xmark")
        if xmark is None:
            self.stop(f"-j CONNMARK {' '.join(target.save_args()[2:])} is not modelled")
        value, _, ctmask_text = xmark.values[0].partition("/")
        ctmask = int(ctmask_text or "0xffffffff", 0)
        self.ctmark = ((self.ctmark & ~ctmask) ^ int(value, 0)) & 0xFFFFFFFF
        return f"CONNMARK set: ctmark 0x{self.ctmark:x}"

    def redirect(self, target: OtherTarget, hook: str) -> str:
        """REDIRECT: DNAT to the node itself (127.0.0.1 from OUTPUT, else its first address)."""
        ports = target.option("--to-ports")
        port = self.dport
        if ports is not None:
            first, _, last = ports.values[0].partition("-")
            if last and last != first:
                self.stop(f"-j REDIRECT --to-ports {ports.values[0]}: a port choice")
            port = int(first)
        local = "127.0.0.1" if hook == "OUTPUT" else self.network.node_ips[0]
        address = parse_ip(local)
        self.dnat = (str(address), port)
        self.dst, self.dport = address, port
        return f"REDIRECT {hostport(local, port)}"
