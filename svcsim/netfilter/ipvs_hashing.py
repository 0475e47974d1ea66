"""The hashing IPVS schedulers: sh, dh and mh, with the kernel's hash functions.

* sh and dh (net/netfilter/ipvs/ip_vs_sh.c, ip_vs_dh.c, the ``hash_32`` versions): a 256-bucket
  table filled in list order (sh repeats each destination ``weight`` times), indexed by
  ``hash_32(key, 8)`` (include/linux/hash.h, ``GOLDEN_RATIO_32``) of the source (sh; plus the
  source port only with the sh-port flag, which kube-proxy never sets) or destination address.
  Older kernels hashed ``key * 2654435761 & 255`` (ip_vs_sh.c @033d777f); this model follows the
  ``hash_32`` kernels (the v5.x line onwards).
* mh (ip_vs_mh.c @2cc2c3cb): the Maglev lookup table of 4093 slots (CONFIG_IP_VS_MH_TAB_INDEX
  12), offsets/skips from ``hsiphash`` (lib/siphash.c: SipHash-1-3 on 64-bit) with the fixed
  keys of ``generate_hash_secret``, turns from ``last_weight / gcd >> rshift``; the lookup
  hashes the source address plus, with the mh-port flag (kube-proxy's ``FlagSourceHash`` 0x10 =
  ``IP_VS_SVC_F_SCHED2``), the source port. A weight-0 destination keeps its slots
  (``last_weight``) and a packet hashed to one finds no destination (no mh-fallback flag).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

from svcsim.netfilter.ipvs_sched import Destination, Flow, ipv4_int

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
