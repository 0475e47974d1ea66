"""The IPVS schedulers kube-proxy can ask for, deciding as the kernel's ``ip_vs_*.c`` do.

Each scheduler sees a virtual server's destinations as the kernel keeps them: a list in the
order of ``svc->destinations``, where a new real server is added at the *head*
(``list_add_rcu`` in ``__ip_vs_update_dest``, net/netfilter/ipvs/ip_vs_ctl.c). A
:class:`Destination` view carries what schedulers read: weight, ``last_weight`` (mh), active and
inactive connection counts. :meth:`Scheduler.schedule` returns the index of the chosen
destination or None ("no destination available"). Schedulers with state (rr's pointer, wrr's
mark, the sh/dh/mh tables) are told about destination changes through
:meth:`Scheduler.dests_changed`, as the kernel calls ``add_dest``/``del_dest``/``upd_dest``.

Kernel sources (torvalds/linux; the versions the search tool stored, commits named):

* rr ``ip_vs_rr.c`` @02b5a603: a pointer to the last chosen destination, next with weight > 0;
  a deleted destination moves the pointer to its predecessor (``ip_vs_rr_del_dest``).
* wrr ``ip_vs_wrr.c`` @08cb2d03: the (cl, cw, mw, di) mark; gcd/max recomputed and the pointer
  reset to the head on every destination change (``ip_vs_wrr_dest_changed``).
* lc ``ip_vs_lc.c`` @2cc2c3cb and wlc ``ip_vs_wlc.c`` @0b383149: least
  ``ip_vs_dest_conn_overhead`` = ``activeconns << 8 + inactconns`` (include/net/ip_vs.h),
  wlc comparing ``loh * w_dest > doh * w_least``; the first least one in list order wins.
* sh, dh and mh hash; they are :mod:`svcsim.netfilter.ipvs_hashing`.

The IP_VS_DEST_F_OVERLOAD flag (upper thresholds) is never set by kube-proxy: not modelled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

SCHEDULERS: Final = ("rr", "wrr", "lc", "wlc", "sh", "dh", "mh")
"""The schedulers modelled (kube-proxy passes ``--ipvs-scheduler`` through to the kernel)."""


@dataclass(frozen=True, slots=True)
class Destination:
    """What a scheduler reads of one real server."""

    address: str
    port: int
    weight: int
    last_weight: int
    active: int = 0
    inactive: int = 0

    @property
    def overhead(self) -> int:
        """``ip_vs_dest_conn_overhead``: ``activeconns * 256 + inactconns``."""
        return (self.active << 8) + self.inactive


@dataclass(frozen=True, slots=True)
class Flow:
    """What a scheduler may hash: the new connection's addresses and ports."""

    src: str
    sport: int
    dst: str
    dport: int


