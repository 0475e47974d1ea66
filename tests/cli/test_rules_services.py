"""`svcsim rules` on Services as users write them: allocated values, fields kube-proxy ignores."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from svcsim.cli.main import app

NODE = """\
apiVersion: v1
kind: Node
metadata: {name: node-1}
status: {addresses: [{type: InternalIP, address: 192.168.0.11}]}
"""
NODE_PORT_WEB = """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  ports: [{port: 80}]
"""
HEALTH_CHECK_ON_CLUSTER = """\
apiVersion: v1
kind: Service
metadata: {name: hc}
spec:
  clusterIP: 10.96.0.20
  healthCheckNodePort: 31000
  ports: [{port: 80}]
"""


def rules(tmp_path: Path, manifest: str, *options: str) -> tuple[int, str, str]:
    path = tmp_path / "m.yaml"
    path.write_text(manifest + "---\n" + NODE, encoding="utf-8")
    result = CliRunner().invoke(app, ["rules", str(path), "--node", "node-1", *options])
    return result.exit_code, result.stdout, result.stderr.replace(f"{tmp_path}/", "")


@pytest.mark.parametrize(
    ("options", "cluster_ip"),
    [((), "10.107.164.13"), (("--service-cidr", "10.0.0.0/16"), "10.0.54.115")],
)
def test_unset_cluster_ip_and_node_port_are_allocated_and_reported(
    tmp_path: Path, options: tuple[str, ...], cluster_ip: str
) -> None:
    code, out, err = rules(tmp_path, NODE_PORT_WEB, *options)
    assert code == 0
    allocated = [line for line in err.splitlines() if "allocated" in line]
    assert allocated[0] == (
        f"warning: m.yaml:1: Service/default/web: spec.clusterIP: not set: allocated "
        f"{cluster_ip} (the API server picks at random, svcsim by a hash of the name)"
    )
    node_port = allocated[1].split("allocated ")[1].split()[0]
    assert f"-d {cluster_ip}/32" in out
    assert f"--dport {node_port}" in out


def test_a_bad_service_cidr_is_one_line(tmp_path: Path) -> None:
    code, _, err = rules(tmp_path, NODE_PORT_WEB, "--service-cidr", "10.0.0.0/33")
    assert code == 2
    assert err.splitlines() == [
        "--service-cidr: '10.0.0.0/33' is not an IPv4 CIDR such as 10.96.0.0/12"
    ]


def test_a_field_kube_proxy_ignores_is_a_warning_not_a_refusal(tmp_path: Path) -> None:
    # Was: exit 2, as the API server refuses it; kube-proxy reads the object and ignores it.
    code, out, err = rules(tmp_path, HEALTH_CHECK_ON_CLUSTER, "--cluster-cidr", "10.244.0.0/16")
    assert code == 0
    assert (
        "warning: m.yaml:6: Service/default/hc: spec.healthCheckNodePort: ignored, as "
        "kube-proxy ignores it (the API server would refuse the object): it applies only when "
        "type is LoadBalancer and externalTrafficPolicy is Local"
    ) in err.splitlines()
    assert "31000" not in out


SERVICE_CIDRS = """\
apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata: {name: kubernetes}
spec: {cidrs: [10.100.0.0/16, "fd00:10::/108"]}
---
apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata: {name: extra}
spec: {cidrs: [10.200.0.0/16]}
---
"""
DROP_UNALLOCATED = 'drop comment "Drop traffic to unallocated ClusterIPs"'


@pytest.mark.parametrize(
    ("manifest", "options", "ranges"),
    [
        (SERVICE_CIDRS + NODE_PORT_WEB, (), "10.100.0.0/16,10.200.0.0/16"),
        (SERVICE_CIDRS + NODE_PORT_WEB, ("--service-cidr", "10.0.0.0/16"), "10.0.0.0/16"),
        (NODE_PORT_WEB, (), "10.96.0.0/12"),
    ],
    ids=["service-cidr-objects", "flag-overrides-them", "default"],
)
def test_nftables_drops_unallocated_cluster_ips_of_the_service_cidrs_kube_proxy_knows(
    tmp_path: Path, manifest: str, options: tuple[str, ...], ranges: str
) -> None:
    code, out, _ = rules(tmp_path, manifest, "--mode", "nftables", *options)
    assert code == 0
    assert f"ip daddr {{ {ranges} }} {DROP_UNALLOCATED}" in out


def test_a_bad_service_cidr_object_is_one_line(tmp_path: Path) -> None:
    bad = SERVICE_CIDRS.replace("[10.200.0.0/16]", "[10.1.0.0/16, 10.2.0.0/16]")
    code, _, err = rules(tmp_path, bad + NODE_PORT_WEB, "--mode", "nftables")
    assert code == 2
    assert err.splitlines() == [
        "m.yaml:9: ServiceCIDR/extra: spec.cidrs: may specify no more than one CIDR for each IP "
        "family, i.e. 192.168.0.0/24 and 2001:db8::/64"
    ]
