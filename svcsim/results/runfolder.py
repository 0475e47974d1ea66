"""Writing a run folder, atomically and byte-for-byte reproducibly.

A run folder is the interface between simulating and looking (DESIGN.md, decision 5)::

    <run>/manifest.json      the caller's manifest (scenario, seed, versions, wall time)
                             plus "run_format"; written last
    <run>/summary.json       build_summary(...) output
    <run>/windows.json       every failure window, all fields
    <run>/requests.parquet   one file per record table (svcsim.results.schema)
    <run>/events.parquet
    <run>/syncs.parquet
    <run>/conntrack.parquet
    <run>/figures/*.png      optional

Everything is written into a hidden sibling ``.<run>.partial-XXXX`` and renamed into place
only when complete and fsync'ed, so ``<run>`` either does not exist or is whole. A crash leaves
at most a ``.partial-`` directory, which :func:`svcsim.results.load.load` refuses.

Same data gives the same bytes: JSON via :func:`~svcsim.results.summary.dumps_json`, Parquet
via pyarrow, which stores no timestamp or path (its footer holds only the schema, the pandas
metadata and ``created_by = parquet-cpp-arrow version X``), so files differ only across library
versions, which the manifest records.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

from svcsim.results.schema import TABLES, conform, empty_frame
from svcsim.results.summary import build_summary, dumps_json
from svcsim.results.windows import FailureWindow, failure_windows

__all__ = [
    "FIGURES",
    "MANIFEST",
    "REQUIRED_FILES",
    "RUN_FORMAT",
    "SUMMARY",
    "TABLE_FILES",
    "WINDOWS",
    "RunFolderError",
    "build_summary",
    "write_failed_run",
    "write_run",
]

RUN_FORMAT: Final = 2
"""Version of the folder layout, stored as ``run_format`` in manifest.json."""

MANIFEST: Final = "manifest.json"
SUMMARY: Final = "summary.json"
WINDOWS: Final = "windows.json"
FIGURES: Final = "figures"
TABLE_FILES: Final[Mapping[str, str]] = {table: f"{table}.parquet" for table in TABLES}
REQUIRED_FILES: Final[tuple[str, ...]] = (MANIFEST, SUMMARY, WINDOWS, *TABLE_FILES.values())
"""Files every complete run folder holds."""

PARTIAL_MARK: Final = ".partial-"
"""Infix of the temporary directory a run is written into."""

_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_FIGURE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_PARQUET_COMPRESSION: Final = "zstd"


class RunFolderError(Exception):
    """A run folder cannot be written or read; the message is one line naming the folder."""


def write_run(
    out_dir: str | os.PathLike[str],
    manifest: Mapping[str, Any],
    frames: Mapping[str, pd.DataFrame],
    summary: Mapping[str, Any],
    figures: Mapping[str, bytes] | None = None,
    *,
    windows: Sequence[FailureWindow] | None = None,
    overwrite: bool = False,
    on_file_written: Callable[[str], None] | None = None,
) -> Path:
    """Write a complete run folder at ``out_dir`` and return its path.

    ``frames`` maps table names (``requests``, ``events``, ``syncs``, ``conntrack``) to
    DataFrames with the schema's columns; they are conformed to the spec dtypes
    (:func:`~svcsim.results.schema.conform`) and a missing table is written empty.
    ``windows`` defaults to ``failure_windows(frames["requests"])``. ``figures`` maps a name
    (``"shares"`` or ``"shares.png"``) to PNG bytes. ``on_file_written`` is called with each
    file's relative path once it is durable (progress reporting).

    An existing empty directory is replaced. A non-empty one raises :class:`RunFolderError`
    unless ``overwrite``; then the new folder is swapped in (atomically where the OS offers
    ``renameat2(RENAME_EXCHANGE)``, else by two renames) and the old one deleted. On any
    error nothing is left at ``out_dir`` that was not there before, and the temporary
    directory is removed. The folder gets mode 0755.
    """
    out = Path(out_dir)
    unknown = sorted(set(frames) - set(TABLES))
    if unknown:
        raise ValueError(f"unknown record tables {unknown}; expected {list(TABLES)}")
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"{out}: exists and is not a directory")
    if _non_empty(out) and not overwrite:
        raise RunFolderError(f"{out}: run folder exists and is not empty (use overwrite)")
    tables = {t: conform(frames[t], t) if t in frames else empty_frame(t) for t in TABLES}
    if windows is None:
        windows = failure_windows(tables["requests"])
    # Serialise the small files first: a bad value fails before anything touches the disk.
    texts = {
        WINDOWS: dumps_json([w.to_dict() for w in windows]),
        SUMMARY: dumps_json(summary),
        MANIFEST: dumps_json({**manifest, "run_format": RUN_FORMAT}),
    }
    pictures = _figure_files(figures or {})

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{PARTIAL_MARK}", dir=out.parent))
    try:
        done = on_file_written or (lambda _name: None)
        for table, frame in tables.items():
            _write_parquet(frame, tmp / TABLE_FILES[table])
            done(TABLE_FILES[table])
        for name in (WINDOWS, SUMMARY):
            _write_bytes(tmp / name, texts[name].encode())
            done(name)
        if pictures:
            (tmp / FIGURES).mkdir()
            for name, data in pictures.items():
                _write_bytes(tmp / FIGURES / name, data)
                done(f"{FIGURES}/{name}")
            _fsync_dir(tmp / FIGURES)
        # The manifest last: a folder with a manifest has everything else.
        _write_bytes(tmp / MANIFEST, texts[MANIFEST].encode())
        done(MANIFEST)
        _fsync_dir(tmp)
        tmp.chmod(0o755)
        _install(tmp, out, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(out.parent)
    return out


def write_failed_run(
    out_dir: str | os.PathLike[str], manifest: Mapping[str, Any], *, overwrite: bool = False
) -> Path:
    """Write the folder of a run that raised: only its manifest, naming the exception.

    Written atomically like :func:`write_run`, but it holds no summary, so it never looks
    complete: :func:`~svcsim.results.load.load` refuses it and quotes the exception.
    """
    out = Path(out_dir)
    if _non_empty(out) and not overwrite:
        raise RunFolderError(f"{out}: run folder exists and is not empty (use overwrite)")
    text = dumps_json({**manifest, "run_format": RUN_FORMAT})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{PARTIAL_MARK}", dir=out.parent))
    try:
        _write_bytes(tmp / MANIFEST, text.encode())
        _fsync_dir(tmp)
        tmp.chmod(0o755)
        _install(tmp, out, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _non_empty(path: Path) -> bool:
    if not path.is_dir():
        return False
    return next(iter(path.iterdir()), None) is not None


def _figure_files(figures: Mapping[str, bytes]) -> dict[str, bytes]:
    """Validated ``{file name: PNG bytes}``, sorted by name."""
    out: dict[str, bytes] = {}
    for name, data in sorted(figures.items()):
        stem = name.removesuffix(".png")
        if not _FIGURE_NAME.fullmatch(stem):
            raise ValueError(f"bad figure name {name!r}: use letters, digits, '.', '_', '-'")
        if not bytes(data).startswith(_PNG_SIGNATURE):
            raise ValueError(f"figure {name!r} is not PNG data")
        out[f"{stem}.png"] = bytes(data)
    return out


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with path.open("wb") as f:
        pq.write_table(table, f, compression=_PARQUET_COMPRESSION)
        f.flush()
        os.fsync(f.fileno())


def _write_bytes(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Make a directory's entries durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _install(tmp: Path, out: Path, *, overwrite: bool) -> None:
    """Move the finished ``tmp`` to ``out``; swap with a non-empty ``out`` if ``overwrite``."""
    if not _non_empty(out):
        try:
            # Replaces an empty directory too (POSIX rename).
            os.rename(tmp, out)
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not overwrite:
                raise RunFolderError(f"{out}: cannot move run folder into place: {exc}") from exc
    if not overwrite:
        raise RunFolderError(f"{out}: run folder exists and is not empty (use overwrite)")
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
