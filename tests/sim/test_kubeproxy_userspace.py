"""kube-proxy in userspace mode in a small world: sockets, portals, balancers, faults.

Same fixed numbers as tests/sim/test_kubeproxy.py: informer sync 2 s, watch delay 0.125 s,
minSyncPeriod 1 s, syncPeriod 30 s, every sync costs 0.25 s.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import simpy

from svcsim.netfilter.conntrack_states import ConntrackTimeouts
from svcsim.netfilter.interpreter import trace
from svcsim.netfilter.packet import NodeNetwork, Packet
from svcsim.proxy.userspace import EPHEMERAL_PORTS
from svcsim.results.records import Recorder
from svcsim.sim.api import ApiServer
from svcsim.sim.changes import ENDPOINT_SLICE_KIND, SERVICE_KIND
from svcsim.sim.kernel import Kernel
from svcsim.sim.kubeproxy import KubeProxy
from svcsim.sim.synccost import KubeProxyConfig, SyncCostModel
from svcsim.sim.userspace_proxy import UserspaceConfig
from tests.sim.test_kubeproxy import CTX, A, B, eps, svc

CFG = KubeProxyConfig(
    min_sync_period_s=1.0,
    sync_period_s=30.0,
    informer_sync_s=2.0,
    watch_delay_s=0.125,
    cost=SyncCostModel(0.25, 0.0),
)
NETWORK = NodeNetwork(("10.0.0.1",), pod_cidr="10.244.1.0/24")


class World:
    """One userspace-mode node: API server, kernel, kube-proxy, recorder."""

    def __init__(self, port_range: tuple[int, int] | None = None) -> None:
        self.env = simpy.Environment()
        self.api = ApiServer(self.env)
        self.rec = Recorder()
        self.kernel = Kernel("n1", NETWORK, 1000, ConntrackTimeouts(), mode="userspace")
        config = UserspaceConfig(
            np.random.default_rng(1), np.random.default_rng(2), port_range=port_range
        )
        self.kp = KubeProxy(
            self.env, "n1", self.api, self.kernel, CTX, CFG, self.rec, userspace=config
        )
        self.api.apply(SERVICE_KIND, svc("a", "10.96.0.1"))
        self.api.apply(ENDPOINT_SLICE_KIND, eps("a", ["10.244.2.1", "10.244.2.2"]))
        self.kp.start()

    def at(self, t_s: float, action: Callable[[], object]) -> None:
        def fire(_: simpy.Event) -> None:
            action()

        self.env.timeout(t_s - self.env.now).callbacks.append(fire)

    def redirect(self, vip: str) -> tuple[str, int] | None:
        """Where the portal rules send a Pod's new connection to ``vip:80`` (None: nowhere)."""
        walked = trace(self.kernel.ruleset, Packet("10.244.1.5", vip, "tcp", 80), NETWORK)
        return walked.outcome.dnat

    def listening(self) -> dict[int, str]:
        """The node's listening proxy sockets: port -> Service port name."""
        socks = self.kernel.sockets.listening.values()
        return {s.port: s.service_port.text for s in socks}

    def sync_times(self) -> list[tuple[float, bool]]:
        df = self.rec.frames()["syncs"]
        return [(r.end_s, bool(r.ok)) for r in df.itertuples(index=False)]


def test_first_sync_opens_a_socket_and_the_portal_redirects_to_it() -> None:
    w = World()
    w.env.run(until=1.0)
    assert w.redirect("10.96.0.1") is None  # the start flushed the portal chains
    assert w.listening() == {}
    w.env.run(until=3.0)  # informers at 2 s, the first sync ends at 2.25 s
    [(port, name)] = w.listening().items()
    assert name == "default/a:p"
    assert EPHEMERAL_PORTS[0] <= port <= EPHEMERAL_PORTS[1]
    assert w.redirect("10.96.0.1") == ("10.0.0.1", port)
    assert w.sync_times() == [(2.25, True)]


