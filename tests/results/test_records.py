"""Tests for svcsim.results.records / schema: the recorder and the column spec."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from svcsim.results.records import Recorder
from svcsim.results.schema import (
    REQUESTS,
    TABLES,
    Cause,
    EventKind,
    Kind,
    Outcome,
    conform,
    empty_frame,
)
from tests.results.tables import batch


def test_two_batches_concatenate_in_order_with_spec_dtypes() -> None:
    rng = np.random.default_rng(7)
    rec = Recorder()
    first, second = batch(5, rng), batch(3, rng, outcome=np.full(3, "timeout"))
    second["cause"] = np.array(["stale-rule", "proxy-down", "stale-rule"])
    rec.add_requests(**first)
    rec.add_requests(**second)
    requests = rec.frames()["requests"]
    assert rec.request_count == 8
    np.testing.assert_array_equal(requests["t_s"], np.r_[first["t_s"], second["t_s"]])
    assert list(requests["outcome"]) == ["ok"] * 5 + ["timeout"] * 3
    assert list(requests["cause"])[5:] == ["stale-rule", "proxy-down", "stale-rule"]
    assert list(requests["client"]) == list(first["client"]) + list(second["client"])
    for column in REQUESTS:
        dtype = requests[column.name].dtype
        if column.kind in (Kind.ENUM, Kind.CATEGORY):
            assert isinstance(dtype, pd.CategoricalDtype), column.name
        else:
            assert dtype == np.dtype(column.kind.value), column.name
    assert list(requests["outcome"].cat.categories) == [o.value for o in Outcome]
    assert list(requests["cause"].cat.categories) == [c.value for c in Cause]
    # Free categorical columns: categories are the values seen, sorted.
    assert list(requests["src_node"].cat.categories) == ["node-1", "node-2"]


def test_scalars_broadcast_and_enum_members_and_codes_accepted() -> None:
    rng = np.random.default_rng(1)
    rec = Recorder()
    kwargs = batch(4, rng, service="ns/x:53", workload="dns")
    kwargs["outcome"] = np.array([Outcome.OK, Outcome.REFUSED, Outcome.OK, Outcome.OK])
    kwargs["cause"] = np.array([0, 1, 0, 0], dtype=np.int8)  # codes: "", no-endpoints
    rec.add_requests(**kwargs)
    requests = rec.frames()["requests"]
    assert list(requests["service"]) == ["ns/x:53"] * 4
    assert list(requests["outcome"]) == ["ok", "refused", "ok", "ok"]
    assert list(requests["cause"]) == ["", "no-endpoints", "", ""]


def test_caller_may_reuse_its_buffers() -> None:
    rng = np.random.default_rng(2)
    rec = Recorder()
    kwargs = batch(3, rng)
    expected = kwargs["t_s"].copy()
    rec.add_requests(**kwargs)
    kwargs["t_s"][:] = -1.0
    np.testing.assert_array_equal(rec.frames()["requests"]["t_s"], expected)


def test_frames_twice_and_append_after_frames() -> None:
    rng = np.random.default_rng(3)
    rec = Recorder()
    for _ in range(3):
        rec.add_requests(**batch(2, rng))
    once = rec.frames()["requests"]
    pd.testing.assert_frame_equal(once, rec.frames()["requests"])
    rec.add_requests(**batch(2, rng, src_node="node-0"))
    again = rec.frames()["requests"]
    assert len(again) == 8
    as_text = {"src_node": str}
    pd.testing.assert_frame_equal(again.iloc[:6].astype(as_text), once.astype(as_text))
    assert list(again["src_node"].cat.categories) == ["node-0", "node-1", "node-2"]


def _drop(name: str) -> dict[str, Any]:
    kwargs = batch(3, np.random.default_rng(0))
    del kwargs[name]
    return kwargs


BAD_BATCHES: list[tuple[str, dict[str, Any], str]] = [
    ("missing column", _drop("pod"), "missing ['pod']"),
    (
        "unknown column",
        batch(3, np.random.default_rng(0), colour=np.zeros(3)),
        "unknown ['colour']",
    ),
    ("length mismatch", batch(3, np.random.default_rng(0), pod=np.array(["a", "b"])), "shape"),
    ("2-D column", batch(3, np.random.default_rng(0), conn_id=np.zeros((3, 1), np.int64)), "shape"),
    ("float into bool", batch(3, np.random.default_rng(0), new_flow=np.zeros(3)), "new_flow"),
    ("float into int", batch(3, np.random.default_rng(0), attempt=np.zeros(3)), "attempt"),
    ("int16 overflow", batch(3, np.random.default_rng(0), attempt=np.full(3, 40000)), "range"),
    ("unknown outcome", batch(3, np.random.default_rng(0), outcome=np.full(3, "lost")), "'lost'"),
    ("unknown cause", batch(3, np.random.default_rng(0), cause=np.full(3, "gremlins")), "cause"),
    ("code out of range", batch(3, np.random.default_rng(0), outcome=np.full(3, 9)), "range"),
    ("number as string", batch(3, np.random.default_rng(0), pod=np.arange(3)), "pod"),
    ("missing string", batch(3, np.random.default_rng(0), pod=np.array(["a", None, "b"])), "pod"),
    ("end_s inconsistent", batch(3, np.random.default_rng(0), end_s=np.zeros(3)), "end_s"),
    ("NaN start", batch(3, np.random.default_rng(0), t_s=np.full(3, np.nan)), "t_s"),
    (
        "negative latency",
        batch(3, np.random.default_rng(0), latency_s=np.full(3, -1.0)),
        "latency_s",
    ),
]


@pytest.mark.parametrize(
    ("case", "kwargs", "message"), BAD_BATCHES, ids=[c[0] for c in BAD_BATCHES]
)
def test_bad_batches_are_rejected_whole(case: str, kwargs: dict[str, Any], message: str) -> None:
    rec = Recorder()
    rec.add_requests(**batch(2, np.random.default_rng(9)))
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        rec.add_requests(**kwargs)
    assert rec.request_count == 2
    assert len(rec.frames()["requests"]) == 2


def test_control_plane_records() -> None:
    rec = Recorder()
    rec.add_event(1.5, EventKind.POD_READY, node="node-1", object="pod/default/web-1")
    rec.add_event(2.0, "fault", detail="crash-proxy node-2")
    rec.add_sync(node="node-1", start_s=2.0, end_s=2.25, full=True, ok=True, rules_written=40)
    rec.add_sync(
        node="node-1",
        start_s=3.0,
        end_s=3.5,
        full=False,
        ok=True,
        rules_written=12,
        programming_latency_s=1.25,
    )
    rec.add_conntrack_sample(4.0, "node-2", 120, 131072)
    frames = rec.frames()
    events, syncs, conntrack = frames["events"], frames["syncs"], frames["conntrack"]
    assert list(events["kind"]) == ["pod-ready", "fault"]
    assert list(events["node"]) == ["node-1", ""]
    assert list(events["detail"]) == ["", "crash-proxy node-2"]
    assert list(syncs["duration_s"]) == [0.25, 0.5]
    assert math.isnan(syncs["programming_latency_s"].iloc[0])
    assert syncs["programming_latency_s"].iloc[1] == 1.25
    assert syncs["full"].dtype == np.dtype(bool)
    assert conntrack.iloc[0].to_dict() == {
        "t_s": 4.0,
        "node": "node-2",
        "entries": 120,
        "max_entries": 131072,
    }
    for table, frame in frames.items():
        assert list(frame.columns) == [c.name for c in TABLES[table]]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: r.add_event(0.0, "explosion"), "explosion"),
        (
            lambda r: r.add_sync(
                node="n", start_s=2.0, end_s=1.0, full=True, ok=True, rules_written=1
            ),
            "before start_s",
        ),
    ],
)
def test_bad_control_plane_records(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(Recorder())


def test_empty_recorder_gives_typed_empty_frames() -> None:
    frames = Recorder().frames()
    for table in TABLES:
        assert len(frames[table]) == 0
        assert list(frames[table].dtypes) == list(empty_frame(table).dtypes)


def test_frames_are_fixed_points_of_conform() -> None:
    rng = np.random.default_rng(4)
    rec = Recorder()
    rec.add_requests(**batch(10, rng))
    rec.add_event(0.0, "scale", object="deployment/default/web")
    rec.add_sync(node="node-1", start_s=0, end_s=1, full=True, ok=False, rules_written=0)
    rec.add_conntrack_sample(0.0, "node-1", 1, 2)
    for table, frame in rec.frames().items():
        pd.testing.assert_frame_equal(conform(frame, table), frame)


def test_conform_rejects_missing_columns_and_bad_values() -> None:
    frame = empty_frame("conntrack").drop(columns="entries")
    with pytest.raises(ValueError, match=r"missing column.*entries"):
        conform(frame, "conntrack")
    events = pd.DataFrame(
        {"t_s": [0.0], "kind": ["nope"], "node": [""], "object": [""], "detail": [""]}
    )
    with pytest.raises(ValueError, match=r"events\.kind"):
        conform(events, "events")


@pytest.mark.parametrize("table", list(TABLES))
def test_every_column_is_documented_with_a_unit(table: str) -> None:
    for column in TABLES[table]:
        assert column.doc.endswith("."), column.name
        assert column.unit in ("s", "count", ""), column.name
        # Units in names: a seconds column ends in _s and only those do.
        assert (column.unit == "s") == column.name.endswith("_s"), column.name
        assert (column.kind is Kind.ENUM) == (column.enum is not None), column.name
