"""Per-Service figures of big runs: a bounded number of Services, none dropped silently."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from svcsim.cli.main import app
from svcsim.plots import chain_check, endpoint_shares, outcome_timeline
from svcsim.plots.events import services
from svcsim.plots.save import PER_SERVICE
from svcsim.plots.select import (
    MAX_NODE_ROWS,
    MAX_POINTS_PER_NODE,
    MAX_SERVICE_PANELS,
    SERVICE_OPTION,
    figure_notices,
    peak_envelope,
    services_note,
    shown_nodes,
    shown_services,
)
from svcsim.results import Recorder, Run
from tests.plots.synthetic import Spec, build_run, mem_run

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


@pytest.mark.parametrize(
    ("t", "entries", "span_s", "bins", "starts", "peaks"),
    [
        # Bins of 2 s: [0, 2) holds 1 and 5, [2, 4) holds 3, [4, 6) none, [6, 8] holds 0 and 9.
        ([0.0, 1.0, 2.0, 7.0, 8.0], [1, 5, 3, 0, 9], 8.0, 4, [0.0, 2.0, 6.0], [5, 3, 9]),
        # One sample per bin: unchanged.
        ([0.0, 1.0, 2.0], [4, 2, 7], 3.0, 3, [0.0, 1.0, 2.0], [4, 2, 7]),
        # A sample at the very end falls in the last bin, not one past it.
        ([0.0, 9.99, 10.0], [1, 2, 3], 10.0, 2, [0.0, 5.0], [1, 3]),
    ],
)
def test_peak_envelope(
    t: list[float],
    entries: list[int],
    span_s: float,
    bins: int,
    starts: list[float],
    peaks: list[int],
) -> None:
    got_t, got_peaks = peak_envelope(np.array(t), np.array(entries), span_s, bins)
    assert got_t.tolist() == starts
    assert got_peaks.tolist() == peaks


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=300), st.integers(1, 50))
def test_peak_envelope_keeps_every_peak(entries: list[int], bins: int) -> None:
    """Every sample is at most its bin's peak, each peak is a sample, the largest is kept."""
    t = np.arange(len(entries), dtype=np.float64)
    values = np.array(entries, dtype=np.int64)
    starts, peaks = peak_envelope(t, values, float(len(entries)), bins)
    assert len(starts) <= bins and int(peaks.max()) == int(values.max())
    bin_of = np.searchsorted(starts, t, side="right") - 1
    assert (values <= peaks[bin_of]).all()
    assert all(int(p) in set(entries) for p in peaks)


def test_long_conntrack_series_are_drawn_as_peaks_and_noticed() -> None:
    """More samples per node than the cap: peaks per bin are drawn, and the notice says so."""
    from svcsim.plots.conntrack import conntrack_usage

    rec = Recorder()
    samples = MAX_POINTS_PER_NODE * 2 + 10
    for t in range(samples):
        rec.add_conntrack_samples(float(t), ["node-1", "node-2"], [t % 97, 3], [1000, 1000])
    run = mem_run(rec)
    (ax,) = conntrack_usage(run).axes[:1]
    drawn = [line for line in ax.get_lines() if len(line.get_xdata()) > 2]
    assert [len(line.get_xdata()) for line in drawn] == [MAX_POINTS_PER_NODE] * 2
    assert max(drawn[0].get_ydata()) == 96 and set(drawn[1].get_ydata()) == {3}
    (line,) = (n for n in figure_notices(run, []) if "conntrack_usage" in n)
    assert f"up to {samples:,} samples" in line
    assert f"({MAX_POINTS_PER_NODE:,} bins)" in line
    few = Recorder()
    few.add_conntrack_samples(0.0, ["node-1"], [1], [10])
    assert not [n for n in figure_notices(mem_run(few), []) if "conntrack" in n]


def _many_nodes_run(count: int, failed: str) -> Run:
    rec = Recorder()
    for i in range(1, count + 1):
        rec.add_sync(node=f"node-{i:02d}", start_s=1.0, end_s=1.5, full=True, ok=True,
                     rules_written=10)  # fmt: skip
    rec.add_sync(node=failed, start_s=5.0, end_s=5.5, full=False, ok=False, rules_written=10)
    return mem_run(rec, manifest={"duration_s": 100.0})


def test_staleness_rows_keep_failed_syncs_then_the_longest_stale() -> None:
    from svcsim.plots.staleness import staleness_rows

    names = [f"node-{i:02d}" for i in range(1, 31)]
    run = _many_nodes_run(30, failed="node-01")
    # node-i was stale for i seconds (in two pieces for node-05, which add up).
    rows = [(n, 10.0, 10.0 + i, "stale") for i, n in enumerate(names, start=1) if i != 5]
    rows += [("node-05", 10.0, 12.0, "stale"), ("node-05", 20.0, 60.0, "stale")]
    intervals = pd.DataFrame(rows, columns=["node", "start_s", "end_s", "reason"])
    shown = staleness_rows(run, names, intervals, 100.0)
    assert shown.total == 30 and len(shown.shown) == MAX_NODE_ROWS
    # The failed sync's node, node-05 (42 s), then node-30 down to node-09.
    assert shown.shown == ("node-01", "node-05", *names[8:])
    few = staleness_rows(run, names[:3], intervals, 100.0)
    assert few.shown == tuple(names[:3]) and not few.hidden


def test_rule_staleness_draws_at_most_the_cap_and_says_so() -> None:
    from svcsim.plots.staleness import rule_staleness

    run = _many_nodes_run(MAX_NODE_ROWS + 6, failed="node-03")
    fig = rule_staleness(run)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == MAX_NODE_ROWS and "node-03" in labels
    assert fig._suptitle is not None
    assert fig._suptitle.get_text().startswith(f"{MAX_NODE_ROWS} of {MAX_NODE_ROWS + 6} nodes")
    (line,) = (n for n in figure_notices(run, []) if "rule_staleness" in n)
    assert f"rule_staleness shows {MAX_NODE_ROWS} of {MAX_NODE_ROWS + 6} nodes" in line
