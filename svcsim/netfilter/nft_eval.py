"""The kernel's walk of one new connection's first packet through an nf_tables table.

:func:`walk_nft` evaluates a :class:`~svcsim.netfilter.nft_parse.ParsedTable` the way
nf_tables does (net/netfilter/nf_tables_core.c ``nft_do_chain``) and returns the same
:class:`~svcsim.netfilter.packet.Outcome` and :class:`~svcsim.netfilter.packet.TraceStep` as the
iptables walk, so :class:`~svcsim.netfilter.interpreter.Trace` prints it.

* Hooks: ``pod`` and ``external`` packets run the base chains of ``prerouting``, then the
  routing decision on the (possibly DNATed) destination, then ``input`` for a local destination
  or ``forward`` and ``postrouting``. ``host`` packets run ``output``, the routing decision and
  ``postrouting``; a local destination then loops back over ``lo`` through ``prerouting`` and
  ``input`` without the nat chains (NAT is set up once per connection, on the way out).
* Base chains of one hook run in priority order, lowest first (filter at dstnat-10 before nat
  at dstnat before filter at dstnat+10).
* In a rule, statements run in order; a match that fails, or a map lookup that finds no
  element, ends the rule (``NFT_BREAK``). ``jump`` pushes a return point, ``goto`` does not,
  ``return`` or the end of a regular chain pops, the end of a base chain accepts (kube-proxy's
  chains have policy accept). ``accept``, ``dnat`` and ``masquerade`` end the base chain
  (``nf_nat_setup_info`` returns ``NF_ACCEPT``); ``drop`` and ``reject`` end the packet.
* ``numgen random mod N`` is :func:`svcsim.netfilter.numgen.reciprocal_scale` of one 32-bit
  draw; ``update @set`` adds the address with the set's timeout (or refreshes it); ``ip saddr
  @set`` matches while the element has not expired (:class:`DynamicSets`, time passed in).
* Every packet here is the first of a new connection: ``ct state new`` matches.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from svcsim.netfilter.interpreter import Trace
from svcsim.netfilter.nft_statements import (
    AddrMatch,
    Counter,
    CtState,
    Dnat,
    DportMatch,
    FibLocal,
    MapLookup,
    MarkMatch,
    MarkSet,
    Masquerade,
    Numgen,
    ParsedRule,
    ParsedTable,
    ProtoMatch,
    Selector,
    SetUpdate,
    Statement,
    Verdict,
)
from svcsim.netfilter.numgen import reciprocal_scale
from svcsim.netfilter.packet import (
    NodeNetwork,
    Outcome,
    Packet,
    TraceStep,
    VerdictKind,
    hostport,
    parse_ip,
)

U32Source = Callable[[], int]
"""Where numgen's 32-bit draws come from (see :func:`svcsim.netfilter.numgen.u32_draws_from`)."""

_MAX_STACK = 16
"""nf_tables' ``NFT_JUMP_STACK_SIZE``: the kernel refuses deeper jump nesting at load time."""
_MAX_EVALUATIONS = 1_000_000


class NftWalkError(ValueError):
    """A table the kernel would not have loaded, or a walk that cannot go on."""


@dataclass(slots=True)
class DynamicSets:
    """Elements added to dynamic sets by ``update @set``, with their expiry times.

    Owned by the caller (one per node) and updated in place by the walk; ``now_s`` is passed
    in. An element with a timeout of None never expires.
    """

    expiry: dict[str, dict[str, float]] = field(default_factory=dict)

    def contains(self, name: str, key: str, now_s: float) -> bool:
        """True while ``key`` is in set ``name`` and has not timed out."""
        return self.expiry.get(name, {}).get(key, float("-inf")) > now_s

    def update(self, name: str, key: str, now_s: float, timeout_s: int | None) -> None:
        """Add ``key`` or refresh its timeout (nft_dynset with ``NFT_DYNSET_OP_UPDATE``)."""
        until = float("inf") if timeout_s is None else now_s + timeout_s
        self.expiry.setdefault(name, {})[key] = until


