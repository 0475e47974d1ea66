"""Partial syncs planned from the assembly and applied as data equal the text path, step by step."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svcsim.netfilter.model import Ruleset
from svcsim.netfilter.text import apply_restore, render_save
from svcsim.proxy.endpoints import build_endpoints_map, build_service_port_map
from svcsim.proxy.iptables import sync_from_maps
from svcsim.sim.caches import RunCaches
from svcsim.sim.restore import apply_plan, chain_names, plan_sync, service_chains
from tests.proxy.incremental_cases import NODE, SERVICES, STEPS, context, endpoint_slice, services
from tests.sim.restore_cases import same_plan, text_plan

START = ((1, False, True), (2, True, True))


def _nat_names(ruleset: Ruleset) -> tuple[str, ...]:
    return chain_names(ruleset.table("nat"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS, delete_stale=st.booleans())
def test_partial_syncs_after_random_changes_equal_the_text_path(
    steps: list[tuple[int, tuple[tuple[int, bool, bool], ...]]], delete_stale: bool
) -> None:
    caches = RunCaches()
    ctx = context()
    ports = build_service_port_map(services(), caches.compile)
    slices = {s: endpoint_slice(s, START) for s in range(SERVICES)}
    kernel = sync_from_maps(
        ports, build_endpoints_map(list(slices.values()), NODE, caches.compile), ctx, caches.compile
    ).ruleset
    for service, endpoints in steps:
        slices[service] = endpoint_slice(service, endpoints)
        endpoints_map = build_endpoints_map(list(slices.values()), NODE, caches.compile)
        compiled = sync_from_maps(ports, endpoints_map, ctx, caches.compile)
        changed = service_chains(ports, endpoints_map, [f"ns/svc{service}"], caches)
        existing = _nat_names(kernel)
        kwargs = {"full": False, "existing_nat_chains": existing, "delete_stale": delete_stale}
        plan = plan_sync(compiled, changed, caches=caches, **kwargs)  # type: ignore[arg-type]
        same_plan(plan, text_plan(compiled, changed, **kwargs))  # type: ignore[arg-type]
        after = apply_plan(kernel, plan, caches)
        by_text = apply_restore(kernel, plan.restore_text, noflush=True)
        assert after == by_text
        assert _nat_names(after) == _nat_names(by_text)  # derived names: the table's own
        for table in after.tables:
            for chain in table.chains:
                for name in {r.target.chain for r in chain.rules if hasattr(r.target, "chain")}:
                    assert table.jump_count(name) == sum(  # carried counts == a recount
                        1
                        for c in table.chains
                        for r in c.rules
                        if getattr(r.target, "chain", None) == name
                    )
        kernel = after
    fresh = sync_from_maps(
        build_service_port_map(services()),
        build_endpoints_map(list(slices.values()), NODE),
        ctx,
    )
    if delete_stale:  # then the kernel holds exactly the compiled chains
        assert render_save(kernel) == render_save(fresh.ruleset)
