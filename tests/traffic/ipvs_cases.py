"""Small IPVS-mode scenarios for the IPVS traffic and graceful-termination tests."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import simpy

from svcsim.scenario.build import EngineFactory, build_world
from svcsim.scenario.load import load_scenario
from svcsim.traffic import TrafficEngine

CLUSTER_IP = "10.96.0.10"
VS_KEY = ("TCP", CLUSTER_IP, 80)
"""The web Service's ClusterIP virtual server."""

WEB = """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: {replicas}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: web
          ports: [{name: http, containerPort: 8080}]
          readinessProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 2
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: frontend}
spec:
  replicas: 1
  selector: {matchLabels: {app: frontend}}
  template:
    metadata: {labels: {app: frontend}}
    spec: {containers: [{name: fe, image: fe}]}
"""


def ipvs_scenario(
    workloads: str, timeline: str = "", *, replicas: int = 3, duration: str = "30s", ipvs: str = ""
) -> str:
    """An IPVS-mode scenario on 2 nodes: web (ClusterIP 10.96.0.10), one frontend Pod."""
    manifests = WEB.replace("{replicas}", str(replicas))
    indented = "".join(f"      {line}\n" for line in manifests.splitlines())
    text = (
        "apiVersion: svcsim/v1\nkind: Scenario\nseed: 5\n"
        f"duration: {duration}\n"
        f"cluster: {{nodes: 2, proxy: {{mode: ipvs{', ipvs: ' + ipvs if ipvs else ''}}}}}\n"
        "manifests:\n  - inline: |\n" + indented + "workloads:\n" + workloads
    )
    if timeline:
        text += "timeline:\n" + timeline
    return text


@dataclass
class Probe:
    """Every second: each node's real servers of :data:`VS_KEY` as (address, weight, conns)."""

    samples: list[tuple[float, str, str, int, int]] = field(default_factory=list)

    def frame(self) -> pd.DataFrame:
        """The samples: t_s, node, address, weight, active + inactive connections."""
        return pd.DataFrame(self.samples, columns=["t_s", "node", "address", "weight", "conns"])


@dataclass
class IpvsRun:
    """A run's requests, events, syncs and the probe's samples."""

    requests: pd.DataFrame
    events: pd.DataFrame
    syncs: pd.DataFrame
    servers: pd.DataFrame


def run_ipvs(
    tmp_path: Path, text: str, *, engine: EngineFactory = TrafficEngine, probe_s: float = 1.0
) -> IpvsRun:
    """Run ``text`` with ``engine``, sampling IPVS nodes' real servers every ``probe_s``."""
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    world = build_world(load_scenario(path), 5, engine=engine)
    probe = Probe()

    def sample() -> Generator[simpy.Event, Any, None]:
        while True:
            for node, kernel in world.kernels.items():
                table = kernel.ipvs_table
                if table is None:
                    continue  # an iptables or nftables node
                table.expire(world.env.now)
                for d in table.real_servers(VS_KEY):
                    probe.samples.append(
                        (world.env.now, node, d.address, d.weight, d.active + d.inactive)
                    )
            yield world.env.timeout(probe_s)

    world.env.process(sample())
    world.run()
    frames = world.recorder.frames()
    return IpvsRun(frames["requests"], frames["events"], frames["syncs"], probe.frame())