class NftDecider(Protocol):
    """Who answers a walk's non-deterministic questions (the kernel, or an enumeration)."""

    def numgen(self, modulus: int) -> tuple[int, int | None]:
        """``numgen random mod modulus``: the value in ``[0, modulus)`` and the draw, if any."""
        ...  # pragma: no cover

    def member(self, set_name: str, key: str) -> bool:
        """Whether ``key`` is in the dynamic elements of set ``set_name`` now."""
        ...  # pragma: no cover


class KernelNftDecider:
    """The kernel's answers: 32-bit draws scaled with ``reciprocal_scale``, live set elements."""

    def __init__(self, draw: U32Source | None, sets: DynamicSets, now_s: float) -> None:
        self.draw, self.sets, self.now_s = draw, sets, now_s

    def numgen(self, modulus: int) -> tuple[int, int | None]:
        """One draw from the source, scaled (nft_ng_random_eval)."""
        if self.draw is None:
            raise NftWalkError("a numgen expression was reached but no draw source was given")
        try:
            r = int(self.draw())
        except StopIteration:
            raise NftWalkError("the draw source ran out") from None
        return reciprocal_scale(r, modulus), r

    def member(self, set_name: str, key: str) -> bool:
        """The element is in the set and has not timed out."""
        return self.sets.contains(set_name, key, self.now_s)


_End = tuple[VerdictKind, str | None]


