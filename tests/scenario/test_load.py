"""Loading scenario files: every problem at once, each at the line of its key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from svcsim.scenario import LoadedScenario, Scenario, ScenarioErrors, load_scenario

HEAD = "apiVersion: svcsim/v1\nkind: Scenario\n"  # lines 1-2 of every case below


def write(tmp_path: Path, body: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def problems(tmp_path: Path, body: str) -> list[str]:
    path = write(tmp_path, body)
    with pytest.raises(ScenarioErrors) as err:
        load_scenario(path)
    # Messages carry the path as given; drop the temporary directory for readable tables.
    return [p.replace(f"{tmp_path}/", "") for p in err.value.problems]


VALID = [
    pytest.param(HEAD, id="minimal"),
    pytest.param(HEAD + "duration: 90\nseed: 3\ncluster: {nodes: 1}\n", id="numbers"),
    pytest.param(
        HEAD
        + """\
manifests:
  - inline: |
      apiVersion: v1
      kind: Service
      metadata: {name: web}
      spec: {selector: {app: web}, ports: [{name: http, port: 80}]}
      ---
      apiVersion: v1
      kind: Pod
      metadata: {name: fe, labels: {app: fe}}
      spec: {containers: [{name: fe, image: fe}]}
workloads:
  - name: fe
    from: {pods: {app: fe}}
    to: web:http
    rate: 10
timeline:
  - {at: 10s, action: crash-proxy, node: node-2}
  - {at: 5s, action: restart-proxy, node: node-2}
""",
        id="workload-and-timeline",
    ),
]


@pytest.mark.parametrize("body", VALID)
def test_valid(tmp_path: Path, body: str) -> None:
    loaded = load_scenario(write(tmp_path, body))
    assert isinstance(loaded, LoadedScenario)
    assert isinstance(loaded.scenario, Scenario)
    assert loaded.base_dir == tmp_path
    assert loaded.scenario.metadata.name == "s"  # from the file name


INVALID = [
    pytest.param(
        HEAD
        + """\
workloads:
  - name: fe
    from: {host: node-1}
    to: web
    rate: -5
""",
        ["s.yaml:7: workloads[0].rate: must be > 0, got -5"],
        id="rate",
    ),
    pytest.param("kind: Scenario\n", ["s.yaml:1: apiVersion: required"], id="missing-apiVersion"),
    pytest.param(
        "apiVersion: svcsim/v1\nkind: Pod\n",
        ["s.yaml:2: kind: must be 'Scenario', got \"Pod\""],
        id="kind",
    ),
    pytest.param(
        HEAD + "duraton: 5s\n",
        ["s.yaml:3: duraton: unknown field (did you mean 'duration'?)"],
        id="typo",
    ),
    pytest.param(
        HEAD + "duration: 5 minutes\n",
        ["s.yaml:3: duration: invalid duration '5 minutes': use e.g. 250ms, 30s, 2m"],
        id="duration",
    ),
    pytest.param(HEAD + "seed: -1\n", ["s.yaml:3: seed: must be >= 0, got -1"], id="seed"),
    pytest.param(
        HEAD + "workloads:\n  - {name: w, from: {host: node-1}, to: web, rate: .inf}\n",
        ["s.yaml:4: workloads[0].rate: must be a finite number, got inf"],
        id="inf",
    ),
    pytest.param(
        HEAD
        + """\
duration: 1m
timeline:
  - {at: 30s, action: scale, deployment: web, replicas: 2}
  - at: 2m
    action: drain-node
    node: node-9
""",
        [
            "s.yaml:6: timeline[1].at: must be <= duration (1m), got 2m",
            "s.yaml:8: timeline[1].node: unknown node 'node-9' (nodes: node-1, node-2, node-3)",
        ],
        id="timeline-refs",
    ),
    pytest.param(
        HEAD
        + """\
timeline:
  - {at: 1s, action: explode}
  - {at: 1s}
  - at: 1s
    action: block-sync
    node: node-1
