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


@pytest.mark.parametrize(
    ("svc_type", "kept", "message"),
    [
        pytest.param(
            "ClusterIP",
            30080,
            "kept, as kube-proxy programs it whatever the type (the API server would refuse "
            "the object: nodePort may not be used when type is ClusterIP)",
            id="cluster-ip",
        ),
        pytest.param(
            "ExternalName",
            0,
            f"{TOLERATED}: kube-proxy skips ExternalName Services",
            id="external-name",
        ),
    ],
)
def test_node_port_on_a_type_without_node_ports(svc_type: str, kept: int, message: str) -> None:
    # Was: an error, so `svcsim rules` refused a dump kube-proxy reads.
    head = HEAD if svc_type == "ClusterIP" else HEAD.replace("  clusterIP: 10.96.0.9\n", "")
    extra = "  externalName: db.example.com\n" if svc_type == "ExternalName" else ""
    text = head + f"  type: {svc_type}\n" + extra + "  ports:\n  - port: 80\n    nodePort: 30080\n"
    loaded = load_manifest_text(text, "m.yaml")
    line = text.splitlines().index("    nodePort: 30080") + 1
    assert loaded.warnings == (
        f"m.yaml:{line}: Service/default/s: spec.ports[0].nodePort: {message}",
    )
    assert loaded.services[0].ports[0].node_port == kept