def ipv4_int(address: str) -> int:
    """An IPv4 address as the host-order integer ``ntohl`` gives."""
    a, b, c, d = (int(x) for x in address.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


class Scheduler(Protocol):
    """One virtual server's scheduler instance (its ``sched_data``)."""

    name: str

    def dests_changed(self, dests: Sequence[Destination], removed_index: int | None = None) -> None:
        """The destination list or a weight changed; ``removed_index`` if one was deleted."""
        ...

    def add_at_head(self) -> None:
        """A destination was added at the list head (before :meth:`dests_changed`)."""
        ...

    def schedule(self, dests: Sequence[Destination], flow: Flow) -> int | None:
        """The index of the destination for a new connection, or None."""
        ...


class RoundRobin:
    """``rr``: the next destination after the last chosen one with weight > 0."""

    name = "rr"

    def __init__(self) -> None:
        self.last: int | None = None
        """Index of the last chosen destination; None is the list head."""

    def dests_changed(self, dests: Sequence[Destination], removed_index: int | None = None) -> None:
        """A deletion before or at the pointer moves it as ``ip_vs_rr_del_dest`` does."""
        if removed_index is None or self.last is None:
            return
        if removed_index == self.last:
            # The pointer moves to the predecessor (the head if it was first).
            self.last = removed_index - 1 if removed_index > 0 else None
        elif removed_index < self.last:
            self.last -= 1

    def add_at_head(self) -> None:
        """A destination was added at the list head: indices after it shift by one."""
        if self.last is not None:
            self.last += 1

    def schedule(self, dests: Sequence[Destination], flow: Flow) -> int | None:
        """Walk on from the pointer to the end, then from the head up to it (inclusive)."""
        n = len(dests)
        if self.last is None:
            order: list[int] = list(range(n))
        else:
            order = [*range(self.last + 1, n), *range(self.last + 1)]
        for i in order:
            if dests[i].weight > 0:
                self.last = i
                return i
        return None


class WeightedRoundRobin:
    """``wrr``: the kernel's (cl, cw, mw, di) mark."""

    name = "wrr"

    def __init__(self) -> None:
        self.cl: int | None = None
        self.cw = 0
        self.mw = 0
        self.di = 1

    def dests_changed(self, dests: Sequence[Destination], removed_index: int | None = None) -> None:
        """``ip_vs_wrr_dest_changed`` (also its init): recompute, pointer to the head."""
        weights = [d.weight for d in dests if d.weight > 0]
        g = 0
        for w in weights:
            g = math.gcd(g, w) if g else w
        self.cl = None
        self.di = g or 1
        self.mw = max((d.weight for d in dests), default=0) - (self.di - 1)
        if self.cw > self.mw or not self.cw:
            self.cw = self.mw
        elif self.di > 1:
            self.cw = (self.cw // self.di) * self.di + 1

    def add_at_head(self) -> None:
        """Nothing: :meth:`dests_changed` follows and resets the pointer."""

    def schedule(self, dests: Sequence[Destination], flow: Flow) -> int | None:
        """``ip_vs_wrr_schedule``."""
        if self.mw == 0:
            return None
        n = len(dests)
        last = self.cl
        stop: int | None = None
        last_pass = restarted = False
        i = -1 if self.cl is None else self.cl
        while True:
            while i + 1 < n:
                i += 1
                if dests[i].weight >= self.cw:
                    self.cl = i
                    return i
                if i == stop:
                    self.cl = i
                    return None
            i = -1  # back at the head
            self.cw -= self.di
            if self.cw <= 0:
                self.cw = self.mw
                if last_pass or last is None:
                    self.cl = None
                    return None
                restarted = True
            last_pass = self.cw <= self.di
            if last_pass and restarted and last is not None:
                stop = last


class LeastConnection:
    """``lc``: least overhead among weight > 0, first in list order on ties."""

    name = "lc"

    def dests_changed(self, dests: Sequence[Destination], removed_index: int | None = None) -> None:
        """Stateless."""

    def add_at_head(self) -> None:
        """Stateless."""

    def schedule(self, dests: Sequence[Destination], flow: Flow) -> int | None:
        """``ip_vs_lc_schedule``."""
        best: int | None = None
        for i, d in enumerate(dests):
            if d.weight == 0:
                continue
            if best is None or d.overhead < dests[best].overhead:
                best = i
        return best


class WeightedLeastConnection:
    """``wlc``: least overhead / weight, compared by cross-multiplying."""

    name = "wlc"

    def dests_changed(self, dests: Sequence[Destination], removed_index: int | None = None) -> None:
        """Stateless."""

    def add_at_head(self) -> None:
        """Stateless."""

    def schedule(self, dests: Sequence[Destination], flow: Flow) -> int | None:
        """``ip_vs_wlc_schedule``: the first with weight > 0, then any strictly lighter one."""
        least = next((i for i, d in enumerate(dests) if d.weight > 0), None)
        if least is None:
            return None
        for i in range(least + 1, len(dests)):
            d, lst = dests[i], dests[least]
            # A weight-0 destination never wins: 0 > doh * w_least is false.
            if lst.overhead * d.weight > d.overhead * lst.weight:
                least = i
        return least


def make_scheduler(name: str) -> Scheduler:
    """A fresh scheduler instance for ``name``; ValueError for one not modelled."""
    # Imported here: the hashing schedulers' module imports this one's Destination and Flow.
    from svcsim.netfilter.ipvs_hashing import DestinationHashing, MaglevHashing, SourceHashing

    factories: dict[str, type[Scheduler]] = {
        "rr": RoundRobin,
        "wrr": WeightedRoundRobin,
        "lc": LeastConnection,
        "wlc": WeightedLeastConnection,
        "sh": SourceHashing,
        "dh": DestinationHashing,
        "mh": MaglevHashing,
    }
    if name not in factories:
        raise ValueError(f"unknown IPVS scheduler {name!r}: one of {', '.join(SCHEDULERS)}")
    return factories[name]()
