"""Turn one Deployment manifest (``apps/v1``) into a :class:`Deployment`, with API defaults.

Defaults follow pkg/apis/apps/v1/defaults.go ``SetDefaults_Deployment`` (``replicas`` 1,
strategy RollingUpdate with ``maxSurge`` and ``maxUnavailable`` 25%) and
pkg/apis/core/v1/defaults.go (``SetDefaults_Probe``: timeout 1 s, period 10 s, success
threshold 1, failure threshold 3, a 0 read as unset; ``terminationGracePeriodSeconds`` 30).
Validation follows the parts of pkg/apis/apps/validation ``ValidateDeploymentSpec`` and
pkg/apis/core/validation (probes, lifecycle handlers) that change what the simulation does.
Only what the simulation uses is read: labels, container ports, the readiness probe's timing,
the preStop hook's duration and the grace period. Other Pod spec fields are ignored silently.
"""

from __future__ import annotations

import math
import re

from svcsim.k8s.fields import (
    Reader,
    YMap,
    describe,
    dns1123_label_problem,
    dns1123_subdomain_problem,
    join,
    port_name_problem,
)
from svcsim.k8s.objects import (
    DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS,
    Container,
    ContainerPort,
    Deployment,
    DeploymentStrategy,
    DeploymentStrategyType,
    PodTemplate,
    PreStopHook,
    Probe,
    RollingUpdate,
)
from svcsim.k8s.parse import parse_meta, protocol
from svcsim.k8s.pod_dns import parse_pod_dns

MAX_INT32 = 2**31 - 1
_TOP_KEYS = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})
_SPEC_KEYS = frozenset(
    {
        "replicas",
        "selector",
        "template",
        "strategy",
        "minReadySeconds",
        "revisionHistoryLimit",
        "progressDeadlineSeconds",
        "paused",
    }
)
_PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
_PROBE_KEYS = frozenset(
    {
        *_PROBE_HANDLERS,
        "initialDelaySeconds",
        "periodSeconds",
        "timeoutSeconds",
        "successThreshold",
        "failureThreshold",
        "terminationGracePeriodSeconds",
    }
)
_HOOK_HANDLERS = ("exec", "httpGet", "tcpSocket", "sleep")
_SHELLS = frozenset({"sh", "bash", "ash", "dash", "zsh", "ksh", "busybox"})
_PERCENT = re.compile(r"[0-9]+%")
_NUMBER = r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+|infinity|inf)([smhd]?)"
# A shell script whose last command is `sleep N` (after `;`, `&&`, `||`, `|` or a newline).
_TRAILING_SLEEP = re.compile(
    r"(?:^|[;&|\n])\s*(?:exec\s+)?(?:\S*/)?sleep\s+" + _NUMBER + r"\s*;?\s*$"
)
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_deployment(doc: YMap, r: Reader, origin: str) -> Deployment:
    """A Deployment (``apps/v1``) with API defaults applied; every problem goes to ``r``.

    ``spec.selector.matchLabels`` is required and must match the template's labels;
    ``matchExpressions`` is refused (not supported). ``maxSurge``/``maxUnavailable`` are
    an int >= 0 or a percentage string; both 0 is refused, as is ``maxUnavailable`` above
    100%. ``spec.minReadySeconds`` is kept but a warning says the simulation treats a
    Pod as available as soon as it is Ready.
    """
    meta, _ = parse_meta(doc, r, origin, namespaced=True, name_rule=dns1123_subdomain_problem)
    r.known(doc, "", _TOP_KEYS)
    spec = r.mapping(doc, "spec", "")
    if spec is None:
        if doc.get("spec") is None:
            r.error(doc.line_of("spec"), "spec", "required")
        return Deployment(meta=meta, selector=(), template=PodTemplate())
    r.known(spec, "spec", _SPEC_KEYS)
    replicas = r.ranged(spec, "replicas", "spec", 0, MAX_INT32)
    min_ready = r.ranged(spec, "minReadySeconds", "spec", 0, MAX_INT32) or 0
    if min_ready:
        r.warn(
            spec.line_of("minReadySeconds"),
            "spec.minReadySeconds",
            "not simulated: a Pod counts as available as soon as it is Ready",
        )
    selector = _selector(r, spec)
    template = _template(r, spec)
    if selector and not all(dict(template.labels).get(k) == v for k, v in selector):
        tm = spec.get("template")
        md = tm.get("metadata") if isinstance(tm, YMap) else None
        line = md.line_of("labels") if isinstance(md, YMap) else spec.line_of("template")
        r.error(
            line, "spec.template.metadata.labels", "`selector` does not match template `labels`"
        )
    return Deployment(
        meta=meta,
        selector=selector,
        template=template,
        replicas=1 if replicas is None else replicas,
        strategy=_strategy(r, spec),
        min_ready_s=min_ready,
    )


