import textwrap
from typing import Any

import pytest

from svcsim.k8s import (
    EndpointConditions,
    EndpointPort,
    Protocol,
    ServiceType,
    SessionAffinity,
    TrafficPolicy,
    load_manifest_text,
)

from .conftest import load

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: 10.0.0.10
  selector: {app: web}
"""


def service(spec_extra: str, *, ports: str = "  ports:\n  - port: 80\n", status: str = ""):
    text = SERVICE + textwrap.indent(textwrap.dedent(spec_extra), "  ") + ports + status
    m = load_manifest_text(text, "svc.yaml")
    assert len(m.services) == 1
    return m.services[0]


@pytest.mark.parametrize(
    ("extra", "attr", "expected"),
    [
        ("", "type", ServiceType.CLUSTER_IP),
        ("", "session_affinity", SessionAffinity.NONE),
        ("", "session_affinity_timeout_s", 10800),
        ("sessionAffinity: ClientIP\n", "session_affinity_timeout_s", 10800),
        (
            "sessionAffinity: ClientIP\nsessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}\n",
            "session_affinity_timeout_s",
            60,
        ),
        # SetDefaults_Service drops the config when affinity is None.
        (
            "sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}\n",
            "session_affinity_timeout_s",
            10800,
        ),
        ("", "external_traffic_policy", TrafficPolicy.CLUSTER),
        ("", "internal_traffic_policy", TrafficPolicy.CLUSTER),
        ("internalTrafficPolicy: Local\n", "internal_traffic_policy", TrafficPolicy.LOCAL),
        ("", "publish_not_ready_addresses", False),
        ("", "cluster_ips", ("10.0.0.10",)),
        ("", "external_ips", ()),
        ("externalIPs: [1.2.3.004]\n", "external_ips", ("1.2.3.4",)),
        ("", "health_check_node_port", 0),
    ],
)
def test_service_defaults(extra: str, attr: str, expected: Any) -> None:
    assert getattr(service(extra), attr) == expected


@pytest.mark.parametrize(
    ("port_yaml", "expected_protocol", "expected_target"),
    [
        ("- port: 80\n", Protocol.TCP, 80),
        ("- port: 80\n  targetPort: 0\n", Protocol.TCP, 80),
        ('- port: 80\n  targetPort: ""\n', Protocol.TCP, 80),
        ("- port: 80\n  targetPort: 8080\n", Protocol.TCP, 8080),
        ("- port: 80\n  targetPort: http\n", Protocol.TCP, "http"),
        ("- port: 53\n  protocol: UDP\n", Protocol.UDP, 53),
        ("- port: 9\n  protocol: SCTP\n", Protocol.SCTP, 9),
    ],
)
def test_service_port_defaults(
    port_yaml: str, expected_protocol: Protocol, expected_target: int | str
) -> None:
    svc = service("", ports="  ports:\n" + textwrap.indent(port_yaml, "  "))
    (port,) = svc.ports
    assert (port.protocol, port.target_port, port.node_port, port.name) == (
        expected_protocol,
        expected_target,
        0,
        "",
    )


@pytest.mark.parametrize(
    ("selector_yaml", "expected"),
    [
        ("", None),
        ("selector: null\n", None),
        ("selector: {}\n", None),  # the API server stores an empty selector as nil
        ("selector: {app: web, tier: fe}\n", (("app", "web"), ("tier", "fe"))),
    ],
)
def test_selector_nil_semantics(selector_yaml: str, expected: object) -> None:
    text = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  clusterIP: 10.0.0.1\n"
    text += textwrap.indent(selector_yaml, "  ") + "  ports: [{port: 80}]\n"
    (svc,) = load_manifest_text(text, "s.yaml").services
    assert svc.selector == expected
    assert svc.has_selector is (expected is not None)


def test_headless_and_cluster_ips() -> None:
    m = load(
        """
        apiVersion: v1
        kind: Service
        metadata: {name: h}
        spec: {clusterIP: None, selector: {app: a}}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: d}
        spec:
          clusterIPs: [10.0.0.2, "2001:db8::2"]
          ports: [{port: 80}]
        """
    )
    headless, dual = m.services
    assert headless.is_headless and headless.cluster_ips == ("None",) and headless.ports == ()
    assert dual.cluster_ip == "10.0.0.2" and dual.cluster_ips == ("10.0.0.2", "2001:db8::2")


@pytest.mark.parametrize(
    ("ingress", "svc_type", "expected"),
    [
        ("- ip: 192.0.2.127\n", "LoadBalancer", ("192.0.2.127", "", "VIP")),
        ("- ip: 192.0.2.127\n  ipMode: Proxy\n", "LoadBalancer", ("192.0.2.127", "", "Proxy")),
        ("- hostname: lb.example.com\n", "LoadBalancer", ("", "lb.example.com", None)),
    ],
)
def test_load_balancer_ingress(
    ingress: str, svc_type: str, expected: tuple[str, str, str | None]
) -> None:
    status = "status:\n  loadBalancer:\n    ingress:\n" + textwrap.indent(ingress, "    ")
    svc = service(
        f"type: {svc_type}\n", ports="  ports:\n  - port: 80\n    nodePort: 30001\n", status=status
    )
    (ing,) = svc.load_balancer_ingress
    assert (ing.ip, ing.hostname, ing.ip_mode) == expected


def test_external_name_service() -> None:
    m = load(
        """
        apiVersion: v1
        kind: Service
        metadata: {name: my-service, namespace: prod}
        spec: {type: ExternalName, externalName: my.database.example.com}
        """
    )
    (svc,) = m.services
    assert (svc.type, svc.external_name, svc.cluster_ip, svc.meta.key) == (
        ServiceType.EXTERNAL_NAME,
        "my.database.example.com",
        "",
        "prod/my-service",
    )
    assert m.warnings == ()


def test_unset_cluster_ip_and_node_port_stay_unset() -> None:
    # Allocation is for whoever replays the objects (svcsim.k8s.allocate), not the loader.
    m = load(
        """
        apiVersion: v1
        kind: Service
        metadata: {name: np}
        spec:
          type: NodePort
          ports:
          - port: 80
        """
    )
    assert m.warnings == ()
    assert (m.services[0].cluster_ip, m.services[0].ports[0].node_port) == ("", 0)


POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: p
{meta}spec:
  nodeName: n1
  containers:
  - name: c
    ports:
    - {{containerPort: 8080, name: http}}
    - {{containerPort: 53, name: dns, protocol: UDP}}
{status}"""