class _Walker:
    """One packet's walk through one table."""

    def __init__(
        self,
        table: ParsedTable,
        packet: Packet,
        network: NodeNetwork,
        decider: NftDecider,
        sets: DynamicSets,
        now_s: float,
    ) -> None:
        self.table, self.packet, self.network = table, packet, network
        self.decider, self.sets, self.now_s = decider, sets, now_s
        self.src, self.dst = parse_ip(packet.src), parse_ip(packet.dst)
        self.dport, self.mark = packet.dport, packet.mark
        self.dnat: tuple[str, int] | None = None
        self.masquerade = False
        self.updates: list[tuple[str, str]] = []
        self.steps: list[TraceStep] = []
        self.decided_in: tuple[str, str] | None = None

    def run(self) -> Outcome:
        local = self.network.is_local
        if self.packet.origin == "host":
            end = self.hook("output") or self.route_out_then("postrouting")
            if end is None and local(self.dst):
                self.route(f"{self.dst} is local: back in through lo to input")
                end = self.hook("prerouting", nat=False) or self.hook("input", nat=False)
        else:
            end = self.hook("prerouting")
            if end is None and local(self.dst):
                self.route(f"{self.dst} is local -> input")
                end = self.hook("input")
            elif end is None:
                out = self.network.out_interface(self.dst)
                self.route(f"{self.dst} is not local -> forward via {out}")
                end = self.hook("forward") or self.hook("postrouting")
        verdict, reject_with = end if end is not None else (VerdictKind.ACCEPT, None)
        return Outcome(
            verdict=verdict,
            destination=(str(self.dst), self.dport),
            dnat=self.dnat,
            masquerade=self.masquerade,
            mark=self.mark,
            local=verdict is VerdictKind.ACCEPT and local(self.dst),
            reject_with=reject_with,
            recent_sets=tuple(self.updates),
            decided_in=self.decided_in if verdict is not VerdictKind.ACCEPT else None,
        )

    def route_out_then(self, hook: str) -> _End | None:
        """The routing decision for a host's packet (after output's DNAT), then ``hook``."""
        if not self.network.is_local(self.dst):
            self.route(f"{self.dst} leaves via {self.network.out_interface(self.dst)}")
        return self.hook(hook)

    def route(self, text: str) -> None:
        self.steps.append(TraceStep("route", "routing", "", "", None, "", True, text))

    def hook(self, hook: str, *, nat: bool = True) -> _End | None:
        for chain in self.table.hook_chains(hook):
            if chain.type == "nat" and not nat:
                continue
            end = self.base_chain(hook, chain.name)
            if end[0] is not VerdictKind.ACCEPT:
                return end
        return None

    def base_chain(self, hook: str, base: str) -> _End:
        """``nft_do_chain`` from one base chain; ACCEPT means "on to the next base chain"."""
        stack: list[tuple[str, int]] = [(base, 0)]
        evaluations = 0
        while stack:
            name, index = stack[-1]
            rules = self.table.chains.get(name)
            if rules is None:
                raise NftWalkError(f"jump to missing chain {name!r}")
            if index >= len(rules):
                stack.pop()
                continue
            stack[-1] = (name, index + 1)
            evaluations += 1
            if evaluations > _MAX_EVALUATIONS:
                raise NftWalkError(f"walk through {base} does not end (a chain loop?)")
            rule = rules[index]
            depth = len(stack) - 1
            verdict, action, detail = self.rule(rule)
            self.steps.append(
                TraceStep(
                    "rule",
                    hook,
                    self.table.name,
                    name,
                    rule.number,
                    rule.text,
                    verdict is not None,
                    action,
                    detail,
                    depth,
                )
            )
            if verdict is None:
                continue
            kind = verdict.kind
            if kind in ("jump", "goto"):
                target = verdict.chain or ""
                if target not in self.table.chains:
                    raise NftWalkError(f"rule {rule.number} of {name} jumps to missing {target!r}")
                if kind == "goto":
                    stack[-1] = (target, 0)
                else:
                    stack.append((target, 0))
                if len(stack) > _MAX_STACK + 1:
                    raise NftWalkError(f"jumps nest deeper than {_MAX_STACK} at {target!r}")
            elif kind == "return":
                stack.pop()
            elif kind == "continue":
                continue
            else:
                self.decided_in = (self.table.name, name)
                if kind == "drop":
                    return (VerdictKind.DROP, None)
                if kind == "reject":
                    # nft's plain ``reject`` on ip: icmp port-unreachable (nft_reject_ipv4).
                    return (VerdictKind.REJECT, "icmp-port-unreachable")
                return (VerdictKind.ACCEPT, None)
        return (VerdictKind.ACCEPT, None)

    def rule(self, rule: ParsedRule) -> tuple[Verdict | None, str, str]:
        """(verdict or None if the rule broke off, action text, detail)."""
        details: list[str] = []
        actions: list[str] = []
        for statement in rule.statements:
            result = self.statement(statement, details, actions)
            if result is False:
                return None, "no match", "; ".join(details)
            if isinstance(result, Verdict):
                actions.append(result.text())
                return result, ", ".join(actions), "; ".join(details)
        return Verdict("continue"), ", ".join(actions) or "continue", "; ".join(details)

    def statement(self, s: Statement, details: list[str], actions: list[str]) -> bool | Verdict:
        if isinstance(s, Verdict):
            return s
        if isinstance(s, Counter | CtState):
            return not isinstance(s, CtState) or "new" in s.states
        if isinstance(s, AddrMatch):
            return self.address(s) != s.negated
        if isinstance(s, ProtoMatch):
            return self.packet.protocol == s.protocol
        if isinstance(s, DportMatch):
            return self.packet.protocol == s.protocol and self.dport == s.port
        if isinstance(s, FibLocal):
            return self.network.is_local(self.src if s.field == "saddr" else self.dst)
        if isinstance(s, MarkMatch):
            return self.mark & s.mask == s.value
        if isinstance(s, MarkSet):
            self.mark = self.mark | s.value if s.op == "or" else self.mark ^ s.value
            actions.append(f"mark 0x{self.mark:x}")
            return True
        if isinstance(s, MapLookup):
            values = tuple(self.selector(sel) for sel in s.selectors)
            found = self.lookup(s, values)
            details.append(f"{' . '.join(values)}: {'hit' if found else 'no element'}")
            return found if found is not None else False
        if isinstance(s, Numgen):
            return self.numgen(s, details)
        if isinstance(s, SetUpdate):
            key = self.selector(s.selector)
            self.sets.update(s.set_name, key, self.now_s, self.table.timeouts.get(s.set_name))
            self.updates.append((s.set_name, key))
            actions.append(f"update @{s.set_name} {key}")
            return True
        if isinstance(s, Dnat):
            address = parse_ip(s.address)
            port = s.port if s.port is not None else self.dport
            self.dnat = (str(address), port)
            self.dst, self.dport = address, port
            actions.append(f"DNAT {hostport(str(address), port)}")
            return Verdict("accept")
        if isinstance(s, Masquerade):
            self.masquerade = True
            actions.append("MASQUERADE")
            return Verdict("accept")
        raise NftWalkError(f"statement {s!r} is not modelled")  # pragma: no cover

    def selector(self, selector: Selector) -> str:
        if selector == "ip saddr":
            return str(self.src)
        if selector == "ip daddr":
            return str(self.dst)
        if selector == "meta l4proto":
            return self.packet.protocol
        return str(self.dport)

    def address(self, s: AddrMatch) -> bool:
        address = self.src if s.field == "saddr" else self.dst
        if s.set_name is None:
            return any(address in net for net in s.networks)
        key = str(address)
        if s.set_name not in self.table.sets:
            raise NftWalkError(f"lookup in missing set @{s.set_name}")
        if (key,) in self.table.sets[s.set_name]:
            return True
        return self.decider.member(s.set_name, key)

    def lookup(self, s: MapLookup, key: tuple[str, ...]) -> Verdict | None:
        if s.map_name is None:
            return next((v for k, v in s.inline if k == key), None)
        elements = self.table.maps.get(s.map_name)
        if elements is None:
            raise NftWalkError(f"lookup in missing map @{s.map_name}")
        return elements.get(key)

    def numgen(self, s: Numgen, details: list[str]) -> bool | Verdict:
        scaled, r = self.decider.numgen(s.modulus)
        value = scaled + s.offset
        drawn = f"draw {r}" if r is not None else "forced"
        details.append(f"numgen {drawn} -> {value} of mod {s.modulus}")
        return next((v for k, v in s.choices if k == value), False)


