"""Behaviour of the batched engine on hand-built worlds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from svcsim.netfilter.icmp_limit import IcmpSysctls
from svcsim.sim.network import BackendState
from svcsim.traffic import (
    FixedTime,
    KeepAlive,
    PodSource,
    Retries,
    ServiceTarget,
    TrafficEngine,
    Udp,
    WorkloadSpec,
)
from svcsim.traffic.spec import AddressTarget
from tests.traffic.scenarios import SCENARIOS
from tests.traffic.world import World

CLIENTS = {"app": "client"}
WEB = ServiceTarget("default/web")


def _world(endpoints: int = 3, clients: int = 1, **world: object) -> World:
    w = World(**world)  # type: ignore[arg-type]
    for i in range(clients):
        w.add_pod(f"client-{i}", w.nodes[i % len(w.nodes)], CLIENTS, app="client", port=9)
    for i in range(endpoints):
        w.add_pod(f"web-{i}", w.nodes[i % len(w.nodes)], {"app": "web"})
    w.add_service("web", "10.96.0.10", {"app": "web"})
    w.update_slices()
    w.program()
    return w


def _start(w: World, *specs: WorkloadSpec, engine: type = TrafficEngine) -> TrafficEngine:
    e = engine(list(specs), w)
    w.engines.append(e)
    return e  # type: ignore[no-any-return]


def _load(rate: float = 200.0, **kw: object) -> WorkloadSpec:
    return WorkloadSpec("load", PodSource(CLIENTS), WEB, ((0.0, rate),), **kw)  # type: ignore[arg-type]


def _mix(frame: pd.DataFrame) -> dict[tuple[str, str], int]:
    return {k: int(v) for k, v in frame.groupby(["outcome", "cause"], observed=True).size().items()}


def test_spread_over_endpoints_passes_chi_square() -> None:
    w = _world(endpoints=5, clients=2)
    _start(w, _load(2000.0))
    w.run_to(10.0)
    frame = w.finish()
    assert len(frame) > 15_000 and (frame.outcome == "ok").all()
    counts = frame.groupby("endpoint", observed=True).size()
    assert len(counts) == 5
    assert stats.chisquare(counts.to_numpy()).pvalue > 0.001
    # Each source node's share is uniform too (they resolve through different kernels).
    for _, part in frame.groupby("src_node", observed=True):
        assert stats.chisquare(part.groupby("endpoint", observed=True).size()).pvalue > 0.001


@pytest.mark.parametrize(
    ("proxy", "cause"),
    [("up", "stale-rule"), ("down", "proxy-down"), ("blocked", "sync-blocked")],
)
def test_stale_rule_to_a_released_ip_times_out(proxy: str, cause: str) -> None:
    w = _world(endpoints=3, clients=2)
    spec = _load(400.0, connect_timeout_s=0.7)
    _start(w, spec)
    w.run_to(1.0)
    gone = w.backend("web-1")
    w.network.set_state(gone, BackendState.EXITED, w.env.now)
    w.delete_pod("web-1")
    w.network.release(gone.ip)
    w.update_slices()
    w.program(["node-1"])  # node-2 keeps the old rules
    w.proxy["node-2"] = proxy  # type: ignore[assignment]
    w.view.bump()
    w.run_to(3.0)
    frame = w.finish()
    late = frame[frame.t_s >= 1.0]
    failed = late[late.outcome != "ok"]
    assert set(failed.src_node) == {"node-2"}
    assert set(failed.endpoint) == {f"{gone.ip}:8080"}
    assert _mix(failed) == {("timeout", cause): len(failed)}
    assert np.allclose(failed.latency_s, 0.7)
    on_two = late[late.src_node == "node-2"]
    assert len(failed) / len(on_two) == pytest.approx(1 / 3, abs=0.08)


def test_udp_fixed_port_black_hole_lasts_until_the_entry_is_deleted() -> None:
    w, old = _dns_world()
    target = ServiceTarget("default/dns", "dns")
    _start(
        w,
        WorkloadSpec(
            "fixed",
            PodSource(CLIENTS),
            target,
            ((0.0, 10.0),),
            connection=Udp(fixed_source_port=True),
            request_timeout_s=1.0,
        ),
        WorkloadSpec(
            "fresh",
            PodSource(CLIENTS),
            target,
            ((0.0, 10.0),),
            connection=Udp(),
            request_timeout_s=1.0,
        ),
    )
    w.run_to(2.0)
    _replace_dns(w, old, program=True)
    new = w.backend("dns-1")
    w.run_to(50.0)  # long after the 30 s UDP timeout: the entry is refreshed, never expires
    table = w.kernels["node-1"].conntrack
    deleted = table.delete_matching(proto="udp", dst_nat=old.ip)  # type: ignore[attr-defined]
    assert deleted == 1
    w.run_to(55.0)
    frame = w.finish()
    fixed, fresh = frame[frame.workload == "fixed"], frame[frame.workload == "fresh"]
    hole = fixed[(fixed.t_s >= 2.0) & (fixed.t_s < 50.0)]
    assert _mix(hole) == {("timeout", "stale-conntrack"): len(hole)}
    assert not hole.new_flow.any()
    after = fixed[fixed.t_s >= 50.0]
    assert (after.outcome == "ok").all() and set(after.pod) == {new.pod}
    assert after.new_flow.sum() == 1  # one new flow, then it is reused
    assert (fresh[fresh.t_s >= 2.0].outcome == "ok").all()  # a new port: a new NAT decision


def _dns_world() -> tuple[World, object]:
    w = World()
    w.add_pod("client-0", "node-1", CLIENTS, app="client", port=9)
    old = w.add_pod("dns-0", "node-2", {"app": "dns"}, port=53, protocol="udp")
    w.add_service(
        "dns",
        "10.96.0.53",
        {"app": "dns"},
        port=53,
        target_port=53,
        protocol="UDP",
        port_name="dns",
    )
    w.update_slices()
    w.program()
    return w, old


def _replace_dns(w: World, old: object, *, program: bool) -> None:
    w.network.set_state(old, BackendState.EXITED, w.env.now)  # type: ignore[arg-type]
    w.delete_pod("dns-0")
    w.network.release(old.ip)  # type: ignore[attr-defined]
    w.add_pod("dns-1", "node-1", {"app": "dns"}, port=53, protocol="udp")
    w.update_slices()
    if program:
        w.program()


@pytest.mark.parametrize(
    ("schedule", "replace_at", "program_at", "back_at"),
    [
        # The flow was answered before: ASSURED, each datagram refreshes the stream timeout
        # (120 s, nf_conntrack_udp_timeout_stream); a shorter pause does not end it.
        (((0.0, 10.0), (5.0, 0.0), (40.0, 10.0), (44.0, 0.0), (170.0, 10.0)), 2.0, 2.0, 170.0),
        # Created towards the dead Pod by a stale rule: never answered, so UNREPLIED and the
        # 30 s timeout (nf_conntrack_udp_timeout) applies.
        (((2.5, 10.0), (5.0, 0.0), (40.0, 10.0)), 2.0, 3.0, 40.0),
    ],
)
def test_udp_black_hole_ends_when_the_client_pauses_longer_than_the_timeout(
    schedule: tuple[tuple[float, float], ...],
    replace_at: float,
    program_at: float,
    back_at: float,
) -> None:
    w, old = _dns_world()
    _start(
        w,
        WorkloadSpec(
            "fixed",
            PodSource(CLIENTS),
            ServiceTarget("default/dns"),
            schedule,
            connection=Udp(fixed_source_port=True),
            request_timeout_s=1.0,
        ),
    )
    w.run_to(replace_at)
    _replace_dns(w, old, program=False)
    w.run_to(program_at)
    w.program()
    w.run_to(back_at + 5.0)
    frame = w.finish()
    failing = frame[(frame.t_s > replace_at) & (frame.t_s < back_at)]
    assert len(failing) > 10 and (failing.outcome == "timeout").all()
    assert set(failing.cause) <= {"stale-conntrack", "stale-rule"}
    assert (frame[frame.t_s >= back_at].outcome == "ok").all()


def test_keepalive_pins_connections_and_new_pods_get_nothing() -> None:
    w = _world(endpoints=2, clients=2)
    _start(
        w,
        WorkloadSpec("ka", PodSource(CLIENTS), WEB, ((0.0, 200.0),), connection=KeepAlive(2)),
        WorkloadSpec("pr", PodSource(CLIENTS), WEB, ((0.0, 200.0),)),
    )
    w.run_to(1.0)
    new = w.add_pod("web-2", "node-1", {"app": "web"})
    w.update_slices()
    w.program()
    w.run_to(4.0)
    frame = w.finish()
    late = frame[frame.t_s >= 1.0]
    ka, pr = late[late.workload == "ka"], late[late.workload == "pr"]
    assert (ka.outcome == "ok").all() and (ka.pod != new.pod).all()
    assert not ka.new_flow.any()
    assert ka.conn_id.nunique() <= 4  # 2 clients x 2 connections, opened before the scale-up
    assert (pr.pod == new.pod).mean() == pytest.approx(1 / 3, abs=0.06)


def test_draining_backend_closes_keepalive_connections_without_failures() -> None:
    w = _world(endpoints=3, clients=2)
    _start(w, WorkloadSpec("ka", PodSource(CLIENTS), WEB, ((0.0, 300.0),), connection=KeepAlive(3)))
    w.run_to(1.0)
    drained = w.backend("web-0")
    w.set_pod("web-0", terminating=True, ready=False)
    w.update_slices()
    w.program()
    w.network.set_state(drained, BackendState.DRAINING, w.env.now)
    w.run_to(3.0)
    frame = w.finish()
    assert (frame.outcome == "ok").all()
    late = frame[frame.t_s >= 1.0]
    assert (late.pod != drained.pod).all()
    assert late.new_flow.any()  # the closed connections were reopened elsewhere


def test_crash_resets_in_flight_requests_and_broken_connections() -> None:
    w = _world(endpoints=2, clients=1, apps={"web": FixedTime(1.0), "client": FixedTime(0.0)})
    _start(
        w,
        _load(20.0, request_timeout_s=5.0),
        WorkloadSpec("ka", PodSource(CLIENTS), WEB, ((0.0, 20.0),), connection=KeepAlive(1)),
        WorkloadSpec(
            "dns", PodSource(CLIENTS), AddressTarget("10.96.0.10", 80, "tcp"), ((0.0, 5.0),)
        ),
    )
    w.run_to(2.5)
    victim = w.backend("web-0")
    w.network.set_state(victim, BackendState.CRASHED, w.env.now)
    w.run_to(4.0)
    frame = w.finish()
    reset = frame[frame.outcome == "reset"]
    assert len(reset) > 5 and set(reset.cause) == {"backend-exited"}
    assert set(reset.pod) == {victim.pod}
    in_flight = reset[reset.t_s < 2.5]
    assert np.allclose(in_flight.end_s, 2.5)
    assert (in_flight.t_s > 1.5).all()
    # Everything served by the crashed Pod that would have ended after the crash was reset.
    before = frame[(frame.pod == victim.pod) & (frame.t_s < 2.5) & (frame.t_s > 1.5)]
    assert (before.outcome == "reset").all()


def test_conntrack_full_drops_new_flows_until_entries_expire() -> None:
    w = _world(endpoints=2, clients=1, conntrack_max=100)
    _start(w, _load(20.0, connect_timeout_s=0.25))
    w.run_to(130.0)
    frame = w.finish().sort_values("t_s")
    assert (frame.iloc[:100].outcome == "ok").all()
    dropped = frame[frame.outcome == "dropped"]
    assert set(dropped.cause) == {"conntrack-full"} and not dropped.new_flow.any()
    assert np.allclose(dropped.latency_s, 0.25)
    assert dropped.t_s.min() < 6.0
    # TIME_WAIT (120 s) after the first connections ended frees room again.
    assert (frame[frame.t_s > 126.0].outcome == "ok").any()
    ok_at = frame[frame.outcome == "ok"].t_s.to_numpy()
    assert not np.any((ok_at > 10.0) & (ok_at < 120.0))


def test_retries_follow_the_backoff() -> None:
    # ICMP limits off (ratemask 0): every REJECT is refused at once, so retries follow it.
    w = _world(endpoints=1, clients=1, icmp=IcmpSysctls(ratemask=0))
    w.set_pod("web-0", ready=False)
    w.update_slices()
    w.program()
    _start(w, _load(5.0, retries=Retries(3, 0.1)))
    w.run_to(5.0)
    frame = w.finish()
    assert _mix(frame) == {("refused", "no-endpoints"): len(frame)}
    assert set(frame.attempt) == {0, 1, 2, 3}
    firsts = frame[frame.attempt == 0].t_s.to_numpy()
    for k in (1, 2, 3):
        expected = firsts + 0.1 * (2**k - 1)  # refused at once: 0.1, 0.3, 0.7 after the first
        got = np.sort(frame[frame.attempt == k].t_s.to_numpy())
        assert np.allclose(got, np.sort(expected[expected < 5.0]))


def test_windows_do_not_change_the_results() -> None:
    def run(idle_s: float | None, defer: bool) -> pd.DataFrame:
        w = _world(endpoints=3, clients=2)
        if idle_s is not None:

            def idle() -> object:
                while True:
                    yield w.env.timeout(idle_s)

            w.env.process(idle())  # type: ignore[arg-type]
        engine = TrafficEngine if defer else _Eager
        _start(w, _load(500.0, retries=Retries(2, 0.05)), engine=engine)
        w.run_to(1.0)
        w.set_pod("web-2", ready=False)
        w.update_slices()
        w.program(["node-1"])
        w.run_to(2.0)
        gone = w.backend("web-2")
        w.network.set_state(gone, BackendState.EXITED, w.env.now)
        w.run_to(3.0)
        frame = w.finish()
        return frame.sort_values(["t_s", "client", "attempt"]).reset_index(drop=True)

    base = run(None, True)
    assert set(base.outcome) >= {"ok", "refused"}
    for idle_s, defer in ((0.013, True), (0.013, False), (0.2, True)):
        pd.testing.assert_frame_equal(run(idle_s, defer), base, check_exact=True)


class _Eager(TrafficEngine):
    def _can_defer(self, t_s: float) -> bool:
        return False


def test_no_clients_no_records_and_orphan_retries_are_dropped() -> None:
    w = _world(endpoints=1, clients=1)
    w.set_pod("web-0", ready=False)
    w.update_slices()
    w.program()
    _start(
        w,
        _load(50.0, retries=Retries(5, 1.0)),
        WorkloadSpec("none", PodSource({"app": "nobody"}), WEB, ((0.0, 50.0),)),
    )
    w.run_to(1.0)
    client = w.backend("client-0")
    w.network.set_state(client, BackendState.EXITED, w.env.now)
    w.run_to(5.0)
    frame = w.finish()
    assert set(frame.workload) == {"load"}
    assert frame.t_s.max() < 1.0  # no arrivals, no retries once the client is gone


def test_a_deleted_service_is_still_dialled_at_its_last_address() -> None:
    w = _world(endpoints=2, clients=1)
    _start(w, _load(100.0))
    w.run_to(1.0)
    w.api.delete("Service", "default/web")
    w.settle()
    w.update_slices()
    w.program()
    w.run_to(2.0)
    frame = w.finish()
    late = frame[frame.t_s >= 1.0]
    assert _mix(late) == {("timeout", "no-service-rule"): len(late)}
    assert set(late.service) == {"default/web:http"}


def test_client_ip_affinity_keeps_each_client_on_one_endpoint() -> None:
    w = World()
    for i in range(4):
        w.add_pod(f"client-{i}", w.nodes[i % 2], CLIENTS, app="client", port=9)
    for i in range(3):
        w.add_pod(f"web-{i}", w.nodes[i % 2], {"app": "web"})
    w.add_service("web", "10.96.0.10", {"app": "web"}, affinity=True)
    w.update_slices()
    w.program()
    _start(w, _load(400.0))
    w.run_to(3.0)
    frame = w.finish()
    assert (frame.outcome == "ok").all() and frame.client.nunique() == 4
    per_client = frame.groupby("client", observed=True).endpoint.nunique()
    assert (per_client == 1).all()


@pytest.mark.parametrize("engine", ["batched", "reference"])
def test_a_flushed_conntrack_table_takes_new_flows_again(engine: str) -> None:
    from svcsim.traffic import ReferenceEngine

    w = _world(endpoints=2, clients=1, conntrack_max=50)
    e = _start(w, _load(20.0), engine=TrafficEngine if engine == "batched" else ReferenceEngine)
    w.run_to(5.0)
    w.kernels["node-1"].conntrack.delete_matching()
    e.conntrack_flushed("node-1")
    w.run_to(6.0)
    frame = w.finish()
    assert (frame[(frame.t_s > 3.0) & (frame.t_s < 5.0)].outcome == "dropped").all()
    assert (frame[frame.t_s >= 5.0].outcome == "ok").sum() > 10


def test_reclassifying_only_affected_groups_gives_what_looking_at_all_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reclassify fast path (kube-proxy states unchanged) against the full pass."""
    rebuilt: list[int] = []
    fast = TrafficEngine._reclassify_rows

    def counted(self: TrafficEngine, affected: set[int]) -> None:
        before = len(self._groups.fast)
        fast(self, affected)
        rebuilt.append(len(self._groups.fast) - before)

    monkeypatch.setattr(TrafficEngine, "_reclassify_rows", counted)
    quick = SCENARIOS["cluster_ip_churn"](TrafficEngine).finish()
    assert len(rebuilt) >= 3 and any(rebuilt)  # taken, and some groups' rows changed

    def full(self: TrafficEngine, affected: set[int]) -> None:
        self._reclassify_all(self._states, affected)

    monkeypatch.setattr(TrafficEngine, "_reclassify_rows", full)
    slow = SCENARIOS["cluster_ip_churn"](TrafficEngine).finish()
    pd.testing.assert_frame_equal(quick, slow, check_exact=True)
    assert {"refused", "misrouted"} <= set(quick["outcome"].astype(str))


def test_lookups_shared_by_nodes_in_step_hold_only_the_rules_installed_now() -> None:
    """Replaced rulesets are not kept alive by the nodes-in-step lookup memo.

    Each round adds an endpoint, so every node installs a new ruleset and every pair is
    looked up again: the memo's entries then all name rules some kernel holds now (before,
    an entry per ruleset ever installed stayed until a cap of 4,096).
    """
    w = _world(endpoints=2, clients=4, pod_prefix=27)
    engine = _start(w, _load(400.0))
    for round_ in range(6):
        w.run_to(1.0 + round_)
        w.add_pod(f"web-x{round_}", w.nodes[round_ % len(w.nodes)], {"app": "web"})
        w.update_slices()
        w.program()
    w.run_to(8.0)
    installed = {id(kernel.rules) for kernel in w.kernels.values()}
    held = {id(entry.rules) for entry in engine._alike.values()}
    assert held and held <= installed
    frame = w.finish()
    assert frame["endpoint"].nunique() == 8  # traffic reached every endpoint added
