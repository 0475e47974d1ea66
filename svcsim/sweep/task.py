"""One run of a sweep, as an executor runs it, and how a finished one is recognised.

:func:`run_task` is what a worker executes (in this process, a pool process or a Dask
worker): it simulates one grid point with one seed into its run folder, with no figures, and
returns the run's row of the sweep table read from its summary. It takes the loaded scenario
itself (manifest texts included), so a worker needs no access to the scenario's files, only
to the sweep's output folder.

A run is finished (:func:`finished_row`) when its folder holds ``manifest.json`` and
``summary.json``, and the manifest's fully defaulted scenario and seed are the ones this sweep
would run: a folder of an edited scenario, of other overrides or of an interrupted run is run
again (and replaced). The svcsim version is not compared: results of an older svcsim are
kept; remove the folder to run it afresh.
"""

from __future__ import annotations

import json
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from svcsim.results.layout import MANIFEST, SUMMARY
from svcsim.scenario.load import LoadedScenario
from svcsim.sweep.table import RUN, SEED, summary_row


@dataclass(frozen=True, slots=True)
class RunTask:
    """One run to do: the grid point's loaded scenario, the seed, and where it goes.

    ``index`` is the run's place in the sweep's table; ``relative`` its folder relative to
    the sweep's folder (the ``run`` column).
    """

    index: int
    loaded: LoadedScenario
    labels: tuple[tuple[str, str], ...]
    seed: int
    folder: Path
    relative: str


@dataclass(frozen=True, slots=True)
class TaskResult:
    """What a worker sends back: the run's table row, or why there is none.

    ``error`` is one line: the run folder could not be written, or (``bug``) the simulation
    raised, and its folder holds the failed run's manifest naming the exception;
    ``interrupted`` is set when Ctrl-C stopped the run (nothing of it was written).
    """

    index: int
    row: dict[str, Any] | None = None
    error: str | None = None
    bug: bool = False
    interrupted: bool = False


def table_row(task: RunTask, summary: dict[str, Any]) -> dict[str, Any]:
    """The run's row: the point's key columns, the seed, the summary's metrics, its folder."""
    return {**dict(task.labels), SEED: task.seed, **summary_row(summary), RUN: task.relative}


def run_task(task: RunTask) -> TaskResult:
    """Simulate ``task`` into its folder (replacing an unfinished one) and return its row.

    A pool process ignores Ctrl-C while idle (see :func:`ignore_interrupts`); while it
    simulates, Ctrl-C interrupts the run, which leaves nothing of itself, and the result says
    so. Any other exception becomes the result's one-line ``error``.
    """
    from svcsim.results import RunFolderError
    from svcsim.runs import run_scenario

    with _interruptible():
        try:
            outcome = run_scenario(
                task.loaded, seed=task.seed, out_dir=task.folder, overwrite=True, figures=False
            )
        except KeyboardInterrupt:
            return TaskResult(task.index, interrupted=True)
        except RunFolderError as exc:
            return TaskResult(task.index, error=str(exc))
        except Exception as exc:  # a simulation bug: its failed run's folder keeps the evidence
            why = f"{type(exc).__name__}: {exc}"
            return TaskResult(task.index, error=f"{task.folder}: {why}", bug=True)
    return TaskResult(task.index, row=table_row(task, outcome.run.summary))


def finished_row(task: RunTask) -> dict[str, Any] | None:
    """The row of ``task``'s run if its folder holds it finished (module docs), else None."""
    from svcsim.results.summary import dumps_json

    try:
        manifest = json.loads((task.folder / MANIFEST).read_text(encoding="utf-8"))
        summary = json.loads((task.folder / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or not isinstance(summary, dict):
        return None
    expected = json.loads(dumps_json(task.loaded.scenario.model_dump(by_alias=True, mode="json")))
    if manifest.get("seed") != task.seed or manifest.get("scenario") != expected:
        return None
    if manifest.get("exception") is not None:
        return None
    try:
        return table_row(task, summary)
    except (KeyError, TypeError, ValueError):
        return None  # a summary of another layout: run it again


def ignore_interrupts() -> None:
    """Pool-process initializer: an idle worker ignores Ctrl-C (:func:`run_task` re-enables it).

    Ctrl-C reaches every process of the terminal's group; an idle worker must not die of it
    with a traceback.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _interruptible:  # noqa: N801 - used as a context manager, named as one
    """While simulating in a pool process that ignores SIGINT, let Ctrl-C interrupt the run."""

    def __init__(self) -> None:
        self.previous: Any = None

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.getsignal(signal.SIGINT)
            if self.previous is signal.SIG_IGN:
                signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc: object) -> None:
        if self.previous is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
