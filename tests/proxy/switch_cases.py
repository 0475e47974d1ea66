"""The kube-proxy switches a user sets to reproduce a node, one case each (NodeContext fields).

Shared by the tests that check each switch against the real kernel and against the dispatch
index. Cases change :func:`tests.proxy.test_iptables_support.fake_context`, whose node has
``10.0.0.0/8`` as its cluster CIDR; ``10.0.1.0/24`` is this node's Pod range.
"""

from __future__ import annotations

from typing import Any, Final

NODE_POD_CIDR: Final = "10.0.1.0/24"

SWITCHES: Final[dict[str, dict[str, Any]]] = {
    "defaults": {},
    "random-fully": {"random_fully": True},
    "no nfacct": {"nfacct": False},
    "nodePortAddresses": {"node_port_addresses": ("192.168.0.0/24", "127.0.0.0/8")},
    "nodePortAddresses without loopback": {"node_port_addresses": ("192.168.0.0/24",)},
    "no localhost NodePorts": {"localhost_nodeports": False},
    "NodeCIDR": {"local_detector": "NodeCIDR", "local_detector_value": NODE_POD_CIDR},
    "BridgeInterface": {"local_detector": "BridgeInterface", "local_detector_value": "cbr0"},
    "InterfaceNamePrefix": {
        "local_detector": "InterfaceNamePrefix",
        "local_detector_value": "veth",
    },
    "no detector, masqueradeAll": {
        "local_detector": None,
        "local_detector_value": "",
        "masquerade_all": True,
    },
}
"""Case name -> NodeContext overrides."""
