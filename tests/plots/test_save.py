"""Rendering and saving the standard figures: file names, PNG bytes, determinism."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from svcsim.plots import FIGURES, save_all
from svcsim.results import load, write_run
from svcsim.results.load import Run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAMES = ["outcome_timeline", "endpoint_shares", "rule_staleness", "chain_check", "conntrack_usage"]


def test_figure_registry() -> None:
    assert [spec.name for spec in FIGURES] == NAMES
    assert all(spec.caption.endswith(".") and spec.title for spec in FIGURES)


def test_save_all_writes_the_same_bytes_for_the_same_run(
    rolling_run: Run, rolling_pngs: dict[str, bytes], tmp_path: Path
) -> None:
    out = tmp_path / "new" / "figs"
    written = save_all(load(rolling_run.path), out)  # a fresh load, drawn again
    assert list(written) == NAMES == list(rolling_pngs)
    for name, path in written.items():
        assert path == out / f"{name}.png"
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert len(data) > 20_000
        assert data == rolling_pngs[name]
        assert b"matplotlib" not in data  # no Software chunk
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.png" for n in NAMES)
    assert oct(written["chain_check"].stat().st_mode & 0o777) == "0o644"


def test_png_bytes_do_not_depend_on_the_process(
    rolling_run: Run, rolling_pngs: dict[str, bytes]
) -> None:
    """A fresh interpreter with another hash seed draws the same bytes (no set/dict order)."""
    script = (
        "import hashlib, sys\n"
        "from svcsim.results import load\n"
        "from svcsim.plots import FIGURES, png_bytes\n"
        "run = load(sys.argv[1])\n"
        "for spec in FIGURES[:2]:\n"
        "    print(spec.name, hashlib.sha256(png_bytes(spec.draw(run))).hexdigest())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", script, str(rolling_run.path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
        timeout=120,
    )
    there = dict(line.split(" ") for line in result.stdout.splitlines())
    assert list(there) == NAMES[:2]
    assert there == {n: hashlib.sha256(rolling_pngs[n]).hexdigest() for n in there}


def test_render_all_fits_write_run(
    rolling_run: Run, rolling_pngs: dict[str, bytes], tmp_path: Path
) -> None:
    """What a runner does: draw from a Run, store the PNGs inside the atomic run folder."""
    figures = rolling_pngs
    frames = {
        "requests": rolling_run.requests,
        "events": rolling_run.events,
        "syncs": rolling_run.syncs,
        "conntrack": rolling_run.conntrack,
    }
    out = write_run(tmp_path / "run", rolling_run.manifest, frames, rolling_run.summary, figures)
    again = load(out)
    assert list(again.figures) == sorted(NAMES)
    assert again.figures["rule_staleness"].read_bytes() == figures["rule_staleness"]


def test_save_all_refuses_a_file_as_directory(rolling_run: Run, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        save_all(rolling_run, blocker)
