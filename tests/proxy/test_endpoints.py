"""Service-port map, endpoints map and CategorizeEndpoints (pkg/proxy/{serviceport,
endpointslicecache,topology}.go)."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, fields, replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from svcsim.k8s.objects import (
    Endpoint,
    EndpointSlice,
    LoadBalancerIngress,
    ObjectMeta,
    Protocol,
    ServicePort,
    ServiceType,
    SessionAffinity,
    TrafficPolicy,
)
from svcsim.proxy.endpoints import (
    NO_HINTS,
    EndpointInfo,
    ServicePortInfo,
    _parse_ipv4_sloppy_words,
    build_endpoints_map,
    build_service_port_map,
    parse_ipv4_cidr_sloppy,
    parse_ipv4_sloppy,
)
from svcsim.proxy.names import ServicePortName
from svcsim.proxy.topology import (
    PREFER_SAME_NODE,
    PREFER_SAME_ZONE,
    categorize_endpoints,
    topology_mode_from_hints,
)
from tests.proxy.test_iptables_support import ep, make_service, make_slice, port

NODE = "node-a"
ZONE = {"topology.kubernetes.io/zone": "zone-a"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.180.00.001", "10.180.0.1"),
        ("172.30.0.041", "172.30.0.41"),
        ("192.168.099.022", "192.168.99.22"),
        ("1.2.3.4", "1.2.3.4"),
        ("256.1.1.1", None),
        ("1.2.3", None),
        ("fd00::1", None),
        ("", None),
        ("None", None),
    ],
)
def test_parse_ipv4_sloppy(text: str, expected: str | None) -> None:
    assert parse_ipv4_sloppy(text) == expected


_ADDRESSISH = st.one_of(
    st.text(alphabet="0123456789.x \x00", max_size=20),
    st.lists(st.integers(0, 999).map(str), min_size=1, max_size=5).map(".".join),
    st.lists(st.integers(0, 255).map(lambda n: f"{n:03d}"), min_size=4, max_size=4).map(".".join),
)


@given(_ADDRESSISH)
def test_parse_ipv4_sloppy_shortcut_reads_as_the_words_do(text: str) -> None:
    """Addresses already canonical are returned as they are; the answer is the same."""
    assert parse_ipv4_sloppy(text) == _parse_ipv4_sloppy_words(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.000/025", "203.0.113.0/25"),
        ("10.0.0.5/8", "10.0.0.0/8"),
        ("10.0.0.0", None),
        ("10.0.0.0/33", None),
        ("2001:db8::/64", None),
    ],
)
def test_parse_ipv4_cidr_sloppy(text: str, expected: str | None) -> None:
    assert parse_ipv4_cidr_sloppy(text) == expected


# --- service-port map ---------------------------------------------------------------------


def test_service_map_skips_headless_external_name_and_ipv6() -> None:
    """TestBuildServiceMapServiceHeadless / TypeExternalName; IPv6-only is not ours either."""
    services = [
        make_service(
            "x", "headless", cluster_ip="None", ports=(ServicePort(1234, Protocol.UDP, "rpc"),)
        ),
        make_service("x", "headless-without-port", cluster_ip="None"),
        make_service(
            "x",
            "external-name",
            type=ServiceType.EXTERNAL_NAME,
            cluster_ip="172.30.55.4",
            external_name="foo2.bar.com",
            ports=(ServicePort(1235, Protocol.UDP, "blah"),),
        ),
        make_service("x", "v6", cluster_ip="fd00::10", ports=(ServicePort(80),)),
        make_service("x", "unset", ports=(ServicePort(80),)),
    ]
    assert build_service_port_map(services) == {}


def test_service_map_has_one_entry_per_port() -> None:
    """TestBuildServiceMapAddRemove's first half: 3 + 3 + 2 + 2 ports; one health check port."""
    svcs = [
        make_service(
            "somewhere-else",
            "cluster-ip",
            cluster_ip="172.30.55.4",
            ports=(
                ServicePort(1234, Protocol.UDP, "something"),
                ServicePort(1235, Protocol.UDP, "somethingelse"),
                ServicePort(1236, Protocol.SCTP, "sctpport"),
            ),
        ),
        make_service(
            "somewhere-else",
            "node-port",
            type=ServiceType.NODE_PORT,
            cluster_ip="172.30.55.10",
            ports=(
                ServicePort(345, Protocol.UDP, "blahblah", node_port=678),
                ServicePort(344, Protocol.TCP, "moreblahblah", node_port=677),
                ServicePort(343, Protocol.SCTP, "muchmoreblah", node_port=676),
            ),
        ),
        make_service(
            "somewhere",
            "load-balancer",
            type=ServiceType.LOAD_BALANCER,
            cluster_ip="172.30.55.11",
            load_balancer_ingress=(LoadBalancerIngress(ip="1.2.3.4"),),
            ports=(
                ServicePort(8675, Protocol.UDP, "foobar", node_port=30061),
                ServicePort(8676, Protocol.UDP, "baz", node_port=30062),
            ),
        ),
        make_service(
            "somewhere",
            "only-local-load-balancer",
            type=ServiceType.LOAD_BALANCER,
            cluster_ip="172.30.55.12",
            external_traffic_policy=TrafficPolicy.LOCAL,
            health_check_node_port=345,
            load_balancer_ingress=(LoadBalancerIngress(ip="5.6.7.8"),),
            ports=(
                ServicePort(8677, Protocol.UDP, "foobar2", node_port=30063),
                ServicePort(8678, Protocol.UDP, "baz", node_port=30064),
            ),
        ),
    ]
    m = build_service_port_map(svcs)
    assert len(m) == 10
    hc = {
        (k.namespace, k.name): v.health_check_node_port
        for k, v in m.items()
        if v.health_check_node_port
    }
    assert hc == {("somewhere", "only-local-load-balancer"): 345}


