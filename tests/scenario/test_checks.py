"""What a scenario means: references that can never work are problems, later ones warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

from svcsim.scenario import load_scenario
from tests.scenario.texts import (
    FRONTEND_0,
    FRONTEND_2,
    TO_WEB,
    WEB,
    WEB_DEPLOYMENT,
    WEB_SERVICE,
    add_service,
    problems_of,
    scenario_text,
    stale,
    warnings_of,
)

BOTH = WEB + "---\n" + FRONTEND_2


PROBLEMS = [
    pytest.param(
        scenario_text(BOTH, TO_WEB, cluster="{nodes: 2, proxy: {portRange: 30000-30999}}"),
        [
            "s.yaml:4: cluster.proxy.portRange: a userspace-mode field (--proxy-port-range), "
            "not for iptables mode"
        ],
        id="userspace-field-in-iptables-mode",
    ),
    pytest.param(
        scenario_text(
            BOTH,
            TO_WEB,
            cluster="\n  nodes: 2\n  proxy:\n    nodes:\n      node-2: {mode: nftables, "
            "udpIdleTimeout: 1s}",
        ),
        [
            "s.yaml:8: cluster.proxy.nodes.node-2.udpIdleTimeout: a userspace-mode field "
            "(--udp-timeout), not for nftables mode"
        ],
        id="userspace-field-of-one-node",
    ),
    pytest.param(
        scenario_text(
            BOTH, TO_WEB, cluster="{nodes: 2, proxy: {mode: userspace, masqueradeAll: true}}"
        ),
        [
            "s.yaml:4: cluster.proxy.masqueradeAll: not read in userspace mode: the userspace "
            "proxier masquerades nothing (kube-proxy itself connects)"
        ],
        id="iptables-field-in-userspace-mode",
    ),
    pytest.param(
        scenario_text(
            BOTH,
            TO_WEB,
            cluster="{nodes: 2, proxy: {mode: nftables, detectLocalMode: InterfaceNamePrefix, "
            "detectLocal: {interfaceNamePrefix: veth}}}",
        ),
        [
            "s.yaml:4: cluster.proxy.detectLocalMode: InterfaceNamePrefix is not modelled in "
            "nftables mode yet (use ClusterCIDR or NodeCIDR)"
        ],
        id="nftables-interface-detector",
    ),
    pytest.param(
        scenario_text(BOTH, TO_WEB.replace("web:http", "webb:http")),
        ["s.yaml:34: workloads[0].to: Service default/webb does not exist (Services: default/web)"],
        id="unknown-service",
    ),
    pytest.param(
        scenario_text(BOTH, TO_WEB.replace("web:http", "web:grpc")),
        ["s.yaml:34: workloads[0].to: Service default/web has no port 'grpc' (ports: http 80/TCP)"],
        id="unknown-port",
    ),
    pytest.param(
        scenario_text(
            BOTH.replace(
                "[{name: http, port: 80, targetPort: 8080}]",
                "[{name: http, port: 80}, {name: metrics, port: 9090}]",
            ),
            TO_WEB.replace("web:http", "web"),
        ),
        [
            "s.yaml:34: workloads[0].to: Service default/web has 2 ports (http 80/TCP, "
            "metrics 9090/TCP): name one, as in web:http"
        ],
        id="which-port",
    ),
    pytest.param(
        scenario_text(BOTH, TO_WEB.replace("rate: 100", "rate: 100, connection: {model: udp}")),
        [
            "s.yaml:34: workloads[0].to: port http 80/TCP of Service default/web is TCP, this "
            "workload sends UDP: use connection model per-request or keepalive"
        ],
        id="protocol",
    ),
    pytest.param(
        scenario_text(
            BOTH.replace("selector: {app: web}\n", "selector: {app: web}\n  clusterIP: None\n", 1),
            TO_WEB,
        ),
        [
            "s.yaml:35: workloads[0].to: Service default/web is headless (clusterIP: None): "
            "kube-proxy writes no rules for it; send to a Pod's IP:port instead"
        ],
        id="headless",
    ),
    pytest.param(
        scenario_text(BOTH, TO_WEB.replace("app: frontend", "app: front")),
        [
            "s.yaml:34: workloads[0].from.pods: no Pod has labels {app: front}, so nothing would "
            "send (Pod labels: Deployment frontend {app: frontend}, Deployment web {app: web})"
        ],
        id="no-client-pods",
    ),
    pytest.param(
        scenario_text(WEB + "---\n" + FRONTEND_0, TO_WEB),
        [
            "s.yaml:34: workloads[0].from.pods: matches only Deployment default/frontend with 0 "
            "replicas, never scaled up: nothing would send"
        ],
        id="zero-replica-clients",
    ),
    pytest.param(
        scenario_text(
            BOTH,
            TO_WEB,
            "  - {at: 1s, action: rollout, deployment: webb}\n"
            "  - {at: 1s, action: scale, deployment: x, replicas: 1}\n"
            "  - {at: 1s, action: delete-pod, pod: web-abc}\n"
            "  - {at: 1s, action: crash-pod, selector: {app: nope}}\n"
            "  - {at: 1s, action: remove-service, service: nope}\n" + stale("nope"),
        ),
        [
            "s.yaml:36: timeline[0].deployment: Deployment default/webb does not exist "
            "(Deployments: default/frontend, default/web)",
            "s.yaml:37: timeline[1].deployment: Deployment default/x does not exist "
            "(Deployments: default/frontend, default/web)",
            "s.yaml:38: timeline[2].pod: Pod default/web-abc does not exist (Pods: none; a "
            "Deployment's Pods get random names: pick them with selector)",
            "s.yaml:39: timeline[3].selector: no Pod has labels {app: nope} (Pod labels: "
            "Deployment frontend {app: frontend}, Deployment web {app: web})",
            "s.yaml:40: timeline[4].service: Service default/nope does not exist at 1s "
            "(Services then: default/web)",
            "s.yaml:41: timeline[5].service: Service default/nope does not exist at 1s "
            "(Services then: default/web)",
        ],
        id="timeline-references",
    ),
    pytest.param(
        scenario_text(
            BOTH,
            TO_WEB,
            "  - {at: 1s, action: remove-service, service: web}\n"
            "  - {at: 2s, action: remove-service, service: web}\n",
        ),
        [
            "s.yaml:37: timeline[1].service: Service default/web does not exist at 2s "
            "(Services then: none)"
        ],
        id="removed-twice",
    ),
    pytest.param(
        scenario_text(
            BOTH.replace("replicas: 2\n", "replicas: 2\n  strategy: {type: Recreate}\n", 1),
            TO_WEB,
            "  - {at: 1s, action: rollout, deployment: web, maxSurge: 1}\n",
        ),
        [
            "s.yaml:37: timeline[0].maxSurge: Deployment default/web uses the Recreate "
            "strategy: it has no maxSurge"
        ],
        id="rollout-override-on-recreate",
    ),
    pytest.param(
        scenario_text(
            BOTH.replace(
                "replicas: 2\n",
                "replicas: 2\n  strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 1}}\n",
                1,
            ),
            TO_WEB,
            "  - {at: 1s, action: rollout, deployment: web, maxUnavailable: 0}\n",
        ),
        [
            "s.yaml:37: timeline[0].maxUnavailable: with Deployment default/web's strategy: "
            "maxUnavailable may not be 0 when maxSurge is 0"
        ],
        id="rollout-override-stalls",
    ),
    pytest.param(
        scenario_text(
            BOTH.replace(
                "selector: {app: web}\n",
                "selector: {app: web}\n  internalTrafficPolicy: Local\n",
                1,
            ),
            TO_WEB,
            stale(),
        ),
        [
            "s.yaml:37: timeline[0].service: Service default/web has internalTrafficPolicy Local: "
            "its traffic does not go through the KUBE-SVC chain a stale rule is injected into"
        ],
        id="stale-rule-local",
    ),
    pytest.param(
        scenario_text(BOTH.replace("replicas: 2\n", "replicas: 0\n", 1), TO_WEB, stale()),
        [
            "s.yaml:36: timeline[0].service: Service default/web has no endpoints, so kube-proxy "
            "writes no KUBE-SVC chain to inject into"
        ],
        id="stale-rule-no-endpoints",
    ),
    pytest.param(
        scenario_text(WEB_SERVICE + "---\n" + FRONTEND_2, TO_WEB, add_service(WEB_DEPLOYMENT)),
        [
            "s.yaml:28: timeline[0].manifest: add-service creates only Service, Endpoints, "
            "EndpointSlice; Deployment default/web would be ignored (put it under manifests)"
        ],
        id="add-service-of-a-deployment",
    ),
    pytest.param(
        scenario_text(
            BOTH.replace(
                "selector: {app: web}\n", "selector: {app: web}\n  clusterIP: 10.96.0.1\n", 1
            ),
            TO_WEB,
        ),
        [
            "s.yaml:7: Service/default/web: spec.clusterIP: 10.96.0.1: provided IP is already "
            "allocated (to Service default/kubernetes)"
        ],
        id="cluster-ip-taken",
    ),
]


@pytest.mark.parametrize(("text", "expected"), PROBLEMS)
def test_what_can_never_work_is_a_problem(tmp_path: Path, text: str, expected: list[str]) -> None:
    assert problems_of(tmp_path, text) == expected


ALLOCATED = (
    "s.yaml:7: Service/default/web: spec.clusterIP: not set: allocated 10.107.164.13 "
    "(the API server picks at random, svcsim by a hash of the name)"
)

WARNINGS = [
    pytest.param(scenario_text(BOTH, TO_WEB), [ALLOCATED], id="allocated"),
    pytest.param(
        scenario_text(
            WEB + "---\n" + FRONTEND_0,
            TO_WEB,
            "  - {at: 5s, action: scale, deployment: frontend, replicas: 1}\n",
        ),
        [
            ALLOCATED,
            "s.yaml:34: workloads[0].from.pods: matches only Deployment "
            "default/frontend with 0 replicas: nothing sends until default/frontend is scaled up "
            "at 5s",
        ],
        id="clients-scaled-up-later",
    ),
    pytest.param(
        scenario_text(FRONTEND_2 + "---\n" + WEB_DEPLOYMENT, TO_WEB, add_service(WEB_SERVICE)),
        [
            ALLOCATED.replace("s.yaml:7", "s.yaml:33"),
            "s.yaml:27: workloads[0].to: Service default/web is created only at 5s "
            "(timeline[0]): the workload sends nothing before then",
        ],
        id="service-added-later",
    ),
    pytest.param(
        scenario_text(
            BOTH.replace(
                "selector: {app: web}\n",
                "selector: {app: web}\n  type: NodePort\n  externalTrafficPolicy: Local\n",
                1,
            ),
            TO_WEB,
            stale(),
        ),
        [
            ALLOCATED,
            "s.yaml:7: Service/default/web: spec.ports[0].nodePort: not set: allocated "
            "32434 (the API server picks at random, svcsim by a hash of the name)",
        ],
        id="stale-rule-with-external-policy-local",
    ),
    pytest.param(
        scenario_text(BOTH.replace("containerPort: 8080", "containerPort: 9000"), TO_WEB),
        [
            ALLOCATED,
            "s.yaml:34: workloads[0].to: Deployment web declares containerPorts 9000/TCP but not "
            "8080/TCP, Service default/web's targetPort: its app refuses these connections (it "
            "listens on its declared ports only)",
        ],
        id="target-port-not-declared",
    ),
    pytest.param(
        scenario_text(
            BOTH,
            TO_WEB,
            cluster="{nodes: 2, proxy: {mode: nftables, randomFully: false, syncCost: {base: 1s}}}",
        ),
        [
            "s.yaml:4: cluster.proxy.randomFully: ignored in nftables mode: nftables mode "
            "always writes 'masquerade fully-random'",
            "s.yaml:4: cluster.proxy.syncCost: ignored in nftables mode (iptables mode's cost); "
            "nftables syncs cost nftSyncCost",
            ALLOCATED,
        ],
        id="iptables-only-fields-in-nftables-mode",
    ),
    pytest.param(
        scenario_text(BOTH, TO_WEB, cluster="{nodes: 2, proxy: {nftSyncCost: {base: 1s}}}"),
        [
            "s.yaml:4: cluster.proxy.nftSyncCost: ignored in iptables mode (nftables mode's "
            "cost); iptables syncs cost syncCost",
            ALLOCATED,
        ],
        id="nftables-cost-in-iptables-mode",
    ),
]


def test_pods_that_declare_no_ports_are_served_on_the_target_port(tmp_path: Path) -> None:
    undeclared = BOTH.replace(", ports: [{containerPort: 8080}]", "")
    assert undeclared != BOTH
    assert warnings_of(tmp_path, scenario_text(undeclared, TO_WEB)) == [ALLOCATED]


@pytest.mark.parametrize(("text", "expected"), WARNINGS)
def test_what_works_later_or_was_filled_in_is_a_warning(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    assert warnings_of(tmp_path, text) == expected


def test_shipped_scenarios_still_validate() -> None:
    shipped = Path(__file__).resolve().parents[2] / "scenarios"
    for path in sorted(shipped.glob("*.yaml")):
        load_scenario(path)


def test_an_object_defined_in_two_manifests_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(WEB_SERVICE, encoding="utf-8")
    text = scenario_text(BOTH, TO_WEB) + "\n"
    text = text.replace("manifests:\n", "manifests:\n  - path: web.yaml\n", 1)
    assert problems_of(tmp_path, text) == [
        "s.yaml:8: Service/default/web: metadata.name: duplicate Service; first defined at "
        "web.yaml:1"
    ]


def test_a_node_in_the_manifests_is_ignored_with_a_warning(tmp_path: Path) -> None:
    node = "apiVersion: v1\nkind: Node\nmetadata: {name: node-9}\n"
    text = scenario_text(
        BOTH.replace("spec:\n", "spec:\n  clusterIP: 10.96.0.10\n", 1) + "---\n" + node, TO_WEB
    )
    line = text.splitlines().index("      kind: Node")
    assert warnings_of(tmp_path, text) == [
        f"s.yaml:{line}: Node/node-9: ignored: a scenario's nodes are cluster.nodes"
    ]
