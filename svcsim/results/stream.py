"""Record tables written to a run's partial folder in Parquet row groups while it runs.

A :class:`TableStream` takes blocks of rows of one record table
(:data:`~svcsim.results.schema.TABLES`) and writes them as row groups of
:data:`ROW_GROUP_ROWS` rows into the run's partial folder (:mod:`svcsim.results.outdir`), so a
run holds at most about one row group per table in memory however long it simulates
(DESIGN.md, decision 9). The partial folder is renamed into place only when the run is whole;
a failed or interrupted run removes it, and :meth:`TableStream.discard` closes and deletes a
stream's file first.

String columns (category, Enum and free text) are written as dictionary-encoded strings, so
``pyarrow`` and ``pandas.read_parquet`` read category columns back as categoricals;
:func:`~svcsim.results.schema.conform` sorts their categories when
:func:`~svcsim.results.load.load` reads them, exactly as for a table written in one piece.
Row-group boundaries depend only on the row count: the same rows give the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

from svcsim.results.layout import TABLE_FILES
from svcsim.results.schema import TABLES, Kind

ROW_GROUP_ROWS: Final = 1 << 18
"""Rows per Parquet row group: what a stream holds at most before writing (a few MiB)."""

HAND_OFF_ROWS: Final = 1 << 14
"""Rows a recorder gathers in its own form before handing them to the stream (which keeps
them compactly, as Arrow arrays, until a row group is full)."""

PARQUET_COMPRESSION: Final = "zstd"
"""The codec of every Parquet file of a run folder."""

_STRING: Final = pa.dictionary(pa.int32(), pa.string())

_ARROW_TYPES: Final[Mapping[Kind, Any]] = {
    Kind.FLOAT64: pa.float64(),
    Kind.INT16: pa.int16(),
    Kind.INT64: pa.int64(),
    Kind.BOOL: pa.bool_(),
    Kind.STR: pa.string(),
    Kind.CATEGORY: _STRING,
    Kind.ENUM: _STRING,
}


def arrow_schema(table: str, extra: Mapping[str, Any] | None = None) -> Any:
    """The Arrow schema a streamed ``table`` is written with (plus ``extra`` columns)."""
    fields = [(c.name, _ARROW_TYPES[c.kind]) for c in TABLES[table]]
    return pa.schema([*fields, *(extra or {}).items()])


def coded_strings(codes: Any, strings: Any) -> Any:
    """A dictionary array: ``codes`` (integers) into ``strings`` (the dictionary)."""
    return pa.DictionaryArray.from_arrays(
        pa.array(np.asarray(codes, dtype=np.int32)), pa.array(strings, type=pa.string())
    )


class TableStream:
    """One record table, written to ``<folder>/<table>.parquet`` in row groups.

    :meth:`add` takes a block of columns (numpy arrays, or Arrow arrays for string columns;
    see :func:`coded_strings`). :meth:`close` writes what is left (an empty table if nothing
    came) and makes the file durable.
    """

    def __init__(
        self,
        folder: Path,
        table: str,
        *,
        extra: Mapping[str, Any] | None = None,
        row_group_rows: int = ROW_GROUP_ROWS,
    ) -> None:
        if row_group_rows <= 0:
            raise ValueError(f"non-positive row group size {row_group_rows!r}")
        self.table = table
        self.path = folder / TABLE_FILES[table]
        self.schema = arrow_schema(table, extra)
        self.row_group_rows = row_group_rows
        self._blocks: list[Any] = []
        self._held = 0
        self._writer: Any = None
        self.closed = False
        self.rows_written = 0

    @property
    def rows_held(self) -> int:
        """Rows waiting in memory for the next row group (less than one group's worth)."""
        return self._held

    def add(self, columns: Mapping[str, Any]) -> None:
        """Append a block of rows, one entry per column of the schema."""
        if self.closed:
            raise ValueError(f"{self.path.name}: stream already closed")
        arrays = [_arrow_column(columns[f.name], f.type) for f in self.schema]
        block = pa.record_batch(arrays, schema=self.schema)
        if block.num_rows == 0:
            return
        self._blocks.append(block)
        self._held += block.num_rows
        while self._held >= self.row_group_rows:
            self._write(self.row_group_rows)

    def close(self) -> None:
        """Write the rows held and the file's footer; fsync it."""
        if self.closed:
            return
        while self._held:
            self._write(min(self._held, self.row_group_rows))
        if self._writer is None:
            self._open()
        self._writer.close()
        with self.path.open("rb+") as f:
            os.fsync(f.fileno())
        self.closed = True

    def discard(self) -> None:
        """Close and remove the file (the run failed or was interrupted)."""
        self._blocks, self._held = [], 0
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                self._writer = None
        self.closed = True
        self.path.unlink(missing_ok=True)

    def _open(self) -> None:
        self._writer = pq.ParquetWriter(
            self.path, self.schema, compression=PARQUET_COMPRESSION, write_statistics=True
        )

    def _write(self, rows: int) -> None:
        """Write the first ``rows`` held rows as one row group."""
        # Blocks' dictionaries differ (categories grow as the run goes): one per row group.
        table = pa.Table.from_batches(self._blocks, schema=self.schema).unify_dictionaries()
        head, rest = table.slice(0, rows), table.slice(rows)
        if self._writer is None:
            self._open()
        self._writer.write_table(head.combine_chunks(), row_group_size=rows)
        self.rows_written += rows
        self._blocks = rest.combine_chunks().to_batches() if rest.num_rows else []
        self._held = rest.num_rows


def _arrow_column(values: Any, kind: Any) -> Any:
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values if values.type == kind else values.cast(kind)
    if pa.types.is_dictionary(kind):
        return pa.array(np.asarray(values, dtype=object), type=pa.string()).dictionary_encode()
    return pa.array(np.asarray(values), type=kind)
