"""Traffic through IPVS-mode nodes: rr's exact rotation, graceful termination, idle expiry."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from svcsim.scenario.build import build_world
from svcsim.scenario.load import load_scenario
from svcsim.traffic import ReferenceEngine
from tests.traffic.ipvs_cases import ipvs_scenario, run_ipvs

PER_REQUEST = "  - {name: fe, from: {pods: {app: frontend}}, to: web:http, rate: 100}\n"


def test_rr_sends_new_connections_round_robin(tmp_path: Path) -> None:
    run = run_ipvs(tmp_path, ipvs_scenario(PER_REQUEST, duration="10s"))
    flows = run.requests[run.requests["new_flow"]].sort_values("t_s")
    assert len(flows) > 900 and (flows["outcome"] == "ok").all()
    pods = flows["pod"].astype(str).tolist()
    # One client, one node: its IPVS hands out the 3 real servers in turn, exactly.
    assert len(set(pods[:3])) == 3
    assert all(pods[i] == pods[i % 3] for i in range(len(pods)))


def test_reference_engine_gives_the_same_rotation(tmp_path: Path) -> None:
    text = ipvs_scenario(PER_REQUEST, duration="5s")
    batched = run_ipvs(tmp_path, text).requests
    reference = run_ipvs(tmp_path, text, engine=ReferenceEngine).requests
    pd.testing.assert_frame_equal(batched, reference)


GRACEFUL = (
    "  - name: kept\n    from: {pods: {app: frontend}}\n    to: web:http\n    rate: 40\n"
    "    connection: {model: keepalive, connections: 4}\n"
    "  - {name: fresh, from: {pods: {app: frontend}}, to: web:http, rate: 20}\n"
)
FAIL_AND_LEAVE = (
    "  - {at: 10s, action: fail-readiness, selector: {app: web}, for: 400s}\n"
    "  - {at: 40s, action: scale, deployment: frontend, replicas: 0}\n"
)


def test_weight_zero_server_keeps_its_connections_then_is_deleted(tmp_path: Path) -> None:
    text = ipvs_scenario(GRACEFUL, FAIL_AND_LEAVE, replicas=2, duration="260s")
    run = run_ipvs(tmp_path, text)
    requests, servers = run.requests, run.servers
    assert (requests["outcome"] == "ok").all()
    drained = servers[servers["weight"] == 0]
    # Only the node that holds the kept connections drains; the other deletes at once.
    assert drained["node"].nunique() == 1 and drained["address"].nunique() == 1
    node, address = drained["node"].iloc[0], drained["address"].iloc[0]
    since = float(drained["t_s"].min())
    assert 10.0 < since < 20.0  # readiness fails, the endpoint goes, the next sync
    endpoint = f"{address}:8080"
    after = requests[requests["t_s"] > since]
    kept = after[after["workload"] == "kept"]
    fresh = after[after["workload"] == "fresh"]
    # Its kept connections go on being served; no new connection is scheduled to it.
    assert (kept["endpoint"] == endpoint).sum() > 100
    assert len(fresh) > 400 and not (fresh["endpoint"] == endpoint).any()
    # The clients leave at 40 s: their connections close (TIME_WAIT, 120 s, counted inactive),
    # and the manager's next check after that (every 60 s) deletes the server.
    mine = servers[(servers["node"] == node) & (servers["address"] == address)]
    gone = float(mine["t_s"].max()) + 1.0
    assert 40.0 + 120.0 < gone <= 40.0 + 120.0 + 60.0 + 1.0
    idle_since = float(mine.loc[mine["conns"] > 0, "t_s"].max()) + 1.0
    assert 0.0 < gone - idle_since <= 60.0


def test_a_kept_connection_idle_past_the_ipvs_timeout_is_reset(tmp_path: Path) -> None:
    slow = (
        "  - name: kept\n    from: {pods: {app: frontend}}\n    to: web:http\n    rate: 0.2\n"
        "    connection: {model: keepalive, connections: 1}\n"
    )
    text = ipvs_scenario(slow, duration="300s", ipvs="{tcpTimeout: 5s}")
    requests = run_ipvs(tmp_path, text).requests.sort_values("t_s")
    expired = requests[requests["cause"] == "ipvs-entry-expired"]
    assert len(expired) > 5 and (expired["outcome"] == "reset").all()
    # Each reset follows more than 5 s of silence on the connection, and the client's next
    # request opens a new connection.
    gaps = requests["t_s"].diff()
    assert (gaps[expired.index] > 5.0).all()
    ok = requests[requests["outcome"] == "ok"]
    assert (ok["t_s"].diff().dropna() <= 5.0).sum() > 0


DNS = """\
apiVersion: svcsim/v1
kind: Scenario
seed: 3
duration: 30s
cluster: {nodes: 2, proxy: {mode: ipvs}}
manifests:
  - inline: |
      apiVersion: v1
      kind: Service
      metadata: {name: dns}
      spec:
        selector: {app: dns}
        clusterIP: 10.96.0.10
        ports: [{name: dns, protocol: UDP, port: 53, targetPort: 53}]
      ---
      apiVersion: apps/v1
      kind: Deployment
      metadata: {name: dns}
      spec:
        replicas: 1
        selector: {matchLabels: {app: dns}}
        template:
          metadata: {labels: {app: dns}}
          spec:
            containers:
              - {name: dns, image: dns, ports: [{containerPort: 53, protocol: UDP}]}
      ---
      apiVersion: v1
      kind: Pod
      metadata: {name: client, labels: {app: client}}
      spec: {nodeName: node-2, containers: [{name: c, image: c}]}
