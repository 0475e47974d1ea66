"""The batched engine's per-state caches: shared groups, source classes, network answers."""

from __future__ import annotations

import ipaddress
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcsim.netfilter.index import Dispatch, build_dispatch
from svcsim.netfilter.model import AddressMatch, Ruleset
from svcsim.netfilter.packet import NodeNetwork, Packet
from svcsim.sim.network import BackendState
from svcsim.traffic import PodSource, ServiceTarget, TrafficEngine, WorkloadSpec
from svcsim.traffic.dispatch import DispatchCache, _Built, _ChainEquality
from svcsim.traffic.groups import Representatives, SourceClasses, SourceMemos
from tests.traffic.world import World

CLIENTS = {"app": "client"}


def _world(endpoints: int, clients: int) -> World:
    w = World()
    for i in range(clients):
        w.add_pod(f"client-{i}", w.nodes[i % len(w.nodes)], CLIENTS, app="client", port=9)
    for i in range(endpoints):
        w.add_pod(f"web-{i}", w.nodes[i % len(w.nodes)], {"app": "web"})
    w.add_service("web", "10.96.0.10", {"app": "web"})
    w.add_service("np", "10.96.0.11", {"app": "web"}, node_port=30080)
    w.update_slices()
    w.program()
    return w


def _naive_signature(ruleset: Ruleset, src: str, world: World, node: str) -> tuple[object, ...]:
    """The original definition: a bool per distinct ``-s`` network, then the address type."""
    seen = {AddressMatch(r.source.network): None for *_, r in ruleset.rules() if r.source}
    address = ipaddress.ip_address(src)
    network = world.kernels[node].network
    return (*(m.matches(address) for m in seen), network.address_type(address))


_SOURCES = ["10.244.1.2", "10.244.2.2", "10.244.1.3", "10.244.2.3", "10.244.1.77",
            "10.244.2.200", "192.168.0.10", "192.168.0.11", "203.0.113.10", "127.0.0.1",
            "10.245.0.1", "224.0.0.5"]  # fmt: skip


@settings(max_examples=25, deadline=None)
@given(
    sources=st.lists(st.sampled_from(_SOURCES), min_size=2, max_size=8),
    node=st.sampled_from(["node-1", "node-2"]),
    drop=st.integers(0, 3),
)
def test_source_classes_partition_sources_like_the_plain_signature(
    sources: list[str], node: str, drop: int
) -> None:
    w = _world(endpoints=4, clients=0)
    memo = SourceMemos()
    for step in range(2):  # the memo carries over to the next ruleset's unchanged chains
        kernel = w.kernels[node]
        fresh = SourceClasses(kernel.ruleset, kernel.network)
        shared = SourceClasses(kernel.ruleset, kernel.network, memo)
        for a in sources:
            assert fresh.signature(a) == shared.signature(a)
            for b in sources:
                same = fresh.signature(a) == fresh.signature(b)
                naive = _naive_signature(kernel.ruleset, a, w, node) == _naive_signature(
                    kernel.ruleset, b, w, node
                )
                assert same == naive, (a, b)
        if step == 0:
            w.delete_pod(f"web-{drop}")
            w.update_slices()
            w.program()


def test_nodes_with_one_dispatch_and_proxy_state_share_a_group() -> None:
    w = _world(endpoints=4, clients=4)
    spec = WorkloadSpec("load", PodSource(CLIENTS), ServiceTarget("default/web"), ((0.0, 50.0),))
    engine = TrafficEngine([spec], w)
    w.engines.append(engine)
    w.run_to(1.0)
    gids = {engine.clients[c].node: int(engine._gid[0, c]) for c in engine._clients_of[0]}
    assert set(gids) == {"node-1", "node-2"} and len(set(gids.values())) == 1
    assert len(engine._groups.fast) == 1 and len(engine._groups.keys) == 2
    # kube-proxy down on node-2: its rows may differ (stale causes), so its group is its own.
    w.proxy["node-2"] = "down"
    w.view.bump()
    w.run_to(2.0)
    gids = {engine.clients[c].node: int(engine._gid[0, c]) for c in engine._clients_of[0]}
    assert len(set(gids.values())) == 2 and len(engine._groups.fast) == 2
    frame = w.finish()
    assert len(frame) > 50 and (frame.outcome == "ok").all()


_EXTERNAL_KEY = tuple[str, str, str, str, int]


def _lookup_as_fresh(cache: DispatchCache, w: World, node: str, key: _EXTERNAL_KEY) -> Dispatch:
    """``cache``'s dispatch for an external packet ``key`` on ``node``, checked against one
    built afresh on that node's rules and network."""
    kernel = w.kernels[node]
    got = cache.lookup(kernel, *key)  # type: ignore[arg-type]
    assert isinstance(got, Dispatch)  # an iptables world
    src, _origin, dst, proto, port = key
    fresh = build_dispatch(
        kernel.ruleset, Packet(src, dst, proto, port, origin="external"), kernel.network
    )
    assert got.outcomes == fresh.outcomes
    return got


@pytest.mark.parametrize("order", [("node-1", "node-2"), ("node-2", "node-1")])
def test_a_dispatch_verified_on_one_network_is_not_reused_where_answers_differ(
    order: tuple[str, str],
) -> None:
    w = _world(endpoints=3, clients=0)
    cache = DispatchCache()
    key = ("203.0.113.10", "external", "192.168.0.10", "tcp", 30080)  # local only on node-1
    for _ in range(2):
        for node in order:
            got = _lookup_as_fresh(cache, w, node, key)
            assert {o.dnat is not None for o in got.outcomes} == {node == "node-1"}
        w.program()  # new generations: every lookup revalidates
    assert cache.built == 2


