"""What a scenario means: checks that need its Kubernetes objects, run by ``validate`` and ``run``.

The schema checks each section on its own; these checks compare the scenario with the objects
its manifests create: a workload's ``to`` must name a Service port that exists and ``from``
must match Pods that can exist; timeline actions must name Deployments, Pods and Services
that exist when they run; kube-proxy's mode must be one the simulation has. A reference that
can never work is a problem (``file:line: field.path: message``, with a hint listing what
exists); one that works only later in the run is a warning. Cluster IPs and NodePorts the
manifests leave unset are allocated here too (:mod:`svcsim.scenario.service_plan`), each
allocation reported as a warning naming the value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from svcsim.k8s.controllers import selector_matches
from svcsim.k8s.load import Manifests
from svcsim.k8s.objects import (
    Deployment,
    ObjectMeta,
    Pod,
    Service,
    ServicePort,
    ServiceType,
    TrafficPolicy,
)
from svcsim.netfilter.conntrack_clash import clash_drops, parse_kernel_version
from svcsim.proxy.flags import (
    IPTABLES_ONLY_REASONS,
    NOT_FOR_USERSPACE,
    UNSUPPORTED_NFT_DETECTORS,
    USERSPACE_ONLY_FIELDS,
)
from svcsim.scenario import timeline as tl
from svcsim.scenario.base import Loc
from svcsim.scenario.dns import ClusterDns
from svcsim.scenario.dns_checks import (
    has_tcp53,
    name_problem,
    nameserver_problem,
    resolver_problem,
    uses_vc,
)
from svcsim.scenario.durations import format_duration
from svcsim.scenario.fault_order import check_fault_order, outside_addresses
from svcsim.scenario.locate import YamlDoc, format_path
from svcsim.scenario.proxy import ProxySettings
from svcsim.scenario.refs import NameTarget, ServiceTarget, parse_object_ref, parse_service_target
from svcsim.scenario.schema import Scenario
from svcsim.scenario.service_plan import ServicePlan, plan_services, timeline_order
from svcsim.scenario.workload import Udp, Workload
from svcsim.sim.network import pod_address_count, usable_pod_ip
from svcsim.sim.rollout import check_rolling_update, resolve_fenceposts
from svcsim.traffic.dns_race import RACING_MODES

SIMULATED_PROXY_MODES = ("iptables", "nftables", "ipvs", "userspace")
"""kube-proxy modes the simulation has a data path for."""
_IPTABLES_ONLY_FIELDS = {
    "localhost_nodeports": "localhostNodePorts",
    "random_fully": "randomFully",
    "nfacct": "nfacct",
}
"""The scenario field of each :data:`~svcsim.proxy.flags.IPTABLES_ONLY_REASONS` setting."""
_IPVS_IGNORES = {
    "localhostNodePorts": "IPVS mode has no localhost NodePorts (an iptables-mode setting)",
    "nfacct": "IPVS mode writes no nfacct counter matches",
}
"""Node settings IPVS mode does not read, and why."""
_COST_FIELDS = {"iptables": "syncCost", "nftables": "nftSyncCost", "ipvs": "ipvsSyncCost"}
"""Each simulated mode's sync-cost field."""
ADDABLE = ("Service", "Endpoints", "EndpointSlice")
"""Kinds an ``add-service`` action creates."""
MAX_HINTS = 8
"""How many existing names a hint lists before it says "..."."""


@dataclass(frozen=True, slots=True)
class ScenarioObjects:
    """The parsed objects of a scenario: those at the start and those of each add-service."""

    initial: Manifests
    added: Mapping[int, Manifests] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Checked:
    """Problem lines (the scenario cannot run as written) and warning lines."""

    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def check_scenario(
    scenario: Scenario,
    doc: YamlDoc,
    source: str,
    objects: ScenarioObjects | None,
    *,
    nodes_from_manifests: bool = False,
) -> Checked:
    """Every semantic check of ``scenario``; ``objects`` None (manifests broken) skips theirs.

    ``nodes_from_manifests``: ``cluster.nodes`` was made from the manifests' Node objects
    (which are then not "ignored").
    """
    check = _Checks(scenario, doc, source)
    check.nodes_from_manifests = nodes_from_manifests
    check.proxy_modes()
    outside = None
    if objects is not None:
        sets = [objects.initial, *objects.added.values()]
        outside = frozenset(outside_addresses(sets, scenario.cluster.cluster_cidr))
    faults = check_fault_order(scenario, outside)
    for path, message in faults.problems:
        check.problem(path, message)
    for path, message in faults.warnings:
        check.warn(path, message)
    if objects is not None:
        check.with_objects(objects)
    return Checked(tuple(check.problems), tuple(check.warnings))