def _selector(r: Reader, spec: YMap) -> tuple[tuple[str, str], ...]:
    sel = r.mapping(spec, "selector", "spec")
    if sel is None:
        if spec.get("selector") is None:
            r.error(spec.line_of("selector"), "spec.selector", "required")
        return ()
    r.known(sel, "spec.selector", ("matchLabels", "matchExpressions"))
    if sel.get("matchExpressions"):
        r.error(
            sel.line_of("matchExpressions"),
            "spec.selector.matchExpressions",
            "not supported: use matchLabels",
        )
    labels = r.string_map(sel, "matchLabels", "spec.selector") or ()
    if not labels and not sel.get("matchExpressions"):
        r.error(sel.line_of("matchLabels"), "spec.selector", "empty selector is invalid")
    return labels


def _strategy(r: Reader, spec: YMap) -> DeploymentStrategy:
    st = r.mapping(spec, "strategy", "spec")
    if st is None:
        return DeploymentStrategy()
    r.known(st, "spec.strategy", ("type", "rollingUpdate"))
    kinds = [k.value for k in DeploymentStrategyType]
    kind = DeploymentStrategyType(r.choice(st, "type", "spec.strategy", kinds, kinds[0]))
    ru = r.mapping(st, "rollingUpdate", "spec.strategy")
    path = "spec.strategy.rollingUpdate"
    if kind is DeploymentStrategyType.RECREATE:
        if ru is not None:
            r.error(
                st.line_of("rollingUpdate"),
                path,
                "may not be specified when strategy `type` is 'Recreate'",
            )
        return DeploymentStrategy(kind, None)
    if ru is None:
        return DeploymentStrategy(kind, RollingUpdate())
    r.known(ru, path, ("maxSurge", "maxUnavailable"))
    surge = _int_or_percent(r, ru, "maxSurge", path)
    unavailable = _int_or_percent(r, ru, "maxUnavailable", path)
    if unavailable is not None and isinstance(unavailable, str) and int(unavailable[:-1]) > 100:
        r.error(
            ru.line_of("maxUnavailable"),
            join(path, "maxUnavailable"),
            "must not be greater than 100%",
        )
    s = "25%" if surge is None else surge
    u = "25%" if unavailable is None else unavailable
    if _is_zero(s) and _is_zero(u):
        r.error(
            ru.line_of("maxUnavailable"),
            join(path, "maxUnavailable"),
            "may not be 0 when `maxSurge` is 0",
        )
    return DeploymentStrategy(kind, RollingUpdate(s, u))


def _int_or_percent(r: Reader, m: YMap, key: str, path: str) -> int | str | None:
    value = m.get(key)
    if value is None:
        return None
    field = join(path, key)
    if isinstance(value, bool) or not isinstance(value, int | str):
        r.error(
            m.line_of(key),
            field,
            f"must be an integer or a percentage (e.g. '25%'), got {describe(value)}",
        )
        return None
    if isinstance(value, str):
        if not _PERCENT.fullmatch(value):
            r.error(
                m.line_of(key),
                field,
                f"must be an integer or a percentage (e.g. '25%'), got {describe(value)}",
            )
            return None
        return value
    if value < 0:
        r.error(m.line_of(key), field, f"must be greater than or equal to 0, got {value}")
        return None
    return value


