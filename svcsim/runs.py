"""Running a scenario end to end: build its world, simulate, analyse, write the run folder.

This is what ``svcsim run`` does and what a notebook calls; it only sequences the layers
(scenario → results → plots). The run folder is checked and reserved before simulating (an
unusable ``out_dir`` is refused at once) and written atomically: an interrupted run leaves
nothing, a failed one a folder holding only its manifest, which never looks complete.
"""

from __future__ import annotations

import enum
import gc
import importlib.metadata
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from svcsim.plots import render_all
from svcsim.plots.events import services
from svcsim.plots.select import figure_notices
from svcsim.plots.view import keep_view, view_fold
from svcsim.results import (
    Run,
    RunFolderError,
    build_summary,
    failure_windows,
    load,
    write_failed_run,
    write_run,
)
from svcsim.results.fold import fold_traffic
from svcsim.results.outdir import OutDirState, Reservation, reserve
from svcsim.results.schema import empty_frame
from svcsim.results.stats import node_intervals
from svcsim.results.uniformity import untested_service_ports
from svcsim.results.weights import traffic_table
from svcsim.scenario.build import build_world
from svcsim.scenario.load import LoadedScenario, load_scenario
from svcsim.scenario.replay import replayable_scenario
from svcsim.scenario.schema import Scenario

DEFAULT_RUNS_DIR = Path("runs")
"""Where run folders go unless told otherwise: ``runs/<scenario name>-seed<seed>``."""


class RunPhase(enum.Enum):
    """The named steps of :func:`run_scenario`, reported in this order; values read as status."""

    SIMULATING = "simulating"
    ANALYSING = "analysing records (failure windows, statistics)"
    DRAWING = "drawing figures"
    WRITING = "writing results (records, windows, figures)"
    WRITTEN = "run folder written"
    """The folder is complete and in place; loading it back is all that is left."""


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What :func:`run_scenario` produced.

    ``replaced_previous_run`` is True when the folder held an earlier svcsim run that this one
    replaced; ``removed_stale`` lists partial folders of interrupted runs removed beside it.
    """

    path: Path
    run: Run
    wall_s: float
    simulated_requests: int
    replaced_previous_run: bool = False
    removed_stale: tuple[Path, ...] = ()


def draw_seed() -> int:
    """A fresh seed from the OS's entropy (recorded in the manifest, so the run can repeat)."""
    return int(np.random.SeedSequence().generate_state(1)[0])


def default_out_dir(loaded: LoadedScenario, seed: int) -> Path:
    """``runs/<scenario name>-seed<seed>``."""
    return DEFAULT_RUNS_DIR / f"{loaded.scenario.metadata.name}-seed{seed}"


def run_scenario(
    scenario: str | Path | LoadedScenario,
    *,
    seed: int | None = None,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: Callable[[float], None] | None = None,
    on_phase: Callable[[RunPhase], None] | None = None,
    figures: bool = True,
) -> RunOutcome:
    """Simulate a scenario and write its run folder; returns the loaded run.

    The seed is, in order: ``seed``, the scenario's ``seed``, or a fresh one drawn and
    written to the manifest. The folder is ``out_dir``, else ``runs/<name>-seed<seed>``. An
    existing folder is replaced only if it holds a previous svcsim run and either
    ``overwrite`` is set or the folder is the default one (same scenario and seed give the
    same results, so re-running it only refreshes it); see :mod:`svcsim.results.outdir`.

    ``progress`` is called with the simulated time reached, ``on_phase`` at the start of each
    :class:`RunPhase`. ``figures=False`` writes no ``figures/`` (sweeps; ``svcsim plot``
    draws them later from the folder). Raises :class:`~svcsim.scenario.errors.ScenarioErrors`
    for a bad scenario and :class:`~svcsim.results.runfolder.RunFolderError` for an unusable folder,
    before simulating.
    """
    loaded = scenario if isinstance(scenario, LoadedScenario) else load_scenario(scenario)
    sc = loaded.scenario
    chosen = seed if seed is not None else sc.seed if sc.seed is not None else draw_seed()
    replace = overwrite or out_dir is None
    out = Path(out_dir) if out_dir is not None else default_out_dir(loaded, chosen)
    spot = reserve(out, overwrite=replace)
    phase = on_phase or (lambda _phase: None)
    try:
        path, wall_s, requests = _simulate_and_write(
            loaded, chosen, spot, replace, progress, phase, figures=figures
        )
    except BaseException:
        spot.abandon()  # an interrupt or an error writing the failed run's folder
        raise
    # From here on the written folder is the interface (DESIGN.md decision 5).
    return RunOutcome(
        path,
        load(path),
        wall_s,
        requests,
        replaced_previous_run=spot.state is OutDirState.PREVIOUS_RUN,
        removed_stale=tuple(spot.removed_stale),
    )


