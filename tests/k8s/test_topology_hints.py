"""The EndpointSlice controller's hints (svcsim.k8s.topology_hints), after upstream's logic."""

from __future__ import annotations

import pytest

from svcsim.k8s.objects import Endpoint, EndpointConditions, Node, ObjectMeta, Service
from svcsim.k8s.topology_hints import (
    TOPOLOGY_MODE_ANNOTATION,
    Allocation,
    allocations,
    auto_hints,
    close_hints,
    cpu_ratios,
    hint_endpoints,
    hinted_zones,
    service_overloaded,
)

READY = EndpointConditions(True, True, False)
NOT_READY = EndpointConditions(False, False, True)


def ep(ip: str, zone: str | None, ready: bool = True, node: str = "n") -> Endpoint:
    return Endpoint((ip,), READY if ready else NOT_READY, node_name=node, zone=zone)


def node(name: str, zone: str | None, cpu: int, *labels: tuple[str, str]) -> Node:
    zone_label = (("topology.kubernetes.io/zone", zone),) if zone else ()
    return Node(ObjectMeta(name, "", (*zone_label, *labels)), cpu_millis=cpu)


@pytest.mark.parametrize(
    ("nodes", "ratios"),
    [
        ([node("a", "z1", 2000), node("b", "z2", 2000)], {"z1": 0.5, "z2": 0.5}),
        ([node("a", "z1", 1000), node("b", "z2", 3000)], {"z1": 0.25, "z2": 0.75}),
        ([node("a", "z1", 1000), node("b", "z1", 1000)], None),  # one zone
        ([node("a", "z1", 1000), node("b", None, 1000)], None),  # a node without zone
        ([node("a", "z1", 1000), node("b", "z2", 0)], None),  # a node without CPU
        (
            [
                node("a", "z1", 1000),
                node("b", "z2", 1000),
                node("cp", None, 0, ("node-role.kubernetes.io/control-plane", "")),
            ],
            {"z1": 0.5, "z2": 0.5},  # control-plane nodes do not count
        ),
    ],
)
def test_cpu_ratios(nodes: list[Node], ratios: dict[str, float] | None) -> None:
    assert cpu_ratios(nodes) == ratios


