"""Rule arguments: tokenise and parse them the way iptables' command-line parser does.

Generic options (``-s``, ``-d``, ``-i``, ``-o``, ``-p``), ``-m`` extensions whose options follow
them, ``-p tcp`` implicitly loading the ``tcp`` match, and ``!`` negation. Both text forms
(restore input and save output) parse into the same :class:`~svcsim.netfilter.model.Rule`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Final

from svcsim.netfilter.addresses import IPNetwork, network_of
from svcsim.netfilter.ipset import SetMatch
from svcsim.netfilter.ipvs_matches import IpvsMatch, PhysdevMatch
from svcsim.netfilter.model import (
    AddressMatch,
    AddrTypeMatch,
    CommentMatch,
    ConntrackMatch,
    DnatTarget,
    InterfaceMatch,
    JumpTarget,
    MarkMatch,
    MarkTarget,
    MasqueradeTarget,
    Match,
    NfacctMatch,
    PortMatch,
    PortRange,
    ProtocolMatch,
    RecentMatch,
    RejectTarget,
    Rule,
    StatisticMatch,
    Target,
)
from svcsim.netfilter.other_extensions import (
    MATCH_OPTIONS,
    TARGET_OPTIONS,
    ExtOption,
    OtherMatch,
    OtherTarget,
    UnknownMatch,
    UnknownTarget,
)
from svcsim.netfilter.portal_extensions import RedirectTarget, StateMatch
from svcsim.netfilter.statistic import threshold_from_probability


class IptablesSyntaxError(ValueError):
    """Rule or file text that iptables would refuse; the message says where and why."""


def tokenize(text: str) -> list[str]:
    """Split rule text into arguments as iptables-restore does.

    Whitespace separates arguments; double quotes group (and are removed); a backslash escapes
    the next character inside quotes.
    """
    tokens: list[str] = []
    current: list[str] = []
    in_token = in_quotes = False
    i = 0
    while i < len(text):
        c = text[i]
        if in_quotes:
            if c == "\\" and i + 1 < len(text):
                i += 1
                current.append(text[i])
            elif c == '"':
                in_quotes = False
            else:
                current.append(c)
        elif c == '"':
            in_quotes = in_token = True
        elif c.isspace():
            if in_token:
                tokens.append("".join(current))
                current, in_token = [], False
        else:
            current.append(c)
            in_token = True
        i += 1
    if in_quotes:
        raise IptablesSyntaxError(f"unterminated quote in {text!r}")
    if in_token:
        tokens.append("".join(current))
    return tokens


# Options each match extension accepts: name -> number of values it takes.
_MATCH_OPTIONS: dict[str, dict[str, int]] = {
    "comment": {"--comment": 1},
    "tcp": {"--dport": 1, "--destination-port": 1, "--sport": 1, "--source-port": 1},
    "udp": {"--dport": 1, "--destination-port": 1, "--sport": 1, "--source-port": 1},
    "sctp": {"--dport": 1, "--destination-port": 1, "--sport": 1, "--source-port": 1},
    "statistic": {"--mode": 1, "--probability": 1},
    "recent": {
        "--set": 0,
        "--rcheck": 0,
        "--update": 0,
        "--remove": 0,
        "--seconds": 1,
        "--reap": 0,
        "--hitcount": 1,
        "--name": 1,
        "--mask": 1,
        "--rsource": 0,
        "--rdest": 0,
    },
    "mark": {"--mark": 1},
    "addrtype": {"--src-type": 1, "--dst-type": 1},
    "conntrack": {"--ctstate": 1},
    "nfacct": {"--nfacct-name": 1},
    # IPVS mode's matches (svcsim.netfilter.ipset, svcsim.netfilter.ipvs_matches).
    "set": {"--match-set": 2},
    "physdev": {"--physdev-is-in": 0},
    "ipvs": {"--vaddr": 1, "--vproto": 1, "--vport": 1},
    # The userspace proxier's portal rules (svcsim.netfilter.portal_extensions).
    "state": {"--state": 1},
}
_TARGET_OPTIONS: dict[str, dict[str, int]] = {
    "REJECT": {"--reject-with": 1},
    "MARK": {"--set-xmark": 1, "--set-mark": 1, "--or-mark": 1, "--xor-mark": 1, "--and-mark": 1},
    "DNAT": {"--to-destination": 1, "--random": 0, "--persistent": 0},
    "MASQUERADE": {"--to-ports": 1, "--random": 0, "--random-fully": 0},
    "REDIRECT": {"--to-ports": 1},
}
_GENERIC = {
    "-s": "source",
    "--source": "source",
    "-d": "destination",
    "--destination": "destination",
    "-i": "in",
    "--in-interface": "in",
    "-o": "out",
    "--out-interface": "out",
    "-p": "protocol",
    "--protocol": "protocol",
}
_PORT_PROTOCOLS = ("tcp", "udp", "sctp")


@dataclass(slots=True)
class _Ext:
    """An extension being parsed: its name and ``option -> (negated, values)`` in order.

    ``raw`` is set (lenient parsing only) once the extension or one of its options is unknown:
    from then on its tokens are kept as read.
    """

    name: str
    options: dict[str, tuple[bool, list[str]]] = field(default_factory=dict)
    raw: list[str] | None = None

    def to_raw(self) -> list[str]:
        """Switch to keeping tokens as read; the options parsed so far become tokens again."""
        if self.raw is None:
            self.raw = [
                t
                for flag, (neg, vals) in self.options.items()
                for t in (["!"] if neg else []) + [flag, *vals]
            ]
        return self.raw


_BOUNDARIES = frozenset({"-m", "--match", "-j", "--jump", "-g", "--goto", *_GENERIC})
"""Tokens that end an unknown extension's options (what iptables' parser dispatches on)."""


@functools.lru_cache(maxsize=1 << 16)
def parse_rule(text: str) -> Rule:
    """Parse rule arguments (everything after ``-A CHAIN``) into a :class:`Rule`.

    Raises :class:`IptablesSyntaxError` for anything iptables would refuse or that the model
    does not know (an unknown extension is refused rather than silently ignored). Results are
    cached: a Rule is an immutable value, and every kube-proxy sync re-writes mostly the same
    lines. The memo stays module-level: a pure, bounded function of a string whose values hold
    no run's objects (runs may share the same immutable Rule; a run's own interning of rules
    is :class:`~svcsim.proxy.caches.CompileCaches`).
    """
    return _parse(text, lenient=False)


@functools.lru_cache(maxsize=1 << 16)
def parse_node_rule(text: str) -> Rule:
    """Parse a rule of a real node's ``iptables-save`` output, whoever wrote it.

    Besides kube-proxy's extensions this knows the ones of
    :data:`~svcsim.netfilter.other_extensions.MATCH_OPTIONS` and ``TARGET_OPTIONS``
    (:class:`~svcsim.netfilter.other_extensions.OtherMatch`, ``OtherTarget``). An extension it
    does not know, or a known one with an option it does not know, is kept as an
    :class:`~svcsim.netfilter.other_extensions.UnknownMatch` (``UnknownTarget``) holding the
    tokens as read: the caller decides whether that is an error (a walk reaches it) or a
    warning. Malformed text (an unterminated quote, an option without its value, a stray
    argument) still raises :class:`IptablesSyntaxError`. Memoised at module level as
    :func:`parse_rule` is.
    """
    return _parse(text, lenient=True)


def _match_table(name: str, lenient: bool) -> dict[str, int] | None:
    """The options of match ``name`` (None if unknown); lenient parsing knows more of them."""
    if lenient and name in MATCH_OPTIONS:
        return MATCH_OPTIONS[name]
    return _MATCH_OPTIONS.get(name)


def _target_table(name: str, lenient: bool) -> dict[str, int]:
    """The options of target ``name`` (none for a chain); lenient parsing knows more of them."""
    if lenient and name in TARGET_OPTIONS:
        return TARGET_OPTIONS[name]
    return _TARGET_OPTIONS.get(name, {})


_UNTYPED_OPTIONS: Final = frozenset({"--to-ports", "--persistent"})
"""Options kube-proxy's typed targets parse but do not keep (MASQUERADE, DNAT): a node rule
with one of them is kept as an :class:`OtherTarget` so that nothing is lost."""


_OWN_RULES_ONLY: Final = frozenset({"set", "physdev", "ipvs", "state"})
"""Matches typed for kube-proxy's own IPVS and userspace rules (whose ip sets svcsim knows).
A real node's are kept as saved (:class:`OtherMatch`), so that what only the node knows (an
ipset's members) is taken from ``--ipset`` or asked, never assumed."""


