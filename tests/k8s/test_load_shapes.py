import json
from pathlib import Path

import pytest

from svcsim.k8s import Manifests, ServiceType, load_manifests

from .conftest import load

SVC = (
    "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\n"
    "spec: {{clusterIP: {ip}, ports: [{{port: 80}}]}}\n"
)
FLOW = (
    "{{apiVersion: v1, kind: Service, metadata: {{name: {name}}},"
    " spec: {{clusterIP: {ip}, ports: [{{port: 80}}]}}}}"
)


def names(m: Manifests) -> list[str]:
    return [s.meta.name for s in m.services]


@pytest.mark.parametrize(
    "text",
    [
        # multi-document, with empty and null documents around
        "---\n"
        + SVC.format(name="a", ip="10.0.0.1")
        + "---\n---\nnull\n---\n"
        + SVC.format(name="b", ip="10.0.0.2")
        + "...\n",
        # kind: List
        "apiVersion: v1\nkind: List\nmetadata: {resourceVersion: ''}\nitems:\n"
        + "".join(
            "- " + SVC.format(name=n, ip=ip).replace("\n", "\n  ").rstrip() + "\n"
            for n, ip in (("a", "10.0.0.1"), ("b", "10.0.0.2"))
        ),
        # a typed list from the raw API: items without kind/apiVersion
        "apiVersion: v1\nkind: ServiceList\nitems:\n"
        "- metadata: {name: a}\n  spec: {clusterIP: 10.0.0.1, ports: [{port: 80}]}\n"
        "- metadata: {name: b}\n  spec: {clusterIP: 10.0.0.2, ports: [{port: 80}]}\n",
        # a List inside a List, and a null item
        "apiVersion: v1\nkind: List\nitems:\n- null\n- apiVersion: v1\n  kind: List\n  items:\n"
        f"  - {FLOW.format(name='a', ip='10.0.0.1')}\n  - {FLOW.format(name='b', ip='10.0.0.2')}\n",
        # JSON is YAML too (kubectl get -o json)
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [
                    {
                        "apiVersion": "v1",
                        "kind": "Service",
                        "metadata": {"name": n},
                        "spec": {"clusterIP": ip, "ports": [{"port": 80}]},
                    }
                    for n, ip in (("a", "10.0.0.1"), ("b", "10.0.0.2"))
                ],
            },
            indent=2,
        ),
        # an empty List and an empty file contribute nothing
        "apiVersion: v1\nkind: List\nitems: []\n---\n"
        + SVC.format(name="a", ip="10.0.0.1")
        + "---\n"
        + SVC.format(name="b", ip="10.0.0.2"),
    ],
    ids=["multi-doc", "List", "ServiceList", "nested-List", "json", "empty-List"],
)
def test_document_shapes(text: str) -> None:
    m = load(text)
    assert names(m) == ["a", "b"]
    assert [s.cluster_ip for s in m.services] == ["10.0.0.1", "10.0.0.2"]
    assert m.warnings == ()


def test_empty_text_loads_nothing() -> None:
    assert load("") == Manifests()
    assert load("# only a comment\n---\n") == Manifests()


def test_unknown_kinds_are_skipped_with_a_warning() -> None:
    m = load(
        """
        apiVersion: apps/v1
        kind: StatefulSet
        metadata: {name: web}
        ---
        apiVersion: v1
        kind: List
        items:
        - apiVersion: v1
          kind: ConfigMap
          metadata: {name: settings}
        - apiVersion: networking.k8s.io/v1
          kind: Ingress
          metadata: {}
        """
    )
    assert m.warnings == (
        "m.yaml:1: skipping kind StatefulSet (web)",
        "m.yaml:8: skipping kind ConfigMap (settings)",
        "m.yaml:11: skipping kind Ingress (<unnamed>)",
    )
    assert m == Manifests(warnings=m.warnings)


def test_kubectl_noise_is_ignored() -> None:
    m = load(
        """
        apiVersion: v1
        items:
        - apiVersion: v1
          kind: Service
          metadata:
            annotations:
              kubectl.kubernetes.io/last-applied-configuration: |
                {"apiVersion":"v1","kind":"Service"}
            creationTimestamp: "2024-05-01T10:00:00Z"
            managedFields:
            - apiVersion: v1
              fieldsType: FieldsV1
              fieldsV1:
                f:spec:
                  f:ports:
                    k:{"port":80,"protocol":"TCP"}:
                      .: {}
              manager: kubectl-client-side-apply
              operation: Update
              time: "2024-05-01T10:00:00Z"
            name: web
            namespace: shop
            resourceVersion: "4242"
            uid: 5c5ad4f0-0000-4000-8000-000000000000
          spec:
            clusterIP: 10.96.7.7
            clusterIPs: [10.96.7.7]
            internalTrafficPolicy: Cluster
            ipFamilies: [IPv4]
            ipFamilyPolicy: SingleStack
            ports:
            - {name: http, port: 80, protocol: TCP, targetPort: 8080}
            selector: {app: web}
            sessionAffinity: None
            type: ClusterIP
          status:
            loadBalancer: {}
        - apiVersion: discovery.k8s.io/v1
          kind: EndpointSlice
          addressType: IPv4
          endpoints: null
          metadata:
            generateName: web-
            labels: {kubernetes.io/service-name: web}
            name: web-x7x2q
            namespace: shop
            ownerReferences:
            - {apiVersion: v1, controller: true, kind: Service, name: web, uid: x}
          ports: null
        kind: List
        metadata:
          resourceVersion: ""
        """
    )
    (svc,) = m.services
    assert (svc.meta.key, svc.ports[0].target_port, svc.selector) == (
        "shop/web",
        8080,
        (("app", "web"),),
    )
    (sl,) = m.endpoint_slices
    assert (sl.meta.key, sl.service_name, sl.endpoints, sl.ports) == (
        "shop/web-x7x2q",
        "web",
        (),
        (),
    )
    assert m.warnings == ()


