"""Where a run folder may go: checks made before simulating, and the atomic move into place.

A run is written into a hidden sibling ``.<run>.partial-<pid>-<hex>`` (the writer's process id
in the name), reserved *before* the simulation starts so an unusable ``--out`` (under a regular
file, on a read-only or pseudo file system, a folder that is not ours) is refused in seconds,
not after minutes of simulating. When the run is complete the sibling is renamed to ``<run>``.

Replacing an existing folder (``overwrite``) is allowed only for a previous svcsim run: a
folder whose ``manifest.json`` is a JSON object with ``run_format`` (a failed run's folder has
one too) and which holds nothing but the names svcsim writes there
(:data:`~svcsim.results.layout.KNOWN_ENTRIES`). An empty folder is replaced without asking.
Never replaced, even with ``overwrite``: ``/``, the home directory, the current directory or
any of its parents.

Stale partial folders: an interrupted run removes its partial folder itself; one killed hard
(SIGKILL, power loss) cannot. When a run reserves its folder, partial folders beside it are
removed if they are stale: the process named in them no longer runs on this machine and they
are older than :data:`STALE_PARTIAL_MIN_AGE_S`, or they are older than
:data:`STALE_PARTIAL_MAX_AGE_S` whatever the process (its id may have been reused, or it ran
on another machine sharing the file system).
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import errno
import json
import os
import re
import secrets
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from svcsim.results.layout import KNOWN_ENTRIES, MANIFEST, PARTIAL_MARK, REPORT, RunFolderError

STALE_PARTIAL_MIN_AGE_S: Final = 10 * 60.0
"""A partial folder of a dead process is removed once it is this old (seconds)."""
STALE_PARTIAL_MAX_AGE_S: Final = 24 * 3600.0
"""A partial folder this old (seconds) is removed even if its process id is in use."""

_PARTIAL_NAME: Final = re.compile(
    rf"\.(?P<run>.+){re.escape(PARTIAL_MARK)}(?:(?P<pid>\d+)-)?[0-9A-Za-z_]+"
)
"""Partial folders: ``.<run>.partial-<pid>-<hex>``; older versions wrote no process id."""


class OutDirState(enum.Enum):
    """What is at a run folder's path before the run is written."""

    ABSENT = "absent"
    EMPTY = "empty"
    PREVIOUS_RUN = "previous-run"


@dataclass(slots=True)
class Reservation:
    """A run folder's path, checked, and the partial folder the run is written into.

    Attributes:
        out: where the run folder goes.
        partial: the hidden sibling the files are written into first.
        state: what was at ``out`` when it was reserved.
        removed_stale: stale partial folders removed beside ``out`` (see the module docs).
        created: directories created to hold ``out`` (removed again by :meth:`abandon`).
    """

    out: Path
    partial: Path
    state: OutDirState
    removed_stale: list[Path] = field(default_factory=list)
    created: list[Path] = field(default_factory=list)

    def install(self, *, overwrite: bool) -> None:
        """Move the finished partial folder to ``out``, replacing a previous run if allowed."""
        # Checked again: the folder may have changed while the run was simulating.
        state = check_out_dir(self.out, overwrite=overwrite)
        try:
            _install(self.partial, self.out, replace=state is OutDirState.PREVIOUS_RUN)
        except OSError as exc:
            raise RunFolderError(f"{self.out}: cannot move the run folder into place: "
                                 f"{_reason(exc)}") from exc  # fmt: skip

    def abandon(self) -> None:
        """Remove the partial folder and any directory created for ``out`` (if still empty)."""
        shutil.rmtree(self.partial, ignore_errors=True)
        for directory in self.created:  # innermost first
            with contextlib.suppress(OSError):
                directory.rmdir()


def check_out_dir(out: Path, *, overwrite: bool) -> OutDirState:
    """What is at ``out``; raises :class:`RunFolderError` if a run may not be written there."""
    if out.is_symlink():
        # Renaming onto a link replaces the link, not the folder it names: ask for the folder.
        raise RunFolderError(f"{out}: is a symbolic link; give the folder it points to")
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"{out}: exists and is not a directory")
    if not out.exists():
        return OutDirState.ABSENT
    try:
        entries = sorted(p.name for p in out.iterdir())
    except OSError as exc:
        raise RunFolderError(f"{out}: cannot read the folder: {_reason(exc)}") from exc
    if not entries:
        return OutDirState.EMPTY
    if not overwrite:
        raise RunFolderError(f"{out}: run folder exists and is not empty (use --overwrite)")
    protected = _protected_reason(out)
    if protected:
        raise RunFolderError(f"{out}: refusing to replace {protected}")
    if not is_run_folder(out):
        raise RunFolderError(
            f"{out}: not a svcsim run folder (no {MANIFEST} with run_format); "
            "--overwrite replaces only a previous run"
        )
    foreign = [name for name in entries if not _is_ours(name)]
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise RunFolderError(
            f"{out}: holds files svcsim did not write ({', '.join(foreign[:3])}{more}); "
            "move them or choose another folder"
        )
    return OutDirState.PREVIOUS_RUN


