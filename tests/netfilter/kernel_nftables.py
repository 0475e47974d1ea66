"""Run the real nft binary in a throw-away network namespace, to check svcsim's nftables text.

Only ever touches a namespace it creates (``svcsim-nft-<pid>-<n>``) and deletes it afterwards;
the host's own ruleset is never read or written. Tests call :func:`nft_unavailable` first and
skip with its reason when the machine cannot do this (not root, no ``nft``, no ``ip``).
"""

from __future__ import annotations

import subprocess

from tests.netfilter.netns import namespace, unavailable


def nft_unavailable() -> str | None:
    """Why real nft cannot be run here, or None if it can."""
    return unavailable(("nft",), "nftables iproute2")


def load_and_list(nft_input: str, family: str = "ip", table: str = "kube-proxy") -> str:
    """``nft list table`` after ``nft -f -`` of ``nft_input`` in a fresh namespace.

    Raises :class:`subprocess.CalledProcessError` (with nft's message in ``stderr``) when the
    kernel or nft refuses the input.
    """
    with namespace("nft") as name:
        run = ["ip", "netns", "exec", name, "nft"]
        subprocess.run(
            [*run, "-f", "-"], input=nft_input, text=True, check=True, capture_output=True
        )
        listed = subprocess.run(
            [*run, "list", "table", family, table], text=True, check=True, capture_output=True
        )
        return listed.stdout
