"""Keeping problem reports readable: the same problem is never printed thousands of times.

A scenario with 5,000 nodes can trip one check on most of them. Reports group problems by
their *shape* - the text with every number replaced by ``#`` - and show the first
:data:`SAME_SHAPE_SHOWN` of each shape in full; the next one carries how many more there
are, and the rest are left out. Every line shown is still a real problem at a real place.

:func:`collapse_located` works on ``(location, message)`` pairs before they become a
ValidationError (see :func:`svcsim.scenario.base.problems_at`); :func:`collapse_lines` on
finished ``file:line: field: message`` lines, as :class:`~svcsim.scenario.errors.ScenarioErrors`
holds them (both from :mod:`svcsim.k8s.errors`, the module of the problem-line format).
:func:`index_ranges` writes many list indexes as a few ranges.
"""

from __future__ import annotations

from collections.abc import Sequence

from svcsim.k8s.errors import SAME_SHAPE_SHOWN, collapse, more_like_this, shape_of
from svcsim.scenario.base import Loc


def collapse_located(
    found: Sequence[tuple[Loc, str]], shown: int = SAME_SHAPE_SHOWN
) -> list[tuple[Loc, str]]:
    """``(location, message)`` problems cut as :func:`collapse_lines` cuts lines.

    The shape covers the location too (list indexes are numbers), so ``nodes[7].ip`` and
    ``nodes[8].ip`` with the same message are one shape.
    """

    def shape(item: tuple[Loc, str]) -> str:
        loc, message = item
        return shape_of(repr(loc) + message)

    def noted(item: tuple[Loc, str], rest: int) -> tuple[Loc, str]:
        return item[0], item[1] + more_like_this(rest)

    return collapse(found, shape, noted, shown)


def index_ranges(indexes: Sequence[int], shown: int = SAME_SHAPE_SHOWN) -> str:
    """Sorted list indexes as ranges: ``[244..4999]``, ``[3, 5..9, 12 and 2 more ranges]``."""
    runs: list[tuple[int, int]] = []
    for i in sorted(indexes):
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    parts = [str(a) if a == b else f"{a}..{b}" for a, b in runs[:shown]]
    more = len(runs) - shown
    tail = f" and {more} more range{'s' if more != 1 else ''}" if more > 0 else ""
    return f"[{', '.join(parts)}{tail}]"
