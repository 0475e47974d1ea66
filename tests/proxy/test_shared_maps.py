"""Nodes in step share kube-proxy's maps: the shared builds equal the per-node builds exactly."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from svcsim.k8s.objects import (
    Endpoint,
    EndpointSlice,
    Protocol,
    Service,
    ServicePort,
    TrafficPolicy,
)
from svcsim.proxy.caches import CompileCaches
from svcsim.proxy.endpoints import build_endpoints_map, build_service_port_map
from svcsim.proxy.shared_maps import (
    locality_matters,
    node_endpoints_map,
    shared_endpoints,
    shared_service_port_map,
)
from tests.proxy.test_iptables_support import ep, make_service, make_slice, port

NODES = ("n1", "n2", "n3")


@st.composite
def slices(draw: st.DrawFn) -> list[EndpointSlice]:
    """A few Services' slices: endpoints on some node or none, some not ready, duplicates."""
    out = []
    for s in range(draw(st.integers(0, 3))):
        for n in range(draw(st.integers(1, 2))):
            endpoints = tuple(
                ep(
                    f"10.0.{s}.{draw(st.integers(1, 4))}",
                    draw(st.sampled_from((None, *NODES))),
                    ready=draw(st.sampled_from((None, True, False))),
                    terminating=draw(st.sampled_from((None, True))),
                )
                for _ in range(draw(st.integers(0, 4)))
            )
            ports = (port(80, "http"), port(53, "dns", Protocol.UDP))[: draw(st.integers(1, 2))]
            out.append(make_slice("ns", f"svc{s}", endpoints, ports, slice_num=n))
    return out


@settings(max_examples=60, deadline=None)
@given(slices())
def test_node_map_is_the_per_node_build_key_for_key(found: list[EndpointSlice]) -> None:
    caches = CompileCaches()
    shared = shared_endpoints(found, caches)
    assert shared_endpoints(list(found), caches) is shared  # the same objects: one build
    for node in ("", *NODES, "elsewhere"):
        expected = build_endpoints_map(found, node, CompileCaches())
        got = node_endpoints_map(shared, node, caches)
        assert list(got.items()) == list(expected.items())  # order too
    hosting = {n for n in NODES if shared.hosted.get(n)}
    for node in ("", "elsewhere", *(set(NODES) - hosting)):
        assert node_endpoints_map(shared, node, caches) is shared.base


def test_service_port_map_is_shared_and_equal() -> None:
    services = [
        make_service("ns", "a", cluster_ip="10.96.0.1", ports=(ServicePort(80, name="http"),)),
        make_service("ns", "b", cluster_ip="None", ports=(ServicePort(80),)),  # headless
    ]
    caches = CompileCaches()
    shared = shared_service_port_map(services, caches)
    assert list(shared.items()) == list(build_service_port_map(services).items())
    assert len(shared) == 1
    assert shared_service_port_map(tuple(services), caches) is shared


def _service(policy: TrafficPolicy) -> Service:
    return make_service(
        "ns", "svc0", cluster_ip="10.96.0.1", ports=(ServicePort(80),),
        internal_traffic_policy=policy,
    )  # fmt: skip


def test_locality_matters_only_for_hosted_local_policy_ports_and_node_hints() -> None:
    caches = CompileCaches()
    on_nodes = (ep("10.0.0.1", "n1"), ep("10.0.0.2", "n2"))
    shared = shared_endpoints([make_slice("ns", "svc0", on_nodes, (port(80),))], caches)
    cluster_ports = shared_service_port_map([_service(TrafficPolicy.CLUSTER)], caches)
    local_ports = shared_service_port_map([_service(TrafficPolicy.LOCAL)], caches)
    assert not locality_matters(shared, "n1", cluster_ports, caches)
    assert locality_matters(shared, "n1", local_ports, caches)
    assert not locality_matters(shared, "n3", local_ports, caches)  # hosts none of them
    hinted = Endpoint(addresses=("10.0.0.1",), node_name="n1", hint_nodes=("n1",))
    with_hints = shared_endpoints([make_slice("ns", "svc0", (hinted,), (port(80),))], caches)
    assert with_hints.node_hints
    assert locality_matters(with_hints, "n3", cluster_ports, caches)
