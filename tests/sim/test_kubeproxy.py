"""kube-proxy in a small world (ApiServer + Kernel + KubeProxy, slices applied by hand).

Fixed numbers, exact times: informer sync 2 s, watch delay 0.125 s, minSyncPeriod 1 s,
syncPeriod 30 s, every sync costs 0.25 s (base 0.25, per rule 0) unless a test says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import pytest
import simpy

from svcsim.k8s.objects import (
    LAST_CHANGE_TRIGGER_TIME_ANNOTATION,
    SERVICE_NAME_LABEL,
    Endpoint,
    EndpointConditions,
    EndpointPort,
    EndpointSlice,
    ObjectMeta,
    Protocol,
    Service,
    ServicePort,
)
from svcsim.netfilter.conntrack_states import ConntrackTimeouts, FlowTuple
from svcsim.netfilter.model import DnatTarget, JumpTarget
from svcsim.netfilter.packet import NodeNetwork
from svcsim.netfilter.text import render_save
from svcsim.proxy.context import NodeContext
from svcsim.proxy.iptables import compile_iptables
from svcsim.proxy.names import ServicePortName
from svcsim.results.records import Recorder
from svcsim.sim.api import ApiServer
from svcsim.sim.changes import ENDPOINT_SLICE_KIND, SERVICE_KIND
from svcsim.sim.kernel import Kernel
from svcsim.sim.kubeproxy import KubeProxy, ProxyStopped
from svcsim.sim.synccost import KubeProxyConfig, StaleUdpFilter, SyncCostModel

CFG = KubeProxyConfig(
    min_sync_period_s=1.0,
    sync_period_s=30.0,
    informer_sync_s=2.0,
    watch_delay_s=0.125,
    cost=SyncCostModel(0.25, 0.0),
)
CTX = NodeContext.with_cluster_cidr("n1", "10.244.0.0/16", node_ips=("10.0.0.1",))
A = ServicePortName("default", "a", "p", Protocol.TCP)
B = ServicePortName("default", "b", "p", Protocol.TCP)
DNS = ServicePortName("default", "dns", "p", Protocol.UDP)


def svc(name: str, ip: str, proto: Protocol = Protocol.TCP) -> Service:
    return Service(
        meta=ObjectMeta(name),
        cluster_ip=ip,
        selector=(("app", name),),
        ports=(ServicePort(80 if proto == Protocol.TCP else 53, protocol=proto, name="p"),),
    )


def eps(
    name: str, ips: list[str], *, trigger: float | None = None, proto: Protocol = Protocol.TCP
) -> EndpointSlice:
    notes = ((LAST_CHANGE_TRIGGER_TIME_ANNOTATION, repr(trigger)),) if trigger is not None else ()
    return EndpointSlice(
        meta=ObjectMeta(f"{name}-x", labels=((SERVICE_NAME_LABEL, name),), annotations=notes),
        endpoints=tuple(
            Endpoint((ip,), EndpointConditions(True, True, False), node_name="n2") for ip in ips
        ),
        ports=(EndpointPort(8080, protocol=proto, name="p"),),
    )


class World:
    """One node: API server, kernel, kube-proxy, recorder."""

    def __init__(self, config: KubeProxyConfig = CFG) -> None:
        self.env = simpy.Environment()
        self.api = ApiServer(self.env)
        self.rec = Recorder()
        timeouts = ConntrackTimeouts(udp_s=300.0, udp_stream_s=300.0)
        network = NodeNetwork(("10.0.0.1",), pod_cidr="10.244.1.0/24")
        self.kernel = Kernel("n1", network, 1000, timeouts)
        self.kp = KubeProxy(self.env, "n1", self.api, self.kernel, CTX, config, self.rec)

    def at(self, t_s: float, action: Callable[[], object]) -> None:
        def fire(_: simpy.Event) -> None:
            action()

        self.env.timeout(t_s - self.env.now).callbacks.append(fire)

    def put(self, sl: EndpointSlice) -> None:
        self.api.apply(ENDPOINT_SLICE_KIND, sl)

    def run(self, until: float) -> None:
        self.env.run(until=until)

    def syncs(self) -> list[tuple[float, float, bool, bool]]:
        df = self.rec.frames()["syncs"]
        return [(r.start_s, r.end_s, bool(r.full), bool(r.ok)) for r in df.itertuples(index=False)]

    def events(self) -> list[tuple[float, str, str]]:
        df = self.rec.frames()["events"]
        return [(r.t_s, str(r.kind), r.detail) for r in df.itertuples(index=False)]

    def kernel_endpoints(self, spn: ServicePortName) -> list[str]:
        """DNAT destinations reachable from the port's KUBE-SVC chain, in rule order."""
        ruleset = self.kernel.ruleset
        chain = ruleset.chain("nat", spn.cluster_chain)
        if chain is None:
            return []
        out = []
        for rule in chain.rules:
            if isinstance(rule.target, DnatTarget):
                out.append(rule.target.to_destination)
            elif isinstance(rule.target, JumpTarget) and rule.target.chain.startswith("KUBE-SEP"):
                sep = ruleset.chain("nat", rule.target.chain)
                assert sep is not None
                out += [
                    r.target.to_destination for r in sep.rules if isinstance(r.target, DnatTarget)
                ]
        return out


