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
