"""Rule arguments: tokenise and parse them the way iptables' command-line parser does.

Generic options (``-s``, ``-d``, ``-i``, ``-o``, ``-p``), ``-m`` extensions whose options follow
them, ``-p tcp`` implicitly loading the ``tcp`` match, and ``!`` negation. Both text forms
(restore input and save output) parse into the same :class:`~svcsim.netfilter.model.Rule`.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field

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
    """An extension being parsed: its name and ``option -> (negated, values)`` in order."""

    name: str
    options: dict[str, tuple[bool, list[str]]] = field(default_factory=dict)


@functools.lru_cache(maxsize=1 << 16)
def parse_rule(text: str) -> Rule:
    """Parse rule arguments (everything after ``-A CHAIN``) into a :class:`Rule`.

    Raises :class:`IptablesSyntaxError` for anything iptables would refuse or that the model
    does not know (an unknown extension is refused rather than silently ignored). Results are
    cached: a Rule is an immutable value, and every kube-proxy sync re-writes mostly the same
    lines.
    """
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

    while i < len(tokens):
        tok = tokens[i]
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
            if name not in _MATCH_OPTIONS:
                raise IptablesSyntaxError(f"unknown match extension {name!r} in {text!r}")
            exts.append(_Ext(name))
            i += 2
        elif tok in ("-j", "--jump", "-g", "--goto"):
            (name,) = value(1)
            goto = tok in ("-g", "--goto")
            target = _Ext(name)
            i += 2
        elif tok.startswith("--"):
            owner = _owner(tok, exts, target, generic)
            if owner is None:
                raise IptablesSyntaxError(f"unknown option {tok!r} in {text!r}")
            nvals = (_TARGET_OPTIONS if owner is target else _MATCH_OPTIONS)[owner.name][tok]
            owner.options[tok] = (negate, value(nvals))
            i += 1 + nvals
        else:
            raise IptablesSyntaxError(f"unexpected argument {tok!r} in {text!r}")
        negate = False
    if negate:
        raise IptablesSyntaxError(f"dangling '!' in {text!r}")
    return _build_rule(text, generic, exts, target, goto)


def _owner(
    option: str, exts: list[_Ext], target: _Ext | None, generic: dict[str, tuple[bool, str]]
) -> _Ext | None:
    """The extension an option belongs to: the target, else the latest match that knows it."""
    if target is not None and option in _TARGET_OPTIONS.get(target.name, {}):
        return target
    for ext in reversed(exts):
        if option in _MATCH_OPTIONS[ext.name]:
            return ext
    proto = generic.get("protocol", (False, ""))[1]
    if proto in _PORT_PROTOCOLS and option in _MATCH_OPTIONS[proto]:
        # iptables loads the protocol's match implicitly (`-p tcp --dport 80`).
        exts.append(_Ext(proto))
        return exts[-1]
    return None


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
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
        matches=tuple(_build_match(e) for e in exts),
        target=_build_target(target, goto) if target is not None else None,
    )
