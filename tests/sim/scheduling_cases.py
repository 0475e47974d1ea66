"""The scheduler's round robin as first written (a walk over every node), for comparison."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def reference_pick(
    nodes: Sequence[str],
    last: str | None,
    cordoned: set[str],
    tainted: set[str],
    room: Callable[[str], bool],
) -> str | None:
    """The first schedulable node after ``last`` in name order, wrapping; None if none is."""
    ok = [n for n in sorted(nodes) if n not in cordoned and n not in tainted and room(n)]
    if not ok:
        return None
    after = [n for n in ok if last is None or n > last]
    return after[0] if after else ok[0]
