"""Grouping rows by several small integer codes at once: one sort of one key, not a lexsort.

The folds of a long run's counted attempts (:mod:`svcsim.results.fold`,
:mod:`svcsim.plots.view`) reduce every batch of rows to one row per combination of a few
coded columns (a span's rank, Service, endpoint, Pod, outcome, ``new_flow``). Sorting on
several keys is a pass per key; codes that are small packed into one ``int64`` (mixed radix,
the first column most significant) sort in one pass and give the same order. When the
product of the radices does not fit in 63 bits, :func:`runs_of` sorts on the columns
themselves instead (the same groups, in the same order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]

_KEY_LIMIT: Final = 1 << 62
"""The largest packed key (exclusive) :func:`packed_key` builds."""


def packed_key(columns: Sequence[npt.NDArray[np.integer]], sizes: Sequence[int]) -> I64 | None:
    """``columns`` (codes ``0 <= c < size``) packed into one int64 per row; None if too wide.

    The first column is the most significant: sorting the key sorts the rows by the columns
    in that order.
    """
    width = 1
    for size in sizes:
        width *= max(int(size), 1)
        if width >= _KEY_LIMIT:
            return None
    key = np.zeros(len(columns[0]) if columns else 0, dtype=np.int64)
    for codes, size in zip(columns, sizes, strict=True):
        key *= max(int(size), 1)
        key += codes
    return key


def runs_of(columns: Sequence[npt.NDArray[np.integer]], sizes: Sequence[int]) -> tuple[I64, I64]:
    """``(order, heads)``: rows sorted by ``columns``, and where each run of equal codes starts.

    ``order`` sorts the rows by the columns (the first most significant; codes
    ``0 <= c < size``), keeping rows of one run in their original order; ``heads`` are the
    positions in ``order`` where a run starts.
    """
    n = len(columns[0]) if columns else 0
    key = packed_key(columns, sizes)
    if key is not None:
        order: I64 = np.argsort(key, kind="stable")
        ordered = key[order]
        change = np.r_[True, ordered[1:] != ordered[:-1]] if n else np.zeros(0, dtype=np.bool_)
    else:
        order = np.lexsort(list(reversed(columns)))
        change = np.zeros(n, dtype=np.bool_)
        change[:1] = True
        for codes in columns:
            sorted_codes = codes[order]
            change[1:] |= sorted_codes[1:] != sorted_codes[:-1]
    heads: I64 = np.flatnonzero(change)
    return order, heads
