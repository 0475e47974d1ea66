"""The ``-m statistic --mode random`` match: iptables' encoding and the kernel's decision.

Three steps turn the text ``--probability 0.3333333333`` into a packet's fate:

1. iptables parses the text as a C ``double`` ``p`` in [0, 1] and stores the 32-bit integer
   ``lround(0x80000000 * p)`` (iptables ``extensions/libxt_statistic.c``, ``statistic_parse``).
   The kernel therefore holds a *threshold* in [0, 2^31], not a probability.
2. For every packet that reaches the rule, the kernel draws a fresh 32-bit random number, keeps
   its low 31 bits and matches iff that value is below the threshold
   (linux ``net/netfilter/xt_statistic.c``, ``statistic_mt``:
   ``(prandom_u32() & 0x7FFFFFFF) < info->u.random.probability``; newer kernels spell the
   generator ``get_random_u32()``, older ones ``net_random()``). The match probability is
   exactly ``threshold / 2^31``.
3. ``iptables-save`` prints the stored value back as ``"%.11f"`` of ``threshold / 0x80000000``
   (``print_match`` in libxt_statistic.c), which is why ``0.3333333333`` comes back as
   ``0.33333333349``.

Nothing here knows about Kubernetes; kube-proxy's side lives in :mod:`svcsim.proxy.probability`.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Final, overload

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# numpy is imported by the two functions that draw and decide on arrays: the rule writers
# (``svcsim rules``) only encode and print thresholds, and start ~0.1 s faster without it.

RANDOM_BITS: Final = 31
"""Bits of randomness the kernel compares: ``get_random_u32() & 0x7FFFFFFF``."""

THRESHOLD_SCALE: Final = 1 << RANDOM_BITS
"""``0x80000000``: the factor iptables multiplies the probability by, and the draw's range."""

_RANDOM_MASK: Final = THRESHOLD_SCALE - 1

# What glibc strtod accepts as a decimal number (after leading white space). Python's float()
# is more lenient (underscores, trailing blanks), so the text is checked first.
_C_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_C_HEX = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?\d+)?")


def parse_c_double(text: str) -> float:
    """Parse ``text`` the way xtables parses an ``XTTYPE_DOUBLE`` option (``strtod``).

    Leading white space is skipped and the whole rest must be a number: decimal or C99
    hexadecimal (``0x1p-1``), or ``inf``/``infinity``/``nan`` in any case. Decimal text is
    rounded to the nearest double, as glibc's strtod does (Python's ``float`` is correctly
    rounded too). Raises :class:`ValueError` naming the text otherwise.
    """
    body = text.lstrip(" \t\n\v\f\r")
    if _C_DECIMAL.fullmatch(body):
        return float(body)
    if _C_HEX.fullmatch(body):
        sign = -1.0 if body.startswith("-") else 1.0
        return sign * float.fromhex(body.lstrip("+-"))
    if body.lstrip("+-").lower() in ("inf", "infinity", "nan"):
        return float(body)
    raise ValueError(f"not a C double: {text!r}")


def _c_lround_nonnegative(x: float) -> int:
    """C ``lround`` for a finite ``x >= 0``: nearest integer, halves away from zero.

    ``floor(x + 0.5)`` would be wrong for values just below a half (the addition rounds), so
    the fractional part is compared exactly instead: ``x - floor(x)`` is exact in binary.
    """
    whole = math.floor(x)
    return whole + 1 if x - whole >= 0.5 else whole


def threshold_from_probability(p: float | str) -> int:
    """Return the 31-bit threshold iptables stores for ``--probability p``.

    ``lround(0x80000000 * p)`` with ``p`` parsed as a C double when given as text
    (libxt_statistic.c ``statistic_parse``). The product is exact in binary (a power-of-two
    scale), so the only rounding is lround's: to nearest, halves away from zero. The result lies
    in [0, 2^31]; ``p = 1`` stores 2^31, which every 31-bit draw is below.

    Raises :class:`ValueError` for text that is not a number, NaN, or ``p`` outside [0, 1]
    (iptables rejects those with "out of range").
    """
    value = parse_c_double(p) if isinstance(p, str) else float(p)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"probability {p!r} is outside [0, 1]")
    return _c_lround_nonnegative(THRESHOLD_SCALE * value)


def _check_threshold(threshold: int) -> int:
    if not 0 <= threshold <= THRESHOLD_SCALE:
        raise ValueError(f"threshold {threshold!r} is outside [0, 2^31]")
    return int(threshold)


def probability_from_threshold(threshold: int) -> float:
    """Return the exact match probability of a stored threshold: ``threshold / 2^31``.

    Exact as a float, because the threshold has at most 32 significant bits.
    """
    return _check_threshold(threshold) / THRESHOLD_SCALE


def format_saved_probability(threshold: int) -> str:
    """Format a threshold as ``iptables-save`` prints it: ``"%.11f"`` of ``t / 2^31``.

    The quotient is exact, and both glibc's printf and Python's ``%`` round the exact binary
    value to nearest with ties to even, so the text matches iptables byte for byte.
    """
    return "%.11f" % probability_from_threshold(threshold)  # noqa: UP031 - same spec as C


def draw_u31(rng: np.random.Generator, size: int | tuple[int, ...]) -> npt.NDArray[np.uint32]:
    """Draw the kernel's random values: uniform 32-bit integers with the top bit masked off.

    Mirrors ``get_random_u32() & 0x7FFFFFFF``: the result is uniform on [0, 2^31). The 32-bit
    words are the two halves of the generator's raw 64-bit outputs (what numpy's own ``uint32``
    draws use too), taken directly because this is the simulator's hottest loop.
    """
    import numpy as np

    shape = (size,) if isinstance(size, int) else tuple(size)
    count = math.prod(shape)
    if count < 0 or any(dim < 0 for dim in shape):
        raise ValueError(f"negative size {size!r}")
    raw = rng.bit_generator.random_raw((count + 1) // 2)
    words = np.asarray(raw, dtype=np.uint64).view(np.uint32)[:count]
    return np.bitwise_and(words, np.uint32(_RANDOM_MASK)).reshape(shape)


@overload
def matches(draw: int | np.integer, threshold: int) -> bool: ...


@overload
def matches(draw: npt.NDArray[np.uint32], threshold: int) -> npt.NDArray[np.bool_]: ...


def matches(
    draw: int | np.integer | npt.NDArray[np.uint32], threshold: int
) -> bool | npt.NDArray[np.bool_]:
    """Decide one rule as the kernel does: match iff the 31-bit draw is below the threshold.

    Works element-wise on arrays. A threshold of 2^31 still fits ``uint32`` and matches every
    draw; a threshold of 0 matches none.
    """
    limit = _check_threshold(threshold)
    if isinstance(draw, int):
        return draw < limit
    import numpy as np

    if isinstance(draw, np.ndarray):
        return draw < np.uint32(limit)
    return int(draw) < limit
