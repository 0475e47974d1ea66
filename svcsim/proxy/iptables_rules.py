"""iptables rules as data: the pieces kube-proxy joins into a rule, each with its kernel meaning.

kube-proxy writes a rule as words joined by spaces (``-m comment --comment "..." -m tcp -p tcp
-d 10.0.0.1 --dport 80 -j KUBE-SVC-X``). The compiler builds the same rule from :class:`Part`
objects: each part holds its words as kube-proxy writes them *and* what iptables stores for
them (a generic match, match extensions, a target). :func:`rule` joins the parts into a
:class:`~svcsim.netfilter.model.Rule` whose ``text`` is exactly kube-proxy's line and whose
structure is what :func:`svcsim.netfilter.parse.parse_rule` would read from that text (the tests
check the two agree for every rule the compiler writes), so nothing is written as text and
parsed back (DESIGN decision 7).

Parts follow iptables' own option semantics: a later generic option (``-s``, ``-d``, ``-i``,
``-p``) replaces an earlier one, match extensions keep their order, and ``--dport`` belongs to
the ``-m tcp|udp|sctp`` written with it.
"""

from __future__ import annotations

from typing import NamedTuple

from svcsim.netfilter.addresses import IPNetwork, network_of
from svcsim.netfilter.extensions import (
    AddrTypeMatch,
    ConntrackMatch,
    DnatTarget,
    MarkMatch,
    MarkTarget,
    MasqueradeTarget,
    Match,
    NfacctMatch,
    PortMatch,
    PortRange,
    RecentMatch,
    RejectTarget,
    StatisticMatch,
    Target,
    new_comment,
    new_dnat,
    new_jump,
)
from svcsim.netfilter.ipvs_matches import PhysdevMatch
from svcsim.netfilter.model import (
    AddressMatch,
    InterfaceMatch,
    ProtocolMatch,
    Rule,
    new_address,
    new_rule,
)
from svcsim.netfilter.portal_extensions import RedirectTarget, StateMatch
from svcsim.netfilter.statistic import threshold_from_probability


class Part(NamedTuple):
    """Some words of a rule and what iptables stores for them.

    A NamedTuple rather than a frozen dataclass: a 10,000-Service sync makes ~500,000 parts
    (most live for one rule), and a tuple is made in a third of the time.
    """

    text: str
    """The words, joined by single spaces (empty: the part writes nothing)."""
    source: AddressMatch | None = None
    destination: AddressMatch | None = None
    in_interface: InterfaceMatch | None = None
    protocol: ProtocolMatch | None = None
    matches: tuple[Match, ...] = ()
    target: Target | None = None


_new_part = tuple.__new__
"""``_new_part(Part, (text, source, destination, in_interface, protocol, matches, target))``:
a Part made without the NamedTuple's ``__new__`` (a Python function taking keywords); the
parts made once per endpoint (comments, jumps) are made this way."""

NOTHING = Part("")
"""A part that writes nothing (a comment left out in large-cluster mode, no detector)."""


def rule(*parts: Part) -> Rule:
    """The rule kube-proxy writes as ``parts``' words joined by spaces, as the kernel holds it."""
    source = destination = in_interface = protocol = target = None
    matches: tuple[Match, ...] = ()
    texts = []
    for text, source_, destination_, in_interface_, protocol_, matches_, target_ in parts:
        if text:
            texts.append(text)
        if matches_:
            matches += matches_
        if target_ is not None:
            target = target_
        if source_ is not None:
            source = source_
        if destination_ is not None:
            destination = destination_
        if protocol_ is not None:
            protocol = protocol_
        if in_interface_ is not None:
            in_interface = in_interface_
    return new_rule(
        " ".join(texts), source, destination, in_interface, None, protocol, matches, target
    )


def joined(first: Part, second: Part) -> Part:
    """One part writing ``first``'s then ``second``'s words; both write only match extensions."""
    text = (
        f"{first.text} {second.text}" if first.text and second.text else first.text or second.text
    )
    return Part(text, matches=first.matches + second.matches)


def sourced(head: Part, cidr: str, tail: Part) -> Rule:
    """``rule(head, source(cidr), tail)``, built directly: a KUBE-SEP chain's hairpin rule.

    ``head`` writes only match extensions (a comment, or :data:`NOTHING`) and ``tail`` only a
    target (a jump): the shape of 100,000 rules at 10,000 Services, made without the parts'
    join (the tests compare it with :func:`rule` and with parsing its text).
    """
    text = f"{head.text} -s {cidr} {tail.text}" if head.text else f"-s {cidr} {tail.text}"
    source_match = new_address(network_of(cidr))
    return new_rule(text, source_match, None, None, None, None, head.matches, tail.target)


def dnat_to(head: Part, matched: Part, ip: str, port: int) -> Rule:
    """``rule(head, matched, dnat(f"{ip}:{port}"))``, built directly: a KUBE-SEP chain's DNAT.

    ``head`` writes only match extensions (a comment, a ``recent --set``, or both, or
    :data:`NOTHING`); ``matched`` is a :func:`protocol_port` part without a destination.
    """
    return dnat_rule(dnat_head(head, matched), ip, port)


