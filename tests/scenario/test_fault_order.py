"""Node faults in a timeline must find their node in a state they apply to (fault_order)."""

from __future__ import annotations

from pathlib import Path

import pytest

from svcsim.scenario import load_scenario
from tests.scenario.texts import (
    FRONTEND_2,
    TO_WEB,
    WEB,
    problems_of,
    scenario_text,
    warnings_of,
    write,
)

BOTH = WEB + "---\n" + FRONTEND_2
PROBED = BOTH.replace(
    "spec: {containers: [{name: web, image: web, ports: [{containerPort: 8080}]}]}",
    "spec: {containers: [{name: web, image: web, ports: [{containerPort: 8080}], "
    "readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 2}}]}",
)


def timeline(*entries: str) -> str:
    return "".join(f"  - {{{e}}}\n" for e in entries)


LINE = 36
"""The line of the first timeline entry after BOTH and TO_WEB."""


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        pytest.param(
            ("at: 1s, action: fail-node, node: node-1", "at: 2s, action: fail-node, node: node-1"),
            [
                f"s.yaml:{LINE + 1}: timeline[1].node: node node-1 is already failed at 2s: "
                "recover it first"
            ],
            id="fail-twice",
        ),
        pytest.param(
            ("at: 1s, action: recover-node, node: node-2",),
            [f"s.yaml:{LINE}: timeline[0].node: node node-2 is up at 1s: nothing to recover from"],
            id="recover-up",
        ),
        pytest.param(
            (
                "at: 1s, action: partition-node, node: node-1, for: 3s",
                "at: 2s, action: recover-node, node: node-1",
            ),
            [
                f"s.yaml:{LINE + 1}: timeline[1].node: node node-1's partition heals by itself at "
                "4s (its partition-node has for)"
            ],
            id="recover-self-healing",
        ),
        pytest.param(
            (
                "at: 1s, action: partition-node, node: node-1, for: 3s",
                "at: 4s, action: crash-proxy, node: node-1",
            ),
            [
                f"s.yaml:{LINE + 1}: timeline[1].at: node node-1's partition heals at 4s, the same "
                "instant: move this action before or after it"
            ],
            id="same-instant-as-heal",
        ),
        pytest.param(
            (
                "at: 1s, action: fail-node, node: node-1",
                "at: 2s, action: crash-proxy, node: node-1",
            ),
            [
                f"s.yaml:{LINE + 1}: timeline[1].node: node node-1 has failed by 2s: "
                "nothing runs there"
            ],
            id="proxy-on-failed-node",
        ),
        pytest.param(
            ("at: 1s, action: fail-readiness, selector: {app: web}, for: 5s",),
            [
                f"s.yaml:{LINE}: timeline[0].selector: no Pod with labels {{app: web}} has a "
                "readiness probe, so readiness cannot fail (add a readinessProbe to the "
                "Deployment's template)"
            ],
            id="readiness-without-probe",
        ),
    ],
)
def test_problems(tmp_path: Path, entries: tuple[str, ...], expected: list[str]) -> None:
    text = scenario_text(BOTH, TO_WEB, timeline(*entries))
    assert problems_of(tmp_path, text) == expected


@pytest.mark.parametrize(
    "entries",
    [
        (
            "at: 1s, action: fail-node, node: node-1",
            "at: 2s, action: recover-node, node: node-1",
            "at: 3s, action: partition-node, node: node-1",
        ),
        (
            "at: 1s, action: partition-node, node: node-1, for: 3s",
            "at: 5s, action: fail-node, node: node-1",
        ),
        (
            "at: 1s, action: partition-node, node: node-1",
            "at: 2s, action: crash-proxy, node: node-1",
            "at: 3s, action: recover-node, node: node-1",
        ),
        ("at: 1s, action: fail-node, node: node-1", "at: 2s, action: drain-node, node: node-1"),
    ],
)
def test_valid_sequences(tmp_path: Path, entries: tuple[str, ...]) -> None:
    load_scenario(write(tmp_path, scenario_text(BOTH, TO_WEB, timeline(*entries))))