def _is_zero(value: int | str) -> bool:
    return value in (0, "0%") or (isinstance(value, str) and int(value[:-1]) == 0)


# --- template ------------------------------------------------------------------------------------


def _template(r: Reader, spec: YMap) -> PodTemplate:
    tm = r.mapping(spec, "template", "spec")
    if tm is None:
        if spec.get("template") is None:
            r.error(spec.line_of("template"), "spec.template", "required")
        return PodTemplate()
    md = r.mapping(tm, "metadata", "spec.template") or YMap(tm.line)
    labels = r.string_map(md, "labels", "spec.template.metadata") or ()
    annotations = (
        r.string_map(md, "annotations", "spec.template.metadata", label_values=False) or ()
    )
    ps = r.mapping(tm, "spec", "spec.template")
    if ps is None:
        if tm.get("spec") is None:
            r.error(tm.line_of("spec"), "spec.template.spec", "required")
        ps = YMap(tm.line)
    path = "spec.template.spec"
    grace = r.ranged(ps, "terminationGracePeriodSeconds", path, 0, MAX_INT32)
    grace = DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS if grace is None else grace
    containers: list[Container] = []
    items = r.maps(ps, "containers", path)
    if not items and ps.get("containers") is None:
        r.error(
            ps.line_of("containers"), join(path, "containers"), "must have at least one container"
        )
    for cpath, cm in items:
        containers.append(_container(r, cm, cpath, grace, sidecar=False))
    for cpath, cm in r.maps(ps, "initContainers", path):
        if cm.get("restartPolicy") == "Always":
            containers.append(_container(r, cm, cpath, grace, sidecar=True))
    dns = parse_pod_dns(r, ps, path)
    return PodTemplate(labels, annotations, tuple(containers), grace, dns)


def _container(r: Reader, cm: YMap, path: str, grace: int, *, sidecar: bool) -> Container:
    name = r.string(cm, "name", path, required=True) or ""
    if name and (problem := dns1123_label_problem(name)) is not None:
        r.error(cm.line_of("name"), join(path, "name"), problem)
    ports: list[ContainerPort] = []
    for ppath, pm in r.maps(cm, "ports", path):
        number = r.ranged(pm, "containerPort", ppath, 1, 65535)
        if number is None:
            if pm.get("containerPort") is None:
                r.error(pm.line_of("containerPort"), join(ppath, "containerPort"), "required")
            continue
        pname = r.string(pm, "name", ppath) or ""
        if pname and (problem := port_name_problem(pname)) is not None:
            r.error(pm.line_of("name"), join(ppath, "name"), problem)
        ports.append(ContainerPort(number, protocol(r, pm, ppath), pname))
    probe = None
    rp = r.mapping(cm, "readinessProbe", path)
    if rp is not None:
        probe = _probe(r, rp, join(path, "readinessProbe"))
    pre_stop = None
    lc = r.mapping(cm, "lifecycle", path)
    if lc is not None:
        hook = r.mapping(lc, "preStop", join(path, "lifecycle"))
        if hook is not None:
            pre_stop = _pre_stop(r, hook, join(path, "lifecycle.preStop"), grace)
    return Container(name, tuple(ports), probe, pre_stop, sidecar)


