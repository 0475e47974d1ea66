"""A ``from: {loadBalancer: ...}`` workload: its Service must have a cloud load balancer."""

from __future__ import annotations

from pathlib import Path

from tests.scenario.texts import WEB, problems_of, scenario_text, warnings_of

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