def world_ab(config: KubeProxyConfig = CFG) -> World:
    w = World(config)
    w.api.apply(SERVICE_KIND, svc("a", "10.96.0.1"))
    w.api.apply(SERVICE_KIND, svc("b", "10.96.0.2"))
    w.put(eps("a", ["10.244.2.1", "10.244.2.2"]))
    w.put(eps("b", ["10.244.3.1"]))
    w.kp.start()
    return w


def test_rules_appear_at_sync_end_not_before() -> None:
    w = world_ab()
    w.run(2.2)
    assert w.kernel.generation == 0 and w.kernel_endpoints(A) == []
    assert w.kp.initialized and w.kp.programmed is None
    w.run(2.3)
    assert w.kernel_endpoints(A) == ["10.244.2.1:8080", "10.244.2.2:8080"]
    assert w.kernel.installed_at_s == 2.25
    # A Pod change at 4.5 reaches the slice at 5.0; kube-proxy hears of it at 5.125.
    w.at(5.0, lambda: w.put(eps("a", ["10.244.2.1", "10.244.2.3"], trigger=4.5)))
    w.run(5.374)
    assert w.kernel_endpoints(A) == ["10.244.2.1:8080", "10.244.2.2:8080"]
    assert [ep.ip for ep in w.kp.informer_endpoints(A)] == ["10.244.2.1", "10.244.2.3"]
    assert [ep.ip for ep in w.kp.programmed_endpoints(A)] == ["10.244.2.1", "10.244.2.2"]
    w.run(5.376)
    assert w.kernel_endpoints(A) == ["10.244.2.1:8080", "10.244.2.3:8080"]
    assert [ep.ip for ep in w.kp.programmed_endpoints(A)] == ["10.244.2.1", "10.244.2.3"]
    assert w.syncs() == [(2.0, 2.25, True, True), (5.125, 5.375, False, True)]
    programming = w.kp.metrics.network_programming_duration_seconds
    assert (programming.count, programming.sum, programming.last) == (1, 0.875, 0.875)
    assert w.rec.frames()["syncs"]["programming_latency_s"].iloc[1] == 0.875
    assert math.isnan(w.rec.frames()["syncs"]["programming_latency_s"].iloc[0])
    durations = w.kp.metrics.sync_proxy_rules_duration_seconds
    assert (durations.count, durations.sum) == (2, 0.5)
    assert w.kp.metrics.sync_proxy_rules_last_timestamp_seconds == 5.375


def test_burst_coalesces_into_one_sync() -> None:
    w = world_ab()
    w.at(10.0, lambda: w.put(eps("a", ["10.244.2.1"])))
    for i, t in enumerate((10.2, 10.3, 10.4, 10.5, 10.6)):
        w.at(t, partial(w.put, eps("a", [f"10.244.2.{j}" for j in range(1, i + 3)])))
    w.run(20.0)
    # 10.125: first change; the other five (heard 10.325 .. 10.725) wait for the cool-down,
    # 1 s after that sync ended at 10.375, and go in one sync.
    assert w.syncs() == [
        (2.0, 2.25, True, True),
        (10.125, 10.375, False, True),
        (11.375, 11.625, False, True),
    ]
    assert len(w.kernel_endpoints(A)) == 6


