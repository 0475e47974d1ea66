"""The set of standard figures of a run, rendered to PNG bytes or saved as files.

:data:`FIGURES` lists them in the order a report shows them, each with a caption.
:func:`render_all` gives ``{name: PNG bytes}`` (what ``write_run(figures=...)`` takes, so a
runner can store them inside the atomic run folder); :func:`save_all` writes
``<out_dir>/<name>.png``. The same run always gives the same bytes.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from matplotlib.figure import Figure

from svcsim.plots.chain import chain_check
from svcsim.plots.conntrack import conntrack_usage
from svcsim.plots.events import nodes, services
from svcsim.plots.parallel import draw_in_parallel
from svcsim.plots.shares import endpoint_shares
from svcsim.plots.staleness import rule_staleness
from svcsim.plots.style import png_bytes
from svcsim.plots.timeline import outcome_timeline
from svcsim.results import Run


@dataclass(frozen=True, slots=True)
class FigureSpec:
    """One standard figure: file stem, drawing function, heading and caption."""

    name: str
    draw: Callable[[Run], Figure]
    title: str
    caption: str


FIGURES: Final[tuple[FigureSpec, ...]] = (
    FigureSpec(
        "outcome_timeline",
        outcome_timeline,
        "Outcomes over time",
        "Requests per second by outcome for each Service (failures stacked at the bottom). "
        "Shaded spans are failure windows, labelled cause @ node (failed attempts). The strip "
        "below marks Pod changes, EndpointSlice updates and, per node, the end of each "
        "kube-proxy sync; dashed lines are kube-proxy crashes (red) and restarts (blue).",
    ),
    FigureSpec(
        "endpoint_shares",
        endpoint_shares,
        "Endpoint shares over time",
        "Each endpoint's share of the requests its Service's rules routed, per time bin, "
        "labelled Pod (IP:port). New Pods appear as new colours; a bin's bars add up to 100 %.",
    ),
    FigureSpec(
        "rule_staleness",
        rule_staleness,
        "Rule staleness per node",
        "When each node's programmed rules lagged the API: from an EndpointSlice update until "
        "the end of the node's next successful sync that applied it (orange), and while "
        "kube-proxy was down (red, hatched). Ticks are sync ends, crosses failed syncs.",
    ),
    FigureSpec(
        "chain_check",
        chain_check,
        "Probability-chain check",
        "Share of new flows per endpoint in intervals where every node's rules for the Service "
        "held still, with 95 % Clopper–Pearson intervals, against the fair share 1/N "
        "(dashed). Each group is one endpoint set; its note gives the time span, the number "
        "of new flows and a chi-square p-value against equal shares.",
    ),
    FigureSpec(
        "conntrack_usage",
        conntrack_usage,
        "Conntrack usage",
        "Conntrack entries per node over time against nf_conntrack_max; a full table drops "
        "new flows.",
    ),
)
"""The standard figures, in report order."""

_BY_NAME: Final[Mapping[str, FigureSpec]] = {spec.name: spec for spec in FIGURES}


PER_SERVICE: Final[tuple[str, ...]] = ("outcome_timeline", "endpoint_shares", "chain_check")
"""The standard figures drawn per Service (``svcsim plot --service``; capped panels)."""

_PER_SERVICE_DRAW: Final[dict[str, Callable[[Run, str], Figure]]] = {
    "outcome_timeline": outcome_timeline,
    "endpoint_shares": endpoint_shares,
    "chain_check": chain_check,
}


def render_all(run: Run, *, jobs: int | None = None) -> dict[str, bytes]:
    """Every standard figure of ``run`` as PNG bytes, keyed by name (in :data:`FIGURES` order).

    Drawn by ``jobs`` processes at once (default: every usable core; see
    :mod:`svcsim.plots.parallel`): the same bytes for any ``jobs``.
    """
    # What every figure reads first, computed once here rather than once per worker.
    nodes(run)
    services(run)
    return draw_in_parallel(run, [spec.name for spec in FIGURES], _render, jobs=jobs)


def _render(run: Run, name: str) -> bytes:
    """One standard figure of ``run`` as PNG bytes."""
    return png_bytes(_BY_NAME[name].draw(run))


def render_service(run: Run, service: str) -> dict[str, bytes]:
    """The per-Service figures (:data:`PER_SERVICE`) of one Service port, as PNG bytes.

    Keyed ``<figure>-<service>`` with the port's ``/`` and ``:`` written ``_``
    (``outcome_timeline-default_web_80``).
    """
    slug = service.replace("/", "_").replace(":", "_")
    return {
        f"{name}-{slug}": png_bytes(_PER_SERVICE_DRAW[name](run, service)) for name in PER_SERVICE
    }


def save_all(
    run: Run, out_dir: str | os.PathLike[str], *, services: Sequence[str] = ()
) -> dict[str, Path]:
    """Write every standard figure as ``<out_dir>/<name>.png``; return name -> path.

    With ``services``, only the per-Service figures of those Service ports
    (:func:`render_service`) are written instead. Creates ``out_dir``. Each file is written
    to a temporary name and renamed into place, so a reader never sees half a PNG; existing
    files of the same names are replaced.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    drawn: dict[str, bytes] = {}
    for service in services:
        drawn.update(render_service(run, service))
    for name, data in (drawn if services else render_all(run)).items():
        target = out / f"{name}.png"
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".png.tmp", dir=out)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written[name] = target
    return written
