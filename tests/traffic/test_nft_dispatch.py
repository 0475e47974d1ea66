"""nf_tables dispatches: reuse across syncs and nodes, changed reads, numgen groups in one pass."""

from __future__ import annotations

import numpy as np
import pytest

from svcsim.netfilter.nft_index import NftDispatch
from svcsim.sim.nft_sync import service_of
from svcsim.traffic.dispatch import DispatchCache
from svcsim.traffic.draws import SeedDraws32, SeedStream
from svcsim.traffic.groups import Groups, chain_choice, chain_spine
from svcsim.traffic.nft_dispatch import nft_changes
from tests.traffic.world import World


def _service(w: World, name: str, vip: str, endpoints: int, *, affinity: bool = False) -> None:
    for i in range(endpoints):
        w.add_pod(f"{name}-{i}", w.nodes[i % len(w.nodes)], {"app": name})
    w.add_service(name, vip, {"app": name}, affinity=affinity)


def _world(**services: int) -> World:
    w = World(mode="nftables")
    for i, (name, n) in enumerate(services.items()):
        _service(w, name, f"10.96.0.{i + 1}", n)
    w.update_slices()
    w.program()
    return w


def _lookup(cache: DispatchCache, w: World, node: str, vip: str) -> NftDispatch:
    found = cache.lookup(w.kernels[node], "10.244.1.200", "pod", vip, "tcp", 80)
    assert isinstance(found, NftDispatch)
    return found


def test_dispatches_survive_syncs_that_do_not_touch_them_and_are_shared() -> None:
    w = _world(a=3, b=2)
    cache = DispatchCache()
    a1, b1 = _lookup(cache, w, "node-1", "10.96.0.1"), _lookup(cache, w, "node-1", "10.96.0.2")
    assert cache.nft.built == 2
    # node-2's table reads alike for a (each parse here is fresh: reads compare by value).
    assert _lookup(cache, w, "node-2", "10.96.0.1").outcomes == a1.outcomes
    old = w.kernels["node-1"].nft
    _service(w, "b", "10.96.0.2", 4)  # b gains endpoints; a is untouched
    w.update_slices()
    w.program()
    new = w.kernels["node-1"].nft
    assert old is not None and new is not None
    changed = nft_changes(old, new)
    assert _lookup(cache, w, "node-1", "10.96.0.1") is a1  # reused: nothing it read changed
    b2 = _lookup(cache, w, "node-1", "10.96.0.2")
    assert b2 is not b1 and len(b2.outcomes) > len(b1.outcomes)
    owners = {service_of(str(k[1])) for k in changed if k[0] == "chain"}
    assert "default/b" in owners and "default/a" not in owners
    assert cache.nft.reused >= 2


@pytest.mark.parametrize("sizes", [(1,), (2, 3), (7, 25, 4)])
def test_numgen_groups_choose_as_the_dispatch_resolves(sizes: tuple[int, ...]) -> None:
    w = _world(**{f"s{i}": n for i, n in enumerate(sizes)})
    cache, groups = DispatchCache(), Groups()
    dispatches = []
    for s in range(len(sizes)):
        d = _lookup(cache, w, "node-1", f"10.96.0.{s + 1}")
        spine = chain_spine(d)
        assert spine is not None and spine.one_draw and len(spine.bounds) == sizes[s] - 1
        groups.add((s, "node-1", "x"), 0, True, spine, [])
        dispatches.append(d)
    seeds = SeedStream(np.random.default_rng(3)).take(3000)
    g = (np.arange(len(seeds)) % len(sizes)).astype(np.int32)
    chosen = chain_choice(groups.materialise(), g, seeds)
    for i in range(0, len(seeds), 7):
        d = dispatches[int(g[i])]
        assert chosen[i] == d.resolve_index(SeedDraws32(int(seeds[i])))
    for s, n in enumerate(sizes):
        assert len(np.unique(chosen[g == s])) == n


def test_iptables_and_numgen_groups_mix_in_one_pass() -> None:
    nft = _world(a=5)
    ipt = World()
    _service(ipt, "a", "10.96.0.1", 5)
    ipt.update_slices()
    ipt.program()
    cache, groups = DispatchCache(), Groups()
    d_nft = _lookup(cache, nft, "node-1", "10.96.0.1")
    d_ipt = cache.lookup(ipt.kernels["node-1"], "10.244.1.200", "pod", "10.96.0.1", "tcp", 80)
    for gid, d in enumerate((d_nft, d_ipt)):
        spine = chain_spine(d)
        assert spine is not None
        groups.add((gid, "node-1", "x"), 0, True, spine, [])
    seeds = SeedStream(np.random.default_rng(5)).take(2000)
    g = (np.arange(len(seeds)) % 2).astype(np.int32)
    mixed = chain_choice(groups.materialise(), g, seeds)
    alone_nft, alone_ipt = Groups(), Groups()
    for alone, d in ((alone_nft, d_nft), (alone_ipt, d_ipt)):
        spine = chain_spine(d)
        assert spine is not None
        alone.add((0, "node-1", "x"), 0, True, spine, [])
    zeros = np.zeros(len(seeds) // 2, dtype=np.int32)
    assert np.array_equal(mixed[g == 0], chain_choice(alone_nft.materialise(), zeros, seeds[::2]))
    assert np.array_equal(mixed[g == 1], chain_choice(alone_ipt.materialise(), zeros, seeds[1::2]))
