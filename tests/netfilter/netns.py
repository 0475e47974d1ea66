"""Throw-away network namespaces for the tests that check svcsim's rules against the real kernel.

Only ever touches a namespace it creates (``svcsim-<tag>-<pid>-<n>``) and deletes it afterwards;
the host's own rules are never read or written. :func:`unavailable` says why a machine cannot
do this (not root, a tool missing), for the tests to skip with that reason.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

_names = itertools.count()


def unavailable(tools: Sequence[str], packages: str) -> str | None:
    """Why ``tools`` cannot be run in a namespace here (install hint ``packages``), or None."""
    if os.name != "posix" or os.geteuid() != 0:
        return "needs root to create a network namespace"
    missing = [tool for tool in ("ip", *tools) if shutil.which(tool) is None]
    if missing:
        return f"needs {', '.join(missing)} (apt-get install {packages})"
    try:
        with namespace("probe"):
            pass
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"cannot create a network namespace: {exc}"
    return None


@contextmanager
def namespace(tag: str) -> Iterator[str]:
    """A fresh network namespace's name, deleted when the block ends."""
    name = f"svcsim-{tag}-{os.getpid()}-{next(_names)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
