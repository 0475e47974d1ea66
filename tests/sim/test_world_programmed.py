"""World._programmed skips unchanged service ports yet records exactly what a full pass records."""

from __future__ import annotations

import pytest

from svcsim.k8s.objects import Protocol
from svcsim.proxy.endpoints import EndpointInfo, EndpointsMap, ServicePortInfo
from svcsim.proxy.names import ServicePortName
from svcsim.proxy.topology import categorize_endpoints
from svcsim.scenario.world import World
from svcsim.sim.synccost import ProgrammedView

TCP = ServicePortName("ns", "svc", "dns", Protocol.TCP)
UDP = ServicePortName("ns", "svc", "dns", Protocol.UDP)  # same text as TCP
WEB = ServicePortName("ns", "web", "http", Protocol.TCP)
INFO = {
    TCP: ServicePortInfo(TCP, "10.96.0.10", 53),
    UDP: ServicePortInfo(UDP, "10.96.0.10", 53),
    WEB: ServicePortInfo(WEB, "10.96.0.20", 80, internal_policy_local=True),
}
A = (EndpointInfo("10.0.0.1", 53), EndpointInfo("10.0.0.2", 53))
B = (EndpointInfo("10.0.0.3", 53),)
W1 = (EndpointInfo("10.0.1.1", 80, is_local=True), EndpointInfo("10.0.1.2", 80))
W2 = (EndpointInfo("10.0.1.1", 80, is_local=True),)

Row = tuple[float, str, str, str]


def reference(views: list[tuple[str, ProgrammedView]]) -> list[Row]:
    """Every port of every view categorised afresh; a row whenever a key's set changes."""
    last: dict[tuple[str, str], frozenset[str]] = {}
    rows: list[Row] = []
    for node, view in views:
        for spn, info in view.service_ports.items():
            split = categorize_endpoints(view.endpoints(spn), info, node)
            chosen = split.local if info.internal_policy_local else split.cluster
            endpoints = frozenset(e.text for e in chosen)
            if last.get((node, spn.text)) != endpoints:
                last[node, spn.text] = endpoints
                rows.append((view.installed_at_s, node, spn.text, ",".join(sorted(endpoints))))
    return rows


def recorded(views: list[tuple[str, ProgrammedView]]) -> list[Row]:
    world = World(seed=1, end_s=100.0)
    for node, view in views:
        world._programmed(node, view)
    frame = world.recorder.frames()["endpoint_sets"]
    return list(zip(frame["t_s"], frame["node"], frame["service"], frame["endpoints"], strict=True))


def view(
    t_s: float,
    endpoints: EndpointsMap,
    ports: tuple[ServicePortName, ...],
    changed: frozenset[str] | None = None,
) -> ProgrammedView:
    return ProgrammedView(t_s, t_s + 0.5, {spn: INFO[spn] for spn in ports}, endpoints, changed)


SCENARIOS: dict[str, list[tuple[str, ProgrammedView]]] = {
    "same inputs again": [
        ("n1", view(1, {TCP: A, WEB: W1}, (TCP, WEB))),
        ("n1", view(2, {TCP: A, WEB: W1}, (TCP, WEB))),
        ("n1", view(3, {TCP: B, WEB: W1}, (TCP, WEB))),
    ],
    "two ports share one text": [
        ("n1", view(1, {TCP: A, UDP: B}, (TCP, UDP))),
        ("n1", view(2, {TCP: A, UDP: B}, (TCP, UDP))),
        ("n1", view(3, {TCP: A, UDP: B}, (UDP, TCP))),
    ],
    "port leaves and returns": [
        ("n1", view(1, {TCP: A}, (TCP,))),
        ("n1", view(2, {}, ())),
        ("n1", view(3, {TCP: A}, (TCP,))),
    ],
    "partial syncs name what changed": [
        ("n1", view(1, {TCP: A, UDP: B, WEB: W1}, (TCP, UDP, WEB))),
        ("n1", view(2, {TCP: B, UDP: B, WEB: W1}, (TCP, UDP, WEB), frozenset({"ns/svc"}))),
        ("n1", view(3, {TCP: B, UDP: B, WEB: W2}, (TCP, UDP, WEB), frozenset({"ns/web"}))),
        ("n1", view(4, {TCP: A, UDP: A, WEB: W2}, (WEB, UDP, TCP), frozenset({"ns/svc"}))),
        ("n1", view(5, {TCP: A, UDP: A, WEB: W2}, (TCP, UDP, WEB), frozenset())),
    ],
    "nodes are separate": [
        ("n1", view(1, {WEB: W1}, (WEB,))),
        ("n2", view(1, {WEB: W1}, (WEB,))),
        ("n1", view(2, {WEB: W2}, (WEB,))),
        ("n2", view(2, {WEB: W1}, (WEB,))),
    ],
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_recorded_endpoint_sets_equal_a_full_pass(name: str) -> None:
    views = SCENARIOS[name]
    expected = reference(views)
    assert recorded(views) == expected
    assert expected  # every scenario records something
    if name == "two ports share one text":
        # The shared key flips at each port of the first two syncs; the third visits UDP
        # first, which finds its own set still noted.
        assert len(expected) == 5
