"""The columnar recorder a simulation fills, and the record schema it follows.

The schema (Enums, column specs, units) lives in :mod:`svcsim.results.schema` and is re-exported
here. :class:`Recorder` is built for the traffic path's shape: requests arrive in thousands of
vectorised batches adding up to millions of rows, so a batch is validated with a few numpy
operations, copied, and appended to a per-column list; the lists are concatenated once, when
:meth:`Recorder.frames` is called. Control-plane records (events, syncs, conntrack samples) are
few and come one at a time.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

from svcsim.results.aggregate import COUNT_KEYS, CountAggregator, CountBlock
from svcsim.results.bins import grid_cuts
from svcsim.results.counted import CountedAttempts
from svcsim.results.schema import (
    CONNTRACK,
    EVENTS,
    REQUESTS,
    SYNCS,
    TABLES,
    Cause,
    Column,
    EventKind,
    Kind,
    Outcome,
    RecordLevel,
    accepted_kinds,
    check_int_range,
    conform,
    empty_frame,
    numpy_dtype,
)
from svcsim.results.stream import HAND_OFF_ROWS, ROW_GROUP_ROWS, TableStream, coded_strings
from svcsim.results.tableread import read_frame

__all__ = [
    "CONNTRACK",
    "EVENTS",
    "REQUESTS",
    "SYNCS",
    "TABLES",
    "Cause",
    "Column",
    "EventKind",
    "Kind",
    "Outcome",
    "Recorder",
]

REQUEST_NUMBER: Final = "request"
"""Extra column of ``requests`` at record level ``failures-and-aggregates``: each kept attempt's
row number at ``every-request`` (its place among all attempts, in record order)."""

_STRING_KINDS: Final = "UOT"
"""numpy dtype kinds that hold strings: unicode, object, StringDType."""

# An end_s that differs from t_s + latency_s by more than this (relative to the time) is a bug
# in the caller, e.g. swapped columns; rounding alone stays far below it.
_END_TOLERANCE: Final = 1e-9


class Recorder:
    """Collects the records of one run and hands them out as typed DataFrames.

    Requests are appended in batches with :meth:`add_requests`; events, syncs and conntrack
    samples one at a time. Rows keep their append order. :meth:`frames` may be called at any
    time (appending can continue afterwards); it concatenates once and keeps the result, so
    calling it again is cheap.

    At ``level`` :attr:`~RecordLevel.FAILURES_AND_AGGREGATES` only failed attempts are kept
    as ``requests`` rows and every attempt is counted in ``request_counts``
    (:mod:`svcsim.results.aggregate`; ``span_s``, the run's duration, sets the figures' time
    bins the counts are cut at). The simulation then calls :meth:`advance` now and then with
    the time before which every attempt has been added, and :meth:`finish` at the end.
    """

    def __init__(
        self, level: RecordLevel = RecordLevel.EVERY_REQUEST, span_s: float | None = None
    ) -> None:
        self.level = level
        self._counts: CountAggregator | None = None
        self._count_blocks: list[CountBlock] = []
        if level is RecordLevel.FAILURES_AND_AGGREGATES:
            if span_s is None or not span_s > 0:
                raise ValueError(f"{level.value}: needs the run's duration, got {span_s!r}")
            self._counts = CountAggregator(grid_cuts(span_s))
        self._chunks: dict[str, list[npt.NDArray[np.generic]]] = {c.name: [] for c in REQUESTS}
        self._chunks[REQUEST_NUMBER] = []
        # Per category column: value -> code in first-seen order; frames() sorts them.
        self._vocab: dict[str, dict[str, int]] = {
            c.name: {} for c in REQUESTS if c.kind is Kind.CATEGORY
        }
        self._enum_codes: dict[str, dict[str, int]] = {
            c.name: {v: i for i, v in enumerate(c.categories)}
            for c in REQUESTS
            if c.kind is Kind.ENUM
        }
        self._n_requests = 0
        self._n_stored = 0
        self._n_held = 0
        """Requests rows in ``_chunks`` (not yet handed to a stream)."""
        self._streams: dict[str, TableStream] = {}
        self._stream_rows = ROW_GROUP_ROWS
        self._streamed: dict[str, pd.DataFrame] | None = None
        self._rows: dict[str, dict[str, list[object]]] = {
            table: {c.name: [] for c in TABLES[table]}
            for table in TABLES
            if table not in ("requests", "request_counts")
        }

    @property
    def request_count(self) -> int:
        """Request attempts recorded so far."""
        return self._n_requests

    def add_requests(self, **columns: npt.ArrayLike) -> None:
        """Append a batch of request attempts, one keyword per ``requests`` column.

        Every column of :data:`~svcsim.results.schema.REQUESTS` must be given, as a 1-D array;
        all arrays have one length (a scalar is broadcast to it, handy for ``service`` or
        ``src_node``). Floats accept any int/float dtype, ints any integer dtype that fits,
        ``new_flow`` only bool. ``outcome``/``cause`` take strings, Enum members or integer
        codes (index in declaration order). Arrays are copied, so the caller may reuse buffers.
        Raises :class:`ValueError` naming the column on any mismatch; nothing is appended then.
        """
        self._add_requests(columns, {})

    def add_requests_coded(
        self, categories: Mapping[str, Sequence[str]], **columns: npt.ArrayLike
    ) -> None:
        """Like :meth:`add_requests`, with some category columns given as codes.

        For each column named in ``categories`` (only ``category`` columns, such as
        ``workload`` or ``pod``), the array holds integer codes into ``categories[name]``, a
        sequence of strings, instead of the strings themselves. This skips hashing every row's
        string: only the categories the codes use are looked at. The frames come out exactly
        as if the strings had been passed to :meth:`add_requests`.
        """
        for name in categories:
            if name not in self._vocab:
                raise ValueError(f"add_requests_coded: {name!r} is not a category column")
        self._add_requests(columns, categories)

    def _add_requests(
        self, columns: Mapping[str, npt.ArrayLike], categories: Mapping[str, Sequence[str]]
    ) -> None:
        expected = {c.name for c in REQUESTS}
        if set(columns) != expected:
            missing = sorted(expected - set(columns))
            unknown = sorted(set(columns) - expected)
            raise ValueError(f"add_requests: missing {missing}, unknown {unknown}")
        arrays = {name: np.asarray(value) for name, value in columns.items()}
        lengths = {a.shape[0] for a in arrays.values() if a.ndim == 1}
        if any(a.ndim > 1 for a in arrays.values()) or len(lengths) > 1:
            shapes = {name: a.shape for name, a in arrays.items()}
            raise ValueError(f"add_requests: columns differ in shape: {shapes}")
        n = lengths.pop() if lengths else 1
        if n == 0:
            return
        batch = {
            c.name: self._convert(c, arrays[c.name], n)
            if c.name not in categories
            else self._recode(c, arrays[c.name], categories[c.name], n)
            for c in REQUESTS
        }
        _check_times(batch)
        first = self._n_requests
        self._n_requests += n
        if self._counts is not None:
            self._counts.add(batch["t_s"], {k: batch[k] for k in COUNT_KEYS}, batch["new_flow"])
            failed = batch["outcome"] != 0  # Outcome.OK is code 0
            batch = {name: array[failed] for name, array in batch.items()}
            # The row each kept attempt has at every-request: what `explain --request` names.
            batch[REQUEST_NUMBER] = np.flatnonzero(failed).astype(np.int64) + first
            n = int(np.count_nonzero(failed))
            if not n:
                return
        for name, array in batch.items():
            self._chunks[name].append(array)
        self._n_stored += n
        self._n_held += n
        if self._streams and self._n_held >= self._stream_rows:
            self._stream_requests()

    def advance(self, watermark: float) -> None:
        """Every attempt sent before ``watermark`` has been added: make those counts final."""
        if self._counts is not None:
            block = self._counts.finalize(watermark)
            if block is not None:
                self._count_blocks.append(block)
                if self._streams and sum(map(len, self._count_blocks)) >= self._stream_rows:
                    self._stream_counts()

    def finish(self) -> None:
        """The run is over: make every count final; write and close the streams, if any."""
        if self._counts is not None:
            block = self._counts.finish()
            if block is not None:
                self._count_blocks.append(block)
        if self._streams:
            self._stream_requests()
            self._stream_counts()
            for table in self._rows:
                self._stream_rows_of(table)
            for stream in self._streams.values():
                stream.close()

    # --- streaming to the run folder ---------------------------------------------------------

    def stream_to(self, folder: Path, row_group_rows: int = ROW_GROUP_ROWS) -> None:
        """Write every table into ``folder`` in row groups as the run goes (from now on).

        The recorder then holds at most about a row group per table; :meth:`finish` writes
        the rest and closes the files, which :meth:`frames` then reads back.
        :meth:`discard` removes them (a failed run).
        """
        self._stream_rows = min(row_group_rows, HAND_OFF_ROWS)
        for table in TABLES:
            if table == "request_counts" and self._counts is None:
                continue  # the other record level's table
            extra = {REQUEST_NUMBER: pa.int64()} if table == "requests" and self._counts else None
            self._streams[table] = TableStream(
                folder, table, extra=extra, row_group_rows=row_group_rows
            )

    @property
    def streams(self) -> Mapping[str, TableStream]:
        """The open table streams, by table (empty unless :meth:`stream_to` was called)."""
        return MappingProxyType(self._streams)

    def streamed_tables(self) -> frozenset[str]:
        """The tables already written to the run folder (:meth:`stream_to`)."""
        return frozenset(self._streams)

    def discard(self) -> None:
        """Close and remove the streamed files (the run failed)."""
        for stream in self._streams.values():
            stream.discard()

    def _stream_requests(self) -> None:
        if not self._n_held:
            return
        columns: dict[str, object] = {}
        for column in REQUESTS:
            chunks = self._chunks[column.name]
            values = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
            if column.kind is Kind.CATEGORY:
                columns[column.name] = coded_strings(values, list(self._vocab[column.name]))
            elif column.kind is Kind.ENUM:
                columns[column.name] = coded_strings(values, list(column.categories))
            else:
                columns[column.name] = values
        if self._counts is not None:
            columns[REQUEST_NUMBER] = np.concatenate(self._chunks[REQUEST_NUMBER])
        for chunks in self._chunks.values():
            chunks.clear()
        self._n_held = 0
        self._streams["requests"].add(columns)

    def _stream_counts(self) -> None:
        blocks, self._count_blocks = self._count_blocks, []
        if not blocks or "request_counts" not in self._streams:
            return
        columns: dict[str, object] = {
            "t_s": np.concatenate([b.t_s for b in blocks]),
            "first_t_s": np.concatenate([b.first_t_s for b in blocks]),
            "new_flow": np.concatenate([b.new_flow for b in blocks]),
            "requests": np.concatenate([b.requests for b in blocks]),
        }
        for name in ("src_node", "service", "endpoint", "pod"):
            codes = np.concatenate([b.codes[name] for b in blocks])
            columns[name] = coded_strings(codes, list(self._vocab[name]))
        outcomes = np.concatenate([b.codes["outcome"] for b in blocks])
        columns["outcome"] = coded_strings(outcomes, [o.value for o in Outcome])
        self._streams["request_counts"].add(columns)

    def _stream_rows_of(self, table: str) -> None:
        rows = self._rows[table]
        if self._streams and rows[TABLES[table][0].name]:
            self._streams[table].add(rows)
            for values in rows.values():
                values.clear()

    def _added_row(self, table: str) -> None:
        if self._streams and len(self._rows[table][TABLES[table][0].name]) >= self._stream_rows:
            self._stream_rows_of(table)

    def _convert(self, column: Column, array: npt.NDArray[np.generic], n: int) -> npt.NDArray[Any]:
        """Validate one column of a batch and return the array to store (a fresh copy)."""
        try:
            if column.kind in (Kind.CATEGORY, Kind.ENUM):
                grow = column.kind is Kind.CATEGORY
                codes_of = (self._vocab if grow else self._enum_codes)[column.name]
                if array.ndim == 0:
                    # A constant column (one service per batch): encode once.
                    code = self._encode(codes_of, array.reshape(1), grow=grow)
                    return np.full(n, code[0], dtype=code.dtype)
                return self._encode(codes_of, array, grow=grow)
            if array.ndim == 0:
                array = np.broadcast_to(array, (n,))
            if array.dtype.kind not in accepted_kinds(column):
                raise ValueError(f"dtype {array.dtype} cannot hold {column.kind.value}")
            check_int_range(column, array)
            dtype = numpy_dtype(column)
            assert dtype is not None
            return array.astype(dtype, copy=True)
        except ValueError as exc:
            raise ValueError(f"add_requests: column {column.name}: {exc}") from exc

    def _recode(
        self, column: Column, array: npt.NDArray[np.generic], strings: Sequence[str], n: int
    ) -> npt.NDArray[Any]:
        """Map codes into ``strings`` to this recorder's codes (see add_requests_coded)."""
        try:
            if array.dtype.kind not in "iu":
                raise ValueError(f"dtype {array.dtype} does not hold codes")
            if array.ndim == 0:
                array = np.broadcast_to(array, (n,))
            size = len(strings)
            if array.size and (int(array.min()) < 0 or int(array.max()) >= size):
                raise ValueError(f"code out of range 0..{size - 1}")
            array = array.astype(np.intp, copy=False)
            codes_of = self._vocab[column.name]
            mapping = np.zeros(size, dtype=np.int32)
            # Only the strings in use enter the vocabulary (it becomes the categories).
            for i in np.flatnonzero(np.bincount(array, minlength=size)).tolist():
                value = strings[i]
                if not isinstance(value, str):
                    raise ValueError(f"{value!r} is not a string")
                code = codes_of.get(value)
                if code is None:
                    code = codes_of[value] = len(codes_of)
                mapping[i] = code
            recoded: npt.NDArray[Any] = mapping[array]
            return recoded
        except ValueError as exc:
            raise ValueError(f"add_requests_coded: column {column.name}: {exc}") from exc

    @staticmethod
    def _encode(
        codes_of: dict[str, int], array: npt.NDArray[np.generic], *, grow: bool
    ) -> npt.NDArray[Any]:
        """Encode strings (or, for a fixed set, integer codes) as small integer codes."""
        size = len(codes_of)
        if not grow and array.dtype.kind in "iu":
            if array.size and (int(array.min()) < 0 or int(array.max()) >= size):
                raise ValueError(f"code out of range 0..{size - 1}")
            return array.astype(np.int8)
        if array.dtype.kind not in _STRING_KINDS:
            raise ValueError(f"dtype {array.dtype} does not hold strings")
        # Factorise once (hash-based), then look up only the few distinct values.
        local, uniques = pd.factorize(array.astype(object, copy=False))
        if (local < 0).any():
            raise ValueError("missing value")
        mapping = np.empty(len(uniques), dtype=np.int32)
        for i, value in enumerate(uniques):
            if not isinstance(value, str):
                raise ValueError(f"{value!r} is not a string")
            code = codes_of.get(value)
            if code is None:
                if not grow:
                    raise ValueError(f"{value!r} is not one of {sorted(codes_of)}")
                code = codes_of[value] = len(codes_of)
            mapping[i] = code
        codes: npt.NDArray[Any] = mapping[local].astype(np.int32 if grow else np.int8)
        return codes

    def add_event(
        self,
        t_s: float,
        kind: EventKind | str,
        *,
        node: str = "",
        object: str = "",
        detail: str = "",
    ) -> None:
        """Append one control-plane event; ``kind`` must be an :class:`EventKind` value."""
        rows = self._rows["events"]
        kind_value = EventKind(kind).value
        if self._counts is not None:
            self._counts.add_cuts((t_s,))
        for name, value in (
            ("t_s", float(t_s)),
            ("kind", kind_value),
            ("node", str(node)),
            ("object", str(object)),
            ("detail", str(detail)),
        ):
            rows[name].append(value)
        self._added_row("events")

    def add_sync(
        self,
        *,
        node: str,
        start_s: float,
        end_s: float,
        full: bool,
        ok: bool,
        rules_written: int,
        programming_latency_s: float = math.nan,
        applied_through_s: float = math.nan,
    ) -> None:
        """Append one kube-proxy sync; ``duration_s`` is derived as ``end_s - start_s``.

        ``programming_latency_s`` is NaN when the sync applied no change with a trigger time
        (and for failed syncs, which upstream does not observe either).
        ``applied_through_s``: the API time of the newest change the sync's state included.
        """
        if end_s < start_s:
            raise ValueError(f"add_sync: end_s {end_s!r} before start_s {start_s!r}")
        rows = self._rows["syncs"]
        if self._counts is not None:
            self._counts.add_cuts((start_s, end_s))
        for name, value in (
            ("node", str(node)),
            ("start_s", float(start_s)),
            ("end_s", float(end_s)),
            ("duration_s", float(end_s) - float(start_s)),
            ("full", bool(full)),
            ("ok", bool(ok)),
            ("rules_written", int(rules_written)),
            ("programming_latency_s", float(programming_latency_s)),
            ("applied_through_s", float(applied_through_s)),
        ):
            rows[name].append(value)
        self._added_row("syncs")

    def add_endpoint_set(
        self, t_s: float, node: str, service: str, endpoints: Iterable[str]
    ) -> None:
        """Append a change of the endpoint set ``node``'s rules spread ``service`` over."""
        rows = self._rows["endpoint_sets"]
        if self._counts is not None:
            self._counts.add_cuts((t_s,))
        for name, value in (
            ("t_s", float(t_s)),
            ("node", str(node)),
            ("service", str(service)),
            ("endpoints", ",".join(sorted(endpoints))),
        ):
            rows[name].append(value)
        self._added_row("endpoint_sets")

    def add_conntrack_sample(self, t_s: float, node: str, entries: int, max_entries: int) -> None:
        """Append one sample of a node's conntrack table size."""
        rows = self._rows["conntrack"]
        for name, value in (
            ("t_s", float(t_s)),
            ("node", str(node)),
            ("entries", int(entries)),
            ("max_entries", int(max_entries)),
        ):
            rows[name].append(value)
        self._added_row("conntrack")

    def add_conntrack_samples(
        self, t_s: float, nodes: Sequence[str], entries: Sequence[int], max_entries: Sequence[int]
    ) -> None:
        """Append one sample of each of ``nodes`` taken at ``t_s`` (one row per node, in order).

        The same rows, handed to the stream at the same places, as :meth:`add_conntrack_sample`
        called for each node in turn; a sampling tick of a 100-node cluster is one call.
        """
        if not len(nodes) == len(entries) == len(max_entries):
            raise ValueError(
                f"add_conntrack_samples: {len(nodes)} nodes, {len(entries)} entries, "
                f"{len(max_entries)} max_entries"
            )
        columns: dict[str, list[object]] = {
            "t_s": [float(t_s)] * len(nodes),
            "node": [str(n) for n in nodes],
            "entries": [int(e) for e in entries],
            "max_entries": [int(m) for m in max_entries],
        }
        self._add_rows("conntrack", columns)

    def _add_rows(self, table: str, columns: Mapping[str, list[object]]) -> None:
        """Append rows column-wise, handing them to the stream where row-by-row adds would."""
        rows = self._rows[table]
        first = TABLES[table][0].name
        n = len(columns[first])
        done = 0
        while done < n:
            # Up to the next hand-off (a streamed recorder hands off at _stream_rows rows).
            room = self._stream_rows - len(rows[first]) if self._streams else n - done
            take = min(n - done, max(room, 1))
            for name, values in columns.items():
                rows[name].extend(values[done : done + take])
            done += take
            self._added_row(table)

    def counted_attempts(self) -> CountedAttempts | None:
        """The streamed ``request_counts`` file, to read in pieces (after :meth:`finish`).

        None unless the run counted its attempts into a stream (:meth:`stream_to` at
        ``failures-and-aggregates``) and counted some.
        """
        stream = self._streams.get("request_counts")
        if stream is None or not stream.closed or not stream.rows_written:
            return None
        return CountedAttempts(path=stream.path)

    def frames(self, skip: Collection[str] = ()) -> dict[str, pd.DataFrame]:
        """All four tables as DataFrames with the spec dtypes (see :mod:`.schema`).

        Keys: ``requests``, ``events``, ``syncs``, ``conntrack``. String-enum columns are
        categoricals whose categories are the Enum's values in declaration order; other
        categorical columns have their distinct values, sorted, as categories. A streamed
        table named in ``skip`` is not read back (nor returned): see
        :meth:`counted_attempts`.
        """
        if self._streams:
            return {k: v for k, v in self._read_streamed(skip).items() if k not in skip}
        out = {"requests": self._requests_frame(), "request_counts": self._counts_frame()}
        for table, rows in self._rows.items():
            if rows[TABLES[table][0].name]:
                out[table] = conform(pd.DataFrame(rows), table)
            else:
                out[table] = empty_frame(table)
        return out

    def _read_streamed(self, skip: Collection[str] = ()) -> dict[str, pd.DataFrame]:
        """The streamed tables, read back from the run folder (after :meth:`finish`)."""
        if not all(s.closed for s in self._streams.values()):
            raise RuntimeError("frames() of a streamed run: call finish() first")
        if self._streamed is None:
            self._streamed = {}
        for table in TABLES:
            if table in self._streamed or table in skip:
                continue
            stream = self._streams.get(table)
            if stream is None:
                self._streamed[table] = empty_frame(table)
            else:
                self._streamed[table] = read_frame(stream.path, table)
        return dict(self._streamed)

    def _counts_frame(self) -> pd.DataFrame:
        if self._counts is None:
            return empty_frame("request_counts")
        held = self._counts.peek()
        blocks = [*self._count_blocks, *([held] if held is not None else [])]
        if not blocks:
            return empty_frame("request_counts")
        data: dict[str, object] = {
            "t_s": np.concatenate([b.t_s for b in blocks]),
            "first_t_s": np.concatenate([b.first_t_s for b in blocks]),
        }
        for name in ("src_node", "service", "endpoint", "pod"):
            codes = np.concatenate([b.codes[name] for b in blocks])
            data[name] = _sorted_categorical(codes, self._vocab[name])
        outcomes = np.concatenate([b.codes["outcome"] for b in blocks]).astype(np.int8)
        data["outcome"] = pd.Categorical.from_codes(outcomes, categories=[o.value for o in Outcome])
        data["new_flow"] = np.concatenate([b.new_flow for b in blocks])
        data["requests"] = np.concatenate([b.requests for b in blocks])
        return pd.DataFrame(data)

    def _requests_frame(self) -> pd.DataFrame:
        if self._n_stored == 0:
            return empty_frame("requests")
        data: dict[str, object] = {}
        for column in REQUESTS:
            chunks = self._chunks[column.name]
            if len(chunks) > 1:
                # Compact, so later calls (and later appends) start from one array.
                chunks[:] = [np.concatenate(chunks)]
            values = chunks[0]
            if column.kind is Kind.CATEGORY:
                data[column.name] = _sorted_categorical(values, self._vocab[column.name])
            elif column.kind is Kind.ENUM:
                data[column.name] = pd.Categorical.from_codes(
                    values.astype(np.int8), categories=list(column.categories)
                )
            else:
                data[column.name] = values
        if self._counts is not None:
            chunks = self._chunks[REQUEST_NUMBER]
            chunks[:] = [np.concatenate(chunks)]
            data[REQUEST_NUMBER] = chunks[0]
        return pd.DataFrame(data)


def _sorted_categorical(codes: npt.NDArray[Any], vocab: dict[str, int]) -> pd.Categorical:
    """Re-code first-seen codes so that the categories come out sorted."""
    values = list(vocab)  # insertion order == code order
    order = sorted(range(len(values)), key=values.__getitem__)
    rank = np.empty(len(values), dtype=np.int32)
    rank[order] = np.arange(len(values), dtype=np.int32)
    return pd.Categorical.from_codes(rank[codes], categories=[values[i] for i in order])


def _check_times(batch: dict[str, npt.NDArray[Any]]) -> None:
    """Reject negative latencies and an ``end_s`` that is not ``t_s + latency_s``."""
    t, end, latency = batch["t_s"], batch["end_s"], batch["latency_s"]
    if np.isnan(t).any():
        raise ValueError("add_requests: t_s must not be NaN")
    if (latency < 0).any() or np.isnan(latency).any():
        raise ValueError("add_requests: latency_s must be >= 0 and not NaN")
    scale = np.maximum(1.0, np.abs(end))
    if (np.abs(end - (t + latency)) > _END_TOLERANCE * scale).any():
        raise ValueError("add_requests: end_s must equal t_s + latency_s")
