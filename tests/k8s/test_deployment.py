import math

import pytest

from svcsim.k8s import ManifestErrors, Protocol
from svcsim.k8s.objects import (
    SAFE_ALPHABET,
    Container,
    ContainerPort,
    DeploymentStrategyType,
    PodTemplate,
    PreStopHook,
    Probe,
    RollingUpdate,
    template_hash,
)
from svcsim.k8s.parse_deployment import exec_sleep_s

from .conftest import load

MINIMAL = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ManifestErrors) as info:
        load(text)
    return info.value.problems


def test_api_defaults() -> None:
    m = load(MINIMAL)
    assert m.warnings == ()
    (d,) = m.deployments
    assert d.meta.key == "default/web"
    assert d.replicas == 1
    assert d.selector == (("app", "web"),)
    assert d.strategy.type is DeploymentStrategyType.ROLLING_UPDATE
    assert d.strategy.rolling_update == RollingUpdate("25%", "25%")
    assert d.template.termination_grace_period_s == 30
    assert d.template.readiness_probe is None
    assert d.template.pre_stop_s == 0.0
    assert d.template.labels == (("app", "web"),)


def test_full_manifest() -> None:
    m = load(
        """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: api, namespace: shop}
        spec:
          replicas: 4
          strategy:
            type: RollingUpdate
            rollingUpdate: {maxSurge: 2, maxUnavailable: "0%"}
          selector: {matchLabels: {app: api}}
          template:
            metadata:
              labels: {app: api, tier: be}
              annotations: {team: x}
            spec:
              terminationGracePeriodSeconds: 45
              initContainers:
              - name: proxy
                restartPolicy: Always
                ports: [{containerPort: 15001, name: proxy}]
              - name: init
                ports: [{containerPort: 1}]
              containers:
              - name: api
                ports:
                - {containerPort: 8080, name: http}
                - {containerPort: 53, protocol: UDP}
                readinessProbe:
                  httpGet: {path: /healthz, port: 8080}
                  initialDelaySeconds: 5
                  periodSeconds: 2
                  failureThreshold: 1
                  successThreshold: 2
                  timeoutSeconds: 0
                lifecycle:
                  preStop:
                    sleep: {seconds: 20}
        """
    )
    assert m.warnings == ()
    (d,) = m.deployments
    assert d.meta.key == "shop/api"
    assert d.replicas == 4
    assert d.strategy.rolling_update == RollingUpdate(2, "0%")
    t = d.template
    assert t.termination_grace_period_s == 45
    assert t.annotations == (("team", "x"),)
    assert t.readiness_probe == Probe(5, 2, 1, 2, 1, "httpGet")
    assert t.pre_stop_s == 20.0
    assert t.container_ports == (
        ContainerPort(8080, Protocol.TCP, "http"),
        ContainerPort(53, Protocol.UDP, ""),
        ContainerPort(15001, Protocol.TCP, "proxy"),
    )
    assert t.app_container is not None and t.app_container.name == "api"


def test_recreate_strategy() -> None:
    text = MINIMAL.replace("spec:\n  selector:", "spec:\n  strategy: {type: Recreate}\n  selector:")
    (d,) = load(text).deployments
    assert d.strategy.type is DeploymentStrategyType.RECREATE
    assert d.strategy.rolling_update is None


