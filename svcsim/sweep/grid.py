"""The runs of a sweep: grid points (one value per ``--set`` key) times seeds, and their folders.

The grid is the Cartesian product of the settings' values in the order given, the first key
varying slowest (``--set a=1,2 --set b=x,y`` gives a=1 b=x, a=1 b=y, a=2 b=x, a=2 b=y); every
point runs with every seed. Each run has its own folder ``<out>/runs/<point>/seed-<N>``,
``<point>`` naming the point's values (``minSyncPeriod=5s_rate=300``) and ending in a short hash
of its exact overrides, so two points never share a folder.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from svcsim.scenario.overrides import Override, Setting, combinations

RUNS_DIR: Final = "runs"
"""The folder under a sweep's ``--out`` that holds one folder per grid point."""

BASE_POINT: Final = "base"
"""The folder name of the only point of a sweep without ``--set`` (the scenario as written)."""

MAX_SEEDS: Final = 100_000
"""Most seeds one ``--seeds`` text may list (a typo like ``1-1000000000`` is refused)."""

_NAME_CHARS: Final = re.compile(r"[^A-Za-z0-9._=-]+")
_MAX_NAME_CHARS: Final = 80


class SeedsError(ValueError):
    """A ``--seeds`` text that cannot be read; the message is one line."""


@dataclass(frozen=True, slots=True)
class Point:
    """One grid point: one override per ``--set`` key, in the order the keys were given."""

    overrides: tuple[Override, ...]

    def labels(self) -> dict[str, str]:
        """``{key: value as written}``: the point's columns in the sweep's tables."""
        return {o.key: o.text for o in self.overrides}

    def folder_name(self) -> str:
        """A readable, unique folder name: the values by last key part, then a hash."""
        if not self.overrides:
            return BASE_POINT
        parts = []
        for o in self.overrides:
            last = next((p for p in reversed(o.path) if isinstance(p, str)), o.key)
            parts.append(f"{last}={o.text}")
        readable = _NAME_CHARS.sub("-", "_".join(parts))[:_MAX_NAME_CHARS].strip("-.")
        digest = hashlib.sha256("\n".join(map(str, self.overrides)).encode()).hexdigest()[:8]
        return f"{readable}-{digest}"

    def describe(self) -> str:
        """``key=value key=value`` (or ``the scenario as written``), for messages."""
        return " ".join(map(str, self.overrides)) or "the scenario as written"


def expand_grid(settings: Sequence[Setting]) -> tuple[Point, ...]:
    """Every combination of the settings' values, first setting varying slowest."""
    return tuple(Point(combo) for combo in combinations(settings))


def parse_seeds(text: str) -> tuple[int, ...]:
    """Seeds from ``1-20``, ``3``, ``1,5,9`` or ``1-5,10-12`` (ranges inclusive), in order.

    A seed listed twice, an empty item, a range running backwards or a negative number is a
    :class:`SeedsError`.
    """
    seeds: list[int] = []
    for item in text.split(","):
        item = item.strip()
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", item)
        if m is None:
            raise SeedsError(f"--seeds {text!r}: {item!r} is not N or FIRST-LAST (N >= 0)")
        first = int(m[1])
        last = int(m[2]) if m[2] is not None else first
        if last < first:
            raise SeedsError(f"--seeds {text!r}: range {item!r} runs backwards")
        if len(seeds) + last - first + 1 > MAX_SEEDS:
            raise SeedsError(f"--seeds {text!r}: more than {MAX_SEEDS:,} seeds")
        seeds.extend(range(first, last + 1))
    return checked_seeds(seeds)


def checked_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    """``seeds`` as a tuple; SeedsError if empty, negative or listing a seed twice."""
    if not seeds:
        raise SeedsError("no seeds to run")
    seen: set[int] = set()
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise SeedsError(f"seed {seed!r}: must be an integer >= 0")
        if seed in seen:
            raise SeedsError(f"seed {seed} listed twice")
        seen.add(seed)
    return tuple(seeds)


def run_folder(out: Path, point: Point, seed: int) -> Path:
    """Where the run of ``point`` with ``seed`` is written under the sweep's folder ``out``."""
    return out / RUNS_DIR / point.folder_name() / f"seed-{seed}"
