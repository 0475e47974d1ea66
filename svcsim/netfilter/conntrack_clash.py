"""Conntrack insert clashes: which kernels drop the second of two racing UDP packets.

Two packets of one new UDP flow (same 5-tuple: glibc's A and AAAA queries, sent together
with ``sendmmsg`` from one socket) can traverse netfilter at the same time on two CPUs.
Each finds no entry in the conntrack table, gets its own *unconfirmed* entry and, in
iptables or nftables mode, its own DNAT choice (its own ``statistic``/``numgen`` draw). The
first to reach ``__nf_conntrack_confirm`` inserts its entry; the second finds the original
tuple taken: a clash. What happens to it is decided by ``nf_ct_resolve_clash``
(net/netfilter/nf_conntrack_core.c: torvalds/linux's current tree and 3.x at 011e3c63; a 5.4
tree, CodeLinaro-mirror/qsdk_oss_kernel_linux-ipq-5.4 at 079d07e49a96):

* kernels before 5.0: a clash of entries with NAT in place is never resolved: the packet
  is dropped (``insert_failed``). Clash resolution for UDP came with 71d8c47fc653
  ("netfilter: conntrack: introduce clash resolution on insertion race", v4.7) and was
  switched off for NATed entries by 590b52e10d41 ("netfilter: conntrack: skip clash
  resolution if nat is in place", v4.10); Service traffic is always DNATed.
* 5.0 to 5.6: ed07d9a021df ("netfilter: nf_conntrack: resolve clash for matching
  conntracks", v5.0) resolves the clash when the two entries are identical
  (``nf_ct_match``: same original *and* reply tuple, i.e. the same DNAT target): the loser
  takes the winner's entry and passes. Different DNAT targets still drop the loser.
  4e35c1cb9460 ("netfilter: nf_nat: skip nat clash resolution for same-origin entries",
  v5.0) keeps source NAT from giving the loser a different reply tuple on its own.
* 5.7 and later: 6a757c07e51f ("netfilter: conntrack: allow insertion of clashing
  entries", v5.7) adds ``nf_ct_resolve_clash_harder``: for UDP (``allow_clash``) a loser
  whose reply tuple is free is inserted anyway, flagged ``IPS_NAT_CLASH`` with a 1 s
  timeout, so each query reaches its own DNAT target and both are answered. Nothing is
  dropped.

1-CPU nodes cannot race (one softirq context at a time); the chance that two packets of a
pair are processed concurrently on a multi-CPU node is not derivable from the source and is
a scenario setting (:mod:`svcsim.scenario.dns`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

_VERSION: Final = re.compile(r"^v?(\d{1,3})\.(\d{1,3})(?:[.\-+~_]\S*)?$")


@dataclass(frozen=True, slots=True, order=True)
class KernelVersion:
    """A Linux kernel's ``major.minor`` (what decides the clash behaviour)."""

    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


RESOLVE_MATCHING: Final = KernelVersion(5, 0)
"""ed07d9a021df: identical clashing entries (same DNAT target) are merged, not dropped."""
INSERT_CLASHING: Final = KernelVersion(5, 7)
"""6a757c07e51f: a clashing UDP entry with another DNAT target is inserted, not dropped."""


def parse_kernel_version(text: str) -> KernelVersion:
    """``5.4``, ``5.4.0-1103-aws`` or ``v6.8`` (``uname -r``, a Node's ``kernelVersion``).

    Raises ValueError with a one-line message for anything else.
    """
    found = _VERSION.match(text.strip())
    if found is None:
        raise ValueError(f"not a kernel version (like 5.4 or 5.4.0-1103-aws): {text!r}")
    return KernelVersion(int(found.group(1)), int(found.group(2)))


def clash_drops(kernel: KernelVersion, same_target: bool) -> bool:
    """True if ``kernel`` drops the losing packet of a UDP insert clash (module docstring).

    ``same_target``: both packets were DNATed to the same endpoint (identical entries).
    """
    if kernel >= INSERT_CLASHING:
        return False
    if kernel >= RESOLVE_MATCHING:
        return not same_target
    return True


__all__ = [
    "INSERT_CLASHING",
    "RESOLVE_MATCHING",
    "KernelVersion",
    "clash_drops",
    "parse_kernel_version",
]
