"""The kernel's walk of one new connection's first packet through an iptables ruleset.

:func:`walk` takes its non-deterministic decisions (statistic draws, recent lists) from a
:class:`Decider`, so the same code serves :func:`svcsim.netfilter.interpreter.trace` (with a
:class:`KernelDecider`) and the path enumeration of :mod:`svcsim.netfilter.index`. Hooks run in
the kernel's order and priority (raw -300, mangle -150, nat DNAT -100, filter 0, nat SNAT 100):

* ``pod`` (a Pod on this node, via its veth) and ``external`` (via the uplink): PREROUTING
  (raw, mangle, nat), routing on the possibly DNATed destination, then INPUT (mangle, filter,
  nat) for a local destination or FORWARD (mangle, filter) and POSTROUTING (mangle, nat).
* ``host`` (a host-network process): OUTPUT (raw, mangle, nat, filter), POSTROUTING (mangle,
  nat); a local destination then comes back over ``lo`` through PREROUTING (raw, mangle) and
  INPUT (mangle, filter). nat is not consulted again: the connection's NAT was set up on the way
  out (nf_nat_inet_fn runs the table only while ``!nf_nat_initialized(ct, maniptype)``).

Within a chain (net/ipv4/netfilter/ip_tables.c ``ipt_do_table``): generic matches, then the
match extensions in order, stopping at the first that fails - so a statistic match draws and a
recent match acts only when reached. No target continues; a jump pushes a return point, a goto
does not; RETURN or the end of a user chain pops; the end of (or RETURN in) a built-in chain
applies its policy. ACCEPT, DNAT and MASQUERADE end the table for this hook; DROP and REJECT end
the packet. MARK rewrites the mark and continues.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from svcsim.netfilter.ipset import IpsetTable, PacketFields, SetMatch
from svcsim.netfilter.ipvs_matches import IpvsMatch, PhysdevMatch
from svcsim.netfilter.model import (
    AddrTypeMatch,
    Chain,
    CommentMatch,
    ConntrackMatch,
    DnatTarget,
    IPAddress,
    JumpTarget,
    MarkMatch,
    MarkTarget,
    MasqueradeTarget,
    Match,
    NfacctMatch,
    OtherMatch,
    OtherTarget,
    PortMatch,
    RecentMatch,
    RejectTarget,
    Rule,
    Ruleset,
    StatisticMatch,
    UnknownMatch,
    UnknownTarget,
)
from svcsim.netfilter.other_eval import NodeFacts
from svcsim.netfilter.packet import (
    NodeNetwork,
    Outcome,
    Packet,
    TraceStep,
    VerdictKind,
    hostport,
    parse_ip,
)
from svcsim.netfilter.portal_extensions import RedirectTarget, StateMatch
from svcsim.netfilter.recent import RecentTable
from svcsim.netfilter.statistic import THRESHOLD_SCALE
from svcsim.netfilter.walk_other import (
    BranchingDecider,
    Decider,
    End,
    OtherSoftware,
    StoppedWalkError,
    TraceError,
)

__all__ = [
    "BranchingDecider",
    "Decider",
    "DrawSource",
    "KernelDecider",
    "StoppedWalkError",
    "TraceError",
    "walk",
]

DrawSource = Callable[[], int] | Iterator[int]
"""Where 31-bit draws come from: a callable, or an iterator of fixed values (tests)."""


_HOOK_TABLES: dict[str, tuple[str, ...]] = {
    "PREROUTING": ("raw", "mangle", "nat"),
    "INPUT": ("mangle", "filter", "security", "nat"),
    "FORWARD": ("mangle", "filter", "security"),
    "OUTPUT": ("raw", "mangle", "nat", "filter", "security"),
    "POSTROUTING": ("mangle", "nat"),
}
"""Tables registered at each hook, in priority order (include/uapi/linux/netfilter_ipv4.h:
raw -300, mangle -150, nat DNAT -100, filter 0, security 50, nat SNAT 100)."""

_IN_HOOKS = frozenset({"PREROUTING", "INPUT", "FORWARD"})
_OUT_HOOKS = frozenset({"FORWARD", "OUTPUT", "POSTROUTING"})
_MAX_STACK = 1024
_MAX_EVALUATIONS = 1_000_000

_End = End


class _Walker(OtherSoftware):
    """One packet's walk; mutable state that :func:`walk` turns into an :class:`Outcome`."""

    def __init__(
        self,
        ruleset: Ruleset,
        packet: Packet,
        network: NodeNetwork,
        decider: Decider,
        record: bool,
        ipsets: IpsetTable | None = None,
        facts: NodeFacts | None = None,
    ) -> None:
        self.ruleset, self.network, self.decider, self.record = ruleset, network, decider, record
        self.ipsets = ipsets
        self.facts = facts if facts is not None else NodeFacts()
        self.packet = packet
        self.src, self.dst = parse_ip(packet.src), parse_ip(packet.dst)
        self.orig_dst, self.orig_dport = self.dst, packet.dport
        self.dport, self.mark = packet.dport, packet.mark
        self.ctmark = 0
        self.untracked = False
        self.snat: str | None = None
        self.at: tuple[str, str, str, int, Rule] = ("", "", "", 0, Rule(""))
        """The rule being evaluated: (hook, table, chain, index, rule), for stops."""
        self.in_iface = network.in_interface(packet)
        self.dnat: tuple[str, int] | None = None
        self.masquerade = False
        self.recent_sets: list[tuple[str, str]] = []
        self.steps: list[TraceStep] = []
        self.decided_in: tuple[str, str] | None = None

    # --- hooks and routing ------------------------------------------------------------------

    def run(self) -> Outcome:
        if self.packet.origin == "host":
            end = self.hook("OUTPUT") or self.hook("POSTROUTING")
            if end is None and self.network.is_local(self.dst):
                self.route(f"{self.dst} is local: back in through lo to INPUT")
                self.in_iface = "lo"
                end = self.hook("PREROUTING", ("raw", "mangle")) or self.hook(
                    "INPUT", ("mangle", "filter", "security")
                )
            elif end is None:
                self.route(f"{self.dst} leaves via {self.network.out_interface(self.dst)}")
        else:
            end = self.hook("PREROUTING")
            if end is None and self.network.is_local(self.dst):
                self.route(f"{self.dst} is local -> INPUT")
                end = self.hook("INPUT")
            elif end is None:
                out = self.network.out_interface(self.dst)
                self.route(f"{self.dst} is not local -> FORWARD via {out}")
                end = self.hook("FORWARD") or self.hook("POSTROUTING")
        verdict, reject_with = end if end is not None else (VerdictKind.ACCEPT, None)
        return Outcome(
            verdict=verdict,
            destination=(str(self.dst), self.dport),
            dnat=self.dnat,
            masquerade=self.masquerade,
            mark=self.mark,
            local=verdict is VerdictKind.ACCEPT and self.network.is_local(self.dst),
            reject_with=reject_with,
            recent_sets=tuple(self.recent_sets),
            decided_in=self.decided_in if verdict is not VerdictKind.ACCEPT else None,
        )

    def route(self, text: str) -> None:
        if self.record:
            self.steps.append(TraceStep("route", "routing", "", "", None, "", True, text))

    def hook(self, hook: str, tables: tuple[str, ...] | None = None) -> _End | None:
        """Run the hook's tables; the end if the packet was dropped or rejected, else None."""
        for table in tables if tables is not None else _HOOK_TABLES[hook]:
            chain = self.ruleset.chain(table, hook)
            if chain is None:
                continue
            if table == "nat" and self.untracked:
                continue  # NAT needs a conntrack entry: nf_nat never sees untracked packets
            end = self.table(hook, table, chain)
            if end[0] is not VerdictKind.ACCEPT:
                return end
        return None

    # --- one table: ipt_do_table ------------------------------------------------------------

    def table(self, hook: str, table: str, builtin: Chain) -> _End:
        stack: list[tuple[Chain, int]] = [(builtin, 0)]
        evaluations = 0
        while stack:
            chain, index = stack[-1]
            if index >= len(chain.rules):
                stack.pop()  # end of a user chain returns; of the built-in one, policy
                continue
            stack[-1] = (chain, index + 1)
            evaluations += 1
            if evaluations > _MAX_EVALUATIONS:
                raise TraceError(f"walk through {table} {hook} does not end (a chain loop?)")
            rule = chain.rules[index]
            self.at = (hook, table, chain.name, index, rule)
            matched, detail = self.rule_matches(rule, hook)
            depth = len(stack) - 1
            if not matched:
                if self.record:  # a call per rule not taken shows in every dispatch build
                    self.step(hook, table, chain, index, rule, False, "no match", detail, depth)
                continue
            target = rule.target
            end: _End | None = None
            if target is None:
                action = "continue"
            elif isinstance(target, JumpTarget):
                action = self.jump(table, chain, index, target, stack)
                if target.chain == "ACCEPT":
                    end = (VerdictKind.ACCEPT, None)
                elif target.chain == "DROP":
                    end = (VerdictKind.DROP, None)
            elif isinstance(target, MarkTarget):
                self.mark = target.apply(self.mark)
                action = f"mark 0x{self.mark:x}"
            elif isinstance(target, DnatTarget):
                action = self.apply_dnat(target)
                end = (VerdictKind.ACCEPT, None)
            elif isinstance(target, RedirectTarget):
                action = self.apply_redirect(target, hook)
                end = (VerdictKind.ACCEPT, None)
            elif isinstance(target, MasqueradeTarget):
                self.masquerade = True
                action, end = "MASQUERADE", (VerdictKind.ACCEPT, None)
            elif isinstance(target, RejectTarget):
                action = f"REJECT {target.reject_with}"
                end = (VerdictKind.REJECT, target.reject_with)
            elif isinstance(target, OtherTarget):
                action, end = self.other_target(target, hook)
            elif isinstance(target, UnknownTarget):
                self.stop(f"-j {target.name} is not known to svcsim", unknown=True)
            else:  # pragma: no cover - the Target union is closed
                raise TraceError(f"unknown target {target!r}")
            self.step(hook, table, chain, index, rule, True, action, detail, depth)
            if end is not None:
                self.decided_in = (table, chain.name)
                return end
        policy = VerdictKind(builtin.policy or "ACCEPT")
        if self.record:
            self.steps.append(
                TraceStep("policy", hook, table, builtin.name, None, "", True, policy.value)
            )
        self.decided_in = (table, builtin.name)
        return (policy, None)

    def jump(
        self,
        table: str,
        chain: Chain,
        index: int,
        target: JumpTarget,
        stack: list[tuple[Chain, int]],
    ) -> str:
        """Push (or, for goto, replace) a frame; the action text. RETURN pops."""
        name = target.chain
        if name in ("ACCEPT", "DROP"):
            return name
        if name == "RETURN":
            stack.pop()
            return "RETURN"
        callee = self.ruleset.chain(table, name)
        if callee is None:
            raise TraceError(
                f"rule {index + 1} of {table} {chain.name} jumps to missing chain {name!r}"
            )
        if target.goto:
            stack[-1] = (callee, 0)
        else:
            stack.append((callee, 0))
        if len(stack) > _MAX_STACK:
            raise TraceError(f"chain calls nest deeper than {_MAX_STACK} (a loop at {name!r}?)")
        return f"{'goto' if target.goto else 'jump'} {name}"

    def apply_dnat(self, target: DnatTarget) -> str:
        address = parse_ip(target.address)
        port = target.port if target.port is not None else self.dport
        if (address, port) != (self.dst, self.dport) or self.dnat is not None:
            self.dnat = (str(address), port)
        self.dst, self.dport = address, port
        return f"DNAT {hostport(str(address), port)}"

    def apply_redirect(self, target: RedirectTarget, hook: str) -> str:
        """REDIRECT: DNAT to 127.0.0.1 from OUTPUT, else to the node's primary address."""
        local = "127.0.0.1" if hook == "OUTPUT" or not self.network.node_ips else None
        address = local or self.network.node_ips[0]
        self.apply_dnat(DnatTarget(address, target.port))
        return f"REDIRECT {hostport(address, target.port)}"

    def step(
        self,
        hook: str,
        table: str,
        chain: Chain,
        index: int,
        rule: Rule,
        matched: bool,
        action: str,
        detail: str,
        depth: int,
    ) -> None:
        if self.record:
            self.steps.append(
                TraceStep(
                    "rule",
                    hook,
                    table,
                    chain.name,
                    index + 1,
                    rule.save_text(),
                    matched,
                    action,
                    detail,
                    depth,
                )
            )

    # --- matches ----------------------------------------------------------------------------

    def rule_matches(self, rule: Rule, hook: str) -> tuple[bool, str]:
        """Generic matches, then extensions in order, stopping at the first failure."""
        if rule.source is not None and not rule.source.matches(self.src):
            return False, ""
        if rule.destination is not None and not rule.destination.matches(self.dst):
            return False, ""
        if rule.in_interface is not None:
            in_iface = self.in_iface if hook in _IN_HOOKS else None
            if not rule.in_interface.matches(in_iface):
                return False, ""
        if rule.out_interface is not None:
            out = self.network.out_interface(self.dst) if hook in _OUT_HOOKS else None
            if not rule.out_interface.matches(out):
                return False, ""
        if rule.protocol is not None and not rule.protocol.matches(self.packet.protocol):
            return False, ""
        details: list[str] = []
        for match in rule.matches:
            ok, detail = self.match(match, hook)
            if detail:
                details.append(detail)
            if not ok:
                return False, "; ".join(details)
        return True, "; ".join(details)

    def match(self, match: Match, hook: str = "") -> tuple[bool, str]:
        if isinstance(match, CommentMatch | NfacctMatch):
            return True, ""
        if isinstance(match, OtherMatch):
            return self.other_match(match, hook)
        if isinstance(match, UnknownMatch):
            self.stop(f"-m {match.name} is not known to svcsim", unknown=True)
        if isinstance(match, PortMatch):
            ok = match.protocol == self.packet.protocol
            if ok and match.source_port is not None:
                ok = match.source_port.contains(self.packet.sport)
            if ok and match.destination_port is not None:
                ok = match.destination_port.contains(self.dport)
            return ok, ""
        if isinstance(match, StatisticMatch):
            return self.decider.statistic(match)
        if isinstance(match, RecentMatch):
            if match.command == "set":
                self.recent_sets.append((match.name, str(self.src if match.rsource else self.dst)))
            return self.decider.recent(match, self.src, self.dst)
        if isinstance(match, MarkMatch):
            return match.matches(self.mark), ""
        if isinstance(match, AddrTypeMatch):
            return self.addrtype(match), ""
        if isinstance(match, StateMatch):
            return match.matches(frozenset({"NEW"})), ""
        if isinstance(match, ConntrackMatch):
            return match.matches(self.states()), ""
        if isinstance(match, SetMatch | PhysdevMatch | IpvsMatch):
            return self.ipvs_mode_match(match), ""
        raise TraceError(f"match {match!r} is not modelled")  # pragma: no cover

    def ipvs_mode_match(self, match: SetMatch | PhysdevMatch | IpvsMatch) -> bool:
        """IPVS mode's matches: ip sets, the bridge-port test, the IPVS connection test."""
        if isinstance(match, PhysdevMatch):
            return match.matches(self.packet.origin == "pod")
        if isinstance(match, IpvsMatch):
            return match.matches(str(self.dst), self.packet.protocol, self.dport)
        if self.ipsets is None:
            raise TraceError(f"-m set --match-set {match.name}: the walk was given no ip sets")
        packet = self.packet
        fields = PacketFields(self.src, self.dst, packet.sport, self.dport, packet.protocol)
        try:
            return self.ipsets.matches(match, fields)
        except KeyError as exc:
            raise TraceError(str(exc.args[0])) from None

    def states(self) -> frozenset[str]:
        """The connection-tracking states of the first packet, as ``--ctstate`` sees them."""
        if self.untracked:
            return frozenset({"UNTRACKED"})
        states = {"NEW"}
        if self.dnat is not None:
            states.add("DNAT")
        if self.masquerade or self.snat is not None:
            states.add("SNAT")
        return frozenset(states)

    def addrtype(self, match: AddrTypeMatch) -> bool:
        for wanted, negated, address in (
            (match.src_type, match.src_negated, self.src),
            (match.dst_type, match.dst_negated, self.dst),
        ):
            if wanted and (self.network.address_type(address) in wanted.split(",")) == negated:
                return False
        return True


