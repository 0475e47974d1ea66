"""A small cluster for the A/AAAA conntrack insert race, with fixed service times.

CoreDNS answers in exactly 1 ms and web in 2 ms, so every latency is an exact sum: a plain
glibc lookup (A and AAAA together) 1 ms, one query after the other 2 ms, a pair that lost a
query ``timeout`` (5 s) plus both again in turn (2 ms); a request adds web's 2 ms. Four
client Deployments differ only in their Pods' ``dnsConfig.options``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, NamedTuple

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from svcsim.scenario.build import EngineFactory, build_world
from svcsim.scenario.load import load_scenario
from svcsim.scenario.overrides import parse_settings, single_overrides

COREDNS_S: Final = 0.001
WEB_S: Final = 0.002
TIMEOUT_S: Final = 5.0
SEED: Final = 3

_CLIENT = """\
      ---
      apiVersion: apps/v1
      kind: Deployment
      metadata: {{name: {name}}}
      spec:
        replicas: 3
        selector: {{matchLabels: {{app: {name}}}}}
        template:
          metadata: {{labels: {{app: {name}}}}}
          spec:
            containers: [{{name: c, image: c}}]
{options}"""

OPTIONS: Final = {
    "plain": "",
    "single-request": "single-request",
    "single-request-reopen": "single-request-reopen",
    "use-vc": "use-vc",
}
"""Client Deployment (and workload) name -> the one resolver option its Pods set."""


def _client(name: str, option: str) -> str:
    options = f"            dnsConfig: {{options: [{{name: {option}}}]}}\n" if option else ""
    return _CLIENT.format(name=name, options=options)


TEXT: Final = (
    """\
apiVersion: svcsim/v1
kind: Scenario
seed: 3
duration: 30s
cluster:
  nodes: 3
  dns:
    conntrackRace: {probability: 0.3, kernelVersion: "4.19.0-26-amd64"}
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
"""
    + "".join(_client(name, option) for name, option in OPTIONS.items())
    + """\
apps:
  web: {serviceTime: {distribution: fixed, value: 2ms}}
  coredns: {serviceTime: {distribution: fixed, value: 1ms}}
workloads:
"""
    + "".join(
        f"  - {{name: {name}, from: {{pods: {{app: {name}}}}}, to: 'dns:web:80', rate: 20}}\n"
        for name in OPTIONS
    )
)


class RaceRun(NamedTuple):
    """What the tests read of one run."""

    requests: pd.DataFrame
    events: pd.DataFrame


def race_run(tmp_path: Path, engine: EngineFactory, *sets: str) -> RaceRun:
    """:data:`TEXT` (with ``--set`` overrides) run by ``engine``: its requests and events.

    Requests are sorted, categorical columns turned to strings, so two engines' tables compare.
    """
    path = tmp_path / "race.yaml"
    path.write_text(TEXT, encoding="utf-8")
    loaded = load_scenario(path, overrides=single_overrides(parse_settings(sets)))
    world = build_world(loaded, SEED, engine=engine)
    world.run()
    frames = world.recorder.frames()
    requests: pd.DataFrame = frames["requests"]
    requests = requests.sort_values(["t_s", "workload", "client", "attempt"], kind="stable")
    requests = requests.reset_index(drop=True)
    categorical = [
        c for c in requests.columns if isinstance(requests[c].dtype, pd.CategoricalDtype)
    ]
    events = frames["events"]
    retries = events[events["kind"].astype(str) == "dns-retry"].astype(str)
    return RaceRun(requests.astype(dict.fromkeys(categorical, str)), retries.reset_index(drop=True))
