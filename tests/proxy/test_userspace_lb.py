"""The userspace proxier's round robin, affinity and dial retries (roundrobin.go etc.)."""

from __future__ import annotations

import numpy as np
import pytest

from svcsim.proxy.userspace_lb import (
    ENDPOINT_DIAL_TIMEOUTS_S,
    CopyCost,
    DialOutcome,
    DialResult,
    RoundRobinBalancer,
    after_crash,
    try_connect,
)

EPS = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]


def balancer(affinity_s: int = 0, seed: int = 0) -> RoundRobinBalancer:
    b = RoundRobinBalancer(affinity_s=affinity_s)
    b.set_endpoints(EPS, np.random.default_rng(seed))
    return b


def test_round_robin_over_a_shuffled_list() -> None:
    b = balancer()
    assert sorted(b.endpoints) == EPS
    got = [b.next_endpoint("10.1.0.1", 0.0, False) for _ in range(6)]
    assert got == b.endpoints * 2


def test_the_same_set_keeps_order_and_index_a_new_one_reshuffles() -> None:
    b = balancer()
    b.next_endpoint("c", 0.0, False)
    order = list(b.endpoints)
    assert not b.set_endpoints(list(reversed(EPS)), np.random.default_rng(9))
    assert (b.endpoints, b.index) == (order, 1)
    assert b.set_endpoints(EPS[:2], np.random.default_rng(9))
    assert b.index == 0 and sorted(b.endpoints) == EPS[:2]


def test_affinity_sticks_until_the_ttl_and_forgets_removed_endpoints() -> None:
    b = balancer(affinity_s=10)
    first = b.next_endpoint("10.1.0.1", 0.0, False)
    assert b.next_endpoint("10.1.0.1", 9.9, False) == first  # int(9.9) < 10
    assert b.next_endpoint("10.1.0.1", 19.9, False) == first  # refreshed at 9.9
    assert b.next_endpoint("10.1.0.2", 20.0, False) != first
    b.set_endpoints([e for e in EPS if e != first], np.random.default_rng(1))
    assert "10.1.0.1" not in b.affinity
    b.cleanup(100.0)
    assert not b.affinity


def test_try_connect_moves_on_with_growing_timeouts() -> None:
    b = balancer()
    dead = {b.endpoints[0]: DialOutcome.TIMEOUT, b.endpoints[1]: DialOutcome.REFUSED}

    def dial(endpoint: str, timeout_s: float) -> DialResult:
        return DialResult(dead.get(endpoint, DialOutcome.CONNECTED), 0.001)

    result = try_connect(b, "10.1.0.1", 0.0, dial)
    assert result.endpoint == b.endpoints[2]
    assert [a.outcome for a in result.attempts] == [
        DialOutcome.TIMEOUT,
        DialOutcome.REFUSED,
        DialOutcome.CONNECTED,
    ]
    assert result.elapsed_s == pytest.approx(0.25 + 0.001 + 0.001)


def test_try_connect_gives_up_after_four_attempts() -> None:
    b = balancer()
    result = try_connect(b, "c", 0.0, lambda e, t: DialResult(DialOutcome.TIMEOUT))
    assert result.endpoint is None and len(result.attempts) == 4
    assert result.elapsed_s == pytest.approx(sum(ENDPOINT_DIAL_TIMEOUTS_S))  # 3.75 s


def test_a_late_answer_is_a_timeout() -> None:
    b = balancer()
    result = try_connect(b, "c", 0.0, lambda e, t: DialResult(DialOutcome.CONNECTED, 0.3))
    assert result.attempts[0].outcome is DialOutcome.TIMEOUT
    assert result.endpoint == b.endpoints[1]  # answered within its 0.5 s


def test_affinity_is_bypassed_after_a_failed_dial() -> None:
    b = balancer(affinity_s=100)
    sticky = b.next_endpoint("c", 0.0, False)

    def dial(endpoint: str, timeout_s: float) -> DialResult:
        ok = endpoint != sticky
        return DialResult(DialOutcome.CONNECTED if ok else DialOutcome.REFUSED, 0.001)

    result = try_connect(b, "c", 1.0, dial)
    assert result.attempts[0].endpoint == sticky and result.endpoint != sticky
    assert b.affinity["c"].endpoint == result.endpoint


def test_no_endpoints() -> None:
    b = RoundRobinBalancer()
    assert try_connect(b, "c", 0.0, lambda e, t: DialResult(DialOutcome.CONNECTED)).reason == (
        "no endpoints"
    )


def test_copy_cost_and_crash() -> None:
    assert CopyCost().per_request_s == pytest.approx(100e-6)
    with pytest.raises(ValueError):
        CopyCost(-1.0)
    assert "refused" in after_crash("tcp") and "ICMP" in after_crash("udp")
