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
* sh and dh: a 256-bucket table filled in list order (sh repeats each destination ``weight``
  times), indexed by ``hash_32(key, 8)`` (include/linux/hash.h, ``GOLDEN_RATIO_32``) of the
  source (sh: plus the source port only with the sh-port flag, which kube-proxy never sets)
  or destination address. Older kernels hashed ``key * 2654435761 & 255`` (ip_vs_sh.c
  @033d777f); this model follows the ``hash_32`` kernels (the v5.x line onwards).
* mh ``ip_vs_mh.c`` @2cc2c3cb: Maglev lookup table of 4093 slots (CONFIG_IP_VS_MH_TAB_INDEX
  12), offsets/skips from ``hsiphash`` (lib/siphash.c: SipHash-1-3 on 64-bit) with the fixed
  keys of ``generate_hash_secret``, turns from ``last_weight / gcd >> rshift``; the lookup
  hashes the source address plus, with the mh-port flag (kube-proxy's ``FlagSourceHash``
  0x10 = ``IP_VS_SVC_F_SCHED2``), the source port. A weight-0 destination keeps its slots
  (``last_weight``) and a packet hashed to one finds no destination (no mh-fallback flag).

The IP_VS_DEST_F_OVERLOAD flag (upper thresholds) is never set by kube-proxy: not modelled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

SCHEDULERS: Final = ("rr", "wrr", "lc", "wlc", "sh", "dh", "mh")
"""The schedulers modelled (kube-proxy passes ``--ipvs-scheduler`` through to the kernel)."""

GOLDEN_RATIO_32: Final = 0x61C88647
"""include/linux/hash.h."""
HASH_TAB_BITS: Final = 8
"""CONFIG_IP_VS_SH_TAB_BITS / CONFIG_IP_VS_DH_TAB_BITS default."""
MH_TAB_SIZE: Final = 4093
"""``primes[CONFIG_IP_VS_MH_TAB_INDEX - 8]`` with the default index 12."""
MH_TAB_BITS: Final = 6
"""``CONFIG_IP_VS_MH_TAB_INDEX / 2``."""
MH_KEY1: Final = 2654435761
MH_KEY2: Final = 2654446892
"""``generate_hash_secret``: both words of hash1, both words of hash2."""

_MASK64 = (1 << 64) - 1


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


def hash_32(value: int, bits: int) -> int:
    """include/linux/hash.h ``hash_32``: ``(value * GOLDEN_RATIO_32) >> (32 - bits)`` in u32."""
    return ((value * GOLDEN_RATIO_32) & 0xFFFFFFFF) >> (32 - bits)


def _rol64(word: int, shift: int) -> int:
    return ((word << shift) | (word >> (64 - shift))) & _MASK64