def dnat_head(head: Part, matched: Part) -> Part:
    """The words of a DNAT rule before its target: ``head``'s, then ``matched``'s.

    ``head`` and ``matched`` as for :func:`dnat_to`. Made once per service port when its
    endpoints' DNAT rules share it (no session affinity), so that they share one tuple of
    match extensions too (a render prints its words once).
    """
    text = f"{head.text} {matched.text}" if head.text else matched.text
    matches = head.matches + matched.matches if head.matches else matched.matches
    return _new_part(Part, (text, None, None, None, matched.protocol, matches, None))


def dnat_rule(head: Part, ip: str, port: int) -> Rule:
    """``dnat_to`` of the parts ``head`` joins (:func:`dnat_head`): ``HEAD -j DNAT ...``."""
    return new_rule(
        f"{head.text} -j DNAT --to-destination {ip}:{port}",
        None,
        None,
        None,
        None,
        head.protocol,
        head.matches,
        new_dnat(ip, port),
    )


def matched_jump(head: Part, middle: Part, tail: Part) -> Rule:
    """``rule(head, middle, tail)`` for parts that write only match extensions, then a target.

    The shape of a service chain's dispatch (``[comment] [-m statistic ...] -j KUBE-SEP-X``),
    made without the parts' join; ``head`` and ``middle`` may be :data:`NOTHING`.
    """
    if head.text:
        text = (
            f"{head.text} {middle.text} {tail.text}" if middle.text else f"{head.text} {tail.text}"
        )
    else:
        text = f"{middle.text} {tail.text}" if middle.text else tail.text
    matches = head.matches + middle.matches
    return new_rule(text, None, None, None, None, None, matches, tail.target)


def quoted(text: str) -> str:
    """``fmt.Sprintf(`"%s"`, text)``: a comment kube-proxy writes inside literal double quotes."""
    return f'"{text}"'


def comment(text: str, *, quote: bool = True) -> Part:
    """``-m comment --comment "TEXT"`` (``quote=False``: the text written bare, one word)."""
    written = quoted(text) if quote else text
    said = f"-m comment --comment {written}"
    return _new_part(Part, (said, None, None, None, None, (new_comment(text),), None))


def network(text: str) -> IPNetwork:
    """The address match iptables stores for ``-s/-d TEXT`` (a bare address is a /32)."""
    return network_of(text)


def source(cidr: str, *, negated: bool = False) -> Part:
    """``[!] -s CIDR``."""
    return Part(f"{'! ' if negated else ''}-s {cidr}", source=AddressMatch(network(cidr), negated))


def destination(cidr: str, *, negated: bool = False) -> Part:
    """``[!] -d CIDR``."""
    bang = "! " if negated else ""
    return Part(f"{bang}-d {cidr}", destination=AddressMatch(network(cidr), negated))


def in_interface(name: str, *, negated: bool = False) -> Part:
    """``[!] -i NAME`` (``NAME+``: every interface with that prefix)."""
    return Part(f"{'! ' if negated else ''}-i {name}", in_interface=InterfaceMatch(name, negated))


def detector(words: tuple[str, ...]) -> Part:
    """The part for a local-traffic detector's words (``IfLocal``/``IfNotLocal``).

    ``NodeContext.if_local`` gives ``-s CIDR`` or ``-i NAME`` (nothing without a detector);
    ``if_not_local`` the same after ``!``.
    """
    negated = bool(words) and words[0] == "!"
    rest = words[1:] if negated else words
    if not rest:
        return NOTHING
    if len(rest) == 2 and rest[0] == "-s":
        return source(rest[1], negated=negated)
    if len(rest) == 2 and rest[0] == "-i":
        return in_interface(rest[1], negated=negated)
    raise ValueError(f"not a local-traffic detector: {' '.join(words)!r}")


def protocol_port(proto: str, port: int | None, *, dst: str | None = None) -> Part:
    """``-m PROTO -p PROTO [-d DST] [--dport PORT]`` (``proto`` in lower case)."""
    text = f"-m {proto} -p {proto}"
    destination_match = None
    if dst is not None:
        text += f" -d {dst}"
        destination_match = AddressMatch(network(dst))
    dport = None
    if port is not None:
        text += f" --dport {port}"
        dport = PortRange(port, port)
    return Part(
        text,
        destination=destination_match,
        protocol=ProtocolMatch(proto),
        matches=(PortMatch(proto, None, dport),),
    )


def addrtype(*, src_type: str | None = None, dst_type: str | None = None) -> Part:
    """``-m addrtype [--src-type T] [--dst-type T]``."""
    text = "-m addrtype"
    if src_type is not None:
        text += f" --src-type {src_type}"
    if dst_type is not None:
        text += f" --dst-type {dst_type}"
    return Part(text, matches=(AddrTypeMatch(src_type=src_type, dst_type=dst_type),))


