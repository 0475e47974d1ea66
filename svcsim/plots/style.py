"""What every figure shares: colours, sizes, time bins, the time span of a run, PNG bytes.

Colours come from the Okabe–Ito palette (Okabe & Ito, "Color Universal Design", 2008), which
stays distinguishable under the common colour-vision deficiencies. Each request outcome has one
colour in every figure: ``ok`` bluish green, failures in the warm or dark colours.

Figures are :class:`matplotlib.figure.Figure` objects on an Agg canvas, never pyplot: no global
figure registry, no display, safe in threads and notebooks alike. :func:`png_bytes` renders
without the ``Software`` metadata chunk, so one run always gives byte-identical PNGs.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import StepPatch

from svcsim.results import Outcome, Run
from svcsim.results.bins import time_bin_s as time_bin_s  # re-exported for the figures

OKABE_ITO: Final[tuple[str, ...]] = (
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#009E73",  # bluish green
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#F0E442",  # yellow
    "#000000",  # black
)
"""The eight Okabe–Ito colours."""

OUTCOME_COLOURS: Final[Mapping[str, str]] = MappingProxyType(
    {
        Outcome.OK.value: "#009E73",
        Outcome.REFUSED.value: "#D55E00",
        Outcome.TIMEOUT.value: "#E69F00",
        Outcome.RESET.value: "#CC79A7",
        Outcome.DROPPED.value: "#4D4D4D",
        Outcome.MISROUTED.value: "#0072B2",
    }
)
"""Colour of each outcome, the same in every figure."""

FAILURE_SHADE: Final = "#D55E00"
"""Colour of shaded failure windows (drawn translucent)."""
STALE_COLOUR: Final = "#E69F00"
"""Rules behind the API state."""
DOWN_COLOUR: Final = "#D55E00"
"""kube-proxy down."""
RESTART_COLOUR: Final = "#0072B2"
"""kube-proxy restarted."""
SYNC_COLOUR: Final = "#555555"
"""A successful sync tick."""

# Series colours (endpoints, nodes): Okabe–Ito without black and yellow first (thin stacked
# bands of those read badly), then tab20's paler pairs once a figure needs more.
_ENDPOINT_BASE: Final = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00")
_ENDPOINT_EXTRA: Final = (
    "#AEC7E8", "#FFBB78", "#98DF8A", "#FF9896", "#C5B0D5", "#C49C94",
    "#F7B6D2", "#C7C7C7", "#DBDB8D", "#9EDAE5", "#7F7F7F", "#BCBD22",
)  # fmt: skip

DPI: Final = 110
"""Resolution of saved PNGs (dots per inch)."""
WIDTH_IN: Final = 11.0
"""Figure width in inches."""

TIME_LABEL: Final = "simulated time (s)"
"""The x label of every time axis."""


def series_colour(index: int) -> str:
    """The colour of the ``index``-th series of a figure (cycles past 18)."""
    palette = (*_ENDPOINT_BASE, *_ENDPOINT_EXTRA)
    return palette[index % len(palette)]


def endpoint_colours(endpoints: Sequence[str]) -> dict[str, str]:
    """A colour per endpoint, in the given order (see :func:`series_colour`)."""
    return {e: series_colour(i) for i, e in enumerate(endpoints)}


def run_span_s(run: Run) -> float:
    """The simulated time the run covers, in seconds (at least 1).

    ``manifest["duration_s"]`` if the runner wrote a number there, else the latest time in
    any record table (request ends, events, sync ends, conntrack samples).
    """
    declared = run.manifest.get("duration_s")
    if isinstance(declared, int | float) and not isinstance(declared, bool) and declared > 0:
        return float(declared)
    latest = 0.0
    for values in (
        run.requests["end_s"],
        run.events["t_s"],
        run.syncs["end_s"],
        run.conntrack["t_s"],
    ):
        array = np.asarray(values, dtype=np.float64)
        array = array[np.isfinite(array)]
        if array.size:
            latest = max(latest, float(array.max()))
    return max(latest, 1.0)


def new_figure(height_in: float, width_in: float = WIDTH_IN) -> Figure:
    """A constrained-layout Figure with an Agg canvas attached (no pyplot)."""
    fig = Figure(figsize=(width_in, height_in), layout="constrained", dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure, dpi: int = DPI) -> bytes:
    """Render ``fig`` as PNG bytes; identical input gives identical bytes (no Software chunk)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def empty_note(ax: Axes, text: str, *, keep_x: bool = False) -> None:
    """Write ``text`` in the middle of an axes that has nothing to show, and hide its ticks.

    ``keep_x`` keeps the x ticks (an axes sharing its time axis with another).
    """
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#555555")
    if not keep_x:
        ax.set_xticks([])
    ax.set_yticks([])


def legend_outside(ax: Axes, x: float = 1.01, **kwargs: Any) -> None:
    """A legend right of ``ax`` (at axes fraction ``x``), off the data; none without labels."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(
            handles,
            labels,
            loc="upper left",
            bbox_to_anchor=(x, 1.0),
            borderaxespad=0.0,
            fontsize="small",
            frameon=False,
            **kwargs,
        )


def seconds(value: float) -> str:
    """A time in seconds for labels: ``12.3 s``, ``250 ms``."""
    if value != 0 and abs(value) < 1:
        return f"{value * 1000:.3g} ms"
    return f"{value:.4g} s"


def filled_steps(
    ax: Axes,
    top: npt.NDArray[np.float64],
    edges: npt.NDArray[np.float64],
    bottom: npt.NDArray[np.float64],
    colour: str,
    label: str | None,
) -> StepPatch:
    """A filled band between ``bottom`` and ``top`` over bins ``edges``: ``ax.stairs``, fast.

    The patch ``ax.stairs(top, edges, baseline=bottom, fill=True, color=colour,
    linewidth=0, label=label)`` makes, with the same data limits, taken from the values
    rather than by walking every segment of its path as ``Axes.add_patch`` does (that walk
    was 6 of the 10 s a 4-hour day's endpoint shares took: a hundred bands of hundreds of
    steps per panel). For axes whose limits are then set explicitly, as every figure's are.
    """
    # An array baseline, as Axes.stairs passes it (the stubs say float).
    patch = StepPatch(top, edges, baseline=bottom, fill=True,  # type: ignore[arg-type]
                      linewidth=0, facecolor=colour, label=label)  # fmt: skip
    ax.add_artist(patch)
    values = np.r_[np.asarray(top, dtype=np.float64), np.asarray(bottom, dtype=np.float64)]
    values = values[np.isfinite(values)]
    if len(edges) and len(values):
        ax.update_datalim([(float(edges[0]), values.min()), (float(edges[-1]), values.max())])
    patch.sticky_edges.y.append(float(np.min(bottom)))
    return patch