def test_service_port_info_fields() -> None:
    svc = make_service(
        "ns",
        "s",
        type=ServiceType.LOAD_BALANCER,
        cluster_ip="172.30.0.041",
        cluster_ips=("fd00::1", "172.30.0.41"),
        external_ips=("192.168.099.022", "fd00::2", "junk"),
        load_balancer_source_ranges=(" 203.0.113.000/025", "2001:db8::/64"),
        load_balancer_ingress=(
            LoadBalancerIngress(ip="1.2.3.4"),
            LoadBalancerIngress(ip="1.2.3.5", ip_mode="Proxy"),
            LoadBalancerIngress(hostname="lb.example.com"),
            LoadBalancerIngress(ip="1.2.3.6", ip_mode="VIP"),
        ),
        session_affinity=SessionAffinity.CLIENT_IP,
        session_affinity_timeout_s=600,
        external_traffic_policy=TrafficPolicy.LOCAL,
        health_check_node_port=32000,
        ports=(ServicePort(80, name="p80", node_port=30080),),
    )
    (info,) = build_service_port_map([svc]).values()
    assert info.name == ServicePortName("ns", "s", "p80", Protocol.TCP)
    assert info.cluster_ip == "172.30.0.41"
    assert info.external_ips == ("192.168.99.22",)
    assert info.load_balancer_source_ranges == ("203.0.113.0/25",)
    assert info.load_balancer_vips == ("1.2.3.4", "1.2.3.6")
    assert (info.client_ip_affinity, info.sticky_max_age_s) == (True, 600)
    assert info.health_check_node_port == 32000
    assert info.external_policy_local and not info.internal_policy_local
    assert info.externally_accessible and info.uses_cluster_endpoints and info.uses_local_endpoints


@pytest.mark.parametrize(
    ("spec", "external_local", "health_check"),
    [
        ({"type": ServiceType.CLUSTER_IP}, False, 0),  # not externally accessible: eTP ignored
        ({"type": ServiceType.CLUSTER_IP, "external_ips": ("1.1.1.1",)}, True, 0),
        ({"type": ServiceType.NODE_PORT}, True, 0),  # health checks are for LoadBalancers only
        ({"type": ServiceType.LOAD_BALANCER}, True, 30000),
    ],
)
def test_external_policy_local_and_health_check(
    spec: dict[str, object], external_local: bool, health_check: int
) -> None:
    svc = make_service(
        "ns",
        "s",
        cluster_ip="10.96.0.1",
        external_traffic_policy=TrafficPolicy.LOCAL,
        health_check_node_port=30000,
        ports=(ServicePort(80),),
        **spec,
    )
    (info,) = build_service_port_map([svc]).values()
    assert info.external_policy_local == external_local
    assert info.health_check_node_port == health_check


# --- endpoints map ------------------------------------------------------------------------


