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


@settings(max_examples=150, deadline=None)
@given(_PODS, st.sampled_from(["default", "other", "none"]), st.lists(_PAIRS, max_size=3))
def test_select_is_the_walk(
    drawn: list[tuple[str, list[tuple[str, str]]]], ns: str, selector: list[tuple[str, str]]
) -> None:
    pods = _pods(drawn)
    walk = [p for p in pods if p.meta.namespace == ns and selector_matches(selector, p.meta.labels)]
    assert PodIndex(pods).select(ns, selector) == walk


def test_repeated_label_key_counts_with_its_last_value() -> None:
    pods = _pods([("default", [("app", "a"), ("app", "b")])])
    index = PodIndex(pods)
    assert index.select("default", [("app", "b")]) == pods
    assert index.select("default", [("app", "a")]) == []
    assert index.select("default", []) == pods
