"""Value sets of kube-proxy's flags, importable without numpy (the CLI declares options with them).

Kept apart from :mod:`svcsim.proxy.context`, which needs the netfilter models, so that
``svcsim --help`` starts without loading the simulation's libraries.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

LocalDetectorMode = Literal["ClusterCIDR", "NodeCIDR", "BridgeInterface", "InterfaceNamePrefix"]
"""``--detect-local-mode`` values (``pkg/proxy/util/localdetector.go``)."""

LOCAL_DETECTOR_MODES: Final = get_args(LocalDetectorMode)
"""The same values as a tuple, in kube-proxy's order."""


UNSUPPORTED_NFT_DETECTORS: Final = ("BridgeInterface", "InterfaceNamePrefix")
"""Local-traffic detectors this nftables model does not compile (the interface-name ones)."""

IPTABLES_ONLY_REASONS: Final = {
    "localhost_nodeports": "nftables mode never accepts NodePorts on localhost",
    "random_fully": "nftables mode always writes 'masquerade fully-random'",
    "nfacct": "nftables mode has no nfacct counter matches",
}
"""Node settings that only iptables mode reads, and why nftables mode ignores them (one
source for the ``rules`` command's flags and the scenario's fields)."""


def parse_port_range(text: str) -> tuple[int, int] | None:
    """``--proxy-port-range`` / ``portRange`` as (first, last), or None when unset.

    Unset is ``""``, ``0`` or ``0-0`` (the kernel picks). A single port is a range of one
    (``utilnet.ParsePortRange``). Raises ValueError naming the bad value.
    """
    if text in ("", "0", "0-0"):
        return None
    first, sep, last = text.partition("-")
    if not sep:
        last = first
    if first.isdigit() and last.isdigit() and 0 < int(first) <= int(last) <= 65535:
        return int(first), int(last)
    raise ValueError(f"{text!r}: not FIRST-LAST (1..65535)")


USERSPACE_ONLY_FIELDS: Final = {
    "portRange": "--proxy-port-range",
    "udpIdleTimeout": "--udp-timeout",
}
"""``KubeProxyConfiguration`` fields only the userspace proxier reads, with their flags."""

NOT_FOR_USERSPACE: Final = {
    "masqueradeBit": "the userspace proxier masquerades nothing (kube-proxy itself connects)",
    "masqueradeAll": "the userspace proxier masquerades nothing (kube-proxy itself connects)",
    "localhostNodePorts": "an iptables-mode setting",
    "randomFully": "the userspace proxier writes no MASQUERADE rule",
    "nfacct": "the userspace proxier writes no nfacct counter matches",
    "detectLocalMode": "the userspace proxier has no local-traffic detector",
    "detectLocal": "the userspace proxier has no local-traffic detector",
    "nodePortAddresses": "the userspace proxier of v1.25 ignores it (NodePorts on every local "
    "address)",
    "nftSyncCost": "nftables mode's sync cost (userspace syncs cost syncCost)",
}
"""Scenario fields of ``cluster.proxy`` that userspace mode does not read, and why."""
