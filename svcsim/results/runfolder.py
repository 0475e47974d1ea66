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

Everything is written into a hidden sibling ``.<run>.partial-<pid>-<hex>`` and renamed into
place only when complete and fsync'ed, so ``<run>`` either does not exist or is whole. A crash
leaves at most a ``.partial-`` directory, which :func:`svcsim.results.load.load` refuses and
the next run beside it removes once stale (:mod:`svcsim.results.outdir`, which also decides
what may be replaced).

Same data gives the same bytes: JSON via :func:`~svcsim.results.summary.dumps_json`, Parquet
via pyarrow, which stores no timestamp or path (its footer holds only the schema, the pandas
metadata and ``created_by = parquet-cpp-arrow version X``), so files differ only across library
versions, which the manifest records.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

from svcsim.results.layout import (
    FIGURES,
    LEVEL_TABLES,
    MANIFEST,
    PARTIAL_MARK,
    REQUIRED_FILES,
    RUN_FORMAT,
    SCENARIO,
    SUMMARY,
    TABLE_FILES,
    WINDOWS,
    RunFolderError,
)
from svcsim.results.outdir import Reservation, reserve
from svcsim.results.schema import TABLES, conform, empty_frame
from svcsim.results.summary import build_summary, dumps_json
from svcsim.results.weights import traffic_table
from svcsim.results.windows import FailureWindow, failure_windows

__all__ = [
    "FIGURES",
    "MANIFEST",
    "PARTIAL_MARK",
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

_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_FIGURE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_PARQUET_COMPRESSION: Final = "zstd"


def write_run(
    out_dir: str | os.PathLike[str] | Reservation,
    manifest: Mapping[str, Any],
    frames: Mapping[str, pd.DataFrame],
    summary: Mapping[str, Any],
    figures: Mapping[str, bytes] | None = None,
    *,
    windows: Sequence[FailureWindow] | None = None,
    overwrite: bool = False,
    on_file_written: Callable[[str], None] | None = None,
    scenario_text: str | None = None,
    streamed: Collection[str] = (),
) -> Path:
    """Write a complete run folder at ``out_dir`` and return its path.

    ``out_dir`` is a path, or a :class:`~svcsim.results.outdir.Reservation` made before the
    simulation started (:func:`~svcsim.results.outdir.reserve`). ``frames`` maps table names
    (``requests``, ``events``, ``syncs``, ``conntrack``, ...) to DataFrames with the schema's
    columns; they are conformed to the spec dtypes (:func:`~svcsim.results.schema.conform`)
    and a missing table is written empty (``request_counts`` is written only when it has rows:
    record level ``failures-and-aggregates``). ``windows`` defaults to
    ``failure_windows`` of the frames. ``figures`` maps a name (``"shares"`` or
    ``"shares.png"``) to PNG bytes. ``on_file_written`` is called with each file's relative
    path once it is durable (progress reporting). ``scenario_text`` is written as
    ``scenario.yaml`` (the self-contained scenario a replay reads). ``streamed`` names the
    tables the recorder already wrote into the reservation's partial folder
    (:meth:`~svcsim.results.records.Recorder.stream_to`): they are not written again.

    An existing empty directory is replaced. A non-empty one raises :class:`RunFolderError`
    unless ``overwrite`` and it is a previous svcsim run (see :mod:`svcsim.results.outdir`);
    then the new folder is swapped in (atomically where the OS offers
    ``renameat2(RENAME_EXCHANGE)``, else by two renames) and the old one deleted. Operating
    system errors (read-only file system, no space, a path under a regular file) raise
    :class:`RunFolderError` with one line. On any error nothing is left at ``out_dir`` that
    was not there before, and the partial directory is removed. The folder gets mode 0755.
    """
    if streamed and not isinstance(out_dir, Reservation):
        raise ValueError("streamed tables live in a reservation's partial folder: pass it")
    unknown = sorted(set(frames) - set(TABLES))
    if unknown:
        raise ValueError(f"unknown record tables {unknown}; expected {list(TABLES)}")
    # A streamed table is in the folder already, and read here only to compute the windows:
    # conforming it otherwise would copy it whole for nothing (a day's conntrack samples
    # are hundreds of MiB).
    unread = frozenset(streamed) if windows is not None else frozenset()
    tables = {
        t: empty_frame(t) if t in unread or t not in frames else conform(frames[t], t)
        for t in TABLES
    }
    counted = len(tables["request_counts"]) > 0
    if windows is None:
        windows = failure_windows(tables["requests"], traffic=traffic_table(tables))
    # Serialise the small files first: a bad value fails before anything touches the disk.
    texts = {
        WINDOWS: dumps_json([w.to_dict() for w in windows]),
        SUMMARY: dumps_json(summary),
        MANIFEST: dumps_json({**manifest, "run_format": RUN_FORMAT}),
    }
    pictures = _figure_files(figures or {})
    done = on_file_written or (lambda _name: None)

    def fill(tmp: Path) -> None:
        for table, frame in tables.items():
            if table in LEVEL_TABLES and not counted and table not in streamed:
                continue  # a table of the other record level
            if table not in streamed:
                _write_parquet(frame, tmp / TABLE_FILES[table])
            done(TABLE_FILES[table])
        for name in (WINDOWS, SUMMARY):
            _write_bytes(tmp / name, texts[name].encode())
            done(name)
        if scenario_text is not None:
            _write_bytes(tmp / SCENARIO, scenario_text.encode())
            done(SCENARIO)
        if pictures:
            (tmp / FIGURES).mkdir()
            for name, data in pictures.items():
                _write_bytes(tmp / FIGURES / name, data)
                done(f"{FIGURES}/{name}")
            _fsync_dir(tmp / FIGURES)
        # The manifest last: a folder with a manifest has everything else.
        _write_bytes(tmp / MANIFEST, texts[MANIFEST].encode())
        done(MANIFEST)

    return _write_into(out_dir, fill, overwrite=overwrite)


def write_failed_run(
    out_dir: str | os.PathLike[str] | Reservation,
    manifest: Mapping[str, Any],
    *,
    overwrite: bool = False,
) -> Path:
    """Write the folder of a run that raised: only its manifest, naming the exception.

    Written atomically like :func:`write_run`, but it holds no summary, so it never looks
    complete: :func:`~svcsim.results.load.load` refuses it and quotes the exception.
    """
    text = dumps_json({**manifest, "run_format": RUN_FORMAT})
    return _write_into(out_dir, lambda tmp: _write_bytes(tmp / MANIFEST, text.encode()),
                       overwrite=overwrite)  # fmt: skip


def _write_into(
    out_dir: str | os.PathLike[str] | Reservation,
    fill: Callable[[Path], None],
    *,
    overwrite: bool,
) -> Path:
    """Reserve ``out_dir`` (unless given a reservation), ``fill`` its partial folder, install."""
    if isinstance(out_dir, Reservation):
        spot = out_dir
    else:
        spot = reserve(Path(out_dir), overwrite=overwrite)
    try:
        try:
            fill(spot.partial)
            _fsync_dir(spot.partial)
            spot.partial.chmod(0o755)
        except OSError as exc:
            raise RunFolderError(
                f"{spot.out}: cannot write the run folder: {exc.strerror or exc}"
            ) from exc
        spot.install(overwrite=overwrite)
    except BaseException:
        spot.abandon()
        raise
    _fsync_dir(spot.out.parent)
    return spot.out


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
