"""Nodes in step sharing one kube-proxy life record and install what separate lives would."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from svcsim.k8s.objects import Protocol
from svcsim.sim.changes import ENDPOINT_SLICE_KIND, SERVICE_KIND
from svcsim.sim.synccost import KubeProxyConfig
from tests.sim.cohort_world import CFG, Nodes
from tests.sim.test_kubeproxy import eps, svc

Script = Callable[[Nodes], None]


def _changes(w: Nodes) -> None:
    w.api.apply(SERVICE_KIND, svc("a", "10.96.0.1"))
    w.api.apply(ENDPOINT_SLICE_KIND, eps("a", ["10.244.2.5"]))
    for k, t in enumerate((3.0, 3.05, 4.4, 6.0, 9.5, 12.0)):
        ips = [f"10.244.2.{i}" for i in range(5, 7 + k % 3)]
        w.at(t, lambda ips=ips, t=t: w.api.apply(ENDPOINT_SLICE_KIND, eps("a", ips, trigger=t)))
    w.at(7.0, lambda: w.api.apply(SERVICE_KIND, svc("b", "10.96.0.2")))
    w.at(7.0, lambda: w.api.apply(ENDPOINT_SLICE_KIND, eps("b", ["10.244.3.9"])))
    # A UDP Service: its slice changes clean conntrack on every node.
    udp = Protocol.UDP
    w.at(7.5, lambda: w.api.apply(SERVICE_KIND, svc("d", "10.96.0.3", udp)))
    w.at(7.5, lambda: w.api.apply(ENDPOINT_SLICE_KIND, eps("d", ["10.244.3.1"], proto=udp)))
    w.at(11.0, lambda: w.api.apply(ENDPOINT_SLICE_KIND, eps("d", ["10.244.3.2"], proto=udp)))


def _crash_member(w: Nodes) -> None:
    w.at(5.0, w.proxies["n2"].crash)
    w.at(8.0, w.proxies["n2"].restart)


def _crash_leader_mid_sync(w: Nodes) -> None:
    # The sync of the changes at 3.0 s runs from 3.125 s for 0.25 s and more.
    w.at(3.2, w.proxies["n1"].crash)
    w.at(10.0, w.proxies["n1"].restart)


def _restart_member_mid_sync(w: Nodes) -> None:
    w.at(3.2, w.proxies["n3"].restart)


def _all_crash(w: Nodes) -> None:
    for node in ("n1", "n2", "n3"):
        w.at(5.0, w.proxies[node].crash)
    w.at(6.0, w.proxies["n2"].restart)


def _fault_after_leaving(w: Nodes) -> None:
    # A member that left (its restarted life is its own) can be faulted alone.
    w.at(5.0, w.proxies["n3"].restart)
    w.at(9.0, lambda: w.proxies["n3"].block_sync(4.0))
    w.at(11.0, w.proxies["n3"].api_cut)
    w.at(13.0, w.proxies["n3"].api_back)


FAULTS: dict[str, Script] = {
    "none": lambda w: None,
    "crash-member": _crash_member,
    "crash-leader-mid-sync": _crash_leader_mid_sync,
    "restart-member-mid-sync": _restart_member_mid_sync,
    "all-crash": _all_crash,
    "fault-after-leaving": _fault_after_leaving,
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_cohort_and_separate_lives_give_the_same_records_and_kernels(fault: str) -> None:
    worlds = []
    for cohort in (False, True):
        w = Nodes(cohort=cohort)
        _changes(w)
        FAULTS[fault](w)
        w.env.run(until=20.0)
        worlds.append(w)
    alone, shared = worlds
    shared.assert_same_records(alone)
    frames = alone.rec.frames()
    assert len(frames["syncs"]) > 10  # something was synced
    assert (frames["events"]["kind"].astype(str) == "conntrack-cleanup").any()
    for node in alone.proxies:
        a, s = alone.proxies[node], shared.proxies[node]
        assert s.kernel.ruleset == a.kernel.ruleset
        assert s.metrics == a.metrics
        assert (s.up, s.rules_current, s.healthz()) == (a.up, a.rules_current, a.healthz())


def test_members_leave_as_they_crash_and_the_life_ends_with_the_last() -> None:
    w = Nodes(cohort=True)
    n1, n2, n3 = w.proxies.values()
    life = n1.runner
    assert n1.in_cohort and n2.runner is life and n3.runner is life
    n1.crash()  # the leader leaves; the life goes on for the others
    assert not n1.up and n2.in_cohort and n2.runner is life and life is not None and life.ready
    n2.restart()
    assert n2.runner is not life and not n2.in_cohort and not n3.in_cohort and life.ready
    n3.crash()
    assert not life.ready  # no member left: the life ended


@pytest.mark.parametrize(
    "fault",
    [
        lambda p: p.api_cut(),
        lambda p: p.api_back(),
        lambda p: p.block_sync(1.0),
        lambda p: p.inject_stale_rule("default/a:p", "10.244.9.9:80"),
    ],
    ids=["api_cut", "api_back", "block_sync", "inject_stale_rule"],
)
def test_faulting_one_member_alone_is_refused(fault: Callable[[object], object]) -> None:
    w = Nodes(cohort=True)
    with pytest.raises(RuntimeError, match="shares its life"):
        fault(w.proxies["n2"])
    assert not w.proxies["n2"].blocked and w.proxies["n2"].api_reachable


@pytest.mark.parametrize(
    ("config", "why"),
    [
        (KubeProxyConfig(min_sync_period_s=2.0), "settings"),
        (CFG, None),
    ],
)
def test_only_alike_nodes_share_a_life(config: KubeProxyConfig, why: str | None) -> None:
    w = Nodes(cohort=False)
    other = Nodes(cohort=False, config=config)
    n1 = w.proxies["n1"]
    late = other.proxies["n2"]
    # Another environment always differs; same environment, different settings too.
    assert late.unlike(n1, warm=False) is not None
    fresh = w.proxies["n3"]
    fresh.crash()
    fresh.config = config
    found = fresh.unlike(n1, warm=False)
    assert (found is None) == (why is None)
    if why is not None:
        assert why in (found or "")
        with pytest.raises(ValueError, match="cannot share"):
            fresh.start_in_step(n1)