""",
        [
            "s.yaml:4: timeline[0].action: must be one of 'rollout', 'scale', 'delete-pod', "
            "'crash-pod', 'fail-readiness', 'crash-proxy', 'restart-proxy', 'block-sync', "
            "'inject-stale-rule', 'add-service', 'remove-service', 'drain-node', 'fail-node', "
            "'partition-node', 'recover-node', 'taint-node', 'untaint-node', 'fail-endpoint', "
            "'recover-endpoint', 'flush-conntrack'; got \"explode\"",
            "s.yaml:5: timeline[1].action: required",
            "s.yaml:6: timeline[2].for: required",
        ],
        id="actions",
    ),
    pytest.param(
        HEAD
        + """\
cluster:
  clusterCIDR: 10.244.0.1/16
  serviceCIDR: 10.96.0.0/33
  proxy:
    mode: iptable
    masqueradeBit: 32
    masqueradeAll: 'no'
""",
        [
            "s.yaml:4: cluster.clusterCIDR: has host bits set: '10.244.0.1/16' "
            "(did you mean 10.244.0.0/16?)",
            "s.yaml:5: cluster.serviceCIDR: must be an IPv4 CIDR such as 10.244.0.0/16, "
            "got '10.96.0.0/33'",
            "s.yaml:7: cluster.proxy.mode: must be 'iptables', 'ipvs', 'nftables' or 'userspace', "
            'got "iptable"',
            "s.yaml:8: cluster.proxy.masqueradeBit: must be <= 31, got 32",
            's.yaml:9: cluster.proxy.masqueradeAll: must be true or false, got "no"',
        ],
        id="cluster",
    ),
    pytest.param(
        HEAD
        + """\
cluster:
  proxy:
    syncPeriod: 30s
    nodes:
      node-3:
        minSyncPeriod: 1m
      node-9: {}
""",
        ["s.yaml:8: cluster.proxy.nodes.node-3.minSyncPeriod: must be <= syncPeriod (30s), got 1m"],
        id="proxy-override",
    ),
    pytest.param(
        HEAD
        + """\
cluster:
  nodes: 2
  proxy:
    nodes:
      node-9: {minSyncPeriod: 5s}
  delays:
    kubeProxyWatch: {default: 1s, node-3: 2s}
""",
        [
            "s.yaml:7: cluster.proxy.nodes.node-9: unknown node 'node-9' (nodes: node-1, node-2)",
            "s.yaml:9: cluster.delays.kubeProxyWatch.node-3: unknown node 'node-3' "
            "(nodes: node-1, node-2)",
        ],
        id="unknown-nodes",
    ),
    pytest.param(
        HEAD + "cluster:\n  delays:\n    kubeProxyWatch: 5 min\n",
        [
            "s.yaml:5: cluster.delays.kubeProxyWatch: invalid duration '5 min': "
            "use e.g. 250ms, 30s, 2m"
        ],
        id="per-node-scalar",
    ),
    pytest.param(
        HEAD + "cluster:\n  nodes: 0\n",
        ["s.yaml:4: cluster.nodes: must be 1..5000 nodes, got 0"],
        id="node-count",
    ),
    pytest.param(
        HEAD
        + """\
cluster:
  nodes:
    - {name: a}
    - name: a
""",
        ["s.yaml:6: cluster.nodes[1].name: duplicate node name 'a' (also nodes[0])"],
        id="duplicate-node",
    ),
    pytest.param(
        HEAD
        + """\
workloads:
  - name: fe
    from: {host: node-1}
  - name: fe
    from: {host: node-1, pods: {app: x}}
    to: Web:http
    rate: 1
    connection: {model: keepalive, connections: 0}
  - name: udp
    from: {}
    to: 10.0.0.1:53/udp
    rate: 1
    connection: {model: tcp}
""",
        [
            "s.yaml:4: workloads[0].to: required",
            "s.yaml:7: workloads[1].from.host: set exactly one of pods, external, host or "
            "loadBalancer",
            "s.yaml:8: workloads[1].to: name must be lowercase letters, digits and '-', "
            "starting with a letter and ending alphanumeric; got 'Web'",
            "s.yaml:10: workloads[1].connection.connections: must be >= 1, got 0",
            "s.yaml:12: workloads[2].from: set exactly one of pods, external, host or loadBalancer",
            "s.yaml:15: workloads[2].connection.model: must be 'per-request', 'keepalive' or "
            "'udp', got \"tcp\"",
        ],
        id="workloads",
    ),
    pytest.param(
        HEAD
        + """\
