"""Dispatch reuse, source classes and the multi-group chain choice against the netfilter index."""

from __future__ import annotations

import numpy as np
import pytest

from svcsim.netfilter.index import build_dispatch
from svcsim.netfilter.packet import Packet
from svcsim.traffic import dispatch as dispatch_module
from svcsim.traffic.dispatch import DispatchCache
from svcsim.traffic.draws import SeedStream, draws32_i64, statistic_draws
from svcsim.traffic.groups import Groups, SourceClasses, Spine, chain_choice, chain_spine
from tests.traffic.world import World


def _service(w: World, name: str, vip: str, endpoints: int, *, affinity: bool = False) -> None:
    for i in range(endpoints):
        w.add_pod(f"{name}-{i}", w.nodes[i % len(w.nodes)], {"app": name})
    w.add_service(name, vip, {"app": name}, affinity=affinity)


@pytest.mark.parametrize("sizes", [(1,), (2, 3), (7, 25, 4)])
def test_chain_choice_equals_dispatch_choose(sizes: tuple[int, ...]) -> None:
    w = World(nodes=("node-1",))
    for s, n in enumerate(sizes):
        _service(w, f"s{s}", f"10.96.0.{s + 1}", n)
    w.update_slices()
    w.program()
    kernel = w.kernels["node-1"]
    cache, groups = DispatchCache(), Groups()
    dispatches = []
    for s in range(len(sizes)):
        d = cache.lookup(kernel, "10.244.1.200", "pod", f"10.96.0.{s + 1}", "tcp", 80)
        spine = chain_spine(d)
        assert spine is not None and len(spine.bounds) == d.max_draws == sizes[s] - 1
        groups.add((s, "node-1", "x"), 0, True, spine, [])
        dispatches.append(d)
    arrays = groups.materialise()
    seeds = SeedStream(np.random.default_rng(11)).take(6000)
    g = np.arange(len(seeds)) % len(sizes)
    chosen = chain_choice(arrays, g.astype(np.int32), seeds)
    for s, d in enumerate(dispatches):
        rows = seeds[g == s]
        draws = statistic_draws(rows, max(d.max_draws, 1))
        assert np.array_equal(chosen[g == s], d.choose(draws))
        assert len(np.unique(chosen[g == s])) == sizes[s]


def test_affinity_dispatch_is_not_a_plain_chain() -> None:
    w = World(nodes=("node-1",))
    _service(w, "sticky", "10.96.0.9", 3, affinity=True)
    w.update_slices()
    w.program()
    d = DispatchCache().lookup(w.kernels["node-1"], "10.244.1.2", "pod", "10.96.0.9", "tcp", 80)
    assert d.has_recent and chain_spine(d) is None


def test_dispatches_survive_syncs_that_do_not_touch_them() -> None:
    w = World()
    _service(w, "a", "10.96.0.1", 3)
    _service(w, "b", "10.96.0.2", 3)
    w.update_slices()
    w.program()
    kernel = w.kernels["node-1"]
    cache = DispatchCache()
    first_a = cache.lookup(kernel, "10.244.1.99", "pod", "10.96.0.1", "tcp", 80)
    first_b = cache.lookup(kernel, "10.244.1.99", "pod", "10.96.0.2", "tcp", 80)
    w.set_pod("b-0", ready=False)  # only b's chains change
    w.update_slices()
    w.program()
    again_a = cache.lookup(kernel, "10.244.1.99", "pod", "10.96.0.1", "tcp", 80)
    again_b = cache.lookup(kernel, "10.244.1.99", "pod", "10.96.0.2", "tcp", 80)
    assert again_a is first_a and cache.reused == 1
    assert again_b is not first_b and cache.built == 3
    fresh = build_dispatch(
        kernel.ruleset, Packet("10.244.1.99", "10.96.0.2", "tcp", 80), kernel.network
    )
    assert again_b.outcomes == fresh.outcomes and len(again_b.outcomes) == 2
    w.program(services=[], slices=[])  # everything gone: a's dispatch must change too
    gone = cache.lookup(kernel, "10.244.1.99", "pod", "10.96.0.1", "tcp", 80)
    assert gone is not first_a and all(o.dnat is None for o in gone.outcomes)


def test_source_classes_group_sources_the_rules_treat_alike() -> None:
    w = World()
    _service(w, "a", "10.96.0.1", 2)
    w.update_slices()
    w.program()
    kernel = w.kernels["node-1"]
    classes = SourceClasses(kernel.ruleset, kernel.network)
    pod_a, pod_b = "10.244.1.5", "10.244.2.9"  # both inside the cluster CIDR
    assert classes.representative(pod_a) == pod_a
    assert classes.representative(pod_b) == pod_a
    assert classes.representative("192.168.0.10") == "192.168.0.10"  # the node itself: LOCAL
    assert classes.representative("203.0.113.10") == "203.0.113.10"  # outside the CIDR
    for src in (pod_b, "203.0.113.10"):
        rep = classes.representative(src)
        for origin in ("pod", "external"):
            own = build_dispatch(
                kernel.ruleset, Packet(src, "10.96.0.1", "tcp", 80, origin=origin), kernel.network
            )
            via = build_dispatch(
                kernel.ruleset, Packet(rep, "10.96.0.1", "tcp", 80, origin=origin), kernel.network
            )
            assert own.outcomes == via.outcomes
            assert [p.conditions for p in own.paths] == [p.conditions for p in via.paths]


