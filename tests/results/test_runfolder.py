"""Tests for svcsim.results.runfolder and summary: atomic, deterministic run folders."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from svcsim.results import outdir
from svcsim.results.load import load
from svcsim.results.records import Recorder
from svcsim.results.runfolder import RUN_FORMAT, RunFolderError, write_run
from svcsim.results.stats import stable_intervals
from svcsim.results.summary import build_summary, dumps_json
from svcsim.results.windows import failure_windows
from tests.results.tables import batch

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def make_run(seed: int = 42) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Frames and summary of a small synthetic run with failures on two nodes."""
    rng = np.random.default_rng(seed)
    rec = Recorder()
    for _ in range(4):
        kwargs = batch(200, rng)
        failed = rng.random(200) < 0.1
        kwargs["outcome"] = np.where(failed, "timeout", "ok")
        kwargs["cause"] = np.where(failed, "stale-rule", "")
        rec.add_requests(**kwargs)
    rec.add_event(0.0, "pod-ready", node="node-1", object="pod/default/web-1")
    rec.add_event(1.0, "proxy-crashed", node="node-2")
    rec.add_sync(
        node="node-1",
        start_s=0.0,
        end_s=0.2,
        full=True,
        ok=True,
        rules_written=30,
        programming_latency_s=0.7,
    )
    rec.add_sync(node="node-2", start_s=0.0, end_s=0.3, full=True, ok=False, rules_written=0)
    rec.add_conntrack_sample(1.0, "node-1", 17, 131072)
    frames = rec.frames()
    intervals = stable_intervals(
        [(0.0, n, "default/web:80", {"10.0.0.1:80", "10.0.0.2:80"}) for n in ("node-1", "node-2")],
        end_s=10.0,
    )
    windows = failure_windows(frames["requests"])
    summary = build_summary(frames, windows, seed=seed, intervals=intervals)
    return frames, summary


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_writes_every_file_and_summary_keys(tmp_path: Path) -> None:
    frames, summary = make_run()
    out = write_run(tmp_path / "run", {"seed": 42}, frames, summary, {"shares": PNG})
    assert sorted(_files(out)) == [
        "conntrack.parquet",
        "endpoint_sets.parquet",
        "events.parquet",
        "figures/shares.png",
        "manifest.json",
        "requests.parquet",
        "summary.json",
        "syncs.parquet",
        "windows.json",
    ]
    assert _leftovers(tmp_path) == []
    written = json.loads((out / "summary.json").read_text())
    assert {
        "requests",
        "failure_windows",
        "endpoints",
        "uniformity",
        "programming_latency",
        "seed",
    } <= set(written)
    assert written["requests"]["total"] == 800
    assert sum(written["requests"]["by_outcome"].values()) == 800
    assert written["programming_latency"]["node-1"]["p50_s"] == 0.7
    assert written["programming_latency"]["node-2"]["p50_s"] is None  # NaN -> null
    assert written["uniformity"]["default/web:80"]["dof"] == 1
    window = written["failure_windows"][0]
    assert {"service", "start_s", "end_s", "failed", "cause", "node", "outcomes"} <= set(window)
    assert json.loads((out / "manifest.json").read_text()) == {"seed": 42, "run_format": RUN_FORMAT}


def test_same_data_gives_byte_identical_files(tmp_path: Path) -> None:
    frames, summary = make_run()
    a = _files(write_run(tmp_path / "a", {"seed": 1}, frames, summary, {"x": PNG}))
    frames2, summary2 = make_run()
    b = _files(write_run(tmp_path / "b", {"seed": 1}, frames2, summary2, {"x": PNG}))
    assert a == b
    c = _files(write_run(tmp_path / "c", {"seed": 1}, *make_run(seed=43)))
    assert c["requests.parquet"] != a["requests.parquet"]


def test_byte_identical_across_processes(tmp_path: Path) -> None:
    """A fresh interpreter (other hash seed) writes the same bytes."""
    script = (
        "import sys; from tests.results.test_runfolder import make_run;"
        "from svcsim.results.runfolder import write_run;"
        "write_run(sys.argv[1], {'seed': 42}, *make_run())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "child")],
        check=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    write_run(tmp_path / "here", {"seed": 42}, *make_run())
    assert _files(tmp_path / "child") == _files(tmp_path / "here")


def test_refuses_to_overwrite_a_non_empty_folder(tmp_path: Path) -> None:
    frames, summary = make_run()
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="not empty"):
        write_run(out, {}, frames, summary)
    assert _files(out) == {"notes.txt": b"mine"}
    assert _leftovers(tmp_path) == []


def test_replaces_an_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    write_run(tmp_path / "run", {}, *make_run())
    assert (tmp_path / "run" / "manifest.json").is_file()


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_overwrite_swaps_in_the_new_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    if not exchange:
        monkeypatch.setattr(outdir, "_exchange", lambda a, b: False)
    out = write_run(tmp_path / "run", {"n": 1}, *make_run(seed=1))
    write_run(out, {"n": 2}, *make_run(seed=2), overwrite=True)
    assert load(out).manifest["n"] == 2
    assert load(out).summary["seed"] == 2
    assert _leftovers(tmp_path) == []


