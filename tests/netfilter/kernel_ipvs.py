"""Load svcsim's ip sets, IPVS services and rules into a throw-away namespace, read them back.

Only ever touches a namespace it creates (see :mod:`tests.netfilter.netns`). ``ipset`` and
``iptables-nft`` work wherever the kernel has ip_set; IPVS needs the ``ip_vs`` module, which
containers often lack: :func:`ipvs_unavailable` then says so, and the tests skip.
"""

from __future__ import annotations

import subprocess

from tests.netfilter.netns import namespace, unavailable

IPVS_PACKAGES = "ipvsadm ipset iptables iproute2"


def ipset_unavailable() -> str | None:
    """Why ``ipset`` and ``iptables-nft`` cannot be run in a namespace here, or None."""
    return unavailable(("ipset", "iptables-nft-restore", "iptables-nft-save"), IPVS_PACKAGES)


def ipvs_unavailable() -> str | None:
    """Why ``ipvsadm`` cannot program IPVS in a namespace here, or None."""
    reason = unavailable(("ipvsadm",), IPVS_PACKAGES)
    if reason is not None:
        return reason
    with namespace("ipvs-probe") as name:
        probe = subprocess.run(
            ["ip", "netns", "exec", name, "ipvsadm", "-Ln"], text=True, capture_output=True
        )
    if probe.returncode != 0:
        first = (probe.stderr or probe.stdout).strip().splitlines()[0]
        return f"the kernel has no IPVS here (ipvsadm -Ln: {first})"
    return None


def normalised_ipset_list(text: str) -> list[str]:
    """``ipset list`` output without what depends on the kernel and ipset version.

    Drops ``Revision``, ``Size in memory`` and ``References`` lines and the ``bucketsize`` /
    ``initval`` header words (ipset >= 7.11), and sorts each set's members (a hash set lists in
    hash order).
    """
    out: list[str] = []
    members: list[str] = []
    in_members = False
    for line in [*text.splitlines(), ""]:
        if in_members and line and not line.startswith("Name: "):
            members.append(line)
            continue
        if in_members:
            out.extend(sorted(members))
            members, in_members = [], False
        if line.startswith(("Revision:", "Size in memory:", "References:")):
            continue
        if line.startswith("Header: "):
            words = line.split()
            keep = []
            skip = False
            for word in words:
                if skip:
                    skip = False
                    continue
                if word in ("bucketsize", "initval"):
                    skip = True
                    continue
                keep.append(word)
            line = " ".join(keep)
        if line == "Members:":
            in_members = True
        out.append(line)
    while out and out[-1] == "":
        out.pop()
    return out


def load_ipvs_node(
    ipset_restore: str, iptables_restore: str, ipvsadm_restore: str | None
) -> dict[str, str]:
    """Load the three inputs (IPVS only if given) and return what the tools list back."""
    with namespace("ipvs") as name:
        run = ["ip", "netns", "exec", name]

        def call(*argv: str, stdin: str | None = None) -> str:
            done = subprocess.run(
                [*run, *argv], input=stdin, text=True, check=True, capture_output=True
            )
            return done.stdout

        call("ipset", "restore", stdin=ipset_restore)
        call("iptables-nft-restore", stdin=iptables_restore)
        out = {"ipset": call("ipset", "list"), "iptables": call("iptables-nft-save")}
        if ipvsadm_restore is not None:
            call("ipvsadm", "-R", stdin=ipvsadm_restore)
            out["ipvsadm"] = call("ipvsadm", "-Ln")
        return out
