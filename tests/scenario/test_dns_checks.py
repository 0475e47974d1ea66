"""dns:NAME:PORT targets: names no answer could resolve are one-line problems, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from svcsim.cli.main import app
from svcsim.k8s.objects import ObjectMeta, Service
from svcsim.scenario.dns_checks import named_service
from svcsim.scenario.refs import NameTarget
from tests.scenario.texts import (
    FRONTEND_2,
    WEB,
    add_service,
    problems_of,
    scenario_text,
    warnings_of,
    write,
)

HEADLESS = """\
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: pg, port: 5432}]
"""
EXTERNAL = """\
---
apiVersion: v1
kind: Service
metadata: {name: pay}
spec: {type: ExternalName, externalName: api.example.com}
"""
LATER = """\
apiVersion: v1
kind: Service
metadata: {name: later}
spec:
  selector: {app: web}
  ports: [{port: 80}]
"""


def _workload(to: str, extra: str = "") -> str:
    return f"  - {{name: fe, from: {{pods: {{app: frontend}}}}, to: '{to}', rate: 10{extra}}}\n"


def _text(to: str, extra: str = "", manifests: str = "", timeline: str = "") -> str:
    return scenario_text(
        WEB + manifests + "---\n" + FRONTEND_2,
        _workload(to, extra),
        timeline,
        cluster="{nodes: 2, dns: {}}",
    )


def _line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("to", "extra", "manifests", "timeline"),
    [
        pytest.param("dns:web:80", "", "", "", id="short-name"),
        pytest.param("dns:web.default.svc.cluster.local.:80", "", "", "", id="fqdn-dot"),
        pytest.param("dns:db:5432", "", HEADLESS, "", id="headless"),
        pytest.param(
            "dns:pay:443", ", dns: {hosts: {api.example.com: 198.51.100.7}}", EXTERNAL, "",
            id="externalname-to-a-declared-host",
        ),
        pytest.param("dns:api.example.com:443", ", dns: {hosts: {api.example.com: 198.51.100.7}}",
                     "", "", id="external-host"),
        pytest.param("dns:later:80", "", "", add_service(LATER), id="added-later"),
    ],
)  # fmt: skip
def test_resolvable_names_validate(
    tmp_path: Path, to: str, extra: str, manifests: str, timeline: str
) -> None:
    assert warnings_of(tmp_path, _text(to, extra, manifests, timeline)) == [
        "s.yaml:7: Service/default/web: spec.clusterIP: not set: allocated 10.107.164.13 "
        "(the API server picks at random, svcsim by a hash of the name)"
    ] + (
        ["s.yaml:40: Service/default/later: spec.clusterIP: not set: allocated 10.105.81.5 "
         "(the API server picks at random, svcsim by a hash of the name)"]
        if timeline else []
    )  # fmt: skip


def test_a_name_nothing_answers_is_a_problem(tmp_path: Path) -> None:
    text = _text("dns:wbe:80")
    assert problems_of(tmp_path, text) == [
        f"s.yaml:{_line(text, 'wbe')}: workloads[0].to: no DNS answer can resolve wbe: no "
        "Service has one of the names the resolver tries (wbe.default.svc.cluster.local, "
        "wbe.svc.cluster.local, wbe.cluster.local, wbe) and no dns.hosts entry names it"
    ]


def test_an_externalname_to_nowhere_is_a_problem(tmp_path: Path) -> None:
    text = _text("dns:pay:443", manifests=EXTERNAL)
    assert problems_of(tmp_path, text) == [
        f"s.yaml:{_line(text, 'dns:pay')}: workloads[0].to: pay.default.svc.cluster.local is "
        "an ExternalName Service for api.example.com, which no Service or dns.hosts entry "
        "answers: say what answers there (dns: {hosts: {api.example.com: IP}})"
    ]


@pytest.mark.parametrize(
    ("to", "extra", "problem"),
    [
        # One colon: port "web" of a Service named "dns" (kube-dns's ports are named dns).
        pytest.param("dns:web", "", "to: Service default/dns does not exist (Services: "
                     "default/web, kube-system/kube-dns) (to look a name up, write dns:NAME:PORT)"),
        pytest.param("dns:web:http", "", "to: must be dns:NAME:PORT[/tcp|udp], got "
                     "'dns:web:http'"),
        pytest.param("dns:we_b:80", "", "to: name 'we_b': label 'we_b' must be lowercase letters"),
        pytest.param(
            "dns:web:80", ", connection: {model: keepalive}",
            "connection: a dns: target is looked up per request",
        ),
        pytest.param("web:http", ", dns: {cache: ttl}", "dns: only a dns:NAME:PORT target"),
    ],
)  # fmt: skip
def test_bad_dns_targets(tmp_path: Path, to: str, extra: str, problem: str) -> None:
    text = _text(to, extra)
    found = problems_of(tmp_path, text)
    assert len(found) == 1
    assert found[0].startswith(f"s.yaml:{_line(text, '- {name: fe,')}: workloads[0].{problem}")


@pytest.mark.parametrize("command", ["validate", "run"])
def test_validate_and_run_exit_2_on_an_unresolvable_name(tmp_path: Path, command: str) -> None:
    path = write(tmp_path, _text("dns:wbe:80"))
    result = CliRunner().invoke(app, [command, str(path)])
    assert result.exit_code == 2
    assert "workloads[0].to: no DNS answer can resolve wbe" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_coredns_is_added_with_a_warning_when_only_a_workload_asks(tmp_path: Path) -> None:
    text = scenario_text(WEB + "---\n" + FRONTEND_2, _workload("dns:web:80"))
    assert warnings_of(tmp_path, text)[0] == (
        "s.yaml: no Service kube-system/kube-dns in the manifests: added CoreDNS as kubeadm "
        "deploys it (Service kube-system/kube-dns at 10.96.0.10, Deployment coredns with 2 "
        "replicas; docs/dns.md)"
    )


def test_a_dns_service_without_udp_53_is_a_problem(tmp_path: Path) -> None:
    tcp_only = (
        "---\napiVersion: v1\nkind: Service\n"
        "metadata: {name: kube-dns, namespace: kube-system}\n"
        "spec: {selector: {k8s-app: kube-dns}, clusterIP: 10.96.0.10, "
        "ports: [{name: dns-tcp, protocol: TCP, port: 53}]}\n"
    )
    text = _text("dns:web:80", manifests=tcp_only)
    assert problems_of(tmp_path, text) == [
        f"s.yaml:{_line(text, '- {name: fe,')}: workloads[0].to: the DNS Service "
        "kube-system/kube-dns (cluster.dns.service) must have a ClusterIP and a UDP port 53: "
        "it is every Pod's nameserver"
    ]


def test_the_label_is_the_service_the_clients_namespace_finds() -> None:
    services = {
        key: Service(ObjectMeta(key.split("/")[1], key.split("/")[0]), cluster_ip="10.96.0.9")
        for key in ("default/web", "shop/web")
    }
    assert named_service(NameTarget("web", 80), ["shop"], services) is services["shop/web"]
    assert named_service(NameTarget("web", 80), [], services) is services["default/web"]
    found = named_service(NameTarget("web.shop", 80), ["default"], services)
    assert found is services["shop/web"]
    assert named_service(NameTarget("nope", 80), ["default"], services) is None
