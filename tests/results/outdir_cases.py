"""Folders to put a run into, for the tests of svcsim.results.outdir: how to make each."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from svcsim.results.layout import MANIFEST, RUN_FORMAT, SUMMARY


@dataclass(frozen=True, slots=True)
class OutDirCase:
    """A folder made by ``make(tmp)`` and what ``check_out_dir(..., overwrite=True)`` says.

    ``error`` is a substring of the expected one-line error, "" when the folder is usable;
    ``state`` then names the expected :class:`~svcsim.results.outdir.OutDirState`.
    """

    name: str
    make: Callable[[Path], Path]
    error: str = ""
    state: str = ""


def previous_run(folder: Path, **manifest: object) -> Path:
    """A folder that looks like a complete earlier run (its manifest and one more file)."""
    folder.mkdir(parents=True)
    (folder / MANIFEST).write_text(json.dumps({"run_format": RUN_FORMAT, **manifest}))
    (folder / SUMMARY).write_text("{}")
    return folder


def failed_run(folder: Path) -> Path:
    """The folder of a run that raised: only its manifest, naming the exception."""
    folder.mkdir(parents=True)
    (folder / MANIFEST).write_text(json.dumps({"run_format": RUN_FORMAT, "exception": "E: x"}))
    return folder


def _with(folder: Path, name: str, text: str = "mine") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder


def dead_pid() -> int:
    """The id of a process that has just ended (so, almost surely, of no running process)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


CASES: tuple[OutDirCase, ...] = (
    OutDirCase("absent", lambda t: t / "new", state="ABSENT"),
    OutDirCase("empty", lambda t: _mkdir(t / "empty"), state="EMPTY"),
    OutDirCase("previous run", lambda t: previous_run(t / "r"), state="PREVIOUS_RUN"),
    OutDirCase("failed run", lambda t: failed_run(t / "r"), state="PREVIOUS_RUN"),
    OutDirCase(
        "run with its report and figures",
        lambda t: _with_figures(_with(previous_run(t / "r"), "report.html")),
        state="PREVIOUS_RUN",
    ),
    OutDirCase(
        "unrelated folder",
        lambda t: _with(t / "mine", "notes.txt"),
        error="not a svcsim run folder (no manifest.json with run_format)",
    ),
    OutDirCase(
        "manifest of something else",
        lambda t: _with(t / "other", MANIFEST, '{"name": "x"}'),
        error="not a svcsim run folder",
    ),
    OutDirCase(
        "run holding a file of the user's",
        lambda t: _with(previous_run(t / "r"), "notes.txt"),
        error="holds files svcsim did not write (notes.txt)",
    ),
    OutDirCase("a regular file", lambda t: _with(t, "f.txt") / "f.txt", error="is not a directory"),
    OutDirCase(
        "a symbolic link to a run",
        lambda t: _link(t / "link", previous_run(t / "r")),
        error="is a symbolic link; give the folder it points to",
    ),
    OutDirCase("current directory", lambda t: Path("."), error="the current directory"),
    OutDirCase("parent of the cwd", lambda t: Path(".."), error="a parent of the current"),
    OutDirCase("the home directory", lambda t: Path.home(), error="your home directory"),
    OutDirCase("the root directory", lambda t: Path("/"), error="the root directory"),
)
"""Each case runs with the current directory a non-empty ``tmp/cwd`` and HOME ``tmp/home``."""


def _link(link: Path, target: Path) -> Path:
    link.symlink_to(target)
    return link


def _with_figures(run: Path) -> Path:
    (run / "figures").mkdir()
    (run / "figures" / "timeline.png").write_bytes(b"\x89PNG")
    return run


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