def test_rules_and_full_compile_agree_after_partial_syncs() -> None:
    w = world_ab()
    w.at(5.0, lambda: w.put(eps("a", ["10.244.2.9"])))
    w.at(7.0, lambda: w.api.apply(SERVICE_KIND, svc("c", "10.96.0.3")))
    w.at(7.0, lambda: w.put(eps("c", ["10.244.4.1", "10.244.4.2"])))
    w.at(9.0, lambda: w.api.delete(SERVICE_KIND, "default/b"))
    w.at(9.0, lambda: w.api.delete(ENDPOINT_SLICE_KIND, "default/b-x"))
    w.run(20.0)
    assert [full for _, _, full, _ in w.syncs()] == [True, False, False, False]
    expected = compile_iptables(w.api.list(SERVICE_KIND), w.api.list(ENDPOINT_SLICE_KIND), CTX)
    assert render_save(w.kernel.ruleset) == render_save(expected)


def test_crash_keeps_the_kernel_while_the_api_changes() -> None:
    w = world_ab()
    w.at(3.0, w.kp.crash)
    w.at(4.0, lambda: w.put(eps("a", ["10.244.2.7"])))
    w.run(100.0)
    assert not w.kp.up and w.kp.tracker is None
    assert w.kernel.generation == 1 and w.kernel.installed_at_s == 2.25
    assert w.kernel_endpoints(A) == ["10.244.2.1:8080", "10.244.2.2:8080"]
    assert w.syncs() == [(2.0, 2.25, True, True)]
    assert (3.0, "proxy-crashed", "crash") in w.events()
    assert w.kp.crash() is False  # already down


def test_crash_during_a_sync_installs_nothing() -> None:
    w = world_ab()
    w.at(10.0, lambda: w.put(eps("a", ["10.244.2.7"])))
    w.at(10.2, w.kp.crash)  # the sync runs 10.125 .. 10.375
    w.run(20.0)
    assert w.kernel.generation == 1
    assert w.syncs() == [(2.0, 2.25, True, True)]


def test_restart_does_a_full_sync_after_the_informers_sync() -> None:
    w = world_ab()
    w.at(3.0, w.kp.crash)
    w.at(4.0, lambda: w.put(eps("a", ["10.244.2.7"], trigger=3.5)))
    w.at(20.0, w.kp.restart)
    w.run(22.2)
    assert w.kp.up and w.kernel.generation == 1
    w.run(30.0)
    # Within informerSync + one sync's cost of the restart.
    assert w.syncs() == [(2.0, 2.25, True, True), (22.0, 22.25, True, True)]
    assert w.kernel_endpoints(A) == ["10.244.2.7:8080"]
    assert (20.0, "proxy-restarted", "restart") in w.events()
    # The trigger time predates the new tracker: no latency is reported for it.
    assert w.kp.metrics.network_programming_duration_seconds.count == 0


def test_restart_while_running_replaces_the_life() -> None:
    w = world_ab()
    w.at(10.0, lambda: w.put(eps("a", ["10.244.2.7"])))
    w.at(10.2, w.kp.restart)  # kills the sync in progress
    w.run(20.0)
    assert w.syncs() == [(2.0, 2.25, True, True), (12.2, 12.45, True, True)]
    assert w.kernel_endpoints(A) == ["10.244.2.7:8080"]