def _typed_match(ext: _Ext) -> bool:
    """True if kube-proxy's typed class for ``ext`` holds every option ``ext`` has."""
    if ext.name in _OWN_RULES_ONLY:
        return False
    known = _MATCH_OPTIONS.get(ext.name)
    return known is not None and all(flag in known for flag in ext.options)


def _node_match(ext: _Ext) -> Match:
    """A match of a real node's rule: typed if it can be, else as saved, else unknown."""
    if ext.raw is not None:
        return UnknownMatch(ext.name, tuple(ext.raw))
    if _typed_match(ext):
        try:
            return _build_match(ext)
        except IptablesSyntaxError:
            pass  # e.g. statistic --mode nth: kept as saved below
    return OtherMatch(ext.name, _options(ext))


def _node_target(ext: _Ext, goto: bool) -> Target:
    """A target of a real node's rule: typed if it can be, else as saved, else unknown."""
    if ext.raw is not None:
        return UnknownTarget(ext.name, tuple(ext.raw))
    typed = ext.name in _TARGET_OPTIONS or ext.name not in TARGET_OPTIONS
    if typed and not any(flag in _UNTYPED_OPTIONS for flag in ext.options):
        try:
            built = _build_target(ext, goto)
        except IptablesSyntaxError:
            built = None
        # A DNAT to an address range is a NAT choice the typed target cannot hold.
        if built is not None and not (isinstance(built, DnatTarget) and "-" in built.address):
            return built
    if ext.name not in TARGET_OPTIONS:
        return UnknownTarget(ext.name, tuple(ext.to_raw()))
    return OtherTarget(ext.name, _options(ext))


