"""Where a run folder may go: checks before simulating, what may be replaced, stale partials."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from svcsim.results import RunFolderError
from svcsim.results.outdir import (
    STALE_PARTIAL_MAX_AGE_S,
    STALE_PARTIAL_MIN_AGE_S,
    OutDirState,
    check_out_dir,
    remove_stale_partials,
    reserve,
)
from tests.results.outdir_cases import CASES, OutDirCase, dead_pid, previous_run


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A non-empty current directory and home inside ``tmp_path``."""
    (tmp_path / "cwd").mkdir()
    (tmp_path / "cwd" / "file").write_text("x")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / ".profile").write_text("x")
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_what_may_be_replaced(sandbox: Path, case: OutDirCase) -> None:
    out = case.make(sandbox)
    before = sorted(p.name for p in out.iterdir()) if out.is_dir() else None
    if case.error:
        with pytest.raises(RunFolderError, match=re.escape(case.error)) as info:
            check_out_dir(out, overwrite=True)
        assert "\n" not in str(info.value)
        assert str(info.value).startswith(f"{out}: ")
    else:
        assert check_out_dir(out, overwrite=True) is OutDirState[case.state]
    assert (sorted(p.name for p in out.iterdir()) if out.is_dir() else None) == before


def test_a_previous_run_needs_overwrite(tmp_path: Path) -> None:
    out = previous_run(tmp_path / "r")
    with pytest.raises(
        RunFolderError, match=r"run folder exists and is not empty \(use --overwrite\)"
    ):
        check_out_dir(out, overwrite=False)


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("file/x", "file is not a directory"),
        ("file/deeper/x", "file is not a directory"),
        ("/proc/svcsim-x", "/proc does not accept new folders"),
        ("/sys/svcsim-x", "in /sys"),
    ],
)
def test_unusable_places_fail_at_once_with_one_line(
    tmp_path: Path, where: str, message: str
) -> None:
    if where.startswith("/sys") and os.access("/sys", os.W_OK) and not Path("/sys/kernel").is_dir():
        pytest.skip("no sysfs here")
    (tmp_path / "file").write_text("x")
    out = tmp_path / where if not where.startswith("/") else Path(where)
    with pytest.raises(RunFolderError, match=message) as info:
        reserve(out, overwrite=False)
    assert str(info.value).startswith(f"{out}: cannot create the run folder: ")
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_reservation_abandoned_leaves_nothing(tmp_path: Path) -> None:
    spot = reserve(tmp_path / "a" / "b" / "run", overwrite=False)
    assert spot.partial.is_dir()
    assert spot.partial.name.startswith(f".run.partial-{os.getpid()}-")
    assert spot.created == [tmp_path / "a" / "b", tmp_path / "a"]
    spot.abandon()
    assert list(tmp_path.iterdir()) == []


NOW_S = 1_000_000_000.0
DEAD = dead_pid()


@pytest.mark.parametrize(
    ("name", "age_s", "removed"),
    [
        # {dead} and {alive} are filled in by the test: pids differ between xdist workers, and
        # test ids must not.
        (".run.partial-{dead}-abcd1234", STALE_PARTIAL_MIN_AGE_S + 1, True),
        (".run.partial-{dead}-abcd1234", STALE_PARTIAL_MIN_AGE_S - 60, False),  # just killed?
        (".run.partial-{alive}-abcd1234", STALE_PARTIAL_MIN_AGE_S + 1, False),  # running
        (".run.partial-{alive}-abcd1234", STALE_PARTIAL_MAX_AGE_S + 1, True),  # pid reused
        (".run.partial-k2j4_x9a", STALE_PARTIAL_MIN_AGE_S + 1, True),  # older svcsim: no pid
        (".run.partial-k2j4_x9a", STALE_PARTIAL_MIN_AGE_S - 60, False),
        ("run.partial-123-abcd", STALE_PARTIAL_MAX_AGE_S + 1, False),  # not hidden: not ours
        (".run.old-abcd", STALE_PARTIAL_MAX_AGE_S + 1, False),
        ("notes", STALE_PARTIAL_MAX_AGE_S + 1, False),
    ],
)
def test_stale_partials_are_removed_only_when_ours_and_unused(
    tmp_path: Path, name: str, age_s: float, removed: bool
) -> None:
    entry = tmp_path / name.format(dead=DEAD, alive=os.getpid())
    entry.mkdir()
    (entry / "requests.parquet").write_bytes(b"PAR1")
    os.utime(entry, (NOW_S - age_s, NOW_S - age_s))
    assert remove_stale_partials(tmp_path, now_s=NOW_S) == ([entry] if removed else [])
    assert entry.exists() is not removed


def test_reserving_a_folder_cleans_stale_partials_beside_it(tmp_path: Path) -> None:
    stale = tmp_path / f".old.partial-{DEAD}-abcd1234"
    stale.mkdir()
    os.utime(stale, (0, 0))
    spot = reserve(tmp_path / "run", overwrite=False)
    assert spot.removed_stale == [stale]
    assert not stale.exists()
    spot.abandon()
