"""Tying control-plane events to Services, Pods and nodes (svcsim.plots.events)."""

from __future__ import annotations

import numpy as np
import pytest

from svcsim.plots.events import (
    ProxyOutage,
    nodes,
    pod_events,
    pod_name,
    proxy_outages,
    service_key,
    services,
    slice_update_times,
)
from svcsim.results import Recorder, Run
from tests.plots.synthetic import mem_run


@pytest.mark.parametrize(
    ("service", "key"),
    [
        ("default/web:80", "default/web"),
        ("default/web", "default/web"),
        ("kube-system/kube-dns:53", "kube-system/kube-dns"),
    ],
)
def test_service_key(service: str, key: str) -> None:
    assert service_key(service) == key


@pytest.mark.parametrize(
    ("obj", "expected"),
    [("pod/default/web-1", "web-1"), ("default/web-1", "web-1"), ("web-2", "web-2")],
)
def test_pod_name(obj: str, expected: str) -> None:
    assert pod_name(obj) == expected


def _with_requests(rec: Recorder, service: str, pod: str, n: int = 2) -> None:
    t = np.arange(n, dtype=np.float64) + 0.5
    rec.add_requests(
        t_s=t,
        end_s=t + 0.01,
        latency_s=np.full(n, 0.01),
        workload="w",
        client="c",
        src_node="node-1",
        service=service,
        attempt=np.zeros(n, dtype=np.int16),
        conn_id=np.full(n, -1, dtype=np.int64),
        new_flow=np.ones(n, dtype=bool),
        endpoint="10.0.0.1:80",
        pod=pod,
        outcome="ok",
        cause="",
    )


@pytest.mark.parametrize(
    ("obj", "detail", "web", "api"),
    [
        ("service/default/web", "", [1.0], []),
        ("endpoints/default/web", "", [1.0], []),
        ("endpointslice/default/web-x7k2p", "", [1.0], []),
        ("endpointslice/default/web", "", [1.0], []),
        ("endpointslice/default/abcde", "service=default/web:80 endpoints=3", [1.0], []),
        # What the simulation writes: the slice key and a service= token (which wins).
        ("default/web-x7k2p", "service=default/web ready=3 serving=3", [1.0], []),
        ("default/web-api-x7k2p", "service=default/web deleted", [1.0], []),
        ("default/web-x7k2p", "", [1.0], []),
        # A generated suffix is 5 characters: web-api-xxxxx belongs to web-api, not web.
        ("endpointslice/default/web-api-x7k2p", "", [], []),
    ],
)
def test_slice_updates_are_tied_to_their_service(
    obj: str, detail: str, web: list[float], api: list[float]
) -> None:
    rec = Recorder()
    rec.add_event(1.0, "slice-updated", object=obj, detail=detail)
    rec.add_event(2.0, "slice-updated", object="endpointslice/default/api-qqqqq")
    run = mem_run(rec)
    assert slice_update_times(run, "default/web:80").tolist() == web
    assert slice_update_times(run, "default/api:8080").tolist() == [*api, 2.0]
    assert slice_update_times(run).tolist() == [1.0, 2.0]


def test_unattributable_slice_updates_count_for_every_service() -> None:
    rec = Recorder()
    rec.add_event(3.0, "slice-updated", object="something", detail="opaque")
    rec.add_event(1.0, "slice-updated")
    run = mem_run(rec)
    assert slice_update_times(run, "default/web:80").tolist() == [1.0, 3.0]


def test_pod_events_follow_the_requests_that_reached_the_pod() -> None:
    rec = Recorder()
    _with_requests(rec, "default/web:80", "default/web-1")
    _with_requests(rec, "default/api:80", "default/api-1")
    for pod in ("web-1", "api-1", "lonely-1"):
        rec.add_event(1.0, "pod-ready", node="node-2", object=f"default/{pod}")
    rec.add_event(2.0, "pod-crashed", node="node-2", object="pod/default/web-1")
    rec.add_event(0.5, "slice-updated")  # not a Pod event
    run = mem_run(rec)
    assert services(run) == ["default/api:80", "default/web:80"]
    web = pod_events(run, "default/web:80")
    assert sorted(web["pod"]) == ["lonely-1", "web-1", "web-1"]
    assert list(web["kind"]) == ["pod-ready", "pod-ready", "pod-crashed"]
    assert sorted(pod_events(run, "default/api:80")["pod"]) == ["api-1", "lonely-1"]
    everything = pod_events(run)
    assert sorted(everything["pod"]) == ["api-1", "lonely-1", "web-1", "web-1"]
    assert set(everything["node"]) == {"node-2"}


def _outage_run(events: list[tuple[float, str, str]]) -> Run:
    rec = Recorder()
    for t, kind, node in events:
        rec.add_event(t, kind, node=node)
    return mem_run(rec)


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        (
            [(1.0, "proxy-crashed", "n1"), (4.0, "proxy-restarted", "n1")],
            [ProxyOutage("n1", 1.0, 4.0, restarted=True)],
        ),
        ([(2.0, "proxy-crashed", "n2")], [ProxyOutage("n2", 2.0, 10.0, restarted=False)]),
        ([(2.0, "proxy-restarted", "n1")], []),
        (
            # A second crash while down changes nothing; a later crash is a new outage.
            [
                (1.0, "proxy-crashed", "n1"),
                (2.0, "proxy-crashed", "n1"),
                (3.0, "proxy-restarted", "n1"),
                (5.0, "proxy-crashed", "n1"),
                (6.0, "proxy-restarted", "n1"),
            ],
            [ProxyOutage("n1", 1.0, 3.0, True), ProxyOutage("n1", 5.0, 6.0, True)],
        ),
    ],
)
def test_proxy_outages(events: list[tuple[float, str, str]], expected: list[ProxyOutage]) -> None:
    assert proxy_outages(_outage_run(events), span_s=10.0) == expected


def test_nodes_are_sorted_naturally_and_skip_blank() -> None:
    rec = Recorder()
    for node in ("node-10", "node-2", ""):
        rec.add_event(0.0, "fault", node=node)
    rec.add_conntrack_sample(0.0, "node-1", 1, 10)
    assert nodes(mem_run(rec)) == ["node-1", "node-2", "node-10"]