def test_endpoints_associate_by_port_name_and_protocol_and_take_the_slice_port() -> None:
    sl = make_slice(
        "ns",
        "dns",
        (ep("10.0.0.1", NODE), ep("10.0.0.2")),
        (port(5353, "dns", Protocol.TCP), port(53, "dns", Protocol.UDP)),
    )
    m = build_endpoints_map([sl], NODE)
    tcp = ServicePortName("ns", "dns", "dns", Protocol.TCP)
    udp = ServicePortName("ns", "dns", "dns", Protocol.UDP)
    assert [(e.text, e.is_local) for e in m[tcp]] == [
        ("10.0.0.1:5353", True),
        ("10.0.0.2:5353", False),
    ]
    assert [e.text for e in m[udp]] == ["10.0.0.1:53", "10.0.0.2:53"]


def test_endpoints_sort_as_strings_across_slices() -> None:
    """TestUpdateEndpointsMap orders 10.1.1.11:11 before 10.1.1.1:11 (byEndpoint)."""
    p = (port(11, "p11", Protocol.UDP),)
    m = build_endpoints_map(
        [
            make_slice("ns1", "ep1", (ep("10.1.1.1"),), p, 1),
            make_slice("ns1", "ep1", (ep("10.1.1.11"),), p, 2),
        ],
        NODE,
    )
    assert [e.text for e in m[ServicePortName("ns1", "ep1", "p11", Protocol.UDP)]] == [
        "10.1.1.11:11",
        "10.1.1.1:11",
    ]


@pytest.mark.parametrize(
    ("first_terminating", "second_terminating", "winner_terminating"),
    [(True, False, False), (False, True, False), (True, True, True), (False, False, False)],
)
def test_duplicate_ip_port_prefers_the_non_terminating_endpoint(
    first_terminating: bool, second_terminating: bool, winner_terminating: bool
) -> None:
    p = (port(80),)
    slices = [
        make_slice(
            "ns",
            "s",
            (ep("10.0.0.1", "n1", ready=not first_terminating, terminating=first_terminating),),
            p,
            1,
        ),
        make_slice(
            "ns",
            "s",
            (ep("10.0.0.1", "n2", ready=not second_terminating, terminating=second_terminating),),
            p,
            2,
        ),
    ]
    (eps,) = build_endpoints_map(slices, NODE).values()
    assert len(eps) == 1
    assert eps[0].terminating == winner_terminating


def test_endpoints_map_ignores_what_kube_proxy_ignores() -> None:
    unlabelled = EndpointSlice(
        meta=ObjectMeta(name="x", namespace="ns"), endpoints=(ep("10.0.0.9"),), ports=(port(80),)
    )
    slices = [
        make_slice("ns", "v6", (ep("fd00::1"),), (port(80),), address_type="IPv6"),
        make_slice("ns", "zero", (ep("10.0.0.1"),), (port(0),)),
        make_slice("ns", "noaddr", (Endpoint(addresses=()),), (port(80),)),
        make_slice("ns", "sloppy", (ep("10.0.00.001"), ep("not-an-ip")), (port(80),)),
        unlabelled,
    ]
    m = build_endpoints_map(slices, NODE)
    assert list(m) == [ServicePortName("ns", "sloppy", "", Protocol.TCP)]
    assert [e.text for e in m[ServicePortName("ns", "sloppy")]] == ["10.0.0.1:80"]


def test_nil_conditions_mean_ready_serving_not_terminating() -> None:
    (eps,) = build_endpoints_map(
        [make_slice("ns", "s", (ep("10.0.0.1"),), (port(80),))], NODE
    ).values()
    assert (eps[0].ready, eps[0].serving, eps[0].terminating, eps[0].is_local) == (
        True,
        True,
        False,
        False,
    )


def test_endpoints_without_hints_share_one_empty_set() -> None:
    slices = [make_slice("ns", "s", (ep("10.0.0.1"), ep("10.0.0.2", zones=("z",))), (port(80),))]
    plain, hinted = build_endpoints_map(slices, NODE)[ServicePortName("ns", "s")]
    assert plain.zone_hints is NO_HINTS and plain.node_hints is NO_HINTS
    assert hinted.zone_hints == {"z"} and hinted.node_hints is NO_HINTS


# --- CategorizeEndpoints ------------------------------------------------------------------


def mk(
    ip: str,
    local: bool = False,
    ready: bool = True,
    serving: bool = True,
    terminating: bool = False,
    zones: tuple[str, ...] = (),
    nodes: tuple[str, ...] = (),
) -> EndpointInfo:
    return EndpointInfo(
        ip, 80, local, ready, serving, terminating, frozenset(zones), frozenset(nodes)
    )