def test_serving_endpoints_follow_each_versions_slices() -> None:
    w = _world(endpoints=3, clients=1)
    w.add_pod("other-0", "node-1", {"app": "other"})
    w.add_service("other", "10.96.0.12", {"app": "other"})
    w.update_slices()
    ips = {name: w.backend(name).ip for name in ("web-0", "web-1", "web-2", "other-0")}
    web = {f"{ips[f'web-{i}']}:8080" for i in range(3)}
    assert w.view.serving_endpoints("default/web:http") == web
    assert w.view.serving_endpoints("default/np:http") == web
    assert w.view.serving_endpoints("default/other:http") == {f"{ips['other-0']}:8080"}
    assert w.view.serving_endpoints("default/missing:http") == frozenset()
    other = w.view.serving_endpoints("default/other:http")
    versions = {s: w.view.slices_version(s) for s in ("default/web", "default/other")}
    w.delete_pod("web-1")
    w.update_slices()
    assert w.view.serving_endpoints("default/web:http") == web - {f"{ips['web-1']}:8080"}
    assert w.view.serving_endpoints("default/other:http") == {f"{ips['other-0']}:8080"}
    # Only the Service whose slices changed is recomputed (and its version moves).
    assert w.view.serving_endpoints("default/other:http") is other
    assert w.view.slices_version("default/other") == versions["default/other"]
    assert w.view.slices_version("default/web") > versions["default/web"]


def test_client_pods_follow_pods_and_the_network() -> None:
    w = _world(endpoints=1, clients=2)
    before = w.view.client_pods(CLIENTS)
    assert [key for key, _, _ in before] == ["default/client-0", "default/client-1"]
    assert w.view.client_pods(CLIENTS) is before  # cached while nothing changed
    w.network.set_state(w.backend("client-1"), BackendState.EXITED, w.env.now)
    assert [key for key, _, _ in w.view.client_pods(CLIENTS)] == ["default/client-0"]


@settings(max_examples=25, deadline=None)
@given(sources=st.lists(st.sampled_from(_SOURCES), min_size=1, max_size=10), drop=st.integers(0, 3))
def test_representatives_are_those_of_one_source_classes_per_node_and_rules(
    sources: list[str], drop: int
) -> None:
    w = _world(endpoints=4, clients=0)
    memos = SourceMemos()
    reps = Representatives(memos)
    known: list[str] = []
    plain_known: list[str] = []
    for step in range(2):
        plain = {n: SourceClasses(w.kernels[n].ruleset, w.kernels[n].network) for n in w.nodes}
        for src in sources:
            for node in w.nodes:  # node-1's and node-2's own IPs type as LOCAL only there
                kernel = w.kernels[node]
                want = plain[node].representative(src, plain_known)
                assert reps.of(kernel.ruleset, kernel.network, src, known) == want, (src, node)
                assert known == plain_known
        if step == 0:  # new rules: other -s addresses (hairpin masquerade per endpoint)
            w.delete_pod(f"web-{drop}")
            w.add_pod("web-9", "node-1", {"app": "web"})
            w.update_slices()
            w.program()


def test_a_dispatch_is_refused_for_an_answer_the_nodes_last_dispatch_did_not_give() -> None:
    pod, own = ipaddress.ip_address("10.244.1.2"), ipaddress.ip_address("192.168.0.10")
    node_1, node_2 = NodeNetwork(("192.168.0.10",)), NodeNetwork(("192.168.0.11",))
    kernel_2 = SimpleNamespace(ruleset=None, network=node_2)
    dispatch = build_dispatch(Ruleset(()), Packet("10.244.1.2", "10.96.0.10", "tcp", 80), node_2)
    last = _Built(dispatch, (), ((("is_local", pod), False),), serial=1)
    last.networks[id(node_2)] = node_2  # node-2's last dispatch held there
    same = _ChainEquality()
    cases = [
        (((("is_local", pod), False), (("is_local", own), True)), False),  # node-1's answer
        (((("is_local", pod), False), (("is_local", own), False)), True),
        (((("is_local", pod), True),), False),  # a shared question, answered otherwise
    ]
    for serial, (answers, holds) in enumerate(cases, start=2):
        built = _Built(dispatch, (), answers, serial=serial)
        built.networks[id(node_1)] = node_1
        got = built.holds_on(kernel_2, same, None, last)  # type: ignore[arg-type]
        assert got is holds
        assert built.holds_on(kernel_2, same) is holds  # the same without the shortcut


@pytest.mark.parametrize("order", [("node-1", "node-2"), ("node-2", "node-1")])
def test_after_a_sync_a_dispatch_is_checked_for_the_answers_the_nodes_last_one_lacked(
    order: tuple[str, str],
) -> None:
    # node-1 answers "local" for its own address, node-2 does not: a dispatch built on one
    # must not be taken on the other, even when each node's previous dispatch held there.
    w = _world(endpoints=3, clients=0)
    cache = DispatchCache()
    key = ("203.0.113.10", "external", "192.168.0.10", "tcp", 30080)
    for step in range(3):
        for node in order:
            _lookup_as_fresh(cache, w, node, key)
        w.delete_pod(f"web-{step}")  # the Service's chains change: every dispatch is new
        w.add_pod(f"web-new-{step}", "node-2", {"app": "web"})
        w.update_slices()
        w.program()
    # node-1's dispatch is new at every sync; node-2's (no DNAT: the address is not its
    # own) reads no chain the syncs change, so it holds on.
    assert cache.built == 4
