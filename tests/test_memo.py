"""BoundedMemo keeps at most its limit of entries and drops the oldest inserted first."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from svcsim.memo import BoundedMemo


def test_put_returns_value_and_get_finds_it() -> None:
    memo: BoundedMemo[str, int] = BoundedMemo("test", 2)
    assert memo.put("a", 1) == 1
    assert memo.get("a") == 1
    assert memo.get("b") is None


def test_full_memo_drops_oldest_inserted_not_least_recently_used() -> None:
    memo: BoundedMemo[str, int] = BoundedMemo("test", 2)
    memo.put("a", 1)
    memo.put("b", 2)
    assert memo.get("a") == 1  # a use does not refresh "a"
    memo.put("c", 3)
    assert (memo.get("a"), memo.get("b"), memo.get("c")) == (None, 2, 3)


@pytest.mark.parametrize("limit", [0, -1])
def test_limit_must_be_positive(limit: int) -> None:
    with pytest.raises(ValueError, match=f"got {limit}"):
        BoundedMemo("test", limit)


@given(st.integers(1, 8), st.lists(st.integers(0, 20), max_size=60))
def test_never_exceeds_limit_and_keeps_last_put(limit: int, keys: list[int]) -> None:
    memo: BoundedMemo[int, int] = BoundedMemo("test", limit)
    for i, key in enumerate(keys):
        memo.put(key, i)
        assert len(memo) <= limit
        assert memo.get(key) == i


def test_a_full_memo_drops_its_oldest_eighth_in_one_batch() -> None:
    memo: BoundedMemo[int, int] = BoundedMemo("test", 16)
    for key in range(16):
        memo.put(key, key)
    memo.put(16, 16)
    assert [memo.get(k) for k in (0, 1, 2)] == [None, None, 2]
    assert len(memo) == 15
    memo.put(2, 20)  # storing a key it holds drops nothing
    assert len(memo) == 15 and memo.get(2) == 20 and 2 in memo


def test_an_identity_keyed_entry_keeps_what_it_holds_until_it_is_dropped() -> None:
    memo: BoundedMemo[int, str] = BoundedMemo("test", 8)
    held = [object() for _ in range(9)]
    for i, obj in enumerate(held):
        memo.put(id(obj), f"v{i}", holds=obj)
    # Storing the ninth dropped the oldest (8 // 8 = 1 entry) and what it held.
    assert memo._held.keys() == memo._entries.keys()
    assert id(held[0]) not in memo._held and memo._held[id(held[8])] is held[8]
    memo.put(-1, "no holds")
    assert -1 not in memo._held and memo.get(-1) == "no holds"
