"""LazyTuple and LayeredMap behave as the tuple and dict they stand for."""

from __future__ import annotations

import pickle

from hypothesis import given
from hypothesis import strategies as st

from svcsim.netfilter import derived
from svcsim.netfilter.derived import LayeredMap, LazyTuple, as_tuple, differing, layered

_KEYS = st.integers(0, 40)
_STEP = st.tuples(st.dictionaries(_KEYS, st.integers()), st.lists(_KEYS, max_size=8))


def test_lazy_tuple_is_its_tuple() -> None:
    """Made once on first use; equal, hashing and slicing as the tuple; ``+`` stays lazy."""
    made: list[int] = []

    def make() -> tuple[int, ...]:
        made.append(1)
        return (1, 2, 3)

    lazy = LazyTuple(make)
    assert not made
    assert lazy == (1, 2, 3)
    assert (1, 2, 3) == lazy  # noqa: SIM300 -- the tuple on the left asks the lazy one
    assert hash(lazy) == hash((1, 2, 3))
    assert lazy[1:] == (2, 3) and lazy[-1] == 3 and len(lazy) == 3 and 2 in lazy
    assert made == [1]
    joined = (0,) + lazy + (4,)  # noqa: RUF005 -- what ``+`` gives is the point
    assert isinstance(joined, LazyTuple)
    assert joined == (0, 1, 2, 3, 4)
    assert lazy != (1, 2) and lazy != [1, 2, 3]
    assert pickle.loads(pickle.dumps(lazy)) == (1, 2, 3)
    assert as_tuple(lazy) is as_tuple(lazy) and as_tuple([5]) == (5,)


@given(st.dictionaries(_KEYS, st.integers()), st.lists(_STEP, max_size=30))
def test_layered_map_follows_a_dict(
    start: dict[int, int], steps: list[tuple[dict[int, int], list[int]]]
) -> None:
    """Each derived map equals the dict with the same removals, then sets, applied; the maps
    it was derived from do not change."""
    current = layered(dict(start))
    model = dict(start)
    history: list[tuple[LayeredMap[int, int], dict[int, int]]] = [(current, dict(model))]
    for changes, removed in steps:
        for key in removed:
            model.pop(key, None)
        model.update(changes)
        current = current.derive(changes, removed)
        history.append((current, dict(model)))
    for mapping, expected in history:
        assert mapping == expected
        assert dict(mapping) == expected
        assert len(mapping) == len(expected)
        for key in range(-1, 42):
            assert (key in mapping) == (key in expected)
            assert mapping.get(key) == expected.get(key)


def test_layered_map_folds_its_changes_into_a_base() -> None:
    """Changes stay over the shared base until they pass the fold size, then a new base."""
    base = {i: i for i in range(10 * derived.FOLD_MIN)}
    first = layered(base)
    small = first.derive({0: -1}, [1])
    assert small._base is base  # shared, not copied
    assert small == {**{i: i for i in base if i != 1}, 0: -1}
    big = small.derive({i: -i for i in range(2 * derived.FOLD_MIN)})
    assert big._base is not base and not big._set and not big._removed
    assert big[1] == -1 and big[2 * derived.FOLD_MIN] == 2 * derived.FOLD_MIN
    assert base == {i: i for i in range(10 * derived.FOLD_MIN)}  # never changed


def test_layered_map_iterates_in_the_order_given() -> None:
    """With an ``order``, iteration lists the keys in it (the table's chain order)."""
    mapping = layered({"a": 1, "b": 2}).derive({"c": 3, "a": 0}, ["b"], lambda: ["c", "a"])
    assert list(mapping) == ["c", "a"]
    assert list(mapping.items()) == [("c", 3), ("a", 0)]
    assert pickle.loads(pickle.dumps(mapping)) == {"a": 0, "c": 3}


def test_layered_map_reads_through_its_folded_dict_once_folded() -> None:
    """Once folded (len, iteration, a view), ``get`` and the views are the dict's own."""
    mapping = layered({"a": 1}).derive({"b": 2}, ["a"])
    assert mapping.get("a") is None and mapping.get("b") == 2 and mapping.get("a", 0) == 0
    assert mapping.keys() == {"b"}
    assert mapping.get == mapping.flat().get
    assert mapping.get("b") == 2 and mapping.get("a", 7) == 7
    assert dict(mapping.items()) == {"b": 2} and list(mapping.values()) == [2]


@given(st.lists(st.integers(0, 3), max_size=300), st.data())
def test_differing_finds_every_changed_position(items: list[int], data: st.DataObject) -> None:
    """Exactly the positions whose items differ, ascending, whatever the run sizes."""
    changed = list(items)
    for i in data.draw(st.lists(st.integers(0, max(len(items) - 1, 0)), max_size=20)):
        if items:
            changed[i] = data.draw(st.integers(0, 3))
    expected = [i for i, (a, b) in enumerate(zip(items, changed, strict=True)) if a != b]
    assert differing(tuple(items), tuple(changed)) == expected