def test_nodes_share_a_dispatch_only_where_their_walks_agree() -> None:
    w = World()
    _service(w, "a", "10.96.0.1", 3)
    w.add_service("np", "10.96.0.2", {"app": "a"}, node_port=30080)
    w.update_slices()
    w.program()
    one, two = w.kernels["node-1"], w.kernels["node-2"]
    cache = DispatchCache()
    first = cache.lookup(one, "10.244.1.50", "pod", "10.96.0.1", "tcp", 80)
    second = cache.lookup(two, "10.244.1.50", "pod", "10.96.0.1", "tcp", 80)
    assert second is first and (cache.built, cache.reused) == (1, 1)
    # node-1's IP and NodePort: local on node-1, a remote address seen from node-2.
    on_one = cache.lookup(one, "203.0.113.10", "external", "192.168.0.10", "tcp", 30080)
    on_two = cache.lookup(two, "203.0.113.10", "external", "192.168.0.10", "tcp", 30080)
    assert on_two is not on_one and cache.built == 3
    assert {o.dnat is not None for o in on_one.outcomes} == {True}
    assert {o.dnat for o in on_two.outcomes} == {None}
    for kernel, got in ((one, on_one), (two, on_two)):
        fresh = build_dispatch(
            kernel.ruleset,
            Packet("203.0.113.10", "192.168.0.10", "tcp", 30080, origin="external"),
            kernel.network,
        )
        assert got.outcomes == fresh.outcomes


def test_materialise_appends_what_was_added_since() -> None:
    """Arrays built in steps (chains growing longer) equal the arrays built at once."""
    row = {
        k: 1
        for k in (
            "outcome",
            "cause",
            "endpoint",
            "pod",
            "time",
            "wait",
            "accepted",
            "served",
            "refused",
            "icmp",
        )
    }
    spines = [
        Spine((5, 7), (True, False), (0, 1), 2),
        Spine((), (), (), 0),
        Spine((3, 4, 5, 6), (True, True, True, False), (0, 1, 2, 3), 4),
    ]
    stepwise, at_once = Groups(), Groups()
    for i, spine in enumerate(spines):
        stepwise.add((i, "n", "x"), 0, True, spine, [row] * (len(spine.bounds) + 1))
        stepwise.materialise()
        at_once.add((i, "n", "x"), 0, True, spine, [row] * (len(spine.bounds) + 1))
    a, b = stepwise.materialise(), at_once.materialise()
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    # Rule 0 of group 0 stops below 5; rule 1 stops at or above 7; padding never stops.
    assert a["lo"][0].tolist() == [0, 7, 1 << 32, 1 << 32]
    assert a["hi"][0].tolist() == [5, 1 << 32, 0, 0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_chain_choice_with_rules_that_stop_at_or_above_their_threshold(seed: int) -> None:
    """Negated statistic rules (stop when the draw is >= the threshold) mixed with plain ones."""
    rng = np.random.default_rng(seed)
    groups, spines = Groups(), []
    for i in range(6):
        k = int(rng.integers(0, 5))
        spine = Spine(
            tuple(int(t) for t in rng.integers(0, 1 << 32, k)),
            tuple(bool(b) for b in rng.integers(0, 2, k)),
            tuple(range(k)),
            k,
        )
        spines.append(spine)
        groups.add((i, "n", "x"), 0, True, spine, [])
    arrays = groups.materialise()
    g = rng.integers(0, len(spines), 4000).astype(np.int32)
    seeds = SeedStream(np.random.default_rng(seed + 10)).take(len(g))
    chosen = chain_choice(arrays, g, seeds)
    draws = draws32_i64(seeds, 5)
    for row, (gid, got) in enumerate(zip(g.tolist(), chosen.tolist(), strict=True)):
        sp = spines[gid]
        thresholds, below, leaves, final = sp.bounds, sp.below, sp.leaves, sp.final
        expected = next(
            (
                leaves[j]
                for j in range(len(thresholds))
                if (draws[row, j] < thresholds[j]) == below[j]
            ),
            final,
        )
        assert got == expected


@pytest.mark.parametrize("sweep_every", [4, 10**9])
def test_a_dispatch_forgets_the_tokens_of_rulesets_no_node_can_hold_again(
    sweep_every: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every sync mints a ruleset token; a dispatch untouched by the syncs is asked on each new
    # ruleset and used to keep every token for good. With sweeps, its sets stay within the
    # live tokens (the key memo's 3 + one node + the last) and the tokens minted since the
    # last sweep; without sweeps, they grow by one per sync.
    monkeypatch.setattr(dispatch_module, "TOKENS_SWEEP_EVERY", sweep_every)
    w = World(nodes=("node-1",))
    _service(w, "a", "10.96.0.1", 2)
    _service(w, "b", "10.96.0.2", 2)
    w.update_slices()
    w.program()
    kernel = w.kernels["node-1"]
    cache = DispatchCache()
    cache._tokens = dispatch_module._RulesetTokens(limit=3)
    key = ("10.244.1.99", "pod", "10.96.0.1", "tcp", 80)
    first = cache.lookup(kernel, *key)
    syncs = 24
    for i in range(syncs):
        w.set_pod("b-0", ready=i % 2 == 1)  # only b's chains change: a's dispatch holds
        w.update_slices()
        w.program()
        assert cache.lookup(kernel, *key) is first
    built = cache._nodes[("node-1", key)].built
    assert cache.built == 1 and cache._tokens.minted == syncs + 1
    if sweep_every < syncs:
        # Live at the last sweep, plus the tokens minted since.
        assert len(built.rulesets) <= 3 + 1 + 1 + sweep_every
        cache._sweep_tokens()
        assert built.rulesets == cache._tokens.live() and not built.not_rulesets
    else:
        assert len(built.rulesets) == syncs  # the first lookup built it: no check, no token
