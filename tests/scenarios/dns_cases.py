"""A small DNS scenario with fixed service times, so lookups' latencies are exact sums.

CoreDNS answers in exactly 1 ms, web in exactly 2 ms: a lookup whose first name answers takes
1 ms (the A and AAAA answers come together), a request 1 + 2 = 3 ms. Timeline: the Service
``later`` appears at 20 s; kube-proxy on node-2 crashes at 60 s and CoreDNS is rolled out at
61 s, so node-2's rules keep pointing at the old CoreDNS Pods, which exit at ~66-67 s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from svcsim.scenario.build import EngineFactory, build_world
from svcsim.scenario.load import load_scenario

COREDNS_S: Final = 0.001
WEB_S: Final = 0.002
TIMEOUT_S: Final = 5.0
ATTEMPTS: Final = 2
LATER_AT_S: Final = 20.0
OUTAGE_AT_S: Final = 61.0

TEXT: Final = """\
apiVersion: svcsim/v1
kind: Scenario
seed: 5
duration: 80s
cluster:
  nodes: 2
  dns: {}
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
      metadata: {name: web}
      spec:
        replicas: 2
        selector: {matchLabels: {app: web}}
        template:
          metadata: {labels: {app: web}}
          spec: {containers: [{name: web, image: web, ports: [{containerPort: 8080}]}]}
      ---
      apiVersion: apps/v1
      kind: Deployment
      metadata: {name: client}
      spec:
        replicas: 2
        selector: {matchLabels: {app: client}}
        template:
          metadata: {labels: {app: client}}
          spec: {containers: [{name: c, image: c}]}
apps:
  web: {serviceTime: {distribution: fixed, value: 2ms}}
  coredns:
    serviceTime: {distribution: fixed, value: 1ms}
    drainAfterSigterm: 5s
    exitAfterSigterm: 5s
workloads:
  - {name: short, from: {pods: {app: client}}, to: "dns:web:80", rate: 10}
  - {name: fqdn, from: {pods: {app: client}}, to: "dns:web.default.svc.cluster.local:80", rate: 10}
  - {name: dot, from: {pods: {app: client}}, to: "dns:web.default.svc.cluster.local.:80", rate: 5}
  - {name: cached, from: {pods: {app: client}}, to: "dns:web:80", rate: 10, dns: {cache: ttl}}
  - {name: later, from: {pods: {app: client}}, to: "dns:later:80", rate: 5}
timeline:
  - at: 20s
    action: add-service
    manifest:
      inline: |
        apiVersion: v1
        kind: Service
        metadata: {name: later}
        spec:
          clusterIP: 10.96.0.81
          selector: {app: web}
          ports: [{name: http, port: 80, targetPort: 8080}]
  - {at: 60s, action: crash-proxy, node: node-2}
  - {at: 61s, action: rollout, deployment: kube-system/coredns}
"""


def dns_requests(tmp_path: Path, engine: EngineFactory) -> pd.DataFrame:
    """The requests of :data:`TEXT` run by ``engine``, sorted, categoricals as strings."""
    path = tmp_path / "dns.yaml"
    path.write_text(TEXT, encoding="utf-8")
    world = build_world(load_scenario(path), 5, engine=engine)
    world.run()
    requests: pd.DataFrame = world.recorder.frames()["requests"]
    requests = requests.sort_values(["t_s", "workload", "client", "attempt"], kind="stable")
    requests = requests.reset_index(drop=True)
    categorical = [
        c for c in requests.columns if isinstance(requests[c].dtype, pd.CategoricalDtype)
    ]
    return requests.astype(dict.fromkeys(categorical, str))
