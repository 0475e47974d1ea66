"""Where requests go: pod churn, pinned keep-alive connections, the source article's Services."""

from __future__ import annotations

import pytest

from svcsim.results import Cause, Outcome, shares_over_time
from tests.scenarios.conftest import ShippedRun
from tests.scenarios.timing import (
    event_times,
    events,
    failures,
    first_sync,
    requests,
    scheduled_ips,
    timing,
    windows_on,
)

# --- pod-churn ------------------------------------------------------------------------------


def test_pod_churn_every_deletion_and_crash_opens_a_window_on_every_node(
    shipped_run: ShippedRun,
) -> None:
    run = shipped_run("pod-churn")
    t = timing("pod-churn")
    deleted = event_times(run, "pod-terminating", "default/web-")
    crashed = event_times(run, "pod-crashed", "default/web-")
    assert len(deleted) == 5 and len(crashed) == 5
    assert len(run.windows) == 3 * (len(deleted) + len(crashed))
    for at in deleted:
        for node in t.nodes:
            (window,) = windows_on(run, node, at, 0.5).itertuples(index=False)
            # Stale rules send to a Pod that stopped accepting at its deletion.
            assert window.cause in (Cause.STALE_RULE.value, Cause.POD_TERMINATING.value)
            assert window.end_s - at < 2.5
    for at in crashed:
        for node in t.nodes:
            (window,) = windows_on(run, node, at - 0.05, 0.55).itertuples(index=False)
            # The rules are right; the Pod is not (until readiness fails 3 probes later).
            assert window.cause == Cause.POD_CRASHED.value
            assert 3.5 < window.end_s - at < 7.5
    outcomes = set(failures(run)["outcome"])
    assert {Outcome.REFUSED.value, Outcome.TIMEOUT.value} <= outcomes


def test_pod_churn_shares_shift_to_replacements(shipped_run: ShippedRun) -> None:
    run = shipped_run("pod-churn")
    deleted = events(run, "pod-terminating", "default/web-")
    all_ips = scheduled_ips(run, "default/web-")
    assert len(all_ips) == 4 + len(deleted)
    shares = shares_over_time(run.requests, 15.0)
    first = set(shares.loc[shares["bin_start_s"] == 0.0, "endpoint"])
    last = set(shares.loc[shares["bin_start_s"] == shares["bin_start_s"].max(), "endpoint"])
    assert len(first) == 4 and first != last
    assert set(run.endpoints["endpoint"]) == {f"{ip}:8080" for ip in all_ips.values()}
    for row in deleted.itertuples(index=False):
        gone = f"{all_ips[str(row.object)]}:8080"
        later = requests(run, since_s=float(row.t_s) + 3.0)
        assert gone not in set(later["endpoint"]), gone


# --- keepalive-imbalance --------------------------------------------------------------------


def test_keepalive_new_pods_get_almost_nothing_after_scale_up(shipped_run: ShippedRun) -> None:
    run = shipped_run("keepalive-imbalance")
    t = timing("keepalive-imbalance")
    (scaled,) = event_times(run, "scale", "default/web")[:1]
    new_ips = scheduled_ips(run, "default/web-", since_s=scaled)
    assert len(new_ips) == 3
    ready = max(event_times(run, "pod-ready", "default/web-"))
    # Every node's rules hold the new Pods soon after they are Ready.
    for node in t.nodes:
        assert bool(first_sync(run, node, ready + t.api_watch_s)["ok"])
    after = requests(run, since_s=ready + 2.0)
    assert len(after) > 10_000
    new = {f"{ip}:8080" for ip in new_ips.values()}
    new_share = after["endpoint"].isin(new).mean() / len(new)
    per_pod_if_balanced = 1 / 6
    assert new_share < 0.1 * per_pod_if_balanced
    # Because nothing reconnects: 3 clients x 4 connections, all opened at the start.
    assert int(run.requests["new_flow"].sum()) == 12
    assert run.requests["conn_id"].nunique() == 12
    assert float(run.requests.loc[run.requests["new_flow"], "t_s"].max()) < scaled
    assert run.summary["requests"]["failed"] == 0