def _probe(r: Reader, pm: YMap, path: str) -> Probe:
    r.known(pm, path, _PROBE_KEYS)
    handlers = [h for h in _PROBE_HANDLERS if pm.get(h) is not None]
    if not handlers:
        r.error(pm.line, path, "must specify a handler type")
    elif len(handlers) > 1:
        r.error(
            pm.line_of(handlers[1]),
            join(path, handlers[1]),
            "may not specify more than 1 handler type",
        )

    def seconds(key: str, default: int) -> int:
        value = r.integer(pm, key, path)
        if value is not None and value < 0:
            r.error(
                pm.line_of(key), join(path, key), f"must be greater than or equal to 0, got {value}"
            )
            return default
        # SetDefaults_Probe treats 0 as unset for everything but the initial delay.
        return value if value else default

    return Probe(
        initial_delay_s=seconds("initialDelaySeconds", 0),
        period_s=seconds("periodSeconds", 10),
        timeout_s=seconds("timeoutSeconds", 1),
        success_threshold=seconds("successThreshold", 1),
        failure_threshold=seconds("failureThreshold", 3),
        handler=handlers[0] if handlers else "tcpSocket",
    )


def _pre_stop(r: Reader, hook: YMap, path: str, grace: int) -> PreStopHook:
    handlers = [h for h in _HOOK_HANDLERS if hook.get(h) is not None]
    if not handlers:
        r.error(hook.line, path, "must specify a handler type")
        return PreStopHook("exec")
    if len(handlers) > 1:
        r.error(
            hook.line_of(handlers[1]),
            join(path, handlers[1]),
            "may not specify more than 1 handler type",
        )
    kind = handlers[0]
    hpath = join(path, kind)
    if kind == "sleep":
        sm = r.mapping(hook, "sleep", path) or YMap(hook.line)
        secs = r.integer(sm, "seconds", hpath)
        if secs is None:
            if sm.get("seconds") is None:
                r.error(sm.line_of("seconds"), join(hpath, "seconds"), "required")
            return PreStopHook("sleep")
        if not 0 <= secs <= grace:
            r.error(
                sm.line_of("seconds"),
                join(hpath, "seconds"),
                f"must be 0..terminationGracePeriodSeconds ({grace}), got {secs}",
            )
        return PreStopHook("sleep", float(max(secs, 0)))
    if kind == "exec":
        em = r.mapping(hook, "exec", path) or YMap(hook.line)
        command = tuple(v for _, v, _ in r.strings(em, "command", hpath))
        duration = exec_sleep_s(command)
        if duration is None:
            r.warn(
                em.line_of("command"),
                join(hpath, "command"),
                "cannot tell how long this command runs (only `sleep N`, or a shell script "
                "ending in `sleep N`, is understood); taken as 0s",
            )
            duration = 0.0
        return PreStopHook("exec", duration, command)
    r.warn(hook.line_of(kind), hpath, f"a preStop {kind} hook is taken to return at once (0s)")
    return PreStopHook(kind)


def exec_sleep_s(command: tuple[str, ...]) -> float | None:
    """How long a preStop ``exec`` command sleeps, or None when it cannot be told.

    Understood: ``[sleep, N]`` (any path to ``sleep``), and a shell (``sh``/``bash``/...
    with a ``-c`` flag) whose script ends with ``sleep N`` — earlier commands are taken
    as instantaneous. ``N`` may carry GNU sleep's ``s``/``m``/``h``/``d`` suffix, and
    ``infinity`` sleeps until the grace period ends.
    """
    if not command:
        return None
    argv0 = command[0].rsplit("/", 1)[-1]
    if argv0 == "sleep" and len(command) == 2:
        return _duration(command[1])
    if argv0 in _SHELLS:
        args = list(command[1:])
        if argv0 == "busybox" and args and args[0] in _SHELLS:
            args = args[1:]
        for i, arg in enumerate(args[:-1]):
            if arg.startswith("-") and "c" in arg:
                match = _TRAILING_SLEEP.search(args[i + 1].strip())
                if match is not None:
                    return _duration(match.group(1) + match.group(2))
                return None
    return None


def _duration(text: str) -> float | None:
    match = re.fullmatch(_NUMBER, text.strip())
    if match is None:
        return None
    number, unit = match.groups()
    if number in ("infinity", "inf"):
        return math.inf
    return float(number) * _UNIT_S[unit]
