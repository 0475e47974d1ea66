"""Cohorts in a built world: who shares a life, and the run is the same without them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from svcsim.scenario.build import build_world
from svcsim.scenario.load import load_scenario
from svcsim.scenario.world import World
from tests.scenario.cohort_cases import (
    FAULTS,
    NODE_DEPENDENT,
    NONE,
    extra_service,
    scenario_yaml,
)


def _world(tmp: Path, text: str, *, cohorts: bool) -> World:
    path = tmp / "cohorts.yaml"
    path.write_text(text)
    return build_world(load_scenario(path), 3, cohorts=cohorts)


def _sharing(world: World) -> list[list[str]]:
    """The nodes of each life, in node order (a run of one: a node on its own)."""
    groups: dict[int, list[str]] = {}
    for node, proxy in world.proxies.items():
        groups.setdefault(id(proxy.runner), []).append(node)
    return list(groups.values())


@pytest.fixture(scope="module")
def faulted(tmp_path_factory: pytest.TempPathFactory) -> tuple[World, World, list[list[str]]]:
    """The faulted scenario run with and without cohorts, and who shared at the start."""
    tmp = tmp_path_factory.mktemp("cohorts")
    shared = _world(tmp, scenario_yaml(FAULTS), cohorts=True)
    at_start = _sharing(shared)
    alone = _world(tmp, scenario_yaml(FAULTS), cohorts=False)
    for world in (shared, alone):
        world.run()
    return shared, alone, at_start


def test_nodes_faulted_alone_run_alone_and_the_others_share_in_runs(
    faulted: tuple[World, World, list[list[str]]],
) -> None:
    _, _, at_start = faulted
    # block-sync, partition-node and inject-stale-rule name node-5, -6 and -7; crash, restart,
    # fail-node and taint do not keep a node out (the first three make it leave later).
    assert at_start == [
        ["node-1", "node-2", "node-3", "node-4"],
        ["node-5"],
        ["node-6"],
        ["node-7"],
        ["node-8", "node-9", "node-10"],
    ]


def test_members_left_as_they_were_faulted(faulted: tuple[World, World, list[list[str]]]) -> None:
    shared, _, _ = faulted
    # node-1 failed (then booted), node-2 and node-4 crashed and restarted: each lives alone,
    # node-3 is the last of its cohort; the tainted node-8 still shares with node-9 and -10.
    assert _sharing(shared) == [
        ["node-1"],
        ["node-2"],
        ["node-3"],
        ["node-4"],
        ["node-5"],
        ["node-6"],
        ["node-7"],
        ["node-8", "node-9", "node-10"],
    ]


def test_the_run_is_the_same_without_cohorts(
    faulted: tuple[World, World, list[list[str]]],
) -> None:
    shared, alone, _ = faulted
    mine, theirs = shared.recorder.frames(), alone.recorder.frames()
    assert mine.keys() == theirs.keys()
    for name, frame in mine.items():
        pd.testing.assert_frame_equal(frame, theirs[name], obj=name)
    assert len(mine["syncs"]) > 50
    for node, proxy in shared.proxies.items():
        other = alone.proxies[node]
        assert proxy.kernel.ruleset == other.kernel.ruleset, node
        assert proxy.metrics == other.metrics, node
        assert shared.proxy_state(node) == alone.proxy_state(node), node


@pytest.mark.parametrize(
    ("spec", "cohorts", "lives"),
    [
        ("", True, 1),
        ("        type: NodePort\n", True, 1),
        ("", False, 10),
        *((spec, True, 10) for spec in NODE_DEPENDENT.values()),
    ],
    ids=["alike", "nodeport", "cohorts-off", *NODE_DEPENDENT],
)
def test_who_shares(tmp_path: Path, spec: str, cohorts: bool, lives: int) -> None:
    text = scenario_yaml(NONE, extra_service=extra_service(spec))
    world = _world(tmp_path, text, cohorts=cohorts)
    assert len(_sharing(world)) == lives