def _simulate_and_write(
    loaded: LoadedScenario,
    seed: int,
    spot: Reservation,
    replace: bool,
    progress: Callable[[float], None] | None,
    phase: Callable[[RunPhase], None],
    *,
    figures: bool,
) -> tuple[Path, float, int]:
    """The run proper, into a reserved folder: (path written, wall seconds, requests)."""
    sc = loaded.scenario
    started = time.perf_counter()
    phase(RunPhase.SIMULATING)
    world = None
    try:
        world = build_world(loaded, seed)
        # Records go to the run folder as the run goes: memory does not grow with its length.
        world.recorder.stream_to(spot.partial)
        world.run(progress)
    except BaseException as exc:
        if world is not None:
            world.recorder.discard()
        if not isinstance(exc, Exception):
            raise
        # A bug or an impossible scenario: keep the evidence, in a folder that never looks
        # complete (Ctrl-C, a BaseException, writes nothing at all).
        wall_s = time.perf_counter() - started
        failed = _manifest(loaded, seed, [], wall_s, exception=f"{type(exc).__name__}: {exc}")
        try:
            write_failed_run(spot, failed, overwrite=replace)
        except RunFolderError as folder_exc:
            # The simulation's exception is the news; a folder problem must not hide it.
            exc.add_note(f"and its run folder could not be written: {folder_exc}")
        raise
    wall_s = time.perf_counter() - started
    # What the rest needs of the world; then the world goes (its kernels, rules, conntrack
    # tables and traffic state are most of a long run's memory), before the records are read.
    recorder = world.recorder
    userspace = any(k.mode == "userspace" for k in world.kernels.values())
    untested = untested_service_ports(world.api.list("Service"), userspace=userspace)
    streams = sorted(world.stream_names())
    notices = world.notices()
    world = None
    gc.collect()  # SimPy processes and their environment hold each other in cycles

    phase(RunPhase.ANALYSING)
    counts = recorder.counted_attempts()
    # Counted attempts stay in their file: the analysis folds over its row groups, once.
    frames = recorder.frames(skip=("request_counts",) if counts is not None else ())
    # Per node: each node's flows are tested against the set its own rules choose from.
    intervals = node_intervals(frames["endpoint_sets"], end_s=sc.duration_s)
    manifest = _manifest(loaded, seed, streams, wall_s)
    if notices:  # other runs' manifests stay as they were
        manifest["notices"] = notices
    view = ahead = None
    if counts is None:
        windows = failure_windows(frames["requests"], traffic=traffic_table(frames))
        folded = None
    else:
        # The windows' other fields come from the failed attempts; their totals from the fold.
        windows = failure_windows(frames["requests"], traffic=empty_frame("request_counts"))
        if figures:
            # The figures' view of the attempts is folded in the same read of the file (the
            # run as it will be drawn, less what the fold below gives: the view needs none).
            ahead = Run.from_frames(
                spot.out, manifest, frames, {}, windows, counts=counts, conformed=True
            )
            view = view_fold(ahead)
        folded = fold_traffic(
            counts.batches(),
            endpoint_sets=frames["endpoint_sets"],
            intervals=intervals,
            windows=windows,
            also=[view] if view is not None else [],
        )
        windows = folded.windows
    summary = build_summary(
        frames, windows, seed=seed, intervals=intervals, untested=untested, traffic=folded
    )
    drawn = None
    if figures:
        phase(RunPhase.DRAWING)
        # A streamed run's frames were conformed as they were read back.
        drawn_run = Run.from_frames(
            spot.out, manifest, frames, summary, windows, counts=counts, conformed=True
        )
        if ahead is not None and view is not None:
            # What the view's fold worked out from the tables (stable windows, ...) holds.
            drawn_run.memo.update(ahead.memo)
            keep_view(drawn_run, view.result())
        drawn = render_all(drawn_run)
        capped = figure_notices(drawn_run, services(drawn_run))
        if capped:  # what the figures leave out; other runs' manifests stay as they were
            manifest["notices"] = [*manifest.get("notices", []), *capped]
    phase(RunPhase.WRITING)
    path = write_run(
        spot,
        manifest,
        frames,
        summary,
        drawn,
        windows=windows,
        overwrite=replace,
        scenario_text=replayable_scenario(loaded, seed),
        streamed=recorder.streamed_tables(),
    )
    phase(RunPhase.WRITTEN)
    return path, wall_s, recorder.request_count


def _manifest(
    loaded: LoadedScenario,
    seed: int,
    streams: list[str],
    wall_s: float,
    *,
    exception: str | None = None,
) -> dict[str, Any]:
    sc = loaded.scenario
    # Only a run with --set has "overrides": other runs' manifests stay as they were.
    overrides = {"overrides": [str(o) for o in loaded.overrides]} if loaded.overrides else {}
    return {
        **overrides,
        "scenario": sc.model_dump(by_alias=True, mode="json"),
        "scenario_path": str(loaded.path),
        "name": sc.metadata.name,
        "description": sc.metadata.description,
        "duration_s": sc.duration_s,
        "proxy_mode": proxy_mode_text(sc),
        "seed": seed,
        "records": sc.records.value,
        "random_streams": streams,
        "versions": {
            "svcsim": _version("svcsim"),
            "simpy": _version("simpy"),
            "numpy": _version("numpy"),
            "python": platform.python_version(),
        },
        "wall_time_s": round(wall_s, 3),
        "exception": exception,
    }


def proxy_mode_text(scenario: Scenario) -> str:
    """kube-proxy's mode as the run ran it: one mode, or each node's when they differ."""
    proxy = scenario.cluster.proxy
    modes = {n.name: proxy.for_node(n.name).mode for n in scenario.cluster.nodes}
    if len(set(modes.values())) <= 1:
        return next(iter(modes.values()), proxy.mode)
    return "mixed: " + ", ".join(f"{node} {mode}" for node, mode in modes.items())


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
