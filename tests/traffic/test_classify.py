"""Outcome and cause of a flow, the address a client dials, and the API view."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from svcsim.k8s.objects import LoadBalancerIngress, ObjectMeta, Service, ServicePort
from svcsim.netfilter.packet import Outcome as NfOutcome
from svcsim.netfilter.packet import VerdictKind
from svcsim.sim.network import BackendState, PodNetwork
from svcsim.traffic.classify import Wait, at_destination, classify
from svcsim.traffic.spec import AddressTarget, ExternalSource, HostSource, PodSource, ServiceTarget
from svcsim.traffic.targets import Dial, dial_for
from tests.traffic.world import World

VIP = "10.96.0.10"
DIAL = Dial(VIP, 80, "tcp", "default/web:http", "default/web", "default/web:http")


@dataclass
class _Ctx:
    network: PodNetwork = field(default_factory=lambda: PodNetwork({"n1": "10.244.1.0/24"}))
    serving: frozenset[str] = frozenset()
    owners: dict[str, str] = field(default_factory=dict)
    proxy: str = "up"
    outside: dict[str, str] = field(default_factory=dict)
    down: frozenset[str] = frozenset()

    def serving_endpoints(self, service_port_name: str) -> frozenset[str]:
        assert service_port_name == "default/web:http"
        return self.serving

    def endpoint_owner(self, service: str, ip: str) -> str | None:
        assert service == "default/web"
        return self.owners.get(ip)

    def proxy_state(self, node: str) -> str:
        return self.proxy

    def outside_host(self, ip: str) -> str | None:
        return None if ip in self.down else self.outside.get(ip)

    def outside_endpoint_down(self, ip: str) -> bool:
        return ip in self.down


def _accept(dnat: tuple[str, int] | None, *, local: bool = False) -> NfOutcome:
    destination = dnat if dnat is not None else (VIP, 80)
    return NfOutcome(VerdictKind.ACCEPT, destination, dnat, local=local)


def _ctx(
    state: BackendState | None,
    *,
    in_api: bool = True,
    owner: str = "default/web-0",
    port: int = 8080,
    **kw: object,
) -> tuple[_Ctx, str]:
    ctx = _Ctx(**kw)  # type: ignore[arg-type]
    ip = "10.244.1.2"
    if state is not None:
        backend = ctx.network.allocate("n1", owner, frozenset({("tcp", port)}), "web", 0.0)
        ctx.network.set_state(backend, state, 0.0)
        ip = backend.ip
    ctx.owners[ip] = "default/web-0"
    if in_api:
        ctx.serving = frozenset({f"{ip}:8080"})
    return ctx, ip


@pytest.mark.parametrize(
    ("state", "kw", "expected"),
    [
        (BackendState.SERVING, {}, ("ok", "", "default/web-0", "web")),
        (BackendState.SERVING, {"in_api": False}, ("ok", "", "default/web-0", "web")),
        (BackendState.STARTING, {}, ("refused", "pod-not-ready", "default/web-0", None)),
        (BackendState.DRAINING, {}, ("refused", "pod-terminating", "default/web-0", None)),
        (BackendState.EXITED, {}, ("refused", "pod-terminating", "default/web-0", None)),
        (BackendState.CRASHED, {}, ("refused", "pod-crashed", "default/web-0", None)),
        (BackendState.SERVING, {"port": 9090}, ("refused", "port-closed", "default/web-0", None)),
        (
            BackendState.DRAINING,
            {"in_api": False},
            ("refused", "stale-rule", "default/web-0", None),
        ),
        (
            BackendState.CRASHED,
            {"in_api": False, "proxy": "down"},
            ("refused", "proxy-down", "default/web-0", None),
        ),
        (None, {"in_api": False}, ("timeout", "stale-rule", "", None)),
        (None, {"in_api": False, "proxy": "blocked"}, ("timeout", "sync-blocked", "", None)),
        (None, {}, ("timeout", "pod-terminating", "", None)),
        (None, {"outside": {"10.244.1.2": "ext"}}, ("ok", "", "", "ext")),
        (
            None,
            {"outside": {"10.244.1.2": "ext"}, "down": frozenset({"10.244.1.2"})},
            ("timeout", "endpoint-down", "", None),
        ),
        (BackendState.UNREACHABLE, {}, ("timeout", "node-down", "default/web-0", None)),
        (
            BackendState.UNREACHABLE,
            {"in_api": False, "proxy": "down"},
            ("timeout", "node-down", "default/web-0", None),
        ),
        (None, {"in_api": False, "proxy": "cut"}, ("timeout", "node-partitioned", "", None)),
        (
            BackendState.SERVING,
            {"owner": "default/other"},
            ("misrouted", "ip-reused", "default/other", "web"),
        ),
        (
            BackendState.SERVING,
            {"owner": "default/other", "port": 9090},
            ("refused", "ip-reused", "default/other", None),
        ),
    ],
)
def test_a_dnat_destination(
    state: BackendState | None, kw: dict[str, object], expected: tuple[str, str, str, str | None]
) -> None:
    ctx, ip = _ctx(state, **kw)
    res = classify(_accept((ip, 8080)), DIAL, "n1", ctx)  # type: ignore[arg-type]
    assert (res.outcome.value, res.cause.value, res.pod, res.app) == expected
    assert res.endpoint == f"{ip}:8080" and res.accepted
    assert res.wait is (Wait.CONNECT if expected[0] == "timeout" else Wait.NONE)


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (
            NfOutcome(VerdictKind.REJECT, (VIP, 80), reject_with="icmp-port-unreachable"),
            ("refused", "no-endpoints", Wait.NONE, False),
        ),
        (NfOutcome(VerdictKind.DROP, (VIP, 80)), ("timeout", "no-endpoints", Wait.CONNECT, False)),
        (_accept(None), ("timeout", "no-service-rule", Wait.CONNECT, True)),
        (_accept(None, local=True), ("refused", "no-service-rule", Wait.NONE, True)),
    ],
)
def test_verdicts_without_an_endpoint(
    outcome: NfOutcome, expected: tuple[str, str, Wait, bool]
) -> None:
    res = classify(outcome, DIAL, "n1", _Ctx())  # type: ignore[arg-type]
    assert (res.outcome.value, res.cause.value, res.wait, res.accepted) == expected
    assert res.endpoint == "" and res.app is None


@pytest.mark.parametrize(
    ("state", "dnat"), [(None, True), (None, False), (BackendState.EXITED, True)]
)
def test_a_conntrack_entry_to_a_dead_or_stale_endpoint(
    state: BackendState | None, dnat: bool
) -> None:
    ctx, ip = _ctx(state, in_api=False)
    res = at_destination(
        ip,
        8080,
        dnat,
        DIAL,
        "n1",
        ctx,  # type: ignore[arg-type]
        via_conntrack=True,
    )
    assert res.cause.value == "stale-conntrack"


# --- dials -------------------------------------------------------------------------------------


def _svc(**spec: object) -> Service:
    values: dict[str, object] = {
        "cluster_ip": VIP,
        "ports": (
            ServicePort(80, name="http", node_port=30080),
            ServicePort(53, name="dns", protocol="UDP"),
        ),  # type: ignore[arg-type]
    }
    values.update(spec)
    return Service(ObjectMeta("web"), **values)  # type: ignore[arg-type]


LB = (LoadBalancerIngress(ip="198.51.100.7"),)
LB_PROXY = (LoadBalancerIngress(ip="198.51.100.7", ip_mode="Proxy"),)


@pytest.mark.parametrize(
    ("source", "port", "protocol", "spec", "address"),
    [
        (PodSource({"a": "b"}), None, "tcp", {}, (VIP, 80)),
        (PodSource({"a": "b"}), "dns", "udp", {}, (VIP, 53)),
        (HostSource("n1"), 80, "tcp", {}, (VIP, 80)),
        (PodSource({"a": "b"}), "dns", "tcp", {}, None),  # protocol mismatch
        (PodSource({"a": "b"}), "nope", "tcp", {}, None),
        (PodSource({"a": "b"}), None, "tcp", {"cluster_ip": "None"}, None),
        (ExternalSource("n1"), None, "tcp", {"load_balancer_ingress": LB}, ("198.51.100.7", 80)),
        (
            ExternalSource("n1"),
            None,
            "tcp",
            {"load_balancer_ingress": LB_PROXY},
            ("192.168.0.10", 30080),
        ),
        (
            ExternalSource("n1"),
            None,
            "tcp",
            {"external_ips": ("192.0.2.1",), "ports": (ServicePort(80, name="http"),)},
            ("192.0.2.1", 80),
        ),
        (ExternalSource("n1", via="clusterip"), None, "tcp", {}, (VIP, 80)),
        (ExternalSource("n1", via="loadbalancer"), None, "tcp", {}, None),
    ],
)
def test_dial_for_a_service(
    source: object,
    port: object,
    protocol: str,
    spec: dict[str, object],
    address: tuple[str, int] | None,
) -> None:
    dial = dial_for(
        ServiceTarget("default/web", port),
        source,
        protocol,  # type: ignore[arg-type]
        _svc(**spec),
        "192.168.0.10",
    )
    if address is None:
        assert dial is None
    else:
        assert dial is not None and (dial.ip, dial.port) == address
        assert dial.service == "default/web" and dial.label.startswith("default/web:")


def test_dial_for_an_address() -> None:
    plain = dial_for(AddressTarget("10.244.1.5", 8080), PodSource({"a": "b"}), "tcp", None, "")
    assert plain == Dial("10.244.1.5", 8080, "tcp", "10.244.1.5:8080/tcp", None, None)
    named = dial_for(
        AddressTarget(VIP, 53, "udp", "kube-system/dns:dns"), PodSource({"a": "b"}), "udp", None, ""
    )
    assert named is not None and named.service == "kube-system/dns"
    assert named.label == named.service_port == "kube-system/dns:dns"
    assert dial_for(ServiceTarget("default/web"), PodSource({"a": "b"}), "tcp", None, "") is None


# --- the API view ------------------------------------------------------------------------------


def test_api_view_tracks_serving_endpoints_owners_and_clients() -> None:
    w = World()
    a = w.add_pod("web-0", "node-1", {"app": "web"})
    b = w.add_pod("web-1", "node-2", {"app": "web"})
    w.add_service("web", VIP, {"app": "web"})
    w.update_slices()
    view = w.view
    assert view.serving_endpoints("default/web:http") == {f"{a.ip}:8080", f"{b.ip}:8080"}
    assert view.endpoint_owner("default/web", a.ip) == "default/web-0"
    before = view.version
    w.set_pod("web-0", ready=False, terminating=True)
    w.update_slices()
    assert view.version > before
    assert view.serving_endpoints("default/web:http") == {f"{b.ip}:8080"}
    w.set_pod("web-1", terminating=True)  # still passing readiness: serving, not ready
    w.update_slices()
    # No ready endpoint left: kube-proxy falls back to the serving-and-terminating ones.
    assert view.serving_endpoints("default/web:http") == {f"{b.ip}:8080"}
    w.set_pod("web-1", ready=False)
    w.update_slices()
    assert view.serving_endpoints("default/web:http") == frozenset()
    w.delete_pod("web-0")
    w.update_slices()
    assert view.endpoint_owner("default/web", a.ip) == "default/web-0"  # last known
    assert [c[0] for c in view.client_pods({"app": "web"})] == ["default/web-1"]
    w.network.set_state(b, BackendState.DRAINING, w.env.now)
    assert [c[0] for c in view.client_pods({"app": "web"})] == ["default/web-1"]
    w.network.set_state(b, BackendState.EXITED, w.env.now)
    assert view.client_pods({"app": "web"}) == ()
