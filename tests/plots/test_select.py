"""Per-Service figures of big runs: a bounded number of Services, none dropped silently."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from svcsim.cli.main import app
from svcsim.plots import chain_check, endpoint_shares, outcome_timeline
from svcsim.plots.events import services
from svcsim.plots.save import PER_SERVICE
from svcsim.plots.select import (
    MAX_NODE_ROWS,
    MAX_SERVICE_PANELS,
    SERVICE_OPTION,
    figure_notices,
    services_note,
    shown_nodes,
    shown_services,
)
from svcsim.results import Run
from tests.plots.synthetic import Spec, build_run

SERVICES = MAX_SERVICE_PANELS + 2


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A short synthetic run with more Services than the figures draw."""
    spec = Spec(
        services=tuple((f"svc{i:02d}", 80) for i in range(SERVICES)),
        pods_per_service=2,
        rate_per_s=40.0,
        duration_s=20.0,
    )
    return build_run(tmp_path_factory.mktemp("many") / "run", spec)


@pytest.mark.parametrize(
    ("count", "notable", "expected"),
    [
        (3, [], ["n0", "n1", "n2"]),
        (MAX_NODE_ROWS, ["n5"], [f"n{i}" for i in range(MAX_NODE_ROWS)]),
        # Notable nodes first, then the others by order, in their original order.
        (MAX_NODE_ROWS + 5, [f"n{MAX_NODE_ROWS + 4}"], [
            *(f"n{i}" for i in range(MAX_NODE_ROWS - 1)), f"n{MAX_NODE_ROWS + 4}",
        ]),
    ],
)  # fmt: skip
def test_shown_nodes(count: int, notable: list[str], expected: list[str]) -> None:
    names = [f"n{i}" for i in range(count)]
    shown = shown_nodes(names, notable)
    assert list(shown.shown) == expected
    assert shown.hidden == count - len(expected)


def test_services_with_most_failed_attempts_are_kept_in_name_order(many: Run) -> None:
    names = services(many)
    assert len(names) == SERVICES
    failed: dict[str, int] = {}
    for service, n in zip(many.windows["service"], many.windows["failed"], strict=True):
        failed[service] = failed.get(service, 0) + int(n)
    shown = shown_services(many, names)
    assert len(shown.shown) == MAX_SERVICE_PANELS and shown.hidden == 2
    assert list(shown.shown) == sorted(shown.shown)
    left_out = set(names) - set(shown.shown)
    assert max(failed.get(s, 0) for s in left_out) <= min(failed.get(s, 0) for s in shown.shown)
    assert shown_services(many, names[:3]).shown == tuple(names[:3])


@pytest.mark.parametrize("draw", [outcome_timeline, endpoint_shares, chain_check])
def test_capped_figures_say_so(many: Run, draw: object) -> None:
    fig = draw(many)  # type: ignore[operator]
    note = services_note(shown_services(many, services(many)))
    assert fig.get_suptitle() == note
    assert f"{MAX_SERVICE_PANELS} of {SERVICES} Services" in note and SERVICE_OPTION in note


def test_notices_name_the_caps(many: Run) -> None:
    (line,) = figure_notices(many, services(many))
    assert f"{MAX_SERVICE_PANELS} of {SERVICES} Services" in line
    assert SERVICE_OPTION in line


def test_plot_service_draws_one_service_and_refuses_unknown(many: Run, tmp_path: Path) -> None:
    runner = CliRunner()
    left_out = sorted(set(services(many)) - set(shown_services(many, services(many)).shown))
    result = runner.invoke(app, ["plot", str(many.path), "-o", str(tmp_path), "--service",
                                 left_out[0]])  # fmt: skip
    assert result.exit_code == 0, result.output
    slug = left_out[0].replace("/", "_").replace(":", "_")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{name}-{slug}.png" for name in PER_SERVICE
    )
    # kubectl's spelling: the namespace defaults to "default", no port means every port.
    short = left_out[0].removeprefix("default/").rpartition(":")[0]
    for path in tmp_path.iterdir():
        path.unlink()
    result = runner.invoke(app, ["plot", str(many.path), "-o", str(tmp_path), "--service",
                                 short])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(list(tmp_path.iterdir())) == len(PER_SERVICE)
    result = runner.invoke(app, ["plot", str(many.path), "-o", str(tmp_path), "--service",
                                 "default/nope:80"])  # fmt: skip
    assert result.exit_code == 2
    assert "default/nope:80: no requests to this Service port" in result.output