@pytest.mark.parametrize(
    ("hook", "duration_s", "warning"),
    [
        ("sleep: {seconds: 7}", 7.0, None),
        ('exec: {command: ["sleep", "15"]}', 15.0, None),
        ('exec: {command: ["/bin/sleep", "2.5"]}', 2.5, None),
        ('exec: {command: ["sh", "-c", "sleep 10"]}', 10.0, None),
        ('exec: {command: ["/bin/sh", "-c", "nginx -s quit; sleep 3"]}', 3.0, None),
        ('exec: {command: ["bash", "-ec", "echo bye && sleep 1m"]}', 60.0, None),
        ('exec: {command: ["sh", "-c", "sleep 5 && nginx -s quit"]}', 0.0, "cannot tell"),
        ('exec: {command: ["/usr/bin/drain.sh"]}', 0.0, "cannot tell"),
        ("httpGet: {path: /quit, port: 80}", 0.0, "taken to return at once"),
    ],
)
def test_pre_stop_duration(hook: str, duration_s: float, warning: str | None) -> None:
    text = MINIMAL + f"        lifecycle:\n          preStop:\n            {hook}\n"
    m = load(text)
    assert m.deployments[0].template.pre_stop_s == duration_s
    if warning is None:
        assert m.warnings == ()
    else:
        (w,) = m.warnings
        assert w.startswith("m.yaml:") and "Deployment/default/web: spec.template.spec" in w
        assert warning in w


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (("sleep", "30"), 30.0),
        (("sleep", "1h"), 3600.0),
        (("sleep", "infinity"), math.inf),
        (("busybox", "sh", "-c", "sleep 4"), 4.0),
        (("sh", "-c", "echo a\nsleep 9\n"), 9.0),
        (("sh", "-c", "sleep abc"), None),
        (("sleep",), None),
        (("python", "-c", "sleep 3"), None),
        ((), None),
    ],
)
def test_exec_sleep_s(command: tuple[str, ...], expected: float | None) -> None:
    assert exec_sleep_s(command) == expected


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "    matchLabels: {app: web}\n",
            "    matchLabels: {app: web}\n    matchExpressions: [{key: a, operator: Exists}]\n",
            "m.yaml:8: Deployment/default/web: spec.selector.matchExpressions: "
            "not supported: use matchLabels",
        ),
        (
            "    matchLabels: {app: web}\n",
            "    matchLabels: {app: other}\n",
            "m.yaml:10: Deployment/default/web: spec.template.metadata.labels: "
            "`selector` does not match template `labels`",
        ),
        (
            "  selector:\n",
            "  strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: '0%'}}\n  selector:\n",
            "m.yaml:6: Deployment/default/web: spec.strategy.rollingUpdate.maxUnavailable: "
            "may not be 0 when `maxSurge` is 0",
        ),
        (
            "  selector:\n",
            "  strategy: {rollingUpdate: {maxUnavailable: 150%}}\n  selector:\n",
            "m.yaml:6: Deployment/default/web: spec.strategy.rollingUpdate.maxUnavailable: "
            "must not be greater than 100%",
        ),
        (
            "  selector:\n",
            "  strategy: {rollingUpdate: {maxSurge: '5'}}\n  selector:\n",
            "m.yaml:6: Deployment/default/web: spec.strategy.rollingUpdate.maxSurge: "
            "must be an integer or a percentage (e.g. '25%'), got \"5\"",
        ),
        (
            "  selector:\n",
            "  strategy: {type: Recreate, rollingUpdate: {maxSurge: 1}}\n  selector:\n",
            "m.yaml:6: Deployment/default/web: spec.strategy.rollingUpdate: "
            "may not be specified when strategy `type` is 'Recreate'",
        ),
        (
            "  selector:\n",
            "  replicas: -1\n  selector:\n",
            "m.yaml:6: Deployment/default/web: spec.replicas: must be 0..2147483647, got -1",
        ),
        (
            "        image: nginx\n",
            "        readinessProbe: {periodSeconds: 5}\n",
            "m.yaml:14: Deployment/default/web: spec.template.spec.containers[0].readinessProbe: "
            "must specify a handler type",
        ),
        (
            "        image: nginx\n",
            "        readinessProbe: {exec: {command: [x]}, failureThreshold: -1}\n",
            "m.yaml:14: Deployment/default/web: spec.template.spec.containers[0].readinessProbe."
            "failureThreshold: must be greater than or equal to 0, got -1",
        ),
        (
            "        image: nginx\n",
            "        lifecycle: {preStop: {sleep: {seconds: 31}}}\n",
            "m.yaml:14: Deployment/default/web: spec.template.spec.containers[0].lifecycle.preStop."
            "sleep.seconds: must be 0..terminationGracePeriodSeconds (30), got 31",
        ),
    ],
)
def test_errors(old: str, new: str, expected: str) -> None:
    text = MINIMAL.replace(old, new, 1)
    assert text != MINIMAL
    assert problems(text) == [expected]


def test_missing_selector_and_containers() -> None:
    text = """
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      template:
        metadata: {labels: {app: web}}
        spec: {}
    """
    assert problems(text) == [
        "m.yaml:4: Deployment/default/web: spec.selector: required",
        "m.yaml:7: Deployment/default/web: spec.template.spec.containers: "
        "must have at least one container",
    ]


def test_min_ready_seconds_warns() -> None:
    m = load(MINIMAL.replace("  selector:", "  minReadySeconds: 5\n  selector:"))
    assert m.deployments[0].min_ready_s == 5
    assert m.warnings == (
        "m.yaml:6: Deployment/default/web: spec.minReadySeconds: "
        "not simulated: a Pod counts as available as soon as it is Ready",
    )


def test_wrong_api_version() -> None:
    text = MINIMAL.replace("apps/v1", "extensions/v1beta1")
    assert problems(text) == [
        'm.yaml:1: Deployment/default/web: apiVersion: must be apps/v1, got "extensions/v1beta1"'
    ]


def _template(**notes: str) -> PodTemplate:
    probe = Probe(initial_delay_s=1)
    container = Container("web", (ContainerPort(80),), probe, PreStopHook("sleep", 5.0))
    return PodTemplate((("app", "web"),), tuple(sorted(notes.items())), (container,))


def test_template_hash_is_stable_and_kube_shaped() -> None:
    h = template_hash(_template())
    assert h == template_hash(_template())
    assert 1 <= len(h) <= 10 and set(h) <= set(SAFE_ALPHABET)
    assert template_hash(_template(rev="2")) != h
    assert template_hash(_template(rev="2")) != template_hash(_template(rev="3"))
    (d,) = load(MINIMAL).deployments
    (again,) = load(MINIMAL.replace("image: nginx", "image: httpd")).deployments
    assert d.template_hash == again.template_hash  # fields the simulation ignores do not count
