"""Running scenarios whose Services and clients are written the way users write them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd

from svcsim.runs import run_scenario
from svcsim.scenario import load_scenario
from svcsim.scenario.build import build_world
from tests.scenario.texts import (
    FRONTEND_0,
    FRONTEND_2,
    TO_WEB,
    WEB,
    WEB_DEPLOYMENT,
    WEB_SERVICE,
    add_service,
    scenario_text,
    write,
)


def total_requests(tmp_path: Path, text: str, seed: int = 1) -> int:
    outcome = run_scenario(write(tmp_path, text), seed=seed, out_dir=tmp_path / f"run{seed}")
    total: int = outcome.run.summary["requests"]["total"]
    return total


def test_service_without_cluster_ip_carries_traffic(tmp_path: Path) -> None:
    # Was: no rules for the Service, "0 requests ... every request succeeded".
    sent = total_requests(tmp_path, scenario_text(WEB + "---\n" + FRONTEND_2, TO_WEB))
    assert sent > 500  # 100 requests/s for 10 s


def test_allocated_values_do_not_depend_on_the_seed(tmp_path: Path) -> None:
    loaded = load_scenario(write(tmp_path, scenario_text(WEB + "---\n" + FRONTEND_2, TO_WEB)))
    ips = {
        seed: [s.cluster_ip for s in build_world(loaded, seed).api.list("Service")]
        for seed in (1, 2)
    }
    assert ips[1] == ips[2] == ["10.107.164.13"]


def test_an_added_service_is_allocated_and_reached(tmp_path: Path) -> None:
    timeline = (
        "  - at: 5s\n    action: add-service\n    manifest:\n      inline: |\n"
        + textwrap.indent(WEB_SERVICE, "        ")
    )
    text = scenario_text(FRONTEND_2 + "---\n" + WEB_DEPLOYMENT, TO_WEB, timeline)
    sent = total_requests(tmp_path, text)
    assert 200 < sent < 700  # only from 5 s on


def test_zero_replica_clients_send_once_scaled_up(tmp_path: Path) -> None:
    # Was: KeyError from the traffic engine while the workload had no clients.
    timeline = "  - {at: 5s, action: scale, deployment: frontend, replicas: 1}\n"
    sent = total_requests(tmp_path, scenario_text(WEB + "---\n" + FRONTEND_0, TO_WEB, timeline))
    assert 100 < sent < 700


def test_a_stale_rule_with_no_chain_to_go_into_is_a_recorded_fault(tmp_path: Path) -> None:
    # Was: ValueError out of the run. As iptables-restore would, the edit fails; the run goes on.
    timeline = (
        "  - {at: 1s, action: scale, deployment: web, replicas: 0}\n"
        "  - {at: 4s, action: inject-stale-rule, node: node-1, service: web, "
        "endpoint: 10.0.0.1:80}\n"
    )
    outcome = run_scenario(
        write(tmp_path, scenario_text(WEB + "---\n" + FRONTEND_2, TO_WEB, timeline)),
        seed=1,
        out_dir=tmp_path / "run",
    )
    events = pd.read_parquet(outcome.run.path / "events.parquet")
    failed = events[events["detail"].str.startswith("inject-stale-rule failed")]
    assert failed[["t_s", "node", "object"]].values.tolist() == [[4.0, "node-1", "web"]]


def outcomes(tmp_path: Path, text: str) -> dict[tuple[str, str], int]:
    """Requests by (outcome, cause) of one run of ``text``."""
    run = run_scenario(write(tmp_path, text), seed=1, out_dir=tmp_path / "run").run
    counts = run.requests.groupby(["outcome", "cause"], observed=True).size()
    return {(str(o), str(c)): int(n) for (o, c), n in counts.items() if n}


def test_pods_without_declared_ports_serve_the_target_port(tmp_path: Path) -> None:
    # Was: every request refused (cause pod-not-ready): the app listened on no port at all.
    undeclared = WEB.replace(", ports: [{containerPort: 8080}]", "") + "---\n" + FRONTEND_2
    assert list(outcomes(tmp_path, scenario_text(undeclared, TO_WEB))) == [("ok", "")]


def test_pods_declaring_other_ports_refuse_the_target_port(tmp_path: Path) -> None:
    other = WEB.replace("containerPort: 8080", "containerPort: 9000") + "---\n" + FRONTEND_2
    assert list(outcomes(tmp_path, scenario_text(other, TO_WEB))) == [("refused", "port-closed")]


EXTERNAL_SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: ext}
spec:
  ports: [{name: https, port: 443}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ext-1
  labels: {kubernetes.io/service-name: ext}
addressType: IPv4
ports: [{name: https, port: 443}]
endpoints: [{addresses: [192.0.2.10]}]
"""
"""A selector-less Service whose hand-made endpoint is a host outside the cluster."""


def test_an_added_service_with_an_outside_endpoint_is_answered(tmp_path: Path) -> None:
    # Was: the outside host was known only for objects present at the start, so every request
    # to the added Service timed out, also once the nodes had its rules.
    to_ext = TO_WEB.replace("to: web:http", "to: ext:https")
    text = scenario_text(FRONTEND_2, to_ext, add_service(EXTERNAL_SERVICE))
    run = run_scenario(write(tmp_path, text), seed=1, out_dir=tmp_path / "run").run
    programmed = run.syncs[run.syncs["start_s"] > 5.0]["end_s"].max()  # the add-service's sync
    after = run.requests[run.requests["t_s"] > programmed]
    assert len(after) > 100 and set(after["outcome"].astype(str)) == {"ok"}


SERVICE_CIDR = """\
apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata: {name: extra}
spec: {cidrs: [10.200.0.0/16]}
---
"""


def _drop_unallocated(tmp_path: Path, manifests: str) -> str:
    text = scenario_text(manifests, TO_WEB, cluster="{nodes: 2, proxy: {mode: nftables}}")
    world = build_world(load_scenario(write(tmp_path, text)), 1)
    kernel = world.kernels["node-1"]
    assert kernel.nft is not None
    return next(r.rule for r in kernel.nft.table.rules if "unallocated" in (r.comment or ""))


def test_nftables_nodes_drop_unallocated_ips_of_the_service_cidrs(tmp_path: Path) -> None:
    both = WEB + "---\n" + FRONTEND_2
    assert _drop_unallocated(tmp_path, both) == "ip daddr { 10.96.0.0/12 } drop"
    assert _drop_unallocated(tmp_path, SERVICE_CIDR + both) == "ip daddr { 10.200.0.0/16 } drop"
