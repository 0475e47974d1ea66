"""The "5-second delay": a query pair losing the conntrack insert race, and glibc's retry.

glibc's ``getaddrinfo`` sends the A and AAAA queries together (``sendmmsg``) from one UDP
socket: one 5-tuple, two packets. On a multi-CPU node both may traverse netfilter at once,
each with its own unconfirmed conntrack entry and, in iptables or nftables mode, its own DNAT
draw; the second to be confirmed clashes, and the kernel may drop it
(:func:`svcsim.netfilter.conntrack_clash.clash_drops`). The client then holds one answer and
waits for the other until ``timeout`` (5 s). ``send_dg`` (``resolv/res_send.c``, bminor/glibc)
then switches the resolver to ``single-request`` mode (``statp->options |= RES_SNGLKUP``)
and ``goto retry``: both queries are sent again, one after the other, on the same socket, so
they follow the winner's (now confirmed) entry to the same CoreDNS Pod and cannot clash.
The lookup ends ``timeout`` plus two sequential answers later: the 5-second delay.

Whether a pair races is a draw per new query flow with the scenario's probability (an
assumption: not derivable from source), never on a 1-CPU node, never when the Pod's
resolver sends one query at a time (``single-request``, ``single-request-reopen``) or uses
TCP (``use-vc``), and not on IPVS or userspace nodes (their translation is not netfilter's
DNAT: not modelled). Which of the two packets loses is a fair draw.

glibc keeps ``RES_SNGLKUP`` in the thread's resolver state afterwards; svcsim treats every
request as a fresh resolver state (a new process or thread), so a client can lose the race
again on its next request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from svcsim.k8s.dns import ResolvConf
from svcsim.netfilter.conntrack_clash import KernelVersion, clash_drops

RACING_MODES: Final = frozenset({"iptables", "nftables"})
"""Proxy modes whose Service DNAT is netfilter NAT with a per-packet random draw."""
_DRAW_RACE: Final = 1
_DRAW_LOSER_DNAT: Final = 2
_DRAW_RESEND: Final = (3, 4)
_DRAW_WHICH: Final = 5
"""Indexes of the draws split from a try's seed (0 is CoreDNS's shuffle)."""


@dataclass(frozen=True, slots=True)
class RaceSettings:
    """``cluster.dns.conntrackRace`` and the nodes it can happen on."""

    probability: float
    kernel: KernelVersion
    single_cpu_nodes: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"race probability {self.probability!r} outside 0..1")


@dataclass(frozen=True, slots=True)
class Clash:
    """A query pair whose second packet the kernel dropped."""

    lost: str
    """``A`` or ``AAAA``: the query whose packet was dropped."""
    winner: str
    """``IP:port`` the surviving packet was DNATed to."""
    loser: str
    """``IP:port`` the dropped packet was DNATed to; ``""`` where it does not matter (before
    5.0 every clash drops) or it found no room in the conntrack table."""
    kernel: KernelVersion

    def why(self) -> str:
        """Why the kernel dropped it, in a few words."""
        if not self.loser:
            return f"kernel {self.kernel}: before 5.0 every clash of NATed entries drops"
        return (
            f"kernel {self.kernel}: DNATed to {self.winner} and {self.loser}, before 5.7 "
            "a clash of different DNAT targets drops"
        )


def uniform(seed: int) -> float:
    """A uniform draw in [0, 1) from a 64-bit seed (its top 53 bits)."""
    return (seed >> 11) * 2.0**-53


Split = Callable[[int, int], int]
LoserDnat = Callable[[int], "str | None"]
"""The DNAT destination (``IP:port``) the second packet's own draw picks, from its seed."""


def draw_clash(
    settings: RaceSettings | None,
    conf: ResolvConf,
    node: str,
    mode: str,
    winner: str,
    try_seed: int,
    split: Split,
    loser_dnat: LoserDnat,
) -> Clash | None:
    """The clash that drops one query of a new pair (module docstring), or None.

    ``winner`` is where the first packet went; ``loser_dnat`` is asked only when the kernel's
    verdict depends on the second packet's own DNAT choice (5.0 to 5.6).
    """
    if settings is None or settings.probability <= 0.0 or conf.sequential or conf.use_vc:
        return None
    if node in settings.single_cpu_nodes or mode not in RACING_MODES:
        return None
    if uniform(split(try_seed, _DRAW_RACE)) >= settings.probability:
        return None
    kernel = settings.kernel
    if not clash_drops(kernel, same_target=False):
        return None  # 5.7+: every clash is resolved; no second draw needed
    loser = ""
    if not clash_drops(kernel, same_target=True):
        # 5.0-5.6: the verdict depends on the second packet's own DNAT draw.
        loser = loser_dnat(split(try_seed, _DRAW_LOSER_DNAT)) or ""
        if loser == winner:
            return None
    lost = "A" if uniform(split(try_seed, _DRAW_WHICH)) < 0.5 else "AAAA"
    return Clash(lost, winner, loser, kernel)


def resend_seeds(try_seed: int, split: Split) -> tuple[int, int]:
    """Seeds of the service times of the two queries glibc sends again, one at a time."""
    return split(try_seed, _DRAW_RESEND[0]), split(try_seed, _DRAW_RESEND[1])


__all__ = ["RACING_MODES", "Clash", "RaceSettings", "draw_clash", "resend_seeds", "uniform"]
