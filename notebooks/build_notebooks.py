"""Generate the notebooks in this folder from readable Python source, and run them.

The ``.ipynb`` files are build products of this script: edit the cells here, then run

    .venv/bin/python notebooks/build_notebooks.py          # rebuild and execute notebooks/*.ipynb
    .venv/bin/python notebooks/build_notebooks.py --check  # exit 1 if a notebook is out of date

Notebooks ship *run*: each is built from its source with stable cell ids, executed top to
bottom (nbclient, this interpreter's ``python3`` kernel, in this folder, so it finds
``../scenarios``), and written with its outputs, so a reader on GitHub or in Jupyter sees the
figures without running anything. ``--check`` compares the cells' sources with the file and
checks that every code cell has run (outputs change with versions and wall times; sources must
not). ``tests/notebooks/test_notebooks.py`` runs the check and executes every notebook afresh.
Each notebook is one story: a markdown cell, then code, then the markdown that reads the
result. The cells live in ``notebooks/src/<name>.py``, one file per notebook ``<name>.ipynb``,
each defining ``CELLS``, a list of ``("md" | "code", source)`` pairs.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import textwrap
from pathlib import Path
from typing import Any, Final

import nbformat

HERE: Final = Path(__file__).resolve().parent

SOURCES: Final = HERE / "src"
"""``src/<name>.py`` defines the cells of ``<name>.ipynb``."""

KERNELSPEC: Final = {
    "name": "python3",
    "display_name": "Python 3 (ipykernel)",
    "language": "python",
}


def build(stem: str, cells: list[tuple[str, str]]) -> Any:
    """A v4 notebook of ``cells`` (``("md" | "code", source)``), outputs cleared, ids stable."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    for index, (kind, source) in enumerate(cells):
        text = textwrap.dedent(source).strip("\n")
        if kind == "md":
            cell = nbformat.v4.new_markdown_cell(text)
        elif kind == "code":
            cell = nbformat.v4.new_code_cell(text)
        else:
            raise ValueError(f"{stem}: cell {index}: unknown kind {kind!r}")
        # nbformat draws random ids; stable ones keep regenerated files byte-identical.
        cell["id"] = f"{stem[:2]}-{index:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def notebook_names() -> list[str]:
    """The notebooks there are sources for, in order: ``01-….ipynb``, ``02-….ipynb``, …."""
    return [f"{source.stem}.ipynb" for source in sorted(SOURCES.glob("[0-9][0-9]-*.py"))]


CELL_TIMEOUT_S: Final = 300
"""Longest a single cell may run while the notebooks are built."""


def built(name: str) -> Any:
    """Notebook ``name`` built from its source, outputs cleared."""
    # run_path, not import: no __pycache__ left in the source folder.
    cells = runpy.run_path(str(SOURCES / f"{Path(name).stem}.py"))["CELLS"]
    return build(name, cells)


def executed(nb: Any) -> Any:
    """``nb`` run top to bottom in this folder (no timing metadata: diffs stay small)."""
    from nbclient import NotebookClient  # only building needs a kernel

    client = NotebookClient(
        nb,
        kernel_name=KERNELSPEC["name"],
        timeout=CELL_TIMEOUT_S,
        record_timing=False,
        resources={"metadata": {"path": str(HERE)}},
    )
    # The kernel imports this checkout's svcsim even where it is not pip-installed.
    path = os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))
    client.execute(env={**os.environ, "PYTHONPATH": path})
    return nb


def problems(name: str) -> list[str]:
    """Why the shipped ``name`` is out of date (sources differ, or a code cell has not run)."""
    path = HERE / name
    if not path.is_file():
        return ["missing"]
    shipped = nbformat.read(path, as_version=4)
    fresh = built(name)

    def shape(nb: Any) -> list[tuple[str, str, str]]:
        return [(c.get("id", ""), c.cell_type, c.source) for c in nb.cells]

    out = []
    if shape(shipped) != shape(fresh):
        out.append("cells differ from notebooks/src")
    if any(c.cell_type == "code" and c.execution_count is None for c in shipped.cells):
        out.append("not run (a code cell has no outputs)")
    return out


def main(argv: list[str] | None = None) -> int:
    """Build and run every notebook (or, with ``--check``, report those that are stale)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    parser.add_argument("names", nargs="*", help="only these notebooks (default: all)")
    args = parser.parse_args(argv)
    names = args.names or notebook_names()
    stale = []
    for name in names:
        if args.check:
            stale.extend(f"notebooks/{name}: {why}" for why in problems(name))
            continue
        nb = executed(built(name))
        path = HERE / name
        path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
        print(f"wrote {path.relative_to(HERE.parent)}")
    for line in stale:
        print(f"{line}: run notebooks/build_notebooks.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
