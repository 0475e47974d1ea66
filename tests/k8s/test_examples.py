from pathlib import Path

import pytest

from svcsim.k8s import (
    EndpointSlice,
    Manifests,
    ServiceType,
    effective_endpoint_slices,
    load_manifests,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "seed-article"
DUMP = EXAMPLES / "kubectl" / "get-svc-endpointslices-pods-nodes.yaml"
FILES = [*sorted(EXAMPLES.glob("*.yaml")), DUMP]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_example_loads_cleanly(path: Path) -> None:
    m = load_manifests([path])
    assert m.warnings == ()
    assert m.services or m.nodes or m.pods


def test_seed_article_services() -> None:
    m = load_manifests([EXAMPLES])
    by_key = {s.meta.key: s for s in m.services}
    ng = by_key["default/ng-svc"]
    assert (ng.cluster_ip, ng.ports[0].port, ng.ports[0].target_port) == ("11.254.0.2", 80, 1234)
    lb = by_key["default/my-service"]
    assert (lb.type, lb.cluster_ip, lb.load_balancer_ingress[0].ip) == (
        ServiceType.LOAD_BALANCER,
        "10.0.171.239",
        "192.0.2.127",
    )
    np_ = by_key["default/my-nodeport-service"]
    assert (np_.ports[0].port, np_.ports[0].target_port, np_.ports[0].node_port) == (80, 80, 30007)
    assert by_key["prod/my-service"].type is ServiceType.EXTERNAL_NAME
    assert by_key["default/my-headless-service"].is_headless
    ccs = by_key["default/ccs-gateway-clusterip"]
    assert (ccs.cluster_ip, ccs.ports[0].name, ccs.ports[0].port) == (
        "10.100.160.92",
        "http",
        30080,
    )
    assert by_key["default/ccs-gateway-nodeport"].ports[0].node_port == 30081
    assert by_key["default/fake-endpoint"].cluster_ip == "10.101.117.0"
    assert [n.meta.name for n in m.nodes] == ["node-1", "node-2"]

    slices = {s.service_name: s for s in effective_endpoint_slices(m)}
    assert sorted(e.addresses[0] for e in slices["ccs-gateway-clusterip"].endpoints) == [
        "172.200.6.224",
        "172.200.6.91",
        "172.200.7.36",
    ]
    assert slices["ccs-gateway-clusterip"].ports[0].port == 80  # named targetPort resolved
    assert slices["my-service-without-selector"].endpoints[0].addresses == ("192.0.2.42",)
    assert slices["external-endpoint"].endpoints[0].addresses == ("10.124.142.43",)
    assert "fake-endpoint" not in slices


def _content(slices: tuple[EndpointSlice, ...], keep: set[str]) -> dict[str, list[object]]:
    """What kube-proxy reads from slices, per Service, ignoring names and empty placeholders."""
    out: dict[str, list[object]] = {}
    for s in slices:
        key = f"{s.meta.namespace}/{s.service_name}"
        if key in keep and s.endpoints:
            out.setdefault(key, []).append(
                (s.address_type, sorted(s.ports, key=repr), sorted(s.endpoints, key=repr))
            )
    return {k: sorted(v, key=repr) for k, v in out.items()}


def test_kubectl_dump_gives_the_same_endpoints_as_the_manifests() -> None:
    written = load_manifests([EXAMPLES])
    dump = load_manifests([DUMP])
    keep = {s.meta.key for s in written.services}
    assert {s.meta.key for s in dump.services} == keep | {"default/kubernetes"}
    assert _content(effective_endpoint_slices(dump), keep) == _content(
        effective_endpoint_slices(written), keep
    )
    assert {(p.meta.key, p.pod_ip, p.ready) for p in dump.pods} == {
        (p.meta.key, p.pod_ip, p.ready) for p in written.pods
    }

    def node_facts(m: Manifests) -> list[tuple[object, ...]]:
        return [(n.meta.name, n.internal_ips, n.external_ips, n.pod_cidrs, n.zone) for n in m.nodes]

    assert node_facts(dump) == node_facts(written)
