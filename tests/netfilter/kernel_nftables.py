"""Run the real nft binary in a throw-away network namespace, to check svcsim's nftables text.

Only ever touches a namespace it creates (``svcsim-nft-<pid>-<n>``) and deletes it afterwards;
the host's own ruleset is never read or written. Tests call :func:`nft_unavailable` first and
skip with its reason when the machine cannot do this (not root, no ``nft``, no ``ip``).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

_TOOLS = ("ip", "nft")
_names = itertools.count()


def nft_unavailable() -> str | None:
    """Why real nft cannot be run here, or None if it can."""
    if os.name != "posix" or os.geteuid() != 0:
        return "needs root to create a network namespace"
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        return f"needs {', '.join(missing)} (apt-get install nftables iproute2)"
    try:
        with _namespace():
            pass
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"cannot create a network namespace: {exc}"
    return None


@contextmanager
def _namespace() -> Iterator[str]:
    name = f"svcsim-nft-{os.getpid()}-{next(_names)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def load_and_list(nft_input: str, family: str = "ip", table: str = "kube-proxy") -> str:
    """``nft list table`` after ``nft -f -`` of ``nft_input`` in a fresh namespace.

    Raises :class:`subprocess.CalledProcessError` (with nft's message in ``stderr``) when the
    kernel or nft refuses the input.
    """
    with _namespace() as name:
        run = ["ip", "netns", "exec", name, "nft"]
        subprocess.run(
            [*run, "-f", "-"], input=nft_input, text=True, check=True, capture_output=True
        )
        listed = subprocess.run(
            [*run, "list", "table", family, table], text=True, check=True, capture_output=True
        )
        return listed.stdout