def walk(
    ruleset: Ruleset,
    packet: Packet,
    network: NodeNetwork,
    decider: Decider,
    *,
    record: bool,
    ipsets: IpsetTable | None = None,
    facts: NodeFacts | None = None,
) -> tuple[Outcome, list[TraceStep]]:
    """Walk ``packet`` through ``ruleset`` taking decisions from ``decider``.

    The walk is a deterministic function of the decider's answers: that is what lets
    :mod:`svcsim.netfilter.index` enumerate every path. ``record`` keeps the steps.
    ``ipsets`` answers the typed ``-m set`` matches of kube-proxy's IPVS-mode rules.
    ``facts`` (ipset members) help decide other software's rules; what they cannot decide is
    asked of the decider's ``undecided`` (a :class:`BranchingDecider`), and without one the
    walk stops with :class:`StoppedWalkError` - as it does at an extension svcsim does not know.
    """
    walker = _Walker(ruleset, packet, network, decider, record, ipsets, facts)
    outcome = walker.run()
    return outcome, walker.steps


def walk_postrouting(
    ruleset: Ruleset,
    packet: Packet,
    network: NodeNetwork,
    decider: Decider,
    *,
    ipsets: IpsetTable | None = None,
) -> tuple[Outcome, list[TraceStep]]:
    """Only the POSTROUTING hook for ``packet`` (its ``mark`` as earlier hooks left it).

    For a packet another subsystem has just rewritten and sends on, such as IPVS forwarding a
    connection to its real server: the source NAT decision (masquerade) is taken here.
    """
    walker = _Walker(ruleset, packet, network, decider, True, ipsets)
    walker.route(f"{walker.dst} leaves via {network.out_interface(walker.dst)}")
    return _partial_outcome(walker, walker.hook("POSTROUTING"), local=False), walker.steps


