"""The switches a user sets to reproduce a node: primary, checks, and the node's interfaces."""

from __future__ import annotations

import pytest

from svcsim.netfilter.interpreter import trace
from svcsim.netfilter.packet import Packet
from svcsim.proxy.context import (
    NodeContext,
    interface_name_problem,
    node_network,
    node_port_address_problems,
    resolve_node_port_addresses,
)
from svcsim.proxy.iptables import compile_iptables, compile_iptables_sync
from tests.proxy.test_iptables_support import TEST_EXTERNAL_CLIENT, chain_rules, fake_context
from tests.proxy.test_iptables_upstream import overall_inputs

LAST_RULE = (
    '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be '
    'the last rule in this chain"'
)


@pytest.mark.parametrize(
    ("values", "node_ip", "expected"),
    [
        (("primary",), "192.168.0.2", ("192.168.0.2/32",)),
        (("primary",), "127.0.0.1", ()),  # a loopback node IP gives no CIDR: every address
        (("primary",), None, ()),
        (("10.0.0.0/8",), "192.168.0.2", ("10.0.0.0/8",)),
        ((), "192.168.0.2", ()),
    ],
)
def test_primary_becomes_the_node_ip(
    values: tuple[str, ...], node_ip: str | None, expected: tuple[str, ...]
) -> None:
    """cmd/kube-proxy/app/server.go: a lone ``primary`` is ``<nodeIP>/32``."""
    assert resolve_node_port_addresses(values, node_ip) == expected


def test_primary_writes_one_nodeport_jump_to_the_node_ip() -> None:
    addresses = resolve_node_port_addresses(("primary",), "192.168.0.2")
    text = compile_iptables_sync([], [], fake_context(node_port_addresses=addresses)).restore_text
    jumps = [line for line in text.splitlines() if line.startswith(LAST_RULE)]
    assert jumps == [f"{LAST_RULE} -d 192.168.0.2 -j KUBE-NODEPORTS"]
    # 127.0.0.0/8 is left out, so localhost NodePorts are off: no anti-martian rule.
    assert chain_rules(text, "filter", "KUBE-FIREWALL") == ""


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (("primary",), []),
        (("192.168.0.0/24", "127.0.0.1/32"), []),
        (("10.0.0.1/8",), []),  # host bits: kube-proxy parses CIDRs sloppily
        (("primary", "10.0.0.0/8"), [(0, "can't use both 'primary' and CIDRs")]),
        (("10.0.0.0/8", "primary"), [(1, "can't use both 'primary' and CIDRs")]),
        (
            ("foo",),
            [(0, "must be a CIDR such as 192.168.0.0/24, or 'primary', got 'foo'")],
        ),
        (("2001:db8::/64",), [(0, "only IPv4 is simulated, got '2001:db8::/64'")]),
    ],
)
def test_node_port_addresses_are_checked_as_validation_go(
    values: tuple[str, ...], expected: list[tuple[int, str]]
) -> None:
    assert node_port_address_problems(values) == expected


@pytest.mark.parametrize(
    ("name", "wildcard", "expected"),
    [
        ("cbr0", False, None),
        ("", False, None),
        ("a" * 15, False, None),
        (
            "a" * 16,
            False,
            "interface name '" + "a" * 16 + "' is longer than 15 characters (iptables' limit)",
        ),
        ("a" * 14, True, None),
        (
            "a" * 15,
            True,
            "interface name '" + "a" * 15 + "' is longer than 14 characters (iptables' limit)",
        ),
        ("br 0", False, "'br 0' is not a Linux interface name (no '/', ':' or spaces)"),
        ("eth0:1", False, "'eth0:1' is not a Linux interface name (no '/', ':' or spaces)"),
    ],
)
def test_interface_names(name: str, wildcard: bool, expected: str | None) -> None:
    assert interface_name_problem(name, wildcard=wildcard) == expected


def test_context_refuses_an_interface_iptables_would_refuse() -> None:
    with pytest.raises(ValueError, match="longer than 14"):
        NodeContext("n", local_detector="InterfaceNamePrefix", local_detector_value="x" * 15)


@pytest.mark.parametrize(
    ("mode", "value", "pods_on", "uplink"),
    [
        ("ClusterCIDR", "10.0.0.0/8", "veth0", "eth0"),
        ("NodeCIDR", "10.0.1.0/24", "veth0", "eth0"),
        ("BridgeInterface", "cbr0", "cbr0", "eth0"),
        ("BridgeInterface", "eth0", "eth0", "ens3"),
        ("InterfaceNamePrefix", "cali", "cali0", "eth0"),
        ("InterfaceNamePrefix", "e", "e0", "uplink0"),
    ],
)
def test_node_network_puts_pods_where_the_detector_looks(
    mode: str, value: str, pods_on: str, uplink: str
) -> None:
    ctx = fake_context(local_detector=mode, local_detector_value=value)
    network = node_network(ctx, "10.0.1.0/24")
    pod = Packet("10.0.1.5", "172.30.0.41", "tcp", 80, origin="pod")
    outside = Packet("203.0.113.2", "172.30.0.41", "tcp", 80, origin="external")
    assert (network.in_interface(pod), network.in_interface(outside)) == (pods_on, uplink)
    assert network.node_ips == ctx.node_ips


@pytest.mark.parametrize(
    ("mode", "value"),
    [
        ("ClusterCIDR", "10.0.0.0/8"),
        ("NodeCIDR", "10.0.1.0/24"),
        ("BridgeInterface", "cbr0"),
        ("InterfaceNamePrefix", "veth"),
    ],
)
def test_each_detector_tells_pods_from_outsiders_on_its_network(mode: str, value: str) -> None:
    """TestInternalExternalMasquerade's ClusterIP flows, for every detector mode."""
    ctx = fake_context(local_detector=mode, local_detector_value=value)
    services, slices = overall_inputs()
    ruleset = compile_iptables(services, slices, ctx)
    network = node_network(ctx, "10.0.1.0/24")
    masqueraded = {}
    for origin, src in (("pod", "10.0.1.7"), ("external", TEST_EXTERNAL_CLIENT)):
        packet = Packet(src, "172.30.0.41", "tcp", 80, origin=origin)
        outcome = trace(ruleset, packet, network).outcome
        assert outcome.dnat == ("10.180.0.1", 80)
        masqueraded[origin] = outcome.masquerade
    assert masqueraded == {"pod": False, "external": True}
