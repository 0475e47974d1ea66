"""Grid points, seed ranges and run folders of a sweep."""

from __future__ import annotations

from pathlib import Path

import pytest

from svcsim.scenario.overrides import parse_settings
from svcsim.sweep.grid import BASE_POINT, SeedsError, expand_grid, parse_seeds, run_folder


@pytest.mark.parametrize(
    ("text", "seeds"),
    [
        ("1-20", tuple(range(1, 21))),
        ("7", (7,)),
        ("0", (0,)),
        ("1,5,9", (1, 5, 9)),
        ("1-3,10-11", (1, 2, 3, 10, 11)),
        (" 4 - 5 , 9 ", (4, 5, 9)),
        ("5-5", (5,)),
        ("9,2", (9, 2)),
    ],
)
def test_seed_ranges(text: str, seeds: tuple[int, ...]) -> None:
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is not N or FIRST-LAST"),
        ("1,,2", "is not N or FIRST-LAST"),
        ("-3", "is not N or FIRST-LAST"),
        ("a-b", "is not N or FIRST-LAST"),
        ("5-1", "runs backwards"),
        ("1-3,2", "seed 2 listed twice"),
        ("0-100000", "more than 100,000 seeds"),
    ],
)
def test_bad_seed_texts_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(SeedsError, match=message):
        parse_seeds(text)


@pytest.mark.parametrize(
    ("sets", "points"),
    [
        ([], [{}]),
        (["a=1"], [{"a": "1"}]),
        (["a=1,2", "b=x,y"], [{"a": "1", "b": "x"}, {"a": "1", "b": "y"},
                              {"a": "2", "b": "x"}, {"a": "2", "b": "y"}]),
        (["b=[1,2],3"], [{"b": "[1,2]"}, {"b": "3"}]),
    ],
)  # fmt: skip
def test_the_grid_is_every_combination_first_key_slowest(
    sets: list[str], points: list[dict[str, str]]
) -> None:
    assert [p.labels() for p in expand_grid(parse_settings(sets))] == points


def test_run_folders_are_readable_and_unique(tmp_path: Path) -> None:
    points = expand_grid(
        parse_settings(["cluster.proxy.minSyncPeriod=0s,5s", "workloads[0].rate=1/2,1-2,[a,b]"])
    )
    names = [p.folder_name() for p in points]
    assert len(set(names)) == len(names)
    assert names[0].startswith("minSyncPeriod=0s_rate=1-2-")
    assert all("/" not in n and not n.startswith(".") for n in names)
    assert run_folder(tmp_path, points[0], 3) == tmp_path / "runs" / names[0] / "seed-3"
    assert expand_grid(())[0].folder_name() == BASE_POINT
