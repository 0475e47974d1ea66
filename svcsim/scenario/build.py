"""Build the :class:`~svcsim.scenario.world.World` of a loaded scenario.

The cluster starts *warm*, as a real one that has been running for a while: Deployments'
Pods are up and Ready, the EndpointSlices hold them, and every node's kernel already holds the
rules its kube-proxy wrote for that state (kube-proxy itself starts with synced informers and
re-writes the same rules in its first full sync). So nothing fails at t=0 merely because the
simulation started; failures come from the timeline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeAlias

from svcsim.k8s import Manifests, effective_endpoint_slices
from svcsim.k8s.objects import EndpointSlice, Node, ObjectMeta, Service, ServiceType
from svcsim.netfilter.conntrack import kernel_default_max
from svcsim.netfilter.conntrack_clash import parse_kernel_version
from svcsim.netfilter.conntrack_states import ConntrackTimeouts
from svcsim.netfilter.nft_parse import parse_table
from svcsim.proxy.context import (
    NODE_PORT_ADDRESSES_PRIMARY,
    NodeContext,
    node_network,
    resolve_node_port_addresses,
)
from svcsim.proxy.flags import LocalDetectorMode
from svcsim.proxy.names import ServicePortName
from svcsim.proxy.nftables import compile_nftables
from svcsim.proxy.shared_maps import node_endpoints_map, shared_endpoints, shared_service_port_map
from svcsim.scenario import workload as wl
from svcsim.scenario.cluster import NodeLifecycle as NodeLifecycleSpec
from svcsim.scenario.cluster import NodeSpec, for_node
from svcsim.scenario.cohorts import node_dependent, solo_nodes
from svcsim.scenario.dns import DNS_ORIGIN, ClusterDns, coredns_app
from svcsim.scenario.dns_checks import client_namespaces, named_service
from svcsim.scenario.fault_order import outside_addresses
from svcsim.scenario.ipvs_build import ipvs_cost, ipvs_sysctls, warm_ipvs
from svcsim.scenario.load import LoadedScenario, parse_manifests
from svcsim.scenario.proxy import ProxySettings
from svcsim.scenario.refs import AddressTarget as ScenarioAddress
from svcsim.scenario.refs import NameTarget as ScenarioName
from svcsim.scenario.schema import Scenario
from svcsim.scenario.service_plan import plan_services
from svcsim.scenario.timeline_run import schedule_timeline
from svcsim.scenario.world import World
from svcsim.sim.config import (
    NODE_LEASE_RENEW_FRACTION,
    AppProfile,
    ControlPlaneDelays,
    NodeLifecycleConfig,
)
from svcsim.sim.coredns import CoreDns, CoreDnsConfig
from svcsim.sim.deployments import DeploymentController
from svcsim.sim.endpointslices import EndpointSliceController
from svcsim.sim.fleet import PodFleet
from svcsim.sim.kernel import Kernel, KernelMode
from svcsim.sim.kubeproxy import KubeProxy
from svcsim.sim.loadbalancer import CloudLoadBalancer, LoadBalancerConfig, kube_proxy_probe
from svcsim.sim.network import PodNetwork
from svcsim.sim.nodelocaldns import NodeLocalConfig, NodeLocalDns
from svcsim.sim.nodes import NodeLifecycle
from svcsim.sim.scheduling import Scheduler, start_bare_pod
from svcsim.sim.shared_sync import iptables_compile, shared_context
from svcsim.sim.synccost import KubeProxyConfig, ProgrammedView, SyncCostModel
from svcsim.sim.userspace_proxy import UserspaceConfig
from svcsim.traffic import spec as ts
from svcsim.traffic.context import ApiView
from svcsim.traffic.core import EngineCore
from svcsim.traffic.dns_race import RaceSettings
from svcsim.traffic.engine import TrafficEngine
from svcsim.traffic.resolver import DNS_PORT
from svcsim.traffic.targets import service_port_at

ASSUMED_NODE_RAM_BYTES = 16 << 30
"""Node memory assumed for the kernel's own nf_conntrack_max when kube-proxy leaves it alone."""