@pytest.mark.parametrize(
    ("meta", "status", "ready", "terminating", "phase", "ips"),
    [
        ("", "", False, False, "Pending", ()),
        # no status.conditions: a Pod with an IP is taken as Ready
        ("", "status: {podIP: 10.0.0.5}\n", True, False, "Running", ("10.0.0.5",)),
        (
            "",
            "status:\n  podIP: 10.0.0.5\n  conditions: [{type: Ready, status: 'False'}]\n",
            False,
            False,
            "Running",
            ("10.0.0.5",),
        ),
        (
            "",
            "status:\n  podIP: 10.0.0.5\n  conditions: [{type: PodScheduled, status: 'True'}]\n",
            False,
            False,
            "Running",
            ("10.0.0.5",),
        ),
        (
            "  deletionTimestamp: '2024-01-01T00:00:00Z'\n",
            "status:\n  phase: Running\n  podIP: 10.0.0.5\n  conditions: "
            "[{type: Ready, status: 'True'}]\n",
            True,
            True,
            "Running",
            ("10.0.0.5",),
        ),
        (
            "",
            "status:\n  podIP: 10.0.0.5\n  podIPs: [{ip: 10.0.0.5}, {ip: 'fd00::5'}]\n  phase: "
            "Failed\n",
            True,
            False,
            "Failed",
            ("10.0.0.5", "fd00::5"),
        ),
        ("", "status:\n  podIPs: [{ip: 10.0.0.05}]\n", True, False, "Running", ("10.0.0.5",)),
    ],
)
def test_pod_readiness_and_ips(
    meta: str, status: str, ready: bool, terminating: bool, phase: str, ips: tuple[str, ...]
) -> None:
    (pod,) = load_manifest_text(POD.format(meta=meta, status=status), "pod.yaml").pods
    assert (pod.ready, pod.terminating, pod.phase, pod.pod_ips) == (ready, terminating, phase, ips)
    assert pod.pod_ip == (ips[0] if ips else None)
    assert pod.node_name == "n1"
    assert [(p.container_port, p.protocol, p.name) for p in pod.container_ports] == [
        (8080, Protocol.TCP, "http"),
        (53, Protocol.UDP, "dns"),
    ]


