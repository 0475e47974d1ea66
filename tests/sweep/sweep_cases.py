"""A tiny scenario for sweep tests: a rolling update of 2 replicas over 12 simulated seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Final

TINY: Final = """\
apiVersion: svcsim/v1
kind: Scenario
metadata:
  name: tiny-rollout
seed: 7
duration: 12s
cluster:
  nodes: 2
  proxy:
    minSyncPeriod: 1s
    syncPeriod: 30s
  delays:
    apiWatch: 50ms
    kubeProxyWatch: {default: 100ms}
    podStartup: 1s
manifests:
  - inline: |
      apiVersion: v1
      kind: Service
      metadata:
        name: web
      spec:
        selector: {app: web}
        clusterIP: 10.96.0.10
        ports:
          - name: http
            port: 80
            targetPort: 8080
      ---
      apiVersion: apps/v1
      kind: Deployment
      metadata:
        name: web
      spec:
        replicas: 2
        selector: {matchLabels: {app: web}}
        strategy:
          type: RollingUpdate
          rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
        template:
          metadata: {labels: {app: web}}
          spec:
            containers:
              - name: web
                image: example/web:1
                ports: [{name: http, containerPort: 8080}]
      ---
      apiVersion: apps/v1
      kind: Deployment
      metadata:
        name: frontend
      spec:
        replicas: 2
        selector: {matchLabels: {app: frontend}}
        template:
          metadata: {labels: {app: frontend}}
          spec:
            containers:
              - name: frontend
                image: example/frontend:1
apps:
  web:
    startup: 1s
    serviceTime: {distribution: exponential, mean: 10ms}
    drainAfterSigterm: 0s
    exitAfterSigterm: 1s
workloads:
  - name: frontend-to-web
    from: {pods: {app: frontend}}
    to: web:http
    rate: 100
    connection: {model: per-request}
    connectTimeout: 1s
timeline:
  - {at: 3s, action: rollout, deployment: web}
"""


def line_of(text: str) -> int:
    """The 1-based line of :data:`TINY` holding ``text`` (problem lines quote it)."""
    return next(n for n, line in enumerate(TINY.splitlines(), 1) if text in line)


SETS: Final = {"cluster.proxy.minSyncPeriod": ["0s", "2s"]}
"""Two grid points."""

SEEDS: Final = (1, 2)


def tiny_scenario(folder: Path) -> Path:
    """Write the tiny scenario into ``folder`` and return its path."""
    path = folder / "tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    return path
