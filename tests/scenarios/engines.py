"""Shipped scenarios run by either traffic engine, cut short: for invariants over their records."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from svcsim.scenario.build import EngineFactory, build_world
from svcsim.scenario.load import LoadedScenario, load_scenario
from svcsim.scenario.proxy import ProxyMode

AFTER_FIRST_ACTION_S = 10.0
"""Simulated seconds kept after a scenario's first timeline action (or from 0 without one)."""

RECORD_KEY = ["t_s", "workload", "client", "attempt"]
"""Columns that identify an attempt in either engine's records."""


@functools.cache
def _loaded(path: Path) -> LoadedScenario:
    """A shipped scenario loaded once per session (loading 1,000 Services' YAML takes seconds)."""
    return load_scenario(path)


def with_proxy_mode(loaded: LoadedScenario, mode: ProxyMode) -> LoadedScenario:
    """``loaded`` with ``cluster.proxy.mode`` (and every node's override) set to ``mode``."""
    cluster = loaded.scenario.cluster
    proxy = cluster.proxy
    nodes = {n: o.model_copy(update={"mode": None}) for n, o in proxy.nodes.items()}
    proxy = proxy.model_copy(update={"mode": mode, "nodes": nodes})
    scenario = loaded.scenario.model_copy(
        update={"cluster": cluster.model_copy(update={"proxy": proxy})}
    )
    return dataclasses.replace(loaded, scenario=scenario)


def shipped_requests(
    path: Path, engine: EngineFactory, *, seed: int = 1, mode: ProxyMode | None = None
) -> pd.DataFrame:
    """The ``requests`` table of scenario ``path`` run by ``engine``, cut short.

    The run ends ``AFTER_FIRST_ACTION_S`` after the first timeline action (or the scenario's
    end, if sooner): the reference engine resolves every attempt on its own. Rows are sorted by
    :data:`RECORD_KEY` and categorical columns turned to strings, so two engines' tables compare.
    ``mode`` overrides the scenario's kube-proxy mode (:func:`with_proxy_mode`).
    """
    loaded = _loaded(path)
    if mode is not None:
        loaded = with_proxy_mode(loaded, mode)
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
