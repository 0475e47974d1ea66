"""The record level failures-and-aggregates gives every shipped scenario the same results.

Every shipped run is re-recorded at that level (:func:`tests.results.levels.recount`, no new
simulation) and its summary and windows compared with the every-request run's; a few are
simulated at that level (the main loop's watermark, all proxy modes, DNS) and compared file by
file, figures included for one.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import svcsim.runs
from svcsim.explain import ExplainError, pick_request
from svcsim.plots import render_all
from svcsim.plots.view import figure_traffic, fold_view
from svcsim.results import Run, build_summary, endpoint_set_changes, stable_intervals
from svcsim.results.counted import CountedAttempts
from svcsim.results.fold import fold_traffic
from svcsim.results.load import endpoints_frame
from svcsim.results.schema import TABLES, RecordLevel, empty_frame
from svcsim.results.stats import node_intervals
from svcsim.results.weights import attempt_weights, traffic_table
from svcsim.results.windows import failure_windows
from svcsim.runs import run_scenario
from svcsim.scenario.load import load_scenario
from tests.results.levels import recount
from tests.scenarios.conftest import ShippedRun, scenario_path
from tests.scenarios.test_shipped import SHIPPED


def _view_only(views: dict[str, pd.DataFrame], name: str, run: Run) -> dict[str, bytes]:
    """In place of drawing a run's figures: keep the view of attempts they would read."""
    views[name] = figure_traffic(run)
    return {}


FOLD_ROWS = 997
"""Rows per batch when a test folds counted attempts: many batches, none aligned to anything."""

SIMULATED = ("proxy-modes", "rolling-update", "icmp-rate-limit", "dns-5s-delay")
"""Shipped scenarios also simulated at failures-and-aggregates: every proxy mode (userspace
and IPVS in flight included), a rollout with failures, attempts held back for seconds while
they retransmit their SYN (a rate-limited ICMP error), DNS lookups delayed by the race."""


def _untested(summary: dict) -> dict[str, str]:
    """The Services a run's summary says were not tested by design, with the reason."""
    out = {}
    for service, row in summary["uniformity"].items():
        reason = row["verdict"].removeprefix("not tested (").removesuffix(")")
        if row["verdict"].startswith("not tested") and reason != "no spread to test":
            out[service] = reason
    return out


@pytest.mark.parametrize("name", SHIPPED)
def test_counts_give_the_same_summary_and_windows(name: str, shipped_run: ShippedRun) -> None:
    run = shipped_run(name)
    span_s = float(run.manifest["duration_s"])
    counted = recount({t: getattr(run, t) for t in TABLES}, span_s)
    assert len(counted["requests"]) == run.summary["requests"]["failed"]
    assert int(attempt_weights(counted["request_counts"]).sum()) == len(run.requests)
    changes = endpoint_set_changes(counted["endpoint_sets"])
    intervals = stable_intervals(changes, end_s=span_s, per_node=True)
    windows = failure_windows(counted["requests"], traffic=traffic_table(counted))
    assert [w.to_dict() for w in windows] == run.windows.to_dict("records")
    summary = build_summary(
        counted, windows, seed=run.summary["seed"], intervals=intervals,
        untested=_untested(run.summary),
    )  # fmt: skip
    assert summary == run.summary
    # What `svcsim run` does with a streamed file: fold over batches (small ones here, so
    # every path of the fold crosses batch boundaries), the table never whole in memory.
    assert node_intervals(counted["endpoint_sets"], end_s=span_s).equals(intervals)
    folded = fold_traffic(
        CountedAttempts(counted["request_counts"]).batches(FOLD_ROWS),
        endpoint_sets=counted["endpoint_sets"],
        intervals=intervals,
        windows=failure_windows(counted["requests"], traffic=empty_frame("request_counts")),
    )
    assert [w.to_dict() for w in folded.windows] == run.windows.to_dict("records")
    frames = {t: f for t, f in counted.items() if t != "request_counts"}
    assert build_summary(
        frames, folded.windows, seed=run.summary["seed"], intervals=intervals,
        untested=_untested(run.summary), traffic=folded,
    ) == run.summary  # fmt: skip
    # A counted run loaded from its folder takes its endpoint table from the summary.
    pd.testing.assert_frame_equal(endpoints_frame(run.summary), run.endpoints)


@pytest.fixture(scope="module")
def counted_and_drawn(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, Run], dict[str, pd.DataFrame]]:
    """The :data:`SIMULATED` scenarios run at failures-and-aggregates (figures not drawn),
    and the view of its attempts each run handed to its figures."""
    root = tmp_path_factory.mktemp("counted")
    level = RecordLevel.FAILURES_AND_AGGREGATES
    out, views = {}, {}
    for name in SIMULATED:
        loaded = load_scenario(scenario_path(name))
        scenario = loaded.scenario.model_copy(update={"records": level})
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(svcsim.runs, "render_all", partial(_view_only, views, name))
            outcome = run_scenario(
                dataclasses.replace(loaded, scenario=scenario), out_dir=root / name
            )
        out[name] = outcome.run
    return out, views


