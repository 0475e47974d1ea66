"""One significance level and one wording for every uniformity verdict; who is not tested."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from svcsim.k8s.objects import (
    ObjectMeta,
    Service,
    ServicePort,
    ServiceType,
    SessionAffinity,
    TrafficPolicy,
)
from svcsim.results import build_summary, stable_intervals
from svcsim.results.uniformity import (
    UNIFORMITY_ALPHA,
    uniformity_verdict,
    untested_service_ports,
)
from tests.plots.synthetic import build_run


@pytest.mark.parametrize(
    ("p_value", "reason", "expected"),
    [
        (0.021, None, "consistent with uniform (p ≥ 0.001)"),
        (UNIFORMITY_ALPHA, None, "consistent with uniform (p ≥ 0.001)"),  # the level itself
        (0.000999, None, "NOT uniform (p < 0.001)"),
        (math.nan, None, "not tested (no spread to test)"),
        (None, None, "not tested (no spread to test)"),
        (1e-9, "sessionAffinity ClientIP", "not tested (sessionAffinity ClientIP)"),
    ],
)
def test_verdict_states_its_level(p_value: float | None, reason: str | None, expected: str) -> None:
    assert uniformity_verdict(p_value, not_tested=reason) == expected


def _service(name: str, **spec: object) -> Service:
    ports = (ServicePort(80, name="http", node_port=30080), ServicePort(443, name="https"))
    return Service(ObjectMeta(name), cluster_ip="10.96.0.9", ports=ports, **spec)  # type: ignore[arg-type]


def test_untested_service_ports() -> None:
    services = [
        _service("plain"),
        _service("sticky", session_affinity=SessionAffinity.CLIENT_IP),
        _service("local-np", type=ServiceType.NODE_PORT,
                 external_traffic_policy=TrafficPolicy.LOCAL),
        # eTP Local without any external address: its only traffic is ClusterIP traffic.
        _service("local-inside", external_traffic_policy=TrafficPolicy.LOCAL),
        # iTP Local: each node's recorded set is its local endpoints, so it is tested.
        _service("itp-local", internal_traffic_policy=TrafficPolicy.LOCAL),
    ]  # fmt: skip
    assert untested_service_ports(services) == {
        "default/sticky:http": "sessionAffinity ClientIP",
        "default/sticky:https": "sessionAffinity ClientIP",
        "default/local-np:http": "externalTrafficPolicy Local",
        "default/local-np:https": "externalTrafficPolicy Local",
    }


def test_summary_stores_the_verdict_and_no_p_value_when_untested(tmp_path: Path) -> None:
    run = build_run(tmp_path / "run")
    frames = {"requests": run.requests, "syncs": run.syncs, "events": run.events}
    # One interval per Service over the whole run, with every endpoint it reached.
    changes = [
        (0.0, str(service), set(group["endpoint"].astype(str)))
        for service, group in run.endpoints.groupby("service", observed=True)
    ]
    intervals = stable_intervals(changes)
    tested = build_summary(frames, [], seed=1, intervals=intervals)["uniformity"]
    assert tested and all("0.001" in u["verdict"] for u in tested.values())
    service = sorted(tested)[0]
    summary = build_summary(
        frames, [], seed=1, intervals=intervals, untested={service: "sessionAffinity ClientIP"}
    )
    row = summary["uniformity"][service]
    assert row["verdict"] == "not tested (sessionAffinity ClientIP)"
    assert (row["statistic"], row["dof"], row["p_value"]) == (None, None, None)
    assert row["flows"] == tested[service]["flows"]
