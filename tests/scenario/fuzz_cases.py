"""Seeded mutants of the shipped scenarios and example manifests, for the loader's fuzz test.

A :class:`Mutator` draws from a numpy Generator only, so a failing mutant is reproduced by
its name (``rolling-update.yaml#17``) and the seed of the test. Mutations are structured
(delete a key, swap a value's type, put in a huge or negative number, Unicode, control
characters, a long string) or textual (an unknown or unsupported tag, an alias bomb, an
undefined alias, a truncated file, a corrupt byte, a stray tab).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import yaml

from svcsim.scenario.durations import parse_duration

from .input_cases import BILLION_LAUGHS, HEAD

PROBLEM_LINE: Final = re.compile(r"^[^:\n]+:\d+: ")
"""What every problem line starts with: ``file:LINE: `` (docs/errors.md)."""

ROOT: Final = Path(__file__).resolve().parents[2]
SCENARIOS: Final = tuple(sorted((ROOT / "scenarios").glob("*.yaml")))
MANIFESTS: Final = tuple(sorted((ROOT / "examples").rglob("*.yaml")))

MANIFEST_SCENARIO: Final = HEAD + "cluster: {nodes: 2}\nmanifests:\n  - path: m.yaml\n"
"""The scenario a mutated manifest is loaded through (as ``m.yaml`` next to it)."""

SHORT_DURATION_S: Final = 2.0
MAX_RATE_PER_S: Final = 50
"""Bounds of a mutant that is run, not only loaded, so the fuzz test stays fast."""

INTERESTING: Final[tuple[Any, ...]] = (
    10**400,
    -(10**400),
    -1,
    -5,
    0,
    2**63,
    1e308,
    float("inf"),
    float("nan"),
    "",
    "x" * 5000,
    "a\nb",
    "\x1b[31mred",
    "\u202eevil",
    "caf\u00e9 \u2713",
    "1e400",
    "-5s",
    "9" * 400 + "h",
    "10.0.0.300",
    "web:99999",
    True,
    None,
    [],
    {},
    [1, "two"],
    {"a": {"b": 1}},
)

TAGS: Final = ("!custom ", "!!binary ", "!!set ", "!!python/object:os.system ", "!!timestamp ")

BOMB_BODY: Final = BILLION_LAUGHS.removeprefix(HEAD)


@dataclass(frozen=True, slots=True)
class Mutant:
    """One mutated input: the scenario's bytes and, if any, the manifest beside it."""

    name: str
    scenario: bytes
    manifest: bytes | None = None

    def write(self, folder: Path) -> Path:
        """Write the files into ``folder``; returns the scenario's path."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "s.yaml"
        path.write_bytes(self.scenario)
        if self.manifest is not None:
            (folder / "m.yaml").write_bytes(self.manifest)
        return path


class Mutator:
    """Draws mutants from seeded inputs; every choice comes from ``rng``."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def pick(self, items: Any) -> Any:
        return items[int(self.rng.integers(len(items)))]

    # --- structured -----------------------------------------------------------------------

    def value(self, data: Any, *, gentle: bool = False) -> Any:
        """``data`` with one node changed (a deep copy: ``data`` stays as it was).

        ``gentle`` changes keep the shape (drop an item or a key, duplicate an item, a
        small number for a number), so that many mutants still load and can be run.
        """
        copy = yaml.safe_load(yaml.safe_dump(data))
        slots = list(_slots(copy))
        if not slots:
            return self.pick(INTERESTING)
        holder, key = self.pick(slots)
        old = holder[key]
        if gentle:
            self.gentle(holder, key, old)
            return copy
        ops: list[Callable[[], None]] = [
            lambda: holder.pop(key),
            lambda: holder.__setitem__(key, self.pick(INTERESTING)),
            lambda: holder.__setitem__(key, self.pick(INTERESTING)),
            lambda: holder.__setitem__(key, str(old) if not isinstance(old, str) else [old]),
            lambda: holder.__setitem__(key, {"k": old}),
        ]
        if isinstance(holder, dict):
            renamed = self.pick([f"{key}x", str(key).upper(), f"{key}\n", f"{key}\x1b"])
            ops.append(lambda: holder.__setitem__(renamed, holder.pop(key)))
        self.pick(ops)()
        return copy

    def gentle(self, holder: Any, key: Any, old: Any) -> None:
        """A change of ``holder[key]`` that keeps the document's shape."""
        if isinstance(old, str) and self.rng.random() < 0.4:
            holder[key] = old + "2"  # a name nothing defines: a dangling reference
            return
        if isinstance(old, bool) or not isinstance(old, int | float):
            if isinstance(holder, list) and self.rng.random() < 0.5:
                holder.append(old)  # one more workload, action, node, port ...
            else:
                holder.pop(key)
            return
        holder[key] = self.pick([0, 1, 2, 3, 0.5, old * 2, max(old - 1, 0)])

    # --- textual --------------------------------------------------------------------------

    def text(self, data: bytes) -> bytes:
        """``data`` with one textual change (tags, aliases, truncation, bad bytes, tabs)."""
        lines = data.split(b"\n")
        at = int(self.rng.integers(len(lines)))
        line = lines[at]
        kind = int(self.rng.integers(8))
        if kind == 0 and b": " in line:  # a tag before a value
            lines[at] = line.replace(b": ", b": " + self.pick(TAGS).encode(), 1)
        elif kind == 1:
            return data + b"\n" + BOMB_BODY.encode()
        elif kind == 2 and b": " in line:
            lines[at] = line.split(b": ", 1)[0] + b": *undefined"
        elif kind == 3:
            return data[: int(self.rng.integers(len(data) + 1))]
        elif kind == 4 and data:
            pos = int(self.rng.integers(len(data)))
            byte = int(self.pick([0x00, 0x07, 0x1B, 0x80, 0xC3, 0xFE, 0xFF]))
            return data[:pos] + bytes([byte]) + data[pos + 1 :]
        elif kind == 5:
            lines[at] = b"\t" + line
        elif kind == 6:
            lines.insert(at, line)  # a duplicate key, or a duplicate item
        else:
            del lines[at]
        return b"\n".join(lines)

    # --- mutants --------------------------------------------------------------------------

    def scenario_mutant(self, path: Path, n: int) -> Mutant:
        """A mutant of the shipped scenario ``path``."""
        text = path.read_bytes()
        if self.rng.random() < 0.5:
            data = yaml.safe_load(text)
            return Mutant(f"{path.name}#{n}", _dump(self.value(data)))
        return Mutant(f"{path.name}#{n}", self.text(text))

    def manifest_mutant(self, path: Path, n: int) -> Mutant:
        """A mutant of the example manifest ``path``, loaded through a minimal scenario."""
        text = path.read_bytes()
        if self.rng.random() < 0.5:
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
            i = int(self.rng.integers(len(docs)))
            docs[i] = self.value(docs[i])
            changed = yaml.safe_dump_all(docs, allow_unicode=True, sort_keys=False).encode()
        else:
            changed = self.text(text)
        return Mutant(f"{path.relative_to(ROOT)}#{n}", MANIFEST_SCENARIO.encode(), changed)

    def runnable_mutant(self, path: Path, n: int) -> Mutant:
        """A structured mutant of a shortened scenario (:func:`shortened`), to be run."""
        data = shortened(yaml.safe_load(path.read_bytes()))
        return Mutant(f"{path.name}#{n}", _dump(self.value(data, gentle=True)))