def test_crash_mid_write_leaves_no_complete_looking_folder(tmp_path: Path) -> None:
    written: list[str] = []

    def crash(name: str) -> None:
        written.append(name)
        if len(written) == 3:
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_run(tmp_path / "run", {}, *make_run(), on_file_written=crash)
    assert written[:3] == ["requests.parquet", "events.parquet", "syncs.parquet"]
    assert not (tmp_path / "run").exists()
    assert _leftovers(tmp_path) == []  # the partial directory was removed


def test_hard_crash_leaves_only_a_partial_directory_that_load_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No cleanup runs after a real crash: simulate it by disabling the removal.
    monkeypatch.setattr(outdir.shutil, "rmtree", lambda *a, **k: None)

    def crash(name: str) -> None:
        if name == "summary.json":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_run(tmp_path / "run", {}, *make_run(), on_file_written=crash)
    assert not (tmp_path / "run").exists()
    (partial,) = [p for p in tmp_path.iterdir()]
    assert partial.name.startswith(".run.partial-")
    assert not (partial / "manifest.json").exists()
    with pytest.raises(RunFolderError, match="interrupted write"):
        load(partial)
    with pytest.raises(RunFolderError, match="no such run folder"):
        load(tmp_path / "run")


def test_crash_during_overwrite_keeps_the_old_run(tmp_path: Path) -> None:
    out = write_run(tmp_path / "run", {"n": 1}, *make_run(seed=1))
    before = _files(out)

    def crash(name: str) -> None:
        if name == "manifest.json":
            raise OSError("no space left")

    with pytest.raises(RunFolderError, match="cannot write the run folder: no space"):
        write_run(out, {"n": 2}, *make_run(seed=2), overwrite=True, on_file_written=crash)
    assert _files(out) == before
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("figures", "message"),
    [({"../evil": PNG}, "figure name"), ({"a/b": PNG}, "figure name"), ({"x": b"GIF89a"}, "PNG")],
)
def test_bad_figures_are_rejected_before_writing(
    tmp_path: Path, figures: dict[str, bytes], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        write_run(tmp_path / "run", {}, *make_run(), figures)
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs_are_rejected_before_writing(tmp_path: Path) -> None:
    frames, summary = make_run()
    with pytest.raises(ValueError, match="unknown record tables"):
        write_run(tmp_path / "run", {}, {**frames, "extra": frames["events"]}, summary)
    with pytest.raises(TypeError, match="not JSON data"):
        write_run(tmp_path / "run", {"when": object()}, frames, summary)
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFolderError, match="not a directory"):
        write_run(tmp_path / "file", {}, frames, summary)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_missing_tables_are_written_empty(tmp_path: Path) -> None:
    frames, summary = make_run()
    out = write_run(tmp_path / "run", {}, {"requests": frames["requests"]}, summary)
    run = load(out)
    assert len(run.events) == len(run.syncs) == len(run.conntrack) == 0
    assert list(run.syncs.columns)[:2] == ["node", "start_s"]


def test_streamed_tables_are_not_read_again(tmp_path: Path) -> None:
    """Tables already in the partial folder are neither written again nor conformed (copied)."""
    frames, summary = make_run()
    spot = outdir.reserve(tmp_path / "run", overwrite=False)
    recorder = Recorder()
    recorder.stream_to(spot.partial)
    recorder.add_conntrack_sample(1.0, "node-1", 17, 131072)
    recorder.finish()
    streamed = recorder.streamed_tables()
    # In place of each streamed table, a frame that conforming would reject.
    given = {t: pd.DataFrame({"x": [1]}) if t in streamed else f for t, f in frames.items()}
    given = {t: f for t, f in given.items() if t in ("requests", *streamed)}
    windows = failure_windows(frames["requests"])
    out = write_run(spot, {}, given, summary, windows=windows, streamed=streamed)
    assert load(out).conntrack["entries"].tolist() == [17]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (
            {"b": 1, "a": [1.5, math.nan, math.inf]},
            '{\n  "a": [\n    1.5,\n    null,\n    null\n  ],\n  "b": 1\n}\n',
        ),
        (
            {"k": (np.int64(3), np.float32(0.5), np.bool_(True))},
            '{\n  "k": [\n    3,\n    0.5,\n    true\n  ]\n}\n',
        ),
        ({2: frozenset({"b", "a"})}, '{\n  "2": [\n    "a",\n    "b"\n  ]\n}\n'),
        (np.array([1, 2]), "[\n  1,\n  2\n]\n"),
    ],
)
def test_dumps_json_is_deterministic_and_nan_free(value: Any, text: str) -> None:
    assert dumps_json(value) == text


@pytest.mark.parametrize("value", [object(), b"bytes", {"k": object()}])
def test_dumps_json_rejects_non_json(value: Any) -> None:
    with pytest.raises(TypeError):
        dumps_json(value)


def test_exchange_swaps_two_directories_or_reports_unsupported(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "from-a").write_text("")
    (b / "from-b").write_text("")
    if outdir._exchange(a, b):
        assert [p.name for p in a.iterdir()] == ["from-b"]
        assert [p.name for p in b.iterdir()] == ["from-a"]
    else:  # unsupported: nothing moved
        assert [p.name for p in a.iterdir()] == ["from-a"]
