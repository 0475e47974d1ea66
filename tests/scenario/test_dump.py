"""A scenario that starts from a cluster dump keeps its nodes, Pod IPs and EndpointSlices."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from svcsim.runs import run_scenario
from svcsim.scenario import ScenarioErrors, load_scenario

DUMP = Path(__file__).parent / "dump" / "cluster.yaml"
"""A hand-written ``kubectl get svc,endpointslices,endpoints,pods,nodes -A -o yaml`` list."""

SCENARIO = """\
apiVersion: svcsim/v1
kind: Scenario
duration: 10s
seed: 1
cluster: {nodes: fromManifests}
manifests: [{path: cluster.yaml}]
workloads:
  - {name: c-web, from: {pods: {app: client}}, to: web:http, rate: 100}
  - {name: c-db, from: {pods: {app: client}}, to: db:sql, rate: 100}
"""


def scenario(tmp_path: Path, text: str = SCENARIO, dump: str | None = None) -> Path:
    if dump is None:
        shutil.copy(DUMP, tmp_path / "cluster.yaml")
    else:
        (tmp_path / "cluster.yaml").write_text(dump, encoding="utf-8")
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_nodes_come_from_the_dumps_node_objects(tmp_path: Path) -> None:
    loaded = load_scenario(scenario(tmp_path))
    nodes = [(n.name, n.ip, n.pod_cidr, n.zone, n.cpus) for n in loaded.scenario.cluster.nodes]
    assert nodes == [
        ("worker-a", "172.18.0.3", "10.244.1.0/24", "z1", 4),
        ("worker-b", "172.18.0.4", "10.244.2.0/24", "z2", 4),
    ]
    assert not [w for w in loaded.warnings if "Node/" in w]  # used, not ignored


def test_a_run_from_a_dump_keeps_pod_ips_and_slices(tmp_path: Path) -> None:
    run = run_scenario(scenario(tmp_path), out_dir=tmp_path / "out").run
    r = run.requests
    assert (r["outcome"] == "ok").all()
    assert set(r.loc[r["service"] == "default/web:http", "endpoint"].astype(str)) == {
        "10.244.1.17:8080",
        "10.244.2.9:8080",
    }
    assert set(r["src_node"].astype(str)) == {"worker-a"}
    # The dump's slices already hold what the controllers want: neither rewrites them.
    assert not (run.events["kind"] == "slice-updated").any()


def test_a_pod_ip_that_cannot_be_kept_is_said(tmp_path: Path) -> None:
    dump = DUMP.read_text(encoding="utf-8").replace("10.244.2.9", "10.9.9.9")
    loaded = load_scenario(scenario(tmp_path, dump=dump))
    assert [w.split(": ", 1)[1] for w in loaded.warnings if "podIP" in w] == [
        "Pod/default/web-7d9f-fghij: status.podIP 10.9.9.9: not a Pod address of node "
        "worker-b (podCIDR 10.244.2.0/24): the Pod gets a new IP"
    ]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ("addresses: [{type: InternalIP, address: 172.18.0.4}]", "addresses: []"),
            "Node/worker-b: has no InternalIP: cluster.nodes fromManifests needs both",
        ),
        (
            ("kind: Node", "kind: ConfigMap"),
            "s.yaml:5: cluster.nodes: fromManifests, but the manifests hold no Node object",
        ),
    ],
)
def test_nodes_from_manifests_problems(
    tmp_path: Path, edit: tuple[str, str], expected: str
) -> None:
    dump = DUMP.read_text(encoding="utf-8").replace(*edit)
    with pytest.raises(ScenarioErrors) as err:
        load_scenario(scenario(tmp_path, dump=dump))
    assert any(expected in p for p in err.value.problems), err.value.problems
