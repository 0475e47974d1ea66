"""``svcsim plot`` and ``svcsim report``: outputs, default locations, exit codes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from svcsim.cli import plot as plot_cli
from svcsim.cli.main import app
from svcsim.plots import FIGURES
from svcsim.report import REPORT_NAME
from svcsim.results.runfolder import FIGURES as FIGURES_DIR
from svcsim.results.runfolder import SUMMARY
from tests.plots.synthetic import Spec, build_run

runner = CliRunner()
NAMES = [spec.name for spec in FIGURES]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    build_run(out, Spec(duration_s=30.0, rate_per_s=20.0))
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_names_match_their_sources() -> None:
    assert plot_cli.FIGURES_DIR == FIGURES_DIR
    assert plot_cli.REPORT_NAME == REPORT_NAME


def test_plot_redraws_into_the_run_folder(run_dir: Path, tmp_path: Path) -> None:
    run = _copy(run_dir, tmp_path / "run")
    result = runner.invoke(app, ["plot", str(run)])
    assert result.exit_code == 0, result.output
    expected = [run / FIGURES_DIR / f"{n}.png" for n in NAMES]
    assert result.stdout.split() == [str(p) for p in expected]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in expected)


def test_plot_output_directory(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "figs"
    result = runner.invoke(app, ["plot", str(run_dir), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.png" for n in NAMES)
    assert not (run_dir / FIGURES_DIR).exists()  # the run folder is left alone


def test_report_default_and_output(run_dir: Path, tmp_path: Path) -> None:
    run = _copy(run_dir, tmp_path / "run")
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    page = (run / REPORT_NAME).read_text(encoding="utf-8")
    assert result.stdout.strip() == str(run / REPORT_NAME)
    assert page.count('src="data:image/png;base64,') == len(FIGURES)
    assert "synthetic-rolling-update" in page
    target = tmp_path / "elsewhere" / "r.html"
    result = runner.invoke(app, ["report", str(run), "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_text(encoding="utf-8") == page


def _broken_summary(run_dir: Path, tmp: Path) -> Path:
    run = _copy(run_dir, tmp / "broken")
    (run / SUMMARY).write_text("{not json", encoding="utf-8")
    return run


def _summary_of_wrong_shape(run_dir: Path, tmp: Path) -> Path:
    run = _copy(run_dir, tmp / "wrong-shape")
    (run / SUMMARY).write_text('{"seed": 1, "requests": "x"}', encoding="utf-8")
    return run


def _partial(run_dir: Path, tmp: Path) -> Path:
    return _copy(run_dir, tmp / ".run.partial-abcd")


def _missing(run_dir: Path, tmp: Path) -> Path:
    return tmp / "does-not-exist"


def _a_file(run_dir: Path, tmp: Path) -> Path:
    path = tmp / "file.txt"
    path.write_text("x")
    return path


@pytest.mark.parametrize("command", ["plot", "report"])
@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (_missing, "no such run folder"),
        (_partial, "interrupted write"),
        (_broken_summary, "summary.json"),
        (_summary_of_wrong_shape, "summary.json: requests is a str"),
        (_a_file, "not a directory"),
    ],
)
def test_bad_run_folders_exit_2_with_one_line(
    run_dir: Path, tmp_path: Path, command: str, make: object, needle: str
) -> None:
    target = make(run_dir, tmp_path)  # type: ignore[operator]
    result = runner.invoke(app, [command, str(target)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(target) in lines[0] and needle in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["plot", "report"])
def test_ctrl_c_exits_130_with_one_line(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("svcsim.results.load", interrupt)
    result = runner.invoke(app, [command, str(run_dir)])
    assert result.exit_code == 130
    kept = "nothing was written" if command == "report" else "every figure in"
    assert result.stderr.startswith(f"interrupted; {kept}")
    assert len(result.stderr.strip().splitlines()) == 1


def test_unwritable_output_exits_2(run_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    result = runner.invoke(app, ["report", str(run_dir), "-o", str(blocker / "r.html")])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(f"{blocker / 'r.html'}: cannot write")
