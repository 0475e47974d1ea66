"""Tests for streaming records (svcsim.results.stream, Recorder.stream_to): same tables, bounded
memory, same bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from svcsim.results.records import Recorder
from svcsim.results.schema import RecordLevel
from tests.results.tables import batch

ROWS = 7
"""A tiny row group, so a few batches make many of them."""


def _fill(recorder: Recorder, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    for k in range(6):
        n = int(rng.integers(1, 15))
        columns = batch(n, rng)
        columns["t_s"] = columns["t_s"] + 10.0 * k
        columns["end_s"] = columns["t_s"] + columns["latency_s"]
        failed = rng.random(n) < 0.3
        columns["outcome"] = np.where(failed, "refused", "ok")
        columns["cause"] = np.where(failed, "no-endpoints", "")
        recorder.add_requests(**columns)
        for j in range(3):
            recorder.add_event(10.0 * k + j, "rollout", node="node-1", object=f"pod/p{j}")
            recorder.add_conntrack_sample(10.0 * k + j, f"node-{j}", j * k, 100)
        recorder.add_sync(node="node-2", start_s=10.0 * k, end_s=10.0 * k + 0.5, full=False,
                          ok=True, rules_written=k)  # fmt: skip
        recorder.add_endpoint_set(10.0 * k + 0.5, "node-2", "default/web:80", ["10.0.0.1:80"])
        recorder.advance(10.0 * k)
    recorder.finish()


@pytest.mark.parametrize("level", list(RecordLevel))
def test_streamed_tables_read_back_as_held_ones(level: RecordLevel, tmp_path: Path) -> None:
    held, streamed = Recorder(level, span_s=60.0), Recorder(level, span_s=60.0)
    streamed.stream_to(tmp_path, row_group_rows=ROWS)
    _fill(held)
    _fill(streamed)
    expected, got = held.frames(), streamed.frames()
    assert expected.keys() == got.keys()
    for table, frame in expected.items():
        pd.testing.assert_frame_equal(got[table], frame, obj=table)
    files = {p.name for p in tmp_path.iterdir()}
    assert ("request_counts.parquet" in files) is (level is RecordLevel.FAILURES_AND_AGGREGATES)
    groups = pq.ParquetFile(tmp_path / "conntrack.parquet").metadata.num_row_groups
    assert groups == -(-len(expected["conntrack"]) // ROWS)


def test_a_stream_holds_less_than_a_row_group(tmp_path: Path) -> None:
    recorder = Recorder()
    recorder.stream_to(tmp_path, row_group_rows=ROWS)
    rng = np.random.default_rng(0)
    for _ in range(5):
        recorder.add_requests(**batch(9, rng))
        assert 0 < recorder.streams["requests"].rows_held < ROWS
    with pytest.raises(RuntimeError, match="call finish"):
        recorder.frames()


def test_same_records_same_bytes_and_discard_removes_the_files(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        recorder = Recorder(RecordLevel.FAILURES_AND_AGGREGATES, span_s=60.0)
        recorder.stream_to(tmp_path / name, row_group_rows=ROWS)
        _fill(recorder, seed=3 if name != "c" else 4)
    for file in (tmp_path / "a").iterdir():
        assert file.read_bytes() == (tmp_path / "b" / file.name).read_bytes(), file.name
    assert (tmp_path / "a" / "requests.parquet").read_bytes() != (
        tmp_path / "c" / "requests.parquet"
    ).read_bytes()
    recorder = Recorder()
    recorder.stream_to(tmp_path / "c", row_group_rows=ROWS)
    recorder.add_requests(**batch(20, np.random.default_rng(1)))
    recorder.discard()
    assert not (tmp_path / "c" / "events.parquet").exists()


@pytest.mark.parametrize("streamed", [False, True])
def test_conntrack_samples_in_one_call_are_the_rows_one_at_a_time(
    streamed: bool, tmp_path: Path
) -> None:
    """A tick's samples added at once: same rows, same hand-offs, hence the same file bytes."""
    one, bulk = Recorder(), Recorder()
    if streamed:
        for recorder, name in ((one, "one"), (bulk, "bulk")):
            (tmp_path / name).mkdir()
            recorder.stream_to(tmp_path / name, row_group_rows=ROWS)
    nodes = [f"node-{j}" for j in range(5)]
    for tick in range(6):  # 30 rows: hand-offs fall inside ticks
        entries = [tick * j for j in range(5)]
        limits = [100 + j for j in range(5)]
        for node, n, limit in zip(nodes, entries, limits, strict=True):
            one.add_conntrack_sample(float(tick), node, n, limit)
        bulk.add_conntrack_samples(float(tick), nodes, entries, limits)
    one.finish()
    bulk.finish()
    pd.testing.assert_frame_equal(bulk.frames()["conntrack"], one.frames()["conntrack"])
    if streamed:
        name = "conntrack.parquet"
        assert (tmp_path / "bulk" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()


def test_conntrack_samples_need_one_value_per_node() -> None:
    with pytest.raises(ValueError, match="2 nodes, 1 entries"):
        Recorder().add_conntrack_samples(0.0, ["a", "b"], [1], [2, 2])