duration: 1m
workloads:
  - name: fe
    from: {host: node-1}
    to: web
    rateSchedule: [{at: 10s, rate: 1}, {at: 2m, rate: 1}]
  - name: fe
    from: {external: {node: node-4}}
    to: 10.0.0.1:53/udp
    rate: 1
    connection: {model: udp, sourcePort: fixed}
""",
        [
            "s.yaml:8: workloads[0].rateSchedule[1].at: must be <= duration (1m), got 2m",
            "s.yaml:9: workloads[1].name: duplicate workload name 'fe' (also workloads[0])",
            "s.yaml:10: workloads[1].from.external.node: unknown node 'node-4' "
            "(nodes: node-1, node-2, node-3)",
        ],
        id="workload-refs",
    ),
    pytest.param(
        HEAD
        + """\
apps:
  Web: {startup: 1s}
  api:
    drainAfterSigterm: 2s
    serviceTime: {distribution: lognormal, median: 0s, sigma: 1}
""",
        [
            "s.yaml:4: apps.Web: must be lowercase letters, digits, '-' and '.', starting and "
            "ending alphanumeric; got 'Web'",
            "s.yaml:7: apps.api.serviceTime.median: must be > 0, got 0s",
        ],
        id="apps",
    ),
    pytest.param(
        HEAD
        + """\
timeline:
  - {at: 1s, action: delete-pod, pod: a, selector: {app: a}}
  - {at: 1s, action: crash-pod, pod: a, count: 2}
  - {at: 1s, action: rollout, deployment: web, maxSurge: 0, maxUnavailable: 0%}
  - {at: 1s, action: rollout, deployment: web, maxSurge: 120%}
  - {at: 1s, action: flush-conntrack, node: node-1, origDst: 10.1.1.1:99999}
  - {at: 1s, action: inject-stale-rule, node: node-1, service: web, endpoint: web:80}
""",
        [
            "s.yaml:4: timeline[0].selector: set exactly one of pod or selector",
            "s.yaml:5: timeline[1].count: only applies with selector",
            "s.yaml:6: timeline[2].maxUnavailable: may not be 0 when maxSurge is 0",
            "s.yaml:7: timeline[3].maxSurge: must be an integer or a percentage 0%..100% such as "
            "25%, got '120%'",
            "s.yaml:8: timeline[4].origDst: must be IP or IP:port: port must be 1..65535, "
            "got 99999",
            "s.yaml:9: timeline[5].endpoint: must be IP:port[/tcp|udp], got 'web:80'",
        ],
        id="actions-2",
    ),
    pytest.param(
        HEAD + "cluster: [\n",
        ["s.yaml:4: yaml: while parsing a flow node, did not find expected node content"],
        id="yaml-syntax",
    ),
    pytest.param(
        HEAD + "seed: 1\nseed: 2\n",
        ["s.yaml:4: seed: duplicate key (first at line 3)"],
        id="duplicate-key",
    ),
    pytest.param(
        "- a\n",
        ["s.yaml:1: must be a mapping with apiVersion: svcsim/v1 and kind: Scenario, got a list"],
        id="not-a-mapping",
    ),
    pytest.param(
        "",
        ["s.yaml:1: must be a mapping with apiVersion: svcsim/v1 and kind: Scenario, got null"],
        id="empty",
    ),
    pytest.param(
        HEAD + "---\n" + HEAD,
        ["s.yaml:3: yaml: expected a single document in the stream, but found another document"],
        id="two-docs",
    ),
    pytest.param(
        HEAD
        + """\
manifests:
  - path: nope.yaml
  - {}
  - {path: a.yaml, inline: b}
""",
        [
            "s.yaml:4: manifests[0].path: file not found: nope.yaml",
            "s.yaml:5: manifests[1]: set exactly one of path or inline",
            "s.yaml:6: manifests[2].inline: set exactly one of path or inline",
        ],
        id="manifest-refs",
    ),
]


@pytest.mark.parametrize(("body", "expected"), INVALID)
def test_invalid(tmp_path: Path, body: str, expected: list[str]) -> None:
    assert problems(tmp_path, body) == expected


def test_all_problems_of_all_sections_at_once(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        HEAD
        + """\
