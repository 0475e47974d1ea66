from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcsim.k8s import (
    ContainerPort,
    Endpoint,
    EndpointAddress,
    EndpointConditions,
    EndpointPort,
    Endpoints,
    EndpointSlice,
    EndpointSubset,
    Manifests,
    Node,
    ObjectMeta,
    Pod,
    Protocol,
    Service,
    ServicePort,
    ServiceType,
    effective_endpoint_slices,
    endpoint_slices_for_service,
    mirror_endpoints,
)
from svcsim.k8s.controllers import repack_subsets, selector_matches

SEL = (("app", "web"),)


def svc(
    name: str = "web",
    *,
    selector: tuple[tuple[str, str], ...] | None = SEL,
    ports: tuple[ServicePort, ...] = (ServicePort(80, target_port=8080),),
    **kw: object,
) -> Service:
    kw.setdefault("cluster_ip", "10.0.0.10")
    return Service(ObjectMeta(name), selector=selector, ports=ports, **kw)  # type: ignore[arg-type]


def pod(
    name: str,
    ip: str | None = "10.1.0.1",
    *,
    ready: bool = True,
    terminating: bool = False,
    labels: tuple[tuple[str, str], ...] = SEL,
    ns: str = "default",
    node: str | None = "n1",
    ports: tuple[ContainerPort, ...] = (),
    phase: str = "Running",
    ips: tuple[str, ...] | None = None,
) -> Pod:
    pod_ips = ips if ips is not None else ((ip,) if ip else ())
    return Pod(
        ObjectMeta(name, ns, labels),
        node_name=node,
        pod_ip=pod_ips[0] if pod_ips else None,
        pod_ips=pod_ips,
        phase=phase,
        ready=ready,
        terminating=terminating,
        container_ports=ports,
    )


def endpoints_of(slices: tuple[EndpointSlice, ...]) -> list[Endpoint]:
    return [e for s in slices for e in s.endpoints]


@pytest.mark.parametrize(
    ("ready", "terminating", "publish", "expected"),
    [
        (True, False, False, EndpointConditions(True, True, False)),
        (False, False, False, EndpointConditions(False, False, False)),
        (True, True, False, EndpointConditions(False, True, True)),
        (False, True, False, EndpointConditions(False, False, True)),
        (False, False, True, EndpointConditions(True, False, False)),
        (True, True, True, EndpointConditions(True, True, True)),
    ],
)
def test_conditions(
    ready: bool, terminating: bool, publish: bool, expected: EndpointConditions
) -> None:
    service = svc(publish_not_ready_addresses=publish)
    (sl,) = endpoint_slices_for_service(service, [pod("p", ready=ready, terminating=terminating)])
    (ep,) = sl.endpoints
    assert ep.conditions == expected
    assert (ep.addresses, ep.node_name, ep.target_ref) == (("10.1.0.1",), "n1", "default/p")
    assert sl.ports == (EndpointPort(8080, Protocol.TCP, ""),)


def test_slice_labels_and_name() -> None:
    service = Service(
        ObjectMeta("web", labels=(("team", "a"), ("kubernetes.io/service-name", "evil"))),
        cluster_ip="None",
        selector=SEL,
    )
    (sl,) = endpoint_slices_for_service(service, [pod("p")])
    assert sl.meta.labels == (
        ("endpointslice.kubernetes.io/managed-by", "endpointslice-controller.k8s.io"),
        ("kubernetes.io/service-name", "web"),
        ("service.kubernetes.io/headless", ""),
        ("team", "a"),
    )
    assert sl.service_name == "web" and sl.ports == ()  # headless without ports
    assert sl.meta.name.startswith("web-") and len(sl.meta.name) == len("web-") + 5
    assert endpoint_slices_for_service(service, [pod("p")]) == (sl,)  # deterministic


