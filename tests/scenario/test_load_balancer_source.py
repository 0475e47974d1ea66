"""A ``from: {loadBalancer: ...}`` workload: its Service must have a cloud load balancer."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scenario.texts import FRONTEND_2, WEB, problems_of, scenario_text, warnings_of

LB_WEB = WEB.replace(
    "  selector: {app: web}\n", "  type: LoadBalancer\n  selector: {app: web}\n", 1
)
FROM_LB = "  - {name: lb, from: {loadBalancer: {}}, to: web:http, rate: 100}\n"


def test_a_load_balancer_source_needs_a_load_balancer_service(tmp_path: Path) -> None:
    found = problems_of(tmp_path, scenario_text(WEB, FROM_LB))
    assert [p.split(": ", 1)[1] for p in found] == [
        "workloads[0].from.loadBalancer: Service default/web is type ClusterIP: only a "
        "LoadBalancer Service has a cloud load balancer"
    ]
    to_ip = FROM_LB.replace("web:http", "10.96.0.1:80")
    found = problems_of(tmp_path, scenario_text(WEB, to_ip))
    assert [p.split(": ", 1)[1] for p in found] == [
        "workloads[0].to: a loadBalancer source reaches a Service through its load balancer: "
        "name a LoadBalancer Service, not an address"
    ]


def test_the_cloud_allocates_a_load_balancer_ip(tmp_path: Path) -> None:
    warnings = warnings_of(tmp_path, scenario_text(LB_WEB, FROM_LB))
    assert [w for w in warnings if "ingress" in w] == [
        "s.yaml:7: Service/default/web: status.loadBalancer.ingress[0].ip: not set: allocated "
        "198.51.100.1 (the cloud's load-balancer controller sets it; svcsim takes the next "
        "address of cluster.loadBalancer.ingressCIDR)"
    ]


def test_a_node_tainted_for_deletion_leaves_an_etp_cluster_load_balancer(tmp_path: Path) -> None:
    import svcsim.runs
    from svcsim.runs import run_scenario

    text = scenario_text(
        LB_WEB + "---\n" + FRONTEND_2,
        FROM_LB,
        "  - {at: 2s, action: taint-node, node: node-2}\n",
    ).replace("duration: 10s", "duration: 40s")
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(svcsim.runs, "render_all", lambda run: {})
        run = run_scenario(path, out_dir=tmp_path / "out").run
    events = run.events
    dropped = events[(events["kind"] == "lb-node-unhealthy") & (events["node"] == "node-2")]
    # /healthz turns 503 once kube-proxy sees the taint (2.1 s); probes at 8, 16, 24 fail.
    assert list(dropped["t_s"]) == [24.0]
    r = run.requests
    late = r[(r["t_s"] > 24.0) & (r["src_node"].astype(str) == "node-2")]
    assert len(late) == 0  # nothing enters through node-2 once the load balancer dropped it
    assert len(r[(r["t_s"] < 24.0) & (r["src_node"].astype(str) == "node-2")]) > 0
    assert (r["outcome"].astype(str) == "ok").all()  # node-2 still works: nothing fails
