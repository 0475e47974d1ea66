"""Two Worlds in one process share nothing mutable (DESIGN.md decision 8), as sweeps rely on.

One module-scoped sequence of short runs: World B alone (a fresh process's view of it: no World
before it), then World A (another scenario and proxy mode), then World B again. B's records
must be the same both times, A and the second B must reach no mutable object in common (the
run's caches above all), and running B again must leave svcsim's module-level state as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pytest

from svcsim.memo import BoundedMemo
from svcsim.scenario.build import build_world
from svcsim.scenario.load import load_scenario
from svcsim.scenario.world import World
from svcsim.sim.caches import RunCaches
from tests.scenario.sharing import (
    describe,
    memos_at_module_level,
    module_state,
    mutable_objects,
    reachable,
)
from tests.scenarios.conftest import scenario_path
from tests.scenarios.engines import RECORD_KEY, with_proxy_mode

RUN_S = 20.0
"""Simulated seconds of each run (past stale-rules' inject at 10 s, proxy-modes' scale-up is
later: its rules still change with Pods starting)."""


def _run(name: str, seed: int, mode: str | None = None) -> tuple[World, pd.DataFrame]:
    loaded = load_scenario(scenario_path(name))
    if mode is not None:
        loaded = with_proxy_mode(loaded, mode)  # type: ignore[arg-type]
    world = build_world(loaded, seed)
    world.end_s = min(world.end_s, RUN_S)
    world.run()
    requests: pd.DataFrame = world.recorder.frames()["requests"]
    return world, requests.sort_values(RECORD_KEY, kind="stable").reset_index(drop=True)


@dataclass
class Runs:
    """The sequence of runs and what was seen between them."""

    b_alone: pd.DataFrame
    a: World
    b: World
    b_again: pd.DataFrame
    state_after_a: dict[str, int]
    state_after_b: dict[str, int]


@pytest.fixture(scope="module")
def runs() -> Runs:
    _, b_alone = _run("proxy-modes", 2, "nftables")
    a, _ = _run("stale-rules", 1)
    state_after_a = module_state()
    b, b_again = _run("proxy-modes", 2, "nftables")
    return Runs(b_alone, a, b, b_again, state_after_a, module_state())


def test_a_world_after_another_gives_what_it_gives_alone(runs: Runs) -> None:
    assert len(runs.b_again) > 1000
    pd.testing.assert_frame_equal(runs.b_again, runs.b_alone)


def test_two_worlds_reach_no_mutable_object_in_common(runs: Runs) -> None:
    a, b = reachable(runs.a), reachable(runs.b)
    shared = mutable_objects({k: a[k] for k in a.keys() & b.keys()})
    assert not shared, "\n".join(sorted(describe(obj) for obj in shared.values())[:20])


def _memos(caches: object) -> list[BoundedMemo[object, object]]:
    """Every memo among the fields of an owner, and of the owners among its fields."""
    found = []
    for f in fields(caches):  # type: ignore[arg-type]
        value = getattr(caches, f.name)
        if isinstance(value, BoundedMemo):
            found.append(value)
        elif hasattr(value, "__dataclass_fields__"):
            found += _memos(value)
        else:  # NameMemo, ParseMemo: their memos are slots
            found += [getattr(value, s) for s in value.__slots__]
    return found


def test_each_world_owns_its_caches_and_they_were_used(runs: Runs) -> None:
    a, b = runs.a.caches, runs.b.caches
    assert isinstance(a, RunCaches) and a is not b
    memos_a, memos_b = _memos(a), _memos(b)
    assert len(memos_a) == len(memos_b) >= 20
    assert not {id(m) for m in memos_a} & {id(m) for m in memos_b}
    for world in (runs.a, runs.b):
        assert all(p.caches is world.caches for p in world.proxies.values())
    # Each run's own mode filled its memos: A's iptables syncs, B's nftables ones.
    assert len(a.sync_plans) > 0 and len(a.compile.interner.rulesets) > 0
    assert len(b.nft_chains.chains) > 0 and len(b.sync_plans) == 0


def test_running_a_world_again_leaves_module_state_as_it_was(runs: Runs) -> None:
    changed = {
        name: (size, runs.state_after_b.get(name))
        for name, size in runs.state_after_a.items()
        if runs.state_after_b.get(name) != size
    }
    assert not changed
    assert list(memos_at_module_level()) == []
    assert all(size >= 0 for size in runs.state_after_b.values()), [
        name for name, size in runs.state_after_b.items() if size < 0
    ]


def test_the_walk_finds_caches_that_two_worlds_would_share(monkeypatch: pytest.MonkeyPatch) -> None:
    # The check above could pass by not looking: one RunCaches handed to both Worlds is found.
    one = RunCaches()
    monkeypatch.setattr("svcsim.scenario.world.RunCaches", lambda: one)
    a, _ = _run("stale-rules", 1)
    b, _ = _run("stale-rules", 2)
    in_a, in_b = reachable(a), reachable(b)
    shared = mutable_objects({k: v for k, v in in_a.items() if k in in_b})
    assert any(obj is one.sync_plans for obj in shared.values())
    assert sum(isinstance(obj, BoundedMemo) for obj in shared.values()) >= 20
