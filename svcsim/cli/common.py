"""What every sub-command shares: how problems are reported and how the process exits."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import NoReturn

import typer
from rich.console import Console

PIPE_WIDTH = 160
"""Console width when output is not a terminal, so tables are never cut short."""

USAGE_ERROR = 2
"""Exit code for bad input (files, fields, options), as command-line tools use it."""

INTERRUPTED = 130
"""Exit code after Ctrl-C (128 + SIGINT), as shells report a process ended by it."""


def fail(problems: Iterable[str]) -> NoReturn:
    """Print each problem as one line on stderr and exit with code 2 (no traceback)."""
    for line in problems:
        print(line, file=sys.stderr)
    raise typer.Exit(USAGE_ERROR)


def warn(lines: Iterable[str]) -> None:
    """Print warnings on stderr, each prefixed with ``warning:``."""
    for line in lines:
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
