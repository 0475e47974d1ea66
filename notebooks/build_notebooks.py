"""Generate the notebooks in this folder from readable Python source.

The ``.ipynb`` files are build products of this script: edit the cells here, then run

    .venv/bin/python notebooks/build_notebooks.py          # rewrite notebooks/*.ipynb
    .venv/bin/python notebooks/build_notebooks.py --check  # exit 1 if a notebook is out of date

Notebooks are written with outputs cleared and stable cell ids, so regenerating an unchanged
notebook gives identical bytes (``tests/notebooks/test_notebooks.py`` checks that, and executes
every notebook top to bottom). Each notebook is one story: a markdown cell, then code, then
the markdown that reads the result. The cells live in ``notebooks/src/<name>.py``, one file per
notebook ``<name>.ipynb``, each defining ``CELLS``, a list of ``("md" | "code", source)`` pairs.
"""

from __future__ import annotations

import argparse
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


def render(name: str) -> str:
    """The text of notebook ``name`` as this script writes it."""
    # run_path, not import: no __pycache__ left in the source folder.
    cells = runpy.run_path(str(SOURCES / f"{Path(name).stem}.py"))["CELLS"]
    return nbformat.writes(build(name, cells)) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write every notebook (or, with ``--check``, report those that differ)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    args = parser.parse_args(argv)
    stale = []
    for name in notebook_names():
        path = HERE / name
        text = render(name)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(HERE.parent)}")
    for name in stale:
        print(f"notebooks/{name} is out of date: run notebooks/build_notebooks.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
