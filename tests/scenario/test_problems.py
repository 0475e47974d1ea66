"""Collapsing repeated problems: a few shown in full, one that counts the rest, order kept."""

from __future__ import annotations

import pytest

from svcsim.k8s.errors import collapse_lines, shape_of
from svcsim.scenario.errors import ScenarioErrors
from svcsim.scenario.problems import collapse_located, index_ranges


def _lines(n: int) -> list[str]:
    return [f"s.yaml:{10 + i}: timeline[{i}].node: unknown node 'n-{i}'" for i in range(n)]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param([], [], id="none"),
        pytest.param(_lines(4), _lines(4), id="four-are-all-shown"),
        pytest.param(
            _lines(5),
            [*_lines(4)[:3], _lines(4)[3] + " (and 1 more like this)"],
            id="five-keep-four",
        ),
        pytest.param(
            _lines(9500), [*_lines(3), _lines(4)[3] + " (and 9496 more like this)"], id="thousands"
        ),
        pytest.param(
            ["a.yaml:1: x: bad", *_lines(6), "a.yaml:2: y: bad"],
            [
                "a.yaml:1: x: bad",
                *_lines(3),
                _lines(4)[3] + " (and 2 more like this)",
                "a.yaml:2: y: bad",
            ],
            id="other-shapes-untouched-and-in-place",
        ),
    ],
)
def test_collapse_lines(lines: list[str], expected: list[str]) -> None:
    assert collapse_lines(lines) == expected


def test_collapse_located_counts_indexes_in_the_location_as_the_same_shape() -> None:
    found = [
        (("nodes", i, "ip"), f"duplicate node IP 10.0.0.1 (also nodes[{i - 1}])")
        for i in range(1, 8)
    ]
    out = collapse_located(found)
    assert out[:3] == found[:3]
    assert out[3] == (
        ("nodes", 4, "ip"),
        "duplicate node IP 10.0.0.1 (also nodes[3]) (and 3 more like this)",
    )
    assert len(out) == 4


def test_shape_ignores_numbers_only() -> None:
    assert shape_of("nodes[12].ip: 10.0.0.1 bad") == "nodes[#].ip: #.#.#.# bad"
    assert shape_of("a: x") != shape_of("a: y")


@pytest.mark.parametrize(
    ("indexes", "expected"),
    [
        pytest.param([4], "[4]", id="one"),
        pytest.param(list(range(244, 5000)), "[244..4999]", id="one-run"),
        pytest.param([0, 2, 3], "[0, 2..3]", id="gap"),
        pytest.param([9, 1, 5, 6, 7, 20, 30], "[1, 5..7, 9 and 2 more ranges]", id="many-runs"),
        pytest.param([1, 3, 5, 7], "[1, 3, 5 and 1 more range]", id="one-more"),
    ],
)
def test_index_ranges(indexes: list[int], expected: str) -> None:
    assert index_ranges(indexes) == expected


def test_scenario_errors_show_a_repeated_problem_a_few_times() -> None:
    lines = [f"s.yaml:{10 + i}: workloads[{i}].rate: must be > 0, got -5" for i in range(1000)]
    shown = ScenarioErrors(lines).problems
    assert shown == [*lines[:3], lines[3] + " (and 996 more like this)"]
