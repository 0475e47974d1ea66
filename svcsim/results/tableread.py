"""A record table read back from its Parquet file in row groups, straight into its dtypes.

``pq.read_table(path).to_pandas()`` holds the whole file as Arrow arrays beside the DataFrame
made from them, and :func:`~svcsim.results.schema.conform` then makes its own columns: a
4-hour day's conntrack samples (1.4 M rows, 34 MiB as a DataFrame) peaked 160 MiB above what
they hold. :func:`read_frame` reads a batch of rows at a time instead, keeping numbers as
numpy arrays and strings of category columns as codes into one vocabulary per column, and
builds the DataFrame once: the peak is about twice the table, whatever the run's length.

The result is the one ``conform(pq.read_table(path).to_pandas(), table)`` gives (tests
compare), errors included: a missing value or a column of the wrong type raises the same
:class:`ValueError` from :func:`~svcsim.results.schema.conform`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

from svcsim.results.schema import TABLES, Kind, conform

BATCH_ROWS: Final = 1 << 16
"""Rows converted at a time."""

_CODED: Final = frozenset({Kind.CATEGORY, Kind.ENUM})
"""Kinds read as codes into a vocabulary."""


def read_frame(path: Path, table: str, rows: int = BATCH_ROWS) -> pd.DataFrame:
    """Record table ``table`` from the Parquet file at ``path``, conformed (module docstring).

    A file whose columns are not exactly the table's, or that has a missing value, is read
    whole, as before (and :func:`~svcsim.results.schema.conform` says what is wrong). Raises
    what :mod:`pyarrow` raises for an unreadable file.
    """
    spec = TABLES[table]
    with open_parquet(path) as file:
        names = list(file.schema_arrow.names)
        total = int(file.metadata.num_rows)
        if sorted(names) != sorted(c.name for c in spec) or not total:
            return conform(file.read().to_pandas(), table)
        parts = {c.name: _Column(c.kind, total) for c in spec}
        for batch in file.iter_batches(batch_size=rows):
            if any(batch.column(name).null_count for name in parts):
                return conform(file.read().to_pandas(), table)
            for name, column in parts.items():
                column.add(batch.column(name))
    frame = pd.DataFrame({c.name: parts[c.name].values() for c in spec})
    del parts
    pa.default_memory_pool().release_unused()  # the batches' decoding buffers
    return conform(frame, table)


def open_parquet(path: Path) -> Any:
    """``path`` opened to be read a batch at a time, holding about one row group's bytes.

    Without ``pre_buffer=False`` pyarrow buffers the compressed column chunks of every row
    group it is asked for up front: reading a whole file in batches then holds the whole file
    (measured: 166 MiB of Arrow memory for a 4-hour day's ``request_counts``, about a GiB for
    a day), where one row group's worth (15 MiB) would do.
    """
    return pq.ParquetFile(path, pre_buffer=False)


class _Column:
    """One column's rows, filled batch by batch into an array of the table's length.

    Numbers are copied out of each batch (so its Arrow buffers go with it), strings of
    category columns become codes into one vocabulary, free text stays Arrow strings.
    """

    def __init__(self, kind: Kind, total: int) -> None:
        self._kind = kind
        self._total = total
        self._filled = 0
        self._array: npt.NDArray[Any] | None = None
        self._text: list[Any] = []
        self._vocab: dict[str, int] = {}

    def add(self, values: Any) -> None:
        if self._kind is Kind.STR:
            if pa.types.is_dictionary(values.type):
                values = values.dictionary_decode()
            self._text.append(values)
            return
        piece = self._codes(values) if self._kind in _CODED else values.to_numpy(False)
        if self._array is None:
            self._array = np.empty(self._total, dtype=piece.dtype)
        end = self._filled + len(piece)
        self._array[self._filled : end] = piece
        self._filled = end

    def _codes(self, values: Any) -> npt.NDArray[np.int32]:
        """The batch's codes into this column's vocabulary."""
        if not pa.types.is_dictionary(values.type):
            values = values.dictionary_encode()
        vocab = self._vocab
        local = np.asarray(
            [vocab.setdefault(str(v), len(vocab)) for v in values.dictionary.to_pylist()],
            dtype=np.int32,
        )
        index = values.indices.to_numpy(zero_copy_only=False)
        out: npt.NDArray[np.int32] = local[np.asarray(index, dtype=np.int64)]
        return out

    def values(self) -> Any:
        if self._kind is Kind.STR:
            return pa.chunked_array(self._text).to_pandas()  # one file: one type
        assert self._array is not None and self._filled == self._total
        if self._kind in _CODED:
            return pd.Categorical.from_codes(self._array, categories=list(self._vocab))
        return self._array
