"""PodIndex finds exactly the Pods a walk with selector_matches finds, in the same order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from svcsim.k8s.objects import ObjectMeta, Pod
from svcsim.k8s.selectors import PodIndex, selector_matches

_PAIRS = st.tuples(st.sampled_from(["app", "tier", "v"]), st.sampled_from(["a", "b", ""]))
_PODS = st.lists(
    st.tuples(st.sampled_from(["default", "other"]), st.lists(_PAIRS, max_size=4)),
    max_size=12,
)


def _pods(drawn: list[tuple[str, list[tuple[str, str]]]]) -> list[Pod]:
    # Labels as given (unsorted, a key may repeat: the last value counts).
    return [
        Pod(meta=ObjectMeta(f"p{i}", ns, tuple(labels))) for i, (ns, labels) in enumerate(drawn)
    ]


@settings(max_examples=80, deadline=None)
@given(_PODS, st.sampled_from(["default", "other", "none"]), st.lists(_PAIRS, max_size=3))
def test_select_is_the_walk(
    drawn: list[tuple[str, list[tuple[str, str]]]], ns: str, selector: list[tuple[str, str]]
) -> None:
    pods = _pods(drawn)
    walk = [p for p in pods if p.meta.namespace == ns and selector_matches(selector, p.meta.labels)]
    assert [pod for _, pod in PodIndex(enumerate(pods)).select(ns, selector)] == walk


def test_repeated_label_key_counts_with_its_last_value() -> None:
    pods = _pods([("default", [("app", "a"), ("app", "b")])])
    index = PodIndex(enumerate(pods))
    assert index.select("default", [("app", "b")]) == [(0, pods[0])]
    assert index.select("default", [("app", "a")]) == []
    assert index.select("default", []) == [(0, pods[0])]


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("abcd"), st.one_of(st.none(), _PODS.map(_pods))), max_size=8
    ),
    st.lists(_PAIRS, max_size=2),
)
def test_puts_and_drops_keep_the_index_as_the_set(
    steps: list[tuple[str, list[Pod] | None]], selector: list[tuple[str, str]]
) -> None:
    index = PodIndex()
    held: dict[str, Pod] = {}
    for key, pods in steps:
        if pods:  # put the first drawn Pod under key
            index.put(key, pods[0])
            held[key] = pods[0]
        else:
            index.drop(key)
            held.pop(key, None)
    for ns in ("default", "other"):
        walk = {
            k for k, p in held.items()
            if p.meta.namespace == ns and selector_matches(selector, p.meta.labels)
        }  # fmt: skip
        assert {k for k, _ in index.select(ns, selector)} == walk
