"""Tests for svcsim.results.load: round trip and clear errors for broken folders."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from svcsim.results.load import WINDOW_COLUMNS, Run, load
from svcsim.results.runfolder import RunFolderError, write_run
from svcsim.results.schema import TABLES
from svcsim.results.windows import failure_windows
from tests.results.test_runfolder import PNG, make_run


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frames, summary = make_run()
    return write_run(
        tmp_path_factory.mktemp("runs") / "run", {"seed": 42}, frames, summary, {"shares": PNG}
    )


def test_round_trip_frames_equal_and_totals_match_summary(written: Path) -> None:
    frames, _ = make_run()
    run = load(written)
    for table in TABLES:
        pd.testing.assert_frame_equal(getattr(run, table), frames[table])
    assert run.summary["requests"]["total"] == len(run.requests)
    by_outcome = run.requests["outcome"].value_counts().to_dict()
    assert run.summary["requests"]["by_outcome"] == {
        k: int(by_outcome.get(k, 0)) for k in run.summary["requests"]["by_outcome"]
    }
    assert run.summary["requests"]["failed"] == int((run.requests["outcome"] != "ok").sum())
    assert run.summary["seed"] == run.manifest["seed"] == 42
    assert run.figures == {"shares": written / "figures" / "shares.png"}


def test_windows_and_endpoints_frames(written: Path) -> None:
    run = load(written)
    assert tuple(run.windows.columns) == WINDOW_COLUMNS
    expected = [w.to_dict() for w in failure_windows(run.requests)]
    assert run.windows.to_dict("records") == expected
    assert len(run.windows) == len(run.summary["failure_windows"]) > 0
    assert run.windows["failed"].sum() == run.summary["requests"]["failed"]
    assert run.windows["start_s"].dtype == "float64"
    shares = run.summary["endpoints"]["default/web:80"]
    for row in run.endpoints.itertuples(index=False):
        assert shares[row.endpoint] == {"requests": row.requests, "share": row.share}
    assert run.endpoints["requests"].sum() == len(run.requests)


def test_run_is_frozen(written: Path) -> None:
    run = load(written)
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.summary = {}  # type: ignore[misc]


def test_run_docstring_lists_every_column() -> None:
    doc = Run.__doc__ or ""
    for table, columns in TABLES.items():
        assert f"{table}:" in doc
        for column in columns:
            assert column.name in doc, f"{table}.{column.name}"
    for name in WINDOW_COLUMNS:
        assert name in doc


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for path in src.rglob("*"):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir()
        else:
            target.write_bytes(path.read_bytes())
    return dst


BREAKAGES: list[tuple[str, Callable[[Path], None], str]] = [
    ("no manifest", lambda p: (p / "manifest.json").unlink(), r"\(manifest\.json missing\)$"),
    (
        "two files missing",
        lambda p: [(p / n).unlink() for n in ("summary.json", "syncs.parquet")],
        r"\(summary\.json, syncs\.parquet missing\)$",
    ),
    ("bad json", lambda p: (p / "summary.json").write_text("{oops"), r"summary\.json: Expecting"),
    ("manifest not an object", lambda p: (p / "manifest.json").write_text("[]"), "JSON object"),
    (
        "other format",
        lambda p: (p / "manifest.json").write_text(json.dumps({"run_format": 99})),
        "run_format 99",
    ),
    ("truncated parquet", lambda p: (p / "events.parquet").write_bytes(b"PAR1"), "events.parquet"),
    ("windows not a list", lambda p: (p / "windows.json").write_text("{}"), "JSON list"),
    (
        "windows lack a field",
        lambda p: (p / "windows.json").write_text('[{"service": "x"}]'),
        r"windows\.json: window 0 lacks node, start_s",
    ),
    ("a window not an object", lambda p: (p / "windows.json").write_text("[1]"), "window 0 is not"),
    ("summary empty", lambda p: (p / "summary.json").write_text("{}"), r"summary\.json: seed is"),
    (
        "summary requests not an object",
        lambda p: _edit_json(p / "summary.json", requests="x"),
        r"summary\.json: requests is a str, expected a JSON object\)$",
    ),
    (
        "summary request counts missing",
        lambda p: _edit_json(p / "summary.json", requests={"total": 1}),
        r"summary\.json: requests\.failed is missing, expected a JSON integer\)$",
    ),
    (
        "summary endpoints a list",
        lambda p: _edit_json(p / "summary.json", endpoints=[]),
        r"summary\.json: endpoints is a list, expected a JSON object\)$",
    ),
    (
        "summary seed a string",
        lambda p: _edit_json(p / "summary.json", seed="7"),
        r"summary\.json: seed is a str, expected an integer\)$",
    ),
    ("parquet is a directory", lambda p: _replace_by_dir(p / "syncs.parquet"), "syncs.parquet"),
    (
        "parquet of another table",
        lambda p: (p / "requests.parquet").write_bytes((p / "events.parquet").read_bytes()),
        r"requests\.parquet: requests: missing column",
    ),
    ("manifest not UTF-8", lambda p: (p / "manifest.json").write_bytes(b"\xff\xfe"), "utf-8"),
]


def _edit_json(path: Path, **changes: Any) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _replace_by_dir(path: Path) -> None:
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize(("case", "breakage", "message"), BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_broken_folders_raise_one_clear_line(
    written: Path, tmp_path: Path, case: str, breakage: Callable[[Path], None], message: str
) -> None:
    broken = _copy(written, tmp_path / "broken")
    breakage(broken)
    with pytest.raises(RunFolderError, match=message) as info:
        load(broken)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{broken}: not a complete svcsim run folder (")


def test_missing_path_and_plain_file(tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match="no such run folder"):
        load(tmp_path / "nothing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFolderError, match="not a directory"):
        load(tmp_path / "file")
    with pytest.raises(RunFolderError, match=r"manifest\.json, summary\.json"):
        load(tmp_path)