def _options(ext: _Ext) -> tuple[ExtOption, ...]:
    return tuple(ExtOption(flag, tuple(vals), neg) for flag, (neg, vals) in ext.options.items())


def _parse(text: str, lenient: bool) -> Rule:
    tokens = tokenize(text)
    generic: dict[str, tuple[bool, str]] = {}
    exts: list[_Ext] = []
    target: _Ext | None = None
    goto = False
    negate = False
    i = 0

    def value(n: int) -> list[str]:
        if i + n >= len(tokens):
            raise IptablesSyntaxError(f"option {tokens[i]!r} needs a value in {text!r}")
        return tokens[i + 1 : i + 1 + n]

    def boundary(at: int) -> bool:
        tok = tokens[at]
        if tok == "!":
            return at + 1 < len(tokens) and tokens[at + 1] in _BOUNDARIES
        return tok in _BOUNDARIES

    while i < len(tokens):
        tok = tokens[i]
        current = target if target is not None else (exts[-1] if exts else None)
        if current is not None and current.raw is not None and not boundary(i):
            current.raw.append(tok)
            i += 1
            continue
        if tok == "!":
            negate = True
            i += 1
            continue
        if tok in _GENERIC:
            (val,) = value(1)
            generic[_GENERIC[tok]] = (negate, val)
            i += 2
        elif tok in ("-m", "--match"):
            (name,) = value(1)
            if _match_table(name, lenient) is None:
                if not lenient:
                    raise IptablesSyntaxError(f"unknown match extension {name!r} in {text!r}")
                exts.append(_Ext(name, raw=[]))
            else:
                exts.append(_Ext(name))
            i += 2
        elif tok in ("-j", "--jump", "-g", "--goto"):
            (name,) = value(1)
            goto = tok in ("-g", "--goto")
            target = _Ext(name)
            i += 2
        elif tok.startswith("--"):
            owner = _owner(tok, exts, target, generic, lenient)
            if owner is None and lenient and current is not None:
                # An option svcsim does not know: keep this extension's tokens as read.
                current.to_raw().extend(["!", tok] if negate else [tok])
                negate = False
                i += 1
                continue
            if owner is None:
                raise IptablesSyntaxError(f"unknown option {tok!r} in {text!r}")
            table = (
                _target_table(owner.name, lenient)
                if owner is target
                else _match_table(owner.name, lenient)
            )
            assert table is not None
            nvals = table[tok]
            owner.options[tok] = (negate, value(nvals))
            i += 1 + nvals
        else:
            raise IptablesSyntaxError(f"unexpected argument {tok!r} in {text!r}")
        negate = False
    if negate:
        raise IptablesSyntaxError(f"dangling '!' in {text!r}")
    return _build_rule(text, generic, exts, target, goto, lenient)


