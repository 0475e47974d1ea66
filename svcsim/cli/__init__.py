"""The command-line shell: parse arguments, call the layers below, print.

:func:`entry` is the ``svcsim`` command's entry point. It imports the Typer application only
when it runs, so that even a Ctrl-C while Python is still importing it ends as every other
Ctrl-C does: one line, exit code 130, no traceback.
"""

import sys

INTERRUPTED = 130
"""Exit code after Ctrl-C (128 + SIGINT), as shells report a process ended by it."""

INTERRUPTED_WHILE_STARTING = "interrupted; nothing was written"
"""What Ctrl-C before any command ran prints (the commands say what they kept themselves)."""


def entry() -> None:
    """Run the ``svcsim`` command (the console script's entry point)."""
    try:
        from svcsim.cli.main import app
    except KeyboardInterrupt:
        print(INTERRUPTED_WHILE_STARTING, file=sys.stderr)
        raise SystemExit(INTERRUPTED) from None
    app()
