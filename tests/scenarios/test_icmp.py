"""icmp-rate-limit: a Service scaled to zero, its REJECTs' ICMP errors rate-limited per client.

The shipped run's story (docs/icmp.md): the client Pod's connections are refused 6 at once,
then about one a second; the others retransmit their SYN and time out, or connect late once
the Service is back; the host-network client on the same node is refused every time. (Both
engines give the same records on it: test_causes.py, and in every mode test_*mode*.py.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pytest

from svcsim.explain import explain
from svcsim.netfilter.tcp_syn import TcpSynSysctls
from svcsim.scenario.build import build_world
from svcsim.scenario.load import load_scenario
from svcsim.traffic import ReferenceEngine, TrafficEngine
from tests.scenarios.conftest import ShippedRun

CONNECT_TIMEOUT_S = 5.0
"""The scenario's connectTimeout (both workloads)."""


def test_refused_six_at_once_then_about_one_a_second(shipped_run: ShippedRun) -> None:
    r = shipped_run("icmp-rate-limit").requests
    pod = r[r["workload"] == "frontend-to-web"]
    refused = pod[pod["cause"] == "no-endpoints"]
    sent = np.sort(refused["end_s"].to_numpy())  # when each error reached the client
    assert sent[5] - sent[0] < 0.1  # the burst: 6 errors within a few connections
    # Then the bucket refills one error per icmp_ratelimit (1 s): the (6 + k)-th error comes
    # k seconds after the first at the earliest (a jiffy of rounding) ...
    k = np.arange(1, len(sent) - 5)
    assert len(k) >= 4 and (sent[6:] - sent[0] >= k - 0.001).all()
    # ... and about then: SYNs keep coming, so each token is taken as soon as it is there.
    assert np.median(np.diff(sent[5:])) < 1.1


def test_the_others_time_out_or_connect_late(shipped_run: ShippedRun) -> None:
    r = shipped_run("icmp-rate-limit").requests
    pod = r[r["workload"] == "frontend-to-web"]
    limited = pod[pod["cause"] == "icmp-rate-limited"]
    assert len(limited) > 100
    assert (limited["outcome"] == "timeout").all()
    assert np.allclose(limited["latency_s"], CONNECT_TIMEOUT_S)
    # Late connections: started while REJECTed, served after a retransmit (+1 .. +4 s).
    start = float(limited["t_s"].min())
    late = pod[(pod["outcome"] == "ok") & (pod["t_s"] > start) & (pod["latency_s"] >= 1.0)]
    assert len(late) > 50
    retransmits = [o for o in TcpSynSysctls().schedule().retransmits_s if o < CONNECT_TIMEOUT_S]
    waited = late["latency_s"].to_numpy()
    assert all(any(o <= x < o + 0.5 for o in retransmits) for x in waited)


def test_the_host_client_is_always_refused(shipped_run: ShippedRun) -> None:
    r = shipped_run("icmp-rate-limit").requests
    host = r[r["workload"] == "node-1-to-web"]
    assert (host["cause"] == "no-endpoints").sum() > 100
    assert "icmp-rate-limited" not in set(host["cause"])
    assert (host.loc[host["outcome"] != "ok", "latency_s"] == 0.0).all()


def test_explain_names_the_reject_and_the_errors_sent(shipped_run: ShippedRun) -> None:
    run = shipped_run("icmp-rate-limit")
    r = run.requests
    row = int(np.flatnonzero((r["cause"] == "icmp-rate-limited").to_numpy())[0])
    explained = explain(run.path, row)
    pod_ip = "10.244."  # the client Pod's address, not the Service's
    assert explained.cause.startswith("REJECT by node-")
    assert f"port-unreachable to {pod_ip}" in explained.cause
    assert "was rate-limited (" in explained.cause and "sent to it in the 6 s" in explained.cause


DNS_WITHOUT_COREDNS = """\
apiVersion: svcsim/v1
kind: Scenario
seed: 2
duration: 12s
cluster:
  nodes: 2
  dns: {replicas: 0}
  sysctls: {SYSCTLS}
manifests:
  - inline: |
      apiVersion: v1
      kind: Service
      metadata: {name: web}
      spec:
        clusterIP: 10.96.0.80
        selector: {app: web}
        ports: [{name: http, port: 80, targetPort: 8080}]
      ---
      apiVersion: apps/v1
      kind: Deployment
      metadata: {name: client}
      spec:
        replicas: 1
        selector: {matchLabels: {app: client}}
        template:
          metadata: {labels: {app: client}}
          spec: {containers: [{name: c, image: c}]}
workloads:
  - {name: lookups, from: {pods: {app: client}}, to: "dns:web:80", rate: 4}
"""
"""kube-dns without a CoreDNS Pod: every query REJECTed, 4 lookups a second from one Pod."""


@pytest.mark.parametrize(
    ("sysctls", "causes"),
    [
        ("{}", {"dns-refused", "dns-timeout"}),  # limited tries get no answer: 5 s each
        ("{net.ipv4.icmp_ratemask: 0}", {"dns-refused"}),  # no limit: refused at once
    ],
)
def test_dns_queries_refused_only_while_the_errors_go_out(
    tmp_path: Path, sysctls: str, causes: set[str]
) -> None:
    path = tmp_path / "dns.yaml"
    path.write_text(DNS_WITHOUT_COREDNS.replace("{SYSCTLS}", sysctls), encoding="utf-8")
    frames = []
    for engine in (TrafficEngine, ReferenceEngine):
        world = build_world(load_scenario(path), 2, engine=engine)
        world.run()
        frames.append(world.recorder.frames()["requests"])
    pd.testing.assert_frame_equal(frames[0], frames[1])
    requests = frames[0]
    assert len(requests) > 20
    assert set(requests["cause"].astype(str)) == causes