EngineFactory: TypeAlias = Callable[[list[ts.WorkloadSpec], World], EngineCore]
"""Makes the traffic engine from the workloads and the world (its TrafficContext)."""


def build_world(
    loaded: LoadedScenario,
    seed: int,
    *,
    engine: EngineFactory = TrafficEngine,
    cohorts: bool = True,
) -> World:
    """Assemble every component of the scenario's world (nothing runs yet).

    ``engine`` resolves the traffic: the batched :class:`TrafficEngine`, or the per-request
    :class:`~svcsim.traffic.reference.ReferenceEngine` (tests and the benchmark's baseline).
    ``cohorts``: nodes in step share their kube-proxy's life (:mod:`svcsim.scenario.cohorts`;
    the results are the same without, which tests compare).
    """
    sc = loaded.scenario
    cluster = sc.cluster
    world = World(seed, sc.duration_s, sc.records)
    env, api = world.env, world.api
    manifests = parse_manifests(loaded.manifests)
    added = {index: parse_manifests([text]) for index, text in loaded.timeline_manifests.items()}
    # The same plan the loader's checks made: same cluster IPs and NodePorts, whatever the seed.
    plan = plan_services(sc, manifests.services, {i: m.services for i, m in added.items()})

    network = PodNetwork({n.name: n.pod_cidr for n in cluster.nodes})
    world.set_network(network)
    delays = _delays(loaded)
    nodes = [_node_object(n) for n in cluster.nodes]
    for node in nodes:
        api.apply("Node", node)
    for svc in plan.initial:
        api.apply("Service", svc)
    for ep in manifests.endpoints:
        api.apply("Endpoints", ep)
    for sl in manifests.endpoint_slices:
        api.apply("EndpointSlice", sl)

    max_pods = {n.name: n.max_pods for n in cluster.nodes}
    scheduler = Scheduler(
        [n.meta.name for n in nodes],
        room=lambda node: network.held(node) < min(max_pods[node], network.size(node)),
    )
    fleet = PodFleet(env, api, network, delays, world.record_event)
    apps = {name: _app(name, app) for name, app in sc.apps.items()}
    if "coredns" not in apps and any(t.origin == DNS_ORIGIN for t in loaded.manifests):
        apps["coredns"] = coredns_app()
    world.service_times = {name: _service_time(app.service_time) for name, app in sc.apps.items()}
    deployments: dict[str, DeploymentController] = {}
    for dep in manifests.deployments:
        profile = apps.get(dep.meta.name, AppProfile(name=dep.meta.name))
        ctl = DeploymentController(
            env,
            dep,
            profile,
            fleet,
            scheduler,
            world.rng(f"deployment/{dep.meta.key}"),
            world.record_event,
        )
        ctl.start(running=True)
        deployments[dep.meta.key] = ctl
    for pod in manifests.pods:
        profile = apps.get(pod.meta.name, AppProfile(name=pod.meta.name))
        start_bare_pod(pod, profile, fleet, scheduler, running=True)
    slices = EndpointSliceController(env, api, delays, world.record_event, nodes=nodes)
    slices.start()
    world.outside_hosts = _outside_hosts([manifests, *added.values()], cluster.cluster_cidr)

    initial = _api_manifests(world)
    initial_slices = effective_endpoint_slices(initial)
    # The run's memos (parsed nf_tables chains, compiled blocks, ...): nodes in step share them.
    caches = world.caches
    # nftables mode's drop-unallocated range: the manifests' ServiceCIDR objects, else what
    # the API server's default ServiceCIDR holds (--service-cluster-ip-range).
    service_cidrs = manifests.ipv4_service_cidrs or (cluster.service_cidr,)
    # kube-proxy's two maps of the initial state, shared by every node (proxy/shared_maps.py).
    initial_ports = shared_service_port_map(initial.services, caches.compile)
    initial_shared = shared_endpoints(initial_slices, caches.compile)
    solo = solo_nodes(sc)
    if not cohorts or node_dependent(
        [*plan.initial, *(svc for svcs in plan.added.values() for svc in svcs)],
        [*initial_slices, *(sl for m in added.values() for sl in m.endpoint_slices)],
        caches.compile,
    ):
        solo = frozenset(n.name for n in cluster.nodes)
    leader: KubeProxy | None = None
    for spec in cluster.nodes:
        initial_endpoints = node_endpoints_map(initial_shared, spec.name, caches.compile)
        settings = cluster.proxy.for_node(spec.name)
        ctx = _node_context(spec, settings, cluster.cluster_cidr)
        kernel = Kernel(
            spec.name,
            node_network(ctx, spec.pod_cidr),
            _conntrack_max(settings.conntrack.max_entries(spec.cpus)),
            ConntrackTimeouts.kube_proxy_defaults(
                tcp_established_s=settings.conntrack.tcp_established_timeout_s,
                tcp_close_wait_s=settings.conntrack.tcp_close_wait_timeout_s,
                udp_s=settings.conntrack.udp_timeout_s,
                udp_stream_s=settings.conntrack.udp_stream_timeout_s,
            ),
            mode=_kernel_mode(settings),
            ipvs_sysctls=ipvs_sysctls(settings),
            icmp_sysctls=cluster.sysctls.icmp(),
            tcp_syn=cluster.sysctls.tcp_syn(),
        )
        if kernel.mode == "ipvs":
            warm_ipvs(
                kernel, initial.services, initial_slices, ctx, settings.ipvs.scheduler, env.now
            )
        # userspace: kube-proxy's process opens its ports and portals as it starts (warm)
        elif kernel.mode == "nftables":
            table = compile_nftables(initial.services, initial_slices, ctx, service_cidrs)
            kernel.install_nft(table, parse_table(table, caches.nft_chains), env.now)
        else:
            # The warm start's full sync, compiled once for all nodes alike (sim/shared_sync.py):
            # the same ruleset as compile_iptables(initial.services, initial_slices, ctx).
            compiled = iptables_compile(
                initial_ports,
                initial_shared,
                initial_endpoints,
                spec.name,
                ctx,
                shared_context(ctx, caches),
                caches,
            )
            kernel.install(compiled.ruleset, env.now)
        world.add_kernel(kernel)
        config = KubeProxyConfig(
            min_sync_period_s=settings.min_sync_period_s,
            sync_period_s=settings.sync_period_s,
            informer_sync_s=for_node(cluster.delays.informer_sync_s, spec.name),
            watch_delay_s=for_node(cluster.delays.kube_proxy_watch_s, spec.name),
            cost=SyncCostModel(settings.sync_cost.base_s, settings.sync_cost.per_rule_s),
            nft_cost=SyncCostModel(
                settings.nft_sync_cost.base_s, settings.nft_sync_cost.per_object_s
            ),
            ipvs_cost=ipvs_cost(settings),
            ipvs_scheduler=settings.ipvs.scheduler,
        )
        proxy = KubeProxy(
            env,
            spec.name,
            api,
            kernel,
            ctx,
            config,
            world.recorder,
            service_cidrs=service_cidrs,
            caches=caches,
            userspace=_userspace(world, spec.name, settings),
        )
        world.add_proxy(proxy)
        initial_view = ProgrammedView(env.now, env.now, initial_ports, initial_endpoints)
        if spec.name in solo:
            proxy.start(warm=True, programmed=initial_view)
            leader = None
        elif leader is not None and proxy.unlike(leader, warm=True) is None:
            proxy.start_in_step(leader, warm=True, programmed=initial_view)
        else:
            proxy.start(warm=True, programmed=initial_view)
            leader = proxy

    world.view = ApiView(api, network, caches.compile)
    node_ips = [n.ip for n in cluster.nodes]
    specs = [_workload(w, initial.services, node_ips, manifests) for w in sc.workloads]
    if any(isinstance(s.target, ts.NameTarget) for s in specs):
        world.coredns = _coredns(world, sc, delays.api_watch_s, initial_slices)
        _client_dns(world, sc)
        for w in sc.workloads:
            for ip in (w.dns.hosts if w.dns is not None else {}).values():
                world.outside_hosts.setdefault(ip, "external")
    world.traffic = engine(specs, world)
    world.nodes = NodeLifecycle(
        env,
        _node_lifecycle(cluster.node_lifecycle),
        fleet,
        scheduler,
        world.proxies,
        world.kernels,
        world.record_event,
        world.node_changed,
        slices.node_ready_changed,
    )
    _load_balancers(world, sc, [n.name for n in cluster.nodes])
    schedule_timeline(world, loaded, deployments, scheduler, fleet, plan, added)
    return world


