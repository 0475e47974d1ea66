"""A reference union of intervals for the staleness tests: the plain loop, one at a time."""

from __future__ import annotations


def merged_by_loop(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Union of closed-open intervals, sorted; touching intervals join (one step per interval)."""
    out: list[tuple[float, float]] = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out