def is_run_folder(path: Path) -> bool:
    """True if ``path`` holds a ``manifest.json`` svcsim wrote (a JSON object with run_format)."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(manifest, dict) and isinstance(manifest.get("run_format"), int)


def reserve(out: Path, *, overwrite: bool, now_s: float | None = None) -> Reservation:
    """Check ``out``, create its parent directories and the partial folder to write into.

    Raises :class:`RunFolderError` (one line) when ``out`` is not usable: see
    :func:`check_out_dir`, and any operating-system error creating the directories.
    """
    state = check_out_dir(out, overwrite=overwrite)
    created: list[Path] = []
    try:
        for directory in reversed([out.parent, *out.parent.parents]):
            if not directory.exists():
                try:
                    directory.mkdir()
                except FileExistsError:
                    # Made meanwhile by another run of the same sweep (threads, processes).
                    if not directory.is_dir():
                        raise
                    continue
                created.insert(0, directory)
        removed = remove_stale_partials(out.parent, now_s=now_s)
        partial = out.parent / f".{out.name}{PARTIAL_MARK}{os.getpid()}-{secrets.token_hex(4)}"
        partial.mkdir(mode=0o700)
    except OSError as exc:
        for directory in created:
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise RunFolderError(f"{out}: cannot create the run folder: {_mkdir_reason(exc)}") from exc
    return Reservation(out, partial, state, removed, created)


def remove_stale_partials(parent: Path, *, now_s: float | None = None) -> list[Path]:
    """Remove stale partial run folders in ``parent``; returns what was removed."""
    now = time.time() if now_s is None else now_s
    removed = []
    with contextlib.suppress(OSError):
        for entry in sorted(parent.iterdir()):
            match = _PARTIAL_NAME.fullmatch(entry.name)
            if match is None or entry.is_symlink() or not entry.is_dir():
                continue
            try:
                age_s = now - entry.stat().st_mtime
            except OSError:
                continue
            pid = int(match["pid"]) if match["pid"] else None
            dead = pid is None or not _process_alive(pid)
            if (dead and age_s >= STALE_PARTIAL_MIN_AGE_S) or age_s >= STALE_PARTIAL_MAX_AGE_S:
                shutil.rmtree(entry, ignore_errors=True)
                if not entry.exists():
                    removed.append(entry)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists but belongs to someone else
    return True


def _is_ours(name: str) -> bool:
    # ``svcsim report`` writes ``.report.html.<random>.tmp`` first; a hard kill may leave it.
    return name in KNOWN_ENTRIES or name.startswith(f".{REPORT}.")


def _protected_reason(out: Path) -> str:
    """Why ``out`` must never be replaced ("" if it may be)."""
    target = out.resolve()
    cwd = Path.cwd().resolve()
    if target == Path(target.anchor):
        return "the root directory"
    with contextlib.suppress(RuntimeError, KeyError):
        if target == Path.home().resolve():
            return "your home directory"
    if target == cwd:
        return "the current directory"
    if cwd.is_relative_to(target):
        return "a parent of the current directory"
    return ""


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _mkdir_reason(exc: OSError) -> str:
    """Why a directory could not be made, naming the existing directory that refused it."""
    where = Path(exc.filename).parent if exc.filename else None
    if where is None:
        return _reason(exc)
    if exc.errno == errno.ENOENT and where.is_dir():
        # /proc and similar pseudo file systems answer mkdir with ENOENT.
        return f"{where} does not accept new folders ({_reason(exc)})"
    if exc.errno == errno.ENOTDIR:
        return f"{where} is not a directory"
    return f"{_reason(exc)} in {where}"


def _install(tmp: Path, out: Path, *, replace: bool) -> None:
    """Move the finished ``tmp`` to ``out``; swap it with the previous run if ``replace``."""
    if not replace:
        # Replaces an empty directory too (POSIX rename); fails if it is no longer empty.
        os.rename(tmp, out)
        return
    if _exchange(tmp, out):
        shutil.rmtree(tmp, ignore_errors=True)  # ``tmp`` now holds the old run
        return
    old = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


_AT_FDCWD: Final = -100
_RENAME_EXCHANGE: Final = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories with Linux ``renameat2(RENAME_EXCHANGE)``.

    Returns False, having changed nothing, where the call or the flag is unsupported (not
    Linux, old glibc, a filesystem without exchange support).
    """
    if sys.platform != "linux":
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    renameat2.restype = ctypes.c_int
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))
