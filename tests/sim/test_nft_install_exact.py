"""After random Service and endpoint changes, the kernel holds exactly what its text says.

The simulated kube-proxy's nftables syncs build their table and its parse from the last ones'
parts (the compiler remakes changed ports only, :mod:`svcsim.sim.nft_splice` derives the
parse). On a small cluster (tests/sim/nft_splice_cases.py) whose endpoints *and* Service specs
change at random (affinity on and off, a shared external IP, traffic policy, source ranges, a
Service deleted and re-created), each sync is checked end to end:

* the compile equals a compile afresh without caches (same table, same text), and its
  elements by key are that table's;
* the planned transaction's table and size equal the general path's
  (:func:`~svcsim.sim.nft_sync.plan_nft_sync`);
* after the install, the kernel's parse equals the parse of its table's ``dump`` read back as
  the kernel would load it, and so do its dynamic sets.
"""

from __future__ import annotations

import numpy as np
import pytest

from svcsim.netfilter.conntrack_states import ConntrackTimeouts
from svcsim.netfilter.nft_index import dynamic_sets
from svcsim.netfilter.nft_parse import parse_table
from svcsim.netfilter.nft_statements import ParsedTable
from svcsim.netfilter.nftables import dump
from svcsim.proxy.context import node_network
from svcsim.proxy.endpoints import build_endpoints_map, build_service_port_map
from svcsim.proxy.nftables import table_from_maps
from svcsim.sim.caches import RunCaches
from svcsim.sim.kernel import Kernel
from svcsim.sim.nft_splice import Spliced, install_planned
from svcsim.sim.nft_sync import delete_stale_chains, parse_installed
from tests.proxy.nftables_support import FAKE_SERVICE_CIDRS, nft_fake_context
from tests.sim.nft_dump_read import read_dump
from tests.sim.nft_splice_cases import (
    both_plans,
    changed_service,
    endpoint_slice,
    random_endpoints,
    services,
)

STEPS = 30


def _same_parse(got: ParsedTable, want: ParsedTable) -> None:
    assert dict(got.chains) == dict(want.chains)
    assert sorted(got.base_chains, key=str) == sorted(want.base_chains, key=str)
    assert got.sets == want.sets
    assert {k: dict(v) for k, v in got.maps.items()} == {k: dict(v) for k, v in want.maps.items()}
    assert got.timeouts == want.timeouts


def _run(seed: int) -> tuple[int, int]:
    """``STEPS`` syncs of random changes: (syncs spliced, partial syncs)."""
    rng = np.random.default_rng(seed)
    caches = RunCaches()
    ctx = nft_fake_context(node_name="node-a")
    kernel = Kernel(
        "node-a", node_network(ctx, None), 1024, ConntrackTimeouts.kube_proxy_defaults(), "nftables"
    )
    svcs = services()
    present = [True] * len(svcs)
    slices = [endpoint_slice(s, random_endpoints(rng, i)) for i, s in enumerate(svcs)]
    last: Spliced | None = None
    stale: dict[str, float] = {}
    now, spliced_syncs, partial_syncs = 0.0, 0, 0
    for step in range(STEPS):
        now += float(rng.choice([0.5, 2.0]))
        changed: set[int] = set()
        for i in {int(x) for x in rng.integers(0, len(svcs), size=int(rng.integers(1, 3)))}:
            changed.add(i)
            roll = rng.random()
            if roll < 0.35:
                svcs[i] = changed_service(rng, svcs[i])
            elif roll < 0.42:
                present[i] = not present[i]
            slices[i] = endpoint_slice(svcs[i], random_endpoints(rng, i))
        live = [i for i in range(len(svcs)) if present[i]]
        ports = build_service_port_map([svcs[i] for i in live], caches.compile)
        emap = build_endpoints_map([slices[i] for i in live], "node-a", caches.compile)
        compiled = table_from_maps(ports, emap, ctx, FAKE_SERVICE_CIDRS, caches.nft_names)
        fresh = table_from_maps(ports, emap, ctx, FAKE_SERVICE_CIDRS)
        assert compiled == fresh
        assert dump(compiled) == dump(fresh)
        layout = caches.nft_names.layout(compiled)
        if layout is not None:
            assert dict(layout.elements) == {(e.container, e.key): e for e in fresh.elements}
        # The sync as sim/kubeproxy.py runs it: clean-up, then the spliced or general plan.
        assert kernel.nft is not None
        installed = kernel.nft.table
        if stale and rng.random() < 0.3:
            cleaned, stale, _, failed = delete_stale_chains(installed, stale, now)
            if not failed and cleaned is not installed:
                kernel.install_nft(cleaned, parse_installed(cleaned, caches.nft_chains), now)
                installed = cleaned
        full = step == 0 or rng.random() < 0.1
        partial_syncs += not full
        names = [f"default/{svcs[i].meta.name}" for i in sorted(changed)]
        general, fast = both_plans(
            last,
            installed,
            compiled,
            layout,
            names,
            full=full,
            now_s=now,
            stale=stale,
            caches=caches,
        )
        plan, following = (general, None) if fast is None else fast
        spliced_syncs += fast is not None
        assert plan.table == general.table
        assert dump(plan.table) == dump(general.table)
        assert plan.objects_written == general.objects_written
        assert plan.stale_chains == general.stale_chains
        stale = plan.stale_chains
        last = install_planned(kernel, plan, following, layout, caches.nft_chains, now)
        text = dump(kernel.nft.table)
        loaded = read_dump(text)
        assert dump(loaded) == text
        again = parse_table(loaded)
        _same_parse(kernel.nft.parsed, again)
        assert kernel.nft.dynamic == dynamic_sets(again)
    return spliced_syncs, partial_syncs


@pytest.mark.parametrize("seed", range(4))
def test_installed_parse_is_the_dumps(seed: int) -> None:
    """Every install's parse is its text's; most partial syncs are spliced."""
    spliced_syncs, partial_syncs = _run(seed)
    assert partial_syncs >= STEPS // 2
    assert spliced_syncs >= partial_syncs // 3
