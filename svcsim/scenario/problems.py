"""Keeping problem reports readable: the same problem is never printed thousands of times.

A scenario with 5,000 nodes can trip one check on most of them. Reports group problems by
their *shape* - the text with every number replaced by ``#`` - and show the first
:data:`SAME_SHAPE_SHOWN` of each shape in full; the next one carries how many more there
are, and the rest are left out. Every line shown is still a real problem at a real place.

:func:`collapse_located` works on ``(location, message)`` pairs before they become a
ValidationError (see :func:`svcsim.scenario.base.problems_at`); :func:`collapse_lines` on
finished ``file:line: field: message`` lines, as :class:`~svcsim.scenario.errors.ScenarioErrors`
holds them. :func:`index_ranges` writes many list indexes as a few ranges.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Final, TypeVar

from svcsim.scenario.base import Loc

SAME_SHAPE_SHOWN: Final = 3
"""Problems of one shape shown in full; the next one says how many more there are."""

_NUMBER: Final = re.compile(r"\d+")

_Item = TypeVar("_Item")


def shape_of(text: str) -> str:
    """``text`` with every run of digits replaced by ``#``: problems that differ only there."""
    return _NUMBER.sub("#", text)


def _collapse(
    items: Sequence[_Item],
    shape: Callable[[_Item], str],
    noted: Callable[[_Item, int], _Item],
    shown: int,
) -> list[_Item]:
    totals = Counter(shape(item) for item in items)
    seen: Counter[str] = Counter()
    out: list[_Item] = []
    for item in items:
        key = shape(item)
        seen[key] += 1
        if seen[key] <= shown:
            out.append(item)
        elif seen[key] == shown + 1:
            rest = totals[key] - shown - 1
            out.append(noted(item, rest) if rest else item)
    return out


def _more(rest: int) -> str:
    return f" (and {rest} more like this)"


def collapse_lines(lines: Sequence[str], shown: int = SAME_SHAPE_SHOWN) -> list[str]:
    """Problem lines with each shape cut to ``shown`` lines plus one that counts the rest.

    Order is kept; lines that appear fewer than ``shown + 2`` times are all kept.
    """
    return _collapse(lines, shape_of, lambda line, rest: line + _more(rest), shown)


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

    return _collapse(found, shape, lambda item, rest: (item[0], item[1] + _more(rest)), shown)


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
