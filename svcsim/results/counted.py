"""A run's counted attempts (``request_counts``), in memory or read row group by row group.

At record level ``failures-and-aggregates`` a day-long run counts tens of millions of rows
(at 100 nodes x 20 Services x 10 endpoints the per-second counts barely compress: about one
attempt per row). Reading them back whole would cost gigabytes, so the analysis
(:mod:`svcsim.results.fold`) and the figures (:mod:`svcsim.plots.view`) fold over them in
batches of at most :data:`BATCH_ROWS` rows: memory is bounded by what those outputs need, not
by the number of attempts. :meth:`CountedAttempts.frame` still gives the whole table (read on
first use and kept) to a notebook that asks for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

from svcsim.results.schema import conform, empty_frame
from svcsim.results.stream import ROW_GROUP_ROWS

BATCH_ROWS: Final = ROW_GROUP_ROWS
"""Rows per batch a fold reads (a streamed file's row group)."""

TABLE: Final = "request_counts"


class CountedAttempts:
    """The ``request_counts`` table of a run: a DataFrame, or a Parquet file not yet read.

    ``batches`` yields DataFrames of at most ``rows`` rows, in table order, without reading
    the whole file: the table's columns with their stored dtypes, except that the categories
    of a category column are those of its batch, in no particular order (sorting them, as
    :func:`~svcsim.results.schema.conform` does, costs six times the read; folds compare
    values, not codes). ``frame`` reads it all (once), conformed. A file that cannot be read
    raises what :mod:`pyarrow` raises.
    """

    __slots__ = ("_frame", "_path", "_rows")

    def __init__(self, frame: pd.DataFrame | None = None, *, path: Path | None = None) -> None:
        if (frame is None) == (path is None):
            raise ValueError("CountedAttempts: give either a frame or a path")
        self._frame = frame
        self._path = path
        self._rows: int | None = None if frame is None else len(frame)

    @classmethod
    def empty(cls) -> CountedAttempts:
        """No counted attempts (a run at record level ``every-request``)."""
        return cls(empty_frame(TABLE))

    @property
    def path(self) -> Path | None:
        """The Parquet file the rows are read from (None: they are in memory)."""
        return self._path

    def __len__(self) -> int:
        """Rows of the table (from the file's footer, without reading the rows)."""
        if self._rows is None:
            assert self._path is not None
            self._rows = int(pq.ParquetFile(self._path).metadata.num_rows)
        return self._rows

    def frame(self) -> pd.DataFrame:
        """The whole table (read from the file on first use, then kept)."""
        if self._frame is None:
            assert self._path is not None
            self._frame = conform(pq.read_table(self._path).to_pandas(), TABLE)
        return self._frame

    def batches(self, rows: int = BATCH_ROWS) -> Iterator[pd.DataFrame]:
        """The table in conformed pieces of at most ``rows`` rows, in order."""
        if rows <= 0:
            raise ValueError(f"non-positive batch size {rows!r}")
        if self._frame is not None:
            for start in range(0, len(self._frame), rows):
                yield self._frame.iloc[start : start + rows]
            return
        assert self._path is not None
        with pq.ParquetFile(self._path) as file:
            for batch in file.iter_batches(batch_size=rows):
                yield batch.to_pandas()

    def distinct(self, column: str) -> set[str]:
        """The distinct values of a string column, read one column and row group at a time."""
        if self._frame is not None:
            return {str(v) for v in self._frame[column].unique()}
        assert self._path is not None
        found: set[str] = set()
        with pq.ParquetFile(self._path) as file:
            for batch in file.iter_batches(columns=[column]):
                values = batch.column(0)
                if pa.types.is_dictionary(values.type):
                    values = values.dictionary.take(pc.unique(values.indices))
                found.update(str(v) for v in pc.unique(values).to_pylist())
        return found
