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

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

from svcsim.results.schema import conform, empty_frame
from svcsim.results.tableread import open_parquet

BATCH_ROWS: Final = 1 << 16
"""Rows per batch a fold reads: a quarter of a streamed row group (measured: a lower peak
than whole row groups, and no slower)."""

TABLE: Final = "request_counts"


class CountedAttempts:
    """The ``request_counts`` table of a run: a DataFrame, or a Parquet file not yet read.

    ``batches`` yields :class:`CodedBatch` pieces of at most ``rows`` rows, in table order,
    without reading the whole file (nor making a string per row: a conformed DataFrame per
    batch cost six times the read); ``frame`` reads it all (once), conformed. A file that
    cannot be read raises what :mod:`pyarrow` raises.
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

    def batches(self, rows: int = BATCH_ROWS) -> Iterator[CodedBatch]:
        """The table in pieces of at most ``rows`` rows, in order (see :class:`CodedBatch`)."""
        if rows <= 0:
            raise ValueError(f"non-positive batch size {rows!r}")
        if self._frame is not None:
            for start in range(0, len(self._frame), rows):
                yield CodedBatch.of_frame(self._frame.iloc[start : start + rows])
            return
        assert self._path is not None
        with open_parquet(self._path) as file:
            # One thread: decoding on several costs more CPU in all (measured), and a run
            # drawing its figures or a sweep already keeps every core busy.
            for batch in file.iter_batches(batch_size=rows, use_threads=False):
                yield CodedBatch.of_arrow(batch)

    def distinct(self, column: str) -> set[str]:
        """The distinct values of a string column, read one column and row group at a time."""
        if self._frame is not None:
            return {str(v) for v in self._frame[column].unique()}
        assert self._path is not None
        found: set[str] = set()
        with open_parquet(self._path) as file:
            for batch in file.iter_batches(columns=[column], use_threads=False):
                values = batch.column(0)
                if pa.types.is_dictionary(values.type):
                    values = values.dictionary.take(pc.unique(values.indices))
                found.update(str(v) for v in pc.unique(values).to_pylist())
        return found


@dataclass(frozen=True, slots=True)
class CodedBatch:
    """Some rows of ``request_counts``: numbers as arrays, strings as codes into names.

    A fold reads strings only through :meth:`codes` (the names are few, the rows many), so
    no string is made per row: the Arrow dictionary indices of the file, or a categorical's
    codes, are used as they are.
    """

    numbers: Mapping[str, npt.NDArray[Any]]
    coded: Mapping[str, tuple[npt.NDArray[np.int64], list[str]]]

    def __len__(self) -> int:
        return len(self.numbers["t_s"])

    def codes(self, column: str) -> tuple[npt.NDArray[np.int64], list[str]]:
        """``(codes, names)`` of a string column: row ``i`` holds ``names[codes[i]]``."""
        return self.coded[column]

    def lookup(self, column: str, index: Mapping[str, int]) -> npt.NDArray[np.int64]:
        """Per row, ``index`` of the row's value in a string column (-1 if not in it)."""
        codes, names = self.coded[column]
        table = np.asarray([index.get(n, -1) for n in names], dtype=np.int64)
        out: npt.NDArray[np.int64] = table[codes] if len(names) else np.full(len(codes), -1)
        return out

    def where(self, column: str, value: str) -> npt.NDArray[np.bool_]:
        """Rows whose string ``column`` holds ``value``."""
        codes, names = self.coded[column]
        hits = [i for i, n in enumerate(names) if n == value]
        return np.isin(codes, hits) if hits else np.zeros(len(codes), dtype=np.bool_)

    @classmethod
    def of_frame(cls, frame: pd.DataFrame) -> CodedBatch:
        """A batch of a DataFrame's rows (category columns or plain strings)."""
        numbers = {c: frame[c].to_numpy() for c in _NUMBERS if c in frame.columns}
        coded = {}
        for column in _STRINGS:
            values = frame[column]
            cat = values.array if isinstance(values.dtype, pd.CategoricalDtype) else None
            if cat is None:
                cat = pd.Categorical(values)
            coded[column] = (
                np.asarray(cat.codes, dtype=np.int64),
                [str(c) for c in cat.categories],
            )
        return cls(numbers, coded)

    @classmethod
    def of_arrow(cls, batch: Any) -> CodedBatch:
        """A batch of a Parquet file's rows (string columns dictionary-encoded)."""
        numbers = {
            c: batch.column(c).to_numpy(zero_copy_only=False)
            for c in _NUMBERS
            if c in batch.schema.names
        }
        coded = {}
        for column in _STRINGS:
            values = batch.column(column)
            if not pa.types.is_dictionary(values.type):
                values = pc.dictionary_encode(values)
            coded[column] = (
                values.indices.to_numpy(zero_copy_only=False).astype(np.int64),
                [str(v) for v in values.dictionary.to_pylist()],
            )
        return cls(numbers, coded)


_NUMBERS: Final = ("t_s", "first_t_s", "new_flow", "requests")
_STRINGS: Final = ("src_node", "service", "endpoint", "pod", "outcome")