@pytest.mark.parametrize(
    ("pods", "expected_names"),
    [
        ([pod("a"), pod("b", "10.1.0.2")], ["a", "b"]),
        ([pod("a", labels=(("app", "other"),))], []),
        ([pod("a", ns="other")], []),
        ([pod("a", None)], []),  # no IP yet
        ([pod("a", phase="Succeeded"), pod("b", phase="Failed")], []),
        ([pod("a", phase="Pending")], ["a"]),  # has an IP: listed, not ready by its condition
        ([pod("a", labels=(("app", "web"), ("tier", "x")))], ["a"]),  # superset of the selector
    ],
)
def test_which_pods(pods: list[Pod], expected_names: list[str]) -> None:
    slices = endpoint_slices_for_service(svc(), pods)
    assert [e.target_ref for e in endpoints_of(slices)] == [f"default/{n}" for n in expected_names]
    assert len(slices) >= 1  # an empty service keeps one placeholder slice


def test_placeholder_slice_when_nothing_matches() -> None:
    (sl,) = endpoint_slices_for_service(svc(), [])
    assert (sl.address_type, sl.endpoints, sl.ports, sl.service_name) == ("IPv4", (), (), "web")


@pytest.mark.parametrize(
    "service",
    [
        svc(selector=None),
        svc(type=ServiceType.EXTERNAL_NAME, cluster_ip="", external_name="x.example.com"),
    ],
)
def test_no_slices_without_selector_or_for_external_name(service: Service) -> None:
    assert endpoint_slices_for_service(service, [pod("p")]) == ()


def test_named_target_ports_group_pods_by_resolved_port() -> None:
    service = svc(
        ports=(
            ServicePort(80, name="http", target_port="web"),
            ServicePort(53, Protocol.UDP, name="dns", target_port="dns"),
        )
    )
    old = (ContainerPort(8080, name="web"), ContainerPort(53, Protocol.UDP, name="dns"))
    new = (ContainerPort(9090, name="web"), ContainerPort(53, Protocol.UDP, name="dns"))
    tcp_dns = (ContainerPort(8080, name="web"), ContainerPort(53, Protocol.TCP, name="dns"))
    pods = [
        pod("a", "10.1.0.1", ports=old),
        pod("b", "10.1.0.2", ports=new),
        pod("c", "10.1.0.3", ports=old),
        pod("d", "10.1.0.4", ports=tcp_dns),  # "dns" exists only as TCP: that port is left out
        pod("e", "10.1.0.5", ports=()),  # no named ports at all
    ]
    slices = endpoint_slices_for_service(service, pods)
    by_ports = {s.ports: [e.target_ref for e in s.endpoints] for s in slices}
    http = lambda n: EndpointPort(n, Protocol.TCP, "http")  # noqa: E731
    dns = EndpointPort(53, Protocol.UDP, "dns")
    assert by_ports == {
        (http(8080), dns): ["default/a", "default/c"],
        (http(9090), dns): ["default/b"],
        (http(8080),): ["default/d"],
        (): ["default/e"],  # kube-proxy can use this endpoint for no port
    }
    assert len({s.meta.name for s in slices}) == len(slices)


def test_at_most_max_endpoints_per_slice() -> None:
    pods = [pod(f"p{i:03}", f"10.1.{i // 200}.{i % 200 + 1}") for i in range(250)]
    slices = endpoint_slices_for_service(svc(), pods)
    assert [len(s.endpoints) for s in slices] == [100, 100, 50]
    assert len({s.meta.name for s in slices}) == 3
    assert [len(s.endpoints) for s in endpoint_slices_for_service(svc(), pods, 1000)] == [250]
    assert [len(s.endpoints) for s in endpoint_slices_for_service(svc(), pods[:5], 2)] == [2, 2, 1]


@pytest.mark.parametrize("bad", [0, -1, 1001])
def test_max_endpoints_per_slice_bounds(bad: int) -> None:
    with pytest.raises(ValueError, match=r"max_endpoints_per_slice must be 1\.\.1000"):
        endpoint_slices_for_service(svc(), [], bad)


