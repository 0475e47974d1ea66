"""cluster.proxy's switches for reproducing a node: loaded, checked at their line, simulated."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest

from svcsim.scenario import ScenarioErrors, load_scenario
from svcsim.scenario.build import build_world
from svcsim.traffic import ReferenceEngine, TrafficEngine

HEAD = "apiVersion: svcsim/v1\nkind: Scenario\n"  # lines 1-2 of every case below

SWITCHED = HEAD + textwrap.dedent("""\
    duration: 20s
    cluster:
      nodes: 2
      proxy:
        detectLocalMode: BridgeInterface
        detectLocal: {bridgeInterface: cbr0}
        nodePortAddresses: [primary]
        randomFully: false
        nfacct: false
        nodes:
          node-2:
            detectLocalMode: InterfaceNamePrefix
            detectLocal: {interfaceNamePrefix: cali}
            nodePortAddresses: [192.168.0.0/16, 127.0.0.0/8]
            randomFully: true
    manifests:
      - inline: |
          apiVersion: v1
          kind: Service
          metadata: {name: web}
          spec:
            type: NodePort
            selector: {app: web}
            clusterIP: 10.96.0.10
            ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]
          ---
          apiVersion: apps/v1
          kind: Deployment
          metadata: {name: web}
          spec:
            replicas: 3
            selector: {matchLabels: {app: web}}
            template:
              metadata: {labels: {app: web}}
              spec:
                containers: [{name: web, image: web:1, ports: [{name: http, containerPort: 8080}]}]
          ---
          apiVersion: apps/v1
          kind: Deployment
          metadata: {name: frontend}
          spec:
            replicas: 2
            selector: {matchLabels: {app: frontend}}
            template:
              metadata: {labels: {app: frontend}}
              spec:
                containers: [{name: frontend, image: frontend:1}]
    workloads:
      - {name: pods, from: {pods: {app: frontend}}, to: web:http, rate: 40}
      - {name: outside, from: {external: {node: node-1, ip: 203.0.113.9}},
         to: 192.168.0.11:30080, rate: 20}
    timeline:
      - {at: 5s, action: rollout, deployment: web}
    """)


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def problems(tmp_path: Path, body: str) -> list[str]:
    with pytest.raises(ScenarioErrors) as err:
        load_scenario(write(tmp_path, body))
    return [p.replace(f"{tmp_path}/", "") for p in err.value.problems]


def test_switches_load_and_nodes_override_them(tmp_path: Path) -> None:
    proxy = load_scenario(write(tmp_path, SWITCHED)).scenario.cluster.proxy
    one, two = proxy.for_node("node-1"), proxy.for_node("node-2")
    assert (one.detect_local_mode, one.detect_local.bridge_interface) == ("BridgeInterface", "cbr0")
    assert (one.node_port_addresses, one.random_fully, one.nfacct) == (["primary"], False, False)
    assert (two.detect_local_mode, two.detect_local.interface_name_prefix) == (
        "InterfaceNamePrefix",
        "cali",
    )
    assert two.detect_local.bridge_interface == "cbr0"  # merged, unused by its mode
    assert (two.node_port_addresses, two.random_fully, two.nfacct) == (
        ["192.168.0.0/16", "127.0.0.0/8"],
        True,
        False,
    )


def test_defaults_are_kube_proxys(tmp_path: Path) -> None:
    proxy = load_scenario(write(tmp_path, HEAD)).scenario.cluster.proxy
    assert (proxy.detect_local_mode, proxy.node_port_addresses) == ("ClusterCIDR", [])
    assert (proxy.random_fully, proxy.nfacct, proxy.localhost_node_ports) == (True, True, True)


INVALID = [
    pytest.param(
        "cluster:\n  proxy:\n    detectLocalMode: Bridge\n",
        [
            "s.yaml:5: cluster.proxy.detectLocalMode: must be 'ClusterCIDR', 'NodeCIDR', "
            "'BridgeInterface' or 'InterfaceNamePrefix', got \"Bridge\""
        ],
        id="mode",
    ),
    pytest.param(
        "cluster:\n  proxy:\n    detectLocalMode: BridgeInterface\n",
        [
            "s.yaml:5: cluster.proxy.detectLocalMode: BridgeInterface needs "
            "detectLocal.bridgeInterface"
        ],
        id="bridge-missing",
    ),
    pytest.param(
        "cluster:\n  proxy:\n    detectLocalMode: InterfaceNamePrefix\n"
        "    detectLocal: {interfaceNamePrefix: abcdefghijklmno}\n",
        [
            "s.yaml:6: cluster.proxy.detectLocal.interfaceNamePrefix: interface name "
            "'abcdefghijklmno' is longer than 14 characters (iptables' limit)"
        ],
        id="prefix-too-long",
    ),
    pytest.param(
        "cluster:\n  proxy:\n    detectLocal: {bridgeInterface: 'br 0'}\n",
        [
            "s.yaml:5: cluster.proxy.detectLocal.bridgeInterface: 'br 0' is not a Linux "
            "interface name (no '/', ':' or spaces)"
        ],
        id="bridge-name",
    ),
    pytest.param(
        "cluster:\n  proxy:\n    nodePortAddresses:\n      - 10.0.0.0/8\n      - primary\n",
        ["s.yaml:7: cluster.proxy.nodePortAddresses[1]: can't use both 'primary' and CIDRs"],
        id="primary-and-cidr",
    ),
    pytest.param(
        "cluster:\n  proxy:\n    nodePortAddresses: [10.0.0.0/33, '2001:db8::/64']\n",
        [
            "s.yaml:5: cluster.proxy.nodePortAddresses[0]: must be a CIDR such as "
            "192.168.0.0/24, or 'primary', got '10.0.0.0/33'",
            "s.yaml:5: cluster.proxy.nodePortAddresses[1]: only IPv4 is simulated, "
            "got '2001:db8::/64'",
        ],
        id="bad-cidrs",
    ),
    pytest.param(
        "cluster:\n  proxy:\n    randomFully: 'no'\n    nfacct: 0\n",
        [
            's.yaml:5: cluster.proxy.randomFully: must be true or false, got "no"',
            "s.yaml:6: cluster.proxy.nfacct: must be true or false, got 0",
        ],
        id="booleans",
    ),
    pytest.param(
        "cluster:\n  nodes: 2\n  proxy:\n    nodes:\n      node-2:\n"
        "        detectLocalMode: InterfaceNamePrefix\n",
        [
            "s.yaml:8: cluster.proxy.nodes.node-2.detectLocalMode: InterfaceNamePrefix needs "
            "detectLocal.interfaceNamePrefix"
        ],
        id="per-node",
    ),
]


@pytest.mark.parametrize(("body", "expected"), INVALID)
def test_invalid_switches_name_their_line(tmp_path: Path, body: str, expected: list[str]) -> None:
    assert problems(tmp_path, HEAD + body) == expected


def test_each_node_compiles_and_routes_with_its_own_switches(tmp_path: Path) -> None:
    world = build_world(load_scenario(write(tmp_path, SWITCHED)), 1)
    one, two = world.proxies["node-1"].ctx, world.proxies["node-2"].ctx
    assert (one.local_detector, one.local_detector_value) == ("BridgeInterface", "cbr0")
    assert one.node_port_addresses == ("192.168.0.11/32",)  # primary: the node IP
    assert (one.random_fully, one.nfacct, two.random_fully) == (False, False, True)
    assert (two.local_detector, two.local_detector_value) == ("InterfaceNamePrefix", "cali")
    assert world.kernels["node-1"].network.pod_interface == "cbr0"
    assert world.kernels["node-2"].network.pod_interface == "cali0"
    saved = {node: k.ruleset for node, k in world.kernels.items()}
    rules_one = [r.text for t in saved["node-1"].tables for c in t.chains for r in c.rules]
    assert any("! -i cbr0 -j KUBE-MARK-MASQ" in r for r in rules_one)
    assert any(r.endswith("-d 192.168.0.11 -j KUBE-NODEPORTS") for r in rules_one)
    assert not any("nfacct" in r or "--random-fully" in r for r in rules_one)


def _requests(tmp_path: Path, engine: type) -> pd.DataFrame:
    world = build_world(load_scenario(write(tmp_path, SWITCHED)), 3, engine=engine)
    world.run()
    frame = world.recorder.frames()["requests"]
    frame = frame.sort_values(["t_s", "workload", "client", "attempt"], kind="stable")
    frame = frame.reset_index(drop=True)
    return frame.astype({c: str for c in frame.columns if str(frame[c].dtype) == "category"})


def test_batched_engine_equals_reference_under_the_switches(tmp_path: Path) -> None:
    batched = _requests(tmp_path, TrafficEngine)
    assert len(batched) > 500
    ok = batched[batched["outcome"] == "ok"]
    assert set(ok["workload"]) == {"pods", "outside"}  # the NodePort answers on the primary IP
    pd.testing.assert_frame_equal(batched, _requests(tmp_path, ReferenceEngine), check_exact=True)
