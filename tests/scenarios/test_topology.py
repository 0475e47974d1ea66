"""topology-hints: PreferClose keeps each zone's traffic home; Auto hints come and go."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tests.scenarios.conftest import ShippedRun, run_without_figures
from tests.scenarios.timing import event_times, events, first_sync, requests


def zone_of(endpoint: pd.Series) -> pd.Series:
    """Node CIDRs 10.244.0/1/2.0/24 belong to node-1/2/3 (zones a/b/c)."""
    return endpoint.str.split(".").str[2].map({"0": "node-1", "1": "node-2", "2": "node-3"})


def test_prefer_close_keeps_every_zone_home_and_overloads_the_small_ones(
    shipped_run: ShippedRun,
) -> None:
    run = shipped_run("topology-hints")
    r = requests(run, service="default/web-close:http", since_s=1.0)
    ok = r.loc[r["endpoint"] != ""]
    assert (zone_of(ok["endpoint"]) == ok["src_node"]).all()
    shares = ok["endpoint"].astype(str).value_counts(normalize=True)
    # One endpoint each in zone-b and zone-c: a third of all requests each.
    small = shares[zone_of(pd.Series(shares.index)).isin(["node-2", "node-3"]).to_numpy()]
    assert len(small) == 2 and (abs(small - 1 / 3) < 0.02).all()


def test_auto_hints_appear_and_vanish_with_the_allocation(shipped_run: ShippedRun) -> None:
    run = shipped_run("topology-hints")
    on, off = event_times(run, "topology-hints", "default/web-auto")[1:3]
    synced_on = float(first_sync(run, "node-1", on)["end_s"])
    synced_off = float(first_sync(run, "node-1", off)["end_s"])
    svc = "default/web-auto:http"
    before = requests(run, service=svc, node="node-1", since_s=1.0, until_s=on)
    during = requests(run, service=svc, node="node-1", since_s=synced_on + 2.0, until_s=off)
    after = requests(run, service=svc, node="node-1", since_s=synced_off + 2.0)
    # Without hints node-1 reaches every zone; with them only its own.
    assert set(zone_of(before["endpoint"])) == {"node-1", "node-2", "node-3"}
    assert set(zone_of(during["endpoint"])) == {"node-1"}
    assert set(zone_of(after["endpoint"])) == {"node-1", "node-2", "node-3"}


NODE_FAILS_IN_ZONE_C = """
apiVersion: svcsim/v1
kind: Scenario
metadata: {name: topology-node-fail}
seed: 5
duration: 80s
cluster:
  nodes:
    - {name: node-1, zone: zone-a, cpus: 4}
    - {name: node-2, zone: zone-b, cpus: 4}
    - {name: node-3, zone: zone-c, cpus: 4}
  proxy: {minSyncPeriod: 1s}
manifests:
  - inline: |
      apiVersion: apps/v1
      kind: Deployment
      metadata: {name: frontend}
      spec:
        replicas: 3
        selector: {matchLabels: {app: frontend}}
        template:
          metadata: {labels: {app: frontend}}
          spec:
            containers: [{name: frontend, image: example/frontend:1}]
      ---
      apiVersion: v1
      kind: Service
      metadata:
        name: web
        annotations: {service.kubernetes.io/topology-mode: Auto}
      spec:
        selector: {app: web}
        ports: [{name: http, port: 80, targetPort: 8080}]
      ---
      apiVersion: apps/v1
      kind: Deployment
      metadata: {name: web}
      spec:
        replicas: 6
        selector: {matchLabels: {app: web}}
        template:
          metadata: {labels: {app: web}}
          spec:
            containers:
              - {name: web, image: example/web:1, ports: [{name: http, containerPort: 8080}]}
workloads:
  - name: frontend-to-web
    from: {pods: {app: frontend}}
    to: web:http
    rate: 200
timeline:
  - {at: 5s, action: fail-node, node: node-3}
  - {at: 62s, action: recover-node, node: node-3}
"""


def test_a_zone_whose_only_node_is_not_ready_leaves_the_cpu_shares(tmp_path: Path) -> None:
    """6 endpoints, 2 per zone. When node-3 (zone-c) turns NotReady its 2 endpoints go; with
    zone-c's CPU still counted, 4 endpoints over 3 zones would need ceil(4/3/1.2) = 2 each
    (6 > 4: hints removed). Upstream drops NotReady nodes from the ratios: 2 zones x 2."""
    path = tmp_path / "scenario.yaml"
    path.write_text(NODE_FAILS_IN_ZONE_C)
    run = run_without_figures(path, tmp_path / "run")
    not_ready = event_times(run, "node-not-ready", "node-3")
    assert not_ready == [55.0]
    hints = events(run, "topology-hints", "default/web")
    assert list(hints["detail"].astype(str)) == ["enabled"]
    for node in ("node-1", "node-2"):
        r = requests(run, service="default/web:http", node=node, since_s=1.0)
        assert len(r) > 1000 and (r["outcome"].astype(str) == "ok").all()
        assert (zone_of(r["endpoint"].astype(str)) == node).all()