def _owner(
    option: str,
    exts: list[_Ext],
    target: _Ext | None,
    generic: dict[str, tuple[bool, str]],
    lenient: bool = False,
) -> _Ext | None:
    """The extension an option belongs to: the target, else the latest match that knows it."""
    if target is not None:
        if target.raw is None and option in _target_table(target.name, lenient):
            return target
        if lenient:
            return None  # options after the target are the target's (iptables-save order)
    for ext in reversed(exts):
        if ext.raw is None and option in (_match_table(ext.name, lenient) or {}):
            return ext
    proto = generic.get("protocol", (False, ""))[1]
    if proto in _PORT_PROTOCOLS and option in _MATCH_OPTIONS[proto]:
        # iptables loads the protocol's match implicitly (`-p tcp --dport 80`).
        exts.append(_Ext(proto))
        return exts[-1]
    return None


def _network(text: str) -> IPNetwork:
    try:
        return network_of(text)
    except ValueError as exc:
        raise IptablesSyntaxError(f"invalid address {text!r}") from exc


def _ports(text: str, negated: bool) -> PortRange:
    first, _, last = text.partition(":")
    try:
        lo, hi = int(first), int(last or first)
    except ValueError as exc:
        raise IptablesSyntaxError(f"invalid port {text!r}") from exc
    if not 0 <= lo <= hi <= 65535:
        raise IptablesSyntaxError(f"invalid port range {text!r}")
    return PortRange(lo, hi, negated)


def _mark(text: str) -> tuple[int, int]:
    value, _, mask = text.partition("/")
    try:
        return int(value, 0), int(mask, 0) if mask else 0xFFFFFFFF
    except ValueError as exc:
        raise IptablesSyntaxError(f"invalid mark {text!r}") from exc


def _build_match(ext: _Ext) -> Match:
    opts = ext.options
    if ext.name == "comment":
        return CommentMatch(opts["--comment"][1][0] if "--comment" in opts else "")
    if ext.name in _PORT_PROTOCOLS:
        ranges: dict[str, PortRange] = {}
        for flag, key in (
            ("--sport", "s"),
            ("--source-port", "s"),
            ("--dport", "d"),
            ("--destination-port", "d"),
        ):
            if flag in opts:
                neg, (val,) = opts[flag]
                ranges[key] = _ports(val, neg)
        return PortMatch(ext.name, ranges.get("s"), ranges.get("d"))
    if ext.name == "statistic":
        mode = opts.get("--mode", (False, ["random"]))[1][0]
        if mode != "random" or "--probability" not in opts:
            raise IptablesSyntaxError("only -m statistic --mode random --probability P is modelled")
        neg, (prob,) = opts["--probability"]
        try:
            threshold = threshold_from_probability(prob)
        except ValueError as exc:
            raise IptablesSyntaxError(f"invalid probability {prob!r}") from exc
        return StatisticMatch(threshold, neg)
    if ext.name == "recent":
        commands = [c for c in ("set", "rcheck", "update", "remove") if f"--{c}" in opts]
        if len(commands) != 1:
            raise IptablesSyntaxError("-m recent needs one of --set, --rcheck, --update, --remove")
        return RecentMatch(
            name=opts.get("--name", (False, ["DEFAULT"]))[1][0],
            command=commands[0],
            seconds=int(opts["--seconds"][1][0]) if "--seconds" in opts else 0,
            reap="--reap" in opts,
            hitcount=int(opts["--hitcount"][1][0]) if "--hitcount" in opts else 0,
            rsource="--rdest" not in opts,
            mask=opts.get("--mask", (False, ["255.255.255.255"]))[1][0],
            negated=opts[f"--{commands[0]}"][0],
        )
    if ext.name == "mark":
        neg, (val,) = opts["--mark"]
        return MarkMatch(*_mark(val), negated=neg)
    if ext.name == "addrtype":
        src = opts.get("--src-type")
        dst = opts.get("--dst-type")
        return AddrTypeMatch(
            src_type=src[1][0] if src else None,
            src_negated=bool(src and src[0]),
            dst_type=dst[1][0] if dst else None,
            dst_negated=bool(dst and dst[0]),
        )
    if ext.name == "conntrack":
        neg, (val,) = opts["--ctstate"]
        return ConntrackMatch(frozenset(val.split(",")), neg)
    if ext.name == "nfacct":
        return NfacctMatch(opts["--nfacct-name"][1][0])
    if ext.name in ("set", "physdev", "ipvs"):
        return _build_ipvs_mode_match(ext)
    if ext.name == "state":
        neg, (val,) = opts["--state"]
        return StateMatch(frozenset(val.split(",")), neg)
    raise IptablesSyntaxError(f"unknown match extension {ext.name!r}")  # pragma: no cover