def test_allocations_follow_upstream_arithmetic() -> None:
    # 3 zones, equal CPU, 6 endpoints: desired 2, minimum ceil(2 / 1.2) = 2, maximum 2.
    got = allocations({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, 6)
    assert isinstance(got, dict)
    assert {z: (a.minimum, a.maximum) for z, a in got.items()} == {z: (2, 2) for z in "abc"}
    # 10 endpoints over 0.2 / 0.8: desired 2 and 8, minimum 2 and 7, spare 1.
    got = allocations({"a": 0.2, "b": 0.8}, 10)
    assert got == {"a": Allocation(2, 3, 2.0), "b": Allocation(7, 8, 8.0)}


@pytest.mark.parametrize(
    ("ratios", "ready", "why"),
    [
        ({"a": 0.5, "b": 0.5}, 1, "insufficient number of endpoints (1 endpoints, 2 zones)"),
        (
            {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3},
            5,  # minimum ceil(1.67 / 1.2) = 2 each: 6 > 5
            "unable to allocate minimum required endpoints to each zone without exceeding "
            "overload threshold (5 endpoints, 3 zones)",
        ),
    ],
)
def test_allocations_refused(ratios: dict[str, float], ready: int, why: str) -> None:
    assert allocations(ratios, ready) == why


def test_same_zone_hints_when_balanced() -> None:
    eps = [ep("10.0.0.1", "a"), ep("10.0.0.2", "b"), ep("10.0.0.3", "a"), ep("10.0.0.4", "b")]
    hinted, why = auto_hints(eps, {"a": 0.5, "b": 0.5})
    assert why is None
    assert [e.hint_zones for e in hinted] == [("a",), ("b",), ("a",), ("b",)]


def test_a_crowded_zone_gives_endpoints_to_an_empty_one() -> None:
    # 3 in a, 3 in b, none in c; desired 2 each: a and b give one each to c, the first of
    # their endpoints in slice order.
    eps = [ep(f"10.0.0.{i}", z) for i, z in enumerate("aaabbb", start=1)]
    hinted, why = auto_hints(eps, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    assert why is None
    assert [e.hint_zones for e in hinted] == [("c",), ("a",), ("a",), ("c",), ("b",), ("b",)]


def test_not_ready_endpoints_carry_no_hints_and_do_not_count() -> None:
    eps = [ep("10.0.0.1", "a"), ep("10.0.0.2", "b"), ep("10.0.0.3", "b", ready=False)]
    hinted, why = auto_hints(eps, {"a": 0.5, "b": 0.5})
    assert why is None
    assert [e.hint_zones for e in hinted] == [("a",), ("b",), ()]


def test_an_endpoint_without_zone_removes_every_hint() -> None:
    hinted, why = auto_hints([ep("10.0.0.1", "a"), ep("10.0.0.2", None)], {"a": 0.5, "b": 0.5})
    assert why == "one or more endpoints do not have a zone specified"
    assert all(e.hint_zones == () for e in hinted)


@pytest.mark.parametrize(
    ("distribution", "zones", "nodes"),
    [
        ("PreferClose", [("a",), ("b",), ()], [(), (), ()]),
        ("PreferSameZone", [("a",), ("b",), ()], [(), (), ()]),
        ("PreferSameNode", [("a",), ("b",), ()], [("n1",), ("n2",), ()]),
    ],
)
def test_prefer_close_hints_each_ready_endpoint_to_its_own_zone(
    distribution: str, zones: list[tuple[str, ...]], nodes: list[tuple[str, ...]]
) -> None:
    eps = [ep("10.0.0.1", "a", node="n1"), ep("10.0.0.2", "b", node="n2")]
    eps.append(ep("10.0.0.3", "a", ready=False, node="n1"))
    hinted = close_hints(eps, distribution)
    assert [e.hint_zones for e in hinted] == zones
    assert [e.hint_nodes for e in hinted] == nodes


def test_the_annotation_wins_over_traffic_distribution() -> None:
    svc = Service(
        ObjectMeta("web", annotations=((TOPOLOGY_MODE_ANNOTATION, "Auto"),)),
        traffic_distribution="PreferClose",
    )
    eps = [ep("10.0.0.1", "a")]  # one endpoint, two zones: Auto removes hints
    nodes = [node("a", "a", 1000), node("b", "b", 1000)]
    hinted, why = hint_endpoints(svc, eps, nodes)
    assert why is not None and hinted[0].hint_zones == ()
    plain = Service(ObjectMeta("web"), traffic_distribution="PreferClose")
    hinted, why = hint_endpoints(plain, eps, nodes)
    assert why is None and hinted[0].hint_zones == ("a",)


@pytest.mark.parametrize(
    ("zones", "ratios", "overloaded"),
    [
        ({}, {"a": 0.5, "b": 0.5}, False),  # no hints: nothing to overload
        ({"a": 2, "b": 2}, None, True),  # no usable ratios: every hinted Service resyncs
        ({"a": 2, "b": 2}, {"a": 0.5, "b": 0.5}, False),
        # a zone of the ratios with no hinted endpoint (e.g. its node came back Ready)
        ({"a": 2, "b": 2}, {"a": 0.4, "b": 0.4, "c": 0.2}, True),
        # 6 hinted: zone a needs ceil(6 x 0.75 / 1.2) = 4, has 3
        ({"a": 3, "b": 3}, {"a": 0.75, "b": 0.25}, True),
        ({"a": 4, "b": 2}, {"a": 0.75, "b": 0.25}, False),
        # a zone that left the ratios (its nodes NotReady) still counts in the total:
        # a and b now need ceil(6 x 0.5 / 1.2) = 3 each
        ({"a": 2, "b": 2, "c": 2}, {"a": 0.5, "b": 0.5}, True),
    ],
)
def test_service_overloaded_as_upstream(
    zones: dict[str, int], ratios: dict[str, float] | None, overloaded: bool
) -> None:
    assert service_overloaded(zones, ratios) is overloaded


def test_hinted_zones_count_ready_endpoints_per_hint() -> None:
    endpoints = [ep(f"10.0.0.{i}", "a") for i in (1, 2, 3)]
    endpoints += [ep("10.0.0.4", "b"), ep("10.0.0.5", "b", ready=False)]
    hinted, why = auto_hints(endpoints, {"a": 0.5, "b": 0.5})
    assert why is None
    # a gives one of its three to b; the not-ready endpoint counts nowhere
    assert hinted_zones(hinted) == {"a": 2, "b": 2}


def test_not_ready_nodes_leave_the_ratios() -> None:
    ready = [node("n1", "a", 4000), node("n2", "b", 4000)]
    assert cpu_ratios(ready) == {"a": 0.5, "b": 0.5}