def test_nodes_give_zone_and_drop_pods_on_unknown_nodes() -> None:
    nodes = [Node(ObjectMeta("n1", labels=(("topology.kubernetes.io/zone", "z1"),)))]
    pods = [pod("a", node="n1"), pod("b", "10.1.0.2", node="gone"), pod("c", "10.1.0.3", node=None)]
    slices = endpoint_slices_for_service(svc(), pods, nodes=nodes)
    assert [(e.target_ref, e.zone) for e in endpoints_of(slices)] == [("default/a", "z1")]
    # publishNotReadyAddresses keeps Pods whose Node is unknown
    kept = endpoint_slices_for_service(svc(publish_not_ready_addresses=True), pods, nodes=nodes)
    assert len(endpoints_of(kept)) == 3


def test_dual_stack_service_gets_a_slice_per_family() -> None:
    service = svc(cluster_ip="10.0.0.10", cluster_ips=("10.0.0.10", "fd00::10"))
    slices = endpoint_slices_for_service(
        service, [pod("a", ips=("10.1.0.1", "fd01::1")), pod("b", "10.1.0.2")]
    )
    assert [(s.address_type, [e.addresses for e in s.endpoints]) for s in slices] == [
        ("IPv4", [("10.1.0.1",), ("10.1.0.2",)]),
        ("IPv6", [("fd01::1",)]),
    ]


pod_strategy = st.builds(
    lambda i, ready, term, match, phase, has_ip: pod(
        f"p{i}",
        f"10.2.{i // 250}.{i % 250 + 1}" if has_ip else None,
        ready=ready,
        terminating=term,
        labels=SEL if match else (("app", "x"),),
        phase=phase,
    ),
    st.integers(0, 5000),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["Running", "Pending", "Failed"]),
    st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(pod_strategy, max_size=60, unique_by=lambda p: p.meta.name), st.integers(1, 25))
def test_every_eligible_pod_listed_once(pods: list[Pod], max_per_slice: int) -> None:
    slices = endpoint_slices_for_service(svc(), pods, max_per_slice)
    listed = Counter(e.target_ref for e in endpoints_of(slices))
    eligible = {
        p.meta.key
        for p in pods
        if p.meta.labels == SEL and p.pod_ips and p.phase not in ("Failed", "Succeeded")
    }
    assert set(listed) == eligible and all(n == 1 for n in listed.values())
    assert all(len(s.endpoints) <= max_per_slice for s in slices)
    assert len({s.meta.name for s in slices}) == len(slices)
    for e in endpoints_of(slices):
        assert e.conditions.ready == (e.conditions.serving and not e.conditions.terminating)


# --- mirroring --------------------------------------------------------------------------------


def eps(name: str = "ext", *subsets: EndpointSubset, labels=(), annotations=()) -> Endpoints:  # type: ignore[no-untyped-def]
    return Endpoints(ObjectMeta(name, labels=labels, annotations=annotations), subsets)


def addr(ip: str, **kw: str) -> EndpointAddress:
    return EndpointAddress(ip, **kw)


SUBSET = EndpointSubset(
    (addr("192.0.2.42", node_name="n1"),), (addr("192.0.2.43"),), (EndpointPort(9376, name="http"),)
)


def test_mirror_basic() -> None:
    endpoints = eps(
        "ext",
        SUBSET,
        labels=(("team", "a"),),
        annotations=(
            ("endpoints.kubernetes.io/last-change-trigger-time", "t"),
            ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
            ("note", "kept"),
        ),
    )
    (sl,) = mirror_endpoints([endpoints], [svc("ext", selector=None)])
    assert sl.meta.labels == (
        ("endpointslice.kubernetes.io/managed-by", "endpointslicemirroring-controller.k8s.io"),
        ("kubernetes.io/service-name", "ext"),
        ("team", "a"),
    )
    assert sl.meta.annotations == (("note", "kept"),)
    assert sl.ports == (EndpointPort(9376, Protocol.TCP, "http"),)
    assert [(e.addresses, e.conditions, e.node_name) for e in sl.endpoints] == [
        (("192.0.2.42",), EndpointConditions(ready=True), "n1"),
        (("192.0.2.43",), EndpointConditions(ready=False), None),
    ]


