"""Tests for svcsim.results.keyed: one packed key groups rows as a sort on every column does."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcsim.results.keyed import packed_key, runs_of


@pytest.mark.parametrize(
    ("sizes", "fits"),
    [
        ([3, 4, 2], True),
        ([1 << 20, 1 << 20, 1 << 21], True),  # 61 bits
        ([1 << 31, 1 << 31], False),  # 62 bits: past the limit
        ([0, 5], True),  # an empty vocabulary counts as one code
    ],
)
def test_packed_key_fits_or_says_so(sizes: list[int], fits: bool) -> None:
    columns = [np.zeros(3, dtype=np.int64) for _ in sizes]
    assert (packed_key(columns, sizes) is not None) == fits


def test_packed_key_orders_by_the_first_column_first() -> None:
    key = packed_key([np.asarray([1, 0, 1]), np.asarray([0, 2, 1])], [2, 3])
    assert key is not None
    assert key.tolist() == [3, 2, 4]


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(0, 4)), max_size=40),
    wide=st.booleans(),
)
def test_runs_of_groups_rows_like_a_sort_on_every_column(
    rows: list[tuple[int, int, int]], wide: bool
) -> None:
    columns = [np.asarray([r[i] for r in rows], dtype=np.int64) for i in range(3)]
    # Sizes past 63 bits take the fallback (a sort on the columns): the same answer.
    sizes = [1 << 40, 1 << 40, 5] if wide else [4, 3, 5]
    order, heads = runs_of(columns, sizes)
    assert sorted(order.tolist()) == list(range(len(rows)))
    ordered = [rows[i] for i in order.tolist()]
    assert ordered == sorted(rows)
    assert heads.tolist() == [i for i in range(len(rows)) if i == 0 or ordered[i] != ordered[i - 1]]
    # Rows of one run keep their order (stable).
    for lo, hi in zip(heads.tolist(), [*heads.tolist()[1:], len(rows)][: len(heads)], strict=True):
        assert order[lo:hi].tolist() == sorted(order[lo:hi].tolist())