def test_sidecar_ports_count_but_init_container_ports_do_not() -> None:
    m = load(
        """
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          initContainers:
          - {name: init, ports: [{containerPort: 1, name: init}]}
          - {name: proxy, restartPolicy: Always, ports: [{containerPort: 15001, name: envoy}]}
          containers:
          - {name: app}
        """
    )
    assert [p.name for p in m.pods[0].container_ports] == ["envoy"]


def test_endpoint_slice_nil_conditions_and_port_defaults() -> None:
    m = load(
        """
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata:
          name: web-abc
          labels: {kubernetes.io/service-name: web}
        addressType: IPv4
        endpoints:
        - addresses: [10.0.0.1]
        - addresses: [10.0.0.2]
          conditions: {ready: false, serving: true, terminating: true}
          nodeName: n1
          zone: z1
          hints: {forZones: [{name: z1}]}
          targetRef: {kind: Pod, name: web-2}
        - addresses: [10.0.0.3]
          conditions: {ready: null}
        ports:
        - port: 8080
        - {name: metrics, port: 9090, protocol: UDP}
        - {name: any}
        """
    )
    (sl,) = m.endpoint_slices
    assert sl.service_name == "web" and sl.address_type == "IPv4"
    e1, e2, e3 = sl.endpoints
    assert (
        e1.conditions == EndpointConditions(None, None, None)
        and e1.is_ready
        and not e1.is_terminating
    )
    assert e2.conditions == EndpointConditions(False, True, True)
    assert (e2.node_name, e2.zone, e2.hint_zones, e2.target_ref) == (
        "n1",
        "z1",
        ("z1",),
        "default/web-2",
    )
    assert e3.conditions.ready is None
    assert sl.ports == (
        EndpointPort(8080, Protocol.TCP, ""),
        EndpointPort(9090, Protocol.UDP, "metrics"),
        EndpointPort(0, Protocol.TCP, "any"),  # nil port: kube-proxy ignores it
    )


def test_endpoint_slice_v1beta1_topology() -> None:
    m = load(
        """
        apiVersion: discovery.k8s.io/v1beta1
        kind: EndpointSlice
        metadata: {name: s, labels: {kubernetes.io/service-name: web}}
        addressType: IPv4
        endpoints:
        - addresses: [10.0.0.1]
          topology: {kubernetes.io/hostname: n2, topology.kubernetes.io/zone: z2}
        """
    )
    (ep,) = m.endpoint_slices[0].endpoints
    assert (ep.node_name, ep.zone) == ("n2", "z2")


def test_endpoints_and_node() -> None:
    m = load(
        """
        apiVersion: v1
        kind: Endpoints
        metadata: {name: ext}
        subsets:
        - addresses: [{ip: 192.0.2.42, nodeName: n1, targetRef: {kind: Pod, name: p, namespace: x}}]
          notReadyAddresses: [{ip: 192.0.2.43}]
          ports: [{port: 9376}]
        ---
        apiVersion: v1
        kind: Node
        metadata: {name: node-1, namespace: ignored, labels: {topology.kubernetes.io/zone: a}}
        spec: {podCIDR: 172.200.006.0/24}
        status:
          addresses:
          - {type: InternalIP, address: 192.168.0.11}
          - {type: ExternalIP, address: 203.0.113.11}
          - {type: Hostname, address: node-1}
        """
    )
    (eps,) = m.endpoints
    (subset,) = eps.subsets
    assert [(a.ip, a.node_name, a.target_ref) for a in subset.addresses] == [
        ("192.0.2.42", "n1", "x/p")
    ]
    assert [a.ip for a in subset.not_ready_addresses] == ["192.0.2.43"]
    assert subset.ports == (EndpointPort(9376, Protocol.TCP, ""),)
    (node,) = m.nodes
    assert (node.meta.name, node.meta.namespace, node.zone) == ("node-1", "default", "a")
    assert (node.internal_ips, node.external_ips, node.pod_cidrs) == (
        ("192.168.0.11",),
        ("203.0.113.11",),
        ("172.200.6.0/24",),
    )
