"""REJECTs' ICMP errors through the engines: refused while the node's buckets allow, else the
client waits (UDP), or retransmits its SYN and each retransmit meets the rules afresh."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pytest

from svcsim.netfilter.icmp_limit import IcmpSysctls
from svcsim.netfilter.tcp_syn import TcpSynSysctls
from svcsim.traffic import TrafficEngine
from svcsim.traffic.reference import ReferenceEngine
from svcsim.traffic.spec import KeepAlive, Udp, WorkloadSpec
from tests.traffic.icmp_cases import (
    bring_web_back,
    expected_sent,
    host_load,
    pod_load,
    rejecting_world,
    run,
)
from tests.traffic.world import World

SCHEDULE = TcpSynSysctls().schedule().retransmits_s  # +1, +2, +3, +4, +5, +7, +11 ...
ENGINES = [pytest.param(TrafficEngine, id="batched"), pytest.param(ReferenceEngine, id="reference")]


@pytest.mark.parametrize("engine", ENGINES)
def test_refused_exactly_when_the_destination_bucket_allows(engine: type) -> None:
    frame = run([pod_load(50.0)], 4.0, engine=engine)  # connectTimeout 1 s: no retransmit
    allowed = np.array(expected_sent(frame["t_s"].tolist()))
    assert allowed[:6].all() and 6 + 2 <= allowed.sum() <= 6 + 4  # a burst, then one a second
    refused = frame[allowed]
    assert set(zip(refused.outcome, refused.cause, strict=True)) == {("refused", "no-endpoints")}
    assert (refused.latency_s == 0.0).all()
    limited = frame[~allowed]
    assert set(zip(limited.outcome, limited.cause, strict=True)) == {
        ("timeout", "icmp-rate-limited")
    }
    assert (limited.latency_s == 1.0).all()


def test_a_host_client_is_never_limited_per_destination() -> None:
    frame = run([host_load(100.0), pod_load(100.0)], 3.0)
    host = frame[frame.workload == "host"]
    assert len(host) > 200 and (host.outcome == "refused").all() and (host.latency_s == 0).all()
    pod = frame[frame.workload == "pod"]
    assert (pod.outcome == "refused").sum() <= 6 + 3  # the same node, another destination


def test_udp_waits_its_request_timeout() -> None:
    frame = run([pod_load(50.0, connection=Udp(), request_timeout_s=2.0)], 3.0)
    limited = frame[frame.cause == "icmp-rate-limited"]
    assert len(limited) > 100
    assert (limited.outcome == "timeout").all() and (limited.latency_s == 2.0).all()


def _syn_times(frame: pd.DataFrame, timeout_s: float) -> list[tuple[float, int]]:
    """Every SYN each attempt sent, from its recorded start and latency: (time, row)."""
    syns = []
    for row, (t0, latency) in enumerate(zip(frame.t_s, frame.latency_s, strict=True)):
        for offset in (0.0, *SCHEDULE):
            if offset < timeout_s and offset <= latency + 1e-9:
                syns.append((t0 + offset, row))
    return sorted(syns)


@pytest.mark.parametrize("engine", ENGINES)
def test_retransmits_follow_the_kernel_schedule_and_share_the_bucket(engine: type) -> None:
    frame = run([pod_load(20.0, connect_timeout_s=10.0)], 12.0, engine=engine)
    refused = frame[frame.outcome == "refused"]
    # Refused at a SYN: after 0, 1, 2, 3, 4, 5 or 7 s (the retransmits before 10 s).
    offsets = {0.0, *(o for o in SCHEDULE if o < 10.0)}
    assert all(any(abs(x - o) < 1e-9 for o in offsets) for x in refused.latency_s)
    assert (refused.latency_s > 0).any()
    limited = frame[frame.cause == "icmp-rate-limited"]
    assert len(limited) and np.allclose(limited.latency_s, 10.0)
    # Replaying every SYN (first and retransmits) through one bucket: exactly the last SYN of
    # each refused attempt got its error out, and nothing else did.
    syns = _syn_times(frame[frame.t_s + frame.latency_s <= 12.0], 10.0)
    allowed = expected_sent([t for t, _ in syns])
    got = {row for (_, row), ok in zip(syns, allowed, strict=True) if ok}
    kept = frame[frame.t_s + frame.latency_s <= 12.0].reset_index(drop=True)
    assert got == set(kept.index[kept.outcome == "refused"])


@pytest.mark.parametrize("engine", ENGINES)
def test_a_retransmit_after_the_sync_connects_late(engine: type) -> None:
    frame = run([pod_load(20.0, connect_timeout_s=10.0)], 8.0, engine=engine,
                at=(3.0, bring_web_back))  # fmt: skip
    early = frame[frame.t_s < 3.0]
    late = early[early.outcome == "ok"]
    assert len(late) > 10
    assert set(early.outcome) == {"ok", "refused"}  # nobody gave up: +7 s reaches past 3 s
    for t0, latency in zip(late.t_s, late.latency_s, strict=True):
        first_after = min(o for o in SCHEDULE if t0 + o >= 3.0)  # the first SYN the rules DNAT
        assert first_after <= latency < first_after + 1.0  # plus the Pod's service time
    assert (frame[frame.t_s >= 3.0].outcome == "ok").all()


@pytest.mark.parametrize(
    ("specs", "until_s", "at", "icmp"),
    [
        ([pod_load(80.0, connect_timeout_s=10.0), host_load(30.0)], 9.0, (4.0, bring_web_back),
         None),
        ([pod_load(60.0, connection=Udp(), request_timeout_s=2.0)], 5.0, None, None),
        # A small host-wide bucket: the host client is limited too, by the seeded 0-2 draws.
        ([pod_load(100.0, connect_timeout_s=5.0), host_load(200.0, connect_timeout_s=3.0)], 6.0,
         (4.5, bring_web_back), IcmpSysctls(msgs_per_sec=20, msgs_burst=5)),
    ],
    ids=["tcp-late", "udp", "host-wide"],
)  # fmt: skip
def test_batched_equals_reference(
    specs: list[WorkloadSpec],
    until_s: float,
    at: tuple[float, Callable[[World], None]] | None,
    icmp: IcmpSysctls | None,
) -> None:
    batched = run(specs, until_s, engine=TrafficEngine, at=at, icmp=icmp)
    reference = run(specs, until_s, engine=ReferenceEngine, at=at, icmp=icmp)
    pd.testing.assert_frame_equal(batched, reference)
    waited = batched[batched.latency_s >= 1.0]  # retransmitted, or waited out a timeout
    assert len(waited)
    if at is not None:
        assert (waited.outcome == "ok").any()  # connected late, after web came back
    else:
        assert (waited.cause == "icmp-rate-limited").all()
    if icmp is not None:
        host = batched[batched.workload == "host"]
        assert set(host.cause) >= {"no-endpoints", "icmp-rate-limited"}


def test_keep_alive_waits_its_connect_timeout_and_says_so() -> None:
    w = rejecting_world()
    engine = TrafficEngine([pod_load(50.0, connection=KeepAlive(2), connect_timeout_s=3.0)], w)
    w.engines.append(engine)
    w.run_to(2.0)
    frame = w.finish()
    limited = frame[frame.cause == "icmp-rate-limited"]
    assert len(limited) and (limited.latency_s == 3.0).all()
    assert any("not re-evaluated" in line for line in engine.notices())
