"""When a query pair loses the insert race: the gates, the kernel rule and the draw's share."""

from __future__ import annotations

import numpy as np
import pytest

from svcsim.k8s.dns import ResolvConf
from svcsim.netfilter.conntrack_clash import KernelVersion
from svcsim.traffic.dns_race import RaceSettings, draw_clash, uniform
from svcsim.traffic.resolver import split_seed

PLAIN = ResolvConf(("default.svc.cluster.local",))
WINNER = "10.244.0.5:53"
OTHER = "10.244.1.5:53"


def _clashes(
    settings: RaceSettings | None,
    *,
    conf: ResolvConf = PLAIN,
    node: str = "node-1",
    mode: str = "iptables",
    loser: str | None = OTHER,
    n: int = 4000,
) -> int:
    return sum(
        draw_clash(settings, conf, node, mode, WINNER, seed, split_seed, lambda _: loser)
        is not None
        for seed in range(n)
    )


OLD = RaceSettings(1.0, KernelVersion(4, 19), frozenset({"small"}))


@pytest.mark.parametrize(
    ("settings", "kwargs"),
    [
        pytest.param(None, {}, id="no settings"),
        pytest.param(RaceSettings(0.0, KernelVersion(4, 19)), {}, id="probability 0"),
        pytest.param(RaceSettings(1.0, KernelVersion(5, 7)), {}, id="kernel 5.7"),
        pytest.param(RaceSettings(1.0, KernelVersion(5, 4)), {"loser": WINNER}, id="5.4 same Pod"),
        pytest.param(OLD, {"node": "small"}, id="1-CPU node"),
        pytest.param(OLD, {"mode": "ipvs"}, id="IPVS node"),
        pytest.param(OLD, {"mode": "userspace"}, id="userspace node"),
        pytest.param(OLD, {"conf": ResolvConf(("a",), single_request=True)}, id="single-request"),
        pytest.param(
            OLD, {"conf": ResolvConf(("a",), single_request_reopen=True)}, id="single-req-reopen"
        ),
        pytest.param(OLD, {"conf": ResolvConf(("a",), use_vc=True)}, id="use-vc"),
    ],
)
def test_no_query_is_lost(settings: RaceSettings | None, kwargs: dict[str, object]) -> None:
    assert _clashes(settings, n=200, **kwargs) == 0  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kernel", "loser", "mode"),
    [
        pytest.param(KernelVersion(4, 19), WINNER, "iptables", id="4.19 drops even the same Pod"),
        pytest.param(KernelVersion(5, 4), OTHER, "iptables", id="5.4 drops different Pods"),
        pytest.param(KernelVersion(5, 4), None, "nftables", id="5.4: no room for the loser"),
    ],
)
def test_every_race_loses_a_query_where_the_kernel_drops(
    kernel: KernelVersion, loser: str | None, mode: str
) -> None:
    assert _clashes(RaceSettings(1.0, kernel), loser=loser, mode=mode, n=200) == 200


@pytest.mark.parametrize("p", [0.02, 0.25, 0.6])
def test_the_share_of_lost_pairs_is_the_probability(p: float) -> None:
    n = 20_000
    k = _clashes(RaceSettings(p, KernelVersion(4, 19)), n=n)
    assert abs(k - n * p) <= 4.5 * np.sqrt(n * p * (1 - p))  # binomial, fixed seeds


def test_which_query_is_lost_is_a_fair_draw_and_uniform_is_in_range() -> None:
    lost = [
        draw_clash(OLD, PLAIN, "node-1", "iptables", WINNER, s, split_seed, lambda _: OTHER)
        for s in range(4000)
    ]
    a = sum(c is not None and c.lost == "A" for c in lost)
    assert abs(a - 2000) <= 4.5 * np.sqrt(1000)
    draws = [uniform(split_seed(s, 1)) for s in range(1000)] + [uniform(2**64 - 1), uniform(0)]
    assert all(0.0 <= u < 1.0 for u in draws)
