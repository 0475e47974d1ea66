"""Shared inputs for the scenario-reading tests: hostile YAML and a loader that returns lines."""

from __future__ import annotations

from pathlib import Path

from svcsim.scenario import ScenarioErrors, load_scenario

HEAD = "apiVersion: svcsim/v1\nkind: Scenario\n"
"""Lines 1-2 of a scenario: the cases below start on line 3."""


def _bomb(line: str) -> str:
    """Nine levels of nine aliases each: 9**9 (387 million) copies of ``a`` once expanded."""
    rows = [f"a: &a {line}"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        refs = ", ".join([f"*{prev}"] * 9)
        rows.append(
            f"{name}: &{name} [{refs}]"
            if line.startswith("[")
            else f"{name}: &{name} {{<<: [{refs}]}}"
        )
    return HEAD + "\n".join(rows) + "\n"


BILLION_LAUGHS = _bomb('["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]')
"""The classic alias bomb: a few hundred bytes of lists of aliases."""

MERGE_BOMB = _bomb("{a1: 1, a2: 2, a3: 3, a4: 4, a5: 5, a6: 6, a7: 7, a8: 8, a9: 9}")
"""The same through ``<<`` merge keys, which copy pairs rather than nodes."""


def problems_of(tmp_path: Path, data: bytes, name: str = "s.yaml") -> list[str]:
    """The problem lines of the scenario ``data`` (``[]`` if it loads), without ``tmp_path``."""
    path = tmp_path / name
    path.write_bytes(data)
    try:
        load_scenario(path)
    except ScenarioErrors as exc:
        return [p.replace(f"{tmp_path}/", "") for p in exc.problems]
    return []


__all__ = ["BILLION_LAUGHS", "HEAD", "MERGE_BOMB", "problems_of"]