def _hint(names: Iterable[str]) -> str:
    shown = sorted(set(names))
    if not shown:
        return "none"
    more = ", ..." if len(shown) > MAX_HINTS else ""
    return ", ".join(shown[:MAX_HINTS]) + more


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"


def _port_text(sp: ServicePort) -> str:
    name = f"{sp.name} " if sp.name else ""
    return f"{name}{sp.port}/{sp.protocol.value}"


def pick_port(service: Service, wanted: str | int | None) -> ServicePort | str:
    """The Service port ``wanted`` names (None: the only port), or why there is none."""
    ports = service.ports
    listed = ", ".join(_port_text(p) for p in ports) or "none"
    if wanted is None:
        if len(ports) == 1:
            return ports[0]
        return (
            f"Service {service.meta.key} has {len(ports)} ports ({listed}): "
            f"name one, as in {service.meta.name}:{ports[0].name or ports[0].port}"
            if ports
            else f"Service {service.meta.key} has no ports"
        )
    for sp in ports:
        if sp.name == wanted or sp.port == wanted:
            return sp
    return f"Service {service.meta.key} has no port {wanted!r} (ports: {listed})"


def _no_rules(service: Service) -> str | None:
    """Why kube-proxy writes no rules for ``service``, or None."""
    if service.type is ServiceType.EXTERNAL_NAME:
        return (
            f"Service {service.meta.key} is type ExternalName (a DNS name): kube-proxy "
            "writes no rules for it"
        )
    if service.is_headless:
        return (
            f"Service {service.meta.key} is headless (clusterIP: None): kube-proxy writes "
            "no rules for it; send to a Pod's IP:port instead"
        )
    return None


