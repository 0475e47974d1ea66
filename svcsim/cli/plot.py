"""``svcsim plot RUN_DIR`` and ``svcsim report RUN_DIR``: figures and the HTML report of a run.

Both read a run folder (:func:`svcsim.results.load`); a missing, partial or broken folder is
reported in one line and exits with code 2. ``plot`` re-draws the standard figures into
``RUN_DIR/figures`` (or ``--output DIR``); ``report`` writes one self-contained HTML page,
``RUN_DIR/report.html`` by default (or ``--output FILE``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer

from svcsim.cli.common import fail, interrupted, warn

if TYPE_CHECKING:
    from svcsim.results import Run

# The heavy imports (pandas, pyarrow, matplotlib) happen inside the commands, so that other
# commands start fast; these names are checked against their sources by the tests.
FIGURES_DIR: Final = "figures"
"""svcsim.results.runfolder.FIGURES."""
REPORT_NAME: Final = "report.html"
"""svcsim.report.REPORT_NAME."""


def _load(run_dir: Path) -> Run:
    from svcsim.results import RunFolderError, load

    try:
        return load(run_dir)
    except RunFolderError as exc:
        fail([str(exc)])


def _cannot_write(path: Path, exc: OSError) -> list[str]:
    return [f"{path}: cannot write: {exc.strerror or exc}"]


def _chosen_services(spellings: list[str], known: list[str]) -> tuple[list[str], list[str]]:
    """The Service ports ``--service`` names, in the run's order, and a line per bad one."""
    from svcsim.scenario.refs import matching_service_ports

    chosen: set[str] = set()
    problems: list[str] = []
    more = f" and {len(known) - 5} more" if len(known) > 5 else ""
    listed = ", ".join(known[:5]) + more
    for spelling in spellings:
        try:
            found = matching_service_ports(spelling, known)
        except ValueError as exc:
            problems.append(f"--service {spelling}: {exc}")
            continue
        if not found:
            problems.append(
                f"--service {spelling}: no requests to this Service port in the run "
                f"(it has {listed or 'none'})"
            )
        chosen.update(found)
    return [k for k in known if k in chosen], problems


def plot(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A run folder.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", file_okay=False, help="Directory for the PNGs [RUN_DIR/figures]."
        ),
    ] = None,
    service: Annotated[
        list[str] | None,
        typer.Option(
            "--service",
            help="Draw only the per-Service figures (outcome timeline, endpoint shares, chain "
            "check) of this Service, [ns/]name[:port] (every port without one; repeatable); "
            "big runs' figures show only some Services.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Re-draw a run's figures (PNG) from its run folder."""
    target = output if output is not None else run_dir / FIGURES_DIR
    try:
        from svcsim.plots import save_all
        from svcsim.plots.events import services
        from svcsim.plots.select import figure_notices

        run = _load(run_dir)
        known = services(run)
        chosen, problems = _chosen_services(service or [], known)
        if problems:
            fail(problems)
        written = save_all(run, target, services=chosen)
        if not service:
            warn(figure_notices(run, known))
    except OSError as exc:
        fail(_cannot_write(target, exc))
    except KeyboardInterrupt:
        # save_all renames each finished PNG into place: no file is ever half written.
        interrupted(f"every figure in {target} is whole, old or re-drawn")
    for path in written.values():
        typer.echo(str(path))


def report(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A run folder.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", dir_okay=False, help=f"HTML file to write [RUN_DIR/{REPORT_NAME}]."
        ),
    ] = None,
) -> None:
    """Write a self-contained HTML report of a run: summary, failure windows, figures."""
    target = output if output is not None else run_dir / REPORT_NAME
    try:
        from svcsim.report import write_report

        run = _load(run_dir)
        write_report(run, target)
    except OSError as exc:
        fail(_cannot_write(target, exc))
    except KeyboardInterrupt:
        interrupted("nothing was written")  # write_report renames a finished file into place
    typer.echo(str(target))
