"""The compiler's memoisation changes no result: every node gets what a fresh compile writes."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svcsim.k8s.objects import EndpointSlice, Service, ServicePort
from svcsim.netfilter.model import Ruleset
from svcsim.netfilter.text import RulesetBuilder, parse_rule
from svcsim.proxy.caches import CompileCaches
from svcsim.proxy.context import NodeContext
from svcsim.proxy.endpoints import (
    EndpointInfo,
    EndpointsMap,
    build_endpoints_map,
    build_service_port_map,
    parse_ipv4_sloppy,
    total_endpoints,
)
from svcsim.proxy.iptables import (
    LARGE_CLUSTER_ENDPOINTS_THRESHOLD,
    _service_order,
    compile_iptables_sync,
)
from svcsim.proxy.iptables_assembly import CANARY_TABLES, JUMP_RULES
from svcsim.proxy.iptables_assembly import write_fixed_head as _write_fixed_head
from svcsim.proxy.iptables_assembly import write_fixed_tail as _write_fixed_tail
from svcsim.proxy.iptables_service import (
    KUBE_PROXY_CANARY,
    RestoreBuffers,
    write_service_port,
)
from svcsim.proxy.names import ServicePortName
from svcsim.proxy.topology import categorize_endpoints
from tests.proxy.test_iptables_kernel import service_and_slice
from tests.proxy.test_iptables_support import ep, fake_context, make_service, make_slice, port

CONTEXTS = (
    fake_context(),
    fake_context(node_name="other"),
    fake_context(node_ips=("203.0.113.5",)),
    fake_context(masquerade_all=True),
    fake_context(local_detector=None, local_detector_value=""),
    fake_context(node_port_addresses=("192.168.0.0/24",), localhost_nodeports=False),
    fake_context(local_detector="InterfaceNamePrefix", local_detector_value="veth"),
    NodeContext(node_name="test-node", tcp_be_liberal=True, masquerade_bit=3),
)
"""Contexts that differ in every fact the compiler reads, compiled one after another."""


def fresh_compile(
    services: Sequence[Service], slices: Sequence[EndpointSlice], ctx: NodeContext
) -> tuple[Ruleset, str, tuple[int, ...]]:
    """The compiler without any memo: one buffer written line by line, every rule parsed.

    Parsing each rule's text (as iptables-restore reads kube-proxy's lines) must give the rule
    the compiler built as data.
    """
    service_ports = build_service_port_map(services)
    endpoints_map = build_endpoints_map(slices, ctx.node_name)
    buf = RestoreBuffers()
    _write_fixed_head(buf, ctx)
    large = total_endpoints(service_ports, endpoints_map) > LARGE_CLUSTER_ENDPOINTS_THRESHOLD
    no_local = [0, 0]
    for spn in sorted(service_ports, key=_service_order):
        svc = service_ports[spn]
        cat = categorize_endpoints(
            endpoints_map.get(spn, ()),
            svc,
            ctx.node_name,
            ctx.topology_labels,
            ctx.prefer_same_traffic_distribution,
        )
        outcome = write_service_port(buf, svc, cat, ctx, large)
        no_local[0] += outcome.no_local_internal
        no_local[1] += outcome.no_local_external
    _write_fixed_tail(buf, ctx)
    b = RulesetBuilder()
    for table in CANARY_TABLES:
        b.chain(table, KUBE_PROXY_CANARY)
    for name in buf.nat_chains:
        b.chain("nat", name)
    for name in buf.filter_chains:
        b.chain("filter", name)
    for chain, built in buf.nat_rules:
        b.rule("nat", chain, built.text)
    for chain, built in buf.filter_rules:
        b.rule("filter", chain, built.text)
    for jump in JUMP_RULES:
        b.chain(jump.table, jump.dst_chain)
        b.insert(jump.table, jump.src_chain, parse_rule(jump.rule().text), 0)
    counts = (len(buf.filter_rules), len(buf.nat_rules), len(buf.nat_chains), *no_local)
    return b.build(), buf.restore_text(), counts


def _check_against_fresh(
    services: Sequence[Service],
    slices: Sequence[EndpointSlice],
    ctx: NodeContext,
    caches: CompileCaches | None = None,
) -> Ruleset:
    sync = compile_iptables_sync(services, slices, ctx, caches)
    ruleset, text, counts = fresh_compile(services, slices, ctx)
    assert sync.restore_text == text
    assert sync.ruleset == ruleset
    s = sync.stats
    assert (
        s.filter_rules,
        s.nat_rules,
        s.nat_chains,
        s.no_local_endpoints_internal,
        s.no_local_endpoints_external,
    ) == counts
    return sync.ruleset


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.lists(st.integers(0, 4), min_size=1, max_size=4, unique=True).flatmap(
        lambda ids: st.tuples(*(service_and_slice(i) for i in ids))
    )
)
def test_memoised_compile_equals_fresh_compile_for_every_context(
    pairs: tuple[tuple[Service, EndpointSlice], ...],
) -> None:
    services = [s for s, _ in pairs]
    slices = [sl for _, sl in pairs]
    caches = CompileCaches()  # one run's: warm caches from one node must not leak into the next
    for ctx in CONTEXTS:
        _check_against_fresh(services, slices, ctx, caches)


def test_large_cluster_mode_blocks_are_not_shared_with_small_clusters() -> None:
    svc = make_service("ns", "svc", cluster_ip="172.30.0.1", ports=(ServicePort(80, name="p"),))
    eps = tuple(ep(f"10.1.{i // 250}.{i % 250 + 1}", "test-node") for i in range(12))
    small = make_slice("ns", "svc", eps, (port(8080, "p"),))
    many = tuple(
        ep(f"10.2.{i // 250}.{i % 250 + 1}") for i in range(LARGE_CLUSTER_ENDPOINTS_THRESHOLD)
    )
    other = make_service("ns", "big", cluster_ip="172.30.0.2", ports=(ServicePort(80, name="p"),))
    big = make_slice("ns", "big", many, (port(8080, "p"),))
    ctx = fake_context()
    caches = CompileCaches()
    with_comments = _check_against_fresh([svc], [small], ctx, caches)
    without = _check_against_fresh([svc, other], [small, big], ctx, caches)
    assert compile_iptables_sync([svc, other], [small, big], ctx, caches).stats.large_cluster_mode
    nat = without.table("nat")
    assert nat is not None
    sep = next(c for c in nat.chains if c.name.startswith("KUBE-SEP"))
    assert "--comment" not in sep.rules[0].text
    assert with_comments != without


def test_nodes_in_the_same_state_share_one_ruleset_object() -> None:
    svc = make_service("ns", "svc", cluster_ip="172.30.0.1", ports=(ServicePort(80, name="p"),))
    sl = make_slice("ns", "svc", (ep("10.0.0.1", "a"), ep("10.0.0.2", "b")), (port(8080, "p"),))
    caches = CompileCaches()  # one run's
    a = compile_iptables_sync([svc], [sl], fake_context(node_name="a"), caches)
    b = compile_iptables_sync([svc], [sl], fake_context(node_name="b"), caches)
    assert a.ruleset is b.ruleset and a.restore_text is b.restore_text
    # Another run (or a pure call) gets an equal ruleset of its own.
    other = compile_iptables_sync([svc], [sl], fake_context(node_name="a"))
    assert other.ruleset == a.ruleset and other.ruleset is not a.ruleset
    # Locality matters under internalTrafficPolicy Local: then the nodes differ.
    local = make_service(
        "ns",
        "svc",
        cluster_ip="172.30.0.1",
        internal_traffic_policy="Local",
        ports=(ServicePort(80, name="p"),),
    )
    la = _check_against_fresh([local], [sl], fake_context(node_name="a"), caches)
    lb = _check_against_fresh([local], [sl], fake_context(node_name="b"), caches)
    assert la != lb


def test_endpoints_map_reuses_tuples_of_unchanged_slices_only() -> None:
    one = make_slice("ns", "one", (ep("10.0.0.1", "a"),), (port(80),))
    two = make_slice("ns", "two", (ep("10.0.0.2", "a"),), (port(80),))
    caches = CompileCaches()
    first = build_endpoints_map([one, two], "a", caches)
    changed = make_slice("ns", "two", (ep("10.0.0.3", "a"),), (port(80),))
    second = build_endpoints_map([one, changed], "a", caches)
    (spn_one, spn_two) = list(first)
    assert second[spn_one] is first[spn_one]
    assert second[spn_two] != first[spn_two]
    assert [e.ip for e in second[spn_two]] == ["10.0.0.3"]
    # Other nodes: same slices, different locality; nodes without a local endpoint share.
    on_b = build_endpoints_map([one, two], "b", caches)
    assert on_b[spn_one][0].is_local is False
    assert first[spn_one][0].is_local is True
    assert build_endpoints_map([one, two], "c", caches)[spn_one] is on_b[spn_one]
    assert build_endpoints_map([one, two], "", caches)[spn_one] is on_b[spn_one]
    # Without the run's caches: equal tuples, not the same ones.
    alone = build_endpoints_map([one, two], "a")
    assert alone == first and alone[spn_one] is not first[spn_one]
    # The result is the caller's to change; the memo is not.
    first.clear()
    again = build_endpoints_map([one, two], "a", caches)
    assert list(again) == [spn_one, spn_two] and again[spn_one] is second[spn_one]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10.180.00.001", "10.180.0.1"), ("10.180.00.001", "10.180.0.1"), ("::1", None)],
)
def test_memoised_parse_ipv4_sloppy_is_still_right(text: str, expected: str | None) -> None:
    assert parse_ipv4_sloppy(text) == expected


def reference_endpoints_map(slices: Sequence[EndpointSlice], node_name: str) -> EndpointsMap:
    """``build_endpoints_map`` as first written: no memo, locality set while reading."""
    sets: dict[ServicePortName, dict[str, EndpointInfo]] = {}
    for sl in sorted(slices, key=lambda s: (s.meta.namespace, s.service_name or "", s.meta.name)):
        if sl.address_type != "IPv4" or not sl.service_name:
            continue
        for p in sl.ports:
            if p.port == 0:
                continue
            spn = ServicePortName(sl.meta.namespace, sl.service_name, p.name, p.protocol)
            found = sets.setdefault(spn, {})
            for e in sl.endpoints:
                ip = parse_ipv4_sloppy(e.addresses[0]) if e.addresses else None
                if ip is None:
                    continue
                info = EndpointInfo(
                    ip=ip,
                    port=p.port,
                    is_local=bool(node_name) and e.node_name == node_name,
                    ready=e.is_ready,
                    serving=e.is_serving,
                    terminating=e.is_terminating,
                    zone_hints=frozenset(e.hint_zones),
                )
                if info.text not in found or not info.terminating:
                    found[info.text] = info
    return {s: tuple(sorted(v.values(), key=lambda e: e.text)) for s, v in sets.items() if v}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["s1", "s2"]),
            st.integers(1, 3),
            st.lists(
                st.tuples(
                    st.sampled_from(["10.0.0.1", "10.0.0.01", "10.0.0.2", "::1"]),
                    st.sampled_from([None, "a", "b"]),
                    st.sampled_from([None, True, False]),
                    st.sampled_from([None, True, False]),
                ),
                max_size=4,
            ),
        ),
        max_size=4,
    )
)
def test_memoised_endpoints_map_equals_the_reference_on_every_node(
    specs: list[tuple[str, int, list[tuple[str, str | None, bool | None, bool | None]]]],
) -> None:
    slices = [
        make_slice(
            "ns",
            service,
            tuple(ep(ip, node, ready=r, terminating=t) for ip, node, r, t in eps),
            (port(80, "p"), port(0, "q")),
            slice_num=i,
        )
        for i, (service, _, eps) in enumerate(specs)
    ]
    caches = CompileCaches()
    for node in ("a", "b", "", "c"):
        got = build_endpoints_map(slices, node, caches)
        want = reference_endpoints_map(slices, node)
        assert got == want
        assert {k: [e.is_local for e in v] for k, v in got.items()} == {
            k: [e.is_local for e in v] for k, v in want.items()
        }
