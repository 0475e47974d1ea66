"""Small scenario files for the checks' and the builder's tests, written line by line.

:func:`scenario_text` puts the given manifests (inline), workloads and timeline after a fixed
head, so a case's problem lines can be read off the text: :data:`WEB` and :data:`FRONTEND` are
the usual server and client.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from svcsim.scenario import ScenarioErrors, load_scenario

HEAD = "apiVersion: svcsim/v1\nkind: Scenario\nduration: 10s\n"
"""Lines 1-3 of every scenario written here; line 4 is ``cluster``."""

WEB = """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: web, ports: [{containerPort: 8080}]}]}
"""
"""A Service without a clusterIP (as users write them) and its Deployment."""

FRONTEND = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: frontend}
spec:
  replicas: {replicas}
  selector: {matchLabels: {app: frontend}}
  template:
    metadata: {labels: {app: frontend}}
    spec: {containers: [{name: fe, image: fe}]}
"""
"""The client Deployment; format with ``replicas``."""

FRONTEND_2 = FRONTEND.replace("{replicas}", "2")
"""Two client Pods."""
FRONTEND_0 = FRONTEND.replace("{replicas}", "0")
"""No client Pods (until a ``scale``)."""
WEB_SERVICE = WEB.split("---")[0]
"""The Service of :data:`WEB` alone."""
WEB_DEPLOYMENT = WEB.split("---\n")[1]
"""The Deployment of :data:`WEB` alone."""

TO_WEB = "  - {name: fe, from: {pods: {app: frontend}}, to: web:http, rate: 100}\n"
"""A workload from the frontend Pods to web:http."""


def scenario_text(
    manifests: str = "", workloads: str = "", timeline: str = "", cluster: str = "{nodes: 2}"
) -> str:
    """A scenario file: :data:`HEAD`, ``cluster: ...`` on line 4, then the sections given.

    Inline manifests start on line 7 (line 1 of :data:`WEB` is line 7 of the file).
    """
    text = HEAD + f"cluster: {cluster}\n"
    if manifests:
        text += "manifests:\n  - inline: |\n" + textwrap.indent(manifests, "      ")
    if workloads:
        text += "workloads:\n" + workloads
    if timeline:
        text += "timeline:\n" + timeline
    return text


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    """``text`` written to ``tmp_path/name``."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def stale(service: str = "web") -> str:
    """A timeline entry injecting a stale rule into ``service`` on node-1 at 1s."""
    return (
        f"  - {{at: 1s, action: inject-stale-rule, node: node-1, service: {service}, "
        "endpoint: 10.0.0.1:80}\n"
    )


def add_service(manifest: str, at: str = "5s") -> str:
    """A timeline entry adding ``manifest`` (inline) at ``at``."""
    return (
        f"  - at: {at}\n    action: add-service\n    manifest:\n      inline: |\n"
        + textwrap.indent(manifest, "        ")
    )


def problems_of(tmp_path: Path, text: str) -> list[str]:
    """The problem lines of loading ``text``, paths relative to ``tmp_path``."""
    with pytest.raises(ScenarioErrors) as err:
        load_scenario(write(tmp_path, text))
    return [p.replace(f"{tmp_path}/", "") for p in err.value.problems]


def warnings_of(tmp_path: Path, text: str) -> list[str]:
    """The warning lines of loading ``text`` (which must load), paths relative to ``tmp_path``."""
    return [w.replace(f"{tmp_path}/", "") for w in load_scenario(write(tmp_path, text)).warnings]
