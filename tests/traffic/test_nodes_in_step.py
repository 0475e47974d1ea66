"""Nodes in step: one dispatch lookup for all, representatives kept, client lists kept."""

from __future__ import annotations

from typing import Any

import pytest

from svcsim.netfilter.index import build_dispatch
from svcsim.netfilter.packet import Origin, Packet
from svcsim.sim.kernel import Kernel
from svcsim.sim.network import BackendState
from svcsim.traffic import PodSource, ServiceTarget, TrafficEngine, WorkloadSpec
from svcsim.traffic.dispatch import DispatchCache
from svcsim.traffic.groups import Representatives, SourceMemos
from tests.traffic.world import World

CLIENTS = {"app": "client"}
NODES = ("node-1", "node-2", "node-3")


def _in_step(w: World) -> None:
    """Every node holds node-1's very ruleset object (as nodes in step do in a run)."""
    w.program(["node-1"])
    rules = w.kernels["node-1"].ruleset
    for node in w.nodes[1:]:
        w.kernels[node].install(rules, w.env.now)


def _world(endpoints: int = 3) -> World:
    w = World(nodes=NODES)
    for i, node in enumerate(NODES):
        labels = {**CLIENTS, "solo": "yes"} if i == 1 else CLIENTS
        w.add_pod(f"client-{i}", node, labels, app="client", port=9)
    for i in range(endpoints):
        w.add_pod(f"web-{i}", NODES[i % len(NODES)], {"app": "web"})
    w.add_service("web", "10.96.0.10", {"app": "web"})
    w.add_service("np", "10.96.0.11", {"app": "web"}, node_port=30080)
    w.update_slices()
    _in_step(w)
    return w


@pytest.mark.parametrize(
    ("key", "alike"),
    [
        (("10.244.1.50", "pod", "10.96.0.10", "tcp", 80), True),
        # node-1's address: LOCAL there only, so node-2's walks would go elsewhere.
        (("203.0.113.10", "external", "192.168.0.10", "tcp", 30080), False),
    ],
)
def test_adopt_takes_a_dispatch_only_where_the_network_answers_alike(
    key: tuple[str, Origin, str, str, int], alike: bool
) -> None:
    w = _world()
    one, two = w.kernels["node-1"], w.kernels["node-2"]
    cache = DispatchCache()
    assert not cache.adopt(two, one, *key)  # nothing looked up yet
    first = cache.lookup(one, *key)
    assert cache.adopt(two, one, *key) is alike
    got = cache.lookup(two, *key)
    assert (got is first) is alike and cache.built == (1 if alike else 2)
    src, origin, dst, protocol, port = key
    packet = Packet(src, dst, protocol, port, origin=origin)
    fresh = build_dispatch(two.ruleset, packet, two.network)
    assert got.outcomes == fresh.outcomes


def test_adopt_refuses_another_ruleset_object() -> None:
    w = _world()
    key = ("10.244.1.50", "pod", "10.96.0.10", "tcp", 80)
    cache = DispatchCache()
    cache.lookup(w.kernels["node-1"], *key)
    w.program(["node-2"])  # equal rules, but its own objects
    assert not cache.adopt(w.kernels["node-2"], w.kernels["node-1"], *key)


def _fresh_rep(engine: TrafficEngine, w: World, client_id: int) -> str:
    """The representative a throw-away set of memos gives (the engine's known sources)."""
    client = engine.clients[client_id]
    kernel = w.kernels[client.node]
    known = list(engine._known_sources)
    return Representatives(SourceMemos()).of(kernel.ruleset, kernel.network, client.ip, known)


def test_a_sync_of_nodes_in_step_asks_once_and_keeps_representatives_right() -> None:
    w = _world(endpoints=4)
    spec = WorkloadSpec("load", PodSource(CLIENTS), ServiceTarget("default/web"), ((0.0, 60.0),))
    engine = TrafficEngine([spec], w)
    w.engines.append(engine)
    asked: list[str] = []
    lookup = engine.dispatches.lookup_reads

    def counted(kernel: Kernel, *args: Any) -> Any:
        asked.append(kernel.node)
        return lookup(kernel, *args)

    engine.dispatches.lookup_reads = counted  # type: ignore[method-assign]
    w.run_to(1.0)
    clients = engine._clients_of[0].tolist()
    assert len(asked) == 1 and len(clients) == len(NODES)
    steps = [
        # Endpoints change: representatives are kept, the other nodes take node-1's dispatch.
        (lambda: w.delete_pod("web-0"), ["node-1"], 1),
        # client-1 becomes an endpoint (its -s part moves): its own representative, lookup and
        # group; client-2 keeps client-0 as its representative and takes node-1's dispatch.
        (lambda: w.add_service("solo", "10.96.0.13", {"solo": "yes"}), ["node-1", "node-2"], 2),
        # Every client Pod becomes an endpoint too: their -s parts differ, so each is its own
        # representative, with a lookup and a group of its own.
        (lambda: w.add_service("self", "10.96.0.12", CLIENTS), list(NODES), 3),
    ]
    for k, (step, lookups, groups) in enumerate(steps):
        asked.clear()
        step()
        w.update_slices()
        _in_step(w)
        w.run_to(2.0 + k)
        assert sorted(asked) == lookups
        assert len({int(engine._gid[0, c]) for c in clients}) == groups
        for c in clients:
            assert engine._dispatch_of[(0, c)].rep == _fresh_rep(engine, w, c)
    reps = {engine._dispatch_of[(0, c)].rep for c in clients}
    assert reps == {engine.clients[c].ip for c in clients}
    frame = w.finish()
    assert len(frame) > 100 and (frame.outcome == "ok").all()


def test_client_lists_are_dropped_only_by_changes_that_touch_them() -> None:
    w = _world()
    view = w.view
    before = view.client_pods(CLIENTS)
    assert [key for key, _, _ in before] == [f"default/client-{i}" for i in range(3)]
    # A Pod the selector does not match, and a backend of such a Pod: the same list.
    w.add_pod("web-9", "node-1", {"app": "web"})
    w.network.set_state(w.backend("web-9"), BackendState.CRASHED, w.env.now)
    w.delete_pod("web-9")
    assert view.client_pods(CLIENTS) is before
    changes = [
        lambda: w.network.set_state(w.backend("client-1"), BackendState.CRASHED, w.env.now),
        lambda: w.add_pod("client-9", "node-2", CLIENTS, app="client", port=9),
        lambda: w.delete_pod("client-0"),
        view.bump,
    ]
    for change in changes:
        kept = view.client_pods(CLIENTS)
        change()
        now = view.client_pods(CLIENTS)
        assert now is not kept and now == view._compute_clients(CLIENTS).clients
    assert [key for key, _, _ in now] == ["default/client-2", "default/client-9"]