def _userspace(world: World, node: str, settings: ProxySettings) -> UserspaceConfig | None:
    """A userspace-mode node's proxier settings and its random streams; None in other modes."""
    if settings.mode != "userspace":
        return None
    return UserspaceConfig(
        world.rng(f"kube-proxy/{node}/proxy-ports"),
        world.rng(f"kube-proxy/{node}/shuffle"),
        settings.proxy_port_range,
        settings.udp_idle_timeout_s,
    )


def _load_balancers(world: World, sc: Scenario, nodes: Sequence[str]) -> None:
    """A cloud load balancer for each Service a ``loadBalancer`` workload reaches."""
    spec = sc.cluster.load_balancer
    config = LoadBalancerConfig(
        spec.check_interval_s,
        spec.check_timeout_s,
        spec.healthy_threshold,
        spec.unhealthy_threshold,
    )
    for w in sc.workloads:
        target = w.target
        if w.source.load_balancer is None or isinstance(target, ScenarioAddress | ScenarioName):
            continue
        key = f"{target.namespace}/{target.name}"
        if key in world.load_balancers:
            continue
        service = world.api.get("Service", key)
        local = service is not None and bool(service.health_check_node_port)
        probe = kube_proxy_probe(
            world.proxies, world.machine_up, target.namespace, target.name, local=local
        )
        world.load_balancers[key] = CloudLoadBalancer(
            world.env, key, nodes, probe, config, world.load_balancer_changed
        )