def walk_nft(
    table: ParsedTable,
    packet: Packet,
    network: NodeNetwork,
    *,
    draw: U32Source | None = None,
    sets: DynamicSets | None = None,
    now_s: float = 0.0,
    decider: NftDecider | None = None,
) -> tuple[Outcome, list[TraceStep]]:
    """Walk ``packet`` through ``table``; the outcome and every step taken.

    ``draw`` supplies numgen's 32-bit values, one per numgen reached; ``sets`` holds the
    dynamic sets' elements and is updated in place (a fresh one if None). ``decider``, if
    given, answers numgen and dynamic-set membership instead of ``draw`` and ``sets`` (the
    fast dispatch's enumeration forces answers this way); updates still go to ``sets``.
    """
    if ipaddress.ip_address(packet.src).version != 4:
        raise NftWalkError("only IPv4 (table ip kube-proxy) is modelled")
    live = sets if sets is not None else DynamicSets()
    if decider is None:
        decider = KernelNftDecider(draw, live, now_s)
    walker = _Walker(table, packet, network, decider, live, now_s)
    outcome = walker.run()
    return outcome, walker.steps


def trace_nft(
    table: ParsedTable,
    packet: Packet,
    network: NodeNetwork,
    *,
    draw: U32Source | None = None,
    sets: DynamicSets | None = None,
    now_s: float = 0.0,
) -> Trace:
    """:func:`walk_nft` as a printable :class:`~svcsim.netfilter.interpreter.Trace`."""
    outcome, steps = walk_nft(table, packet, network, draw=draw, sets=sets, now_s=now_s)
    return Trace(packet, tuple(steps), outcome)
