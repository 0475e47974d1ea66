"""A small cluster whose kube-proxies sync in step, built with N nodes (for sharing tests)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from svcsim.scenario.build import build_world
from svcsim.scenario.load import load_scenario
from svcsim.scenario.world import World

SCENARIO = """\
apiVersion: svcsim/v1
kind: Scenario
metadata: {{name: in-step}}
seed: 3
duration: 12s
cluster:
  nodes: {nodes}
  proxy: {{minSyncPeriod: 1s, syncPeriod: 30s}}
manifests:
  - inline: |
      apiVersion: v1
      kind: Service
      metadata: {{name: web}}
      spec:
        selector: {{app: web}}
        clusterIP: 10.96.0.10
        {policy}
        ports: [{{name: http, port: 80, targetPort: 8080}}]
      ---
      apiVersion: apps/v1
      kind: Deployment
      metadata: {{name: web}}
      spec:
        replicas: 3
        selector: {{matchLabels: {{app: web}}}}
        template:
          metadata: {{labels: {{app: web}}}}
          spec:
            containers:
              - name: web
                ports: [{{name: http, containerPort: 8080}}]
      ---
      apiVersion: apps/v1
      kind: Deployment
      metadata: {{name: client}}
      spec:
        replicas: {nodes}
        selector: {{matchLabels: {{app: client}}}}
        template:
          metadata: {{labels: {{app: client}}}}
          spec:
            containers: [{{name: client}}]
workloads:
  - name: client-to-web
    from: {{pods: {{app: client}}}}
    to: web:http
    rate: 200
    connection: {{model: per-request}}
timeline:
  - {{at: 3s, action: delete-pod, selector: {{app: web}}}}
  - {{at: 7s, action: delete-pod, selector: {{app: web}}}}
"""


def in_step_world(tmp: Path, nodes: int, *, local: bool = False) -> World:
    """The scenario above with ``nodes`` nodes (``local``: ``internalTrafficPolicy: Local``)."""
    path = tmp / f"in-step-{nodes}-{local}.yaml"
    policy = "internalTrafficPolicy: Local" if local else ""
    path.write_text(SCENARIO.format(nodes=nodes, policy=policy))
    return build_world(load_scenario(path), 3)


def records(world: World) -> dict[str, pd.DataFrame]:
    """Every record table of a finished run, rows in a stable order."""
    return {name: frame.reset_index(drop=True) for name, frame in world.recorder.frames().items()}