def svc_info(itp: bool = False, etp: bool = False, node_port: int = 0) -> ServicePortInfo:
    return ServicePortInfo(
        ServicePortName("ns", "s"),
        "10.96.0.1",
        80,
        node_port=node_port,
        internal_policy_local=itp,
        external_policy_local=etp,
    )


def texts(eps: tuple[EndpointInfo, ...]) -> list[str]:
    return [e.ip for e in eps]


@pytest.mark.parametrize(
    ("name", "svc", "eps", "cluster", "local", "reachable", "has_any"),
    [
        (
            "cluster: ready only",
            svc_info(),
            [
                mk("1", ready=True),
                mk("2", ready=False, terminating=True),
                mk("3", ready=False, serving=False),
            ],
            ["1"],
            [],
            ["1"],
            True,
        ),
        (
            "cluster: fallback to serving+terminating",
            svc_info(),
            [
                mk("1", ready=False, terminating=True),
                mk("2", ready=False, serving=False, terminating=True),
                mk("3", ready=False, serving=True, terminating=False),
            ],
            ["1"],
            [],
            ["1"],
            True,
        ),
        (
            "cluster: nothing usable",
            svc_info(),
            [mk("1", ready=False, serving=False, terminating=True)],
            [],
            [],
            [],
            False,
        ),
        (
            "iTP local: local ready only, no cluster list",
            svc_info(itp=True),
            [mk("1", local=True), mk("2"), mk("3", local=True, ready=False, terminating=True)],
            [],
            ["1"],
            ["1"],
            True,
        ),
        (
            "iTP local: local fallback",
            svc_info(itp=True),
            [mk("1", local=True, ready=False, terminating=True), mk("2")],
            [],
            ["1"],
            ["1"],
            True,
        ),
        (
            "iTP local: remote only still has endpoints",
            svc_info(itp=True),
            [mk("2")],
            [],
            [],
            [],
            True,
        ),
        (
            "eTP local: cluster is a superset",
            svc_info(etp=True, node_port=30000),
            [mk("1", local=True), mk("2")],
            ["1", "2"],
            ["1"],
            ["1", "2"],
            True,
        ),
        (
            "eTP local: local fallback merges lists",
            svc_info(etp=True, node_port=30000),
            [mk("1", local=True, ready=False, terminating=True), mk("2")],
            ["2"],
            ["1"],
            ["1", "2"],
            True,
        ),
        (
            "eTP local but not externally accessible: Cluster only",
            svc_info(etp=True),
            [mk("1", local=True), mk("2")],
            ["1", "2"],
            [],
            ["1", "2"],
            True,
        ),
    ],
)
def test_categorize_endpoints(
    name: str,
    svc: ServicePortInfo,
    eps: list[EndpointInfo],
    cluster: list[str],
    local: list[str],
    reachable: list[str],
    has_any: bool,
) -> None:
    got = categorize_endpoints(eps, svc, NODE)
    assert (
        texts(got.cluster),
        texts(got.local),
        texts(got.all_reachable),
        got.has_any_endpoints,
    ) == (cluster, local, reachable, has_any), name


@pytest.mark.parametrize(
    ("eps", "labels", "mode", "cluster"),
    [
        ([mk("1", zones=("zone-a",)), mk("2", zones=("zone-b",))], ZONE, PREFER_SAME_ZONE, ["1"]),
        (
            [mk("1", zones=("zone-a",)), mk("2")],
            ZONE,
            "",
            ["1", "2"],
        ),  # one ready endpoint unhinted
        (
            [mk("1", zones=("zone-a",)), mk("2", ready=False, serving=False)],
            ZONE,
            PREFER_SAME_ZONE,
            ["1"],
        ),
        (
            [mk("1", zones=("zone-b",)), mk("2", zones=("zone-c",))],
            ZONE,
            "",
            ["1", "2"],
        ),  # none for us
        (
            [mk("1", zones=("zone-a",)), mk("2", zones=("zone-b",))],
            {},
            "",
            ["1", "2"],
        ),  # no zone label
        (
            [mk("1", nodes=(NODE,), zones=("zone-b",)), mk("2", nodes=("n2",), zones=("zone-a",))],
            ZONE,
            PREFER_SAME_NODE,
            ["1"],
        ),
        (
            [mk("1", nodes=("n3",), zones=("zone-a",)), mk("2", nodes=("n2",), zones=("zone-b",))],
            ZONE,
            PREFER_SAME_ZONE,
            ["1"],
        ),
    ],
)
def test_topology_hints(
    eps: list[EndpointInfo], labels: dict[str, str], mode: str, cluster: list[str]
) -> None:
    got = categorize_endpoints(eps, svc_info(), NODE, labels)
    assert got.topology_mode == mode
    assert texts(got.cluster) == cluster


