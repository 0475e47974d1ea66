from pathlib import Path

import pytest

from svcsim.k8s import ManifestErrors, load_manifest_text, load_manifests

from .conftest import load


def problems(text: str, source: str = "m.yaml") -> list[str]:
    with pytest.raises(ManifestErrors) as info:
        load(text, source)
    return info.value.problems


def test_brief_example_line() -> None:
    text = """
    apiVersion: v1
    kind: Service
    metadata:
      name: web
      namespace: default
    spec:
      clusterIP: 10.0.0.1
      selector:
        app: web
      ports:
      - name: http
        port: 70000
    """
    assert problems(text, "svc.yaml") == [
        "svc.yaml:12: Service/default/web: spec.ports[0].port: must be 1..65535, got 70000"
    ]


def test_many_problems_in_one_object_each_on_its_line() -> None:
    text = """
    apiVersion: v1
    kind: Service
    metadata:
      name: Web_1
      namespace: shop
      labels:
        version: 1
    spec:
      type: Nodeport
      clusterIP: 10.0.0.300
      externalIPs: [1.2.3.4, nope]
      sessionAffinity: ClientIP
      sessionAffinityConfig:
        clientIP:
          timeoutSeconds: 0
      externalTrafficPolicy: local
      ports:
      - name: http
        port: "80"
        protocol: tcp
        targetPort: 99999
        nodePort: 30000
      - name: http
        port: 81
        targetPort: "8080"
      - port: 82
        targetPort: Not_A_Name
    """
    obj = "Service/shop/Web_1"
    assert problems(text) == [
        f"m.yaml:4: {obj}: metadata.name: must be lowercase letters, digits and '-', starting "
        "with a letter and ending alphanumeric; got 'Web_1'",
        f"m.yaml:7: {obj}: metadata.labels.version: must be a string, got 1",
        f"m.yaml:9: {obj}: spec.type: must be one of ClusterIP, NodePort, LoadBalancer, "
        'ExternalName; got "Nodeport"',
        f'm.yaml:10: {obj}: spec.clusterIP: must be a valid IP address, got "10.0.0.300"',
        f'm.yaml:11: {obj}: spec.externalIPs[1]: must be a valid IP address, got "nope"',
        f"m.yaml:15: {obj}: spec.sessionAffinityConfig.clientIP.timeoutSeconds: must be "
        "1..86400, got 0",
        f'm.yaml:16: {obj}: spec.externalTrafficPolicy: must be one of Cluster, Local; got "local"',
        f'm.yaml:19: {obj}: spec.ports[0].port: must be an integer, got "80"',
        f'm.yaml:20: {obj}: spec.ports[0].protocol: must be one of TCP, UDP, SCTP; got "tcp"',
        f"m.yaml:21: {obj}: spec.ports[0].targetPort: must be 1..65535, got 99999",
        f"m.yaml:23: {obj}: spec.ports[1].name: duplicate name 'http' (also spec.ports[0])",
        f"m.yaml:25: {obj}: spec.ports[1].targetPort: must be a port number or a port name; "
        '"8080" is a string (write the number without quotes)',
        f"m.yaml:26: {obj}: spec.ports[2].name: required when the Service has more than one port",
        f"m.yaml:27: {obj}: spec.ports[2].targetPort: must be lowercase letters, digits and '-'; "
        "got 'Not_A_Name'",
    ]