duration: 2 minutes
cluster:
  proxy: {masqueradeBit: 40}
manifests:
  - path: missing.yaml
workloads:
  - {name: fe, from: {host: node-1}, to: web, rate: 0}
timeline:
  - {at: 1s, action: block-sync, node: node-1, for: -1s}
""",
    )
    assert found == [
        "s.yaml:3: duration: invalid duration '2 minutes': use e.g. 250ms, 30s, 2m",
        "s.yaml:5: cluster.proxy.masqueradeBit: must be <= 31, got 40",
        "s.yaml:7: manifests[0].path: file not found: missing.yaml",
        "s.yaml:9: workloads[0].rate: must be > 0, got 0",
        "s.yaml:11: timeline[0].for: must be > 0, got -1s",
    ]


SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: 10.96.0.10
  ports:
    - port: {port}
"""


def named(port: int, name: str, cluster_ip: str) -> str:
    """:data:`SERVICE` under another name and cluster IP (two Services cannot share one)."""
    return SERVICE.format(port=port).replace("web", name).replace("10.96.0.10", cluster_ip)


def test_manifest_files_are_read_and_checked(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "good.yaml").write_text(SERVICE.format(port=80))
    (tmp_path / "m" / "bad.yaml").write_text(SERVICE.format(port=0).replace("web", "web2"))
    body = HEAD + "manifests:\n  - path: m/good.yaml\n  - path: m/bad.yaml\n"
    # The k8s loader's line passes through unchanged (its wording is the k8s layer's).
    [only] = problems(tmp_path, body)
    assert only.startswith("m/bad.yaml:8: Service/default/web2: spec.ports[0].port: ")


def test_inline_manifest_problems_carry_scenario_lines(tmp_path: Path) -> None:
    body = (
        HEAD
        + "seed: 1\nmanifests:\n  - inline: |\n"
        + textwrap.indent(SERVICE.format(port=70000), "      ")
    )
    # The Service starts on line 6; its `port:` key is the text's line 8, so file line 13.
    [only] = problems(tmp_path, body)
    assert only.startswith("s.yaml:13: Service/default/web: spec.ports[0].port: ")


def test_loaded_manifests_keep_text_and_source(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.yaml").write_text(SERVICE.format(port=80))
    (tmp_path / "m" / "b.yml").write_text(named(81, "web-b", "10.96.0.11"))
    body = (
        HEAD
        + "manifests:\n  - path: m\n  - inline: |\n"
        + textwrap.indent(named(82, "web-c", "10.96.0.12"), "      ")
        + "timeline:\n  - at: 1s\n    action: add-service\n    manifest:\n      inline: |\n"
        + textwrap.indent(named(83, "web-d", "10.96.0.13"), "        ")
    )
    loaded = load_scenario(write(tmp_path, body))
    assert [(m.source, m.origin, m.first_line) for m in loaded.manifests] == [
        (f"{tmp_path}/m/a.yaml", "manifests[0]", 1),
        (f"{tmp_path}/m/b.yml", "manifests[0]", 1),
        (f"{tmp_path}/s.yaml", "manifests[1]", 6),
    ]
    assert loaded.manifests[2].text == named(82, "web-c", "10.96.0.12")
    assert loaded.manifests[2].padded().splitlines()[5] == "apiVersion: v1"
    assert list(loaded.timeline_manifests) == [0]
    assert "web-d" in loaded.timeline_manifests[0].text


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioErrors) as err:
        load_scenario(tmp_path / "absent.yaml")
    assert err.value.problems == [
        f"{tmp_path}/absent.yaml: cannot read file: No such file or directory"
    ]


def test_error_text_counts_problems(tmp_path: Path) -> None:
    with pytest.raises(ScenarioErrors) as err:
        load_scenario(write(tmp_path, HEAD + "seed: -1\nduration: x\n"))
    assert str(err.value).splitlines()[0] == "2 problems in scenario:"
