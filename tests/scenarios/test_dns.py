"""DNS end to end: exact lookup latencies, caching, failures, headless spread, both engines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pytest

from svcsim.explain import explain
from svcsim.traffic.engine import TrafficEngine
from svcsim.traffic.reference import ReferenceEngine
from tests.scenarios.conftest import ShippedRun, run_without_figures, scenario_path
from tests.scenarios.dns_cases import (
    ATTEMPTS,
    COREDNS_S,
    LATER_AT_S,
    OUTAGE_AT_S,
    TEXT,
    TIMEOUT_S,
    WEB_S,
    dns_requests,
)
from tests.scenarios.engines import shipped_requests

WATCH_S = 0.05
"""cluster.delays.apiWatch: CoreDNS's informer lag."""
CACHE_S = 30.0
"""``cache 30`` (dns-headless caches the cluster's records: cacheClusterDomain)."""
TTL_S = 30.0
"""``ttl 30`` of CoreDNS's records."""


@pytest.fixture(scope="module")
def requests(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return dns_requests(tmp_path_factory.mktemp("dns"), TrafficEngine)


def _of(requests: pd.DataFrame, workload: str) -> pd.DataFrame:
    return requests[requests.workload == workload]


@pytest.mark.parametrize(
    ("workload", "names"),
    [
        pytest.param("short", 1, id="web: the first search domain answers"),
        pytest.param("fqdn", 4, id="4 dots < ndots 5: three NXDOMAIN names first"),
        pytest.param("dot", 1, id="final dot: asked as is only"),
    ],
)
def test_a_lookup_costs_one_exchange_per_name_tried(
    requests: pd.DataFrame, workload: str, names: int
) -> None:
    ok = _of(requests, workload)
    ok = ok[ok.t_s < OUTAGE_AT_S]
    assert (ok.outcome == "ok").all()
    assert np.allclose(ok.latency_s, names * COREDNS_S + WEB_S, rtol=0, atol=1e-12)


def test_a_name_that_does_not_exist_yet_is_nxdomain_until_coredns_sees_it(
    requests: pd.DataFrame,
) -> None:
    later = _of(requests, "later")
    later = later[later.t_s < OUTAGE_AT_S]
    nx = later[later.cause == "dns-nxdomain"]
    assert len(nx) > 50
    # Every name of the search list was asked and answered NXDOMAIN: 4 exchanges.
    assert np.allclose(nx.latency_s, 4 * COREDNS_S, rtol=0, atol=1e-12)
    assert (nx.outcome == "refused").all()
    # CoreDNS sees the Service one watch delay late (kubeadm's Corefile caches no cluster
    # name, so no NXDOMAIN outlives that) ...
    assert nx.t_s.max() < LATER_AT_S + WATCH_S
    assert (later[later.cause != "dns-nxdomain"].t_s > LATER_AT_S + WATCH_S).all()
    # ... and before the nodes' rules have it: DNS answers with a ClusterIP no rule handles
    # yet (then with no endpoints, until the EndpointSlice is programmed too).
    early = later[(later.t_s > LATER_AT_S) & (later.t_s < LATER_AT_S + 2.0)]
    assert {"no-service-rule", "no-endpoints"} <= set(early.cause)
    assert set(later.cause) == {"", "dns-nxdomain", "no-service-rule", "no-endpoints"}
    assert (later[later.t_s > LATER_AT_S + 2.0].outcome == "ok").all()


@pytest.mark.parametrize(
    ("workload", "names"),
    [
        pytest.param("dot", 1, id="final dot: one name"),
        pytest.param("short", 2, id="web.default.svc.cluster.local, then web as is"),
    ],
)
def test_no_answer_fails_after_timeout_times_attempts_per_name(
    requests: pd.DataFrame, workload: str, names: int
) -> None:
    timeouts = _of(requests, workload)
    timeouts = timeouts[timeouts.cause == "dns-timeout"]
    assert len(timeouts) > 20
    assert timeouts.t_s.min() > OUTAGE_AT_S
    assert (timeouts.src_node == "node-2").all()  # kube-proxy up on node-1: never
    assert (timeouts.outcome == "timeout").all()
    # res_search stops the search list at a name that times out, then asks the name as is.
    assert (timeouts.latency_s == names * TIMEOUT_S * ATTEMPTS).all()


def test_a_cached_answer_is_reused_until_its_ttl_runs_out(requests: pd.DataFrame) -> None:
    cached = _of(requests, "cached")
    assert (cached.outcome == "ok").all()
    looked_up = cached[np.isclose(cached.latency_s, COREDNS_S + WEB_S, rtol=0, atol=1e-12)]
    hits = cached[np.isclose(cached.latency_s, WEB_S, rtol=0, atol=1e-12)]
    assert len(looked_up) + len(hits) == len(cached)
    for _, times in looked_up.groupby("client").t_s:
        gaps = np.diff(times.to_numpy())
        # A new lookup only once the answer has expired: its TTL (30 s, fresh from CoreDNS's
        # informer) after the lookup ended; then at the client's next request.
        assert (gaps >= TTL_S + COREDNS_S).all() and (gaps < TTL_S + 2.0).all(), gaps
    # Without a cache (glibc), every request looks the name up.
    short = _of(requests, "short")
    assert (short[short.outcome == "ok"].latency_s > WEB_S).all()
    assert len(hits) > 10 * len(looked_up)


def test_both_engines_give_the_same_records(tmp_path: Path, requests: pd.DataFrame) -> None:
    reference = dns_requests(tmp_path, ReferenceEngine)
    pd.testing.assert_frame_equal(requests, reference)


def test_both_engines_agree_on_the_headless_scenario() -> None:
    path = scenario_path("dns-headless")
    pd.testing.assert_frame_equal(
        shipped_requests(path, TrafficEngine), shipped_requests(path, ReferenceEngine)
    )


def test_headless_spread_follows_the_shuffled_answers(shipped_run: ShippedRun) -> None:
    requests = shipped_run("dns-headless").requests
    db = requests[(requests.workload == "db-reader") & (requests.t_s < 30.0)]
    assert (db.outcome == "ok").all()
    assert set(db.service.astype(str)) == {"default/db:pg"}
    # The Pod IP itself, at the port the client dialled: no DNAT to a targetPort.
    shares = db.endpoint.astype(str).value_counts(normalize=True)
    assert len(shares) == 3 and all(e.endswith(":5432") for e in shares.index)
    assert shares.between(0.28, 0.39).all(), shares


def test_a_deleted_headless_pod_stays_in_cached_answers(shipped_run: ShippedRun) -> None:
    requests = shipped_run("dns-headless").requests
    stale = requests[requests.cause == "dns-stale"]
    assert len(stale) > 100
    assert stale.t_s.min() > 30.0
    assert stale.t_s.max() < 30.0 + WATCH_S + CACHE_S + 1.0
    assert (stale.outcome == "timeout").all()
    payments = requests[requests.workload == "payments"]
    assert (payments.outcome == "ok").all()


def test_explain_walks_a_headless_request_without_rules(shipped_run: ShippedRun) -> None:
    run = shipped_run("dns-headless")
    requests = run.requests
    row = int(np.flatnonzero((requests.cause == "dns-stale").to_numpy())[0])
    found = explain(run.path, row)
    rules = dict((s.title, s.lines) for s in found.steps)[
        f"Where do {requests.src_node.iloc[row]}'s rules send it?"
    ]
    assert rules[0].startswith("none: a headless Service has no rules")
    assert found.cause.endswith("came from a DNS answer, but no Pod held it any more")


def test_explain_shows_where_a_failed_lookups_queries_went(tmp_path: Path) -> None:
    path = tmp_path / "dns.yaml"
    path.write_text(TEXT, encoding="utf-8")
    run = run_without_figures(path, tmp_path / "run")
    row = int(np.flatnonzero((run.requests.cause == "dns-timeout").to_numpy())[0])
    found = explain(run.path, row)
    lines = [line for s in found.steps for line in s.lines]
    assert any("its queries went to kube-system/kube-dns:dns" in line for line in lines)
    assert any(":53 (DNAT)" in line for line in lines)
