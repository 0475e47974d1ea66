"""nf_tables' ``numgen random mod N``: the kernel's draw and each value's exact probability.

The kernel draws a uniform 32-bit random value ``r`` per packet that reaches the expression and
scales it with ``reciprocal_scale(r, N)`` = ``(u32)(((u64) r * N) >> 32)`` (linux
``include/linux/kernel.h``/``math.h``), then adds the offset: torvalds/linux
``net/netfilter/nft_numgen.c`` ``nft_ng_random_eval`` (read at @0d9932b2, where the draw is
``prandom_u32_state``; newer kernels name it ``nft_ng_random_gen`` and draw with
``get_random_u32()`` before adding ``priv->offset``). Value ``k`` therefore comes out for the
``r`` in ``[ceil(k * 2^32 / N), ceil((k + 1) * 2^32 / N))``: its probability is exactly
``count_k / 2^32`` - not ``1/N`` unless N is a power of two, and the counts differ by at most one.

Nothing here knows about Kubernetes.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Final

import numpy as np
import numpy.typing as npt

RANDOM_BITS: Final = 32
"""Bits of the kernel's draw (``get_random_u32``)."""
RANDOM_SCALE: Final = 1 << RANDOM_BITS
"""2^32: the number of equally likely draws."""
MODULUS_MAX: Final = RANDOM_SCALE - 1
"""``numgen``'s modulus is a u32 (``NFTA_NG_MODULUS``); 0 is refused with -ERANGE."""


def _check_modulus(modulus: int) -> int:
    if not 1 <= modulus <= MODULUS_MAX:
        raise ValueError(f"numgen modulus {modulus!r} is outside [1, 2^32)")
    return int(modulus)


def reciprocal_scale(value: int, modulus: int) -> int:
    """The kernel's ``reciprocal_scale``: ``(value * modulus) >> 32`` for a 32-bit ``value``."""
    if not 0 <= value < RANDOM_SCALE:
        raise ValueError(f"draw {value!r} is outside [0, 2^32)")
    return (value * _check_modulus(modulus)) >> RANDOM_BITS


def first_draw(k: int, modulus: int) -> int:
    """The smallest draw ``r`` with ``reciprocal_scale(r, modulus) == k``: ceil(k * 2^32 / N)."""
    return -((-k * RANDOM_SCALE) // _check_modulus(modulus))


def value_counts(modulus: int) -> tuple[int, ...]:
    """How many of the 2^32 draws give each value 0..N-1 (they sum to 2^32)."""
    modulus = _check_modulus(modulus)
    bounds = [first_draw(k, modulus) for k in range(modulus)] + [RANDOM_SCALE]
    return tuple(bounds[k + 1] - bounds[k] for k in range(modulus))


def value_probabilities(modulus: int) -> tuple[Fraction, ...]:
    """Each value's exact probability ``count / 2^32``."""
    return tuple(Fraction(count, RANDOM_SCALE) for count in value_counts(modulus))


def draw_u32(rng: np.random.Generator, size: int) -> npt.NDArray[np.uint32]:
    """Uniform 32-bit draws: the halves of the generator's raw 64-bit outputs.

    The same words :func:`svcsim.netfilter.statistic.draw_u31` masks to 31 bits.
    """
    if size < 0:
        raise ValueError(f"negative size {size!r}")
    raw = rng.bit_generator.random_raw((size + 1) // 2)
    return np.asarray(raw, dtype=np.uint64).view(np.uint32)[:size].copy()


def scale_many(draws: npt.NDArray[np.uint32], modulus: int) -> npt.NDArray[np.int64]:
    """``reciprocal_scale`` element-wise (the product fits 64 bits: both factors < 2^32)."""
    product = draws.astype(np.uint64) * np.uint64(_check_modulus(modulus))
    return np.asarray(product >> np.uint64(RANDOM_BITS), dtype=np.int64)


def u32_draws_from(rng: np.random.Generator, block: int = 256) -> Callable[[], int]:
    """A draw source over a numpy Generator: one ``get_random_u32()`` per call."""
    if block < 1:
        raise ValueError(f"block {block!r} must be positive")
    # An even block uses every word of the generator's 64-bit outputs, so the stream of draws
    # does not depend on the block size.
    size = block + (block & 1)
    buffer: list[int] = []

    def draw() -> int:
        if not buffer:
            buffer.extend(int(v) for v in draw_u32(rng, size)[::-1])
        return buffer.pop()

    return draw
