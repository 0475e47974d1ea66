"""Keys whose rules branch beyond the dispatch index's bound are walked rule by rule, exactly.

A Service with more endpoints than :data:`~svcsim.netfilter.index.MAX_PATHS` (half as many
with ClientIP affinity: a recent check per endpoint) once ended a run with a traceback. Now the
batched engine walks such keys per flow, which must give the very records the index gives: the
same scenario is run with the bound lowered to 3 (every Service key here is too large) and at
its default, and the tables must be equal; the run tells the user which destinations were
walked.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pytest

from svcsim.netfilter.index import DispatchTooLargeError, build_dispatch
from svcsim.netfilter.packet import NodeNetwork, Packet
from svcsim.netfilter.text import parse_save
from svcsim.scenario.build import EngineFactory, build_world
from svcsim.scenario.load import load_scenario
from svcsim.traffic import ReferenceEngine, TrafficEngine
from tests.scenarios.engines import RECORD_KEY, with_proxy_mode

SCENARIO = """\
apiVersion: svcsim/v1
kind: Scenario
metadata: {name: walked-keys}
seed: 3
duration: 30s
cluster:
  nodes: 2
  proxy: {minSyncPeriod: 1s}
manifests:
  - inline: |
      apiVersion: v1
      kind: Service
      metadata: {name: web}
      spec:
        selector: {app: web}
        sessionAffinity: ClientIP
        ports: [{name: http, port: 80, targetPort: 8080}]
      ---
      apiVersion: v1
      kind: Service
      metadata: {name: api}
      spec:
        selector: {app: web}
        ports: [{name: http, port: 81, targetPort: 8080}]
      ---
      apiVersion: apps/v1
      kind: Deployment
      metadata: {name: web}
      spec:
        replicas: 4
        selector: {matchLabels: {app: web}}
        template:
          metadata: {labels: {app: web}}
          spec:
            containers: [{name: web, image: example/web:1, ports: [{containerPort: 8080}]}]
      ---
      apiVersion: apps/v1
      kind: Deployment
      metadata: {name: client}
      spec:
        replicas: 4
        selector: {matchLabels: {app: client}}
        template:
          metadata: {labels: {app: client}}
          spec:
            containers: [{name: client, image: example/client:1}]
workloads:
  - {name: affinity, from: {pods: {app: client}}, to: web:http, rate: 200}
  - {name: random, from: {pods: {app: client}}, to: api:http, rate: 200}
timeline:
  - {at: 10s, action: rollout, deployment: web}
"""


def _run(
    tmp_path: Path, engine: EngineFactory, mode: str, max_paths: int | None
) -> tuple[pd.DataFrame, list[str]]:
    path = tmp_path / "walked-keys.yaml"
    path.write_text(SCENARIO)
    loaded = with_proxy_mode(load_scenario(path), mode)  # type: ignore[arg-type]
    world = build_world(loaded, 1, engine=engine)
    if max_paths is not None:
        for kernel in world.kernels.values():
            kernel.max_paths = kernel.index.max_paths = max_paths
    world.run()
    requests: pd.DataFrame = world.recorder.frames()["requests"]
    requests = requests.sort_values(RECORD_KEY, kind="stable").reset_index(drop=True)
    return requests, world.notices()


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_keys_beyond_the_bound_give_the_indexed_records(tmp_path: Path, mode: str) -> None:
    indexed, none = _run(tmp_path, TrafficEngine, mode, None)
    walked, notices = _run(tmp_path, TrafficEngine, mode, 3)
    reference, _ = _run(tmp_path, ReferenceEngine, mode, None)
    assert len(indexed) > 5000
    assert indexed["endpoint"].nunique() >= 8  # both Services, old and new Pods
    pd.testing.assert_frame_equal(walked, indexed, check_exact=True)
    pd.testing.assert_frame_equal(indexed, reference, check_exact=True)
    assert none == []
    assert len(notices) == 2, notices
    assert all("more than 3 ways through the rules of 2 node(s)" in n for n in notices), notices


def test_a_chain_longer_than_the_bound_is_refused_after_one_walk() -> None:
    # 6,000 endpoints with a recent check each: 12,000 paths. Enumerating up to the bound took
    # minutes (quadratic); one walk proves it. (Generous bound: a loaded 2-core CI machine.)
    n = 6_000
    lines = ["*nat", ":KUBE-SVC-X - [0:0]"]
    lines += [f":SEP-{i} - [0:0]" for i in range(n)]
    for i in range(n):
        lines.append(
            f"-A KUBE-SVC-X -m recent --name SEP-{i} --rcheck --seconds 10800 --reap -j SEP-{i}"
        )
    for i in range(n):
        lines.append(
            f"-A KUBE-SVC-X -m statistic --mode random --probability {1 / (n - i):0.10f} -j SEP-{i}"
        )
    lines += [
        f"-A SEP-{i} -p tcp -j DNAT --to-destination 10.244.{i // 250}.{i % 250 + 1}:80"
        for i in range(n)
    ]
    lines += ["-A OUTPUT -d 10.96.0.10/32 -j KUBE-SVC-X", "COMMIT", ""]
    ruleset = parse_save("\n".join(lines))
    started = time.perf_counter()
    with pytest.raises(DispatchTooLargeError, match="more than 10000 paths"):
        build_dispatch(
            ruleset,
            Packet("10.244.9.9", "10.96.0.10", "tcp", 80, origin="host"),
            NodeNetwork(("192.168.0.1",), pod_cidr="10.244.9.0/24"),
        )
    assert time.perf_counter() - started < 20