# --- seed-article ---------------------------------------------------------------------------

GATEWAY = "default/ccs-gateway-clusterip:http"
NODEPORT = "default/ccs-gateway-nodeport:http"


def test_seed_article_no_endpoints_rejects_and_outside_endpoints_answer(
    shipped_run: ShippedRun,
) -> None:
    run = shipped_run("seed-article")
    fake = requests(run, service="default/fake-endpoint:80")
    assert len(fake) > 100
    assert (fake["endpoint"] == "").all()
    # REJECTed: refused at once while the node's ICMP limits let the error out (a burst of 6
    # per client, then one a second), else the client waits its connect timeout (1 s).
    refused = fake["outcome"] == Outcome.REFUSED.value
    assert (fake.loc[refused, "cause"] == Cause.NO_ENDPOINTS.value).all()
    assert (fake.loc[refused, "latency_s"] == 0).all()
    limited = fake[~refused]
    assert (limited["outcome"] == Outcome.TIMEOUT.value).all()
    assert (limited["cause"] == Cause.ICMP_RATE_LIMITED.value).all()
    assert (limited["latency_s"] == 1.0).all()
    for _, mine in fake.groupby("client", observed=True):
        span = float(mine["t_s"].max() - mine["t_s"].min())
        allowed = int((mine["outcome"] == Outcome.REFUSED.value).sum())
        assert 0.5 * span <= allowed <= 6 + span + 0.001
    for service, endpoint in (
        ("default/external-endpoint:http", "10.124.142.43:80"),
        ("default/my-service-without-selector", "192.0.2.42:9376"),
    ):
        sent = requests(run, service=service)
        assert len(sent) > 100
        assert (sent["outcome"] == Outcome.OK.value).all()
        assert set(sent["endpoint"]) == {endpoint}


@pytest.mark.parametrize("service", [GATEWAY, NODEPORT])
def test_seed_article_gateway_spread_and_bare_pod_deletion(
    shipped_run: ShippedRun, service: str
) -> None:
    run = shipped_run("seed-article")
    t = timing("seed-article")
    (deleted_at,) = event_times(run, "pod-terminating", "default/ccs-gateway-")
    (victim,) = events(run, "pod-terminating", "default/ccs-gateway-")["object"]
    gateways = scheduled_ips(run, "default/ccs-gateway-")
    assert len(gateways) == 3, "a bare Pod is not replaced"
    before = requests(run, service=service, until_s=deleted_at)
    shares = before["endpoint"].astype(str).value_counts(normalize=True)
    assert set(shares.index) == {f"{ip}:80" for ip in gateways.values()}
    assert all(abs(s - 1 / 3) < 0.05 for s in shares)
    if service == NODEPORT:
        assert set(before["client"]) == {"external@node-2"}
    # Failing from the deletion until each node's next sync, with stale rules.
    w = run.windows.loc[lambda x: x["service"] == service]
    assert set(w["cause"]) == {Cause.STALE_RULE.value}
    for window in w.itertuples(index=False):
        visible = deleted_at + t.api_watch_s + t.kube_proxy_watch_s(window.node)
        sync = first_sync(run, window.node, visible)
        assert deleted_at <= window.start_s and window.end_s <= sync["end_s"]
    after = requests(run, service=service, since_s=deleted_at + 1.0)
    assert (after["outcome"] == Outcome.OK.value).all()
    shares_after = after["endpoint"].astype(str).value_counts(normalize=True)
    survivors = {f"{ip}:80" for pod, ip in gateways.items() if pod != victim}
    assert set(shares_after.index) == survivors
    assert all(abs(s - 1 / 2) < 0.06 for s in shares_after)
