"""The sweep figure: one panel per metric, one series per combination of the other keys."""

from __future__ import annotations

import math

import pandas as pd

from svcsim.plots.style import png_bytes
from svcsim.plots.sweep import PANELS, sweep_figure
from svcsim.sweep.table import METRICS


def points(keys: dict[str, list[str]], runs: int) -> pd.DataFrame:
    """A points table with the given key columns, every metric 1 ± 0.5 (NaN with one run)."""
    n = len(next(iter(keys.values()))) if keys else 1
    data: dict[str, object] = {**keys, "runs": [runs] * n}
    for metric in METRICS:
        half = math.nan if runs == 1 else 0.5
        data[f"{metric}_mean"] = [1.0] * n
        data[f"{metric}_ci_low"] = [1.0 - half] * n
        data[f"{metric}_ci_high"] = [1.0 + half] * n
    return pd.DataFrame(data)


def test_the_first_key_is_the_x_axis_and_the_others_are_series() -> None:
    table = points({"a": ["0s", "5s", "0s", "5s"], "b": ["1", "1", "2", "2"]}, runs=3)
    fig = sweep_figure(table, ["a", "b"])
    axes = fig.axes
    assert len(axes) == len(PANELS)
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["0s", "5s"]
    assert axes[0].get_xlabel() == "a"
    assert [t.get_text() for t in axes[-1].get_legend().get_texts()] == ["b=1", "b=2"]
    assert png_bytes(fig).startswith(b"\x89PNG")


def test_one_run_per_point_and_no_keys_still_draw() -> None:
    fig = sweep_figure(points({}, runs=1), [])
    assert "1 seed each" in fig.get_suptitle()
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["all runs"]
    assert png_bytes(fig).startswith(b"\x89PNG")