def test_problems_across_objects_and_files(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    a.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus:\n  podIP: 10.0.0.1\n"
        "  podIPs: [{ip: 10.0.0.2}]\n---\n"
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: s\n"
        "  labels: {kubernetes.io/service-name: web}\nendpoints:\n- addresses: []\n"
        "  conditions: {ready: 'yes', serving: 1}\n- addresses: ['127.0.0.1', '2001:db8::1']\n"
        "ports:\n- port: 70000\n"
    )
    b = tmp_path / "b.yaml"
    b.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: p}\nspec: {ports: [{port: 1}]\n")
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ManifestErrors) as info:
        load_manifests([a, b, missing])
    found = info.value.problems
    # libyaml and PyYAML word syntax errors differently; the line and the prefix are ours.
    assert found[7].startswith(f"{b}:5: yaml: ") and "','" in found[7]
    assert found[:7] + found[8:] == [
        f"{a}:6: Pod/default/p: status.podIPs[0]: must match status.podIP (10.0.0.1), got 10.0.0.2",
        f"{a}:8: EndpointSlice/default/s: addressType: required (IPv4, IPv6 or FQDN)",
        f"{a}:14: EndpointSlice/default/s: endpoints[0].addresses: must have at least one address",
        f"{a}:15: EndpointSlice/default/s: endpoints[0].conditions.ready: must be a boolean "
        '(true or false), got "yes"',
        f"{a}:15: EndpointSlice/default/s: endpoints[0].conditions.serving: must be a boolean "
        "(true or false), got 1",
        f"{a}:16: EndpointSlice/default/s: endpoints[1].addresses[0]: may not be in the loopback "
        "range (127.0.0.0/8)",
        f"{a}:18: EndpointSlice/default/s: ports[0].port: must be 0..65535, got 70000",
        f"{missing}: cannot read file: No such file or directory",
    ]
    assert str(info.value).startswith("9 problems in manifests:\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "kind: Service\nmetadata: {name: x}\n",
            ["m.yaml:1: Service/default/x: apiVersion: required"],
        ),
        (
            "apiVersion: apps/v1\nkind: Service\nmetadata: {name: x}\n",
            ['m.yaml:1: Service/default/x: apiVersion: must be v1, got "apps/v1"'],
        ),
        (
            "apiVersion: discovery.k8s.io/v2\nkind: EndpointSlice\nmetadata: "
            "{name: x}\naddressType: IPv4\n",
            [
                "m.yaml:1: EndpointSlice/default/x: apiVersion: must be discovery.k8s.io/v1 or "
                'discovery.k8s.io/v1beta1, got "discovery.k8s.io/v2"'
            ],
        ),
        ("apiVersion: v1\nmetadata: {name: x}\n", ["m.yaml:1: kind: required, got null"]),
        ("- a\n- b\n", ["m.yaml:1: document: must be a mapping (a Kubernetes object), got a list"]),
        (
            "apiVersion: v1\nkind: Pod\nmetadata:\n  generateName: web-\n",
            [
                "m.yaml:3: Pod/default/<unnamed>: metadata.name: required (generateName is not "
                "supported: give the name the API server assigned)"
            ],
        ),
        ("apiVersion: v1\nkind: Pod\n", ["m.yaml:1: Pod/default/<unnamed>: metadata: required"]),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  clusterIP: 10.0.0.1\n",
            ["m.yaml:4: Service/default/s: spec.ports: required (at least one port)"],
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {type: ExternalName}\n",
            ["m.yaml:4: Service/default/s: spec.externalName: required for type ExternalName"],
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: "
            "{type: NodePort, clusterIP: None,"
            " ports: [{port: 1, nodePort: 70000}]}\n",
            [
                "m.yaml:4: Service/default/s: spec.clusterIP: may not be None for type NodePort",
                "m.yaml:4: Service/default/s: spec.ports[0].nodePort: must be 1..65535, got 70000",
            ],
        ),
        (
            "apiVersion: v1\nkind: Endpoints\nmetadata: {name: e}\nsubsets:\n- addresses:\n"
            "  - ip: 169.254.1.1\n  - {}\n  ports: [{port: 0}, {name: b, port: 2}]\n",
            [
                "m.yaml:6: Endpoints/default/e: subsets[0].addresses[0].ip: may not be in the "
                "link-local "
                "range (169.254.0.0/16)",
                "m.yaml:7: Endpoints/default/e: subsets[0].addresses[1].ip: required",
                "m.yaml:8: Endpoints/default/e: subsets[0].ports[0].name: required when the "
                "subset has "
                "more than one port",
                "m.yaml:8: Endpoints/default/e: subsets[0].ports[0].port: must be 1..65535, got 0",
            ],
        ),
        (
            "apiVersion: v1\nkind: Node\nmetadata: {name: n}\nspec: {podCIDR: 10.0.0.0/33}\n"
            "status:\n  addresses:\n  - {type: InternalIP, address: 10.0.0.999}\n",
            [
                'm.yaml:4: Node/n: spec.podCIDR: must be a valid CIDR, got "10.0.0.0/33"',
                "m.yaml:7: Node/n: status.addresses[0].address: must be a valid IP address, got "
                '"10.0.0.999"',
            ],
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n"
            "    ports: [{containerPort: 0}, {containerPort: 80, name: HTTP}, {name: x}]\n",
            [
                "m.yaml:7: Pod/default/p: spec.containers[0].ports[0].containerPort: must be "
                "1..65535, got 0",
                "m.yaml:7: Pod/default/p: spec.containers[0].ports[1].name: must be lowercase "
                "letters, "
                "digits and '-'; got 'HTTP'",
                "m.yaml:7: Pod/default/p: spec.containers[0].ports[2].containerPort: required",
            ],
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  clusterIP: 10.0.0.1\n"
            "  ports: [{port: 1}]\n  clusterIP: 10.0.0.2\n",
            ['m.yaml:7: yaml: duplicate key "clusterIP" (first at line 5)'],
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  namespace: Prod\nspec:\n"
            "  clusterIP: 10.0.0.1\n  ports: [{port: 1}]\n",
            [
                "m.yaml:5: Service/Prod/s: metadata.namespace: must be lowercase letters, digits "
                "and "
                "'-', starting and ending alphanumeric; got 'Prod'"
            ],
        ),
    ],
)
def test_single_problems(text: str, expected: list[str]) -> None:
    with pytest.raises(ManifestErrors) as info:
        load_manifest_text(text, "m.yaml")
    assert info.value.problems == expected


