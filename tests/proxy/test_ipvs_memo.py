"""IPVS compiles through a run's IpvsMemo == compiles without one, over random endpoint changes."""

from __future__ import annotations

import numpy as np
import pytest

from svcsim.netfilter.ipvs import IpvsState
from svcsim.proxy.context import NodeContext
from svcsim.proxy.endpoints import build_endpoints_map, build_service_port_map
from svcsim.proxy.ipvs import IpvsMemo, ipvs_from_maps
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
        previous = got
    assert 0 < incremental < 30  # both ways were taken
