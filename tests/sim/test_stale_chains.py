"""Stale chains found from the tables' changes equal a scan of every kernel chain name."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svcsim.netfilter.model import Chain, Table
from svcsim.proxy.endpoints import build_endpoints_map, build_service_port_map
from svcsim.proxy.iptables import sync_from_maps
from svcsim.proxy.names import is_service_chain
from svcsim.sim.caches import RunCaches
from svcsim.sim.restore import apply_plan, chain_names, plan_sync, service_chains
from svcsim.sim.restore_plan import stale_chains
from tests.proxy.incremental_cases import ENDPOINTS, NODE, SERVICES, context, endpoint_slice
from tests.proxy.incremental_cases import services as cluster_services
from tests.sim.restore_cases import same_plan, text_plan

START = ((1, False, True), (2, True, True))
SYNCS = st.lists(
    st.tuples(st.integers(0, SERVICES - 1), ENDPOINTS, st.booleans(), st.booleans()),
    min_size=1,
    max_size=8,
)
"""Syncs: which Service gets which endpoints, whether the sync is full, whether it cleans up."""


def scanned(existing: tuple[str, ...], active: Table) -> tuple[str, ...]:
    """The reference: every kernel chain name checked (membership only: no index is folded)."""
    return tuple(sorted(c for c in existing if is_service_chain(c) and c not in active))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(syncs=SYNCS)
def test_stale_chains_from_changes_equal_the_scan_over_a_run_of_syncs(
    syncs: list[tuple[int, tuple[tuple[int, bool, bool], ...], bool, bool]],
) -> None:
    caches = RunCaches()
    ctx = context()
    ports = build_service_port_map(cluster_services(), caches.compile)
    slices = {s: endpoint_slice(s, START) for s in range(SERVICES)}
    kernel = sync_from_maps(
        ports, build_endpoints_map(list(slices.values()), NODE, caches.compile), ctx, caches.compile
    ).ruleset
    for service, endpoints, full, delete_stale in syncs:
        slices[service] = endpoint_slice(service, endpoints)
        endpoints_map = build_endpoints_map(list(slices.values()), NODE, caches.compile)
        compiled = sync_from_maps(ports, endpoints_map, ctx, caches.compile)
        kernel_nat = kernel.table("nat")
        active = compiled.ruleset.table("nat")
        assert kernel_nat is not None and active is not None
        existing = chain_names(kernel_nat)
        want = scanned(existing, active)
        assert stale_chains(existing, active, kernel_nat) == want
        changed = service_chains(ports, endpoints_map, [f"ns/svc{service}"], caches)
        kwargs = {"full": full, "existing_nat_chains": existing, "delete_stale": delete_stale}
        plan = plan_sync(compiled, changed, caches=caches, kernel_nat=kernel_nat, **kwargs)  # type: ignore[arg-type]
        assert plan.deleted_chains == (want if delete_stale else ())
        same_plan(plan, text_plan(compiled, changed, **kwargs))  # type: ignore[arg-type]
        kernel = apply_plan(kernel, plan, caches)


def test_a_partial_sync_after_a_full_one_finds_them_from_the_changes() -> None:
    # Service 1 (ClusterIP) moves all its endpoints: its old KUBE-SEP chains go stale.
    caches = RunCaches()
    ctx = context()
    ports = build_service_port_map(cluster_services(), caches.compile)
    slices = {s: endpoint_slice(s, START) for s in range(SERVICES)}
    kernel = sync_from_maps(
        ports, build_endpoints_map(list(slices.values()), NODE, caches.compile), ctx, caches.compile
    ).ruleset
    slices[1] = endpoint_slice(1, ((7, False, True), (8, False, True)))
    compiled = sync_from_maps(
        ports, build_endpoints_map(list(slices.values()), NODE, caches.compile), ctx, caches.compile
    )
    kernel_nat, active = kernel.table("nat"), compiled.ruleset.table("nat")
    assert kernel_nat is not None and active is not None
    assert kernel_nat.index_parts()[0] is active.index_parts()[0]  # the path under test
    existing = kernel_nat.names()
    got = stale_chains(existing, active, kernel_nat)
    assert len(got) == 2 and all(c.startswith("KUBE-SEP-") for c in got)
    assert got == scanned(existing, active)


def _chain(name: str) -> Chain:
    return Chain(name, ())


def _table(names: list[str]) -> Table:
    return Table("nat", tuple(_chain(n) for n in names))


SEP_A, SEP_B, SVC_A = "KUBE-SEP-AAAAAAAAAAAAAAAA", "KUBE-SEP-BBBBBBBBBBBBBBBB", "KUBE-SVC-A"


def test_tables_with_different_maps_are_scanned_and_agree() -> None:
    kernel = _table(["KUBE-SERVICES", SVC_A, SEP_B, SEP_A, "MY-CHAIN"])
    active = _table(["KUBE-SERVICES", SVC_A])
    assert kernel.index_parts()[0] is not active.index_parts()[0]
    existing = kernel.names()
    # Sorted by name, a non-service chain kept: what the scan gives.
    assert stale_chains(existing, active, kernel) == (SEP_A, SEP_B)
    assert stale_chains(existing, active) == (SEP_A, SEP_B)