def test_block_sync_fails_then_recovers_with_a_full_sync() -> None:
    w = world_ab()
    w.at(5.0, lambda: w.kp.block_sync(40.0))
    w.at(6.0, lambda: w.put(eps("a", ["10.244.2.7"])))
    w.run(40.0)
    assert w.kp.blocked and w.kp.failing
    assert "xtables lock" in (w.kp.last_error or "")
    w.run(100.0)
    assert w.syncs() == [
        (2.0, 2.25, True, True),
        (6.125, 6.375, False, False),  # partial, fails at its end
        (36.375, 36.625, True, False),  # retry after syncPeriod: full now, still blocked
        (66.625, 66.875, True, True),  # blocked until 45: succeeds
    ]
    assert w.kernel.installed_at_s == 66.875
    assert w.kernel_endpoints(A) == ["10.244.2.7:8080"]
    m = w.kp.metrics
    assert m.sync_proxy_rules_iptables_restore_failures_total == 2
    assert m.sync_proxy_rules_iptables_partial_restore_failures_total == 1
    assert (m.sync_proxy_rules_duration_seconds.count, m.sync_proxy_rules_duration_seconds.sum) == (
        4,
        1.0,
    )
    assert m.sync_full_proxy_rules_duration_seconds.count == 3
    assert (w.kp.failing, w.kp.blocked) == (False, False)
    assert (5.0, "fault", "block-sync for=40s") in w.events()


def test_failing_listeners_hear_each_flip_once() -> None:
    # The traffic path's "blocked" state: a failed sync installs nothing (no new kernel
    # generation), so the flip itself must be told.
    w = world_ab()
    flips: list[tuple[float, bool]] = []
    w.kp.on_failing_change(lambda: flips.append((w.env.now, w.kp.failing)))
    w.at(5.0, lambda: w.kp.block_sync(40.0))
    w.at(6.0, lambda: w.put(eps("a", ["10.244.2.7"])))
    w.run(100.0)
    # Two failed syncs (6.375, 36.625), one flip; the recovery at 66.875 flips back.
    assert flips == [(6.375, True), (66.875, False)]


def test_a_change_during_the_retry_wait_syncs_at_once() -> None:
    w = world_ab()
    w.at(5.0, lambda: w.kp.block_sync(10.0))
    w.at(6.0, lambda: w.put(eps("a", ["10.244.2.7"])))
    w.at(20.0, lambda: w.put(eps("b", ["10.244.3.7"])))
    w.run(100.0)
    assert w.syncs() == [
        (2.0, 2.25, True, True),
        (6.125, 6.375, False, False),
        (20.125, 20.375, True, True),  # the request beats the retry (36.375) and is full
    ]
    assert w.kernel_endpoints(A) == ["10.244.2.7:8080"]


def test_inline_stale_rule_survives_partial_syncs_until_a_full_sync() -> None:
    cfg = KubeProxyConfig(
        min_sync_period_s=1.0,
        sync_period_s=30.0,
        full_sync_period_s=20.0,
        informer_sync_s=2.0,
        watch_delay_s=0.125,
        cost=SyncCostModel(0.25, 0.0),
    )
    w = world_ab(cfg)
    w.at(3.0, lambda: w.kp.inject_stale_rule("default/a:p", "10.244.9.9:8080", own_chain=False))
    w.at(5.0, lambda: w.put(eps("b", ["10.244.3.2"])))
    w.run(5.5)
    assert w.kernel_endpoints(A) == ["10.244.9.9:8080", "10.244.2.1:8080", "10.244.2.2:8080"]
    assert w.kernel_endpoints(B) == ["10.244.3.2:8080"]
    w.run(30.0)
    # The runner's max timer (20 s from the 5.375 run end) brings the hourly-style full sync.
    assert w.syncs()[1:] == [(5.125, 5.375, False, True), (25.375, 25.625, True, True)]
    assert w.kernel_endpoints(A) == ["10.244.2.1:8080", "10.244.2.2:8080"]
    assert (3.0, "fault", "inject-stale-rule default/a:p -> 10.244.9.9:8080") in w.events()


def test_inline_stale_rule_goes_when_its_service_changes() -> None:
    w = world_ab()
    w.at(3.0, lambda: w.kp.inject_stale_rule(A, "10.244.9.9:8080", own_chain=False))
    w.at(5.0, lambda: w.put(eps("a", ["10.244.2.1"])))
    w.run(10.0)
    assert w.syncs()[1] == (5.125, 5.375, False, True)
    assert w.kernel_endpoints(A) == ["10.244.2.1:8080"]


