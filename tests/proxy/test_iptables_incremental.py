"""A compile that starts from the previous one equals a compile from scratch, at every step."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from svcsim.k8s.objects import EndpointSlice
from svcsim.netfilter.text import render_save
from svcsim.proxy.caches import CompileCaches
from svcsim.proxy.endpoints import build_endpoints_map, build_service_port_map
from svcsim.proxy.iptables import IptablesSync, sync_from_maps
from svcsim.proxy.iptables_assembled import reassemble
from tests.proxy.incremental_cases import (
    NODE,
    SERVICES,
    STEPS,
    context,
    endpoint_slice,
    services,
)

START = ((1, False, True), (2, True, True))
"""Every Service's endpoints before the changes: one remote, one local, both ready."""


def _fresh(slices: dict[int, EndpointSlice]) -> IptablesSync:
    ports = build_service_port_map(services())
    return sync_from_maps(ports, build_endpoints_map(list(slices.values()), NODE), context())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS)
def test_each_incremental_compile_equals_a_full_compile(
    steps: list[tuple[int, tuple[tuple[int, bool, bool], ...]]],
) -> None:
    caches = CompileCaches()  # one run's: each compile starts from the previous one
    ctx = context()
    ports = build_service_port_map(services(), caches)
    slices = {s: endpoint_slice(s, START) for s in range(SERVICES)}
    sync_from_maps(ports, build_endpoints_map(list(slices.values()), NODE, caches), ctx, caches)
    for service, endpoints in steps:
        slices[service] = endpoint_slice(service, endpoints)
        got = sync_from_maps(
            ports, build_endpoints_map(list(slices.values()), NODE, caches), ctx, caches
        )
        want = _fresh(slices)
        assert got.ruleset == want.ruleset  # chain order included
        assert got.stats == want.stats
        assert got.restore_text == want.restore_text
        assert got.restore_sections == want.restore_sections
        assert render_save(got.ruleset) == render_save(want.ruleset)


@pytest.mark.parametrize(
    ("service", "endpoints", "spliced"),
    [
        (1, ((1, False, True), (3, True, True)), True),  # one endpoint moved
        (1, ((1, False, True),), True),  # one endpoint gone
        (1, ((1, False, True), (2, True, True), (5, False, True)), True),  # one more
        (0, ((1, False, True), (7, True, True)), True),  # NodePort, local endpoint moved
        # No endpoints left: the filter table gets a REJECT rule (a chain others write).
        (1, (), False),
        # No local endpoint left for the Local NodePort: its KUBE-NODEPORTS rule changes.
        (0, ((1, False, True),), False),
    ],
)
def test_a_changed_service_replaces_only_its_own_chains(
    service: int, endpoints: tuple[tuple[int, bool, bool], ...], spliced: bool
) -> None:
    caches = CompileCaches()
    ctx = context()
    ports = build_service_port_map(services(), caches)
    slices = {s: endpoint_slice(s, START) for s in range(SERVICES)}
    before = sync_from_maps(
        ports, build_endpoints_map(list(slices.values()), NODE, caches), ctx, caches
    )
    slices[service] = endpoint_slice(service, endpoints)
    after = sync_from_maps(
        ports, build_endpoints_map(list(slices.values()), NODE, caches), ctx, caches
    )
    changed = {
        i: new
        for i, (old, new) in enumerate(
            zip(before.assembly.parts, after.assembly.parts, strict=True)
        )
        if old is not new
    }
    assert len(changed) == 1  # the one service port's block, nothing else
    # Assembled afresh (memo aside), the splice is taken or refused as the case says.
    assert (reassemble(before.assembly, changed, CompileCaches()) is not None) == spliced
    assert after.ruleset == _fresh(slices).ruleset
    nat_before, nat_after = before.ruleset.table("nat"), after.ruleset.table("nat")
    assert nat_before is not None and nat_after is not None
    untouched = f"ns/svc{(service + 1) % SERVICES}:p"
    for chain in nat_after.chains:
        if chain.rules and untouched in chain.rules[0].text and chain.name.startswith("KUBE-S"):
            assert nat_before.chain(chain.name) is chain  # shared, not rebuilt


def test_maps_in_any_order_compile_the_same() -> None:
    """Ports and endpoints are picked by place when both maps hold the same names in the same
    order, else looked up by name: the same sync either way, whatever order the maps have."""
    caches = CompileCaches()
    ports = build_service_port_map(services(), caches)
    slices = [endpoint_slice(s, START) for s in range(SERVICES)]
    endpoints = build_endpoints_map(slices, NODE, caches)
    assert list(endpoints) == list(ports)  # the by-place case
    want = sync_from_maps(ports, endpoints, context())
    reversed_ports = dict(reversed(list(ports.items())))
    reversed_endpoints = dict(reversed(list(endpoints.items())))
    for port_map, endpoints_map in [
        (ports, reversed_endpoints),
        (reversed_ports, endpoints),
        (reversed_ports, reversed_endpoints),
    ]:
        got = sync_from_maps(port_map, endpoints_map, context(), caches)
        assert got.ruleset == want.ruleset
        assert got.restore_text == want.restore_text