def test_unknown_fields_warn_on_their_line() -> None:
    m = load(
        """
        apiVersion: v1
        kind: Service
        metadata: {name: web}
        spec:
          clusterIP: 10.0.0.1
          selecter: {app: web}
          ports:
          - port: 80
            targetport: 8080
        """
    )
    assert m.warnings == (
        "m.yaml:6: Service/default/web: spec.selecter: unknown field (ignored)",
        "m.yaml:9: Service/default/web: spec.ports[0].targetport: unknown field (ignored)",
    )
    assert m.services[0].selector is None and m.services[0].ports[0].target_port == 80


def test_anchors_merge_keys_and_yaml_1_1_keys() -> None:
    m = load(
        """
        apiVersion: v1
        kind: Service
        metadata:
          name: web
          labels: &labels {app: web, on: "yes"}
        spec:
          clusterIP: 10.0.0.1
          selector: *labels
          ports:
          - &http {name: http, port: 80}
          - <<: *http
            name: alt
            port: 8080
        """
    )
    (svc,) = m.services
    assert svc.selector == (("app", "web"), ("on", "yes"))
    assert [(p.name, p.port) for p in svc.ports] == [("http", 80), ("alt", 8080)]


def test_non_canonical_ips_warn_and_normalise() -> None:
    m = load(SVC.format(name="a", ip="172.30.0.041"))
    assert m.services[0].cluster_ip == "172.30.0.41"
    assert m.warnings == (
        'm.yaml:4: Service/default/a: spec.clusterIP: "172.30.0.041" read as 172.30.0.41, as '
        "kube-proxy reads it",
    )


def test_endpoint_slice_without_service_label_warns() -> None:
    m = load(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
        "metadata: {name: s}\naddressType: IPv4\n"
    )
    assert m.warnings == (
        "m.yaml:1: EndpointSlice/default/s: metadata.labels: no kubernetes.io/service-name label: "
        "kube-proxy ignores this slice",
    )


@pytest.mark.parametrize(
    ("address_type", "address", "told"),
    [
        ("IPv6", "fd00::5", "IPv6: ignored (svcsim models kube-proxy's IPv4 proxier"),
        ("FQDN", "db.example.com", "FQDN: ignored, as kube-proxy ignores FQDN slices"),
    ],
)
def test_slices_the_ipv4_proxier_never_reads_are_named(
    address_type: str, address: str, told: str
) -> None:
    m = load(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
        "metadata: {name: s, labels: {kubernetes.io/service-name: web}}\n"
        f"addressType: {address_type}\nendpoints: [{{addresses: [{address}]}}]\n"
    )
    (warning,) = m.warnings
    assert warning.startswith(f"m.yaml:4: EndpointSlice/default/s: addressType: {told}")


def test_directory_files_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(SVC.format(name="b", ip="10.0.0.2"))
    (tmp_path / "a.yml").write_text(SVC.format(name="a", ip="10.0.0.1"))
    (tmp_path / "c.json").write_text(
        json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "c"}})
    )
    (tmp_path / "README.md").write_text("not a manifest: {")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.yaml").write_text("{broken")
    m = load_manifests([tmp_path])
    assert names(m) == ["a", "b"] and [p.meta.name for p in m.pods] == ["c"]
    assert m.services[0].meta.source == f"{tmp_path / 'a.yml'}:1"
    assert m.services[1].type is ServiceType.CLUSTER_IP


def test_a_hostname_only_ingress_is_named_as_unprogrammed() -> None:
    m = load(
        "apiVersion: v1\nkind: Service\nmetadata: {name: lb}\n"
        "spec: {type: LoadBalancer, clusterIP: 10.96.0.5, ports: [{port: 80, nodePort: 30080}]}\n"
        "status: {loadBalancer: {ingress: [{hostname: a.elb.example}, {ip: 192.0.2.9}]}}\n"
    )
    (svc,) = m.services
    assert [i.ip for i in svc.load_balancer_ingress] == ["", "192.0.2.9"]
    (warning,) = m.warnings
    assert warning.startswith(
        "m.yaml:5: Service/default/lb: status.loadBalancer.ingress[0].hostname: a.elb.example: "
        "no ip, so kube-proxy writes no rules for this ingress"
    )
