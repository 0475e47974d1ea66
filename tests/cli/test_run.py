"""``svcsim run``: its output folder checked first, phases, Ctrl-C, 80 columns, a fast start."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from svcsim import runs
from svcsim.cli.main import app
from svcsim.cli.run import print_summary
from svcsim.results import load
from svcsim.runs import RunPhase, run_scenario
from tests.results.outdir_cases import previous_run

ROLLING = Path(__file__).resolve().parents[2] / "scenarios" / "rolling-update.yaml"
runner = CliRunner()


@pytest.fixture
def no_simulation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the simulation starts: refusals must come before it."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the simulation started before the output folder was checked")

    monkeypatch.setattr(runs, "build_world", refuse)


@pytest.mark.parametrize(
    ("out", "overwrite", "message"),
    [
        ("file/x", False, "file/x: cannot create the run folder: file is not a directory"),
        ("/proc/svcsim-x", False, "/proc does not accept new folders"),
        (".", True, "refusing to replace the current directory"),
        ("..", True, "refusing to replace a parent of the current directory"),
        ("mine", True, "not a svcsim run folder"),
        ("mine", False, "run folder exists and is not empty (use --overwrite)"),
    ],
)
@pytest.mark.usefixtures("no_simulation")
def test_an_unusable_out_is_one_line_and_exit_2_before_simulating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, out: str, overwrite: bool, message: str
) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    monkeypatch.chdir(tmp_path)
    args = ["run", str(ROLLING), "--out", out] + (["--overwrite"] if overwrite else [])
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[0]]
    assert message in lines[0]
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "mine"]
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_rerunning_into_the_default_folder_replaces_the_previous_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The README's order: `make run` (the built-in default), then its first walkthrough command.
    monkeypatch.chdir(tmp_path)
    first = runner.invoke(app, ["run"])
    assert first.exit_code == 0, first.output
    folder = tmp_path / "runs" / "rolling-update-seed7"
    before = (folder / "summary.json").read_bytes()
    again = runner.invoke(app, ["run", str(ROLLING)])
    assert again.exit_code == 0, again.output
    assert "note: replaced the previous run in runs/rolling-update-seed7" in again.stderr
    assert (folder / "summary.json").read_bytes() == before
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["rolling-update-seed7"]


@pytest.mark.usefixtures("no_simulation")
def test_the_default_folder_is_not_replaced_when_it_holds_other_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = previous_run(tmp_path / "runs" / "rolling-update-seed7")
    (folder / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["run", str(ROLLING)])
    assert result.exit_code == 2
    assert "holds files svcsim did not write (notes.txt)" in result.stderr
    assert (folder / "notes.txt").read_text() == "mine"


def test_overwrite_replaces_a_previous_run_and_a_failed_one(tmp_path: Path) -> None:
    old = previous_run(tmp_path / "r", seed=99)
    result = runner.invoke(app, ["run", str(ROLLING), "--out", str(old), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert json.loads((old / "manifest.json").read_text())["seed"] == 7


def test_phases_are_reported_in_order(tmp_path: Path) -> None:
    seen: list[RunPhase] = []
    run_scenario(ROLLING, out_dir=tmp_path / "r", on_phase=seen.append)
    assert seen == list(RunPhase)


@pytest.mark.parametrize(
    ("where", "kept"),
    [
        ("build_world", "nothing was written"),
        ("render_all", "nothing was written"),
        ("write_run", "nothing was written"),
        ("load", "the run folder {out} is complete"),
    ],
)
def test_ctrl_c_says_what_was_kept_and_exits_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, kept: str
) -> None:
    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, where, interrupt)
    out = tmp_path / "deep" / "r"
    result = runner.invoke(app, ["run", str(ROLLING), "--out", str(out)])
    assert result.exit_code == 130
    assert result.stderr == f"interrupted; {kept.format(out=out)}\n"
    assert result.stdout == ""
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    if where == "load":
        assert load(out).manifest["seed"] == 7
    else:
        assert left == []  # no partial folder, no parents created for it


def test_ctrl_c_keeps_the_previous_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, "write_run", interrupt)
    old = previous_run(tmp_path / "r", seed=99)
    result = runner.invoke(app, ["run", str(ROLLING), "--out", str(old), "--overwrite"])
    assert result.exit_code == 130
    assert result.stderr == f"interrupted; nothing was written ({old} is unchanged)\n"
    assert json.loads((old / "manifest.json").read_text())["seed"] == 99
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


LONG_SERVICE = "production-payments/checkout-frontend-api-gateway:https-metrics"


def _summary_with_long_names(run_dir: Path) -> Path:
    """A copy of a run whose Service is renamed to a long name."""
    text = (run_dir / "summary.json").read_text().replace("default/web:http", LONG_SERVICE)
    (run_dir / "summary.json").write_text(text)
    return run_dir


@pytest.fixture(scope="module")
def rolling_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_scenario(ROLLING, out_dir=tmp_path_factory.mktemp("run") / "r").path


def test_the_summary_fits_80_columns_with_names_and_numbers_whole(
    rolling_dir: Path, tmp_path: Path
) -> None:
    run_dir = _summary_with_long_names(shutil.copytree(rolling_dir, tmp_path / "r"))
    console = Console(width=80, record=True, file=io.StringIO())
    print_summary(load(run_dir), console, wall_s=1.0)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    summary = json.loads((run_dir / "summary.json").read_text())
    assert LONG_SERVICE in text
    for window in summary["failure_windows"]:
        for value in (f"{window['start_s']:.3f}", f"{window['end_s']:.3f}", window["node"]):
            assert f" {value} " in text
    for endpoint in summary["endpoints"][LONG_SERVICE]:
        assert f" {endpoint} " in text
    assert "…" not in text


@pytest.mark.parametrize("n", ["3", "60", "1000"])
def test_chain_fits_80_columns_with_its_numbers_whole(
    n: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from svcsim.cli import chain as chain_cli

    # As in an 80-column terminal (to a pipe the console is wide, see svcsim.cli.common).
    monkeypatch.setattr(chain_cli, "cli_console", lambda: Console(width=80))
    result = runner.invoke(app, ["chain", n, "--seed", "1", "--samples", "1000"])
    assert result.exit_code == 0, result.output
    table = result.stdout.split("Max |deviation|")[0]
    assert max(len(line) for line in table.splitlines()) <= 80
    assert "…" not in result.stdout
    if n == "3":
        for number in ("0.3333333333", "715827883", "0.33333333349", "0.33333333348855376",
                       "+1.552e-10", "1073741824"):  # fmt: skip
            assert f" {number}" in table


def test_importing_the_cli_loads_no_heavy_library() -> None:
    code = (
        "import sys, svcsim.cli.main; "
        "print(' '.join(m for m in ('pandas', 'matplotlib', 'scipy', 'numpy', 'pyarrow', "
        "'simpy', 'pydantic') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_a_terminal_sees_each_phase_after_simulating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from svcsim.cli import run as run_cli

    screen = io.StringIO()

    def terminal(*, stderr: bool = False) -> Console:
        if stderr:
            return Console(file=screen, force_terminal=True, width=100)
        return Console(file=io.StringIO(), width=100)

    real_write_run = runs.write_run

    def slow_write_run(*args: object, **kwargs: object) -> Path:
        import time

        time.sleep(0.3)  # the status line refreshes several times a second: let it show
        return real_write_run(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(run_cli, "console", terminal)
    monkeypatch.setattr(runs, "write_run", slow_write_run)
    result = runner.invoke(app, ["run", str(ROLLING), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert f"{RunPhase.WRITING.value}…" in screen.getvalue()
    assert "simulating rolling-update" in screen.getvalue()


def test_a_real_ctrl_c_while_simulating(tmp_path: Path) -> None:
    import os
    import signal
    import time

    long_run = tmp_path / "long.yaml"
    text = ROLLING.read_text()
    assert "\nduration: 60s\n" in text
    long_run.write_text(text.replace("\nduration: 60s\n", "\nduration: 2h\n"))
    out = tmp_path / "runs" / "r"
    code = "from svcsim.cli.main import app; app(prog_name='svcsim')"
    # A shell starts a command with SIGINT at its default; a child inherits an ignored SIGINT
    # from its parent (and Python then never raises KeyboardInterrupt), so set the default.
    child = subprocess.Popen(
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        args=[sys.executable, "-c", code, "run", str(long_run), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROLLING.parents[1])},
    )
    # The partial folder is reserved just before the simulation starts.
    deadline = time.monotonic() + 60
    while not list(out.parent.glob(".r.partial-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    child.send_signal(signal.SIGINT)
    stdout, stderr = child.communicate(timeout=60)
    assert child.returncode == 130, (stdout, stderr)
    assert stderr == "interrupted; nothing was written\n"
    assert stdout == ""
    assert not out.parent.exists()


@pytest.mark.parametrize(
    ("fraction", "text"), [(22 / 540_999, "<0.01%"), (0.0, "0.00%"), (0.5, "50.00%")]
)
def test_a_share_that_is_not_zero_never_reads_as_zero(fraction: float, text: str) -> None:
    from svcsim.cli.run import _share

    assert _share(fraction) == text