def test_duplicate_objects_across_documents() -> None:
    text = """
    apiVersion: v1
    kind: Pod
    metadata: {name: p}
    ---
    apiVersion: v1
    kind: Pod
    metadata:
      name: p
      namespace: default
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: p, namespace: other}
    """
    assert problems(text) == [
        "m.yaml:8: Pod/default/p: metadata.name: duplicate Pod; first defined at m.yaml:1"
    ]


def test_yaml_syntax_error_line() -> None:
    (found,) = problems("apiVersion: v1\nkind: Pod\nmetadata:\n  name: [p\n")
    assert found.startswith("m.yaml:5: yaml: ") and "expected ',' or ']'" in found
    (found,) = problems("a: b\n c: d\n")
    assert found.startswith("m.yaml:2: yaml: mapping values are not allowed")


def test_problems_in_list_items_point_at_item_lines() -> None:
    text = """
    apiVersion: v1
    kind: List
    items:
    - apiVersion: v1
      kind: Service
      metadata: {name: a}
      spec: {clusterIP: 10.0.0.1, ports: [{port: 1}]}
    - apiVersion: v1
      kind: Service
      metadata: {name: b}
      spec:
        clusterIP: 10.0.0.2
        ports: [{port: -1}]
    - 42
    """
    assert problems(text) == [
        "m.yaml:13: Service/default/b: spec.ports[0].port: must be 1..65535, got -1",
        "m.yaml:14: document: must be a mapping (a Kubernetes object), got 42",
    ]


def test_directory_without_manifests(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ManifestErrors) as info:
        load_manifests([tmp_path])
    assert info.value.problems == [f"{tmp_path}: no .yaml/.yml/.json files in directory"]


def test_same_file_twice_is_a_duplicate(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n")
    with pytest.raises(ManifestErrors) as info:
        load_manifests([f, f])
    assert info.value.problems == [
        f"{f}:3: Node/n1: metadata.name: duplicate Node; first defined at {f}:1"
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("spec: {}", "m.yaml:4: ServiceCIDR/s: spec.cidrs: at least one CIDR required"),
        ("spec: {cidrs: []}", "m.yaml:4: ServiceCIDR/s: spec.cidrs: at least one CIDR required"),
        (
            "spec: {cidrs: [10.0.0.0/16, 10.1.0.0/16, 'fd00::/64']}",
            "m.yaml:4: ServiceCIDR/s: spec.cidrs: may only hold up to 2 values",
        ),
        (
            "spec: {cidrs: [10.0.0.0/33]}",
            'm.yaml:4: ServiceCIDR/s: spec.cidrs[0]: must be a valid CIDR, got "10.0.0.0/33"',
        ),
        ("", "m.yaml:1: ServiceCIDR/s: spec: required"),
    ],
    ids=["no-cidrs", "empty", "three", "not-a-cidr", "no-spec"],
)
def test_bad_service_cidrs_are_one_line_each(spec: str, expected: str) -> None:
    text = f"""
    apiVersion: networking.k8s.io/v1
    kind: ServiceCIDR
    metadata: {{name: s}}
    {spec}
    """
    assert problems(text) == [expected]


def test_service_cidrs_load_with_their_ipv4_ranges() -> None:
    text = """
    apiVersion: networking.k8s.io/v1
    kind: ServiceCIDR
    metadata: {name: a}
    spec: {cidrs: [10.96.0.0/12, "fd00::/108"]}
    ---
    apiVersion: networking.k8s.io/v1
    kind: ServiceCIDR
    metadata: {name: b}
    spec: {cidrs: [10.96.0.0/12]}
    """
    manifests = load(text, "m.yaml")
    assert [s.meta.name for s in manifests.service_cidrs] == ["a", "b"]
    assert manifests.ipv4_service_cidrs == ("10.96.0.0/12",)