def test_endpoint_changes_reach_the_balancer_at_once_without_a_sync() -> None:
    w = World()
    w.at(10.0, lambda: w.api.apply(ENDPOINT_SLICE_KIND, eps("a", ["10.244.2.9"])))
    w.env.run(until=10.1)
    assert w.kp.userspace is not None
    balancer = w.kp.userspace.balancers.states[A]
    assert sorted(balancer.endpoints) == ["10.244.2.1:8080", "10.244.2.2:8080"]
    w.env.run(until=20.0)
    assert balancer.endpoints == ["10.244.2.9:8080"]
    assert w.sync_times() == [(2.25, True)]  # no sync for an endpoint change
    sets = w.rec.frames()["endpoint_sets"]
    assert list(sets["t_s"]) == [2.0, 10.125]
    assert list(sets["endpoints"]) == ["10.244.2.1:8080,10.244.2.2:8080", "10.244.2.9:8080"]


def test_a_crash_closes_the_sockets_and_leaves_the_portals_a_restart_flushes_them() -> None:
    w = World(port_range=(30000, 30009))
    w.env.run(until=3.0)
    [old] = w.listening()
    w.at(5.0, w.kp.crash)
    w.env.run(until=6.0)
    assert w.listening() == {}
    assert w.redirect("10.96.0.1") == ("10.0.0.1", old)  # stale portal, nothing listening
    w.at(7.0, w.kp.restart)
    w.env.run(until=8.0)
    assert w.redirect("10.96.0.1") is None  # createProxier flushed the chains
    w.env.run(until=9.5)  # informers at 9 s, first sync ends at 9.25 s
    [new] = w.listening()
    assert 30000 <= new <= 30009
    assert w.redirect("10.96.0.1") == ("10.0.0.1", new)


def test_a_new_service_during_a_blocked_sync_gets_its_socket_then_its_portal() -> None:
    w = World()
    w.env.run(until=3.0)
    w.at(5.0, lambda: w.kp.block_sync(10.0))
    w.at(6.0, lambda: w.api.apply(SERVICE_KIND, svc("b", "10.96.0.2")))
    w.env.run(until=7.0)
    assert sorted(w.listening().values()) == ["default/a:p", "default/b:p"]
    assert w.redirect("10.96.0.2") is None  # its iptables calls failed
    w.env.run(until=40.0)  # the runner retries after syncPeriod (30 s)
    port_b = next(p for p, n in w.listening().items() if n == "default/b:p")
    assert w.redirect("10.96.0.2") == ("10.0.0.1", port_b)
    assert [ok for _, ok in w.sync_times()] == [True, False, True]
    assert w.kp.userspace is not None
    assert B in w.kp.userspace.balancers.states


def test_removing_a_service_closes_its_socket_and_deletes_its_portal_rules() -> None:
    w = World()
    w.env.run(until=3.0)
    rules_before = w.kernel.ruleset.rule_count()
    w.at(5.0, lambda: w.api.delete(SERVICE_KIND, "default/a"))
    w.env.run(until=7.0)
    assert w.listening() == {}
    assert w.redirect("10.96.0.1") is None
    assert w.kernel.ruleset.rule_count() == rules_before - 2  # REDIRECT + DNAT of the ClusterIP
    assert w.kp.userspace is not None
    assert A not in w.kp.userspace.balancers.states


def test_after_an_api_cut_the_relist_updates_the_balancer_without_a_sync() -> None:
    w = World()
    w.at(5.0, w.kp.api_cut)
    w.at(6.0, lambda: w.api.apply(ENDPOINT_SLICE_KIND, eps("a", ["10.244.2.9"])))
    w.at(10.0, w.kp.api_back)
    w.env.run(until=9.0)
    assert w.kp.userspace is not None
    balancer = w.kp.userspace.balancers.states[A]
    assert sorted(balancer.endpoints) == ["10.244.2.1:8080", "10.244.2.2:8080"]
    w.env.run(until=20.0)
    assert balancer.endpoints == ["10.244.2.9:8080"]
    assert w.sync_times() == [(2.25, True)]
