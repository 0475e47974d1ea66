"""The nftables compiler's memo changes no result: a memoised compile equals a fresh one."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svcsim.k8s.objects import EndpointSlice, Service, ServicePort
from svcsim.netfilter.nftables import dump
from svcsim.proxy.nftables import compile_nftables
from svcsim.proxy.nftables_memo import NftablesMemo
from tests.proxy.nftables_support import nft_fake_context
from tests.proxy.test_iptables_kernel import service_and_slice
from tests.proxy.test_iptables_support import ep, make_service, make_slice, port

CONTEXTS = (
    nft_fake_context(),
    nft_fake_context(node_name="other"),
    nft_fake_context(masquerade_all=True),
    nft_fake_context(local_detector=None, local_detector_value=""),
)
"""Contexts that differ in facts the compiler reads, compiled one after another."""

_pairs = st.lists(st.integers(0, 4), min_size=1, max_size=4, unique=True).flatmap(
    lambda ids: st.tuples(*(service_and_slice(i) for i in ids))
)


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(_pairs, min_size=1, max_size=3))
def test_memoised_compile_equals_fresh_compile_sync_after_sync(
    states: list[tuple[tuple[Service, EndpointSlice], ...]],
) -> None:
    memo = NftablesMemo()
    for pairs in states:  # successive syncs: warm entries of one state must not leak
        services = [s for s, _ in pairs]
        slices = [sl for _, sl in pairs]
        for ctx in CONTEXTS:
            cidrs = ("172.30.0.0/16",)
            got = compile_nftables(services, slices, ctx, cidrs, memo=memo)
            assert got == compile_nftables(services, slices, ctx, cidrs)


def test_unchanged_ports_are_replayed_and_changed_ones_written() -> None:
    ports = (ServicePort(80, name="p"),)
    one = make_service("ns", "one", cluster_ip="172.30.0.1", ports=ports)
    two = make_service("ns", "two", cluster_ip="172.30.0.2", ports=ports)
    sl1 = make_slice("ns", "one", (ep("10.0.0.1", "a"),), (port(8080, "p"),))
    sl2 = make_slice("ns", "two", (ep("10.0.0.2", "b"),), (port(8080, "p"),))
    ctx = nft_fake_context(node_name="a")
    memo = NftablesMemo()
    compile_nftables([one, two], [sl1, sl2], ctx, memo=memo)
    assert len(memo) == 2
    moved = make_slice("ns", "two", (ep("10.0.0.3", "b"),), (port(8080, "p"),))
    table = compile_nftables([one, two], [sl1, moved], ctx, memo=memo)
    assert len(memo) == 3  # only the changed port was written again
    assert table == compile_nftables([one, two], [sl1, moved], ctx)
    assert "10.0.0.3:8080" in dump(table) and "10.0.0.2:8080" not in dump(table)
    assert len(NftablesMemo()) == 0  # memos share nothing