def walk_output(
    ruleset: Ruleset,
    packet: Packet,
    network: NodeNetwork,
    decider: Decider,
    *,
    ipsets: IpsetTable | None = None,
) -> tuple[Outcome, list[TraceStep]]:
    """Only the OUTPUT hook for a locally generated ``packet``.

    For a packet another subsystem takes over right after OUTPUT, such as IPVS's LOCAL_OUT hook
    taking a host process's connection to a virtual server; POSTROUTING is then walked for the
    rewritten packet (:func:`walk_postrouting`), with the mark OUTPUT left.
    """
    walker = _Walker(ruleset, packet, network, decider, True, ipsets)
    end = walker.hook("OUTPUT")
    return _partial_outcome(walker, end, local=network.is_local(walker.dst)), walker.steps


def _partial_outcome(walker: _Walker, end: _End | None, *, local: bool) -> Outcome:
    verdict, reject_with = end if end is not None else (VerdictKind.ACCEPT, None)
    return Outcome(
        verdict=verdict,
        destination=(str(walker.dst), walker.dport),
        dnat=walker.dnat,
        masquerade=walker.masquerade,
        mark=walker.mark,
        local=local and verdict is VerdictKind.ACCEPT,
        reject_with=reject_with,
        recent_sets=tuple(walker.recent_sets),
        decided_in=walker.decided_in if verdict is not VerdictKind.ACCEPT else None,
    )


