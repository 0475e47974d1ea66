"""Shipped scenarios run by either traffic engine, cut short: for invariants over their records."""

from __future__ import annotations

from pathlib import Path

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from svcsim.scenario.build import EngineFactory, build_world
from svcsim.scenario.load import load_scenario

AFTER_FIRST_ACTION_S = 10.0
"""Simulated seconds kept after a scenario's first timeline action (or from 0 without one)."""

RECORD_KEY = ["t_s", "workload", "client", "attempt"]
"""Columns that identify an attempt in either engine's records."""


def shipped_requests(path: Path, engine: EngineFactory, *, seed: int = 1) -> pd.DataFrame:
    """The ``requests`` table of scenario ``path`` run by ``engine``, cut short.

    The run ends ``AFTER_FIRST_ACTION_S`` after the first timeline action (or the scenario's
    end, if sooner): the reference engine resolves every attempt on its own. Rows are sorted by
    :data:`RECORD_KEY` and categorical columns turned to strings, so two engines' tables compare.
    """
    loaded = load_scenario(path)
    first = min((action.at_s for action in loaded.scenario.timeline), default=0.0)
    world = build_world(loaded, seed, engine=engine)
    world.end_s = min(world.end_s, first + AFTER_FIRST_ACTION_S)
    world.run()
    requests: pd.DataFrame = world.recorder.frames()["requests"]
    requests = requests.sort_values(RECORD_KEY, kind="stable").reset_index(drop=True)
    categorical = [
        c for c in requests.columns if isinstance(requests[c].dtype, pd.CategoricalDtype)
    ]
    return requests.astype(dict.fromkeys(categorical, str))
