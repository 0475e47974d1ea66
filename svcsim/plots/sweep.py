"""A sweep's grid points: each metric's mean with its 95 % confidence interval.

Drawn from ``points.parquet``'s table (:mod:`svcsim.sweep.table`) alone. The first ``--set``
key is the x axis (its values in the order given, as written); every combination of the
other keys is one series. Points with one run have no interval and show a bare marker.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from svcsim.plots.style import legend_outside, new_figure, series_colour

PANELS: Final = (
    ("failed_in_windows", "failed requests in failure windows (count)"),
    ("failure_windows", "failure windows (count)"),
    ("programming_latency_p99_s", "programming latency p99 (s)"),
)
"""The metrics drawn, one panel each, with their axis labels."""


def sweep_figure(points: pd.DataFrame, keys: Sequence[str]) -> Figure:
    """One panel per metric of :data:`PANELS`: mean and 95 % CI per grid point."""
    fig = new_figure(3.6)
    axes = fig.subplots(1, len(PANELS))
    x_key = keys[0] if keys else None
    x_values = list(dict.fromkeys(points[x_key])) if x_key else ["all runs"]
    rest = list(keys[1:])
    series = points.groupby(rest, sort=False) if rest else [((), points)]
    runs = points["runs"]
    fig.suptitle(
        f"Sweep: mean and 95 % confidence interval per grid point "
        f"({int(runs.min())}–{int(runs.max())} seeds each)"
        if runs.min() != runs.max()
        else f"Sweep: mean and 95 % confidence interval per grid point ({int(runs.min())} "
        f"seed{'s' if runs.min() != 1 else ''} each)"
    )
    groups = list(series)
    offsets = np.linspace(-0.15, 0.15, len(groups)) if len(groups) > 1 else [0.0]
    for ax, (metric, label) in zip(axes, PANELS, strict=True):
        for i, ((labels, group), offset) in enumerate(zip(groups, offsets, strict=True)):
            values = labels if isinstance(labels, tuple) else (labels,)
            name = ", ".join(f"{k}={v}" for k, v in zip(rest, values, strict=True)) or None
            xs = [x_values.index(v) + offset for v in group[x_key]] if x_key else [0.0]
            mean = group[f"{metric}_mean"].to_numpy(dtype=float)
            low = mean - group[f"{metric}_ci_low"].to_numpy(dtype=float)
            high = group[f"{metric}_ci_high"].to_numpy(dtype=float) - mean
            ax.errorbar(xs, mean, yerr=np.nan_to_num(np.vstack([low, high])), marker="o",
                        capsize=3, color=series_colour(i), label=name)  # fmt: skip
        ax.set_xticks(range(len(x_values)), [str(v) for v in x_values])
        ax.set_xlabel(x_key or "")
        ax.set_ylabel(label)
        # Counts and latencies are >= 0: an interval reaching below 0 is cut at the axis.
        tops = points[[f"{metric}_mean", f"{metric}_ci_high"]].to_numpy(dtype=float)
        top = float(np.nanmax(tops)) if np.isfinite(tops).any() else 0.0
        ax.set_ylim(0.0, top * 1.1 if top > 0 else 1.0)
        ax.grid(axis="y", alpha=0.3)
        if not metric.endswith("_s"):
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts
    if rest:
        legend_outside(axes[-1])
    return fig
