"""Running a scenario end to end: build its world, simulate, analyse, write the run folder.

This is what ``svcsim run`` does and what a notebook calls; it only sequences the layers
(scenario → results → plots). The run folder is written atomically: an interrupted or failed
run leaves nothing that looks complete.
"""

from __future__ import annotations

import importlib.metadata
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from svcsim.plots import render_all
from svcsim.results import (
    Run,
    build_summary,
    endpoint_set_changes,
    failure_windows,
    load,
    stable_intervals,
    write_failed_run,
    write_run,
)
from svcsim.results.uniformity import untested_service_ports
from svcsim.scenario.build import build_world
from svcsim.scenario.load import LoadedScenario, load_scenario

DEFAULT_RUNS_DIR = Path("runs")
"""Where run folders go unless told otherwise: ``runs/<scenario name>-seed<seed>``."""


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What :func:`run_scenario` produced."""

    path: Path
    run: Run
    wall_s: float
    simulated_requests: int


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
) -> RunOutcome:
    """Simulate a scenario and write its run folder; returns the loaded run.

    The seed is, in order: ``seed``, the scenario's ``seed``, or a fresh one drawn and
    written to the manifest. Raises :class:`~svcsim.scenario.errors.ScenarioErrors` for a bad
    scenario and :class:`~svcsim.results.runfolder.RunFolderError` for an unusable folder.
    """
    loaded = scenario if isinstance(scenario, LoadedScenario) else load_scenario(scenario)
    sc = loaded.scenario
    chosen = seed if seed is not None else sc.seed if sc.seed is not None else draw_seed()
    out = Path(out_dir) if out_dir is not None else default_out_dir(loaded, chosen)
    started = time.perf_counter()
    try:
        world = build_world(loaded, chosen)
        world.run(progress)
    except Exception as exc:
        # A bug or an impossible scenario: keep the evidence, in a folder that never looks
        # complete (Ctrl-C, a BaseException, writes nothing at all).
        wall_s = time.perf_counter() - started
        failed = _manifest(loaded, chosen, [], wall_s, exception=f"{type(exc).__name__}: {exc}")
        write_failed_run(out, failed, overwrite=overwrite)
        raise
    wall_s = time.perf_counter() - started

    frames = world.recorder.frames()
    windows = failure_windows(frames["requests"])
    changes = endpoint_set_changes(frames["endpoint_sets"])
    # Per node: each node's flows are tested against the set its own rules choose from.
    intervals = stable_intervals(changes, end_s=sc.duration_s, per_node=True)
    untested = untested_service_ports(world.api.list("Service"))
    summary = build_summary(frames, windows, seed=chosen, intervals=intervals, untested=untested)
    manifest = _manifest(loaded, chosen, sorted(world.stream_names()), wall_s)
    preview = Run.from_frames(out, manifest, frames, summary, windows)
    path = write_run(
        out, manifest, frames, summary, render_all(preview), windows=windows, overwrite=overwrite
    )
    # From here on the written folder is the interface (DESIGN.md decision 5).
    return RunOutcome(path, load(path), wall_s, len(frames["requests"]))


def _manifest(
    loaded: LoadedScenario,
    seed: int,
    streams: list[str],
    wall_s: float,
    *,
    exception: str | None = None,
) -> dict[str, Any]:
    sc = loaded.scenario
    return {
        "scenario": sc.model_dump(by_alias=True, mode="json"),
        "scenario_path": str(loaded.path),
        "name": sc.metadata.name,
        "description": sc.metadata.description,
        "duration_s": sc.duration_s,
        "seed": seed,
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


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