def shortened(data: dict[str, Any]) -> dict[str, Any]:
    """A scenario cut to :data:`SHORT_DURATION_S`: its timeline scaled in, its rates capped."""
    out = dict(data)
    duration = parse_duration(out.get("duration", 60))
    scale = SHORT_DURATION_S / duration
    out["duration"] = f"{SHORT_DURATION_S:g}s"
    workloads = []
    for workload in out.get("workloads", []):
        if "rate" in workload:
            workload = {**workload, "rate": min(workload["rate"], MAX_RATE_PER_S)}
        if "rateSchedule" in workload:
            steps = [
                {"at": _scaled(step["at"], scale), "rate": min(step["rate"], MAX_RATE_PER_S)}
                for step in workload["rateSchedule"]
            ]
            workload = {**workload, "rateSchedule": steps}
        workloads.append(workload)
    out["workloads"] = workloads
    timeline = []
    for action in out.get("timeline", []):
        timeline.append({**action, "at": _scaled(action["at"], scale)})
    out["timeline"] = timeline
    return out


def _scaled(at: Any, scale: float) -> str:
    return f"{parse_duration(at) * scale:.3f}s"


def _slots(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) of ``value``: the places a structured mutation can hit."""
    found: list[tuple[Any, Any]] = []
    todo = [value]
    while todo:
        node = todo.pop()
        keys = list(node) if isinstance(node, dict) else range(len(node))
        for key in keys:
            found.append((node, key))
            if isinstance(node[key], dict | list):
                todo.append(node[key])
    return found if isinstance(value, dict | list) else []


def _dump(data: Any) -> bytes:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False).encode()
