"""Scheduler.pick looks only at the nodes it passes over, and picks as the full walk does."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from svcsim.sim.scheduling import Scheduler
from tests.sim.scheduling_cases import reference_pick

_NODES = [f"node-{i}" for i in range(1, 8)]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["pick", "cordon", "uncordon", "taint", "untaint", "fill", "free"]),
            st.sampled_from(_NODES),
        ),
        max_size=30,
    )
)
def test_pick_is_the_round_robin_walk(steps: list[tuple[str, str]]) -> None:
    full: set[str] = set()
    scheduler = Scheduler(list(reversed(_NODES)), room=lambda node: node not in full)
    cordoned: set[str] = set()
    tainted: set[str] = set()
    last: str | None = None
    for action, node in steps:
        if action == "pick":
            expected = reference_pick(_NODES, last, cordoned, tainted, lambda n: n not in full)
            assert scheduler.pick() == expected
            last = expected if expected is not None else last
        elif action == "cordon":
            scheduler.cordon(node)
            cordoned.add(node)
        elif action == "uncordon":
            scheduler.uncordon(node)
            cordoned.discard(node)
        elif action == "taint":
            scheduler.taint(node)
            tainted.add(node)
        elif action == "untaint":
            scheduler.untaint(node)
            tainted.discard(node)
        elif action == "fill":
            full.add(node)
        else:
            full.discard(node)


def test_pick_looks_at_the_nodes_passed_over_only() -> None:
    looked: list[str] = []

    def room(node: str) -> bool:
        looked.append(node)
        return node != "node-3"

    scheduler = Scheduler(_NODES, room=room)
    assert [scheduler.pick() for _ in range(3)] == ["node-1", "node-2", "node-4"]
    assert looked == ["node-1", "node-2", "node-3", "node-4"]
