"""The spliced partial nftables sync == the general path (plan, table, parse, dynamic sets).

Random endpoint changes on a small cluster (tests/sim/nft_splice_cases.py), synced one after
another as the simulated kube-proxy does: each sync is planned both ways from the same kernel
table, and the splice must answer exactly what :func:`plan_nft_sync` and :func:`parse_table`
answer whenever it answers at all (it must answer for most partial syncs).
"""

from __future__ import annotations

import numpy as np
import pytest

from svcsim.netfilter.nft_index import dynamic_sets
from svcsim.netfilter.nft_parse import parse_table
from svcsim.netfilter.nftables import NftTable
from svcsim.proxy.endpoints import build_endpoints_map, build_service_port_map
from svcsim.proxy.nftables import table_from_maps
from svcsim.sim.caches import RunCaches
from svcsim.sim.nft_splice import Spliced, splice_sync, spliced
from svcsim.sim.nft_sync import delete_stale_chains, plan_nft_sync
from tests.proxy.nftables_support import FAKE_SERVICE_CIDRS, nft_fake_context
from tests.sim.nft_splice_cases import both_plans, endpoint_slice, random_endpoints, services

STEPS = 40


def _run(seed: int) -> tuple[int, int]:
    """Sync ``STEPS`` random changes both ways: (syncs the splice answered, syncs it should).

    It should answer each sync whose kernel table is the last sync's (no clean-up of stale
    chains in between) once the last install was laid out as blocks.
    """
    rng = np.random.default_rng(seed)
    caches = RunCaches()
    ctx = nft_fake_context(node_name="node-a")
    svcs = services()
    ports = build_service_port_map(svcs, caches.compile)
    endpoints = [random_endpoints(rng, i) for i in range(len(svcs))]
    slices = [endpoint_slice(s, e) for s, e in zip(svcs, endpoints, strict=True)]

    def compiled_now() -> NftTable:
        emap = build_endpoints_map(slices, "node-a", caches.compile)
        return table_from_maps(ports, emap, ctx, FAKE_SERVICE_CIDRS, caches.nft_names)

    table = compiled_now()
    plan = plan_nft_sync(None, table, (), full=True, now_s=0.0, stale_chains={})
    parsed = parse_table(plan.table)
    last: Spliced | None = spliced(
        plan.table, parsed, dynamic_sets(parsed), caches.nft_names.layout(table)
    )
    installed, stale, now, answered, due = plan.table, plan.stale_chains, 0.0, 0, 0
    for _ in range(STEPS):
        now += float(rng.choice([0.5, 2.0]))
        changed = {int(rng.integers(0, len(svcs)))}
        if rng.random() < 0.2:
            changed.add(int(rng.integers(0, len(svcs))))
        for i in sorted(changed):
            slices[i] = endpoint_slice(svcs[i], random_endpoints(rng, i))
        if rng.random() < 0.2:  # a Service listed as changed whose objects did not change
            changed.add(int(rng.integers(0, len(svcs))))
        cleaned = installed
        if stale and rng.random() < 0.3:
            cleaned, stale, _, _ = delete_stale_chains(installed, stale, now)
        due += cleaned is installed and last is not None
        installed = cleaned
        names = [f"default/{svcs[i].meta.name}" for i in sorted(changed)]
        compiled = compiled_now()
        layout = caches.nft_names.layout(compiled)
        general, fast = both_plans(
            last,
            installed,
            compiled,
            layout,
            names,
            full=False,
            now_s=now,
            stale=stale,
            caches=caches,
        )
        expected = parse_table(general.table)
        if fast is None:
            last = spliced(general.table, expected, dynamic_sets(expected), layout)
        else:
            answered += 1
            plan, last = fast
            assert plan.table == general.table
            assert plan.objects_written == general.objects_written
            assert list(plan.stale_chains.items()) == list(general.stale_chains.items())
            assert plan.full == general.full
            assert last.parsed == expected
            assert list(last.parsed.chains) == list(expected.chains)
            assert list(last.parsed.sets) == list(expected.sets)
            assert list(last.parsed.timeouts) == list(expected.timeouts)
            assert last.dynamic == dynamic_sets(expected)
        # The kernel holds what was installed: the spliced table when there is one.
        installed = general.table if fast is None else fast[0].table
        stale = general.stale_chains
    return answered, due


@pytest.mark.parametrize("seed", range(6))
def test_splice_equals_general_path(seed: int) -> None:
    """Every answer of the splice equals the general path's, and it answers when it should."""
    answered, due = _run(seed)
    assert answered == due >= STEPS // 3


def test_splice_declines_a_hand_edited_kernel_and_full_syncs() -> None:
    """A kernel table the last sync did not install, or a full sync: the general path."""
    caches = RunCaches()
    ctx = nft_fake_context(node_name="node-a")
    svcs = services()
    rng = np.random.default_rng(1)
    slices = [endpoint_slice(s, random_endpoints(rng, i)) for i, s in enumerate(svcs)]
    ports = build_service_port_map(svcs, caches.compile)
    emap = build_endpoints_map(slices, "node-a", caches.compile)
    table = table_from_maps(ports, emap, ctx, FAKE_SERVICE_CIDRS, caches.nft_names)
    layout = caches.nft_names.layout(table)
    plan = plan_nft_sync(None, table, (), full=True, now_s=0.0, stale_chains={})
    parsed = parse_table(plan.table)
    last = spliced(plan.table, parsed, dynamic_sets(parsed), layout)
    assert last is not None
    edited = NftTable(plan.table.family, plan.table.name, chains=plan.table.chains)
    args = {"now_s": 1.0, "stale_chains": {}, "memo": caches.nft_chains}
    assert splice_sync(last, edited, table, layout, [], full=False, **args) is None  # type: ignore[arg-type]
    assert splice_sync(last, plan.table, table, layout, [], full=True, **args) is None  # type: ignore[arg-type]
    assert splice_sync(last, plan.table, table, None, [], full=False, **args) is None  # type: ignore[arg-type]