def _build_ipvs_mode_match(ext: _Ext) -> Match:
    """``-m set``, ``-m physdev --physdev-is-in`` and ``-m ipvs`` (IPVS mode's rules)."""
    opts = ext.options
    if ext.name == "set":
        if "--match-set" not in opts:
            raise IptablesSyntaxError("-m set needs --match-set NAME FLAGS")
        neg, (name, flags) = opts["--match-set"]
        try:
            return SetMatch(name, tuple(flags.split(",")), neg)
        except ValueError as exc:
            raise IptablesSyntaxError(str(exc)) from exc
    if ext.name == "physdev":
        if "--physdev-is-in" not in opts:
            raise IptablesSyntaxError("only -m physdev [!] --physdev-is-in is modelled")
        return PhysdevMatch(negated=opts["--physdev-is-in"][0])
    missing = [o for o in ("--vaddr", "--vproto", "--vport") if o not in opts]
    if missing:
        raise IptablesSyntaxError(f"-m ipvs: only --vaddr/--vproto/--vport together, {missing}")
    vaddr = opts["--vaddr"][1][0].removesuffix("/32")
    try:
        return IpvsMatch(vaddr, opts["--vproto"][1][0], int(opts["--vport"][1][0]))
    except ValueError as exc:
        raise IptablesSyntaxError(f"-m ipvs: bad --vport in {opts}") from exc


def _build_target(ext: _Ext, goto: bool) -> Target:
    opts = ext.options
    if ext.name == "REJECT":
        return RejectTarget(opts.get("--reject-with", (False, ["icmp-port-unreachable"]))[1][0])
    if ext.name == "MARK":
        if len(opts) != 1:
            raise IptablesSyntaxError("-j MARK needs exactly one mark option")
        ((flag, (_neg, (val,))),) = opts.items()
        value, mask = _mark(val)
        if flag == "--or-mark":
            return MarkTarget(value, value)
        if flag == "--xor-mark":
            return MarkTarget(value, 0)
        if flag == "--and-mark":
            return MarkTarget(0, ~value & 0xFFFFFFFF)
        if flag == "--set-mark":
            return MarkTarget(value, value | mask)  # libxt_MARK mark_tg_parse
        return MarkTarget(value, mask)
    if ext.name == "DNAT":
        if "--to-destination" not in opts:
            raise IptablesSyntaxError("-j DNAT needs --to-destination")
        return _dnat(opts["--to-destination"][1][0])
    if ext.name == "MASQUERADE":
        return MasqueradeTarget(random="--random" in opts, random_fully="--random-fully" in opts)
    if ext.name == "REDIRECT":
        ports = opts.get("--to-ports", (False, [""]))[1][0]
        if not ports.isdigit() or not 0 < int(ports) < 65536:
            raise IptablesSyntaxError(
                f"-j REDIRECT: only --to-ports PORT is modelled, got {ports!r}"
            )
        return RedirectTarget(int(ports))
    if opts:
        raise IptablesSyntaxError(f"target {ext.name!r} takes no options here")
    return JumpTarget(ext.name, goto)


def _dnat(text: str) -> DnatTarget:
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
        return DnatTarget(host, int(port) if port else None)
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return DnatTarget(host, int(port))
    return DnatTarget(text)


def _build_rule(
    text: str,
    generic: dict[str, tuple[bool, str]],
    exts: list[_Ext],
    target: _Ext | None,
    goto: bool,
    lenient: bool = False,
) -> Rule:
    def addr(key: str) -> AddressMatch | None:
        return AddressMatch(_network(generic[key][1]), generic[key][0]) if key in generic else None

    def iface(key: str) -> InterfaceMatch | None:
        return InterfaceMatch(generic[key][1], generic[key][0]) if key in generic else None

    proto = generic.get("protocol")
    for ext in exts:
        if ext.name in _PORT_PROTOCOLS and (proto is None or proto[1].lower() != ext.name):
            raise IptablesSyntaxError(f"-m {ext.name} requires '-p {ext.name}' in {text!r}")
    return Rule(
        text=text,
        source=addr("source"),
        destination=addr("destination"),
        in_interface=iface("in"),
        out_interface=iface("out"),
        protocol=ProtocolMatch(proto[1].lower(), proto[0]) if proto else None,
        matches=tuple((_node_match if lenient else _build_match)(e) for e in exts),
        target=(
            None
            if target is None
            else _node_target(target, goto)
            if lenient
            else _build_target(target, goto)
        ),
    )