def _node_lifecycle(spec: NodeLifecycleSpec) -> NodeLifecycleConfig:
    """The scenario's ``cluster.nodeLifecycle`` as the simulation's plain values."""
    return NodeLifecycleConfig(
        lease_renew_interval_s=spec.node_lease_duration_seconds * NODE_LEASE_RENEW_FRACTION,
        monitor_period_s=spec.node_monitor_period_s,
        monitor_grace_period_s=spec.node_monitor_grace_period_s,
        unreachable_toleration_s=float(spec.default_unreachable_toleration_seconds),
    )


def _node_context(spec: NodeSpec, settings: ProxySettings, cluster_cidr: str) -> NodeContext:
    """What ``spec``'s kube-proxy compiles with: its flags and switches, its node's facts."""
    detector: LocalDetectorMode = settings.detect_local_mode
    detector_value = {
        "ClusterCIDR": cluster_cidr,
        "NodeCIDR": spec.pod_cidr,
        "BridgeInterface": settings.detect_local.bridge_interface,
        "InterfaceNamePrefix": settings.detect_local.interface_name_prefix,
    }[detector]
    return NodeContext(
        node_name=spec.name,
        node_ips=(spec.ip,),
        local_detector=detector,
        local_detector_value=detector_value,
        masquerade_bit=settings.masquerade_bit,
        masquerade_all=settings.masquerade_all,
        localhost_nodeports=settings.localhost_node_ports,
        random_fully=settings.random_fully,
        nfacct=settings.nfacct,
        node_port_addresses=resolve_node_port_addresses(_node_port_addresses(settings), spec.ip),
        tcp_be_liberal=settings.conntrack.tcp_be_liberal,
        node_zone=spec.zone,
    )


def _node_port_addresses(settings: ProxySettings) -> tuple[str, ...]:
    """``nodePortAddresses`` as kube-proxy starts with it.

    Unset means the node's primary IP only in nftables mode
    (cmd/kube-proxy/app/server_linux.go ``platformApplyDefaults``), every address in iptables
    mode.
    """
    given = tuple(settings.node_port_addresses)
    if not given and settings.mode == "nftables":
        return (NODE_PORT_ADDRESSES_PRIMARY,)
    return given


