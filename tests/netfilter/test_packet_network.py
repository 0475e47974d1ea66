"""NodeNetwork's answers: which addresses are local, their types, the interfaces."""

from __future__ import annotations

import ipaddress

import pytest

from svcsim.netfilter.packet import NodeNetwork

NET = NodeNetwork(("192.168.0.10",), pod_cidr="10.244.1.0/24")


@pytest.mark.parametrize(
    ("address", "local", "kind", "out"),
    [
        ("192.168.0.10", True, "LOCAL", "lo"),
        ("127.0.0.1", True, "LOCAL", "lo"),
        ("127.255.0.1", True, "LOCAL", "lo"),
        ("126.255.255.255", False, "UNICAST", "eth0"),
        ("128.0.0.1", False, "UNICAST", "eth0"),
        ("::1", True, "LOCAL", "lo"),
        ("::2", False, "UNICAST", "eth0"),
        ("10.244.1.7", False, "UNICAST", "veth0"),
        ("224.0.0.5", False, "MULTICAST", "eth0"),
        ("255.255.255.255", False, "BROADCAST", "eth0"),
        ("0.0.0.0", False, "UNSPEC", "eth0"),
    ],
)
def test_local_addresses_and_routes(address: str, local: bool, kind: str, out: str) -> None:
    ip = ipaddress.ip_address(address)
    assert NET.is_local(ip) is local
    assert NET.address_type(ip) == kind
    assert NET.out_interface(ip) == out
