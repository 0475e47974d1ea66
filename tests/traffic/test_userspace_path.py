"""kube-proxy's user-space half of the data path, one connection at a time, in a small world.

Two web Pods behind 10.96.0.10:80 on a userspace-mode node; the node's kube-proxy process is a
:class:`UserspaceProcess` that adopted the Service and saw its slice. Each case asks
:class:`ProxyPath` what one new connection meets.
"""

from __future__ import annotations

import numpy as np
import pytest

from svcsim.proxy.endpoints import build_service_port_map
from svcsim.proxy.userspace_lb import ENDPOINT_DIAL_TIMEOUTS_S, CopyCost
from svcsim.results.schema import Cause, Outcome
from svcsim.sim.network import BackendState
from svcsim.sim.userspace_proxy import UserspaceConfig, UserspaceProcess
from svcsim.traffic.attempts import Client
from svcsim.traffic.spec import Protocol as TrafficProtocol
from svcsim.traffic.targets import Dial
from svcsim.traffic.userspace_path import ProxyPath
from tests.traffic.world import World

COPY_S = CopyCost().per_request_s


def _world(protocol: str = "TCP") -> tuple[World, UserspaceProcess, Dial]:
    w = World(nodes=("node-1",), mode="userspace")
    for i in range(2):
        w.add_pod(f"web-{i}", "node-1", {"app": "web"}, protocol=protocol.lower())
    w.add_service("web", "10.96.0.10", {"app": "web"}, protocol=protocol)
    w.update_slices()
    kernel = w.kernels["node-1"]
    config = UserspaceConfig(np.random.default_rng(1), np.random.default_rng(2))
    process = UserspaceProcess(kernel, w.node_ips["node-1"], config)
    process.adopt(build_service_port_map(w.api.list("Service")), 0.0)
    for sl in w.api.list("EndpointSlice"):
        process.slice_seen(sl, removed=False)
    proto: TrafficProtocol = "udp" if protocol == "UDP" else "tcp"
    dial = Dial("10.96.0.10", 80, proto, "default/web:http", "default/web", "default/web:http")
    return w, process, dial


CLIENT = Client("default/client-0", "10.244.1.200", "node-1", "pod")


def _port(process: UserspaceProcess) -> int:
    [sock] = process.sockets.values()
    return sock.port


def test_round_robin_alternates_and_every_request_pays_the_copy() -> None:
    w, process, dial = _world()
    path, port = ProxyPath(w), _port(process)
    met = [path.accept("node-1", port, CLIENT, dial, t, None) for t in (0.0, 0.1, 0.2, 0.3)]
    assert [r.outcome for r in met] == [Outcome.OK] * 4
    assert met[0].endpoint != met[1].endpoint
    assert [r.endpoint for r in met[2:]] == [r.endpoint for r in met[:2]]
    assert {r.extra_s for r in met} == {COPY_S}


@pytest.mark.parametrize(
    ("state", "cost_s"),
    [(BackendState.CRASHED, 0.0), (BackendState.UNREACHABLE, ENDPOINT_DIAL_TIMEOUTS_S[0])],
    ids=["refused", "silent"],
)
def test_a_dead_endpoint_is_retried_on_the_next_one(state: BackendState, cost_s: float) -> None:
    w, process, dial = _world()
    path, port = ProxyPath(w), _port(process)
    [sock] = process.sockets.values()
    dead = sock.balancer.endpoints[0]
    backend = next(b for b in w.network.backends() if dead.startswith(b.ip + ":"))
    w.network.set_state(backend, state, 0.0)
    res = path.accept("node-1", port, CLIENT, dial, 1.0, None)
    assert res.outcome is Outcome.OK
    assert res.endpoint == sock.balancer.endpoints[1]
    assert res.extra_s == pytest.approx(cost_s + COPY_S)
    events = w.recorder.frames()["events"]
    [detail] = events.loc[events["kind"] == "proxy-dial-retry", "detail"]
    assert detail.startswith(f"client=10.244.1.200 {dead} ")


def test_all_dials_failing_closes_the_accepted_connection() -> None:
    w, process, dial = _world()
    path, port = ProxyPath(w), _port(process)
    for backend in list(w.network.backends()):
        w.network.set_state(backend, BackendState.UNREACHABLE, 0.0)
    res = path.accept("node-1", port, CLIENT, dial, 1.0, None)
    assert (res.outcome, res.cause) == (Outcome.RESET, Cause.NODE_DOWN)
    assert res.extra_s == pytest.approx(sum(ENDPOINT_DIAL_TIMEOUTS_S))


def test_no_endpoint_resets_and_no_listener_refuses() -> None:
    w, process, dial = _world()
    path, port = ProxyPath(w), _port(process)
    for sl in w.api.list("EndpointSlice"):
        process.slice_seen(sl, removed=True)
    res = path.accept("node-1", port, CLIENT, dial, 1.0, None)
    assert (res.outcome, res.cause, res.extra_s) == (Outcome.RESET, Cause.NO_ENDPOINTS, 0.0)
    process.exit(2.0)
    res = path.accept("node-1", port, CLIENT, dial, 3.0, None)
    assert (res.outcome, res.cause) == (Outcome.REFUSED, Cause.PROXY_NOT_LISTENING)


def test_a_udp_client_keeps_its_backend_while_it_talks_within_the_idle_timeout() -> None:
    w, process, dial = _world("UDP")
    path, port = ProxyPath(w), _port(process)
    first = path.accept("node-1", port, CLIENT, dial, 0.0, 20000)
    again = path.accept("node-1", port, CLIENT, dial, 0.2, 20000)  # < 250 ms later
    assert again.endpoint == first.endpoint
    assert again.answer_within_s == 0.25
    later = path.accept("node-1", port, CLIENT, dial, 0.2 + 0.3, 20000)  # idle > 250 ms
    assert later.endpoint != first.endpoint
    other_port = path.accept("node-1", port, CLIENT, dial, 0.6, 20001)  # a new client
    assert other_port.endpoint == first.endpoint


def test_a_full_conntrack_table_drops_kube_proxys_own_syns() -> None:
    w, process, dial = _world()
    path, port = ProxyPath(w), _port(process)
    res = path.accept("node-1", port, CLIENT, dial, 1.0, None, lambda node, t: False)
    assert (res.outcome, res.cause) == (Outcome.RESET, Cause.CONNTRACK_FULL)
    assert res.extra_s == pytest.approx(sum(ENDPOINT_DIAL_TIMEOUTS_S))