def test_node_hints_need_the_feature_gate() -> None:
    eps = [mk("1", nodes=(NODE,)), mk("2", nodes=("n2",))]
    assert topology_mode_from_hints(eps, NODE, "zone-a", True) == PREFER_SAME_NODE
    assert topology_mode_from_hints(eps, NODE, "zone-a", False) == ""


def test_topology_with_local_policy_merges_and_sorts_reachable() -> None:
    eps = [mk("9", zones=("zone-a",)), mk("8", local=True, zones=("zone-b",))]
    got = categorize_endpoints(eps, svc_info(etp=True, node_port=30000), NODE, ZONE)
    assert texts(got.cluster) == ["9"]
    assert texts(got.local) == ["8"]
    assert texts(got.all_reachable) == ["8", "9"]


endpoint_st = st.builds(
    mk,
    st.sampled_from(["1", "2", "3", "4", "5"]),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.sampled_from([(), ("zone-a",), ("zone-b",)]),
)


@given(
    st.lists(endpoint_st, max_size=6, unique_by=lambda e: e.ip),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_categorize_invariants(
    eps: list[EndpointInfo], itp: bool, etp: bool, external: bool
) -> None:
    svc = svc_info(itp=itp, etp=etp, node_port=30000 if external else 0)
    got = categorize_endpoints(eps, svc, NODE, ZONE)
    usable = {e.ip for e in eps if e.ready or (e.serving and e.terminating)}
    reachable = {e.ip for e in got.all_reachable}
    assert {e.ip for e in got.cluster} | {e.ip for e in got.local} == reachable
    assert reachable <= usable
    assert all(e.is_local for e in got.local)
    assert got.has_any_endpoints == bool(usable)
    assert not got.cluster or svc.uses_cluster_endpoints
    assert not got.local or svc.uses_local_endpoints


def test_precomputed_texts_follow_their_fields() -> None:
    ep = EndpointInfo("10.1.1.1", 80)
    assert ep.text == "10.1.1.1:80" == str(ep)
    moved = replace(ep, port=81, is_local=True)
    assert moved.text == "10.1.1.1:81" and moved != ep
    assert replace(ep, is_local=True) == replace(ep, is_local=True)
    named, unnamed = ServicePortName("ns", "svc", "http"), ServicePortName("ns", "svc")
    assert (named.text, unnamed.text) == ("ns/svc:http", "ns/svc")
    assert hash(named) == hash(ServicePortName("ns", "svc", "http")) != hash(unnamed)
    assert {named: 1}[ServicePortName("ns", "svc", "http")] == 1
    assert sorted([named, unnamed]) == [unnamed, named]


@pytest.mark.parametrize(
    "values",
    [
        ("10.1.1.1", 80, False, True, True, False, frozenset(), frozenset()),
        ("10.1.1.2", 53, True, False, True, True, frozenset({"z"}), frozenset({"n1"})),
    ],
    ids=["plain", "local-terminating-hinted"],
)
def test_new_endpoint_info_is_the_dataclass_value(values: tuple[Any, ...]) -> None:
    from svcsim.proxy.endpoints import new_endpoint_info

    made, want = new_endpoint_info(*values), EndpointInfo(*values)
    assert made == want and hash(made) == hash(want) and repr(made) == repr(want)
    assert type(made) is EndpointInfo and made.text == want.text
    with pytest.raises(FrozenInstanceError):
        made.port = 1  # type: ignore[misc]


def test_local_twin_is_replace_with_is_local() -> None:
    from svcsim.proxy.endpoints import _local_twin

    ep = EndpointInfo("10.1.1.1", 80, False, False, True, True, frozenset({"z"}), frozenset({"n1"}))
    assert _local_twin(ep) == replace(ep, is_local=True)
    assert _local_twin(ep).text == ep.text
    # _local_twin lists the fields: a new field must be added there too.
    assert [f.name for f in fields(EndpointInfo) if f.init] == [
        "ip",
        "port",
        "is_local",
        "ready",
        "serving",
        "terminating",
        "zone_hints",
        "node_hints",
    ]