@pytest.mark.parametrize(
    ("endpoints", "services"),
    [
        (eps("ext", SUBSET), []),  # no Service
        (eps("ext", SUBSET), [svc("ext")]),  # the Service has a selector
        (eps("ext", SUBSET), [svc("other", selector=None)]),
        (
            eps("ext", SUBSET, labels=(("endpointslice.kubernetes.io/skip-mirror", "true"),)),
            [svc("ext", selector=None)],
        ),
        (
            eps("ext", SUBSET, annotations=(("control-plane.alpha.kubernetes.io/leader", "{}"),)),
            [svc("ext", selector=None)],
        ),
    ],
    ids=["no-service", "selector", "other-name", "skip-mirror", "leader-election"],
)
def test_not_mirrored(endpoints: Endpoints, services: list[Service]) -> None:
    assert mirror_endpoints([endpoints], services) == ()


def test_skip_mirror_must_be_true() -> None:
    endpoints = eps("ext", SUBSET, labels=(("endpointslice.kubernetes.io/skip-mirror", "false"),))
    assert len(mirror_endpoints([endpoints], [svc("ext", selector=None)])) == 1


@pytest.mark.parametrize(
    ("ready", "not_ready", "expected_ready", "expected_not_ready"),
    [
        (1200, 0, 1000, 0),
        (900, 300, 900, 100),  # ready addresses are taken first
        (0, 1001, 0, 1000),
        (10, 10, 10, 10),
    ],
)
def test_mirror_cap_per_subset(
    ready: int, not_ready: int, expected_ready: int, expected_not_ready: int
) -> None:
    def ips(base: int, n: int) -> tuple[EndpointAddress, ...]:
        return tuple(addr(f"10.{base}.{i // 250}.{i % 250 + 1}") for i in range(n))

    subset = EndpointSubset(ips(1, ready), ips(2, not_ready), (EndpointPort(80),))
    (sl,) = mirror_endpoints([eps("ext", subset)], [svc("ext", selector=None)])
    got = Counter(e.conditions.ready for e in sl.endpoints)
    assert (got[True], got[False]) == (expected_ready, expected_not_ready)


def test_mirror_cap_is_per_subset_not_per_endpoints() -> None:
    a = EndpointSubset(
        tuple(addr(f"10.1.{i // 250}.{i % 250 + 1}") for i in range(800)), (), (EndpointPort(80),)
    )
    b = EndpointSubset(
        tuple(addr(f"10.2.{i // 250}.{i % 250 + 1}") for i in range(800)), (), (EndpointPort(81),)
    )
    slices = mirror_endpoints([eps("ext", a, b)], [svc("ext", selector=None)])
    assert sorted(len(s.endpoints) for s in slices) == [800, 800]
    assert mirror_endpoints([eps("ext", a)], [svc("ext", selector=None)], 500)[0].endpoints[
        -1
    ].addresses == (sorted(f"10.1.{i // 250}.{i % 250 + 1}" for i in range(800))[499],)


def test_mirror_splits_families_and_subsets() -> None:
    s1 = EndpointSubset((addr("10.0.0.1"), addr("fd00::1")), (), (EndpointPort(80),))
    s2 = EndpointSubset((addr("10.0.0.2"),), (), (EndpointPort(81),))
    slices = mirror_endpoints([eps("ext", s1, s2)], [svc("ext", selector=None)])
    assert sorted((s.address_type, s.ports[0].port, s.endpoints[0].addresses) for s in slices) == [
        ("IPv4", 80, ("10.0.0.1",)),
        ("IPv4", 81, ("10.0.0.2",)),
        ("IPv6", 80, ("fd00::1",)),
    ]
    assert len({s.meta.name for s in slices}) == 3


