"""The dispatch index agrees with the interpreter on kube-proxy's rules under every switch.

The same property as test_index.py's, over what the compiler writes for upstream's
TestOverallIPTablesRules services with each switch of tests/proxy/switch_cases.py, on the node
network each local-traffic detector implies (Pods arrive where the detector looks for them).
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svcsim.netfilter.index import DispatchIndex
from svcsim.netfilter.interpreter import trace
from svcsim.netfilter.packet import Origin, Packet
from svcsim.netfilter.recent import RecentTable
from svcsim.proxy.context import node_network
from svcsim.proxy.iptables import compile_iptables
from tests.proxy.switch_cases import NODE_POD_CIDR, SWITCHES
from tests.proxy.test_iptables_support import TEST_EXTERNAL_CLIENT, TEST_NODE_IP, fake_context
from tests.proxy.test_iptables_upstream import overall_inputs

SERVICES, SLICES = overall_inputs()
SOURCES: dict[Origin, tuple[str, ...]] = {
    "pod": ("10.0.1.7", "10.180.0.5"),  # a Pod of this node; an endpoint reaching itself
    "host": (TEST_NODE_IP, "127.0.0.1"),
    "external": (TEST_EXTERNAL_CLIENT, "203.0.113.200"),  # inside / outside the LB's ranges
}
DESTINATIONS = sorted(
    {(svc.cluster_ip, p.port) for svc in SERVICES for p in svc.ports}
    | {(ip, p.port) for svc in SERVICES for p in svc.ports for ip in svc.external_ips}
    | {(lb.ip, p.port) for svc in SERVICES for p in svc.ports for lb in svc.load_balancer_ingress}
    | {
        (node, p.node_port)
        for svc in SERVICES
        for p in svc.ports
        if p.node_port
        for node in (TEST_NODE_IP, "127.0.0.1")
    }
)
draw_values = st.integers(0, (1 << 31) - 1)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    switch=st.sampled_from(sorted(SWITCHES)),
    origin=st.sampled_from(sorted(SOURCES)),
    pick=st.integers(0, 1),
    destination=st.sampled_from(DESTINATIONS),
    connections=st.lists(
        st.tuples(
            st.sampled_from([0.0, 1.0, 10800.0, 20000.0]),
            st.lists(draw_values, min_size=1, max_size=4),
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_resolve_agrees_with_trace_under_each_switch(
    switch: str,
    origin: Origin,
    pick: int,
    destination: tuple[str, int],
    connections: list[tuple[float, list[int]]],
) -> None:
    ctx = fake_context(**SWITCHES[switch])
    ruleset = compile_iptables(SERVICES, SLICES, ctx)
    network = node_network(ctx, NODE_POD_CIDR)
    src = SOURCES[origin][pick]
    if origin != "host" and destination[0] == "127.0.0.1":
        return  # only the node itself sends to its loopback address
    dst, dport = destination
    dispatch = DispatchIndex(ruleset, network).lookup(src, origin, dst, "tcp", dport)
    packet = Packet(src, dst, "tcp", dport, origin=origin)
    by_trace, by_index = RecentTable(), RecentTable()
    now_s = 0.0
    for gap_s, draws in connections:
        now_s += gap_s
        expected = trace(
            ruleset, packet, network, draw=itertools.cycle(draws), recent=by_trace, now_s=now_s
        )
        got = dispatch.resolve(itertools.cycle(draws), by_index, now_s)
        assert got == expected.outcome, expected.format()
        assert by_index.snapshot() == by_trace.snapshot()
