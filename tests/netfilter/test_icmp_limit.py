"""The kernel's ICMP error limits: per-destination bucket, host-wide credit, loopback."""

from __future__ import annotations

from typing import cast

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from svcsim.netfilter.icmp_limit import IcmpRateLimit, IcmpSysctls, IcmpVerdict, jiffies


class _Draws:
    """A stand-in Generator whose host-wide consumption is always ``value``."""

    def __init__(self, value: int) -> None:
        self.value = value

    def integers(self, low: int, high: int) -> int:
        assert (low, high) == (0, 3)
        return self.value


def _fixed(value: int) -> np.random.Generator:
    return cast(np.random.Generator, _Draws(value))


def _sent(limit: IcmpRateLimit, times: list[float], dst: str = "10.244.1.5", **kw: bool) -> int:
    rng = _fixed(0)  # no host-wide consumption: the per-destination bucket alone
    loopback = kw.get("loopback", False)
    return sum(limit.send(dst, t, loopback=loopback, rng=rng).sent for t in times)


@pytest.mark.parametrize(
    ("times", "sysctls", "expected"),
    [
        # A new destination: a full bucket, 6 messages at once, then none.
        ([0.0] * 7, IcmpSysctls(), 6),
        # Every 10 ms for 10 s: 6 in the first 50 ms (tokens 6000 -> 50), the 7th when the
        # bucket is back at 1000 jiffies (t = 1.000 s), then one a second: 6 + 9.
        ([k / 100 for k in range(1000)], IcmpSysctls(), 15),
        # 100 ms per message: a burst of 6 (= 600 ms of tokens), then one per 100 ms.
        ([k / 100 for k in range(100)], IcmpSysctls(ratelimit_ms=100), 6 + 9),
        # icmp_ratelimit 0: no per-destination limit.
        ([0.0] * 100, IcmpSysctls(ratelimit_ms=0), 100),
        # Bit 3 cleared from the mask: destination-unreachable is never limited.
        ([0.0] * 100, IcmpSysctls(ratemask=0x1810), 100),
        # Spaced exactly one icmp_ratelimit apart: every one (tokens never run out).
        ([float(k) for k in range(20)], IcmpSysctls(), 20),
    ],
)
def test_per_destination_bucket(times: list[float], sysctls: IcmpSysctls, expected: int) -> None:
    assert _sent(IcmpRateLimit(sysctls), times) == expected


def test_the_bucket_refills_by_elapsed_jiffies_up_to_six() -> None:
    limit = IcmpRateLimit()
    assert _sent(limit, [0.0] * 6) == 6
    assert _sent(limit, [0.999]) == 0  # 999 jiffies of tokens: one short
    assert _sent(limit, [1.0]) == 1
    assert _sent(limit, [100.0] * 7) == 6  # long idle: capped at 6 x 1000, not 99


def test_destinations_have_their_own_buckets() -> None:
    limit = IcmpRateLimit()
    assert _sent(limit, [0.0] * 10, dst="10.244.1.5") == 6
    assert _sent(limit, [0.0] * 10, dst="10.244.1.6") == 6


def test_loopback_skips_the_per_destination_bucket() -> None:
    limit = IcmpRateLimit()
    assert _sent(limit, [k / 10 for k in range(100)], dst="192.168.0.10", loopback=True) == 100
    assert limit.peers == {}


@given(st.lists(st.integers(min_value=0, max_value=20_000), min_size=1, max_size=200))
def test_never_more_than_burst_plus_refill(steps: list[int]) -> None:
    """Over any sequence of sends: at most 6 + (span / icmp_ratelimit) go out."""
    times = list(np.cumsum(steps) / 1000.0)
    limit = IcmpRateLimit()
    verdicts = [limit.send("d", t, loopback=False, rng=_fixed(0)).sent for t in times]
    span = jiffies(times[-1]) - jiffies(times[0])
    assert sum(verdicts) <= 6 + span // 1000
    # Sends at least icmp_ratelimit apart (after the first) always go out.
    if all(s >= 1000 for s in steps[1:]):
        assert all(verdicts)


def test_the_host_wide_credit_limits_many_destinations() -> None:
    # Each message takes 2 credits: the initial refill (burst 50) lets 25 out at one instant.
    limit = IcmpRateLimit()
    rng = _fixed(2)
    verdicts = [limit.send(f"10.244.{k // 250}.{k % 250}", 0.0, loopback=False, rng=rng)
                for k in range(100)]  # fmt: skip
    assert verdicts.count(IcmpVerdict.SENT) == 25
    assert verdicts.count(IcmpVerdict.GLOBAL_LIMITED) == 75
    assert limit.credit == 0
    # Less than HZ/50 (20 ms) later: no refill; at 20 ms: icmp_msgs_per_sec x 0.02 = 20.
    assert not limit.send("10.0.0.1", 0.019, loopback=False, rng=rng).sent
    assert limit.send("10.0.0.1", 0.020, loopback=False, rng=rng).sent
    assert limit.credit == 18
    # Host-wide limits apply over loopback too (only the per-destination check is skipped).
    limit.credit = 0
    assert limit.send("192.168.0.10", 0.021, loopback=True, rng=rng) is IcmpVerdict.GLOBAL_LIMITED


def test_a_per_destination_refusal_takes_no_host_wide_credit() -> None:
    limit = IcmpRateLimit()
    rng = _fixed(1)
    assert _sent(limit, [0.0] * 6) == 6  # (no consumption there)
    before = limit.credit
    assert limit.send("10.244.1.5", 0.0, loopback=False, rng=rng) is IcmpVerdict.PEER_LIMITED
    assert limit.credit == before


def test_seeded_consumption_averages_one_credit() -> None:
    # 1,000 destinations at 2,000 messages a second for 1 s: about 1,000 + 50 go out.
    limit = IcmpRateLimit()
    rng = np.random.default_rng(1)
    sent = sum(limit.send(f"d{k}", k / 2000, loopback=False, rng=rng).sent for k in range(2000))
    assert 950 <= sent <= 1150


def test_reset_forgets_peers_and_credit() -> None:
    limit = IcmpRateLimit()
    _sent(limit, [0.0] * 10)
    limit.reset()
    assert limit.peers == {} and limit.credit == 0 and limit.stamp is None
    assert _sent(limit, [0.0] * 10) == 6


@pytest.mark.parametrize("field", ["ratelimit_ms", "ratemask", "msgs_per_sec", "msgs_burst"])
def test_negative_sysctls_are_refused(field: str) -> None:
    with pytest.raises(ValueError, match=f"negative {field}"):
        IcmpSysctls(**{field: -1})