class _Checks:
    """Collects problems and warnings; each method checks one part of the scenario."""

    def __init__(self, scenario: Scenario, doc: YamlDoc, source: str) -> None:
        self.scenario, self.doc, self.source = scenario, doc, source
        self.problems: list[str] = []
        self.warnings: list[str] = []
        # Filled by with_objects: what the manifests create at the start.
        self.deployments: dict[str, Deployment] = {}
        self.bare_pods: dict[str, Pod] = {}
        self.manual: set[str] = set()
        """Services whose endpoints are written by hand (Endpoints, EndpointSlices)."""
        self.nodes_from_manifests = False
        self._first_name = next(
            (i for i, w in enumerate(scenario.workloads) if isinstance(w.target, NameTarget)), -1
        )
        """The first workload that dials a name (cluster-wide DNS warnings are given there)."""

    def _line(self, path: Loc) -> int:
        """The line of ``path``, or of its deepest part written in the file."""
        for n in range(len(path), 0, -1):
            line = self.doc.lines.get(tuple(path[:n]))
            if line is not None:
                return line
        return self.doc.root_line

    def problem(self, path: Loc, message: str) -> None:
        self.problems.append(f"{self.source}:{self._line(path)}: {format_path(path)}: {message}")

    def warn(self, path: Loc, message: str) -> None:
        self.warnings.append(f"{self.source}:{self._line(path)}: {format_path(path)}: {message}")

    # --- kube-proxy -------------------------------------------------------------------------

    def proxy_modes(self) -> None:
        proxy = self.scenario.cluster.proxy
        *first, last = SIMULATED_PROXY_MODES
        supported = f"{', '.join(first)} and {last}"
        if proxy.mode not in SIMULATED_PROXY_MODES:
            self.problem(
                ("cluster", "proxy", "mode"),
                f"only {supported} modes are simulated so far, got {proxy.mode!r}",
            )
        for node, override in proxy.nodes.items():
            if override.mode is not None and override.mode not in SIMULATED_PROXY_MODES:
                self.problem(
                    ("cluster", "proxy", "nodes", node, "mode"),
                    f"only {supported} modes are simulated so far, got {override.mode!r}",
                )
        self.mode_fields(("cluster", "proxy"), proxy.mode)
        for node, override in proxy.nodes.items():
            self.mode_fields(("cluster", "proxy", "nodes", node), override.mode or proxy.mode)
        names = [spec.name for spec in self.scenario.cluster.nodes]
        modes: set[str] = {proxy.for_node(n).mode for n in names} if names else {proxy.mode}
        self.userspace_fields(("cluster", "proxy"), modes)
        for node, override in proxy.nodes.items():
            self.userspace_fields(
                ("cluster", "proxy", "nodes", node), {override.mode or proxy.mode}
            )
        refused: set[Loc] = set()
        for spec in self.scenario.cluster.nodes:
            settings = proxy.for_node(spec.name)
            if settings.mode != "nftables" or settings.detect_local_mode not in (
                UNSUPPORTED_NFT_DETECTORS
            ):
                continue
            patch = proxy.nodes.get(spec.name)
            own = patch is not None and patch.detect_local_mode is not None
            where: Loc = ("cluster", "proxy", *(("nodes", spec.name) if own else ()))
            if where not in refused:
                refused.add(where)
                self.problem(
                    (*where, "detectLocalMode"),
                    f"{settings.detect_local_mode} is not modelled in nftables mode yet "
                    "(use ClusterCIDR or NodeCIDR)",
                )

    def userspace_fields(self, where: Loc, modes: set[str]) -> None:
        """Refuse fields written at ``where`` that none of the ``modes`` it applies to reads.

        userspace-only fields where no node runs userspace mode; other modes' fields where every
        node it applies to runs userspace mode. At ``cluster.proxy`` a field that holds its
        default is not refused (a fully defaulted scenario, as run folders keep it, writes
        every field and must load again); in ``nodes`` every field written counts.
        """
        depth = len(where)
        written = {p[depth] for p in self.doc.lines if len(p) > depth and p[:depth] == where}
        if where == ("cluster", "proxy"):
            proxy = self.scenario.cluster.proxy
            written = {k for k in written if not (isinstance(k, str) and _proxy_default(proxy, k))}
        if "userspace" not in modes:
            shown = " / ".join(sorted(modes))
            for key, flag in USERSPACE_ONLY_FIELDS.items():
                if key in written:
                    self.problem(
                        (*where, key), f"a userspace-mode field ({flag}), not for {shown} mode"
                    )
        elif modes == {"userspace"}:
            for key, reason in NOT_FOR_USERSPACE.items():
                if key in written:
                    self.problem((*where, key), f"not read in userspace mode: {reason}")

    def mode_fields(self, where: Loc, mode: str) -> None:
        """Fields written at ``where`` that ``mode`` does not read: warned; unmodelled: refused."""
        depth = len(where)
        written = {p[depth] for p in self.doc.lines if len(p) > depth and p[:depth] == where}
        if mode == "userspace":
            return  # :meth:`userspace_fields` refuses what it does not read
        if mode == "nftables":
            for field_name, reason in IPTABLES_ONLY_REASONS.items():
                key = _IPTABLES_ONLY_FIELDS[field_name]
                if key in written:
                    self.warn((*where, key), f"ignored in nftables mode: {reason}")
        if mode == "ipvs":
            for key, reason in _IPVS_IGNORES.items():
                if key in written:
                    self.warn((*where, key), f"ignored in ipvs mode: {reason}")
        inherited = where == ("cluster", "proxy") and any(
            o.mode == "ipvs" for o in self.scenario.cluster.proxy.nodes.values()
        )
        if "ipvs" in written and mode != "ipvs" and not inherited:
            self.problem((*where, "ipvs"), f"an IPVS-mode setting, not for mode {mode}")
        own = _COST_FIELDS.get(mode)
        for owner, key in _COST_FIELDS.items():
            if key in written and owner != mode and own is not None:
                self.warn(
                    (*where, key),
                    f"ignored in {mode} mode ({owner} mode's cost); {mode} syncs cost {own}",
                )

    # --- references to objects --------------------------------------------------------------

    def with_objects(self, objects: ScenarioObjects) -> None:
        initial = objects.initial
        self.duplicates(initial)
        for node in () if self.nodes_from_manifests else initial.nodes:
            self.warnings.append(
                f"{node.meta.source}: Node/{node.meta.name}: ignored: a scenario's nodes are "
                "cluster.nodes"
            )
        self.deployments = {d.meta.key: d for d in initial.deployments}
        self.bare_pods = {p.meta.key: p for p in initial.pods}
        self.kept_pod_ips(initial.pods)
        self.pod_room(initial)
        self.manual = _manual_endpoints(initial)
        for index, added in objects.added.items():
            self.manual |= _manual_endpoints(added)
            self.addable_only(index, added)
        plan = plan_services(
            self.scenario,
            initial.services,
            {i: m.services for i, m in objects.added.items()},
        )
        self.problems.extend(plan.problems)
        self.warnings.extend(str(a) for a in plan.allocations)
        for i, w in enumerate(self.scenario.workloads):
            self.workload(i, w, plan)
        self.timeline(plan)

    def pod_room(self, initial: Manifests) -> None:
        """Warn when the cluster cannot hold every Pod the scenario asks for.

        A node takes at most ``maxPods`` Pods and one per free address of its ``podCIDR``;
        the rest wait unscheduled (as Pending Pods do). Counted: each Deployment's largest
        replica count in the timeline (plus its surge if it is rolled out) and the bare Pods
        that need a Pod IP.
        """
        nodes = self.scenario.cluster.nodes
        room = sum(min(n.max_pods, pod_address_count(n.pod_cidr)) for n in nodes if n.pod_cidr)
        wanted = {d.meta.key: d.replicas for d in initial.deployments}
        surge = dict.fromkeys(wanted, 0)
        for action in self.scenario.timeline:
            if isinstance(action, tl.Scale | tl.Rollout):
                key = "/".join(parse_object_ref(action.deployment))
                if key not in wanted:
                    continue
                if isinstance(action, tl.Scale):
                    wanted[key] = max(wanted[key], action.replicas)
                else:
                    dep = next(d for d in initial.deployments if d.meta.key == key)
                    surge[key] = max(surge[key], _surge(action, dep, wanted[key]))
        pods = sum(wanted.values()) + sum(surge.values())
        pods += sum(1 for p in initial.pods if not p.host_network)
        if pods > room:
            self.warn(
                ("cluster", "nodes"),
                f"room for {room:,} Pods (each node: the smaller of maxPods and its podCIDR's "
                f"free addresses), but the scenario asks for up to {pods:,}: the Pods that do "
                "not fit are not scheduled (they wait, as Pending Pods do)",
            )

    def kept_pod_ips(self, pods: Sequence[Pod]) -> None:
        """Pods of a dump keep their ``status.podIP`` where they can; say where they cannot."""
        cidrs = {n.name: n.pod_cidr for n in self.scenario.cluster.nodes}
        taken: dict[str, str] = {}
        for pod in pods:
            ip = pod.pod_ip
            if ip is None:
                continue
            where = f"{pod.meta.source}: Pod/{pod.meta.key}: status.podIP {ip}"
            node = pod.node_name
            if node is None or node not in cidrs:
                self.warnings.append(
                    f"{where}: spec.nodeName {node or '(none)'} is not a node of cluster.nodes: "
                    "the Pod is scheduled elsewhere and gets a new IP"
                )
            elif not usable_pod_ip(cidrs[node], ip):
                self.warnings.append(
                    f"{where}: not a Pod address of node {node} (podCIDR {cidrs[node]}): "
                    "the Pod gets a new IP"
                )
            elif ip in taken:
                self.warnings.append(f"{where}: also Pod/{taken[ip]}'s: this Pod gets a new IP")
            else:
                taken[ip] = pod.meta.key

    def duplicates(self, initial: Manifests) -> None:
        """Objects defined twice in different files (the loader checks within one file)."""
        kinds: dict[str, Sequence[ObjectMeta]] = {
            "Service": [o.meta for o in initial.services],
            "Deployment": [o.meta for o in initial.deployments],
            "Pod": [o.meta for o in initial.pods],
            "Endpoints": [o.meta for o in initial.endpoints],
            "EndpointSlice": [o.meta for o in initial.endpoint_slices],
        }
        for kind, metas in kinds.items():
            first: dict[str, str] = {}
            for meta in metas:
                key = meta.key
                if key in first and meta.source:
                    # The API server would refuse the second create (AlreadyExists).
                    self.problems.append(
                        f"{meta.source}: {kind}/{key}: metadata.name: duplicate {kind}; "
                        f"first defined at {first[key]}"
                    )
                first.setdefault(key, meta.source)

    def addable_only(self, index: int, added: Manifests) -> None:
        others = [("Deployment", d.meta.key) for d in added.deployments]
        others += [("Pod", p.meta.key) for p in added.pods]
        others += [("Node", n.meta.name) for n in added.nodes]
        for kind, key in others:
            self.problem(
                ("timeline", index, "manifest"),
                f"add-service creates only {', '.join(ADDABLE)}; {kind} {key} would "
                "be ignored (put it under manifests)",
            )

    def matching(self, selector: Sequence[tuple[str, str]]) -> tuple[list[Deployment], list[str]]:
        """Deployments whose Pods carry ``selector``'s labels, and bare Pods that do."""
        deps = [
            d for d in self.deployments.values() if selector_matches(selector, d.template.labels)
        ]
        pods = [k for k, p in self.bare_pods.items() if selector_matches(selector, p.meta.labels)]
        return deps, pods

    def label_hint(self) -> str:
        sets = [
            f"Deployment {d.meta.name} {_labels(d.template.labels)}"
            for d in self.deployments.values()
        ]
        sets += [f"Pod {p.meta.name} {_labels(p.meta.labels)}" for p in self.bare_pods.values()]
        return _hint(sets)

    def scaled_up(self, keys: set[str]) -> list[tuple[float, str]]:
        """When a Deployment of ``keys`` is scaled to more than 0 replicas (time, key)."""
        out = []
        for action in self.scenario.timeline:
            if isinstance(action, tl.Scale) and action.replicas > 0:
                key = "/".join(parse_object_ref(action.deployment))
                if key in keys:
                    out.append((action.at_s, key))
        return sorted(out)

    def workload(self, i: int, w: Workload, plan: ServicePlan) -> None:
        if w.source.pods is not None:
            self.client_pods(i, tuple(sorted(w.source.pods.items())))
        target = w.target
        if isinstance(target, NameTarget):  # DNS: scenario/dns_checks.py
            self.dns_name(i, w, target, plan)
            return
        if not isinstance(target, ServiceTarget):
            if w.source.load_balancer is not None:
                self.problem(
                    ("workloads", i, "to"),
                    "a loadBalancer source reaches a Service through its load balancer: name "
                    "a LoadBalancer Service, not an address",
                )
            return
        key = f"{target.namespace}/{target.name}"
        service = next((s for s in plan.initial if s.meta.key == key), None)
        balanced = w.source.load_balancer is not None
        if balanced and service is not None and service.type is not ServiceType.LOAD_BALANCER:
            self.problem(
                ("workloads", i, "from", "loadBalancer"),
                f"Service {key} is type {service.type.value}: only a LoadBalancer Service "
                "has a cloud load balancer",
            )
            return
        if service is None:
            later = [
                (action.at_s, index, svc)
                for index, action in timeline_order(self.scenario)
                for svc in plan.added.get(index, ())
                if svc.meta.key == key
            ]
            if not later:
                existing = [s.meta.key for s in plan.initial]
                existing += [s.meta.key for ss in plan.added.values() for s in ss]
                # dns:web reads as port "web" of a Service "dns": say how to write a name.
                named = " (to look a name up, write dns:NAME:PORT)" if target.name == "dns" else ""
                self.problem(
                    ("workloads", i, "to"),
                    f"Service {key} does not exist (Services: {_hint(existing)}){named}",
                )
                return
            at_s, index, service = later[0]
            self.warn(
                ("workloads", i, "to"),
                f"Service {key} is created only at {format_duration(at_s)} "
                f"(timeline[{index}]): the workload sends nothing before then",
            )
        why = _no_rules(service)
        port = pick_port(service, target.port)
        if why is None and isinstance(port, str):
            why = port
        if why is None and isinstance(port, ServicePort):
            wanted = "udp" if isinstance(w.connection, Udp) else "tcp"
            have = port.protocol.value.lower()
            if have != wanted:
                fix = (
                    "set connection: {model: udp}"
                    if have == "udp"
                    else "use connection model per-request or keepalive"
                )
                why = (
                    f"port {_port_text(port)} of Service {key} is {have.upper()}, "
                    f"this workload sends {wanted.upper()}: {fix}"
                )
                if have not in ("tcp", "udp"):
                    why = (
                        f"port {_port_text(port)} of Service {key} is {have.upper()}: "
                        "only TCP and UDP clients are simulated"
                    )
        if why is not None:
            self.problem(("workloads", i, "to"), why)
        elif isinstance(port, ServicePort):
            self.target_port(i, service, port)

    def dns_name(self, i: int, w: Workload, target: NameTarget, plan: ServicePlan) -> None:
        """A name no DNS answer could ever resolve (:func:`name_problem`) is a problem."""
        deps, pods = self.matching(tuple(sorted((w.source.pods or {}).items())))
        namespaces = [d.meta.namespace for d in deps] + [k.partition("/")[0] for k in pods]
        services = {s.meta.key: s for s in plan.initial}
        for added in plan.added.values():
            services.update((s.meta.key, s) for s in added)
        hosts = w.dns.hosts if w.dns is not None else {}
        why = name_problem(target, namespaces, services, hosts)
        dns = self.scenario.cluster.dns or ClusterDns()
        key = dns.service if "/" in dns.service else f"default/{dns.service}"
        why = why or nameserver_problem(key, services)
        if why is not None:
            self.problem(("workloads", i, "to"), why)
        clients = [(f"Deployment {d.meta.name}", d.template.dns, False) for d in deps]
        clients += [
            (
                f"Pod {self.bare_pods[k].meta.name}",
                self.bare_pods[k].dns,
                self.bare_pods[k].host_network,
            )
            for k in pods
        ]
        for owner, pod_dns, host_network in clients:
            if (why := resolver_problem(owner, pod_dns, host_network)) is not None:
                self.problem(("workloads", i, "from", "pods"), why)
            elif uses_vc(pod_dns) and not has_tcp53(key, services):
                self.problem(
                    ("workloads", i, "from", "pods"),
                    f"{owner} sets use-vc (DNS over TCP), but {key} has no TCP port 53",
                )
        local = dns.node_local_cache
        if local.enabled and not has_tcp53(key, services):
            self.problem(
                ("cluster", "dns", "nodeLocalCache"),
                f"node-local-dns forwards to "
                f"CoreDNS over TCP (force_tcp), but {key} has no TCP port 53",
            )
        if local.enabled and i == self._first_name and self._ipvs_nodes():
            self.warn(
                ("cluster", "dns", "nodeLocalCache"),
                "IPVS nodes "
                f"({', '.join(self._ipvs_nodes())}): node-local-dns cannot take over the "
                f"kube-dns ClusterIP there; svcsim assumes the kubelet's clusterDNS is "
                f"{local.ip}, as upstream requires for IPVS mode",
            )

        race = dns.conntrack_race
        kernel = parse_kernel_version(race.kernel_version)
        if i == self._first_name and race.probability > 0 and clash_drops(kernel, False):
            proxy = self.scenario.cluster.proxy
            other = [
                n
                for n in self.scenario.cluster.node_names
                if proxy.for_node(n).mode not in RACING_MODES
            ]
            if other and not local.enabled:
                self.warn(
                    ("cluster", "dns", "conntrackRace"),
                    "the A/AAAA insert race is simulated on iptables and nftables nodes only, "
                    f"not on {', '.join(other)} (IPVS and userspace mode translate without "
                    "netfilter's DNAT)",
                )

    def _ipvs_nodes(self) -> list[str]:
        proxy = self.scenario.cluster.proxy
        return [n for n in self.scenario.cluster.node_names if proxy.for_node(n).mode == "ipvs"]

    def target_port(self, i: int, service: Service, port: ServicePort) -> None:
        """Warn when the Pods a workload reaches declare ports, but not the numeric targetPort.

        Their apps listen on their declared containerPorts only (a Pod that declares none
        listens on every port), so every connection would be refused: a real misconfiguration
        worth showing, but maybe the point of the scenario, hence a warning.
        """
        target = port.target_port if port.target_port is not None else port.port
        if not isinstance(target, int) or service.selector is None:
            return  # named ports resolve against containerPorts; hand-made endpoints are as given
        wanted = (port.protocol, target)
        deps, pods = self.matching(service.selector)
        declared = [(f"Deployment {d.meta.name}", d.template.container_ports) for d in deps]
        declared += [
            (f"Pod {self.bare_pods[k].meta.name}", self.bare_pods[k].container_ports) for k in pods
        ]
        for owner, ports in declared:
            if ports and wanted not in {(p.protocol, p.container_port) for p in ports}:
                listed = ", ".join(f"{p.container_port}/{p.protocol.value}" for p in ports)
                self.warn(
                    ("workloads", i, "to"),
                    f"{owner} declares containerPorts {listed} but not {target}/"
                    f"{port.protocol.value}, Service {service.meta.key}'s targetPort: its app "
                    "refuses these connections (it listens on its declared ports only)",
                )

    def client_pods(self, i: int, selector: tuple[tuple[str, str], ...]) -> None:
        path: Loc = ("workloads", i, "from", "pods")
        deps, pods = self.matching(selector)
        if not deps and not pods:
            self.problem(
                path,
                f"no Pod has labels {_labels(selector)}, so nothing would send "
                f"(Pod labels: {self.label_hint()})",
            )
            return
        if pods or any(d.replicas > 0 for d in deps):
            return
        names = {d.meta.key for d in deps}
        ups = self.scaled_up(names)
        zero = ", ".join(sorted(names))
        if not ups:
            self.problem(
                path,
                f"matches only Deployment {zero} with 0 replicas, never scaled "
                "up: nothing would send",
            )
        else:
            at_s, key = ups[0]
            self.warn(
                path,
                f"matches only Deployment {zero} with 0 replicas: nothing sends "
                f"until {key} is scaled up at {format_duration(at_s)}",
            )

    def timeline(self, plan: ServicePlan) -> None:
        live = {s.meta.key: s for s in plan.initial}
        for index, action in timeline_order(self.scenario):
            path: Loc = ("timeline", index)
            if isinstance(action, tl.Rollout | tl.Scale):
                key = "/".join(parse_object_ref(action.deployment))
                if isinstance(action, tl.Rollout) and key in self.deployments:
                    self.rollout_strategy(path, action, self.deployments[key])
                if key not in self.deployments:
                    self.problem(
                        (*path, "deployment"),
                        f"Deployment {key} does not exist (Deployments: {_hint(self.deployments)})",
                    )
            elif isinstance(action, tl.DeletePod | tl.CrashPod | tl.FailReadiness):
                self.pod_pick(path, action)
            elif isinstance(action, tl.AddService):
                live.update((s.meta.key, s) for s in plan.added.get(index, ()))
            elif isinstance(action, tl.RemoveService):
                key = "/".join(parse_object_ref(action.service, service=True))
                if not plan.removed.get(index, False):
                    self.problem(
                        (*path, "service"),
                        f"Service {key} does not exist at "
                        f"{format_duration(action.at_s)} (Services then: "
                        f"{_hint(live)})",
                    )
                live.pop(key, None)
            elif isinstance(action, tl.InjectStaleRule):
                self.stale_rule(path, action, live)

    def rollout_strategy(self, path: Loc, action: tl.Rollout, dep: Deployment) -> None:
        """A rollout's maxSurge/maxUnavailable, merged with the Deployment's, must be valid."""
        if action.max_surge is None and action.max_unavailable is None:
            return
        field = "maxSurge" if action.max_surge is not None else "maxUnavailable"
        ru = dep.strategy.rolling_update
        if ru is None:
            self.problem(
                (*path, field),
                f"Deployment {dep.meta.key} uses the Recreate strategy: it has no {field}",
            )
            return
        surge = ru.max_surge if action.max_surge is None else action.max_surge
        unavailable = (
            ru.max_unavailable if action.max_unavailable is None else action.max_unavailable
        )
        try:
            check_rolling_update(surge, unavailable)
        except ValueError as exc:
            self.problem((*path, field), f"with Deployment {dep.meta.key}'s strategy: {exc}")

    def pod_pick(self, path: Loc, action: tl.DeletePod | tl.CrashPod | tl.FailReadiness) -> None:
        if action.pod is not None:
            key = "/".join(parse_object_ref(action.pod))
            if key not in self.bare_pods:
                self.problem(
                    (*path, "pod"),
                    f"Pod {key} does not exist (Pods: "
                    f"{_hint(self.bare_pods)}; a Deployment's Pods get random names: "
                    "pick them with selector)",
                )
            elif isinstance(action, tl.FailReadiness):
                # Bare Pods from manifests run without a readiness probe (svcsim.sim.fleet).
                self.problem(
                    (*path, "pod"),
                    f"Pod {key} has no readiness probe, so its readiness cannot fail "
                    "(pick Pods of a Deployment whose template has a readinessProbe)",
                )
            return
        selector = tuple(sorted((action.selector or {}).items()))
        deps, pods = self.matching(selector)
        if not deps and not pods:
            self.problem(
                (*path, "selector"),
                f"no Pod has labels {_labels(selector)} (Pod labels: {self.label_hint()})",
            )
        elif isinstance(action, tl.FailReadiness):
            probed = [d for d in deps if d.template.readiness_probe is not None]
            if not probed:
                self.problem(
                    (*path, "selector"),
                    f"no Pod with labels {_labels(selector)} has a readiness probe, so "
                    "readiness cannot fail (add a readinessProbe to the Deployment's template)",
                )
            elif len(probed) < len(deps) or pods:
                self.warn(
                    (*path, "selector"),
                    f"some Pods with labels {_labels(selector)} have no readiness probe: "
                    "only those with one can be picked",
                )

    def stale_rule(
        self, path: Loc, action: tl.InjectStaleRule, live: Mapping[str, Service]
    ) -> None:
        mode = self.scenario.cluster.proxy.for_node(action.node).mode
        if mode == "ipvs":
            self.problem(
                path,
                f"not available in ipvs mode (node {action.node}): IPVS mode has no KUBE-SVC "
                "chain to inject a rule into (its rules are virtual servers)",
            )
            return
        target = parse_service_target(action.service)
        key = f"{target.namespace}/{target.name}"
        where = (*path, "service")
        service = live.get(key)
        if service is None:
            self.problem(
                where,
                f"Service {key} does not exist at {format_duration(action.at_s)}"
                f" (Services then: {_hint(live)})",
            )
            return
        why = _no_rules(service)
        port = pick_port(service, target.port)
        if why is None and isinstance(port, str):
            why = port
        if why is None and service.internal_traffic_policy is TrafficPolicy.LOCAL:
            why = (
                f"Service {key} has internalTrafficPolicy Local: its traffic does not go "
                "through the KUBE-SVC chain a stale rule is injected into"
            )
        if why is None and not self.has_endpoints(service):
            why = (
                f"Service {key} has no endpoints, so kube-proxy writes no KUBE-SVC chain to "
                "inject into"
            )
        if why is not None:
            self.problem(where, why)

    def has_endpoints(self, service: Service) -> bool:
        """Whether any endpoint can ever back ``service`` (selected Pods, or manual ones)."""
        if service.selector is None:
            return service.meta.key in self.manual
        deps, pods = self.matching(service.selector)
        return (
            bool(pods)
            or any(d.replicas > 0 for d in deps)
            or bool(self.scaled_up({d.meta.key for d in deps}))
        )


def _surge(action: tl.Rollout, dep: Deployment, replicas: int) -> int:
    """The extra Pods a rollout of ``dep`` at ``replicas`` may create (0 for Recreate)."""
    ru = dep.strategy.rolling_update
    if ru is None:
        return 0
    surge = action.max_surge if action.max_surge is not None else ru.max_surge
    unavailable = (
        action.max_unavailable if action.max_unavailable is not None else ru.max_unavailable
    )
    return resolve_fenceposts(surge, unavailable, replicas)[0]


def _manual_endpoints(m: Manifests) -> set[str]:
    """``namespace/name`` of the Services that ``m``'s Endpoints and EndpointSlices back."""
    keys = {e.meta.key for e in m.endpoints}
    keys |= {f"{s.meta.namespace}/{s.service_name}" for s in m.endpoint_slices if s.service_name}
    return keys


def _proxy_default(settings: ProxySettings, key: str) -> bool:
    """True if the ``cluster.proxy`` field written as ``key`` holds its default value."""
    for name, info in ProxySettings.model_fields.items():
        if info.alias == key:
            default = info.get_default(call_default_factory=True)
            return bool(getattr(settings, name) == default)
    return False