def conntrack(states: str, *, negated: bool = False) -> Part:
    """``-m conntrack [!] --ctstate S1,S2``."""
    bang = "! " if negated else ""
    match = ConntrackMatch(frozenset(states.split(",")), negated)
    return Part(f"-m conntrack {bang}--ctstate {states}", matches=(match,))


def _mark_value(text: str) -> tuple[int, int]:
    value, _, mask = text.partition("/")
    return int(value, 0), int(mask, 0) if mask else 0xFFFFFFFF


def mark(value_mask: str, *, negated: bool = False) -> Part:
    """``-m mark [!] --mark VALUE[/MASK]`` (numbers as C literals, e.g. ``0x4000/0x4000``)."""
    bang = "! " if negated else ""
    match = MarkMatch(*_mark_value(value_mask), negated=negated)
    return Part(f"-m mark {bang}--mark {value_mask}", matches=(match,))


def nfacct(name: str) -> Part:
    """``-m nfacct --nfacct-name NAME``."""
    return Part(f"-m nfacct --nfacct-name {name}", matches=(NfacctMatch(name),))


def statistic(probability: str) -> Part:
    """``-m statistic --mode random --probability P`` (the kernel keeps P's 31-bit threshold)."""
    match = StatisticMatch(threshold_from_probability(probability))
    return Part(f"-m statistic --mode random --probability {probability}", matches=(match,))


def recent_set(name: str) -> Part:
    """``-m recent --name NAME --set``: remember the source address in list NAME."""
    return Part(f"-m recent --name {name} --set", matches=(RecentMatch(name=name, command="set"),))


def recent_rcheck(name: str, seconds: int) -> Part:
    """``-m recent --name NAME --rcheck --seconds S --reap``."""
    match = RecentMatch(name=name, command="rcheck", seconds=seconds, reap=True)
    return Part(f"-m recent --name {name} --rcheck --seconds {seconds} --reap", matches=(match,))


def jump(chain: str) -> Part:
    """``-j CHAIN`` (or a verdict: ``ACCEPT``, ``DROP``, ``RETURN``)."""
    return _new_part(Part, ("-j " + chain, None, None, None, None, (), new_jump(chain)))


def reject() -> Part:
    """``-j REJECT`` (the kernel stores the default ``icmp-port-unreachable``)."""
    return Part("-j REJECT", target=RejectTarget())


def verdict(name: str) -> Part:
    """``-j DROP`` / ``-j REJECT`` / ``-j ACCEPT``: what the filter rules of a service end in."""
    return reject() if name == "REJECT" else jump(name)


def dnat(to_destination: str) -> Part:
    """``-j DNAT --to-destination IP[:PORT]`` (IPv4: at most one colon)."""
    host, colon, port = to_destination.partition(":")
    target = DnatTarget(host, int(port)) if colon else DnatTarget(to_destination)
    return Part(f"-j DNAT --to-destination {to_destination}", target=target)


def mark_or(value: str) -> Part:
    """``-j MARK --or-mark M``."""
    bits = int(value, 0)
    return Part(f"-j MARK --or-mark {value}", target=MarkTarget(bits, bits))


def mark_xor(value: str) -> Part:
    """``-j MARK --xor-mark M``."""
    return Part(f"-j MARK --xor-mark {value}", target=MarkTarget(int(value, 0), 0))


def masquerade(*, random_fully: bool) -> Part:
    """``-j MASQUERADE [--random-fully]``."""
    text = "-j MASQUERADE --random-fully" if random_fully else "-j MASQUERADE"
    return Part(text, target=MasqueradeTarget(random_fully=random_fully))


# --- The userspace proxier's portal rules (svcsim.proxy.userspace) ---------------------------
# Its ``iptablesCommonPortalArgs`` writes ``-p`` before ``-m PROTO --dport`` and ``-d`` after
# them (kubernetes pkg/proxy/userspace/proxier.go @0096f4a4); the parts below write that order.


def protocol_dport(proto: str, port: int) -> Part:
    """``-p PROTO -m PROTO --dport PORT`` (``proto`` in lower case), the userspace order."""
    return Part(
        f"-p {proto} -m {proto} --dport {port}",
        protocol=ProtocolMatch(proto),
        matches=(PortMatch(proto, None, PortRange(port, port)),),
    )


def physdev_is_in(*, negated: bool = False) -> Part:
    """``-m physdev [!] --physdev-is-in``: the packet came (not) through a bridge port."""
    bang = "! " if negated else ""
    return Part(f"-m physdev {bang}--physdev-is-in", matches=(PhysdevMatch(negated=negated),))


def state(states: str) -> Part:
    """``-m state --state S1,S2`` (the older spelling of ``-m conntrack --ctstate``)."""
    return Part(f"-m state --state {states}", matches=(StateMatch(frozenset(states.split(","))),))


def redirect(port: int) -> Part:
    """``-j REDIRECT --to-ports PORT``: to a local address, port ``port``."""
    return Part(f"-j REDIRECT --to-ports {port}", target=RedirectTarget(port))
