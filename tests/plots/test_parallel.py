"""Figures drawn in forked workers: the bytes one process gives, whatever the split."""

from __future__ import annotations

import os

import pytest

from svcsim.plots.parallel import COST, draw_in_parallel, split
from svcsim.plots.save import FIGURES, render_all
from svcsim.results import Run
from tests.plots.synthetic import Spec, build_run

NAMES = [spec.name for spec in FIGURES]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Run:
    spec = Spec(services=(("web", 80),), duration_s=20.0)
    return build_run(tmp_path_factory.mktemp("parallel") / "run", spec)


@pytest.mark.parametrize(
    ("workers", "expected"),
    [
        (1, [NAMES]),
        # Costliest first to the least loaded (ties: the lower worker), each in FIGURES order.
        (2, [
            ["outcome_timeline", "endpoint_shares"],
            ["rule_staleness", "chain_check", "conntrack_usage"],
        ]),
        (3, [
            ["outcome_timeline"],
            ["chain_check"],
            ["endpoint_shares", "rule_staleness", "conntrack_usage"],
        ]),
        # More workers than figures: one figure each, no empty share.
        (9, [[n] for n in ["outcome_timeline", "chain_check", "endpoint_shares",
                           "conntrack_usage", "rule_staleness"]]),
    ],
)  # fmt: skip
def test_split(workers: int, expected: list[list[str]]) -> None:
    assert set(COST) == set(NAMES)
    got = split(NAMES, workers)
    assert sorted(n for share in got for n in share) == sorted(NAMES)
    assert sorted(got) == sorted(expected)


def test_parallel_figures_are_the_serial_bytes(small: Run) -> None:
    serial = render_all(small, jobs=1)
    assert list(serial) == NAMES
    assert render_all(small, jobs=3) == serial


def test_a_failed_worker_has_its_figures_drawn_here() -> None:
    parent = os.getpid()

    def draw(_run: object, name: str) -> bytes:
        if os.getpid() != parent:
            raise RuntimeError("a worker's failure")
        return name.encode()

    got = draw_in_parallel(None, NAMES, draw, jobs=3)  # type: ignore[arg-type]
    assert got == {n: n.encode() for n in NAMES}


def test_a_worker_that_dies_has_its_figures_drawn_here() -> None:
    parent = os.getpid()

    def draw(_run: object, name: str) -> bytes:
        if os.getpid() != parent:
            os._exit(3)  # killed: nothing sent
        return name.encode()

    got = draw_in_parallel(None, NAMES, draw, jobs=2)  # type: ignore[arg-type]
    assert list(got) == NAMES and got["chain_check"] == b"chain_check"


def test_jobs_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        draw_in_parallel(None, NAMES, lambda _r, n: b"", jobs=0)  # type: ignore[arg-type]
