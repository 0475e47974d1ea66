"""A literal address counts as the Service port kube-proxy writes rules for at it."""

from __future__ import annotations

from pathlib import Path

import pytest

from svcsim.k8s.objects import (
    LoadBalancerIngress,
    ObjectMeta,
    Protocol,
    Service,
    ServicePort,
    ServiceType,
)
from svcsim.scenario.build import build_world
from svcsim.scenario.load import load_scenario
from svcsim.traffic.targets import service_port_at

NODE_IPS = ("192.168.0.11", "192.168.0.12")
WEB = Service(
    ObjectMeta("web", "shop"),
    type=ServiceType.LOAD_BALANCER,
    cluster_ip="10.96.0.10",
    ports=(
        ServicePort(80, Protocol.TCP, "http", 8080, 30080),
        ServicePort(53, Protocol.UDP, "dns", 53),
    ),
    external_ips=("203.0.113.5",),
    load_balancer_ingress=(
        LoadBalancerIngress("198.51.100.7"),
        LoadBalancerIngress("198.51.100.8", ip_mode="Proxy"),
    ),
)
HEADLESS = Service(ObjectMeta("db"), cluster_ip="None", ports=(ServicePort(5432),))


@pytest.mark.parametrize(
    ("ip", "port", "protocol", "expected"),
    [
        ("10.96.0.10", 80, "tcp", "shop/web:http"),  # ClusterIP
        ("10.96.0.10", 53, "udp", "shop/web:dns"),
        ("10.96.0.10", 53, "tcp", None),  # wrong protocol
        ("10.96.0.10", 8080, "tcp", None),  # the target port is not the Service's
        ("203.0.113.5", 80, "tcp", "shop/web:http"),  # external IP
        ("198.51.100.7", 80, "tcp", "shop/web:http"),  # load-balancer IP
        ("198.51.100.8", 80, "tcp", None),  # ipMode Proxy: kube-proxy writes no rule
        ("192.168.0.12", 30080, "tcp", "shop/web:http"),  # NodePort on any node
        ("192.168.0.12", 80, "tcp", None),
        ("192.168.0.99", 30080, "tcp", None),  # not a node
        ("None", 5432, "tcp", None),  # headless: no rules
    ],
)
def test_service_port_at(ip: str, port: int, protocol: str, expected: str | None) -> None:
    assert service_port_at(ip, port, protocol, [HEADLESS, WEB], NODE_IPS) == expected  # type: ignore[arg-type]


NODEPORT_SCENARIO = """
apiVersion: svcsim/v1
kind: Scenario
metadata: {name: nodeport-address}
duration: 5s
cluster:
  nodes:
    - {name: node-1, ip: 192.168.0.11}
    - {name: node-2, ip: 192.168.0.12}
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
        replicas: 2
        selector: {matchLabels: {app: web}}
        template:
          metadata: {labels: {app: web}}
          spec:
            containers: [{name: web, image: web, ports: [{name: http, containerPort: 8080}]}]
workloads:
  - name: outside-to-nodeport
    from: {external: {node: node-2, ip: 203.0.113.10}}
    to: 192.168.0.12:30080
    rate: 50
"""


def test_nodeport_address_is_reported_under_its_service(tmp_path: Path) -> None:
    path = tmp_path / "nodeport.yaml"
    path.write_text(NODEPORT_SCENARIO, encoding="utf-8")
    world = build_world(load_scenario(path), 1)
    world.run()
    requests = world.recorder.frames()["requests"]
    assert len(requests) > 100
    assert set(requests["service"].astype(str)) == {"default/web:http"}
    assert (requests["outcome"] == "ok").all()