@pytest.fixture(scope="module")
def counted_runs(
    counted_and_drawn: tuple[dict[str, Run], dict[str, pd.DataFrame]],
) -> dict[str, Run]:
    """The :data:`SIMULATED` scenarios run at failures-and-aggregates (figures off)."""
    return counted_and_drawn[0]


@pytest.mark.parametrize("name", SIMULATED)
def test_the_run_folds_the_figures_view_with_its_summary(
    name: str, counted_and_drawn: tuple[dict[str, Run], dict[str, pd.DataFrame]]
) -> None:
    """`svcsim run` folds the view in the summary's read of the counts: the view of the folder."""
    runs, views = counted_and_drawn
    pd.testing.assert_frame_equal(views[name], fold_view(runs[name]))


@pytest.mark.parametrize("name", SIMULATED)
def test_simulated_at_both_levels_same_folder_files(
    name: str, shipped_run: ShippedRun, counted_runs: dict[str, Run]
) -> None:
    every, counted = shipped_run(name), counted_runs[name]
    assert counted.manifest["records"] == "failures-and-aggregates"
    assert (counted.path / "request_counts.parquet").is_file()
    assert not (every.path / "request_counts.parquet").exists()
    for file in ("summary.json", "windows.json"):
        assert (counted.path / file).read_bytes() == (every.path / file).read_bytes()
    assert len(counted.requests) < len(every.requests)


def test_figures_are_the_same_at_both_levels(
    shipped_run: ShippedRun, counted_runs: dict[str, Run]
) -> None:
    name = "rolling-update"
    every, counted = render_all(shipped_run(name)), render_all(counted_runs[name])
    assert every.keys() == counted.keys()
    for figure, png in every.items():
        assert counted[figure] == png, figure


def test_counted_run_loads_without_reading_its_counts(counted_runs: dict[str, Run]) -> None:
    run = counted_runs["rolling-update"]
    path = run.path / "request_counts.parquet"
    assert run.counts.path == path
    assert len(run.counts) == pq.ParquetFile(path).metadata.num_rows > 0
    whole = run.counts.frame()
    pieces = list(run.counts.batches(FOLD_ROWS))
    assert sum(map(len, pieces)) == len(whole)
    assert run.counts.distinct("src_node") == {str(n) for n in whole["src_node"].unique()}


@pytest.mark.parametrize("name", SIMULATED)
def test_figure_view_is_the_same_in_small_batches(name: str, counted_runs: dict[str, Run]) -> None:
    run = counted_runs[name]
    view = figure_traffic(run)
    assert view.equals(fold_view(run, rows=FOLD_ROWS))
    assert int(view["requests"].sum()) == run.summary["requests"]["total"]
    assert len(view) <= len(run.counts)


def test_folds_of_rows_out_of_time_order_are_the_same(counted_runs: dict[str, Run]) -> None:
    """The folds take a fast path for rows in time order (the file's); shuffled, the same."""
    run = counted_runs["rolling-update"]
    shuffled = run.counts.frame().sample(frac=1.0, random_state=7).reset_index(drop=True)
    mixed = dataclasses.replace(run, counts=CountedAttempts(shuffled), memo={})
    assert fold_view(mixed, rows=FOLD_ROWS).equals(figure_traffic(run))
    span_s = float(run.manifest["duration_s"])
    intervals = node_intervals(run.endpoint_sets, end_s=span_s)
    windows = failure_windows(run.requests, traffic=empty_frame("request_counts"))
    folds = [
        fold_traffic(
            counts.batches(FOLD_ROWS),
            endpoint_sets=run.endpoint_sets,
            intervals=intervals,
            windows=windows,
        )
        for counts in (run.counts, CountedAttempts(shuffled))
    ]
    assert folds[0].uniformity is not None and folds[1].uniformity is not None
    pd.testing.assert_frame_equal(folds[0].uniformity, folds[1].uniformity)
    assert folds[0].by_outcome == folds[1].by_outcome
    assert [w.total for w in folds[0].windows] == [w.total for w in folds[1].windows]


def test_explain_numbers_attempts_alike_and_refuses_what_was_not_kept(
    shipped_run: ShippedRun, counted_runs: dict[str, Run]
) -> None:
    every, counted = shipped_run("rolling-update"), counted_runs["rolling-update"]
    row = pick_request(counted, request=None, first_failure=True, service=None)
    number = int(counted.requests["request"].iloc[row])
    assert number == pick_request(every, request=None, first_failure=True, service=None)
    for column in ("t_s", "client", "outcome", "cause"):
        assert counted.requests[column].iloc[row] == every.requests[column].iloc[number]
    assert pick_request(counted, request=number, first_failure=False, service=None) == row
    ok = int(np.flatnonzero(np.asarray(every.requests["outcome"] == "ok"))[0])
    with pytest.raises(ExplainError, match="keeps only failed attempts"):
        pick_request(counted, request=ok, first_failure=False, service=None)
