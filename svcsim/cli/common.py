"""What every sub-command shares: how problems are reported and how the process exits."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import NoReturn

import typer
from rich.console import Console

from svcsim.cli import INTERRUPTED as INTERRUPTED  # re-exported: the commands' exit code
from svcsim.k8s.errors import collapse_lines, problem_line

PIPE_WIDTH = 160
"""Console width when output is not a terminal, so tables are never cut short."""

USAGE_ERROR = 2
"""Exit code for bad input (files, fields, options), as command-line tools use it."""


def fail(problems: Iterable[str]) -> NoReturn:
    """Print each problem as one line on stderr and exit with code 2 (no traceback).

    Lines are made safe (:func:`~svcsim.k8s.errors.problem_line`) and a problem repeated in
    the same form is shown a few times, then counted (:func:`~svcsim.k8s.errors.collapse_lines`).
    """
    for line in collapse_lines([problem_line(p) for p in problems]):
        print(line, file=sys.stderr)
    raise typer.Exit(USAGE_ERROR)


def warn(lines: Iterable[str]) -> None:
    """Print warnings on stderr, each prefixed with ``warning:`` (safe, collapsed as by fail)."""
    for line in collapse_lines([problem_line(w) for w in lines]):
        print(f"warning: {line}", file=sys.stderr)


def interrupted(kept: str) -> NoReturn:
    """After Ctrl-C: say in one line what was kept (``kept``) and exit with code 130."""
    print(f"interrupted; {kept}", file=sys.stderr)
    raise typer.Exit(INTERRUPTED)


def note(lines: Iterable[str]) -> None:
    """Print facts the user should know but need not act on, on stderr, prefixed ``note:``."""
    for line in lines:
        print(f"note: {line}", file=sys.stderr)


def console(*, stderr: bool = False) -> Console:
    """A rich console; wide when writing to a pipe or file (no terminal to fit)."""
    out = Console(stderr=stderr)
    return out if out.is_terminal else Console(stderr=stderr, width=PIPE_WIDTH)
