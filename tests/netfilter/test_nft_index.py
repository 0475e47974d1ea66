"""The nf_tables dispatch agrees with walk_nft: outcome for outcome, draw for draw, exactly."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svcsim.k8s.objects import (
    EndpointSlice,
    Service,
    ServicePort,
    ServiceType,
    SessionAffinity,
    TrafficPolicy,
)
from svcsim.netfilter.index import DispatchTooLargeError
from svcsim.netfilter.nft_eval import DynamicSets, walk_nft
from svcsim.netfilter.nft_index import MemberQuery, NumgenQuery, build_nft_dispatch
from svcsim.netfilter.nft_parse import parse_table
from svcsim.netfilter.nft_statements import ParsedTable
from svcsim.netfilter.numgen import RANDOM_SCALE, first_draw, value_counts
from svcsim.netfilter.packet import NodeNetwork, Origin, Packet
from svcsim.proxy.endpoints import build_endpoints_map, build_service_port_map
from svcsim.proxy.nftables import NameMemo, compile_nftables, table_from_maps
from tests.proxy.nftables_support import FAKE_SERVICE_CIDRS, nft_fake_context
from tests.proxy.test_iptables_support import (
    TEST_NODE_IPS,
    TEST_NODE_NAME,
    ep,
    make_service,
    make_slice,
    port,
)

NODE_IP = TEST_NODE_IPS[0]
NETWORK = NodeNetwork(TEST_NODE_IPS, pod_cidr="10.0.1.0/24")
POOL = [f"10.0.{node}.{host}" for node in (1, 2) for host in range(2, 7)]


@dataclass(frozen=True)
class Svc:
    index: int
    endpoints: tuple[tuple[str, bool], ...]
    """(address, terminating)."""
    affinity_s: int | None
    node_port: bool
    etp_local: bool
    itp_local: bool

    @property
    def vip(self) -> str:
        return f"172.30.0.{self.index + 1}"


def _table(svcs: list[Svc]) -> ParsedTable:
    services, slices = _objects(svcs)
    ctx = nft_fake_context(local_detector_value="10.0.0.0/16")
    return parse_table(compile_nftables(services, slices, ctx, FAKE_SERVICE_CIDRS))


def _objects(svcs: list[Svc]) -> tuple[list[Service], list[EndpointSlice]]:
    services, slices = [], []
    for s in svcs:
        extra: dict[str, object] = {}
        if s.affinity_s is not None:
            extra = {
                "session_affinity": SessionAffinity.CLIENT_IP,
                "session_affinity_timeout_s": s.affinity_s,
            }
        services.append(
            make_service(
                "ns",
                f"s{s.index}",
                type=ServiceType.NODE_PORT if s.node_port else ServiceType.CLUSTER_IP,
                cluster_ip=s.vip,
                ports=(ServicePort(80, name="p", node_port=30000 + s.index if s.node_port else 0),),
                external_traffic_policy=TrafficPolicy.LOCAL
                if s.etp_local
                else TrafficPolicy.CLUSTER,
                internal_traffic_policy=TrafficPolicy.LOCAL
                if s.itp_local
                else TrafficPolicy.CLUSTER,
                **extra,
            )
        )
        eps = tuple(
            ep(
                ip,
                node=TEST_NODE_NAME if ip.startswith("10.0.1.") else "other",
                ready=not terminating,
                serving=True,
                terminating=terminating,
            )
            for ip, terminating in s.endpoints
        )
        slices.append(make_slice("ns", f"s{s.index}", eps, (port(8080, "p"),)))
    return services, slices


@st.composite
def clusters(draw: st.DrawFn) -> list[Svc]:
    out = []
    for i in range(draw(st.integers(1, 3))):
        ips = draw(st.lists(st.sampled_from(POOL), max_size=7, unique=True))
        out.append(
            Svc(
                index=i,
                endpoints=tuple((ip, draw(st.booleans())) for ip in sorted(ips)),
                affinity_s=draw(st.one_of(st.none(), st.sampled_from([5, 10800]))),
                node_port=draw(st.booleans()),
                etp_local=draw(st.booleans()),
                itp_local=draw(st.booleans()),
            )
        )
    return out


@st.composite
def packets(draw: st.DrawFn, svcs: list[Svc]) -> Packet:
    svc = draw(st.sampled_from(svcs))
    origin: Origin = draw(st.sampled_from(["pod", "host", "external"]))
    src = {
        "pod": draw(st.sampled_from([*(ip for ip, _ in svc.endpoints), "10.0.1.200"])),
        "host": NODE_IP,
        "external": "203.0.113.9",
    }[origin]
    if svc.node_port and draw(st.booleans()):
        return Packet(src, NODE_IP, "tcp", 30000 + svc.index, origin=origin)
    return Packet(src, svc.vip, "tcp", 80, origin=origin)


def _walk_distribution(
    table: ParsedTable, packet: Packet, sets: DynamicSets | None = None
) -> dict[object, Fraction]:
    """Exact outcome probabilities from walk_nft alone: one walk per numgen interval."""
    out: dict[object, Fraction] = {}
    modulus = [0]

    def first() -> int:
        modulus[0] += 1
        return 0

    walk_nft(table, packet, NETWORK, draw=first, sets=sets or DynamicSets())
    if modulus[0] == 0:
        outcome, _ = walk_nft(table, packet, NETWORK, sets=sets or DynamicSets())
        return {outcome: Fraction(1)}
    assert modulus[0] == 1  # kube-proxy's table reaches at most one numgen per walk
    n = _numgen_modulus(table, packet, sets)
    for k, count in enumerate(value_counts(n)):
        draw_k = first_draw(k, n)
        outcome, _ = walk_nft(
            table, packet, NETWORK, draw=lambda d=draw_k: d, sets=sets or DynamicSets()
        )
        out[outcome] = out.get(outcome, Fraction(0)) + Fraction(count, RANDOM_SCALE)
    return out


def _numgen_modulus(table: ParsedTable, packet: Packet, sets: DynamicSets | None) -> int:
    _, steps = walk_nft(table, packet, NETWORK, draw=lambda: 0, sets=sets or DynamicSets())
    detail = next(s.detail for s in steps if "numgen" in s.detail)
    return int(detail.split("of mod ")[1].split(";")[0])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_dispatch_probabilities_equal_the_walks(data: st.DataObject) -> None:
    svcs = data.draw(clusters())
    table = _table(svcs)
    packet = data.draw(packets(svcs))
    dispatch = build_nft_dispatch(table, packet, NETWORK)
    expected = _walk_distribution(table, packet)
    got: dict[object, Fraction] = {}
    for outcome, p in zip(
        dispatch.outcomes, dispatch.outcome_probabilities(assume_empty_recent=True), strict=True
    ):
        if p:
            got[outcome] = got.get(outcome, Fraction(0)) + p
    assert got == expected
    assert sum(got.values()) == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_resolve_equals_the_walk_draw_for_draw_with_live_sets(data: st.DataObject) -> None:
    """Same draws and sets: same outcome, and the sets left in the same state."""
    svcs = data.draw(clusters())
    table = _table(svcs)
    packet = data.draw(packets(svcs))
    dispatch = build_nft_dispatch(table, packet, NETWORK)
    ours, theirs = DynamicSets(), DynamicSets()
    for i, r in enumerate(
        data.draw(st.lists(st.integers(0, RANDOM_SCALE - 1), min_size=1, max_size=6))
    ):
        now = 3.0 * i
        mine = dispatch.resolve(lambda r=r: r, ours, now)
        walked, _ = walk_nft(table, packet, NETWORK, draw=lambda r=r: r, sets=theirs, now_s=now)
        assert mine == walked
        assert ours.expiry == theirs.expiry


def test_the_spine_is_numgen_intervals() -> None:
    svc = Svc(0, tuple((ip, False) for ip in POOL[:3]), None, False, False, False)
    table = _table([svc])
    dispatch = build_nft_dispatch(table, Packet("10.0.2.9", svc.vip, "tcp", 80), NETWORK)
    spine = dispatch.spine()
    assert spine is not None and not dispatch.has_recent
    assert spine.bounds == (first_draw(1, 3), first_draw(2, 3))
    assert len({*spine.leaves, spine.final}) == 3
    assert dispatch.max_draws == 1


def test_affinity_makes_membership_questions() -> None:
    svc = Svc(0, tuple((ip, False) for ip in POOL[:3]), 10, False, False, False)
    table = _table([svc])
    dispatch = build_nft_dispatch(table, Packet("10.0.2.9", svc.vip, "tcp", 80), NETWORK)
    questions = {type(q) for p in dispatch.paths for q, _ in p.answers}
    assert questions == {MemberQuery, NumgenQuery}
    assert dispatch.has_recent and dispatch.spine() is None
    with pytest.raises(ValueError, match="dynamic sets"):
        dispatch.outcome_probabilities()


def test_too_many_paths_is_refused() -> None:
    svc = Svc(0, tuple((ip, False) for ip in POOL[:6]), None, False, False, False)
    with pytest.raises(DispatchTooLargeError):
        build_nft_dispatch(
            _table([svc]), Packet("10.0.2.9", svc.vip, "tcp", 80), NETWORK, max_paths=3
        )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(svcs=clusters())
def test_a_compile_memo_gives_the_same_table(svcs: list[Svc]) -> None:
    """table_from_maps with a run's NameMemo (second call served from it) == without one."""
    services, slices = _objects(svcs)
    ctx = nft_fake_context(local_detector_value="10.0.0.0/16")
    ports, endpoints = build_service_port_map(services), build_endpoints_map(slices, ctx.node_name)
    plain = table_from_maps(ports, endpoints, ctx, FAKE_SERVICE_CIDRS)
    memo = NameMemo()
    assert table_from_maps(ports, endpoints, ctx, FAKE_SERVICE_CIDRS, memo) == plain
    assert table_from_maps(ports, endpoints, ctx, FAKE_SERVICE_CIDRS, memo) == plain
