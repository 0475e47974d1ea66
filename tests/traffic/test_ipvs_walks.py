"""The per-flow IPVS dispatch decides as ``trace_ipvs`` does; source ports as IPVS allows."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from svcsim.netfilter.conntrack_states import ConntrackTimeouts
from svcsim.netfilter.ipvs_kernel import ConnKey, ConnState, IpvsKernel
from svcsim.netfilter.ipvs_trace import trace_ipvs
from svcsim.netfilter.packet import NodeNetwork, Packet
from svcsim.proxy.context import NodeContext
from svcsim.proxy.ipvs import compile_ipvs
from svcsim.proxy.ipvs_graceful import GracefulTermination
from svcsim.sim.ipvs_sync import install_sync
from svcsim.sim.kernel import Kernel
from svcsim.traffic.attempts import Client
from svcsim.traffic.ipvs_path import IpvsPorts, IpvsWalks, ipvs_dispatch, ipvs_outcome
from svcsim.traffic.targets import Dial
from tests.proxy.ipvs_cases import NODE_IP, everything_service
from tests.proxy.test_iptables_support import TEST_NODE_NAME

CTX = NodeContext.with_cluster_cidr(TEST_NODE_NAME, "10.0.0.0/8", node_ips=(NODE_IP,))
NETWORK = NodeNetwork(node_ips=(NODE_IP,), pod_cidr="10.180.0.0/24")
DIALS = (
    ("172.30.0.41", 80),  # ClusterIP
    ("192.168.99.11", 80),  # external IP
    ("1.2.3.4", 80),  # LB ingress
    (NODE_IP, 30080),  # NodePort
    ("172.30.0.41", 81),  # no such port
)
CLIENTS = (
    Client("pod", "10.180.0.7", TEST_NODE_NAME, "pod"),
    Client("host", NODE_IP, TEST_NODE_NAME, "host"),
    Client("outside", "203.0.113.9", TEST_NODE_NAME, "external"),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 4)), min_size=1, max_size=30))
def test_memoised_dispatch_agrees_with_the_trace(flows: list[tuple[int, int]]) -> None:
    kernel = Kernel(TEST_NODE_NAME, NETWORK, 0, ConntrackTimeouts(), mode="ipvs")
    wanted = compile_ipvs(*everything_service(), CTX, "rr", show_draining=False)
    install_sync(kernel, GracefulTermination(), wanted, 0.0, restored=True)
    assert kernel.ipvs is not None
    twin = IpvsKernel()
    twin.install(kernel.ipvs.virtual_servers)
    walks = IpvsWalks()
    for i, (c, d) in enumerate(flows):
        client, (ip, port) = CLIENTS[c], DIALS[d]
        dial = Dial(ip, port, "tcp", f"{ip}:{port}", None, None)
        t, sport = 1.0 + i, 40000 + i
        found = ipvs_dispatch(kernel, client, dial, sport, t, walks)
        packet = Packet(client.ip, ip, "tcp", port, sport=sport, origin=client.origin)
        walked = trace_ipvs(kernel.ipvs, twin, packet, NETWORK, now_s=t)
        after = walked.after.outcome if walked.after is not None else None
        assert found.decision == walked.decision
        assert found.outcome == ipvs_outcome(walked.decision, walked.before.outcome, after)


def test_ports_skip_open_entries_and_reuse_closing_ones() -> None:
    kernel = Kernel(TEST_NODE_NAME, NETWORK, 0, ConntrackTimeouts(), mode="ipvs")
    wanted = compile_ipvs(*everything_service(), CTX, "rr", show_draining=False)
    install_sync(kernel, GracefulTermination(), wanted, 0.0, restored=True)
    table = kernel.ipvs_table
    assert table is not None
    ports = IpvsPorts()
    probe = ConnKey("TCP", "10.180.0.7", 0, "172.30.0.41", 80)
    first = ports.allocate(table, probe, 1.0)
    second = ports.allocate(table, probe, 1.0)
    assert (first, second) == (32768, 32769)
    for sport in (first, second):
        table.connect("tcp", "10.180.0.7", sport, "172.30.0.41", 80, 1.0)
        table.established(ConnKey("TCP", "10.180.0.7", sport, "172.30.0.41", 80), 1.0)
    table.settle(ConnKey("TCP", "10.180.0.7", first, "172.30.0.41", 80), 2.0, ConnState.TIME_WAIT)
    ports.next[probe.src] = 32768  # as after a wrap of the range
    assert ports.allocate(table, probe, 3.0) == first  # TIME_WAIT: reusable
    assert ports.allocate(table, probe, 3.0) == 32770  # second is still open: skipped