workloads:
  - name: fixed
    from: {pods: {app: client}}
    to: dns:dns
    rate: 20
    connection: {model: udp, sourcePort: fixed}
    requestTimeout: 2s
timeline:
  - {at: 5s, action: delete-pod, selector: {app: dns}}
"""


def test_a_udp_flow_loses_one_datagram_when_its_real_server_is_deleted(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(DNS, encoding="utf-8")
    world = build_world(load_scenario(path), 3)
    world.run()
    requests = world.recorder.frames()["requests"].sort_values("t_s")
    deleted = requests[requests["cause"] == "real-server-deleted"]
    # kube-proxy deletes a UDP real server at once; the flow's next datagram meets its entry,
    # is dropped and the entry expired (expire_nodest_conn); the one after goes to the new Pod.
    assert len(deleted) == 1 and (deleted["outcome"] == "timeout").all()
    after = requests[requests["t_s"] > float(deleted["t_s"].iloc[0])]
    assert (after["outcome"] == "ok").all() and len(after) > 100
    assert after["pod"].astype(str).nunique() == 1
    assert after["new_flow"].sum() == 1  # one new IPVS entry, then the flow follows it


def test_affinity_is_persistence_and_no_usable_server_refuses(tmp_path: Path) -> None:
    text = ipvs_scenario(
        PER_REQUEST,
        "  - {at: 10s, action: fail-readiness, selector: {app: web}, count: 3, for: 400s}\n",
        duration="30s",
    ).replace(
        " clusterIP: 10.96.0.10\n", " clusterIP: 10.96.0.10\n        sessionAffinity: ClientIP\n"
    )
    run = run_ipvs(tmp_path, text)
    requests = run.requests.sort_values("t_s")
    # One client: its persistence template sends every new connection to one real server.
    before = requests[requests["t_s"] < 10.0]
    assert (before["outcome"] == "ok").all() and len(before) > 900
    assert before["pod"].astype(str).nunique() == 1
    # Every Pod fails readiness: the servers still holding connections stay at weight 0, the
    # others go, and the template no longer counts (expire_quiescent_template): the kernel
    # finds no server of weight > 0 and refuses (ICMP port unreachable).
    servers = run.servers
    gone = float(servers.loc[servers["weight"] > 0, "t_s"].max()) + 1.0
    assert 10.0 < gone < 20.0
    after = requests[requests["t_s"] > gone]
    assert len(after) > 900
    # The kernel rate-limits those ICMP errors to the client Pod (burst 6, then one a
    # second; docs/icmp.md): the others time out (connectTimeout 1 s: no SYN retransmit).
    mix = set(zip(after["outcome"], after["cause"], strict=True))
    assert mix == {("refused", "no-endpoints"), ("timeout", "icmp-rate-limited")}
    refused = int((after["outcome"] == "refused").sum())
    span = 30.0 - gone
    assert span - 1 <= refused <= span + 7