def test_repack_merges_ports_and_not_ready_wins() -> None:
    p80, p81 = EndpointPort(80, name="a"), EndpointPort(81, name="b")
    subsets = (
        EndpointSubset((addr("10.0.0.2"), addr("10.0.0.1")), (), (p80,)),
        EndpointSubset((addr("10.0.0.1"),), (addr("10.0.0.2"),), (p81,)),
        EndpointSubset((), (addr("10.0.0.2"),), (p80,)),  # 10.0.0.2 not ready on 80 too
        EndpointSubset((addr("10.0.0.9"),), (), ()),  # no ports: kept, portless
    )
    assert repack_subsets(subsets) == (
        EndpointSubset((addr("10.0.0.9"),), (), ()),
        EndpointSubset((addr("10.0.0.1"),), (addr("10.0.0.2"),), (p80, p81)),
    )


# --- effective slices -------------------------------------------------------------------------


def test_effective_endpoint_slices_rules() -> None:
    given_slice = EndpointSlice(
        ObjectMeta("given-1", labels=(("kubernetes.io/service-name", "given"),)),
        endpoints=(Endpoint(("10.9.0.1",)),),
    )
    manifests = Manifests(
        services=(
            svc("web"),  # selector, matching Pods: controller slices
            svc("given"),  # selector, but the input holds a slice: taken as-is
            svc("lonely", selector=(("app", "nobody"),)),  # no Pods: nothing
            svc("ext", selector=None),  # legacy Endpoints: mirrored
            svc("both", selector=None),  # Endpoints and a slice: the slice wins
        ),
        endpoint_slices=(
            given_slice,
            EndpointSlice(ObjectMeta("both-1", labels=(("kubernetes.io/service-name", "both"),))),
        ),
        endpoints=(eps("ext", SUBSET), eps("both", SUBSET)),
        pods=(pod("a"),),
    )
    got = effective_endpoint_slices(manifests)
    assert [s.service_name for s in got] == ["given", "both", "web", "ext"]
    assert got[:2] == manifests.endpoint_slices
    assert [e.target_ref for e in got[2].endpoints] == ["default/a"]
    assert (
        got[3].meta.label("endpointslice.kubernetes.io/managed-by")
        == "endpointslicemirroring-controller.k8s.io"
    )


def test_effective_uses_nodes_only_when_given() -> None:
    manifests = Manifests(services=(svc(),), pods=(pod("a", node="n9"),))
    assert len(endpoints_of(effective_endpoint_slices(manifests))) == 1
    with_nodes = Manifests(
        services=(svc(),), pods=(pod("a", node="n9"),), nodes=(Node(ObjectMeta("n1")),)
    )
    (placeholder,) = effective_endpoint_slices(with_nodes)
    assert placeholder.endpoints == ()


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ((), (), True),
        ((("app", "web"),), (("app", "web"), ("tier", "x")), True),
        ((("app", "web"), ("tier", "x")), (("tier", "x"), ("app", "web")), True),
        ((("app", "web"),), (("app", "api"),), False),
        ((("app", "web"),), (), False),
        # A repeated label key counts with its last value, as dict(labels) reads it.
        ((("app", "web"),), (("app", "api"), ("app", "web")), True),
        ((("app", "api"),), (("app", "api"), ("app", "web")), False),
    ],
)
def test_selector_matches(
    selector: tuple[tuple[str, str], ...], labels: tuple[tuple[str, str], ...], matches: bool
) -> None:
    assert selector_matches(selector, labels) is matches
    assert selector_matches(iter(selector), iter(labels)) is matches
    meta = ObjectMeta("x", labels=labels)
    assert all(meta.label(k) == dict(labels).get(k) for k in ("app", "tier", "none"))
