"""node-local-dns's cache: success and denial TTL caps, the minimum, remaining TTL, per node."""

from __future__ import annotations

import pytest

from svcsim.k8s.dns import Addresses, NoSuchName
from svcsim.sim.nodelocaldns import NodeLocalConfig, NodeLocalDns

WEB = Addresses(("10.96.0.80",), "default/web", headless=False)


def _cache(success: int = 30, denial: int = 5) -> NodeLocalDns:
    return NodeLocalDns(NodeLocalConfig("169.254.20.10", success, denial))


@pytest.mark.parametrize(
    ("answer", "ttl", "kept", "given"),
    [
        pytest.param(WEB, 30, 30, 30, id="ttl 30 answer: kept 30 s"),
        pytest.param(WEB, 300, 30, 30, id="capped at success 30"),
        pytest.param(WEB, 2, 5, 2, id="at least the 5 s minimum; the client gets 2"),
        pytest.param(NoSuchName(), 30, 5, 5, id="NXDOMAIN: denial 5"),
    ],
)
def test_cache_keeps_answers_for_their_capped_ttl(
    answer: Addresses | NoSuchName, ttl: int, kept: int, given: int
) -> None:
    cache = _cache()
    assert cache.store("node-1", "web.default.svc.cluster.local", answer, ttl, 10.0) == given
    assert cache.cached("node-1", "web.default.svc.cluster.local", 10.0 + kept - 1e-6) is not None
    assert cache.cached("node-1", "web.default.svc.cluster.local", 10.0 + kept) is None


def test_hits_give_the_remaining_ttl_in_whole_seconds_and_nodes_do_not_share() -> None:
    cache = _cache()
    cache.store("node-1", "web.default.svc.cluster.local", WEB, 30, 100.0)
    assert cache.cached("node-1", "web.default.svc.cluster.local", 112.7) == (WEB, 18)
    assert cache.cached("node-2", "web.default.svc.cluster.local", 112.7) is None


def test_a_zero_cap_caches_nothing() -> None:
    cache = _cache(success=0)
    assert cache.store("node-1", "web.default.svc.cluster.local", WEB, 30, 0.0) == 30
    assert cache.cached("node-1", "web.default.svc.cluster.local", 0.0) is None
