"""Every notebook in notebooks/ executes top to bottom, leaves nothing behind, and is up to date.

Each notebook runs with nbclient on a ``python3`` kernel of *this* interpreter, in a temporary
working copy of ``notebooks/`` and ``scenarios/`` (the notebooks find ``scenarios/`` next to
their own folder), with a 120 s limit per cell. A cell that raises fails the test with the
cell's source and traceback.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
KERNEL = "python3"
CELL_TIMEOUT_S = 120
NOTEBOOK_NAMES = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
# jupyter_client replaces these argv[0] values with the running interpreter (KernelManager
# format_kernel_cmd), so a spec that names one of them runs this venv's Python.
_SELF_NAMES = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info)}


def _kernel_runs_this_python() -> bool:
    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        return False
    exe = spec.argv[0] if spec.argv else ""
    # Compare without resolving symlinks: another venv's python links to the same binary.
    return exe in _SELF_NAMES or os.path.abspath(exe) == os.path.abspath(sys.executable)


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    # pytest -n runs several workers; only one should write the kernelspec at a time.
    with open(Path(tempfile.gettempdir()) / "svcsim-kernelspec.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def kernel_name() -> Iterator[str]:
    """``python3``, made to launch this interpreter (installed into the venv if needed)."""
    if not _kernel_runs_this_python():
        with _install_lock():
            if not _kernel_runs_this_python():
                subprocess.run(
                    [sys.executable, "-m", "ipykernel", "install", "--sys-prefix"],
                    check=True,
                    capture_output=True,
                )
    with pytest.MonkeyPatch.context() as patch:
        if not _kernel_runs_this_python():
            # A JUPYTER_PATH entry shadows the venv's spec: put the venv's data dir first.
            venv_data = str(Path(sys.prefix) / "share" / "jupyter")
            patch.setenv(
                "JUPYTER_PATH",
                os.pathsep.join(filter(None, [venv_data, os.environ.get("JUPYTER_PATH")])),
            )
        assert _kernel_runs_this_python(), (
            f"kernelspec {KERNEL!r} does not launch {sys.executable} even after "
            "`python -m ipykernel install --sys-prefix`"
        )
        yield KERNEL


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_there_are_notebooks() -> None:
    prefixes = [n[:2] for n in NOTEBOOK_NAMES]
    assert prefixes == sorted(set(prefixes)), "one notebook per number, in order"
    assert {"01", "02", "03", "04", "05", "07", "08"} <= set(prefixes)


def test_notebooks_are_built_from_their_sources_and_ship_run() -> None:
    build = runpy.run_path(str(NOTEBOOKS / "build_notebooks.py"))
    assert build["notebook_names"]() == NOTEBOOK_NAMES
    assert build["main"](["--check"]) == 0, "run notebooks/build_notebooks.py"
    for name in NOTEBOOK_NAMES:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code and all(c.execution_count is not None for c in code), name
        # A reader sees the figures without running anything, and no cell shipped an error.
        images = sum("image/png" in o.get("data", {}) for c in code for o in c.outputs)
        assert images >= 3, f"{name}: only {images} figures shipped"
        assert not any(o.get("output_type") == "error" for c in code for o in c.outputs), name
        assert sum(c.cell_type == "markdown" for c in nb.cells) >= len(code) // 2, name


def test_check_notices_a_changed_source(tmp_path: Path) -> None:
    shutil.copytree(NOTEBOOKS, tmp_path / "notebooks")
    source = next((tmp_path / "notebooks" / "src").glob("01-*.py"))
    source.write_text(source.read_text(encoding="utf-8").replace("##", "###", 1), encoding="utf-8")
    build = runpy.run_path(str(tmp_path / "notebooks" / "build_notebooks.py"))
    assert build["main"](["--check"]) == 1


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebook_executes(name: str, kernel_name: str, tmp_path: Path) -> None:
    shutil.copytree(NOTEBOOKS, tmp_path / "notebooks")
    shutil.copytree(REPO / "scenarios", tmp_path / "scenarios")
    before = _snapshot(tmp_path)
    nb = nbformat.read(tmp_path / "notebooks" / name, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name=kernel_name,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(tmp_path / "notebooks")}},
    )
    # The kernel must import this checkout's svcsim even where it is not pip-installed.
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    try:
        client.execute(env={**os.environ, "PYTHONPATH": path})
    except CellExecutionError as exc:
        pytest.fail(f"{name}: a cell failed:\n{exc}", pytrace=False)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), f"{name}: a cell did not run"
    images = sum("image/png" in o.get("data", {}) for c in code for o in c.outputs)
    assert images >= 3, f"{name}: only {images} figures displayed"
    # Run folders go to a temporary directory the notebook removes: nothing is left behind.
    assert _snapshot(tmp_path) == before