def test_stale_sep_chain_makes_the_next_partial_sync_fail() -> None:
    w = world_ab()
    w.at(3.0, lambda: w.kp.inject_stale_rule(A, "10.244.9.9:8080"))
    w.at(5.0, lambda: w.put(eps("b", ["10.244.3.2"])))
    w.run(5.5)
    # The partial sync of b tries -X on the stale SEP chain that KUBE-SVC of a still uses.
    assert w.syncs()[1] == (5.125, 5.375, False, False)
    assert "still referenced" in (w.kp.last_error or "")
    assert w.kernel_endpoints(A)[0] == "10.244.9.9:8080"
    assert w.kernel_endpoints(B) == ["10.244.3.1:8080"]  # b's change is not in yet
    w.run(40.0)
    assert w.syncs()[2] == (35.375, 35.625, True, True)
    assert w.kernel_endpoints(A) == ["10.244.2.1:8080", "10.244.2.2:8080"]
    assert w.kernel_endpoints(B) == ["10.244.3.2:8080"]
    assert w.kernel.ruleset.chain("nat", A.endpoint_chain("10.244.9.9:8080")) is None


def test_inject_needs_a_known_service_chain() -> None:
    w = world_ab()
    w.run(1.0)
    with pytest.raises(ValueError, match="no service port"):
        w.kp.inject_stale_rule("default/zz:p", "10.0.0.9:80")
    w.run(3.0)
    with pytest.raises(ValueError, match="no KUBE-SVC-"):
        w.kp.inject_stale_rule(ServicePortName("default", "zz", "p"), "10.0.0.9:80")


def test_udp_conntrack_to_a_removed_endpoint_is_deleted_after_the_sync() -> None:
    w = World()
    w.api.apply(SERVICE_KIND, svc("dns", "10.96.0.53", Protocol.UDP))
    w.api.apply(SERVICE_KIND, svc("a", "10.96.0.1"))
    w.put(eps("dns", ["10.244.3.1", "10.244.3.2"], proto=Protocol.UDP))
    w.put(eps("a", ["10.244.3.1"]))
    heard: list[tuple[StaleUdpFilter, float]] = []
    w.kp.on_conntrack_cleanup(lambda flt, t: heard.append((flt, t)))
    w.kp.start()
    w.run(3.0)
    ct = w.kernel.conntrack

    def flow(proto: str, sport: int, vip: str, vport: int, ep: str) -> FlowTuple:
        created = ct.create(
            FlowTuple(proto, "10.244.1.7", sport, vip, vport),
            FlowTuple(proto, ep, 8080, "10.244.1.7", sport),
            3.0,
        )
        assert created is not None
        return created.original

    to_gone = flow("udp", 40000, "10.96.0.53", 53, "10.244.3.1")
    to_kept = flow("udp", 40001, "10.96.0.53", 53, "10.244.3.2")
    tcp = flow("tcp", 40002, "10.96.0.1", 80, "10.244.3.1")
    w.at(5.0, lambda: w.put(eps("dns", ["10.244.3.2"], proto=Protocol.UDP)))
    w.run(5.374)
    assert ct.lookup(to_gone, 5.374) is not None
    w.run(5.5)
    assert ct.lookup(to_gone, 5.5) is None
    assert ct.lookup(to_kept, 5.5) is not None
    assert ct.lookup(tcp, 5.5) is not None  # kube-proxy never deletes TCP entries
    cleanups = [e for e in w.events() if e[1] == "conntrack-cleanup"]
    assert cleanups == [
        (2.25, "conntrack-cleanup", "deleted=0"),
        (5.375, "conntrack-cleanup", "deleted=1"),
    ]
    assert [t for _, t in heard] == [2.25, 5.375]
    assert heard[-1][0].service_ips == {"10.96.0.53": frozenset({"10.244.3.2"})}


