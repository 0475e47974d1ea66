"""IPVS compiles through a run's IpvsMemo == compiles without one, over random endpoint changes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from svcsim.netfilter.ipvs import IpvsState
from svcsim.proxy.context import NodeContext
from svcsim.proxy.endpoints import EndpointsMap, build_endpoints_map, build_service_port_map
from svcsim.proxy.ipvs import IpvsMemo, ipvs_from_maps
from svcsim.proxy.names import ServicePortName
from svcsim.sim.caches import RunCaches
from svcsim.sim.ipvs_sync import sync_counts
from tests.sim.nft_splice_cases import endpoint_slice, random_endpoints, services

CTX = NodeContext.with_cluster_cidr("node-a", "10.0.0.0/8", node_ips=("192.168.0.2",))


@pytest.mark.parametrize(("seed", "scheduler", "draining"), [(0, "rr", False), (1, "mh", True)])
def test_memo_compiles_what_a_fresh_compile_does(seed: int, scheduler: str, draining: bool) -> None:
    """Each step's state (servers, ip sets, rules, dummy addresses) equals a fresh compile's."""
    rng = np.random.default_rng(seed)
    caches, memo = RunCaches(), IpvsMemo()
    svcs = services()
    ports = build_service_port_map(svcs, caches.compile)
    slices = [endpoint_slice(s, random_endpoints(rng, i)) for i, s in enumerate(svcs)]
    hits = 0
    for _ in range(25):
        i = int(rng.integers(0, len(svcs)))
        slices[i] = endpoint_slice(svcs[i], random_endpoints(rng, i))
        emap = build_endpoints_map(slices, "node-a", caches.compile)
        before = len(memo.parts)
        got = ipvs_from_maps(ports, emap, CTX, scheduler, show_draining=draining, memo=memo)
        hits += len(memo.parts) == before
        fresh = ipvs_from_maps(ports, emap, CTX, scheduler, show_draining=draining)
        assert got == fresh
        assert got.ipsets.as_dict() == fresh.ipsets.as_dict()
        assert got.dummy_addresses == fresh.dummy_addresses
    assert hits > 0  # some steps were served from the memo alone


@pytest.mark.parametrize("seed", [2, 3])
def test_a_compile_from_the_last_one_equals_a_fresh_compile(seed: int) -> None:
    """Random endpoint changes of one Service a step, the same port map and node: the compile
    that re-does only the changed ports (``_from_last``) == a fresh one, and the sync's counts
    (walked by position when the keys line up) == the counts walked by key."""
    rng = np.random.default_rng(seed)
    caches, memo = RunCaches(), IpvsMemo()
    svcs = services()
    ports = build_service_port_map(svcs, caches.compile)
    slices = [endpoint_slice(s, random_endpoints(rng, i)) for i, s in enumerate(svcs)]
    emap = build_endpoints_map(slices, "node-a", caches.compile)
    previous = ipvs_from_maps(ports, emap, CTX, memo=memo)
    incremental = 0
    for _ in range(30):
        i = int(rng.integers(0, len(svcs)))
        slices[i] = endpoint_slice(svcs[i], random_endpoints(rng, i))
        emap = build_endpoints_map(slices, "node-a", caches.compile)
        got = ipvs_from_maps(ports, emap, CTX, memo=memo)
        # A full compile leaves the index to be built on use; _from_last hands one on.
        incremental += got is previous or got._index is not None
        fresh = ipvs_from_maps(ports, emap, CTX)
        assert got == fresh
        assert dict(got.by_key) == dict(fresh.by_key)
        by_key = IpvsState(
            previous.dummy_addresses,
            previous.virtual_servers[::-1],  # keys out of line: counted by key
            previous.ipsets,
            previous.ruleset,
        )
        assert sync_counts(previous, got) == sync_counts(by_key, got)
        assert got.real_server_count == sum(len(vs.real_servers) for vs in got.virtual_servers)
        previous = got
    assert 0 < incremental < 30  # both ways were taken


def _some_endpoints() -> list[tuple[str, str, bool]]:
    return [("10.1.9.1", "node-a", False), ("10.1.9.2", "node-b", False)]


def _replace_first(emap: EndpointsMap) -> EndpointsMap:
    """One port's endpoints, equal but another object: the same keys in the same order."""
    first = next(iter(emap))
    return {k: (tuple(list(v)) if k == first else v) for k, v in emap.items()}


def _replace_first_with_fewer(emap: EndpointsMap) -> EndpointsMap:
    first = next(iter(emap))
    return {k: (v[:1] if k == first else v) for k, v in emap.items()}


def _unknown_port(emap: EndpointsMap) -> EndpointsMap:
    """Endpoints of a port no Service has, replaced (the proxier ignores them)."""
    return {k: (tuple(list(v)) if k == UNKNOWN else v) for k, v in emap.items()}


def _reordered(emap: EndpointsMap) -> EndpointsMap:
    """The same ports and endpoints, the map's keys in another order."""
    return dict(reversed(list(emap.items())))


def _dropped(emap: EndpointsMap) -> EndpointsMap:
    """A port loses all its endpoints (its key leaves the map)."""
    first = next(iter(emap))
    return {k: v for k, v in emap.items() if k != first}


UNKNOWN = ServicePortName("default", "gone", "p")


@pytest.mark.parametrize(
    ("change", "same_state"),
    [
        (_replace_first, True),  # the keys line up: found by identity, equal by value
        (_replace_first_with_fewer, False),  # the keys line up: one port re-done
        (_unknown_port, True),  # the keys line up, the changed one is no Service's port
        (_reordered, True),  # keys out of line: the walk by name, nothing changed
        (_dropped, False),  # a key fewer: the walk by name
    ],
)
def test_endpoint_map_changes_compile_as_a_fresh_compile(
    change: Callable[[EndpointsMap], EndpointsMap], same_state: bool
) -> None:
    caches, memo = RunCaches(), IpvsMemo()
    svcs = services()
    ports = build_service_port_map(svcs, caches.compile)
    slices = [endpoint_slice(s, _some_endpoints()) for s in svcs]
    emap = build_endpoints_map(slices, "node-a", caches.compile)
    emap[UNKNOWN] = next(iter(emap.values()))
    last = ipvs_from_maps(ports, emap, CTX, memo=memo)
    assert last.real_server_count == sum(len(vs.real_servers) for vs in last.virtual_servers)
    emap = change(emap)
    got = ipvs_from_maps(ports, emap, CTX, memo=memo)
    assert got == ipvs_from_maps(ports, emap, CTX)
    assert (got is last) is same_state
    assert got.real_server_count == sum(len(vs.real_servers) for vs in got.virtual_servers)
