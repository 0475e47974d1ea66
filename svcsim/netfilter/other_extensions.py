"""Match and target extensions other software writes on real nodes (CNI plugins, Docker, ...).

kube-proxy's own extensions have typed classes in :mod:`svcsim.netfilter.extensions`. The many
more that a real node's ``iptables-save`` holds (Calico's ``-m set``, Cilium's ``-j TPROXY``,
Docker's ``-m conntrack --ctstate RELATED,ESTABLISHED`` on its own chains, ``-j LOG``, ...)
are kept here as their name and options in the order iptables-save printed them: the walk
(:mod:`svcsim.netfilter.walk`) reads the options it can evaluate, and the rule prints back
exactly. :data:`MATCH_OPTIONS` and :data:`TARGET_OPTIONS` are the extensions and options known,
each option with the number of values it takes (iptables ``extensions/libxt_*.c`` and
``libipt_*.c``, v1.8.9). Anything else on a real node is an :class:`UnknownMatch` or
:class:`UnknownTarget`: kept, printed back, and never evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from svcsim.netfilter.extensions import negation, save_string

MATCH_OPTIONS: Final[dict[str, dict[str, int]]] = {
    "set": {
        "--match-set": 2,
        "--return-nomatch": 0,
        "--update-counters": 0,
        "--update-subcounters": 0,
        "--packets-eq": 1,
        "--packets-lt": 1,
        "--packets-gt": 1,
        "--bytes-eq": 1,
        "--bytes-lt": 1,
        "--bytes-gt": 1,
    },
    "physdev": {
        "--physdev-in": 1,
        "--physdev-out": 1,
        "--physdev-is-in": 0,
        "--physdev-is-out": 0,
        "--physdev-is-bridged": 0,
    },
    "connmark": {"--mark": 1},
    "conntrack": {
        "--ctstate": 1,
        "--ctproto": 1,
        "--ctorigsrc": 1,
        "--ctorigdst": 1,
        "--ctreplsrc": 1,
        "--ctrepldst": 1,
        "--ctorigsrcport": 1,
        "--ctorigdstport": 1,
        "--ctreplsrcport": 1,
        "--ctrepldstport": 1,
        "--ctstatus": 1,
        "--ctexpire": 1,
        "--ctdir": 1,
    },
    "state": {"--state": 1},
    "multiport": {
        "--ports": 1,
        "--sports": 1,
        "--dports": 1,
        "--source-ports": 1,
        "--destination-ports": 1,
    },
    "iprange": {"--src-range": 1, "--dst-range": 1},
    "owner": {"--uid-owner": 1, "--gid-owner": 1, "--socket-exists": 0, "--suppl-groups": 0},
    "socket": {"--transparent": 0, "--nowildcard": 0, "--restore-skmark": 0},
    "tcp": {
        "--sport": 1,
        "--dport": 1,
        "--source-port": 1,
        "--destination-port": 1,
        "--tcp-flags": 2,
        "--syn": 0,
        "--tcp-option": 1,
    },
    "udp": {"--sport": 1, "--dport": 1, "--source-port": 1, "--destination-port": 1},
    "sctp": {"--sport": 1, "--dport": 1, "--source-port": 1, "--destination-port": 1},
    "icmp": {"--icmp-type": 1},
    "limit": {"--limit": 1, "--limit-burst": 1},
    "hashlimit": {
        "--hashlimit-upto": 1,
        "--hashlimit-above": 1,
        "--hashlimit-burst": 1,
        "--hashlimit-mode": 1,
        "--hashlimit-srcmask": 1,
        "--hashlimit-dstmask": 1,
        "--hashlimit-name": 1,
        "--hashlimit-htable-size": 1,
        "--hashlimit-htable-max": 1,
        "--hashlimit-htable-expire": 1,
        "--hashlimit-htable-gcinterval": 1,
    },
    "pkttype": {"--pkt-type": 1},
    "rpfilter": {"--loose": 0, "--validmark": 0, "--accept-local": 0, "--invert": 0},
    "policy": {
        "--dir": 1,
        "--pol": 1,
        "--strict": 0,
        "--reqid": 1,
        "--spi": 1,
        "--proto": 1,
        "--mode": 1,
        "--tunnel-src": 1,
        "--tunnel-dst": 1,
        "--next": 0,
    },
    "addrtype": {"--src-type": 1, "--dst-type": 1, "--limit-iface-in": 0, "--limit-iface-out": 0},
    "statistic": {"--mode": 1, "--probability": 1, "--every": 1, "--packet": 1},
    "mac": {"--mac-source": 1},
    "length": {"--length": 1},
    "helper": {"--helper": 1},
    "cgroup": {"--path": 1, "--cgroup": 1},
    "mark": {"--mark": 1},
    "comment": {"--comment": 1},
}
"""Match extensions a real node's dump may hold, and each option's number of values."""

TARGET_OPTIONS: Final[dict[str, dict[str, int]]] = {
    "CONNMARK": {
        "--set-xmark": 1,
        "--set-mark": 1,
        "--save-mark": 0,
        "--restore-mark": 0,
        "--nfmask": 1,
        "--ctmask": 1,
        "--mask": 1,
        "--and-mark": 1,
        "--or-mark": 1,
        "--xor-mark": 1,
    },
    "LOG": {
        "--log-level": 1,
        "--log-prefix": 1,
        "--log-tcp-sequence": 0,
        "--log-tcp-options": 0,
        "--log-ip-options": 0,
        "--log-uid": 0,
        "--log-macdecode": 0,
    },
    "NFLOG": {
        "--nflog-group": 1,
        "--nflog-prefix": 1,
        "--nflog-range": 1,
        "--nflog-size": 1,
        "--nflog-threshold": 1,
    },
    "NOTRACK": {},
    "CT": {
        "--notrack": 0,
        "--helper": 1,
        "--ctevents": 1,
        "--expevents": 1,
        "--zone": 1,
        "--zone-orig": 1,
        "--zone-reply": 1,
        "--timeout": 1,
    },
    "TPROXY": {"--on-port": 1, "--on-ip": 1, "--tproxy-mark": 1},
    "SNAT": {"--to-source": 1, "--random": 0, "--random-fully": 0, "--persistent": 0},
    "DNAT": {"--to-destination": 1, "--random": 0, "--persistent": 0},
    "MASQUERADE": {"--to-ports": 1, "--random": 0, "--random-fully": 0},
    "REDIRECT": {"--to-ports": 1, "--random": 0},
    "TCPMSS": {"--set-mss": 1, "--clamp-mss-to-pmtu": 0},
    "CHECKSUM": {"--checksum-fill": 0},
    "SET": {"--add-set": 2, "--del-set": 2, "--exist": 0, "--timeout": 1},
    "TRACE": {},
    "DSCP": {"--set-dscp": 1, "--set-dscp-class": 1},
    "TOS": {"--set-tos": 1},
    "CLASSIFY": {"--set-class": 1},
    "AUDIT": {"--type": 1},
}
"""Target extensions a real node's dump may hold, and each option's number of values."""

CONTINUING_TARGETS: Final = frozenset(
    {"LOG", "NFLOG", "TCPMSS", "CHECKSUM", "TRACE", "DSCP", "TOS", "CLASSIFY", "AUDIT", "SET"}
)
"""Targets that only log, count or rewrite header fields the walk does not model, and let the
packet go on to the next rule (their kernel target functions return ``XT_CONTINUE``)."""

_STRING_OPTIONS: Final = frozenset({"--log-prefix", "--nflog-prefix", "--comment", "--helper"})
"""Options whose value iptables-save prints with ``xtables_save_string`` (quoted when needed)."""


@dataclass(frozen=True, slots=True)
class ExtOption:
    """One option of an extension as saved: ``[!] --flag VALUE...``."""

    flag: str
    values: tuple[str, ...] = ()
    negated: bool = False

    def save_args(self) -> list[str]:
        """Tokens iptables-save prints for this option."""
        values = [save_string(v) if self.flag in _STRING_OPTIONS else _bare(v) for v in self.values]
        return [*negation(self.negated), self.flag, *values]


def _bare(value: str) -> str:
    """A value printed as-is unless it holds spaces or quotes (then quoted like a string)."""
    return save_string(value) if any(c.isspace() or c in "\"'\\" for c in value) else value


@dataclass(frozen=True, slots=True)
class OtherMatch:
    """``-m NAME OPTIONS``: a match extension of :data:`MATCH_OPTIONS`, options in saved order."""

    name: str
    options: tuple[ExtOption, ...] = ()

    def option(self, flag: str) -> ExtOption | None:
        """The option ``flag``, or None."""
        return next((o for o in self.options if o.flag == flag), None)

    def save_args(self) -> list[str]:
        """Tokens iptables-save prints for this match."""
        return ["-m", self.name, *(t for o in self.options for t in o.save_args())]


@dataclass(frozen=True, slots=True)
class OtherTarget:
    """``-j NAME OPTIONS``: a target extension of :data:`TARGET_OPTIONS`."""

    name: str
    options: tuple[ExtOption, ...] = ()

    def option(self, flag: str) -> ExtOption | None:
        """The option ``flag``, or None."""
        return next((o for o in self.options if o.flag == flag), None)

    def save_args(self) -> list[str]:
        """Tokens iptables-save prints for this target."""
        return ["-j", self.name, *(t for o in self.options for t in o.save_args())]


@dataclass(frozen=True, slots=True)
class UnknownMatch:
    """``-m NAME ...`` that svcsim does not know: its tokens kept, never evaluated."""

    name: str
    tokens: tuple[str, ...] = ()

    def save_args(self) -> list[str]:
        """The tokens as read (quoted again where they hold spaces)."""
        return ["-m", self.name, *(_bare(t) for t in self.tokens)]


@dataclass(frozen=True, slots=True)
class UnknownTarget:
    """``-j NAME ...`` that svcsim does not know: its tokens kept, never evaluated."""

    name: str
    tokens: tuple[str, ...] = ()

    def save_args(self) -> list[str]:
        """The tokens as read (quoted again where they hold spaces)."""
        return ["-j", self.name, *(_bare(t) for t in self.tokens)]
