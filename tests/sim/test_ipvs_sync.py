"""IPVS-mode syncs: what they cost, what a blocked one still changes, the draining check."""

from __future__ import annotations

import dataclasses

import pytest

from svcsim.netfilter.conntrack_states import ConntrackTimeouts
from svcsim.netfilter.ipvs import IpvsState
from svcsim.netfilter.ipvs_kernel import ConnKey, ConnState
from svcsim.netfilter.packet import NodeNetwork
from svcsim.proxy.context import NodeContext
from svcsim.proxy.ipvs import compile_ipvs
from svcsim.proxy.ipvs_graceful import GracefulTermination
from svcsim.sim.ipvs_cost import (
    DEFAULT_IPVS_BASE_S,
    DEFAULT_IPVS_PER_CHANGE_S,
    DEFAULT_IPVS_PER_OBJECT_S,
    IPVS_84906_DURATION_S,
    IPVS_84906_OBJECTS,
    IpvsSyncCostModel,
)
from svcsim.sim.ipvs_sync import IpvsSyncCounts, check_draining, install_sync, sync_counts
from svcsim.sim.kernel import Kernel, empty_ipvs
from tests.proxy.ipvs_cases import NODE_IP, cluster_service
from tests.proxy.test_iptables_support import TEST_NODE_NAME

VIP = ("TCP", "172.30.0.41", 80)
LOCAL = ("10.180.0.1", 8080)
"""The test Service's endpoint on this node."""
CTX = NodeContext.with_cluster_cidr(TEST_NODE_NAME, "10.0.0.0/8", node_ips=(NODE_IP,))


def _kernel() -> Kernel:
    network = NodeNetwork(node_ips=(NODE_IP,), pod_cidr="10.180.0.0/24")
    return Kernel(TEST_NODE_NAME, network, 0, ConntrackTimeouts(), mode="ipvs")


def _wanted(drop: str | None = None) -> IpvsState:
    """The test Service's state after a sync, without the real server at ``drop``."""
    services, slices = cluster_service()
    state = compile_ipvs(services, slices, CTX, show_draining=False)
    if drop is None:
        return state
    servers = tuple(
        dataclasses.replace(vs, real_servers=tuple(r for r in vs.real_servers if r.address != drop))
        for vs in state.virtual_servers
    )
    return dataclasses.replace(state, virtual_servers=servers)


def _addresses(kernel: Kernel) -> set[tuple[str, int]]:
    table = kernel.ipvs_table
    assert table is not None
    return {(d.address, d.port) for d in table.real_servers(VIP)}


def test_the_cost_model_is_calibrated_on_kubernetes_84906() -> None:
    model = IpvsSyncCostModel()
    assert model.duration_s(IPVS_84906_OBJECTS, 0) == pytest.approx(IPVS_84906_DURATION_S)
    assert model.duration_s(10, 3) == pytest.approx(
        DEFAULT_IPVS_BASE_S + 10 * DEFAULT_IPVS_PER_OBJECT_S + 3 * DEFAULT_IPVS_PER_CHANGE_S
    )
    with pytest.raises(ValueError, match="negative"):
        IpvsSyncCostModel(per_change_s=-1.0)


def test_sync_counts_walk_everything_and_count_only_changes() -> None:
    wanted = _wanted()
    first = sync_counts(empty_ipvs(), wanted)
    servers = len(wanted.virtual_servers) + sum(len(v.real_servers) for v in wanted.virtual_servers)
    entries = sum(len(s.members) for s in wanted.ipsets.sets)
    assert first == IpvsSyncCounts(servers + entries, servers + entries)  # all added
    assert sync_counts(wanted, wanted) == IpvsSyncCounts(first.objects, 0)
    # One real server fewer (the sets as they were): one change; and back: one again.
    fewer = _wanted(drop=LOCAL[0])
    assert sync_counts(wanted, fewer) == IpvsSyncCounts(first.objects - 1, 1)
    assert sync_counts(fewer, wanted).changes == 1
    # Everything deleted: one call per virtual server (its real servers go with it), and
    # one per set entry.
    assert sync_counts(wanted, empty_ipvs()).changes == len(wanted.virtual_servers) + entries


def test_a_busy_real_server_drains_at_weight_0_until_its_connections_end() -> None:
    kernel = _kernel()
    graceful = GracefulTermination()
    install_sync(kernel, graceful, _wanted(), 0.0, restored=True)
    table = kernel.ipvs_table
    assert table is not None
    busy = []
    for sport in range(40000, 40004):
        decision = table.connect("tcp", "10.180.0.9", sport, VIP[1], VIP[2], 1.0)
        key = ConnKey("TCP", "10.180.0.9", sport, VIP[1], VIP[2])
        table.established(key, 1.0)
        if decision.real_server == LOCAL:
            busy.append(key)
    assert busy
    install_sync(kernel, graceful, _wanted(drop=LOCAL[0]), 2.0, restored=True)
    assert {(d.address, d.port): d.weight for d in table.real_servers(VIP)}[LOCAL] == 0
    assert kernel.ipvs is not None
    assert LOCAL[0] in {r.address for vs in kernel.ipvs.virtual_servers for r in vs.real_servers}
    # New connections never go there; its own connections still do.
    for sport in range(41000, 41010):
        assert table.connect("tcp", "10.180.0.9", sport, VIP[1], VIP[2], 3.0).real_server != LOCAL
    kept = table.forward(busy[0], 3.0)
    assert kept is not None and kept.real_server == LOCAL
    assert check_draining(kernel, graceful, 60.0) == 0
    for key in busy:
        table.settle(key, 61.0, ConnState.TIME_WAIT)
    assert check_draining(kernel, graceful, 120.0) == 0  # TIME_WAIT counts as inactive
    assert check_draining(kernel, graceful, 181.0) == 1  # 61 s + 120 s
    assert LOCAL not in _addresses(kernel)
    assert LOCAL[0] not in {
        r.address for vs in kernel.ipvs.virtual_servers for r in vs.real_servers
    }


def test_a_blocked_sync_still_changes_the_servers_but_not_the_helper_rules() -> None:
    kernel = _kernel()
    graceful = GracefulTermination()
    first = install_sync(kernel, graceful, _wanted(), 0.0, restored=True)
    gone = _wanted(drop="10.180.1.1")
    after = install_sync(kernel, graceful, gone, 1.0, restored=False)
    assert ("10.180.1.1", 8080) not in _addresses(kernel)
    assert after.ruleset is first.ruleset
    assert after.ipsets == gone.ipsets


def test_a_reboot_empties_the_ipvs_table() -> None:
    kernel = _kernel()
    install_sync(kernel, GracefulTermination(), _wanted(), 0.0, restored=True)
    table = kernel.ipvs_table
    assert table is not None
    table.connect("tcp", "10.180.0.9", 40000, VIP[1], VIP[2], 1.0)
    kernel.reboot(5.0)
    assert kernel.ipvs_table is not table
    assert kernel.ipvs_table is not None and not kernel.ipvs_table.conns
    assert kernel.ipvs == empty_ipvs()
