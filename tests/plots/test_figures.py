"""Each figure, drawn from synthetic runs: titles, units, panels, and the data they show."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import StepPatch

from svcsim.plots import (
    FIGURES,
    chain_check,
    clopper_pearson,
    conntrack_usage,
    endpoint_set_checks,
    endpoint_shares,
    outcome_timeline,
    rule_staleness,
    stable_windows,
)
from svcsim.plots.staleness import merge_intervals
from svcsim.plots.style import OUTCOME_COLOURS, TIME_LABEL, run_span_s, time_bin_s
from svcsim.results import Recorder, Run
from tests.plots.conftest import RunFactory
from tests.plots.synthetic import Spec, mem_run

WEB = "default/web:80"
API = "default/api:8080"


def _axes(fig: Figure) -> list[Axes]:
    """Every axes of a figure, subfigures included, in drawing order (no secondary axes)."""
    return list(fig.get_axes())


def _legend_labels(ax: Axes) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend is not None else []


def _texts(ax: Axes) -> list[str]:
    return [t.get_text() for t in ax.texts if t.get_visible()]


# --- every figure on every kind of run ------------------------------------------------------


@pytest.mark.parametrize("spec", FIGURES, ids=lambda s: s.name)
def test_every_figure_draws_with_titles_and_time_units(spec: object, any_run: Run) -> None:
    draw: Callable[[Run], Figure] = spec.draw  # type: ignore[attr-defined]
    fig = draw(any_run)
    axes = _axes(fig)
    assert axes
    titles = [ax.get_title() for ax in axes if ax.get_title()]
    assert titles, "every figure has titled axes"
    xlabels = {ax.get_xlabel() for ax in axes if ax.get_xlabel()}
    if spec.name != "chain_check":  # type: ignore[attr-defined]
        assert xlabels == {TIME_LABEL}
        assert "(s)" in TIME_LABEL


# --- outcome timeline -----------------------------------------------------------------------


def test_timeline_has_two_axes_per_service_and_shades_windows(rolling_run: Run) -> None:
    fig = outcome_timeline(rolling_run)
    axes = _axes(fig)
    assert len(axes) == 4  # (main, strip) per Service
    mains = {ax.get_title().split(":")[0] + ":" + ax.get_title().split(":")[1]: ax
             for ax in axes if ax.get_title()}  # fmt: skip
    assert set(mains) == {WEB, API}
    web, api = mains[WEB], mains[API]
    assert "requests per second" in web.get_ylabel()
    mine = rolling_run.windows.loc[rolling_run.windows["service"] == WEB]
    # Three rollout steps, each seen from all three nodes. A window may be cut where a node
    # sent no failing request for a while (node-3's kube-proxy outage through the third step).
    steps = [(17.0, 20.0), (27.0, 30.0), (37.0, 46.0)]
    in_step = [(mine["start_s"] >= lo) & (mine["end_s"] <= hi) for lo, hi in steps]
    assert sum(int(s.sum()) for s in in_step) == len(mine)
    assert all(set(mine.loc[s, "node"]) == {"node-1", "node-2", "node-3"} for s in in_step)
    # Shaded at least one rate bin wide, so a single-failure window stays visible.
    shaded_end = np.maximum(mine["end_s"], mine["start_s"] + time_bin_s(run_span_s(rolling_run)))
    bursts = merge_intervals(list(zip(mine["start_s"], shaded_end, strict=True)))
    assert 3 <= len(bursts) <= 6
    (shading,) = _shading(web)
    spans = [(p.vertices[:, 0].min(), p.vertices[:, 0].max()) for p in shading.get_paths()]
    assert np.allclose(spans, bursts)
    assert _shading(api) == []
    labels = " ".join(_texts(web))
    assert "proxy-down @ node-3" in labels
    assert "stale-rule @ node-" in labels
    legend = _legend_labels(web)
    assert any(label.startswith("timeout (") for label in legend)
    assert "failure window" in legend
    assert "kube-proxy crash" in legend and "kube-proxy restart" in legend


def test_timeline_bands_add_up_to_the_requests(rolling_run: Run) -> None:
    fig = outcome_timeline(rolling_run, service=WEB)
    main, strip = _axes(fig)
    assert strip.get_xlabel() == TIME_LABEL
    bands = [p for p in main.patches if isinstance(p, StepPatch)]
    by_colour = {tuple(np.round(b.get_facecolor()[:3], 3)): b for b in bands}
    assert len(by_colour) == len(bands) == 3  # ok, refused, timeout
    span = 60.0
    bin_s = time_bin_s(span)
    total = 0.0
    for band in bands:
        data = band.get_data()
        heights = np.asarray(data.values) - np.asarray(data.baseline)
        total += float(heights.sum()) * bin_s
    assert math.isclose(total, int((rolling_run.requests["service"] == WEB).sum()), rel_tol=1e-9)
    ok_colour = OUTCOME_COLOURS["ok"]
    assert any(np.allclose(b.get_facecolor()[:3], _rgb(ok_colour)) for b in bands), (
        "ok keeps its colour"
    )
    rows = [t.get_text() for t in strip.get_yticklabels()]
    assert rows == ["Pods", "EndpointSlice", "node-1", "node-2", "node-3"]
    # kube-proxy down on node-3 is drawn as a hatched bar in its row
    bars = [c for c in strip.collections if isinstance(c, PolyCollection)]
    assert len(bars) == 1 and bars[0].get_hatch()


def _shading(ax: Axes) -> list[PolyCollection]:
    return [c for c in ax.collections if c.get_label() == "failure window"]


def _rgb(colour: str) -> tuple[float, float, float]:
    return tuple(int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))  # type: ignore[return-value]


def test_timeline_without_failures_has_no_shading(quiet_run: Run) -> None:
    for ax in _axes(outcome_timeline(quiet_run)):
        assert _shading(ax) == []
        assert not [t for t in _texts(ax) if " @ " in t]
        assert "kube-proxy crash" not in _legend_labels(ax)


def test_timeline_of_a_run_without_requests_keeps_the_control_plane(empty_run: Run) -> None:
    main, strip = _axes(outcome_timeline(empty_run))
    assert main.get_title() == "No requests in this run"
    assert "no requests recorded" in _texts(main)
    assert "sync ended" in _legend_labels(strip)


# --- endpoint shares ------------------------------------------------------------------------


def test_endpoint_shares_label_pods_and_stack_to_one(rolling_run: Run) -> None:
    fig = endpoint_shares(rolling_run)
    axes = _axes(fig)
    assert len(axes) == 2
    web = next(ax for ax in axes if ax.get_title().startswith(WEB))
    assert web.get_ylabel() == "share of requests"
    labels = _legend_labels(web)
    assert len(labels) == 6
    assert labels[:3] == [f"web-old-{i} ({ep})" for i, ep in enumerate(_old_web_endpoints())]
    assert all("web-new-" in label for label in labels[3:])
    bands = [p for p in web.patches if isinstance(p, StepPatch)]
    top = np.max([np.asarray(b.get_data().values) for b in bands], axis=0)
    filled = top[top > 0]
    assert np.allclose(filled, 1.0)
    assert axes[-1].get_xlabel() == TIME_LABEL


def _old_web_endpoints() -> list[str]:
    return ["10.244.0.10:80", "10.244.1.11:80", "10.244.2.12:80"]


# --- rule staleness -------------------------------------------------------------------------


def test_rule_staleness_rows_and_bars(rolling_run: Run) -> None:
    (ax,) = _axes(rule_staleness(rolling_run))
    assert [t.get_text() for t in ax.get_yticklabels()] == ["node-1", "node-2", "node-3"]
    assert ax.get_ylabel() == "node"
    bars = [c for c in ax.collections if isinstance(c, PolyCollection)]
    # stale bars for 3 nodes and one kube-proxy-down bar (node-3)
    assert len(bars) == 4
    assert sum(len(c.get_paths()) for c in bars if c.get_hatch()) == 1
    assert "kube-proxy down" in _legend_labels(ax)


# --- chain check ----------------------------------------------------------------------------


def test_chain_check_groups_endpoint_sets_against_one_over_n(rolling_run: Run) -> None:
    axes = _axes(chain_check(rolling_run))
    assert len(axes) == 2
    api = next(ax for ax in axes if ax.get_title().startswith(API))
    assert api.get_ylabel() == "share of new flows"
    assert "pooled χ² p = " in api.get_title()
    checks = endpoint_set_checks(rolling_run, API)
    assert len(checks) == 1 and len(checks[0].endpoints) == 3
    # the fair-share line sits at 1/3
    lines = [c for c in api.collections if c.get_label() == "fair share 1/N"]
    assert lines
    segments = lines[0].get_segments()
    assert np.allclose([s[0][1] for s in segments], 1 / 3)
    assert any("N = 3" in t for t in _texts(api) + [a.get_text() for a in api.texts])
    web_checks = endpoint_set_checks(rolling_run, WEB)
    assert {len(c.endpoints) for c in web_checks} == {3}
    assert all(c.p_value > 0.001 for c in web_checks)


def test_stable_windows_avoid_every_update_until_all_nodes_synced(rolling_run: Run) -> None:
    windows = stable_windows(rolling_run, WEB)
    # the rollout's updates at 17.05/17.2: the slowest node programs them at 19.414
    assert any(math.isclose(lo, 19.414) for lo, _ in windows)
    assert not any(lo < 17.1 < hi for lo, hi in windows)
    assert stable_windows(rolling_run, API)[-1][1] == pytest.approx(60.0, abs=1.0)


def test_single_endpoint_chain_check(single_endpoint_run: Run) -> None:
    (ax,) = _axes(chain_check(single_endpoint_run))
    low, high = ax.get_ylim()
    assert high - low >= 0.1  # not zoomed into 0.999..1.000
    assert any("one endpoint" in a.get_text() for a in ax.texts)


@pytest.mark.parametrize(
    ("counts", "lower0", "upper0"),
    [([50, 50], 0.3983, 0.6017), ([0, 10], 0.0, 0.3085), ([10, 0], 0.6915, 1.0)],
)
def test_clopper_pearson(counts: list[int], lower0: float, upper0: float) -> None:
    lower, upper = clopper_pearson(counts)
    assert lower[0] == pytest.approx(lower0, abs=1e-4)
    assert upper[0] == pytest.approx(upper0, abs=1e-4)


def test_clopper_pearson_rejects_bad_level() -> None:
    with pytest.raises(ValueError, match="outside"):
        clopper_pearson([1, 2], level=1.0)


# --- conntrack ------------------------------------------------------------------------------


def test_conntrack_usage_lines_and_limit(rolling_run: Run) -> None:
    (ax,) = _axes(conntrack_usage(rolling_run))
    assert ax.get_ylabel() == "conntrack entries (count)"
    labels = _legend_labels(ax)
    assert [label.split(" ")[0] for label in labels[:3]] == ["node-1", "node-2", "node-3"]
    assert "nf_conntrack_max = 4,096 (all nodes)" in labels
    limit_lines = [line for line in ax.get_lines() if list(line.get_ydata()) == [4096, 4096]]
    assert len(limit_lines) == 1
    right = [c for c in ax.child_axes]
    assert right and "% of nf_conntrack_max" in right[0].get_ylabel()


def test_conntrack_usage_names_the_largest_peaks_of_many_nodes() -> None:
    """100 nodes: 10 in colour and in the legend, the rest grey under one entry; it renders."""
    import warnings

    from svcsim.plots.conntrack import MAX_NAMED_NODES, OTHER_NODES_COLOUR
    from svcsim.plots.style import png_bytes

    rec = Recorder()
    for t in range(3):
        for n in range(1, 101):
            rec.add_conntrack_sample(float(t), f"node-{n}", t * (n % 37), 1000)
    ax_fig = conntrack_usage(mem_run(rec))
    (ax,) = _axes(ax_fig)
    labels = _legend_labels(ax)
    named = [label.split(" ")[0] for label in labels if label.startswith("node-")]
    # Peaks are 2 * (n % 37): largest for n = 36, 73, then 35, 72, ...
    assert len(named) == MAX_NAMED_NODES
    assert {"node-36", "node-73", "node-35", "node-72"} <= set(named)
    assert "90 other nodes (peaks up to 62)" in labels
    grey = [line for line in ax.get_lines() if line.get_color() == OTHER_NODES_COLOUR]
    assert len(grey) == 90 + 1  # the 90 lines and the legend's stand-in
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns when a legend squeezes the axes away
        assert png_bytes(ax_fig)[:4] == b"\x89PNG"


def test_conntrack_limit_far_off_scale_is_only_named(make_run: RunFactory) -> None:
    run = make_run(Spec(conntrack_max=10_000_000, rollout=False, crash=False, block=False))
    (ax,) = _axes(conntrack_usage(run))
    assert "nf_conntrack_max = 10,000,000 (all nodes), off scale" in _legend_labels(ax)
    assert ax.get_ylim()[1] < 1_000_000


# --- many windows, few flows ------------------------------------------------------------------


def _requests(rec: Recorder, t: np.ndarray, endpoints: list[str], outcome: str = "ok") -> None:
    n = len(t)
    rec.add_requests(
        t_s=t,
        end_s=t + 0.01,
        latency_s=np.full(n, 0.01),
        workload="w",
        client="c",
        src_node="node-1",
        service=WEB,
        attempt=np.zeros(n, dtype=np.int16),
        conn_id=np.full(n, -1, dtype=np.int64),
        new_flow=np.ones(n, dtype=bool),
        endpoint=np.resize(np.array(endpoints), n),
        pod=np.resize(np.array([f"default/web-{e[-4]}" for e in endpoints]), n),
        outcome=outcome,
        cause="" if outcome == "ok" else "stale-rule",
    )


def test_many_failure_bursts_get_one_note_instead_of_labels() -> None:
    rec = Recorder()
    _requests(rec, np.arange(0.0, 150.0, 0.1), ["10.0.0.1:80"])
    # Failures 6 s apart: more than the largest adaptive gap (5 s), so each is its own window.
    _requests(rec, np.arange(1.0, 145.0, 6.0), ["10.0.0.1:80"], outcome="refused")
    run = mem_run(rec)
    assert len(run.windows) == 24
    (main, _) = _axes(outcome_timeline(run))
    notes = _texts(main)
    assert notes == ["24 failure windows in 24 bursts: too many to label"]
    (shading,) = _shading(main)
    assert len(shading.get_paths()) == 24


def test_a_single_failure_window_is_shaded_one_bin_wide() -> None:
    rec = Recorder()
    _requests(rec, np.arange(0.0, 60.0, 0.1), ["10.0.0.1:80"])
    _requests(rec, np.array([30.0]), ["10.0.0.1:80"], outcome="refused")
    run = mem_run(rec)
    (window,) = run.windows.itertuples(index=False)
    assert window.start_s == window.end_s == 30.0  # zero-length: one failure's send time
    (main, _) = _axes(outcome_timeline(run))
    (shading,) = _shading(main)
    (path,) = shading.get_paths()
    lo, hi = path.vertices[:, 0].min(), path.vertices[:, 0].max()
    assert (lo, hi) == pytest.approx((30.0, 30.0 + time_bin_s(run_span_s(run))))


@pytest.mark.parametrize(("late_flows", "sets"), [(6, 1), (40, 2)])
def test_chain_check_ignores_intervals_with_too_few_flows(late_flows: int, sets: int) -> None:
    rec = Recorder()
    rec.add_event(0.0, "slice-updated", object="default/web-aaaaa", detail="service=default/web")
    rec.add_event(10.0, "slice-updated", object="default/web-aaaaa", detail="service=default/web")
    rec.add_sync(node="node-1", start_s=0.0, end_s=0.5, full=True, ok=True, rules_written=1,
                 programming_latency_s=0.5)  # fmt: skip
    rec.add_sync(node="node-1", start_s=10.1, end_s=10.5, full=False, ok=True, rules_written=1,
                 programming_latency_s=0.5)  # fmt: skip
    three = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]
    _requests(rec, np.linspace(1.0, 9.0, 300), three)
    _requests(rec, np.linspace(11.0, 19.0, late_flows), three[:2])
    checks = endpoint_set_checks(mem_run(rec, manifest={"duration_s": 20.0}), WEB)
    assert len(checks) == sets
    assert checks[0].endpoints == tuple(three) and checks[0].counts == (100, 100, 100)
    assert checks[0].p_value == pytest.approx(1.0)
    assert checks[0].intervals == ((0.5, 10.0),)
