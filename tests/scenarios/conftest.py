"""Each shipped scenario is run once per test session (figures off) and shared by the tests.

Figures are drawn by :func:`svcsim.runs.run_scenario` through ``svcsim.runs.render_all``; they
cost several times the simulation itself, so the shared runs skip them and
``test_shipped.py`` draws them for a few scenarios only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import svcsim.runs
from svcsim.results import Run
from svcsim.runs import run_scenario
from svcsim.scenario.load import LoadedScenario

SCENARIOS_DIR = Path(__file__).resolve().parents[2] / "scenarios"
"""The repository's ``scenarios/`` folder."""


def scenario_path(name: str) -> Path:
    """The shipped scenario file called ``name`` (without ``.yaml``)."""
    return SCENARIOS_DIR / f"{name}.yaml"


def run_without_figures(
    path: Path | LoadedScenario, out_dir: Path, *, seed: int | None = None
) -> Run:
    """Run ``path`` (or a loaded scenario) into ``out_dir``, skipping the figures."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(svcsim.runs, "render_all", lambda run: {})
        return run_scenario(path, out_dir=out_dir, seed=seed).run


ShippedRun = Callable[[str], Run]


@pytest.fixture(scope="session")
def shipped_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShippedRun]:
    """``shipped_run(name)``: the loaded run folder of shipped scenario ``name`` (cached)."""
    cache: dict[str, Run] = {}
    root = tmp_path_factory.mktemp("shipped")

    def get(name: str) -> Run:
        if name not in cache:
            cache[name] = run_without_figures(scenario_path(name), root / name)
        return cache[name]

    yield get