def _sipround(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    v0 = (v0 + v1) & _MASK64
    v1 = _rol64(v1, 13) ^ v0
    v0 = _rol64(v0, 32)
    v2 = (v2 + v3) & _MASK64
    v3 = _rol64(v3, 16) ^ v2
    v0 = (v0 + v3) & _MASK64
    v3 = _rol64(v3, 21) ^ v0
    v2 = (v2 + v1) & _MASK64
    v1 = _rol64(v1, 17) ^ v2
    v2 = _rol64(v2, 32)
    return v0, v1, v2, v3


def hsiphash_u32(value: int, key: int) -> int:
    """lib/siphash.c ``hsiphash`` of one little-endian u32 on a 64-bit kernel (SipHash-1-3).

    ``key`` fills both 64-bit key words, as mh's ``generate_hash_secret`` does. The result is
    the low 32 bits of ``v0 ^ v1 ^ v2 ^ v3`` (the function returns ``u32``).
    """
    v0 = 0x736F6D6570736575 ^ key
    v1 = 0x646F72616E646F6D ^ key
    v2 = 0x6C7967656E657261 ^ key
    v3 = 0x7465646279746573 ^ key
    b = (4 << 56) | (value & 0xFFFFFFFF)
    v3 ^= b
    v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    v0 ^= b
    v2 ^= 0xFF
    for _ in range(3):
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    return (v0 ^ v1 ^ v2 ^ v3) & 0xFFFFFFFF


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


class _HashTable:
    """sh/dh: a 256-bucket table of destination indices, filled in list order."""

    def __init__(self, by_weight: bool) -> None:
        self.by_weight = by_weight
        self.buckets: list[int | None] = [None] * (1 << HASH_TAB_BITS)

    def dests_changed(self, dests: Sequence[Destination], removed_index: int | None = None) -> None:
        """``ip_vs_sh_reassign`` / ``ip_vs_dh_reassign``."""
        size = 1 << HASH_TAB_BITS
        if not dests:
            self.buckets = [None] * size
            return
        out: list[int | None] = []
        i = count = 0
        for _ in range(size):
            out.append(i)
            count += 1
            if not self.by_weight or count >= dests[i].weight:
                i = (i + 1) % len(dests)
                count = 0
        self.buckets = out

    def add_at_head(self) -> None:
        """Nothing: :meth:`dests_changed` follows and refills the table."""

    def pick(self, dests: Sequence[Destination], key: int) -> int | None:
        index = self.buckets[hash_32(key & 0xFFFFFFFF, HASH_TAB_BITS)]
        if index is None or dests[index].weight <= 0:
            return None
        return index


class SourceHashing(_HashTable):
    """``sh``: the bucket of the client address (no sh-port/sh-fallback flags)."""

    name = "sh"

    def __init__(self) -> None:
        super().__init__(by_weight=True)

    def schedule(self, dests: Sequence[Destination], flow: Flow) -> int | None:
        """``ip_vs_sh_schedule`` without flags: port 0 in the key."""
        return self.pick(dests, ipv4_int(flow.src))


class DestinationHashing(_HashTable):
    """``dh``: the bucket of the destination (virtual) address."""

    name = "dh"

    def __init__(self) -> None:
        super().__init__(by_weight=False)

    def schedule(self, dests: Sequence[Destination], flow: Flow) -> int | None:
        """``ip_vs_dh_schedule``."""
        return self.pick(dests, ipv4_int(flow.dst))


class MaglevHashing:
    """``mh``: the Maglev lookup table; kube-proxy sets the mh-port flag."""

    name = "mh"

    def __init__(self, use_port: bool = True) -> None:
        self.use_port = use_port
        self.lookup: list[int | None] = [None] * MH_TAB_SIZE

    def dests_changed(self, dests: Sequence[Destination], removed_index: int | None = None) -> None:
        """``ip_vs_mh_dest_changed``: gcd, shift, permutation, population."""
        g = 0
        for d in dests:
            if d.last_weight > 0:
                g = math.gcd(g, d.last_weight) if g else d.last_weight
        if g < 1:
            self.lookup = [None] * MH_TAB_SIZE
            return
        mw = max(d.last_weight for d in dests) // g
        rshift = max(mw.bit_length() - MH_TAB_BITS, 0)
        offsets, skips, turns = [], [], []
        for d in dests:
            key = ipv4_int(d.address) + d.port
            offsets.append(hsiphash_u32(key, MH_KEY1) % MH_TAB_SIZE)
            skips.append(hsiphash_u32(key, MH_KEY2) % (MH_TAB_SIZE - 1) + 1)
            t = (d.last_weight // g) >> rshift
            turns.append(t if t else int(d.last_weight != 0))
        perm = list(offsets)
        table: list[int | None] = [None] * MH_TAB_SIZE
        filled = 0
        while True:
            j = dt_count = 0
            while j < len(dests):
                if turns[j] < 1:
                    j += 1
                    continue
                c = perm[j]
                while table[c] is not None:
                    perm[j] += skips[j]
                    if perm[j] >= MH_TAB_SIZE:
                        perm[j] -= MH_TAB_SIZE
                    c = perm[j]
                table[c] = j
                filled += 1
                if filled == MH_TAB_SIZE:
                    self.lookup = table
                    return
                dt_count += 1
                if dt_count >= turns[j]:
                    dt_count = 0
                    j += 1

    def add_at_head(self) -> None:
        """Nothing: :meth:`dests_changed` follows and rebuilds the table."""

    def schedule(self, dests: Sequence[Destination], flow: Flow) -> int | None:
        """``ip_vs_mh_get`` (no fallback): the slot of hash(source address + port)."""
        port = flow.sport if self.use_port else 0
        slot = hsiphash_u32((ipv4_int(flow.src) + port) & 0xFFFFFFFF, MH_KEY1) % MH_TAB_SIZE
        index = self.lookup[slot]
        if index is None or dests[index].weight <= 0:
            return None
        return index


def make_scheduler(name: str) -> Scheduler:
    """A fresh scheduler instance for ``name``; ValueError for one not modelled."""
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