def test_udp_conntrack_is_not_cleaned_for_tcp_only_changes() -> None:
    w = World()
    w.api.apply(SERVICE_KIND, svc("dns", "10.96.0.53", Protocol.UDP))
    w.put(eps("dns", ["10.244.3.1"], proto=Protocol.UDP))
    w.api.apply(SERVICE_KIND, svc("a", "10.96.0.1"))
    w.put(eps("a", ["10.244.2.1"]))
    w.kp.start()
    w.at(5.0, lambda: w.put(eps("a", ["10.244.2.2"])))
    w.run(10.0)
    assert [e[0] for e in w.events() if e[1] == "conntrack-cleanup"] == [2.25]


def test_periodic_sync_is_full_only_after_full_sync_period_since_the_last_full() -> None:
    cfg = KubeProxyConfig(
        min_sync_period_s=1.0,
        full_sync_period_s=20.0,
        informer_sync_s=2.0,
        watch_delay_s=0.125,
        cost=SyncCostModel(0.25, 0.0),
    )
    w = world_ab(cfg)
    w.run(45.0)
    # The runner's max timer starts with the loop at 0, not with the direct first sync: the
    # run at 20 finds only 17.75 s since the last full sync and is partial (as upstream).
    assert w.syncs() == [
        (2.0, 2.25, True, True),
        (20.0, 20.25, False, True),
        (40.25, 40.5, True, True),
    ]


def test_cost_model_sets_the_duration() -> None:
    cfg = KubeProxyConfig(informer_sync_s=2.0, cost=SyncCostModel(0.5, 0.001))
    w = world_ab(cfg)
    w.run(10.0)
    df = w.rec.frames()["syncs"]
    rules = int(df["rules_written"].iloc[0])
    assert rules > 10
    assert df["end_s"].iloc[0] == pytest.approx(2.0 + 0.5 + 0.001 * rules)
    assert w.kp.metrics.sync_proxy_rules_iptables_last == rules


def test_changes_before_the_informer_sync_are_listed_not_replayed() -> None:
    w = World()
    w.api.apply(SERVICE_KIND, svc("a", "10.96.0.1"))
    w.kp.start()
    w.at(1.0, lambda: w.put(eps("a", ["10.244.2.1"])))
    w.at(1.95, lambda: w.put(eps("a", ["10.244.2.2"])))  # heard by no watch: listed at 2.0
    w.run(10.0)
    assert w.syncs() == [(2.0, 2.25, True, True)]
    assert w.kernel_endpoints(A) == ["10.244.2.2:8080"]


def test_config_and_context_errors() -> None:
    with pytest.raises(ValueError, match="sync_period_s"):
        KubeProxyConfig(sync_period_s=0.0)
    with pytest.raises(ValueError, match="negative watch_delay_s"):
        KubeProxyConfig(watch_delay_s=-1.0)
    with pytest.raises(ValueError, match="full_sync_period_s"):
        KubeProxyConfig(min_sync_period_s=5.0, full_sync_period_s=1.0)
    w = World()
    with pytest.raises(ValueError, match="NodeContext is for"):
        KubeProxy(w.env, "n2", w.api, w.kernel, CTX)
    with pytest.raises(ValueError, match="positive duration"):
        w.kp.block_sync(0.0)
    w.kp.start()
    with pytest.raises(RuntimeError, match="already running"):
        w.kp.start()


def test_stop_cause_is_typed() -> None:
    cause = ProxyStopped(3.0, "crash")
    assert cause.reason == "crash" and cause.t_s == 3.0


def test_a_failed_first_sync_is_not_retried_by_the_runner() -> None:
    """A failed first sync waits for the next change (or the runner's max interval).

    The first sync is called directly (OnEndpointSlicesSynced), not by the runner, so its
    error schedules no retry.
    """
    w = world_ab()
    w.at(10.0, lambda: w.kp.block_sync(5.0))
    w.at(10.0, w.kp.restart)  # informers sync at 12.0: the full sync ends blocked at 12.25
    w.at(50.0, lambda: w.put(eps("a", ["10.244.2.7"])))
    w.run(60.0)
    assert w.syncs() == [
        (2.0, 2.25, True, True),
        (12.0, 12.25, True, False),
        (50.125, 50.375, True, True),
    ]
