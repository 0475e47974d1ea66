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
