"""Memoised sync plans and partial restores equal freshly computed ones, whatever the inputs."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from svcsim.k8s.objects import Protocol
from svcsim.netfilter.text import apply_restore
from svcsim.proxy.iptables import IptablesSync
from svcsim.proxy.names import ServicePortName
from svcsim.sim.caches import RunCaches
from svcsim.sim.restore import (
    RestoreError,
    SyncPlan,
    apply_plan,
    plan_sync,
    stale_rule_restore,
)
from tests.sim.restore_cases import SERVICES, SLICES, compile_, eps, nat_chains

SPN_A = ServicePortName("default", "a", "p", Protocol.TCP)
SPN_B = ServicePortName("default", "b", "p", Protocol.TCP)


def _fresh_plan(compiled: IptablesSync, changed: frozenset[str], **kwargs: object) -> SyncPlan:
    return plan_sync(compiled, changed, caches=RunCaches(), **kwargs)  # type: ignore[arg-type]


def test_plans_for_every_input_combination_equal_fresh_ones() -> None:
    before, _ = compile_(SERVICES, SLICES)
    after, chains_of = compile_(SERVICES, [eps("a", ["10.244.1.1"]), SLICES[1]])
    stale = SPN_A.endpoint_chain("10.244.1.9:8080")
    # Tuples, as a kernel table hands out its names (the memo knows them by identity).
    existings: tuple[tuple[str, ...], ...] = (
        (),
        tuple(nat_chains(before.ruleset)),
        (*nat_chains(after.ruleset), stale),
    )
    changes = (chains_of([]), chains_of(["default/a"]), chains_of(["default/a", "default/b"]))
    combos = list(itertools.product(changes, existings, (True, False), (True, False)))
    caches = RunCaches()
    memo = [
        plan_sync(after, ch, full=full, existing_nat_chains=ex, delete_stale=ds, caches=caches)
        for ch, ex, full, ds in combos
    ]
    assert len({p.restore_text for p in memo}) > 4  # the inputs do matter
    for plan, (ch, ex, full, ds) in zip(memo, combos, strict=True):
        fresh = _fresh_plan(after, ch, full=full, existing_nat_chains=ex, delete_stale=ds)
        assert plan == fresh
    # Asking again hands out the very plan (nodes in one state share it).
    ch, ex, full, ds = combos[5]
    again = plan_sync(after, ch, full=full, existing_nat_chains=ex, delete_stale=ds, caches=caches)
    kwargs = {"full": full, "existing_nat_chains": ex, "delete_stale": ds}
    assert again is plan_sync(after, ch, caches=caches, **kwargs)  # type: ignore[arg-type]
    assert again is memo[5]


@pytest.mark.parametrize("repeat", [1, 2])
def test_partial_restores_are_memoised_and_failures_repeat(repeat: int) -> None:
    before, chains_of = compile_(SERVICES, SLICES)
    kernel = apply_restore(
        before.ruleset, stale_rule_restore(before.ruleset, SPN_B, "10.244.9.9:8080")
    )
    bad = plan_sync(
        before, chains_of(["default/a"]), full=False, existing_nat_chains=nat_chains(kernel)
    )
    caches = RunCaches()
    for _ in range(repeat):
        with pytest.raises(RestoreError):
            apply_plan(kernel, bad, caches)
    good = plan_sync(
        before, chains_of(["default/b"]), full=False, existing_nat_chains=nat_chains(kernel)
    )
    first = apply_plan(kernel, good, caches)
    assert apply_plan(kernel, good, caches) is first
    assert apply_plan(kernel, good, RunCaches()) == first
    assert apply_plan(kernel, good) == first
    assert first.chain("nat", SPN_B.cluster_chain) == before.ruleset.chain(
        "nat", SPN_B.cluster_chain
    )


def test_partial_restores_as_data_equal_the_text_applied_line_by_line() -> None:
    before, _ = compile_(SERVICES, SLICES)
    after, chains_of = compile_(SERVICES, [eps("a", ["10.244.1.1"]), SLICES[1]])
    injected = apply_restore(
        before.ruleset, stale_rule_restore(before.ruleset, SPN_B, "10.244.9.9:8080")
    )
    changes = (chains_of([]), chains_of(["default/a"]), chains_of(["default/a", "default/b"]))
    for kernel in (before.ruleset, injected, after.ruleset):
        for changed, delete_stale in itertools.product(changes, (True, False)):
            plan = plan_sync(
                after,
                changed,
                full=False,
                existing_nat_chains=nat_chains(kernel),
                delete_stale=delete_stale,
            )
            assert plan.declared is not None
            by_text = apply_restore(kernel, plan.restore_text, noflush=True)
            try:
                got = apply_plan(kernel, plan)
            except RestoreError:
                got = None
            line_by_line = dataclasses.replace(plan, declared=None)
            try:
                want = apply_plan(kernel, line_by_line)
            except RestoreError:
                want = None
            assert got == want
            if got is not None:
                assert got == by_text
                assert nat_chains(got) == nat_chains(by_text)  # chain order too