def _delays(loaded: LoadedScenario) -> ControlPlaneDelays:
    d = loaded.scenario.cluster.delays
    startup = dict(d.pod_startup_s)
    teardown = dict(d.ip_teardown_s)
    return ControlPlaneDelays(
        api_watch_s=d.api_watch_s,
        endpoint_slice_batch_s=d.endpoint_slice_batch_s,
        pod_startup_s=startup.get("default", 1.0),
        ip_teardown_s=teardown.get("default", 1.0),
        pod_startup_by_node_s=tuple(sorted((k, v) for k, v in startup.items() if k != "default")),
        ip_teardown_by_node_s=tuple(sorted((k, v) for k, v in teardown.items() if k != "default")),
    )


def _node_object(spec: NodeSpec) -> Node:
    labels = [("kubernetes.io/hostname", spec.name)]
    if spec.zone:
        labels.append(("topology.kubernetes.io/zone", spec.zone))
    return Node(
        meta=ObjectMeta(spec.name, namespace="", labels=tuple(labels)),
        internal_ips=(spec.ip,),
        pod_cidrs=(spec.pod_cidr,),
        cpu_millis=spec.cpus * 1000,
    )


def _app(name: str, app: wl.App) -> AppProfile:
    return AppProfile(
        name=name,
        startup_s=app.startup_s,
        drain_after_sigterm_s=app.drain_after_sigterm_s,
        exit_after_sigterm_s=app.exit_after_sigterm_s,
        service_time=_service_time(app.service_time),
    )


def _service_time(t: wl.ServiceTime) -> ts.ServiceTime:
    if isinstance(t, wl.FixedTime):
        return ts.FixedTime(t.value_s)
    if isinstance(t, wl.LognormalTime):
        return ts.LognormalTime(t.median_s, t.sigma)
    return ts.ExponentialTime(t.mean_s)


def _kernel_mode(settings: ProxySettings) -> KernelMode:
    """The data plane the node's kernel holds for its kube-proxy mode."""
    if settings.mode in ("nftables", "ipvs", "userspace"):
        return settings.mode
    return "iptables"


def _conntrack_max(configured: int | None) -> int:
    return configured if configured is not None else kernel_default_max(ASSUMED_NODE_RAM_BYTES)


def _outside_hosts(sets: Iterable[Manifests], cluster_cidr: str) -> dict[str, str]:
    """Hand-made endpoint addresses outside the Pod network: assumed up, answering as "external".

    ``sets`` are the manifests at the start and those ``add-service`` actions add later.
    """
    return {ip: "external" for ip in outside_addresses(sets, cluster_cidr)}


def _coredns(
    world: World, sc: Scenario, watch_delay_s: float, slices: Sequence[EndpointSlice]
) -> CoreDns:
    """The cluster's CoreDNS answers (its Pods run like any other Deployment's)."""
    dns = sc.cluster.dns or ClusterDns()
    key = dns.service if "/" in dns.service else f"default/{dns.service}"
    service: Service | None = world.api.get("Service", key)
    port = None
    if service is not None:
        port = next((p for p in service.ports if p.port == DNS_PORT and p.protocol == "UDP"), None)
    if service is None or port is None or service.cluster_ip in ("", "None"):
        raise ValueError(f"Service {key} has no ClusterIP with UDP port 53: no cluster DNS")
    spn = ServicePortName(service.meta.namespace, service.meta.name, port.name, port.protocol)
    tcp = next((p for p in service.ports if p.port == DNS_PORT and p.protocol == "TCP"), None)
    tcp_spn = (
        ServicePortName(service.meta.namespace, service.meta.name, tcp.name, tcp.protocol).text
        if tcp is not None
        else ""
    )
    hosts = {n: ip for w in sc.workloads if w.dns is not None for n, ip in w.dns.hosts.items()}
    config = CoreDnsConfig(
        ttl_s=dns.ttl_s,
        cache_s=dns.cache_s,
        cache_cluster_domain=dns.cache_cluster_domain,
        upstream={n.lower().rstrip("."): ip for n, ip in hosts.items()},
        service_ip=service.cluster_ip,
        service_port=spn.text,
        service_tcp_port=tcp_spn,
    )
    return CoreDns(world.api, watch_delay_s, config, slices)


