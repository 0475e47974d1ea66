"""Nodes in step share one iptables compile: the cost of N nodes is one node's, results equal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pytest

from svcsim.k8s.objects import Endpoint, EndpointSlice, Service, ServicePort, TrafficPolicy
from svcsim.proxy.context import NodeContext
from svcsim.proxy.iptables import IptablesSync, sync_from_maps
from svcsim.proxy.shared_maps import node_endpoints_map, shared_endpoints, shared_service_port_map
from svcsim.scenario import build
from svcsim.sim import kubeproxy, shared_sync
from svcsim.sim.caches import RunCaches
from svcsim.sim.shared_sync import iptables_compile, shared_context
from tests.proxy.test_iptables_support import ep, make_service, make_slice, port
from tests.sim.shared_sync_cases import in_step_world, records

SLICE = make_slice("ns", "web", (ep("10.244.1.1", "n1"), ep("10.244.2.1", "n2")), (port(8080),))
HINTED = make_slice(
    "ns",
    "web",
    (Endpoint(("10.244.1.1",), node_name="n1", hint_nodes=("n1",)), ep("10.244.2.1", "n2")),
    (port(8080),),
)


def web(**spec: Any) -> Service:
    return make_service(
        "ns", "web", cluster_ip="10.96.0.10", ports=(ServicePort(80, target_port=8080),), **spec
    )


def ctx(node: str, ip: str, **facts: Any) -> NodeContext:
    return NodeContext.with_cluster_cidr(node, "10.244.0.0/16", node_ips=(ip,), **facts)


CASES: dict[str, tuple[Service, EndpointSlice, dict[str, Any], bool]] = {
    # name: (Service, slice, context facts, shared between n1 and n3)
    "cluster policy": (web(), SLICE, {}, True),
    "internalTrafficPolicy Local": (
        web(internal_traffic_policy=TrafficPolicy.LOCAL), SLICE, {}, False
    ),
    "node hints": (web(), HINTED, {}, False),
    "loadBalancerSourceRanges": (
        web(load_balancer_source_ranges=("10.0.0.0/8",)), SLICE, {}, False
    ),
    "nodePortAddresses": (web(), SLICE, {"node_port_addresses": ("192.168.0.0/16",)}, False),
}  # fmt: skip


@pytest.mark.parametrize("name", CASES)
def test_shared_compile_is_each_nodes_own_compile(name: str) -> None:
    svc, sl, facts, sharable = CASES[name]
    caches = RunCaches()
    ports = shared_service_port_map([svc], caches.compile)
    shared = shared_endpoints([sl], caches.compile)
    got: dict[str, IptablesSync] = {}
    for node, ip in (("n1", "192.168.0.1"), ("n3", "192.168.0.3")):
        own = ctx(node, ip, **facts)
        endpoints = node_endpoints_map(shared, node, caches.compile)
        got[node] = iptables_compile(
            ports, shared, endpoints, node, own, shared_context(own, caches), caches
        )
        alone = sync_from_maps(ports, endpoints, own)  # afresh, the node's own inputs
        assert got[node].restore_text == alone.restore_text
        assert got[node].stats == alone.stats
    assert (got["n1"] is got["n3"]) == sharable


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real: Callable[..., IptablesSync] = shared_sync.sync_from_maps

    def counted(*args: Any, **kwargs: Any) -> IptablesSync:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(shared_sync, "sync_from_maps", counted)
    return calls


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The in-step scenario with 2 and 6 nodes, sharing or not; compile calls counted."""
    tmp = tmp_path_factory.mktemp("in-step")
    out: dict[str, Any] = {}
    with pytest.MonkeyPatch.context() as mp:
        calls = _counting(mp)
        for key, nodes, share in (("2", 2, True), ("6", 6, True), ("6 alone", 6, False)):
            if not share:  # no node has a context to share: each compiles its own
                mp.setattr(kubeproxy, "shared_context", lambda *_: None)
                mp.setattr(build, "shared_context", lambda *_: None)
            calls[0] = 0
            world = in_step_world(tmp, nodes)
            world.run()
            syncs = world.recorder.frames()["syncs"]
            out[key] = (calls[0], len(syncs), records(world), nodes)
    return out


def test_six_nodes_in_step_compile_as_often_as_two(runs: dict[str, Any]) -> None:
    calls2, syncs2, _, _ = runs["2"]
    calls6, syncs6, _, _ = runs["6"]
    alone, syncs_alone, _, nodes = runs["6 alone"]
    assert syncs6 == 3 * syncs2  # every node syncs ...
    assert calls6 == calls2  # ... and nodes in step compile once for all (the warm start too)
    # Without sharing, once per node and sync, and once per node for the warm start's rules.
    assert alone == syncs_alone + nodes
    assert alone > 2 * calls6


def test_sharing_changes_no_record(runs: dict[str, Any]) -> None:
    shared, alone = runs["6"][2], runs["6 alone"][2]
    assert shared.keys() == alone.keys()
    for name in shared:
        pd.testing.assert_frame_equal(shared[name], alone[name])