class KernelDecider:
    """The kernel's way to decide: a fresh draw per statistic match, the live recent lists."""

    def __init__(self, draw: DrawSource | None, recent: RecentTable, now_s: float) -> None:
        if draw is None:
            self._draw: Callable[[], int] | None = None
        elif callable(draw):
            self._draw = draw
        else:
            self._draw = draw.__next__
        self._recent = recent
        self._now_s = now_s

    def statistic(self, match: StatisticMatch) -> tuple[bool, str]:
        """Draw the next value; match iff it is below the threshold (negation applied)."""
        if self._draw is None:
            raise TraceError("a statistic match was reached but no draw source was given")
        try:
            value = int(self._draw())
        except StopIteration:
            raise TraceError("the draw source ran out") from None
        if not 0 <= value < THRESHOLD_SCALE:
            raise TraceError(f"draw {value!r} is outside [0, 2^31)")
        below = value < match.threshold
        detail = f"draw {value} {'<' if below else '>='} {match.threshold}"
        return below != match.negated, detail

    def recent(self, match: RecentMatch, src: IPAddress, dst: IPAddress) -> tuple[bool, str]:
        """Evaluate the match against the recent lists at ``now_s``, effects included."""
        result = self._recent.evaluate(match, src, dst, self._now_s)
        key = src if match.rsource else dst
        return result, f"recent {match.name} --{match.command} {key}: {'hit' if result else 'miss'}"