def _client_dns(world: World, sc: Scenario) -> None:
    """The client side of cluster DNS: the insert race's settings, NodeLocal DNSCache."""
    dns = sc.cluster.dns or ClusterDns()
    race = dns.conntrack_race
    world.dns_race = RaceSettings(
        race.probability,
        parse_kernel_version(race.kernel_version),
        frozenset(n.name for n in sc.cluster.nodes if n.cpus == 1),
    )
    local = dns.node_local_cache
    if local.enabled:
        world.nodelocaldns = NodeLocalDns(
            NodeLocalConfig(local.ip, local.success_ttl_s, local.denial_ttl_s)
        )


def _api_manifests(world: World) -> Manifests:
    api = world.api
    return Manifests(
        services=tuple(api.list("Service")),
        endpoint_slices=tuple(api.list("EndpointSlice")),
        endpoints=tuple(api.list("Endpoints")),
        pods=tuple(api.list("Pod")),
        nodes=tuple(api.list("Node")),
    )


def _workload(
    w: wl.Workload, services: Sequence[Service], node_ips: Sequence[str], manifests: Manifests
) -> ts.WorkloadSpec:
    src = w.source
    source: ts.Source
    if src.pods is not None:
        source = ts.PodSource(dict(src.pods))
    elif src.external is not None:
        source = ts.ExternalSource(src.external.node, src.external.ip)
    elif src.load_balancer is not None:
        source = ts.LoadBalancerSource(src.load_balancer.ip)
    else:
        source = ts.HostSource(src.host or "")
    target_ref = w.target
    target: ts.Target
    if isinstance(target_ref, ScenarioName):
        selector = tuple(sorted((w.source.pods or {}).items()))
        namespaces = client_namespaces(selector, manifests)
        named = named_service(target_ref, namespaces, {s.meta.key: s for s in services})
        target = _name_target(target_ref, named)
    elif isinstance(target_ref, ScenarioAddress):
        # A literal address that is a Service's (ClusterIP, NodePort, LB IP...) counts as it.
        owner = service_port_at(
            target_ref.ip, target_ref.port, target_ref.protocol, services, node_ips
        )
        target = ts.AddressTarget(target_ref.ip, target_ref.port, target_ref.protocol, owner)
    else:
        target = ts.ServiceTarget(f"{target_ref.namespace}/{target_ref.name}", target_ref.port)
    conn = w.connection
    connection: ts.ConnectionModel
    if isinstance(conn, wl.KeepAlive):
        connection = ts.KeepAlive(conn.connections)
    elif isinstance(conn, wl.Udp):
        connection = ts.Udp(conn.source_port == "fixed")
    else:
        connection = ts.PerRequest()
    if w.rate_per_s is not None:
        rate: tuple[tuple[float, float], ...] = ((0.0, w.rate_per_s),)
    else:
        rate = tuple((s.at_s, s.rate_per_s) for s in w.rate_schedule or ())
    return ts.WorkloadSpec(
        name=w.name,
        source=source,
        target=target,
        rate=rate,
        connection=connection,
        connect_timeout_s=w.connect_timeout_s,
        request_timeout_s=w.request_timeout_s,
        retries=ts.Retries(w.retries.max, w.retries.backoff_s),
        dns_cache=w.dns is not None and w.dns.cache == "ttl",
    )


def _name_target(ref: ScenarioName, svc: Service | None) -> ts.NameTarget:
    """The traffic's NameTarget, labelled with the Service port the name should reach.

    ``svc`` is the Service the name's search ends at (:func:`named_service`); its port is
    matched by number and protocol. Without one, the label is ``NAME:PORT/protocol``.
    """
    if svc is None or svc.type is ServiceType.EXTERNAL_NAME:
        return ts.NameTarget(ref.name, ref.port, ref.protocol)
    for sp in svc.ports:
        if sp.port == ref.port and str(sp.protocol).lower() == ref.protocol:
            spn = ServicePortName(svc.meta.namespace, svc.meta.name, sp.name, sp.protocol)
            return ts.NameTarget(ref.name, ref.port, ref.protocol, spn.text, svc.meta.key, spn.text)
    return ts.NameTarget(ref.name, ref.port, ref.protocol, "", svc.meta.key)
