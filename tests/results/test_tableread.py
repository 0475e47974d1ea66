"""Record tables read back batch by batch: the frames (and errors) a whole read gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from svcsim.results.schema import conform
from svcsim.results.stream import TableStream
from svcsim.results.tableread import open_parquet, read_frame


def _whole(path: Path, table: str) -> pd.DataFrame:
    """What loading did before: the whole file, then conform."""
    return conform(pq.read_table(path).to_pandas(), table)


def _conntrack(n: int) -> dict[str, object]:
    nodes = np.asarray([f"node-{i % 7}" for i in range(n)], dtype=object)
    return {
        "t_s": np.arange(n, dtype=np.float64) / 3.0,
        "node": nodes,
        "entries": np.arange(n, dtype=np.int64) % 97,
        "max_entries": np.full(n, 1000, dtype=np.int64),
    }


def _events(n: int) -> dict[str, object]:
    return {
        "t_s": np.arange(n, dtype=np.float64),
        "kind": np.asarray(["pod-ready", "slice-updated"] * (n // 2) + ["pod-ready"] * (n % 2)),
        "node": np.asarray([f"node-{i % 3}" if i % 4 else "" for i in range(n)], dtype=object),
        "object": np.asarray([f"default/web-{i}" for i in range(n)], dtype=object),
        "detail": np.asarray([f"detail {i % 5}" for i in range(n)], dtype=object),
    }


@pytest.mark.parametrize(
    ("table", "columns", "rows", "group"),
    [
        # Several row groups whose dictionaries differ (categories grow as a run goes), read
        # in batches that cross them.
        ("conntrack", _conntrack, 5000, 1024),
        ("conntrack", _conntrack, 1, 1024),
        # Free text (str) and Enum columns beside category ones.
        ("events", _events, 777, 100),
    ],
)
def test_streamed_tables_read_as_a_whole_read_gives(
    tmp_path: Path,
    table: str,
    columns: object,
    rows: int,
    group: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = TableStream(tmp_path, table, row_group_rows=group)
    data = columns(rows)  # type: ignore[operator]
    for lo in range(0, rows, 300):  # blocks with their own dictionaries
        stream.add({k: v[lo : lo + 300] for k, v in data.items()})
    stream.close()
    with monkeypatch.context() as patch:

        def whole(*_args: object, **_kwargs: object) -> None:
            raise AssertionError("a clean file is read in batches, never whole")

        patch.setattr(pq.ParquetFile, "read", whole)
        got = read_frame(stream.path, table, rows=250)
    pd.testing.assert_frame_equal(got, _whole(stream.path, table))
    assert got.equals(_whole(stream.path, table))


def _write(path: Path, frame: pd.DataFrame) -> Path:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def test_a_table_written_whole_reads_the_same(tmp_path: Path) -> None:
    """Strings as pandas writes them (large strings, no dictionaries), and an empty table."""
    frame = conform(pd.DataFrame(_events(50)), "events")
    path = _write(tmp_path / "events.parquet", frame)
    assert read_frame(path, "events", rows=16).equals(_whole(path, "events"))
    empty = _write(tmp_path / "empty.parquet", frame.iloc[:0])
    assert read_frame(empty, "events").equals(_whole(empty, "events"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # A missing node: conform's error, as for a whole read.
        (lambda f: f.assign(node=f["node"].astype(object).where(f.index != 3, None)),
         "conntrack.node: missing value"),
        # A missing count turns the column into floats: refused as before.
        (lambda f: f.assign(entries=f["entries"].astype(float).where(f.index != 2, np.nan)),
         "conntrack.entries: dtype float64 cannot hold int64"),
        # A column the schema does not know is kept, after the known ones.
        (lambda f: f.assign(extra=np.arange(len(f))), ""),
    ],
)  # fmt: skip
def test_odd_files_read_as_a_whole_read_gives(tmp_path: Path, change: object, message: str) -> None:
    frame = change(pd.DataFrame(_conntrack(10)))  # type: ignore[operator]
    path = _write(tmp_path / "conntrack.parquet", frame)
    if message:
        with pytest.raises(ValueError, match=message):
            _whole(path, "conntrack")
        with pytest.raises(ValueError, match=message):
            read_frame(path, "conntrack", rows=4)
    else:
        got = read_frame(path, "conntrack", rows=4)
        assert got.equals(_whole(path, "conntrack")) and list(got.columns)[-1] == "extra"


def test_a_file_read_in_batches_holds_about_one_row_group(tmp_path: Path) -> None:
    """Reading a long file batch by batch does not buffer the rest of it (pyarrow's pre_buffer)."""
    rng = np.random.default_rng(5)
    rows, groups = 1 << 14, 24
    stream = TableStream(tmp_path, "conntrack", row_group_rows=rows)
    for _ in range(groups):
        columns = _conntrack(rows)
        # Random values: the file does not compress away, each row group holds ~400 KiB.
        columns["t_s"] = rng.random(rows)
        columns["entries"] = rng.integers(0, 1 << 62, rows)
        stream.add(columns)
    stream.close()
    group_bytes = pq.ParquetFile(stream.path).metadata.row_group(0).total_byte_size
    most = 0
    with open_parquet(stream.path) as file:
        for _ in file.iter_batches(batch_size=rows // 4, use_threads=False):
            most = max(most, pa.total_allocated_bytes())
    assert most < 4 * group_bytes < groups * group_bytes // 4
