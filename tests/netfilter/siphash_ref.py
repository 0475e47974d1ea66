"""A plain, byte-oriented SipHash-c-d (Aumasson & Bernstein), to check the kernel-style one.

Written from the paper's description, independent of svcsim's ``hsiphash_u32``: any key
bytes, any message, any number of compression (c) and finalisation (d) rounds.
"""

from __future__ import annotations

_M = (1 << 64) - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _M


def siphash(key: bytes, message: bytes, c: int = 2, d: int = 4) -> int:
    """The 64-bit SipHash-c-d of ``message`` under the 16-byte ``key``."""
    k0 = int.from_bytes(key[:8], "little")
    k1 = int.from_bytes(key[8:16], "little")
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D, k0 ^ 0x6C7967656E657261,
         k1 ^ 0x7465646279746573]  # fmt: skip

    def rounds(n: int) -> None:
        for _ in range(n):
            v[0] = (v[0] + v[1]) & _M
            v[1] = _rotl(v[1], 13) ^ v[0]
            v[0] = _rotl(v[0], 32)
            v[2] = (v[2] + v[3]) & _M
            v[3] = _rotl(v[3], 16) ^ v[2]
            v[0] = (v[0] + v[3]) & _M
            v[3] = _rotl(v[3], 21) ^ v[0]
            v[2] = (v[2] + v[1]) & _M
            v[1] = _rotl(v[1], 17) ^ v[2]
            v[2] = _rotl(v[2], 32)

    tail = len(message) % 8
    for i in range(0, len(message) - tail, 8):
        m = int.from_bytes(message[i : i + 8], "little")
        v[3] ^= m
        rounds(c)
        v[0] ^= m
    b = ((len(message) & 0xFF) << 56) | int.from_bytes(message[len(message) - tail :], "little")
    v[3] ^= b
    rounds(c)
    v[0] ^= b
    v[2] ^= 0xFF
    rounds(d)
    return v[0] ^ v[1] ^ v[2] ^ v[3]
