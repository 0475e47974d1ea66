"""Service fields the API server refuses but kube-proxy ignores: warnings, read as it reads them."""

from __future__ import annotations

import pytest

from svcsim.k8s import load_manifest_text

HEAD = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  clusterIP: 10.96.0.9\n"
TOLERATED = "ignored, as kube-proxy ignores it (the API server would refuse the object)"


@pytest.mark.parametrize(
    ("spec", "warning"),
    [
        pytest.param(
            "  healthCheckNodePort: 31000\n  ports: [{port: 80}]\n",
            f"m.yaml:6: Service/default/s: spec.healthCheckNodePort: {TOLERATED}: it applies "
            "only when type is LoadBalancer and externalTrafficPolicy is Local",
            id="health-check-port-on-cluster-ip",
        ),
        pytest.param(
            "  type: NodePort\n  loadBalancerSourceRanges: [10.0.0.0/8]\n  ports: [{port: 80}]\n",
            f"m.yaml:7: Service/default/s: spec.loadBalancerSourceRanges: {TOLERATED}: it "
            "applies only when type is LoadBalancer, not NodePort",
            id="source-ranges-on-node-port",
        ),
    ],
)
def test_tolerated_fields_warn(spec: str, warning: str) -> None:
    loaded = load_manifest_text(HEAD + spec, "m.yaml")
    assert loaded.warnings == (warning,)
    assert loaded.services[0].health_check_node_port == 0


@pytest.mark.parametrize(("value", "expected"), [("", True), ("true", True), ("false", False)])
def test_allocate_load_balancer_node_ports(value: str, expected: bool) -> None:
    field = f"  allocateLoadBalancerNodePorts: {value}\n" if value else ""
    text = HEAD + "  type: LoadBalancer\n" + field + "  ports: [{port: 80}]\n"
    assert (
        load_manifest_text(text, "m.yaml").services[0].allocate_load_balancer_node_ports is expected
    )