def test_fail_readiness_with_a_probe_is_valid(tmp_path: Path) -> None:
    text = scenario_text(
        PROBED, TO_WEB, timeline("at: 1s, action: fail-readiness, selector: {app: web}, for: 5s")
    )
    assert [w for w in warnings_of(tmp_path, text) if "clusterIP" not in w] == []


def test_host_clients_on_a_failing_node_are_warned_about(tmp_path: Path) -> None:
    host = "  - {name: h, from: {host: node-2}, to: web:http, rate: 10}\n"
    text = scenario_text(BOTH, host, timeline("at: 1s, action: fail-node, node: node-2"))
    assert [w for w in warnings_of(tmp_path, text) if "clusterIP" not in w] == [
        "s.yaml:34: workloads[0].from: its host process sends nothing through node node-2 "
        "while that node is down (it fails at 1s, timeline[0])"
    ]


EXTERNAL = (
    """\
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: 10.96.0.50
  ports: [{name: sql, port: 5432}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: db}
subsets:
  - addresses: [{ip: 192.0.2.10}, {ip: 192.0.2.11}]
    ports: [{name: sql, port: 5432}]
---
"""
    + FRONTEND_2
)
TO_DB = "  - {name: fe, from: {pods: {app: frontend}}, to: db:sql, rate: 200}\n"


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        pytest.param(
            ("at: 1s, action: fail-endpoint, address: 10.0.0.9",),
            "timeline[0].address: 10.0.0.9 is not a hand-made endpoint outside the Pod network "
            "(those: 192.0.2.10, 192.0.2.11); Pods fail with delete-pod, crash-pod or fail-node",
            id="not-external",
        ),
        pytest.param(
            ("at: 1s, action: recover-endpoint, address: 192.0.2.10",),
            "timeline[0].address: endpoint 192.0.2.10 answers at 1s: nothing to recover from",
            id="recover-up",
        ),
        pytest.param(
            (
                "at: 1s, action: fail-endpoint, address: 192.0.2.10, for: 2s",
                "at: 3s, action: fail-endpoint, address: 192.0.2.10",
            ),
            "timeline[1].at: endpoint 192.0.2.10 comes back at 3s, the same instant: move this "
            "action before or after it",
            id="same-instant",
        ),
    ],
)
def test_endpoint_fault_problems(tmp_path: Path, entries: tuple[str, ...], expected: str) -> None:
    found = problems_of(tmp_path, scenario_text(EXTERNAL, TO_DB, timeline(*entries)))
    assert [p.split(": ", 1)[1] for p in found] == [expected]


def test_a_failed_external_endpoint_times_out_until_it_is_back(tmp_path: Path) -> None:
    from svcsim.runs import run_scenario

    text = scenario_text(
        EXTERNAL, TO_DB, timeline("at: 3s, action: fail-endpoint, address: 192.0.2.10, for: 4s")
    )
    run = run_scenario(write(tmp_path, text), out_dir=tmp_path / "out").run
    r = run.requests
    failed = r.loc[r["outcome"] != "ok"]
    assert set(failed["cause"]) == {"endpoint-down"}
    assert set(failed["endpoint"]) == {"192.0.2.10:5432"}
    assert failed["t_s"].min() >= 3.0 and failed["t_s"].max() < 7.0
    during = r.loc[(r["t_s"] >= 3.0) & (r["t_s"] < 7.0) & (r["endpoint"] == "192.0.2.10:5432")]
    assert (during["outcome"] == "timeout").all() and len(during) > 100
    after = r.loc[(r["t_s"] >= 7.0) & (r["endpoint"] == "192.0.2.10:5432")]
    assert (after["outcome"] == "ok").all() and len(after) > 100
